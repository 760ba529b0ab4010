"""The gateway's LiteLLM callback that cools down unreachable deployments."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
import litellm
import pytest
from litellm.proxy._types import LitellmUserRoles, ProxyException

from tests.unit.loader import load

REPO = Path(__file__).resolve().parents[2]
# As LiteLLM imports it: a named module.
hooks = load("roles/litellm_proxy/files/gateway_hooks.py", "gateway_hooks")


class FakeCooldowns:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def add_deployment_to_cooldown(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


class FakeRouter:
    cooldown_time = 30

    def __init__(self) -> None:
        self.cooldown_cache = FakeCooldowns()


def fail(exception: BaseException, model_id: str | None = "dep-1") -> FakeRouter:
    router = FakeRouter()
    hook = hooks.CooldownOnConnectionError(router_getter=lambda: router)
    kwargs: dict[str, Any] = {"exception": exception, "litellm_params": {"metadata": {}}}
    if model_id:
        kwargs["litellm_params"]["metadata"]["model_info"] = {"id": model_id}
    asyncio.run(hook.async_log_failure_event(kwargs, None, None, None))
    return router


def test_connection_refused_cools_the_deployment_down() -> None:
    error = litellm.APIConnectionError(
        message="connection refused", llm_provider="ollama", model="llama3.2:1b"
    )
    router = fail(error)
    assert [c["model_id"] for c in router.cooldown_cache.calls] == ["dep-1"]
    assert router.cooldown_cache.calls[0]["cooldown_time"] == 30


def test_raw_httpx_connect_error_counts_too() -> None:
    assert hooks.is_connection_failure(httpx.ConnectError("refused"))


def test_an_upstream_error_answer_is_left_to_litellm() -> None:
    error = litellm.InternalServerError(message="boom", llm_provider="openai", model="m")
    assert fail(error).cooldown_cache.calls == []


def test_unknown_deployment_is_ignored() -> None:
    error = litellm.APIConnectionError(message="refused", llm_provider="ollama", model="m")
    assert fail(error, model_id=None).cooldown_cache.calls == []


def _request(path: str, body: dict | None = None) -> Any:
    """A minimal Starlette request for the auth hook."""
    from starlette.requests import Request

    payload = json.dumps(body or {}).encode()

    async def receive() -> dict:
        return {"type": "http.request", "body": payload, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    return Request(scope, receive)


MASTER = "sk-master-" + "m" * 30
METRICS = "sk-metrics-" + "x" * 30
HA_KEY = "sk-ha-" + "h" * 30


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_MASTER_KEY", MASTER)
    monkeypatch.setenv("GATEWAY_METRICS_KEY", METRICS)
    table = {"home-assistant": {"key": HA_KEY, "models": ["cheap"], "rpm": 2}}
    monkeypatch.setenv("GATEWAY_APP_KEYS", base64.b64encode(json.dumps(table).encode()).decode())
    monkeypatch.setattr(hooks, "_APPS", None)


def auth(path: str, key: str, body: dict | None = None) -> Any:
    return asyncio.run(hooks.user_api_key_auth(_request(path, body), key))


def refused(path: str, key: str, body: dict | None = None) -> Any:
    with pytest.raises(ProxyException) as caught:
        auth(path, key, body)
    return caught.value


@pytest.mark.usefixtures("keys")
def test_master_key_may_do_anything() -> None:
    assert auth("/model/info", f"Bearer {MASTER}").user_role == LitellmUserRoles.PROXY_ADMIN


@pytest.mark.usefixtures("keys")
def test_metrics_key_reads_metrics_only() -> None:
    assert auth("/metrics", METRICS).key_alias == "metrics"
    assert refused("/v1/chat/completions", METRICS, {"model": "cheap"}).code == "403"


@pytest.mark.usefixtures("keys")
def test_missing_and_wrong_keys_get_401() -> None:
    assert refused("/v1/chat/completions", "").code == "401"
    assert refused("/v1/chat/completions", "sk-wrong-" + "w" * 30).code == "401"


@pytest.mark.usefixtures("keys")
def test_app_key_is_held_to_its_aliases_routes_and_rate() -> None:
    body = {"model": "cheap", "messages": []}
    assert auth("/v1/chat/completions", HA_KEY, body).key_alias == "home-assistant"
    smart = refused("/v1/chat/completions", HA_KEY, {"model": "smart"})
    assert smart.code == "403" and "'smart'" in smart.message
    assert refused("/model/info", HA_KEY).code == "403"
    auth("/v1/chat/completions", HA_KEY, body)
    limited = refused("/v1/chat/completions", HA_KEY, body)
    assert limited.code == "429"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def _admit_many(directory: str, count: int, now: float, results: Any) -> None:
    window = hooks.FileWindow(Path(directory) / "app")
    results.put(sum(window.admit(now, 6) is None for _ in range(count)))


def test_worker_processes_share_one_rate_window(tmp_path: Path) -> None:
    """Four processes asking for 5 slots each at once get 6 in all, not 6 each."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    now = 1000.0
    workers = [
        context.Process(target=_admit_many, args=(str(tmp_path), 5, now, results)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert sum(results.get(timeout=5) for _ in workers) == 6
    window = hooks.FileWindow(tmp_path / "app")
    assert window.admit(now + 1, 6) == now  # full: the oldest start is reported
    assert window.admit(now + 60, 6) is None  # a minute later the slots are free


def test_app_keys_share_the_window_through_the_state_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path))
    first = hooks.App("home-assistant", HA_KEY, frozenset(), 2)
    second = hooks.App("home-assistant", HA_KEY, frozenset(), 2)  # as another worker has it
    assert isinstance(first.window, hooks.FileWindow)
    assert first.retry_after(500.0) == 0
    assert second.retry_after(501.0) == 0
    assert 1 <= second.retry_after(502.0) <= 60
    assert 1 <= first.retry_after(503.0) <= 60


def test_without_a_state_folder_each_process_counts_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_STATE_DIR", raising=False)
    app = hooks.App("home-assistant", HA_KEY, frozenset(), 1)
    assert isinstance(app.window, hooks.MemoryWindow)
    assert app.retry_after(10.0) == 0
    assert app.retry_after(11.0) == 59
