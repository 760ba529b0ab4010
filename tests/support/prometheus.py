"""Prometheus and Alertmanager in the lab, asked on the monitoring host itself."""

from __future__ import annotations

import json
import shlex
import urllib.parse
from pathlib import Path
from typing import Any

import testinfra
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "monitoring"
LAB_VARS = REPO / "molecule" / "default" / "group_vars" / "monitoring" / "lab.yml"


def settings() -> dict[str, Any]:
    """The role's defaults with the lab's values on top (as written, not templated)."""
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update(yaml.safe_load(LAB_VARS.read_text()) or {})
    return values


def fetch_json(host: testinfra.host.Host, url: str) -> Any:
    """GET `url` on `host` itself: Prometheus and Alertmanager listen on the monitoring
    host's loopback only (their default), so the tests ask them there."""
    script = (
        "import sys, urllib.request; "
        "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=15).read().decode())"
    )
    result = host.run(f"python3 -c {shlex.quote(script)} {shlex.quote(url)}")
    assert result.rc == 0, f"GET {url} on the host: {result.stderr}"
    return json.loads(result.stdout)


class Prometheus:
    """Prometheus' HTTP API, on the monitoring host."""

    def __init__(self, host: testinfra.host.Host) -> None:
        self.host = host
        self.url = f"http://127.0.0.1:{settings()['monitoring_prometheus_port']}"

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        body = fetch_json(self.host, f"{self.url}{path}{query}")
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", query=expr)["result"]

    def targets(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/targets", state="active")["activeTargets"]

    def alerts(self, name: str, **labels: str) -> list[dict[str, Any]]:
        """Pending and firing alerts of that name whose labels include `labels`."""
        return [
            a
            for a in self._get("/api/v1/alerts")["alerts"]
            if a["labels"].get("alertname") == name
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def rule_groups(self) -> set[str]:
        return {g["name"] for g in self._get("/api/v1/rules", type="alert")["groups"]}
