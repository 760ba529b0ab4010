"""The house's shared state: the Redis (or Valkey) every gateway's workers use.

LiteLLM's router keeps its own shared state there (cooldowns, allowed-fails
counters, rpm/tpm, in-flight counts), configured in config.yaml's
router_settings. This module is the gateway's own client, for the
applications' rate windows (:mod:`gateway.ratelimit`), with its health:

* ``gateway_state_up`` (a gauge, the lowest of the live workers): 1 while
  this worker's last call to Redis worked, 0 while it does not;
* while Redis is away a worker does not wait for it on every request: after a
  failure it asks again only once per ``RETRY_SECONDS``, and counts on the
  host meanwhile (losing the state host degrades sharing, never serving).

Connection settings come from the environment (the stack's env file):
GATEWAY_STATE_REDIS_HOST, GATEWAY_STATE_REDIS_PORT, GATEWAY_STATE_REDIS_USER (empty:
Redis' default account), GATEWAY_STATE_REDIS_PASSWORD.
No host: no shared state, and no metric.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

LOG = logging.getLogger("gateway_hooks")

# How long one call to Redis may take before the worker counts on its own,
# and how long it then waits before trying Redis again.
TIMEOUT_SECONDS = 0.5
RETRY_SECONDS = 2.0
# How often each worker checks Redis when nothing else has (the metric's freshness).
PING_SECONDS = 5.0


class SharedState:
    """One worker's connection to the state host, and whether it works."""

    def __init__(self, client: Any, clock: Any = time.monotonic) -> None:
        self.client = client
        self._clock = clock
        self._retry_at = 0.0
        self._last_ok = 0.0
        self._pinger: asyncio.Task[None] | None = None
        self._gauge = _gauge()

    def usable(self) -> bool:
        """False while a recent failure says Redis is away (no call is made then)."""
        return self._clock() >= self._retry_at

    def worked(self) -> None:
        self._last_ok = self._clock()
        self._retry_at = 0.0
        if self._gauge is not None:
            self._gauge.set(1)

    def failed(self, error: BaseException) -> None:
        if self._retry_at == 0.0:
            LOG.error("shared state (Redis) unreachable (%s): counting on this host", error)
        self._retry_at = self._clock() + RETRY_SECONDS
        if self._gauge is not None:
            self._gauge.set(0)

    async def call(self, operation: Any) -> Any:
        """Await `operation()` (a call on the client) within the timeout;
        note the outcome and raise on failure."""
        try:
            result = await asyncio.wait_for(operation(), TIMEOUT_SECONDS)
        except Exception as error:
            self.failed(error)
            raise
        self.worked()
        return result

    def watch(self) -> None:
        """Start this worker's periodic check (once, from a running event loop)."""
        if self._pinger is None or self._pinger.done():
            self._pinger = asyncio.get_running_loop().create_task(self._ping_forever())

    async def _ping_forever(self) -> None:
        while True:
            if self._clock() - self._last_ok >= PING_SECONDS and self.usable():
                try:
                    await self.call(self.client.ping)
                except Exception:  # noted by call(); the loop goes on
                    LOG.debug("state host ping failed", exc_info=True)
            await asyncio.sleep(1.0)


def _gauge() -> Any:
    try:
        from prometheus_client import Gauge
    except ImportError:  # the proxy image has it; a bare test venv may not
        return None
    from gateway.metrics import collector

    return collector(
        Gauge,
        "gateway_state_up",
        "1 while this gateway's workers reach the shared state (Redis); 0: counting on this host",
        [],
        multiprocess_mode="livemin",  # 0 when any worker process cannot reach it
    )


_STATE: SharedState | None = None
_LOADED = False


def shared_state() -> SharedState | None:
    """This worker's shared state, or None when the gateway has none configured."""
    global _STATE, _LOADED  # one client per worker process, made once
    if not _LOADED:
        _LOADED = True
        host = os.environ.get("GATEWAY_STATE_REDIS_HOST", "")
        if host:
            import redis.asyncio

            client = redis.asyncio.Redis(
                host=host,
                port=int(os.environ.get("GATEWAY_STATE_REDIS_PORT") or 6379),
                username=os.environ.get("GATEWAY_STATE_REDIS_USER") or None,
                password=os.environ.get("GATEWAY_STATE_REDIS_PASSWORD") or None,
                socket_timeout=TIMEOUT_SECONDS,
                socket_connect_timeout=TIMEOUT_SECONDS,
            )
            _STATE = SharedState(client)
    return _STATE
