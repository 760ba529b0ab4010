"""The ledger's Prometheus metrics, in prometheus_client's default registry.

LiteLLM's /metrics serves that registry:
``gateway_task_spend_usd_total{task}``, ``gateway_task_tokens_total{task,direction}``,
``gateway_task_requests_total{task,status}`` (task rolled up, ``none`` when
untagged, ``other`` past the first MAX_TASK_LABELS tasks), ``gateway_ledger_pending_rows``,
``gateway_ledger_database_up``, ``gateway_ledger_quarantined_rows_total``.
With several worker processes, prometheus_client keeps the values under
``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.events import to_float
from gateway.tasks import NO_TASK, task_root

LOG = logging.getLogger("cost_ledger")


# Task ids come from the clients (a tag, a task key): each new one would be a
# new series of every per-task metric, on a tmpfs. A process labels the first
# MAX_TASK_LABELS tasks it sees by their id (GATEWAY_TASK_METRIC_LABELS, from
# litellm_proxy_task_metric_labels) and counts the rest as `other` (the
# ledger's rows in Postgres keep every task).
MAX_TASK_LABELS = 100
OTHER_TASKS = "other"


def collector(kind: Any, name: str, help_text: str, labels: list[str], **options: Any) -> Any:
    """The metric `name` in prometheus_client's default registry, made once.

    One process may make several ledgers (the unit tests do, and so does a copy
    of the code loaded again by path); the registry refuses a second collector
    with one name, so an existing one is returned."""
    from prometheus_client import REGISTRY

    existing = getattr(REGISTRY, "_names_to_collectors", {}).get(name)
    if existing is not None:
        return existing
    return kind(name, help_text, labels, **options)


class Metrics:
    """Per-task counters for the dashboard, in prometheus_client's default registry."""

    def __init__(self) -> None:
        self._labelled: set[str] = set()
        try:
            self.max_task_labels = int(
                os.environ.get("GATEWAY_TASK_METRIC_LABELS") or MAX_TASK_LABELS
            )
        except ValueError:
            self.max_task_labels = MAX_TASK_LABELS
        try:
            import prometheus_client
        except ImportError:  # the proxy image has it; a bare test venv may not
            LOG.warning("prometheus_client is missing: the ledger exports no metrics")
            self.enabled = False
            return
        self.enabled = True
        # With several workers, prometheus_client writes its values under this
        # folder (a tmpfs, empty at each start): have it before the first metric.
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if shared:
            Path(shared).mkdir(parents=True, exist_ok=True)
        self.spend = collector(
            prometheus_client.Counter,
            "gateway_task_spend_usd",
            "USD spent on model calls, by task (subtasks rolled up; none = untagged)",
            ["task"],
        )
        self.tokens = collector(
            prometheus_client.Counter,
            "gateway_task_tokens",
            "Tokens of model calls, by task and direction (input/output)",
            ["task", "direction"],
        )
        self.requests = collector(
            prometheus_client.Counter,
            "gateway_task_requests",
            "Model call outcomes recorded by the cost ledger, by task and status",
            ["task", "status"],
        )
        self.pending = collector(
            prometheus_client.Gauge,
            "gateway_ledger_pending_rows",
            "Ledger rows waiting in the spool for Postgres",
            [],
            # Every worker process counts the whole spool folder.
            multiprocess_mode="livemax",
        )
        self.quarantined_total = collector(
            prometheus_client.Counter,
            "gateway_ledger_quarantined_rows",
            "Ledger rows Postgres refused, kept in the spool's quarantine folder",
            [],
        )
        self.unchecked_total = collector(
            prometheus_client.Counter,
            "gateway_ledger_unchecked_requests",
            "Calls for a task with a budget served without a check (its database was away)",
            [],
        )
        self.database_up = collector(
            prometheus_client.Gauge,
            "gateway_ledger_database_up",
            "1 when the cost ledger's last write to Postgres worked",
            [],
            multiprocess_mode="livemin",  # 0 when any worker process cannot write
        )

    def task_label(self, task: str | None) -> str:
        """The label of a task's series: its root id, `none`, or `other` once this
        process has labelled MAX_TASK_LABELS tasks."""
        if not task:
            return NO_TASK
        root = task_root(task)
        if root in self._labelled or len(self._labelled) < self.max_task_labels:
            self._labelled.add(root)
            return root
        return OTHER_TASKS

    def observe(self, row: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        label = self.task_label(row.get("task"))
        self.requests.labels(task=label, status=row["status"]).inc()
        self.spend.labels(task=label).inc(max(to_float(row.get("cost_usd")), 0.0))
        self.tokens.labels(task=label, direction="input").inc(row.get("input_tokens") or 0)
        self.tokens.labels(task=label, direction="output").inc(row.get("output_tokens") or 0)

    def unchecked(self) -> None:
        if self.enabled:
            self.unchecked_total.inc()

    def quarantined(self, rows: int) -> None:
        if self.enabled:
            self.quarantined_total.inc(rows)

    def state(self, pending: int, database_up: bool) -> None:
        if self.enabled:
            self.pending.set(pending)
            self.database_up.set(1 if database_up else 0)
