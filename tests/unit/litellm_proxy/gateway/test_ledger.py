"""The cost ledger callback (gateway/ledger.py): recording, budget checks, the worker.

The database tests use a real Postgres (postgres.py) and carry the `engine` mark.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.litellm_proxy.gateway.ledgers import (
    make_ledger,
    read_own,
    run,
    success_kwargs,
    wait_for,
)
from tests.unit.litellm_proxy.gateway.postgres import Postgres

# ------------------------------------------------------------------ what is recorded


def test_a_failure_before_any_deployment_is_recorded_once(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    event = {
        "exception": SimpleNamespace(status_code=400),
        "standard_logging_object": {
            "litellm_call_id": "call-x",
            "model_id": None,
            "request_tags": ["task:3"],
            "error_str": "Invalid model name passed in model=nope",
            "startTime": 5.0,
            "endTime": 5.1,
        },
        "litellm_params": {"proxy_server_request": {"body": {"model": "nope"}}},
    }
    run(ledger.async_log_failure_event(event, None, None, None))
    run(ledger.async_log_failure_event(event, None, None, None))
    (row,) = read_own(ledger)
    assert (row["task"], row["alias"], row["status"], row["deployment_id"]) == (
        "3",
        "nope",
        "failure",
        None,
    )
    assert row["http_status"] == 400


def test_one_success_logged_twice_counts_once(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    event = success_kwargs(call_id="same")
    run(ledger.async_log_success_event(event, None, None, None))
    run(ledger.async_log_success_event(event, None, None, None))
    assert len(read_own(ledger)) == 1
    assert ledger.spend.of_task("12.3") == 4.05e-06


def test_a_broken_spool_never_fails_the_request(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    ledger = make_ledger(blocker)
    run(ledger.async_log_success_event(success_kwargs(task="4"), None, None, None))
    assert ledger.spend.of_task("4") == 4.05e-06
    assert "spool" in (ledger.last_error or "")


# ---------------------------------------------------------------------- budgets


def test_a_task_over_its_budget_is_refused_with_402_naming_task_spend_and_budget(
    tmp_path: Path,
) -> None:
    ledger = make_ledger(tmp_path, budgets={"12": 0.00001})
    for task in ("12.1", "12.2", "12"):
        run(ledger.async_log_success_event(success_kwargs(task=task), None, None, None))
    data = {
        "model": "balanced",
        "litellm_call_id": "refused-1",
        "metadata": {"tags": ["task:12.3"], "user_api_key_alias": None},
    }
    with pytest.raises(Exception) as caught:
        run(ledger.async_pre_call_hook(None, None, data, "acompletion"))
    error = caught.value
    assert type(error).__name__ == "ProxyException"
    assert error.code == "402"
    assert error.type == "budget_exceeded"
    message = str(error.message)
    assert "task 12 " in message
    assert "spent $0.00001215" in message
    assert "of $0.00001" in message
    assert error.provider_specific_fields["gateway_budget"] == {
        "task": "12",
        "spend_usd": pytest.approx(1.215e-05),
        "budget_usd": 0.00001,
        "requested_for": "12.3",
    }
    rows = read_own(ledger)
    refused = [r for r in rows if r["status"] == "refused"]
    assert [(r["task"], r["http_status"], r["alias"]) for r in refused] == [
        ("12.3", 402, "balanced")
    ]
    # The proxy's own failure event for the refused request adds nothing.
    event = {"standard_logging_object": {"litellm_call_id": "refused-1", "model_id": None}}
    run(ledger.async_log_failure_event(event, None, None, None))
    assert len(read_own(ledger)) == len(rows)


def test_a_refusal_is_recorded_for_the_application_that_asked(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, budgets={"8": 0.0})
    data = {"model": "cheap", "metadata": {"tags": ["task:8"], "user_api_key_alias": None}}
    with pytest.raises(Exception, match="task 8 has reached its budget"):
        run(ledger.async_pre_call_hook(SimpleNamespace(key_alias="app-x"), None, data, "x"))
    assert read_own(ledger)[0]["consumer"] == "app-x"


def test_requests_of_other_tasks_and_untagged_ones_pass(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, budgets={"12": 0.0})
    for data in ({"metadata": {"tags": ["task:13"]}}, {"metadata": {}}, {"tags": ["x"]}):
        assert run(ledger.async_pre_call_hook(None, None, data, "acompletion")) is data


def test_the_hook_reads_tags_from_the_body_too(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, budgets={"5": 0.0})
    with pytest.raises(Exception, match="task 5 has reached its budget"):
        run(ledger.async_pre_call_hook(None, None, {"tags": ["task:5"]}, "acompletion"))


# --------------------------------------------------------- with a real Postgres


@pytest.mark.engine
def test_rows_wait_in_the_spool_while_postgres_is_down_and_arrive_after(
    db: Postgres, tmp_path: Path
) -> None:
    ledger = make_ledger(tmp_path, dsn=db.dsn)
    ledger.start()
    run(ledger.async_log_success_event(success_kwargs(task="20"), None, None, None))
    wait_for(lambda: db.query("SELECT count(*) FROM gateway_ledger")[0][0] == 1, "first row")
    # Recording must never wait for the database: only the ledger's own thread may
    # connect to it, never the request's.
    connecting_threads: list[str] = []
    connect = ledger.store.connect

    def spied_connect() -> Any:
        connecting_threads.append(threading.current_thread().name)
        return connect()

    ledger.store.connect = spied_connect
    db.stop()
    try:
        for _ in range(20):
            run(ledger.async_log_success_event(success_kwargs(task="20"), None, None, None))
        assert threading.current_thread().name not in connecting_threads
        wait_for(lambda: not ledger.database_up, "the ledger noticing Postgres is down")
        assert ledger.spool.pending_rows() == 20
    finally:
        db.start()
    wait_for(lambda: db.query("SELECT count(*) FROM gateway_ledger")[0][0] == 21, "spooled rows")
    wait_for(lambda: ledger.spool.pending_rows() == 0, "an empty spool")
    ledger.close()


@pytest.mark.engine
def test_spend_is_seeded_from_postgres_without_counting_a_row_twice(
    db: Postgres, tmp_path: Path
) -> None:
    earlier = make_ledger(tmp_path, dsn=db.dsn)
    run(earlier.async_log_success_event(success_kwargs(task="30", cost=0.25), None, None, None))
    earlier.flush_once()  # in Postgres, spool empty
    run(earlier.async_log_success_event(success_kwargs(task="30.1", cost=0.5), None, None, None))
    earlier.spool.rotate()
    (segment,) = earlier.spool.segments()
    kept = segment.read_text()
    earlier.flush_once()  # in Postgres too...
    segment.write_text(kept)  # ...and still in the spool (crash before the delete)
    run(earlier.async_log_success_event(success_kwargs(task="30.2", cost=1.0), None, None, None))
    earlier.spool.rotate()  # only in the spool: Postgres was gone when it was written

    restarted = make_ledger(tmp_path, dsn=db.dsn, budgets={"30": 1.75})
    restarted._count_leftovers()
    restarted.flush_once()
    assert restarted.spend.of_root("30") == pytest.approx(1.75)
    refusal = restarted.budgets.check("30.3", restarted.spend)
    assert refusal is not None and refusal.spend == pytest.approx(1.75)
    assert db.query("SELECT count(*) FROM gateway_ledger")[0][0] == 3


@pytest.mark.engine
def test_worker_processes_enforce_one_budget_through_postgres(db: Postgres, tmp_path: Path) -> None:
    """What one worker spent counts in another's check once it is in Postgres;
    a budget set through one worker holds in the other at once."""
    first = make_ledger(tmp_path, dsn=db.dsn)
    second = make_ledger(tmp_path, dsn=db.dsn)
    for ledger in (first, second):
        ledger.flush_once()  # both up and seeded, before anything is spent
    run(first.async_log_success_event(success_kwargs(task="40.1", cost=0.3), None, None, None))
    assert run(second.check("40.2")) is None  # no budget yet
    first.set_budget("40", 0.35)
    run(second.async_log_success_event(success_kwargs(task="40.2", cost=0.1), None, None, None))
    assert run(second.check("40")) is None  # first's 0.3 is still in first's spool
    first.flush_once()
    refusal = run(second.check("40.3"))
    assert refusal is not None
    assert (refusal.task, refusal.spend, refusal.budget) == ("40", pytest.approx(0.4), 0.35)
    second.flush_once()
    assert run(first.check("40")) == refusal._replace(requested_for="40")
    assert (
        first.standing()["spend_by_task"]
        == second.standing()["spend_by_task"]
        == {
            "40.1": pytest.approx(0.3),
            "40.2": pytest.approx(0.1),
        }
    )


@pytest.mark.engine
def test_every_worker_shows_a_budget_set_through_another(db: Postgres, tmp_path: Path) -> None:
    """`taskcost budget show` may reach any worker: each one reads the run-time
    budgets from Postgres, not what it last cached."""
    first = make_ledger(tmp_path, dsn=db.dsn, budgets={"990": 0.5})
    second = make_ledger(tmp_path, dsn=db.dsn, budgets={"990": 0.5})
    for ledger in (first, second):
        ledger.flush_once()
    first.set_budget("41", 0.25)
    shown = second.standing()
    assert shown["runtime"] == {"41": 0.25}
    assert shown["effective"] == {"990": 0.5, "41": 0.25}
    assert second.status()["budgets"] == shown["effective"]
    first.set_budget("41", None)
    assert second.standing()["effective"] == {"990": 0.5}


@pytest.mark.engine
def test_run_time_budgets_live_in_postgres_and_win_over_the_environment(
    db: Postgres, tmp_path: Path
) -> None:
    ledger = make_ledger(tmp_path, dsn=db.dsn, budgets={"12": 100.0})
    ledger.set_budget("12", 0.0)
    assert ledger.budgets.effective()["12"] == 0.0
    restarted = make_ledger(tmp_path / "other", dsn=db.dsn, budgets={"12": 100.0})
    restarted.flush_once()
    assert restarted.budgets.check("12", restarted.spend) is not None
    restarted.set_budget("12", None)
    assert restarted.budgets.effective()["12"] == 100.0
    assert db.query("SELECT count(*) FROM gateway_task_budgets")[0][0] == 0
