"""The ledger's rows on disk, until Postgres has them.

A callback appends one JSON line to a segment file of the spool folder
(``GATEWAY_LEDGER_SPOOL``, a folder of the host, mounted) and returns. The
ledger's worker fsyncs it about once a second and moves closed segments to
Postgres, then deletes them (:mod:`gateway.ledger`). Every worker process of
the proxy writes its own segments in the same folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

LOG = logging.getLogger("cost_ledger")
SEGMENT_GLOB = "ledger-*.jsonl"
# Rows Postgres refused, kept on disk for a person to look at (never retried).
QUARANTINE = "quarantine"


class Spool:
    """Rows as JSON lines in segment files; the one being written is flock'ed.

    Every append is flushed to the kernel (a killed process loses nothing); the
    worker fsyncs about once a second (a host crash loses at most that). A closed
    segment is one nobody holds a lock on: this process's earlier ones, or ones
    left by a process that is gone, or closed by another worker process of the
    proxy (any of them may move it). The rows waiting are counted from the folder
    itself, so every process reports the same number."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._file: Any = None
        self._path: Path | None = None
        self._dirty = False
        self._instance = uuid.uuid4().hex[:8]
        # Lines counted per segment so far, and the byte offset counted up to:
        # asking again reads only what was appended since.
        self._counted: dict[Path, tuple[int, int]] = {}

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"ledger-{time.time_ns():020d}-{self._instance}.jsonl"
        handle = path.open("a", encoding="utf-8")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file, self._path = handle, path

    def append(self, row: Mapping[str, Any]) -> None:
        line = json.dumps(row, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self._file is None:
                self._open()
            self._file.write(line)
            self._file.flush()
            self._dirty = True

    def sync(self) -> None:
        with self._lock:
            if self._file is not None and self._dirty:
                os.fsync(self._file.fileno())
                self._dirty = False

    def rotate(self) -> None:
        """Close the segment being written (if any) so the worker can move it."""
        with self._lock:
            if self._file is None:
                return
            if self._dirty:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file, self._path, self._dirty = None, None, False

    def current(self) -> Path | None:
        with self._lock:
            return self._path

    def segments(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(SEGMENT_GLOB))

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[list[dict[str, Any]] | None]:
        """The rows of a closed segment, with its lock held; None if someone holds it."""
        if path == self.current():
            yield None
            return
        try:
            handle = path.open("r", encoding="utf-8")
        except FileNotFoundError:
            yield None
            return
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            yield list(self._parse(path, handle))

    @staticmethod
    def _parse(path: Path, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                # A line cut short by a crash mid-write: nothing after it was written.
                LOG.warning("cost ledger: skipping unreadable line %s of %s", number, path.name)
                continue
            if isinstance(row, dict) and row.get("id"):
                yield row

    def quarantine(self, refused: list[tuple[Mapping[str, Any], str]]) -> Path:
        """Keep rows Postgres refused in the quarantine folder, each with the reason."""
        folder = self.directory / QUARANTINE
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"refused-{time.strftime('%Y%m%d')}-{self._instance}.jsonl"
        with path.open("a", encoding="utf-8") as handle:
            for row, reason in refused:
                handle.write(json.dumps({"refused_because": reason, "row": dict(row)}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return path

    def quarantined_rows(self) -> int:
        """Rows in the quarantine folder, whichever process put them there."""
        folder = self.directory / QUARANTINE
        total = 0
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            with contextlib.suppress(OSError), path.open("rb") as handle:
                total += handle.read().count(b"\n")
        return total

    def pending_rows(self) -> int:
        """Rows in every segment of the folder, whichever process wrote them."""
        with self._lock:
            total = 0
            seen: dict[Path, tuple[int, int]] = {}
            for path in self.segments():
                offset, lines = self._counted.get(path, (0, 0))
                with contextlib.suppress(OSError), path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                    complete = chunk.rfind(b"\n") + 1  # a line being written counts when done
                    offset, lines = offset + complete, lines + chunk.count(b"\n", 0, complete)
                seen[path] = (offset, lines)
                total += lines
            self._counted = seen
            return total

    def earlier_rows(self) -> list[dict[str, Any]]:
        """Rows in segments that this instance did not write (left by an earlier process)."""
        rows: list[dict[str, Any]] = []
        for path in self.segments():
            if path.stem.endswith(f"-{self._instance}"):
                continue
            with contextlib.suppress(OSError), path.open("r", encoding="utf-8") as handle:
                rows += self._parse(path, handle)
        return rows
