"""The gateways' TLS front over every gateway's proxy (issue 16): each proxy
also listens on its gateway's LAN address, where only the gateway hosts get
in, and each gateway's HAProxy spreads the house's requests over all of them,
checked on their readiness. The lab has two gateways; the first is the
ledger gateway."""

from __future__ import annotations

import csv
import io
from typing import Any

import testinfra
import yaml

from tests.integration.litellm_proxy.test_shared_state import CONNECT, REPO
from tests.support.haproxy import runtime_api

DEFAULTS = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
GATEWAYS = ("gateway", "gateway-2")
READINESS = (
    "python3 -c 'import sys, urllib.request; "
    'print(urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/health/readiness",'
    " timeout=5).status)'"
)


def test_only_the_gateways_reach_a_proxy_past_the_front(
    hosts: dict[str, testinfra.host.Host], endpoints: dict[str, Any]
) -> None:
    """Each gateway's proxy answers its readiness on the LAN address it published
    for the fronts, to both gateways; every other lab host is dropped there
    (Docker forwards the port to the container, so the table filters at
    prerouting), and the drop is counted."""
    peers = {name: gateway["peer"] for name, gateway in endpoints["gateways"].items()}
    assert peers == {
        "llmlab-gateway": {"host": "172.30.77.10", "port": DEFAULTS["litellm_proxy_port"]},
        "llmlab-gateway-2": {"host": "172.30.77.15", "port": DEFAULTS["litellm_proxy_port"]},
    }
    for name, peer in peers.items():
        for client in GATEWAYS:
            answer = hosts[client].run(f"{READINESS} {peer['host']} {peer['port']}")
            assert answer.stdout.strip() == "200", (client, name, answer.stderr)
        for other in ("providers", "monitoring", "ollama"):
            probe = hosts[other].run(f"{CONNECT} {peer['host']} {peer['port']}")
            assert probe.rc != 0, f"{other} reached {name}'s proxy past the front"
            assert "timed out" in probe.stderr, probe.stderr  # dropped, not refused
        table = hosts[name.removeprefix("llmlab-")].check_output(
            "nft list table inet litellm_proxy"
        )
        assert "hook prerouting priority mangle" in table  # -150, ahead of Docker's NAT
        (drop,) = [line for line in table.splitlines() if "counter" in line and "drop" in line]
        assert " packets 0 " not in drop, drop


def test_every_front_serves_every_gateways_proxy_checked_on_readiness(
    hosts: dict[str, testinfra.host.Host], endpoints: dict[str, Any]
) -> None:
    """Each gateway's HAProxy lists one server per gateway, at the address each
    published, up; its backend for metrics holds its own proxy alone."""
    published = {name: gateway["peer"] for name, gateway in endpoints["gateways"].items()}
    for short in GATEWAYS:
        gateway = hosts[short]
        stats = list(csv.DictReader(io.StringIO(runtime_api(gateway, "show stat").lstrip("# "))))
        servers = {
            (row["pxname"], row["svname"]): row
            for row in stats
            if row["svname"] not in ("FRONTEND", "BACKEND")
        }
        assert sorted(name for backend, name in servers if backend == "litellm") == sorted(
            published
        )
        assert [name for backend, name in servers if backend == "litellm_self"] == [
            f"llmlab-{short}"
        ]
        for row in servers.values():
            assert row["status"] == "UP", row
            assert row["check_status"] == "L7OK", row
        addresses = runtime_api(gateway, "show servers state litellm")
        for name, peer in published.items():
            assert f" {name} {peer['host']} " in addresses, addresses
        config = gateway.file("/etc/haproxy/haproxy.cfg").content_string
        assert config.count("option httpchk GET /health/readiness") == 2


def test_only_the_gateways_reach_the_houses_ledger_database(
    hosts: dict[str, testinfra.host.Host], endpoints: dict[str, Any]
) -> None:
    """The first gateway is the ledger gateway: its stack publishes the one
    ledger database on its LAN address for the other gateway, and drops every
    other host there; its own proxy writes to it inside the stack, the second
    gateway's over the LAN, and the second gateway runs no database."""
    peer = endpoints["gateways"]["llmlab-gateway"]["peer"]
    port = DEFAULTS["litellm_proxy_ledger_port"]
    for short in GATEWAYS:
        assert hosts[short].run(f"{CONNECT} {peer['host']} {port}").rc == 0, short
    for name in ("providers", "monitoring", "ollama"):
        probe = hosts[name].run(f"{CONNECT} {peer['host']} {port}")
        assert probe.rc != 0, f"{name} reached the ledger database"
        assert "timed out" in probe.stderr, probe.stderr  # dropped, not refused
    table = hosts["gateway"].check_output("nft list table inet litellm_ledger")
    assert f"dport {port} counter" in table

    def dsn(short: str) -> str:
        env = hosts[short].check_output("cat /opt/litellm-proxy/litellm.env")
        (line,) = [line for line in env.splitlines() if line.startswith("GATEWAY_LEDGER_DSN=")]
        return line.partition("@")[2]

    assert dsn("gateway").startswith("postgres:5432/")  # its own, inside the stack
    assert dsn("gateway-2").startswith(f"{peer['host']}:{port}/")
    containers = hosts["gateway-2"].check_output("docker ps --format '{{.Names}}'").split()
    assert not [name for name in containers if "postgres" in name], containers
