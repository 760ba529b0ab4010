"""Budgets that hold under concurrency (gateway/reservations.py): a call reserves its
worst case under a lock every worker takes, and settles to its real cost."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest
from gateway import reservations
from gateway.ledger import BudgetUnchecked, Settings

from tests.unit.litellm_proxy.gateway.ledgers import make_ledger, run, success_kwargs
from tests.unit.litellm_proxy.gateway.postgres import Postgres


class Router:
    """The router's view the reservation needs: each alias's deployments and fallbacks."""

    fallbacks: ClassVar[list] = [{"cheap": ["balanced"]}, {"balanced": ["smart"]}]
    groups: ClassVar[dict] = {
        "cheap": [
            {"litellm_params": {"model": "ollama_chat/llama3.2:1b"}},
            {"litellm_params": {"model": "openai/gpt-4o-mini", "input_cost_per_token": 1.5e-7,
                                "output_cost_per_token": 6e-7}},
        ],
        "balanced": [
            {"litellm_params": {"model": "anthropic/claude-haiku-4-5", "input_cost_per_token": 1e-6,
                                "output_cost_per_token": 5e-6}},
        ],
        "smart": [
            {"litellm_params": {"model": "anthropic/claude-sonnet-4-5",
                                "input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5}},
        ],
        "local": [{"litellm_params": {"model": "ollama_chat/qwen2.5:0.5b"}}],
    }  # fmt: skip

    def get_model_list(self, model_name: str) -> list[dict[str, Any]]:
        return self.groups.get(model_name, [])


def call(task: str, model: str = "cheap", max_tokens: int = 100) -> dict[str, Any]:
    return {
        "litellm_call_id": str(uuid.uuid4()),
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "one two three"}],
        "metadata": {"tags": [f"task:{task}"]},
    }


def test_the_worst_case_is_the_dearest_deployment_the_call_can_reach() -> None:
    router = Router()
    cost = reservations.worst_case_cost(call("1", "cheap", max_tokens=100), router)
    # cheap falls back to balanced and smart: sonnet's price is the worst case.
    assert cost >= 100 * 1.5e-5
    assert reservations.worst_case_cost(call("1", "local"), router) == 0.0
    smart_only = reservations.worst_case_cost(call("1", "smart", max_tokens=10), router)
    assert smart_only < cost


def test_the_budgets_a_call_must_fit_in() -> None:
    budgets = {"12": 1.0, "12.3": 0.2, "*": 5.0}
    assert reservations.applicable_budgets("12.3", budgets) == [("12.3", 0.2), ("12", 1.0)]
    assert reservations.applicable_budgets("13", budgets) == [("13", 5.0)]
    assert reservations.applicable_budgets("14", {"12": 1.0}) == []


@pytest.mark.engine
def test_concurrent_calls_overrun_a_budget_by_at_most_one_call(
    db: Postgres, tmp_path: Path
) -> None:
    """16 calls at once, on two workers (ledgers), for a task whose budget is smaller
    than one call: one is admitted, fifteen are refused (it was 10 of 16)."""
    workers = [make_ledger(tmp_path, dsn=db.dsn, router=Router) for _ in range(2)]
    for ledger in workers:
        ledger.flush_once()
    workers[0].set_budget("80", 0.000001)
    results: list[Any] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        ledger = workers[index % 2]
        outcome = run(ledger.admit("80", call("80")))
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r is None for r in results) == 1
    assert sum(r is not None and r.task == "80" for r in results) == 15
    assert db.query("SELECT count(*) FROM gateway_task_reservations WHERE root = '80'")[0][0] == 1


@pytest.mark.engine
def test_a_call_settles_to_its_real_cost_and_is_counted_once(db: Postgres, tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, dsn=db.dsn, router=Router)
    ledger.flush_once()
    ledger.set_budget("81", 0.01)
    request = call("81")
    assert run(ledger.admit("81", request)) is None
    (reserved,) = db.query("SELECT amount FROM gateway_task_reservations")[0]
    assert reserved > 0.001
    event = success_kwargs(task="81", cost=0.000004, call_id=request["litellm_call_id"])
    run(ledger.async_log_success_event(event, None, None, None))
    assert db.query("SELECT amount FROM gateway_task_reservations")[0][0] == pytest.approx(4e-6)
    ledger.flush_once()
    # The row is in the ledger, and the reservation is gone in the same transaction.
    assert db.query("SELECT count(*) FROM gateway_task_reservations")[0][0] == 0
    assert db.query("SELECT sum(cost_usd) FROM gateway_ledger")[0][0] == pytest.approx(4e-6)


@pytest.mark.engine
def test_a_failed_request_releases_what_it_reserved(db: Postgres, tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, dsn=db.dsn, router=Router)
    ledger.flush_once()
    ledger.set_budget("82", 0.01)
    request = call("82")
    assert run(ledger.admit("82", request)) is None
    failure = {"litellm_call_id": request["litellm_call_id"], "standard_logging_object": {}}
    run(ledger.async_log_failure_event(failure, None, None, None))
    assert db.query("SELECT amount FROM gateway_task_reservations")[0][0] == 0


def test_without_its_database_a_task_with_a_budget_is_refused_or_served_as_set(
    tmp_path: Path,
) -> None:
    """The database is unreachable: fail closed (503) by default, or serve and count."""
    dsn = "postgresql://nobody:nothing@127.0.0.1:9/none?connect_timeout=1"
    closed = make_ledger(tmp_path / "closed", dsn=dsn, budgets={"83": 1.0}, router=Router)
    with pytest.raises(Exception) as refused:
        run(closed.admit("83", call("83")))
    assert isinstance(refused.value, BudgetUnchecked) or getattr(refused.value, "code", "") == "503"
    assert run(closed.admit("84", call("84"))) is None  # no budget: never waits for it
    settings = Settings(dsn=dsn, spool=tmp_path / "open", budgets={"83": 1.0}, flush_seconds=0.2,
                        without_database="serve")  # fmt: skip
    from gateway.ledger import CostLedger

    served = CostLedger(settings=settings, router_getter=Router, autostart=False)
    assert run(served.admit("83", call("83"))) is None
