"""Who may use the gateway: LiteLLM's ``general_settings.custom_auth``.

``user_api_key_auth`` decides without LiteLLM's database (which needs Prisma
engines fetched at run time). The master key may do anything; the metrics key
may only read `/metrics` (Prometheus scrapes with it, so the master key never
sits on the monitoring host); each application key may use the model API with
the aliases it was given (403 otherwise), without naming fallback models of
its own in the body (400), up to its requests per minute (429 with
Retry-After otherwise; the windows are in :mod:`gateway.ratelimit`). A task
key (:mod:`gateway.taskkeys`) may do what its application's key may, for one
task: its calls are tagged ``task:<id>`` (so they are counted, and held to the
task's budget, like calls that send the tag themselves), and a call tagged
with any other task is refused with 403; an expired, forged or altered task
key gets 401. Anything else is refused with 401. Keys come from the
environment (the stack's env file, mode 0600), never from the config file:
LITELLM_MASTER_KEY, GATEWAY_METRICS_KEY and GATEWAY_APP_KEYS; the longest a
task key may live is GATEWAY_TASK_KEY_MAX_TTL (seconds).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import math
import os
import time

from fastapi import Request
from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth

from gateway import taskkeys
from gateway.ratelimit import FileWindow, MemoryWindow, SharedWindow, window_for
from gateway.state import shared_state
from gateway.tasks import TASK_ID, TASK_TAG

LOG = logging.getLogger("gateway_hooks")


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
# Fields of a request body that name other models to try: an application key
# held to some aliases must not widen them through the body. (The tier
# fallbacks of the config are held to the key's aliases by LiteLLM itself:
# general_settings.enforce_fallback_model_access, on by default since 1.108.)
FALLBACK_FIELDS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


def _fallback_fields(body: dict) -> list[str]:
    """The fallback fields a body sets, at the top and in the places LiteLLM reads."""
    holders = [body]
    for key in ("metadata", "litellm_metadata", "router_settings_override"):
        if isinstance(body.get(key), dict):
            holders.append(body[key])
    return [f for f in FALLBACK_FIELDS if any(h.get(f) not in (None, [], {}) for h in holders)]


class App:
    """One application: its key, the aliases it may use, its requests per minute."""

    def __init__(self, name: str, key: str, models: frozenset[str], rpm: int) -> None:
        self.name = name
        self.key = key
        self.models = models
        self.rpm = rpm
        self.signing_key = taskkeys.signing_key(key)
        self.window: SharedWindow | MemoryWindow | FileWindow = window_for(name)

    async def retry_after(self, now: float) -> int:
        """0 if a request may go now (and it is counted), else whole seconds until one may."""
        if self.rpm <= 0:
            return 0
        try:
            if isinstance(self.window, SharedWindow):
                oldest = await self.window.admit(now, self.rpm)
            else:
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


def _client_tasks(request: Request, body: dict) -> list[str]:
    """The task ids a request names itself: in `x-litellm-tags`, or in the body's tags."""
    tags: list = request.headers.get("x-litellm-tags", "").split(",")
    for holder in (body, body.get("metadata"), body.get("litellm_metadata")):
        if isinstance(holder, dict) and isinstance(holder.get("tags"), list):
            tags += holder["tags"]
    named = (t.strip() for t in tags if isinstance(t, str))
    tasks = (t[len(TASK_TAG) :].strip() for t in named if t.startswith(TASK_TAG))
    return [task for task in tasks if TASK_ID.match(task)]


def _task_key_max_ttl() -> float:
    """The longest a task key may live, from the role's setting (litellm.env).

    Without a valid setting no task key is current: the gateway fails closed
    rather than keep a second copy of the role's default here.
    """
    try:
        seconds = float(os.environ.get("GATEWAY_TASK_KEY_MAX_TTL") or 0)
    except ValueError:
        return 0.0
    # nan compares false with everything and inf caps nothing: neither is a limit.
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


async def _app_auth(request: Request, app: App, task: str | None = None) -> UserAPIKeyAuth:
    route = request.url.path.rstrip("/")
    if route not in APP_ROUTES:
        raise _refuse(403, f"the key of {app.name} may only use the model API, not {route}")
    if route not in LISTING_ROUTES:
        from litellm.proxy.common_utils.http_parsing_utils import read_request_body

        body = await read_request_body(request=request)
        fields = _fallback_fields(body)
        if fields:
            raise ProxyException(
                message=(
                    f"an application key may not choose fallback models in the request: "
                    f"{', '.join(fields)}; the gateway's tiers fall back on their own"
                ),
                type="invalid_request_error",
                param=fields[0],
                code=400,
            )
        model = body.get("model")
        if app.models and model not in app.models:
            allowed = ", ".join(sorted(app.models))
            raise _refuse(403, f"{app.name} may not use model {model!r}; allowed: {allowed}")
        if task is not None:
            other = [t for t in _client_tasks(request, body) if not taskkeys.within(task, t)]
            if other:
                raise _refuse(403, f"this key is for task {task}, not task {other[0]}")
    wait = await app.retry_after(time.monotonic())
    if wait:
        raise ProxyException(
            message=f"{app.name} is over its limit of {app.rpm} requests per minute",
            type="rate_limit_error",
            param=None,
            code=429,
            headers={"retry-after": str(wait)},
        )
    # LiteLLM adds a key's metadata tags after the request's own
    # (litellm_pre_call_utils.add_key_level_controls), so a subtask the call
    # names (`task:12.3`, checked above) comes first and is the one counted.
    return UserAPIKeyAuth(
        key_alias=app.name,
        user_id=app.name,
        models=sorted(app.models),
        user_role=LitellmUserRoles.INTERNAL_USER,
        metadata={"tags": [f"{TASK_TAG}{task}"]} if task is not None else {},
    )


async def _task_key_auth(request: Request, presented: str) -> UserAPIKeyAuth:
    apps = load_apps()
    signing_keys = {name: app.signing_key for name, app in apps.items()}
    try:
        name, claim = taskkeys.check(presented, signing_keys, time.time(), _task_key_max_ttl())
    except taskkeys.TaskKeyError as error:
        raise _refuse(401, f"Authentication Error: {error}") from None
    return await _app_auth(request, apps[name], task=claim.task)


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    """Master key: everything. Metrics key: /metrics. App keys: their aliases, their rate."""
    state = shared_state()
    if state is not None:
        state.watch()  # keeps gateway_state_up current in this worker
    presented = _presented_key(api_key)
    master = os.environ.get("LITELLM_MASTER_KEY")
    if _same(presented, master):
        return UserAPIKeyAuth(api_key=master, user_role=LitellmUserRoles.PROXY_ADMIN)
    if _same(presented, os.environ.get("GATEWAY_METRICS_KEY")):
        if request.url.path.rstrip("/") == "/metrics":
            return UserAPIKeyAuth(key_alias="metrics", user_role=LitellmUserRoles.INTERNAL_USER)
        raise _refuse(403, "this key may only read /metrics")
    if presented.startswith(taskkeys.PREFIX):
        return await _task_key_auth(request, presented)
    for app in load_apps().values():
        if _same(presented, app.key):
            return await _app_auth(request, app)
    if not presented:
        raise _refuse(401, "Authentication Error: no API key passed in")
    raise _refuse(401, "Authentication Error: invalid API key")
