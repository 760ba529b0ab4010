"""The shared state's client (gateway/state.py) and the shared rate window
(gateway/ratelimit.py SharedWindow) when Redis is away or slow. Redis' own
behaviour (the script's window across gateways) is measured in the lab
(tests/integration/litellm_proxy/test_shared_state.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gateway import state as state_module
from gateway.ratelimit import MemoryWindow, SharedWindow, window_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class AwayRedis:
    """A client whose every call fails as a refused connection does."""

    def __init__(self) -> None:
        self.calls = 0

    def register_script(self, _source: str) -> Any:
        async def script(keys: list[str], args: list[Any]) -> Any:
            self.calls += 1
            raise ConnectionError("Connection refused")

        return script

    async def ping(self) -> bool:
        self.calls += 1
        raise ConnectionError("Connection refused")


class SlowRedis(AwayRedis):
    def register_script(self, _source: str) -> Any:
        async def script(keys: list[str], args: list[Any]) -> Any:
            self.calls += 1
            await asyncio.sleep(30)

        return script


def test_without_redis_the_host_counts_and_redis_is_asked_again_only_after_a_pause() -> None:
    clock = Clock()
    client = AwayRedis()
    shared = state_module.SharedState(client, clock=clock)
    window = SharedWindow("home-assistant", shared, MemoryWindow())

    async def run() -> list[float | None]:
        return [await window.admit(clock.now + step, 2) for step in range(4)]

    answers = asyncio.run(run())
    # The host's own window admitted 2 and refused the rest: the limit holds here.
    assert answers[:2] == [None, None]
    assert all(answer is not None for answer in answers[2:])
    assert client.calls == 1  # one failure, then no call until RETRY_SECONDS passed
    assert not shared.usable()
    clock.now += state_module.RETRY_SECONDS
    assert shared.usable()
    asyncio.run(window.admit(clock.now, 2))
    assert client.calls == 2


def test_a_slow_redis_costs_a_request_the_timeout_at_most() -> None:
    clock = Clock()
    shared = state_module.SharedState(SlowRedis(), clock=clock)
    window = SharedWindow("home-assistant", shared, MemoryWindow())
    loop = asyncio.new_event_loop()
    try:
        started = loop.time()
        assert loop.run_until_complete(window.admit(clock.now, 5)) is None
        assert loop.time() - started < state_module.TIMEOUT_SECONDS + 1
    finally:
        loop.close()
    assert not shared.usable()


def test_no_state_host_means_no_client_and_the_host_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GATEWAY_STATE_REDIS_HOST", raising=False)
    monkeypatch.delenv("GATEWAY_STATE_DIR", raising=False)
    monkeypatch.setattr(state_module, "_LOADED", False)
    monkeypatch.setattr(state_module, "_STATE", None)
    assert state_module.shared_state() is None
    assert isinstance(window_for("home-assistant"), MemoryWindow)


def test_a_state_host_gives_every_app_a_shared_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_STATE_REDIS_HOST", "192.0.2.1")
    monkeypatch.setenv("GATEWAY_STATE_REDIS_PORT", "6379")
    monkeypatch.setenv("GATEWAY_STATE_REDIS_USER", "gateway")
    monkeypatch.setenv("GATEWAY_STATE_REDIS_PASSWORD", "lab-fake-state-password")
    monkeypatch.setattr(state_module, "_LOADED", False)
    monkeypatch.setattr(state_module, "_STATE", None)
    window = window_for("home-assistant")
    assert isinstance(window, SharedWindow)
    kwargs = window.state.client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"]) == ("192.0.2.1", 6379)
    assert (kwargs["username"], kwargs["password"]) == ("gateway", "lab-fake-state-password")
    assert kwargs["socket_connect_timeout"] == state_module.TIMEOUT_SECONDS
