"""The gateways' TLS front over every gateway's proxy (issue 16): each proxy
also listens on its gateway's LAN address, where only the gateway hosts get
in, and each gateway's HAProxy spreads the house's requests over all of them,
checked on their readiness. The lab has one gateway, so its front has one
server; the unit tests (tests/unit/litellm_proxy/test_front.py) render the
two-gateway config."""

from __future__ import annotations

import csv
import io
import shlex
from typing import Any

import testinfra
import yaml

from tests.integration.litellm_proxy.test_shared_state import CONNECT, REPO

DEFAULTS = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
SOCKET = "/run/haproxy/admin.sock"  # roles/litellm_proxy/vars/main.yml
READINESS = (
    "python3 -c 'import sys, urllib.request; "
    'print(urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/health/readiness",'
    " timeout=5).status)'"
)


def runtime_api(gateway: testinfra.host.Host, command: str) -> str:
    """One command of HAProxy's runtime API on the gateway, as root."""
    script = (
        "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
        "s.sendall(sys.argv[2].encode() + b'\\n'); out = b''\n"
        "while chunk := s.recv(65536): out += chunk\n"
        "sys.stdout.write(out.decode())"
    )
    result = gateway.run(f"python3 -c {shlex.quote(script)} {SOCKET} {shlex.quote(command)}")
    assert result.rc == 0, result.stderr
    return result.stdout


def test_only_the_gateways_reach_a_proxy_past_the_front(
    hosts: dict[str, testinfra.host.Host], endpoints: dict[str, Any]
) -> None:
    """The gateway's proxy answers its readiness on the LAN address it published
    for the fronts; every other lab host is dropped there (Docker forwards the
    port to the container, so the table filters at prerouting), and the drop
    is counted."""
    (peer,) = [gateway["peer"] for gateway in endpoints["gateways"].values()]
    assert peer == {"host": "172.30.77.10", "port": DEFAULTS["litellm_proxy_port"]}
    gateway = hosts["gateway"]
    answer = gateway.run(f"{READINESS} {peer['host']} {peer['port']}")
    assert answer.stdout.strip() == "200", answer.stderr
    for name in ("providers", "monitoring", "ollama"):
        probe = hosts[name].run(f"{CONNECT} {peer['host']} {peer['port']}")
        assert probe.rc != 0, f"{name} reached the proxy past the front"
        assert "timed out" in probe.stderr, probe.stderr  # dropped, not refused
    table = gateway.check_output("nft list table inet litellm_proxy")
    assert "hook prerouting priority mangle" in table  # -150, ahead of Docker's NAT
    (drop,) = [line for line in table.splitlines() if "counter" in line and "drop" in line]
    assert " packets 0 " not in drop, drop


def test_the_front_serves_every_gateways_proxy_checked_on_readiness(
    hosts: dict[str, testinfra.host.Host], endpoints: dict[str, Any]
) -> None:
    """HAProxy's runtime API lists one server per gateway, at the address each
    published, up; the backend for metrics holds this gateway's proxy alone."""
    gateway = hosts["gateway"]
    stats = list(csv.DictReader(io.StringIO(runtime_api(gateway, "show stat").lstrip("# "))))
    servers = {
        (row["pxname"], row["svname"]): row
        for row in stats
        if row["svname"] not in ("FRONTEND", "BACKEND")
    }
    published = {name: gateway["peer"] for name, gateway in endpoints["gateways"].items()}
    assert sorted(name for backend, name in servers if backend == "litellm") == sorted(published)
    assert [name for backend, name in servers if backend == "litellm_self"] == ["llmlab-gateway"]
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
    """The lab's gateway is the ledger gateway: its stack publishes the one ledger
    database on its LAN address for the other gateways, and drops every other
    host there; its own proxy writes to it inside the stack."""
    (peer,) = [gateway["peer"] for gateway in endpoints["gateways"].values()]
    port = DEFAULTS["litellm_proxy_ledger_port"]
    gateway = hosts["gateway"]
    assert gateway.run(f"{CONNECT} {peer['host']} {port}").rc == 0
    for name in ("providers", "monitoring", "ollama"):
        probe = hosts[name].run(f"{CONNECT} {peer['host']} {port}")
        assert probe.rc != 0, f"{name} reached the ledger database"
        assert "timed out" in probe.stderr, probe.stderr  # dropped, not refused
    table = gateway.check_output("nft list table inet litellm_ledger")
    assert f"dport {port} counter" in table
    env = gateway.check_output("cat /opt/litellm-proxy/litellm.env")
    (dsn,) = [line for line in env.splitlines() if line.startswith("GATEWAY_LEDGER_DSN=")]
    assert dsn.partition("@")[2].startswith("postgres:5432/")  # its own, inside the stack
