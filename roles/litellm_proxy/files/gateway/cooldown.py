"""Cool a deployment down when an attempt on it fails because its host could not be reached.

LiteLLM (1.106 to 1.108 at least) skips cooldown for every `APIConnectionError` (upstream issue
#27362), which is exactly what a dead Ollama host raises (connection refused)
and what any upstream that drops the connection raises; such a deployment
would stay in rotation, a retry could land on it again, and clients would see
500s. LiteLLM reports a request's first failed attempt to this hook; it
puts that deployment into LiteLLM's own cooldown cache for the router's
cooldown time, so it leaves the rotation within seconds and comes back by
itself when the cooldown expires and it answers again
(tests/integration/litellm_proxy/test_routing.py measures both).
"""

from __future__ import annotations

import logging
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

LOG = logging.getLogger("gateway_hooks")
CONNECTION_ERROR_NAMES = ("APIConnectionError", "ConnectError", "RemoteProtocolError")


def is_connection_failure(exception: BaseException | None) -> bool:
    """True for a failure to reach the upstream at all (refused, reset, dropped)."""
    if exception is None:
        return False
    names = {cls.__name__ for cls in type(exception).__mro__}
    if names & set(CONNECTION_ERROR_NAMES):
        return True
    return any(name in str(exception) for name in CONNECTION_ERROR_NAMES)


def deployment_id(kwargs: dict[str, Any]) -> str | None:
    """The router's id of the deployment this attempt went to."""
    params = kwargs.get("litellm_params") or {}
    for holder in (params.get("metadata"), params.get("litellm_metadata"), params):
        info = (holder or {}).get("model_info") or {}
        if info.get("id"):
            return str(info["id"])
    return None


def current_router() -> Any:
    from litellm.proxy import proxy_server

    return getattr(proxy_server, "llm_router", None)


class CooldownOnConnectionError(CustomLogger):
    """Cool down a deployment whose host could not be reached."""

    def __init__(self, router_getter: Any = current_router) -> None:
        super().__init__()
        self._router_getter = router_getter

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        exception = kwargs.get("exception")
        if not is_connection_failure(exception):
            return
        model_id = deployment_id(kwargs)
        router = self._router_getter()
        if model_id is None or router is None:
            return
        try:
            router.cooldown_cache.add_deployment_to_cooldown(
                model_id=model_id,
                original_exception=exception,
                exception_status=503,
                cooldown_time=router.cooldown_time,
            )
            LOG.warning(
                "deployment %s unreachable; cooled down for %ss", model_id, router.cooldown_time
            )
        except Exception:  # a logging hook must never fail the request
            LOG.exception("could not cool down deployment %s", model_id)
