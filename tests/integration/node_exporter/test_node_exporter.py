"""The node_exporter role on every host of the stack.

Real: Debian's prometheus-node-exporter under systemd on the lab's hosts, and
the monitoring host's Prometheus scraping it (tests/integration/monitoring).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import testinfra
import yaml

from tests.support.lab_client import service_running

REPO = Path(__file__).resolve().parents[3]
DEFAULTS = yaml.safe_load((REPO / "roles/node_exporter/defaults/main.yml").read_text())
STACK_HOSTS = ("gateway", "gateway-2", "ollama", "ollama-bookworm", "monitoring")


@pytest.mark.parametrize("name", STACK_HOSTS)
def test_the_node_exporter_runs_on_every_host(
    name: str, hosts: dict[str, testinfra.host.Host]
) -> None:
    service_running(hosts[name], DEFAULTS["node_exporter_package"])


@pytest.mark.parametrize("name", STACK_HOSTS)
def test_the_node_exporter_is_sandboxed_and_serves_its_textfile_folder(
    name: str, hosts: dict[str, testinfra.host.Host]
) -> None:
    host = hosts[name]
    unit = DEFAULTS["node_exporter_package"]
    shown = host.run(
        f"systemctl show {unit} -p NoNewPrivileges -p ProtectSystem -p ProtectHome "
        "-p CapabilityBoundingSet"
    ).stdout
    assert "NoNewPrivileges=yes" in shown
    assert "ProtectSystem=strict" in shown
    assert "ProtectHome=read-only" in shown
    assert "CapabilityBoundingSet=\n" in shown + "\n"
    metrics = host.run(
        f'python3 -c "import urllib.request; print(urllib.request.urlopen('
        f"'http://127.0.0.1:{DEFAULTS['node_exporter_port']}/metrics', timeout=10)"
        '.read().decode())"'
    )
    assert metrics.rc == 0, metrics.stderr
    assert "node_textfile_scrape_error 0" in metrics.stdout
