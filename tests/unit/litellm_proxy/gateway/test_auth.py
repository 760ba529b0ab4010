"""Who may use the gateway: the custom_auth hook (gateway/auth.py)."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from gateway import auth, taskkeys
from gateway.ratelimit import FileWindow, MemoryWindow
from litellm.proxy._types import LitellmUserRoles, ProxyException

from tests.support.role_render import RoleVars, render_template


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


@functools.cache
def _rendered_env(name: str) -> str:
    """What the role's litellm.env.j2 hands the gateway for `name`, with its defaults."""
    role = RoleVars(
        "litellm_proxy",
        {"inventory_hostname": "gw"},
        {
            "litellm_proxy_master_key": MASTER,
            "litellm_proxy_apps": {"home-assistant": {}},
            "_litellm_proxy_app_table": {},
            "__litellm_proxy_enabled_providers": [],
            "litellm_proxy_postgres_enabled": False,
        },
    )
    lines = render_template("litellm_proxy", "litellm.env.j2", role).splitlines()
    (value,) = [line.partition("=")[2] for line in lines if line.startswith(f"{name}=")]
    return value


METRICS = "sk-metrics-" + "x" * 30
HA_KEY = "sk-ha-" + "h" * 30


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_MASTER_KEY", MASTER)
    monkeypatch.setenv("GATEWAY_METRICS_KEY", METRICS)
    monkeypatch.setenv("GATEWAY_TASK_KEY_MAX_TTL", _rendered_env("GATEWAY_TASK_KEY_MAX_TTL"))
    table = {"home-assistant": {"key": HA_KEY, "models": ["cheap"], "rpm": 2}}
    monkeypatch.setenv("GATEWAY_APP_KEYS", base64.b64encode(json.dumps(table).encode()).decode())
    monkeypatch.setattr(auth, "_APPS", None)


def authenticate(path: str, key: str, body: dict | None = None) -> Any:
    return asyncio.run(auth.user_api_key_auth(_request(path, body), key))


def refused(path: str, key: str, body: dict | None = None) -> Any:
    with pytest.raises(ProxyException) as caught:
        authenticate(path, key, body)
    return caught.value


@pytest.mark.usefixtures("keys")
def test_master_key_may_do_anything() -> None:
    assert authenticate("/model/info", f"Bearer {MASTER}").user_role == LitellmUserRoles.PROXY_ADMIN


@pytest.mark.usefixtures("keys")
def test_metrics_key_reads_metrics_only() -> None:
    assert authenticate("/metrics", METRICS).key_alias == "metrics"
    assert refused("/v1/chat/completions", METRICS, {"model": "cheap"}).code == "403"


@pytest.mark.usefixtures("keys")
def test_missing_and_wrong_keys_get_401() -> None:
    assert refused("/v1/chat/completions", "").code == "401"
    assert refused("/v1/chat/completions", "sk-wrong-" + "w" * 30).code == "401"


@pytest.mark.usefixtures("keys")
def test_app_key_is_held_to_its_aliases_routes_and_rate() -> None:
    body = {"model": "cheap", "messages": []}
    assert authenticate("/v1/chat/completions", HA_KEY, body).key_alias == "home-assistant"
    smart = refused("/v1/chat/completions", HA_KEY, {"model": "smart"})
    assert smart.code == "403" and "'smart'" in smart.message
    assert refused("/model/info", HA_KEY).code == "403"
    authenticate("/v1/chat/completions", HA_KEY, body)
    limited = refused("/v1/chat/completions", HA_KEY, body)
    assert limited.code == "429"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_app_keys_share_the_window_through_the_state_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path))
    first = auth.App("home-assistant", HA_KEY, frozenset(), 2)
    second = auth.App("home-assistant", HA_KEY, frozenset(), 2)  # as another worker has it
    assert isinstance(first.window, FileWindow)
    assert asyncio.run(first.retry_after(500.0)) == 0
    assert asyncio.run(second.retry_after(501.0)) == 0
    assert 1 <= asyncio.run(second.retry_after(502.0)) <= 60
    assert 1 <= asyncio.run(first.retry_after(503.0)) <= 60


def test_without_a_state_folder_each_process_counts_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_STATE_DIR", raising=False)
    app = auth.App("home-assistant", HA_KEY, frozenset(), 1)
    assert isinstance(app.window, MemoryWindow)
    assert asyncio.run(app.retry_after(10.0)) == 0
    assert asyncio.run(app.retry_after(11.0)) == 59


@pytest.mark.usefixtures("keys")
@pytest.mark.parametrize(
    "body",
    [
        {"model": "cheap", "fallbacks": ["claude-sonnet-4-5"]},
        {"model": "cheap", "context_window_fallbacks": [{"cheap": ["smart"]}]},
        {"model": "cheap", "content_policy_fallbacks": [{"cheap": ["smart"]}]},
        {"model": "cheap", "metadata": {"fallbacks": ["smart"]}},
        {"model": "cheap", "router_settings_override": {"fallbacks": [{"cheap": ["smart"]}]}},
    ],
)
def test_an_app_key_may_not_choose_its_own_fallbacks(body: dict) -> None:
    refusal = refused("/v1/chat/completions", HA_KEY, body)
    assert refusal.code == "400"
    assert "fallback" in refusal.message and refusal.param in auth.FALLBACK_FIELDS


@pytest.mark.usefixtures("keys")
def test_the_master_key_may_still_name_fallbacks() -> None:
    body = {"model": "cheap", "fallbacks": ["smart"]}
    assert (
        authenticate("/v1/chat/completions", MASTER, body).user_role == LitellmUserRoles.PROXY_ADMIN
    )


def test_the_front_and_the_hook_serve_the_same_routes() -> None:
    """HAProxy passes the house the routes application keys may use, and no others."""
    import yaml

    from tests.support.loader import REPO

    role_vars = yaml.safe_load((REPO / "roles/litellm_proxy/vars/main.yml").read_text())
    assert set(role_vars["_litellm_proxy_public_routes"]) == set(auth.APP_ROUTES)


# ------------------------------------------------------------------ task keys


def _task_request(path: str, body: dict, header_tags: str | None = None) -> Any:
    request = _request(path, body)
    if header_tags is not None:
        request.scope["headers"].append((b"x-litellm-tags", header_tags.encode()))
    return request


def task_key(task: str = "12", ttl: float = 3600, key: str = HA_KEY) -> str:
    return taskkeys.mint(key, task, int(time.time() + ttl))


def task_auth(key: str, body: dict | None = None, header_tags: str | None = None) -> Any:
    request = _task_request("/v1/chat/completions", body or {"model": "cheap"}, header_tags)
    return asyncio.run(auth.user_api_key_auth(request, f"Bearer {key}"))


def task_refused(key: str, body: dict | None = None, header_tags: str | None = None) -> Any:
    with pytest.raises(ProxyException) as caught:
        task_auth(key, body, header_tags)
    return caught.value


@pytest.mark.usefixtures("keys")
def test_a_task_key_is_its_apps_key_for_one_task() -> None:
    auth.load_apps()["home-assistant"].rpm = 0  # the rate has a test of its own
    answer = task_auth(task_key("12"))
    assert answer.key_alias == "home-assistant" and answer.models == ["cheap"]
    assert answer.metadata == {"tags": ["task:12"]}
    # a subtask of its task may be named by the call; it is the one counted
    assert task_auth(task_key("12"), header_tags="task:12.3").metadata == {"tags": ["task:12"]}
    assert task_auth(task_key("12"), {"model": "cheap", "tags": ["task:12", "team:a"]})


@pytest.mark.usefixtures("keys")
@pytest.mark.parametrize(
    ("where", "tags"),
    [("header", "task:13"), ("header", "team:a, task:120"), ("body", ["task:1"])],
)
def test_a_task_key_may_not_tag_another_task(where: str, tags: Any) -> None:
    body = {"model": "cheap", "tags": tags} if where == "body" else {"model": "cheap"}
    refusal = task_refused(task_key("12"), body, tags if where == "header" else None)
    assert refusal.code == "403" and "task 12" in refusal.message


@pytest.mark.usefixtures("keys")
def test_a_task_key_is_held_to_its_apps_aliases_routes_and_rate() -> None:
    assert task_refused(task_key(), {"model": "smart"}).code == "403"
    with pytest.raises(ProxyException) as caught:
        asyncio.run(auth.user_api_key_auth(_request("/model/info"), task_key()))
    assert caught.value.code == "403"
    task_auth(task_key("1"))
    task_auth(task_key("2"))  # the app's rate is 2 a minute, for all its keys together
    assert task_refused(task_key("3")).code == "429"


def _altered(key: str, **claim: Any) -> str:
    signed, signature = key.split(".")
    payload = json.loads(base64.urlsafe_b64decode(signed[8:] + "=" * (-len(signed[8:]) % 4)))
    payload.update(claim)
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"sk-task-{encoded}.{signature}"


@pytest.mark.usefixtures("keys")
@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: task_key(ttl=-1), "expired"),
        (lambda: task_key(ttl=8 * 24 * 3600), "longer than this gateway allows"),
        (lambda: _altered(task_key("12"), task="13"), "invalid task key"),
        (lambda: _altered(task_key("12"), exp=int(time.time()) + 7200), "invalid task key"),
        (lambda: task_key(key="sk-other-" + "o" * 30), "invalid task key"),
        (lambda: task_key()[:-2], "malformed task key"),
        (lambda: task_key()[:-4], "invalid task key"),
        (lambda: task_key().replace(".", ".A"), "invalid task key"),
        (lambda: "sk-task-" + "A" * 600, "malformed task key"),
        (lambda: "sk-task-%%%.abc", "malformed task key"),
        (lambda: _altered(task_key("12"), task="../12"), "malformed task key"),
    ],
)
def test_an_expired_forged_or_altered_task_key_gets_401(make: Any, why: str) -> None:
    key = make()
    refusal = task_refused(key)
    assert refusal.code == "401" and why in refusal.message
    assert key not in refusal.message


@pytest.mark.usefixtures("keys")
def test_the_gateways_longest_life_of_a_task_key_is_its_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_TASK_KEY_MAX_TTL", "600")
    assert task_refused(task_key(ttl=3600)).code == "401"
    assert task_auth(task_key(ttl=300)).key_alias == "home-assistant"


@pytest.mark.usefixtures("keys")
@pytest.mark.parametrize("setting", ["", "soon", "-5", "nan", "inf"])
def test_without_a_valid_longest_life_no_task_key_is_current(
    monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    monkeypatch.setenv("GATEWAY_TASK_KEY_MAX_TTL", setting)
    refusal = task_refused(task_key(ttl=300))
    assert refusal.code == "401" and "lives longer than this gateway allows" in refusal.message
