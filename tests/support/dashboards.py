"""The monitoring role's dashboards and their queries: what the role's unit tests
and the lab's monitoring test share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.monitoring_role import ROLE

DASHBOARDS_DIR = ROLE / "files" / "dashboards"
CONTAINER_PROVISIONING = "/etc/grafana/provisioning"
# Grafana's own variables, and what stands for them when a query is run by hand.
GRAFANA_MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def promql(self) -> str:
        """The expression with Grafana's macros replaced, as Prometheus would get it."""
        text = self.expr
        for macro, value in GRAFANA_MACROS.items():
            text = text.replace(macro, value)
        return text

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}: {self.expr}"


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries() -> list[Query]:
    """Every PromQL query of the role's dashboards (the one list the lab test uses too)."""
    queries: list[Query] = []
    for path in dashboard_files():
        dashboard = load_dashboard(path)
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                queries.append(
                    Query(dashboard["title"], panel["title"], target["refId"], target["expr"])
                )
    return queries
