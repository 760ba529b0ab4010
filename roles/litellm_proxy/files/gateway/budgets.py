"""Task budgets, and the spend they are checked against.

Budgets: ``GATEWAY_TASK_BUDGETS`` (JSON, ``{"12": 0.5, "*": 5.0}``, from the
role) and the ``gateway_task_budgets`` table (set at run time through the HTTP
API, :mod:`gateway.api`; a table entry wins over the environment for the same
task). A request tagged with a task whose recorded spend has reached its budget
is refused with HTTP 402 before any upstream sees it (:mod:`gateway.ledger`).
A subtask counts against its parent's budget (``12.3`` against ``12``) and may
have one of its own; ``*`` is the budget of every task that has none.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

from gateway.tasks import task_root, valid_task

LOG = logging.getLogger("cost_ledger")


def parse_budgets(text: str | None) -> dict[str, float]:
    """`{"12": 0.5, "*": 5}` -> budgets by task; bad entries are logged and left out."""
    if not text or not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        LOG.error("GATEWAY_TASK_BUDGETS is not JSON (%s); no budgets from the environment", error)
        return {}
    if not isinstance(raw, Mapping):
        LOG.error("GATEWAY_TASK_BUDGETS must be a JSON object; no budgets from the environment")
        return {}
    budgets: dict[str, float] = {}
    for task, value in raw.items():
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if not valid_task(str(task)) or number is None or number < 0 or not math.isfinite(number):
            LOG.error("GATEWAY_TASK_BUDGETS: ignoring %r: %r", task, value)
            continue
        budgets[str(task)] = float(number)
    return budgets


def usd(amount: float) -> str:
    """0.5 -> `$0.50`; 0.00000405 -> `$0.00000405`: enough digits for lab-sized costs."""
    if amount == 0 or abs(amount) >= 0.01:
        return f"${amount:.2f}"
    return "$" + f"{amount:.10f}".rstrip("0")


class Refusal(NamedTuple):
    """A task (or its parent) whose spend has reached its budget."""

    task: str
    spend: float
    budget: float
    requested_for: str

    def message(self) -> str:
        scope = "" if self.task == self.requested_for else f" (request for {self.requested_for})"
        return (
            f"task {self.task} has reached its budget{scope}: spent {usd(self.spend)} "
            f"of {usd(self.budget)}. Raise it with "
            f"`taskcost budget set {self.task} <usd>` or remove it with "
            f"`taskcost budget clear {self.task}`."
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "spend_usd": self.spend,
            "budget_usd": self.budget,
            "requested_for": self.requested_for,
        }


class Spend:
    """Spend by task, in memory: a base seeded from Postgres plus what this process saw."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base: dict[str, float] = {}
        self._live: dict[str, float] = {}

    def add(self, task: str, cost: float) -> None:
        with self._lock:
            self._live[task] = self._live.get(task, 0.0) + cost

    def set_base(self, base: Mapping[str, float]) -> None:
        with self._lock:
            self._base = dict(base)

    def live(self) -> dict[str, float]:
        """What this process recorded that is not known to be in Postgres yet."""
        with self._lock:
            return dict(self._live)

    def settle(self, moved: Mapping[str, float], base: Mapping[str, float] | None) -> None:
        """`moved` (a `live()` taken before a flush) is in Postgres now: it leaves the
        live part, and joins the base unless a fresh `base` from Postgres replaces it."""
        with self._lock:
            for task, cost in moved.items():
                left = self._live.get(task, 0.0) - cost
                if abs(left) < 1e-12:
                    self._live.pop(task, None)
                else:
                    self._live[task] = left
            if base is not None:
                self._base = dict(base)
            else:
                for task, cost in moved.items():
                    self._base[task] = self._base.get(task, 0.0) + cost

    def with_base(self, base: Mapping[str, float]) -> Spend:
        """A copy with another base (spend read from Postgres) and this live part."""
        copy = Spend()
        copy._base = dict(base)
        copy._live = self.live()
        return copy

    def by_task(self) -> dict[str, float]:
        with self._lock:
            keys = set(self._base) | set(self._live)
            return {k: self._base.get(k, 0.0) + self._live.get(k, 0.0) for k in sorted(keys)}

    def of_task(self, task: str) -> float:
        with self._lock:
            return self._base.get(task, 0.0) + self._live.get(task, 0.0)

    def of_root(self, root: str) -> float:
        with self._lock:
            return sum(
                v
                for source in (self._base, self._live)
                for k, v in source.items()
                if task_root(k) == root
            )


class Budgets:
    """Budgets from the environment, overridden per task by the run-time table."""

    def __init__(self, from_env: Mapping[str, float]) -> None:
        self._lock = threading.Lock()
        self.from_env = dict(from_env)
        self._runtime: dict[str, float] = {}

    def set_runtime(self, budgets: Mapping[str, float]) -> None:
        with self._lock:
            self._runtime = dict(budgets)

    def put(self, task: str, budget: float | None) -> None:
        with self._lock:
            if budget is None:
                self._runtime.pop(task, None)
            else:
                self._runtime[task] = budget

    def runtime(self) -> dict[str, float]:
        with self._lock:
            return dict(self._runtime)

    def effective(self) -> dict[str, float]:
        with self._lock:
            return {**self.from_env, **self._runtime}

    def check(self, task: str, spend: Spend) -> Refusal | None:
        """The first budget the task has reached: its own (a subtask's), then its parent's."""
        budgets = self.effective()
        root = task_root(task)
        if task != root and task in budgets:
            spent = spend.of_task(task)
            if spent >= budgets[task]:
                return Refusal(task, spent, budgets[task], task)
        budget = budgets.get(root, budgets.get("*"))
        if budget is not None:
            spent = spend.of_root(root)
            if spent >= budget:
                return Refusal(root, spent, budget, task)
        return None
