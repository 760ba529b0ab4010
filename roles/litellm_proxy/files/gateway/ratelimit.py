"""The applications' rate windows: the start times of the last minute's requests.

With the house's shared state (:mod:`gateway.state`) every worker of every
gateway counts an application in one window in Redis (:class:`SharedWindow`),
and while Redis is away each host counts on its own. The host's own window:
with GATEWAY_STATE_DIR set (a tmpfs the role mounts) the proxy's worker
processes share one window per application there, under a file lock; without
it each process counts on its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import struct
import uuid
from collections import deque
from pathlib import Path

from gateway.state import SharedState, shared_state

LOG = logging.getLogger("gateway_hooks")


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


# One atomic step in Redis, on Redis' own clock (the gateways' clocks differ):
# drop the starts older than a minute, then admit and record this one, or
# return how long ago the oldest start in the window was.
ADMIT_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('EXPIRE', KEYS[1], 61)
  return ''
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(now - tonumber(oldest[2]))
"""


class SharedWindow:
    """The window of one application in the shared state, for every gateway.

    While Redis is away (or a call to it fails) requests are counted in the
    host's own window instead, so the limit then holds per gateway host."""

    def __init__(self, name: str, state: SharedState, local: MemoryWindow | FileWindow) -> None:
        self.key = "gateway:rate:" + hashlib.sha256(name.encode()).hexdigest()[:32]
        self.state = state
        self.local = local
        self._script = state.client.register_script(ADMIT_SCRIPT)

    async def admit(self, now: float, limit: int) -> float | None:
        if self.state.usable():
            member = uuid.uuid4().hex
            try:
                age = await self.state.call(
                    lambda: self._script(keys=[self.key], args=[limit, member])
                )
            except Exception:  # noted by the state; this host counts meanwhile
                LOG.debug("shared rate window failed", exc_info=True)
            else:
                text = age.decode() if isinstance(age, bytes) else str(age)
                return None if not text else now - float(text)
        return self.local.admit(now, limit)


def window_for(name: str) -> SharedWindow | MemoryWindow | FileWindow:
    """The window of application `name`: in the shared state when there is one,
    else shared by this host's workers through GATEWAY_STATE_DIR if it is usable."""
    local = host_window_for(name)
    state = shared_state()
    return local if state is None else SharedWindow(name, state, local)


def host_window_for(name: str) -> MemoryWindow | FileWindow:
    """The window of application `name` on this host: shared by its workers
    through GATEWAY_STATE_DIR if it is usable."""
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
