"""Grafana's provisioning files of the monitoring role: datasource, dashboard provider, dashboards.

The Grafana server itself cannot be installed on the machines that build and
test this project (no registry here carries it, neither as an image nor as a
package), so these files are checked against Grafana's documented formats
instead of being loaded by Grafana: the datasource and provider files, the
dashboard model's required fields and layout, and every query, which must
parse as PromQL (promtool, in the lab's stand-in Prometheus image) and name
metrics the pinned LiteLLM release exports. The lab test
(tests/integration/monitoring/test_monitoring.py) runs the same queries against the
lab's Prometheus and wants data back from each: every panel has data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboards import (
    CONTAINER_PROVISIONING,
    dashboard_files,
    dashboard_queries,
    load_dashboard,
    panels,
)
from tests.support.monitoring_role import (
    litellm_metric_names,
    promtool,
    render,
    role_var,
    stand_in_prometheus_image,
    unknown_litellm_metrics,
)


@pytest.fixture(scope="session")
def prometheus_image() -> str:
    return stand_in_prometheus_image()


def provisioned_datasource() -> dict[str, Any]:
    return yaml.safe_load(render("provisioning/datasources/prometheus.yml.j2"))


# --- the datasource and the dashboard provider --------------------------------


def test_the_datasource_is_the_stacks_prometheus() -> None:
    config = provisioned_datasource()
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["name"] and source["uid"]
    assert source["type"] == "prometheus"
    assert source["access"] == "proxy"
    assert source["isDefault"] is True
    assert source["url"] == f"http://127.0.0.1:{role_var('monitoring_prometheus_port')}"
    assert source["jsonData"]["timeInterval"] == role_var("monitoring_prometheus_scrape_interval")


def test_the_datasource_follows_where_prometheus_listens() -> None:
    config = yaml.safe_load(
        render(
            "provisioning/datasources/prometheus.yml.j2",
            {"monitoring_prometheus_bind_address": "10.0.0.30", "monitoring_prometheus_port": 9191},
        )
    )
    assert config["datasources"][0]["url"] == "http://10.0.0.30:9191"


def test_the_dashboard_provider_reads_the_folder_the_role_fills() -> None:
    config = yaml.safe_load(render("provisioning/dashboards/llm-gateway.yml.j2"))
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["name"]
    assert provider["type"] == "file"
    assert provider["folder"] == role_var("monitoring_grafana_dashboards_folder")
    relative = Path(role_var("_monitoring_grafana_dashboards_dir")).relative_to(
        role_var("_monitoring_grafana_provisioning_dir")
    )
    assert provider["options"]["path"] == f"{CONTAINER_PROVISIONING}/{relative}"
    assert provider["allowUiUpdates"] is False


def test_the_role_provisions_exactly_the_dashboards_it_ships() -> None:
    assert sorted(p.name for p in dashboard_files()) == sorted(
        role_var("_monitoring_builtin_dashboards")
    )


# --- the dashboards -----------------------------------------------------------


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_has_the_models_required_fields(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert dashboard["title"]
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard.get("id") is None, "provisioned dashboards must not carry a database id"
    all_panels = panels(dashboard)
    assert all_panels
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    source_uid = provisioned_datasource()["datasources"][0]["uid"]
    for panel in all_panels:
        position = panel["gridPos"]
        assert all(isinstance(position[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert position["x"] >= 0 and position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": source_uid}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == source_uid, panel["title"]


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_panels_do_not_overlap(path: Path) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(load_dashboard(path)):
        position = panel["gridPos"]
        for x in range(position["x"], position["x"] + position["w"]):
            for y in range(position["y"], position["y"] + position["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells.get((x, y))}"
                cells[(x, y)] = panel["title"]


def test_dashboard_uids_are_unique() -> None:
    uids = [load_dashboard(p)["uid"] for p in dashboard_files()]
    assert len(uids) == len(set(uids))


def test_the_gateway_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = [q.expr for q in dashboard_queries() if q.dashboard == "LLM gateway"]

    def shown(*parts: str) -> bool:
        return any(all(part in e for part in parts) for e in exprs)

    assert shown("litellm_proxy_total_requests_metric_total", "by (requested_model)", "rate(")
    assert shown("litellm_proxy_failed_requests_metric_total", "by (requested_model)")
    assert shown("litellm_deployment_total_requests_total", "by (api_provider)")
    assert shown("litellm_deployment_failure_responses_total", "by (api_provider)")
    for quantile in ("0.5", "0.95"):
        assert shown(f"histogram_quantile({quantile}", "le, api_provider", "_latency_metric_bucket")
    assert shown("litellm_deployment_successful_fallbacks_total")
    assert shown("litellm_deployment_cooled_down_total")
    assert shown("litellm_deployment_state")
    assert shown("litellm_total_tokens_metric_total", "model, api_provider", "[1h]")
    assert shown("litellm_spend_metric_total", "model, api_provider", "[1h]")
    assert shown("gateway_task_spend_usd_total", "by (task)")
    assert shown("gateway_ollama_up")


def test_the_node_dashboard_shows_every_hosts_health() -> None:
    exprs = [q.expr for q in dashboard_queries() if q.dashboard == "Node health"]
    for metric in (
        'up{job="node"}',
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_filesystem_avail_bytes",
    ):
        assert any(metric in e for e in exprs), metric


def test_the_spend_by_task_panel_reads_the_ledgers_metric() -> None:
    (query,) = [q for q in dashboard_queries() if q.panel == "Spend per hour by task"]
    assert "gateway_task_spend_usd_total" in query.expr


def test_queries_use_only_grafana_macros_the_tests_know() -> None:
    for query in dashboard_queries():
        assert "$" not in query.promql, f"unknown variable in {query}"


def test_every_query_parses_as_promql(prometheus_image: str, tmp_path: Path) -> None:
    """promtool cannot check a bare expression; as recording rules, it checks each one."""
    queries = dashboard_queries()
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": q.promql}
                    for n, q in enumerate(queries)
                ],
            }
        ]
    }
    (tmp_path / "dashboards.yml").write_text(yaml.safe_dump(rules))
    result = promtool(
        prometheus_image, {tmp_path: "/check"}, "promtool check rules /check/dashboards.yml"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_every_litellm_metric_of_the_dashboards_exists_in_the_pinned_release() -> None:
    exprs = [q.expr for q in dashboard_queries()]
    assert not unknown_litellm_metrics(exprs, litellm_metric_names())
