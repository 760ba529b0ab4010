"""The ledger's Prometheus metrics (gateway/metrics.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway.metrics import Metrics

from tests.unit.litellm_proxy.gateway.ledgers import make_ledger, run, success_kwargs


def test_metrics_roll_subtasks_up_into_their_task(tmp_path: Path) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.REGISTRY
    before = registry.get_sample_value("gateway_task_spend_usd_total", {"task": "41"}) or 0.0
    ledger = make_ledger(tmp_path)
    run(ledger.async_log_success_event(success_kwargs(task="41.2"), None, None, None))
    run(ledger.async_log_success_event(success_kwargs(task="41"), None, None, None))
    spend = registry.get_sample_value("gateway_task_spend_usd_total", {"task": "41"})
    assert spend - before == pytest.approx(2 * 4.05e-06)
    tokens = registry.get_sample_value(
        "gateway_task_tokens_total", {"task": "41", "direction": "output"}
    )
    assert tokens >= 12
    ok = registry.get_sample_value(
        "gateway_task_requests_total", {"task": "41", "status": "success"}
    )
    assert ok >= 2


def test_metrics_create_the_shared_folder_of_the_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is on a tmpfs, empty at each start; the ledger's metrics must not
    depend on LiteLLM's Prometheus logger having made it first."""
    pytest.importorskip("prometheus_client")
    shared = tmp_path / "run" / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    assert Metrics().enabled
    assert shared.is_dir()


def test_task_labels_are_bounded() -> None:
    from gateway.metrics import MAX_TASK_LABELS, OTHER_TASKS, Metrics

    metrics = Metrics()
    labels = {metrics.task_label(f"{n}.1") for n in range(MAX_TASK_LABELS + 50)}
    assert len(labels) == MAX_TASK_LABELS + 1
    assert OTHER_TASKS in labels
    assert metrics.task_label("3.4") == "3"  # a task labelled before keeps its label
    assert metrics.task_label(None) == "none"
