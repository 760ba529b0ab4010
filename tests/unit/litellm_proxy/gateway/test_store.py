"""The ledger's tables in a real Postgres (gateway/store.py); see postgres.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.unit.litellm_proxy.gateway.ledgers import (
    UpstreamError,
    failed_attempt,
    make_ledger,
    run,
    success_kwargs,
)
from tests.unit.litellm_proxy.gateway.postgres import Postgres


@pytest.mark.engine
def test_a_ledger_makes_its_tables_in_an_empty_database(postgres: Postgres, tmp_path: Path) -> None:
    postgres.query("DROP TABLE IF EXISTS gateway_ledger, gateway_task_budgets")
    ledger = make_ledger(tmp_path, dsn=postgres.dsn)
    run(ledger.async_log_success_event(success_kwargs(task="60"), None, None, None))
    assert ledger.flush_once() == 1
    assert postgres.query("SELECT count(*) FROM gateway_ledger")[0][0] == 1
    assert postgres.query("SELECT count(*) FROM gateway_task_budgets")[0][0] == 0


@pytest.mark.engine
def test_rows_reach_postgres_once_even_when_a_segment_is_replayed(
    db: Postgres, tmp_path: Path
) -> None:
    first = make_ledger(tmp_path, dsn=db.dsn)
    for task in ("12.1", "12.2", "12"):
        run(first.async_log_success_event(success_kwargs(task=task), None, None, None))
    first.spool.rotate()
    (segment,) = first.spool.segments()
    kept = tmp_path.parent / f"{tmp_path.name}-replay.jsonl"
    shutil.copy(segment, kept)
    assert first.flush_once() == 3
    assert first.spool.segments() == []
    # A crash after the commit and before the segment was deleted: it comes back.
    shutil.copy(kept, segment)
    second = make_ledger(tmp_path, dsn=db.dsn)
    second.flush_once()
    assert db.query("SELECT count(*), sum(cost_usd) FROM gateway_ledger")[0] == (
        3,
        pytest.approx(3 * 4.05e-06),
    )
    assert second.spool.segments() == []
    assert second.spend.of_root("12") == pytest.approx(3 * 4.05e-06)


@pytest.mark.engine
def test_the_summary_groups_by_task_model_provider_and_status(db: Postgres, tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, dsn=db.dsn)
    run(ledger.async_log_success_event(success_kwargs(task="50.1"), None, None, None))
    run(ledger.async_log_success_event(success_kwargs(task="50.1"), None, None, None))
    run(
        ledger.async_post_call_failure_deployment_hook(
            failed_attempt(task="50"), UpstreamError("x"), "acompletion"
        )
    )
    run(ledger.async_log_success_event(success_kwargs(task="500"), None, None, None))
    ledger.flush_once()
    rows = ledger.query(lambda conn: ledger.store.summary(conn, "50"))
    found = {(r["task"], r["model"], r["provider"], r["status"]): r for r in rows}
    assert set(found) == {
        ("50", "ollama_chat/llama3.2:1b", "ollama", "failure"),
        ("50.1", "openai/gpt-4o-mini", "openai", "success"),
    }
    success = found[("50.1", "openai/gpt-4o-mini", "openai", "success")]
    assert (success["calls"], success["input_tokens"], success["output_tokens"]) == (2, 6, 12)
    assert success["cost_usd"] == pytest.approx(2 * 4.05e-06)
    listed = ledger.query(lambda conn: ledger.store.rows(conn, "50", None, 10))
    assert {r["task"] for r in listed} == {"50", "50.1"}


@pytest.mark.engine
def test_a_row_postgres_refuses_is_quarantined_and_the_others_still_move(
    db: Postgres, tmp_path: Path
) -> None:
    """A row Postgres will not store (a NUL in a text column, written by a ledger of
    an earlier release that did not clean it) no longer holds up every row behind
    it: it is kept in the quarantine folder, counted, and the database stays up."""
    import json

    ledger = make_ledger(tmp_path, dsn=db.dsn)
    for task in ("70", "71"):
        run(ledger.async_log_success_event(success_kwargs(task=task), None, None, None))
    ledger.spool.rotate()
    (segment,) = ledger.spool.segments()
    bad = json.loads(segment.read_text().splitlines()[0])
    bad.update(id="bad-row-id", alias="x\u0000y")
    with segment.open("a") as handle:
        handle.write(json.dumps(bad) + "\n")
    assert ledger.flush_once() == 3
    assert ledger.spool.segments() == []
    assert db.query("SELECT count(*) FROM gateway_ledger")[0][0] == 2
    assert db.query("SELECT count(*) FROM gateway_ledger WHERE id = 'bad-row-id'")[0][0] == 0
    status = ledger.status()
    assert status["database"] == "up" and status["quarantined_rows"] == 1
    (kept,) = (tmp_path / "quarantine").glob("*.jsonl")
    entry = json.loads(kept.read_text())
    assert entry["row"]["id"] == "bad-row-id" and "NUL" in entry["refused_because"]
    # The next flush goes on as usual.
    run(ledger.async_log_success_event(success_kwargs(task="72"), None, None, None))
    assert ledger.flush_once() == 1
    assert db.query("SELECT count(*) FROM gateway_ledger")[0][0] == 3
