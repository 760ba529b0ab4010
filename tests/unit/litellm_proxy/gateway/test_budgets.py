"""Task budgets and the spend they are checked against (gateway/budgets.py)."""

from __future__ import annotations

import pytest
from gateway.budgets import Budgets, Spend, parse_budgets


def test_budgets_from_the_environment_skip_what_is_not_a_budget() -> None:
    budgets = parse_budgets('{"12": 0.5, "*": 5, "13": -1, "bad id": 1, "14": "x", "15": 0}')
    assert budgets == {"12": 0.5, "*": 5.0, "15": 0.0}
    assert parse_budgets("not json") == {}
    assert parse_budgets("[1, 2]") == {}
    assert parse_budgets("") == {}


def test_subtasks_count_against_their_parents_budget() -> None:
    spend = Spend()
    spend.add("12.1", 0.30)
    spend.add("12.2", 0.25)
    spend.add("13", 0.10)
    budgets = Budgets({"12": 0.50, "*": 1.0})
    refusal = budgets.check("12.3", spend)
    assert refusal is not None
    assert (refusal.task, refusal.requested_for, refusal.budget) == ("12", "12.3", 0.50)
    assert refusal.spend == pytest.approx(0.55)
    assert budgets.check("13", spend) is None  # under the "*" default
    spend.add("13.4", 0.95)
    assert budgets.check("13", spend) is not None
    assert budgets.check("99", spend) is None


def test_a_subtask_may_have_a_budget_of_its_own() -> None:
    spend = Spend()
    spend.add("12.1", 0.30)
    budgets = Budgets({"12.1": 0.25})
    assert budgets.check("12.1", spend).task == "12.1"
    assert budgets.check("12.2", spend) is None


def test_a_run_time_budget_wins_over_the_environment() -> None:
    spend = Spend()
    spend.add("12", 0.10)
    budgets = Budgets({"12": 5.0})
    assert budgets.check("12", spend) is None
    budgets.put("12", 0.05)
    assert budgets.check("12", spend).budget == 0.05
    budgets.put("12", None)
    assert budgets.check("12", spend) is None
