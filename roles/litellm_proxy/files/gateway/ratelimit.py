"""The applications' rate windows: the start times of the last minute's requests.

Rate limits are counted per gateway host: with GATEWAY_STATE_DIR set (a tmpfs
the role mounts) the proxy's worker processes share one window per application
there, under a file lock; without it each process counts on its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import struct
from collections import deque
from pathlib import Path

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


def window_for(name: str) -> MemoryWindow | FileWindow:
    """The window of application `name`: shared through GATEWAY_STATE_DIR if it is usable."""
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
