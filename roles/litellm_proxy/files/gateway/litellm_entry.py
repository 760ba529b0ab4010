"""The one module LiteLLM's config names: the gateway's hooks, made on first access.

LiteLLM resolves each name of its config with
``litellm.proxy.types_utils.utils.get_instance_fn``: when no file
``<config dir>/gateway/litellm_entry.py`` exists (the config is /app/config.yaml,
and the package is mounted elsewhere, read-only, at /opt/llm-gateway/gateway
with ``PYTHONPATH=/opt/llm-gateway``), it runs
``importlib.import_module("gateway.litellm_entry")`` and then
``getattr(module, "<name>")``. The names the config must use:

    general_settings.custom_auth:  gateway.litellm_entry.user_api_key_auth
    litellm_settings.callbacks:    gateway.litellm_entry.cooldown_hook
                                   gateway.litellm_entry.ledger  (with the ledger's Postgres)

(``CUSTOM_AUTH``, ``COOLDOWN_CALLBACK`` and ``LEDGER_CALLBACK`` below.)

Importing this module creates nothing, starts no thread and imports no
LiteLLM: a module-level ``__getattr__`` (PEP 562) makes each object the first
time it is asked for, once per process, and keeps it. ``user_api_key_auth`` is
:func:`gateway.auth.user_api_key_auth`; ``cooldown_hook`` a
:class:`gateway.cooldown.CooldownOnConnectionError`; ``ledger`` a
:class:`gateway.ledger.CostLedger` configured from the environment. When the
ledger is made inside the proxy (``litellm.proxy.proxy_server`` imported), its
HTTP API (:mod:`gateway.api`) is added to the proxy's app and its worker
started, so spend and budgets are seeded from Postgres at start, not at the
first request.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.ledger import CostLedger

LOG = logging.getLogger("cost_ledger")

CUSTOM_AUTH = "gateway.litellm_entry.user_api_key_auth"
COOLDOWN_CALLBACK = "gateway.litellm_entry.cooldown_hook"
LEDGER_CALLBACK = "gateway.litellm_entry.ledger"


def _user_api_key_auth() -> Any:
    from gateway.auth import user_api_key_auth

    return user_api_key_auth


def _cooldown_hook() -> Any:
    from gateway.cooldown import CooldownOnConnectionError

    return CooldownOnConnectionError()


def _install_in_proxy(instance: CostLedger) -> None:
    """When LiteLLM's proxy loads the ledger, serve its API from the proxy's own app."""
    if "litellm.proxy.proxy_server" not in sys.modules:
        return
    try:
        from litellm.proxy.auth.user_api_key_auth import user_api_key_auth
        from litellm.proxy.proxy_server import app

        from gateway.api import install_routes

        app.state.gateway_ledger = instance
        install_routes(app, user_api_key_auth, lambda: app.state.gateway_ledger)
    except Exception:
        LOG.exception("cost ledger: could not add its HTTP API to the proxy")
    # Seed spend and budgets from Postgres now, not at the first request.
    instance.start()


def _ledger() -> CostLedger:
    from gateway.ledger import CostLedger

    instance = CostLedger()
    _install_in_proxy(instance)
    return instance


_MAKERS: dict[str, Callable[[], Any]] = {
    "user_api_key_auth": _user_api_key_auth,
    "cooldown_hook": _cooldown_hook,
    "ledger": _ledger,
}
_MAKING = threading.RLock()


def __getattr__(name: str) -> Any:
    """Make `ledger`, `cooldown_hook` or `user_api_key_auth` on first access, once."""
    make = _MAKERS.get(name)
    if make is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _MAKING:
        made = globals().get(name)  # another thread may have made it meanwhile
        if made is None:
            made = make()
            globals()[name] = made  # found as a plain attribute from now on
    return made


def __dir__() -> list[str]:
    return sorted({*globals(), *_MAKERS})
