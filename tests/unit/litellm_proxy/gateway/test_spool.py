"""The ledger's rows on disk until Postgres has them (gateway/spool.py)."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.events import new_row
from gateway.spool import Spool

from tests.unit.litellm_proxy.gateway.ledgers import make_ledger, read_own, run, success_kwargs


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    run(ledger.async_log_success_event(success_kwargs(), None, None, None))
    ledger.spool.rotate()
    (segment,) = ledger.spool.segments()
    with segment.open("a") as out:
        out.write('{"id": "half-writ')
    rows = read_own(ledger)
    assert len(rows) == 1


def test_a_segment_another_process_is_writing_is_left_alone(tmp_path: Path) -> None:
    other = Spool(tmp_path)
    other.append(new_row(status="success"))
    mine = Spool(tmp_path)
    (segment,) = mine.segments()
    with mine.claim(segment) as rows:
        assert rows is None  # locked by `other`, which still writes it
    other.rotate()
    with mine.claim(segment) as rows:
        assert rows is not None and len(rows) == 1
    assert len(mine.earlier_rows()) == 1
    assert other.earlier_rows() == []


def test_every_process_counts_the_rows_of_the_whole_spool(tmp_path: Path) -> None:
    first, second = Spool(tmp_path), Spool(tmp_path)  # two worker processes
    for _ in range(3):
        first.append(new_row(status="success"))
    second.append(new_row(status="success"))
    assert first.pending_rows() == second.pending_rows() == 4
    first.rotate()
    (closed,) = [p for p in second.segments() if p != second.current()]
    with second.claim(closed) as rows:  # the second process moves the first's rows
        assert rows is not None and len(rows) == 3
        closed.unlink()
    assert first.pending_rows() == second.pending_rows() == 1


def test_rows_are_fsynced_in_the_background_not_per_request(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    synced: list[int] = []
    real_fsync = os.fsync
    try:
        os.fsync = lambda fd: synced.append(fd)  # type: ignore[assignment]
        for _ in range(50):
            spool.append(new_row(status="success"))
        assert synced == []
        spool.sync()
        spool.sync()
    finally:
        os.fsync = real_fsync  # type: ignore[assignment]
    assert len(synced) == 1
