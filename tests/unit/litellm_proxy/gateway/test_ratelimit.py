"""The applications' rate windows (gateway/ratelimit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.ratelimit import FileWindow


def _admit_many(directory: str, count: int, now: float, results: Any) -> None:
    window = FileWindow(Path(directory) / "app")
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
    window = FileWindow(tmp_path / "app")
    assert window.admit(now + 1, 6) == now  # full: the oldest start is reported
    assert window.admit(now + 60, 6) is None  # a minute later the slots are free
