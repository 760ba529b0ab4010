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
def test_what_taskcost_run_tags_the_gateway_reads_back(task: str, tmp_path: Path) -> None:
    """`taskcost run <id>` takes exactly the ids whose tag the gateway attributes to <id>."""
    with pytest.raises(taskcost.TaskcostError) as refused:
        taskcost.run_command(task, [], tmp_path, None)  # no command: stops before running
    taken = "not a task id" not in str(refused.value)
    assert taken is (task in GOOD)
    header = taskcost.merge_tags("team:a, task:99", f"task:{task}")
    read_back = tasks.task_from_tags(header.split(","))
    assert (read_back == task) is taken


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
