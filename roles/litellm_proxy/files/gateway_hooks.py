"""Code the gateway loads into LiteLLM from its config.

user_api_key_auth (`general_settings.custom_auth`): who may use the gateway,
without LiteLLM's database (which needs Prisma engines fetched at run time).
The master key may do anything; the metrics key may only read `/metrics`
(Prometheus scrapes with it, so the master key never sits on the monitoring
host); each application key may use the model API with the aliases it was
given (403 otherwise) up to its requests per minute (429 with Retry-After
otherwise); anything else is refused with 401. Keys come from the environment
(the stack's env file, mode 0600), never from the config file. Rate limits are
counted per gateway host: with GATEWAY_STATE_DIR set (a tmpfs the role mounts)
the proxy's worker processes share one window per application there, under a
file lock; without it each process counts on its own.

cooldown_hook: cools a deployment down when an attempt on it fails because its
host could not be reached. LiteLLM 1.106 skips cooldown for every
`APIConnectionError` (upstream issue #27362), which is exactly what a dead
Ollama host raises (connection refused) and what any upstream that drops the
connection raises; such a deployment would stay in rotation, a retry could land
on it again, and clients would see 500s. LiteLLM 1.106 reports a request's
first failed attempt to this hook; it puts that deployment into LiteLLM's own
cooldown cache for the router's cooldown time, so it leaves the rotation within
seconds and comes back by itself when the cooldown expires and it answers
again (tests/integration/test_routing.py measures both).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import struct
import time
from collections import deque
from pathlib import Path
from typing import Any

from fastapi import Request
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth

LOG = logging.getLogger("gateway_hooks")
CONNECTION_ERROR_NAMES = ("APIConnectionError", "ConnectError", "RemoteProtocolError")


def _presented_key(api_key: str | None) -> str:
    key = (api_key or "").strip()
    return key[7:].strip() if key.lower().startswith("bearer ") else key


def _same(presented: str, expected: str | None) -> bool:
    return bool(presented) and bool(expected) and hmac.compare_digest(presented, expected or "")


def _refuse(code: int, message: str) -> ProxyException:
    return ProxyException(message=message, type="auth_error", param="api_key", code=code)


# What an application key may call: the model API, nothing administrative.
APP_ROUTES = frozenset(
    {
        "/chat/completions",
        "/v1/chat/completions",
        "/completions",
        "/v1/completions",
        "/embeddings",
        "/v1/embeddings",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/models",
        "/v1/models",
    }
)
LISTING_ROUTES = frozenset({"/models", "/v1/models"})


class MemoryWindow:
    """Start times of the last minute's requests, in this process only."""

    def __init__(self) -> None:
        self.calls: deque[float] = deque()

    def admit(self, now: float, limit: int) -> float | None:
        """Record a request at `now` and return None, or return the oldest start
        time in the window when `limit` requests already started in it."""
        while self.calls and now - self.calls[0] >= 60:
            self.calls.popleft()
        if len(self.calls) < limit:
            self.calls.append(now)
            return None
        return self.calls[0]


class FileWindow:
    """The same window in a file that every worker process of the proxy shares.

    The file holds the start times (CLOCK_MONOTONIC, which all processes of a
    host share) as packed doubles; each request reads, trims and appends under
    an exclusive flock, so two workers never admit the same slot."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def admit(self, now: float, limit: int) -> float | None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = os.pread(fd, os.fstat(fd).st_size, 0)
            usable = len(data) - len(data) % 8
            calls = [t for t in struct.unpack(f"{usable // 8}d", data[:usable]) if now - t < 60]
            if len(calls) >= limit:
                return min(calls)
            calls.append(now)
            os.ftruncate(fd, 0)
            os.pwrite(fd, struct.pack(f"{len(calls)}d", *calls), 0)
            return None
        finally:
            os.close(fd)  # releases the lock


def _window(name: str) -> MemoryWindow | FileWindow:
    directory = os.environ.get("GATEWAY_STATE_DIR", "")
    if not directory:
        return MemoryWindow()
    path = Path(directory) / "rate"
    with contextlib.suppress(OSError):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.is_dir():
        LOG.error("GATEWAY_STATE_DIR %s is not usable: rate limits are per process", directory)
        return MemoryWindow()
    return FileWindow(path / hashlib.sha256(name.encode()).hexdigest()[:32])


class App:
    """One application: its key, the aliases it may use, its requests per minute.

    A plain class on purpose: LiteLLM loads this file without registering it as a
    module, and @dataclass needs the module registered."""

    def __init__(self, name: str, key: str, models: frozenset[str], rpm: int) -> None:
        self.name = name
        self.key = key
        self.models = models
        self.rpm = rpm
        self.window = _window(name)

    def retry_after(self, now: float) -> int:
        """0 if a request may go now (and it is counted), else whole seconds until one may."""
        if self.rpm <= 0:
            return 0
        try:
            oldest = self.window.admit(now, self.rpm)
        except OSError as error:  # a broken state folder must not refuse everybody
            LOG.error("rate window of %s unusable (%s): counting in this process", self.name, error)
            self.window = MemoryWindow()
            oldest = self.window.admit(now, self.rpm)
        if oldest is None:
            return 0
        return max(1, math.ceil(60 - (now - oldest)))


_APPS: dict[str, App] | None = None


def load_apps() -> dict[str, App]:
    """Applications from GATEWAY_APP_KEYS (base64 JSON {name: {key, models, rpm}})."""
    global _APPS  # one table per worker process, read once
    if _APPS is None:
        raw = os.environ.get("GATEWAY_APP_KEYS", "")
        table = json.loads(base64.b64decode(raw)) if raw else {}
        _APPS = {
            name: App(
                name=name,
                key=str(spec["key"]),
                models=frozenset(spec.get("models") or []),
                rpm=int(spec.get("rpm") or 0),
            )
            for name, spec in table.items()
        }
    return _APPS


async def _app_auth(request: Request, app: App) -> UserAPIKeyAuth:
    route = request.url.path.rstrip("/")
    if route not in APP_ROUTES:
        raise _refuse(403, f"the key of {app.name} may only use the model API, not {route}")
    if app.models and route not in LISTING_ROUTES:
        from litellm.proxy.common_utils.http_parsing_utils import read_request_body

        model = (await read_request_body(request=request)).get("model")
        if model not in app.models:
            allowed = ", ".join(sorted(app.models))
            raise _refuse(403, f"{app.name} may not use model {model!r}; allowed: {allowed}")
    wait = app.retry_after(time.monotonic())
    if wait:
        raise ProxyException(
            message=f"{app.name} is over its limit of {app.rpm} requests per minute",
            type="rate_limit_error",
            param=None,
            code=429,
            headers={"retry-after": str(wait)},
        )
    return UserAPIKeyAuth(
        key_alias=app.name,
        user_id=app.name,
        models=sorted(app.models),
        user_role=LitellmUserRoles.INTERNAL_USER,
    )


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    """Master key: everything. Metrics key: /metrics. App keys: their aliases, their rate."""
    presented = _presented_key(api_key)
    master = os.environ.get("LITELLM_MASTER_KEY")
    if _same(presented, master):
        return UserAPIKeyAuth(api_key=master, user_role=LitellmUserRoles.PROXY_ADMIN)
    if _same(presented, os.environ.get("GATEWAY_METRICS_KEY")):
        if request.url.path.rstrip("/") == "/metrics":
            return UserAPIKeyAuth(key_alias="metrics", user_role=LitellmUserRoles.INTERNAL_USER)
        raise _refuse(403, "this key may only read /metrics")
    for app in load_apps().values():
        if _same(presented, app.key):
            return await _app_auth(request, app)
    if not presented:
        raise _refuse(401, "Authentication Error: no API key passed in")
    raise _refuse(401, "Authentication Error: invalid API key")


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


cooldown_hook = CooldownOnConnectionError()
