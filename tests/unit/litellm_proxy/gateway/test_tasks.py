"""The task-id grammar (gateway/tasks.py), and taskcost's copy of it agreeing with it.

taskcost (roles/taskmaster_client/files/taskcost.py) runs on workstations as one
file and cannot import the gateway package, so it keeps its own TASK_ID.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from gateway import tasks

from tests.support.loader import load

taskcost = load("roles/taskmaster_client/files/taskcost.py", "taskcost")

GOOD = ["12", "12.3", "1.2.3", "0", "a", "A-b_c.d", "feature-x.1", "9" * 64, "x" + "." * 63]
BAD = [
    "",
    "*",
    "9" * 65,
    ".12",
    "-1",
    "_a",
    "12 3",
    " 12",
    "12/3",
    "12,13",
    "task:12",
    "ü",
    "12ü",
    "\u0661\u0662",  # Arabic-Indic 12: str.isdigit() says yes, the grammar says no
    "\uff11\uff12",  # fullwidth 12
    "12\x00",
    "\x00",
    "12\t",
]
# Odd ones: both accept "12\n" ($ matches before a final newline); they must agree.
ODD = ["12\n", "12\r", "\n12"]


@pytest.mark.parametrize(
    ("tags", "task"),
    [
        (["task:12"], "12"),
        (["User-Agent: curl", " task:12.3 "], "12.3"),
        (["task:"], None),
        (["task:has space"], None),
        (["tasks:12", "task:9", "task:10"], "9"),
        (None, None),
    ],
)
def test_the_task_comes_from_the_first_task_tag(tags: list[str] | None, task: str | None) -> None:
    assert tasks.task_from_tags(tags) == task


def test_subtasks_roll_up_and_star_is_a_task_for_budgets_only() -> None:
    assert tasks.task_root("12.3") == "12"
    assert tasks.task_root("12") == "12"
    assert tasks.valid_task("*")
    assert tasks.task_from_tags(["task:*"]) is None


def test_taskcost_keeps_the_same_grammar() -> None:
    assert taskcost.TASK_ID.pattern == tasks.TASK_ID.pattern
    assert taskcost.TASK_ID.flags == tasks.TASK_ID.flags


@pytest.mark.parametrize(("task", "good"), [*((t, True) for t in GOOD), *((t, False) for t in BAD)])
def test_taskcost_and_the_gateway_agree_on_every_id(task: str, good: bool) -> None:
    assert bool(tasks.TASK_ID.match(task)) is good
    assert bool(taskcost.TASK_ID.match(task)) is good
    assert tasks.valid_task(task) is (good or task == "*")


@pytest.mark.parametrize("task", ODD)
def test_taskcost_and_the_gateway_agree_on_odd_ids_too(task: str) -> None:
    assert bool(taskcost.TASK_ID.match(task)) == bool(tasks.TASK_ID.match(task))


@pytest.mark.parametrize("task", GOOD + BAD)
def test_what_taskcost_mints_keys_for_the_gateway_reads_back(task: str) -> None:
    """`taskcost run <id>` takes exactly the ids the gateway's task keys carry."""
    from gateway import taskkeys

    try:
        minted = taskcost.key_for(task, "sk-house-" + "k" * 30, 60)
    except taskcost.TaskcostError as error:
        assert "not a task id" in str(error)
        assert task in BAD
        return
    claim, _, _ = taskkeys.read(minted)
    assert claim.task == task and task in GOOD


class FakeGateway:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        self.calls.append((method, path))
        return {}


@pytest.mark.parametrize("task", GOOD + BAD)
def test_taskcost_budget_takes_the_ids_the_gateways_budget_api_takes(
    task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FakeGateway()
    monkeypatch.setattr(taskcost, "gateway_for", lambda args, project: gateway)
    args = argparse.Namespace(project=str(tmp_path), action="clear", task=task, json=False)
    try:
        taskcost.budget_command(args)
        taken = True
    except taskcost.TaskcostError as error:
        assert "not a task id" in str(error)
        taken = False
    assert taken is tasks.valid_task(task)
    assert bool(gateway.calls) is taken


def test_taskcost_mints_task_keys_the_gateway_takes() -> None:
    """taskcost keeps its own copy of the task-key format (it runs on workstations alone)."""
    from gateway import taskkeys

    assert taskcost.TASK_KEY_PREFIX == taskkeys.PREFIX
    assert taskcost.TASK_KEY_CONTEXT == taskkeys.CONTEXT
    app_key = "sk-house-" + "k" * 30
    minted = taskcost.mint_task_key(app_key, "12.3", 2_000_000_000)
    assert minted == taskkeys.mint(app_key, "12.3", 2_000_000_000)
    signer, claim = taskkeys.check(
        minted, {"house": taskkeys.signing_key(app_key)}, 1_999_999_000, 3600
    )
    assert (signer, claim.task, claim.expires) == ("house", "12.3", 2_000_000_000)
