"""The gateway's LiteLLM callback that cools down unreachable deployments (gateway/cooldown.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import litellm
from gateway import cooldown


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
    hook = cooldown.CooldownOnConnectionError(router_getter=lambda: router)
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
    assert cooldown.is_connection_failure(httpx.ConnectError("refused"))


def test_an_upstream_error_answer_is_left_to_litellm() -> None:
    error = litellm.InternalServerError(message="boom", llm_provider="openai", model="m")
    assert fail(error).cooldown_cache.calls == []


def test_unknown_deployment_is_ignored() -> None:
    error = litellm.APIConnectionError(message="refused", llm_provider="ollama", model="m")
    assert fail(error, model_id=None).cooldown_cache.calls == []
