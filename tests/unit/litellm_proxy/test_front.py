"""The gateways' TLS front over every gateway's proxy, from the role's own
variables on made-up gateway hosts: HAProxy's servers, the proxy's ports, and
the firewall of the port the fronts reach the proxies at."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from tests.support.loader import REPO
from tests.support.role_render import RoleVars, included, render_template, role_filters

ADDRESSES = {"gw1": "10.0.0.10", "gw2": "10.0.0.11"}
PEERS_TASKS = "roles/litellm_proxy/tasks/peers.yml"
PEERS = {name: {"host": address, "port": 4000} for name, address in ADDRESSES.items()}


def role(host: str = "gw1", **overrides: Any) -> RoleVars:
    base = {
        "inventory_hostname": host,
        "ansible_facts": {"default_ipv4": {"address": ADDRESSES[host]}},
        "ansible_host": ADDRESSES[host],
        # What docker_container_info said of the running proxy and ledger: none yet.
        "__litellm_proxy_running": {"results": [{"exists": False}, {"exists": False}]},
    }
    return RoleVars("litellm_proxy", base, overrides)


def running(*ports: int) -> dict[str, Any]:
    """docker_container_info's answer for a proxy that publishes ``ports``."""
    bindings = {
        "4000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)} for port in ports]
        + [{"HostIp": "10.0.0.10", "HostPort": str(port)} for port in ports]
    }
    return {"exists": True, "container": {"HostConfig": {"PortBindings": bindings}}}


def backends(variables: RoleVars) -> dict[str, list[str]]:
    """Each HAProxy backend's lines, and the frontend's use_backend lines."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in render_template("litellm_proxy", "haproxy.cfg.j2", variables).splitlines():
        if line and not line[0].isspace():
            section = line.strip()
        elif line.strip() and not line.strip().startswith("#"):
            found.setdefault(section, []).append(line.strip())
    return found


def servers(variables: RoleVars, backend: str = "litellm") -> list[str]:
    return [line for line in backends(variables)[f"backend {backend}"] if line.startswith("server")]


def ports(variables: RoleVars) -> list[str]:
    compose = yaml.safe_load(render_template("litellm_proxy", "compose.yaml.j2", variables))
    return compose["services"]["litellm"]["ports"]


def firewall(variables: RoleVars, table: str = "litellm_proxy") -> tuple[str, list[str]]:
    """One of the role's firewalls (the peer port's, or the ledger's): its state and
    its rules, as common's port_firewall writes them for that item of the loop."""
    tasks = yaml.safe_load((REPO / PEERS_TASKS).read_text())
    (task,) = [t for t in tasks if "ansible.builtin.include_role" in t]
    loop_var = task["loop_control"]["loop_var"]
    (item,) = [i for i in variables._resolve(task["loop"]) if i["table"] == table]
    with_item = RoleVars("litellm_proxy", {**variables._raw, loop_var: item}, {})
    given = included(with_item, PEERS_TASKS, "common", "port_firewall")
    text = render_template("common", "port_firewall.nft.j2", given)
    lines = [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]
    rules = [line for line in lines if "dport" in line or "elements" in line or "hook" in line]
    return given["common_port_firewall_state"], rules


def test_every_front_spreads_requests_over_every_gateways_proxy() -> None:
    for host in ADDRESSES:
        found = backends(role(host, litellm_proxy_peers=PEERS))
        assert found["backend litellm"][:2] == [
            "balance leastconn",
            "option httpchk GET /health/readiness",
        ]
        assert servers(role(host, litellm_proxy_peers=PEERS)) == [
            "server gw1 10.0.0.10:4000 check",
            "server gw2 10.0.0.11:4000 check",
        ]


def test_a_gateways_metrics_are_its_own_proxys() -> None:
    found = backends(role("gw2", litellm_proxy_peers=PEERS))
    assert "use_backend litellm_self if metrics" in found["frontend llm_gateway_tls"]
    assert servers(role("gw2", litellm_proxy_peers=PEERS), "litellm_self") == [
        "server gw2 10.0.0.11:4000 check"
    ]


def test_a_single_gateway_serves_its_own_proxy_at_its_lan_address() -> None:
    assert servers(role()) == ["server gw1 10.0.0.10:4000 check"]
    assert ports(role()) == ["127.0.0.1:4000:4000", "10.0.0.10:4000:4000"]


def test_the_runtime_api_is_for_root_alone() -> None:
    assert "stats socket /run/haproxy/admin.sock mode 600 level admin" in backends(role())["global"]


def test_the_sections_of_the_front_are_all_there() -> None:
    assert list(backends(role(litellm_proxy_peers=PEERS))) == [
        "global",
        "defaults",
        "frontend llm_gateway_tls",
        "frontend llm_gateway_http",
        "backend litellm",
        "backend litellm_self",
    ]
    assert backends(role())["frontend llm_gateway_http"] == [
        "bind 10.0.0.10:80",
        "http-request redirect scheme https code 308",
    ]


@pytest.mark.parametrize("peer", ["", "127.0.0.1", "::1"])
def test_a_single_gateway_may_keep_its_proxy_on_loopback_alone(peer: str) -> None:
    variables = role(litellm_proxy_peer_bind_address=peer)
    assert ports(variables) == ["127.0.0.1:4000:4000"]
    assert servers(variables) == ["server gw1 127.0.0.1:4000 check"]
    assert firewall(variables)[0] == "absent"


def test_without_tls_the_proxy_listens_on_its_own_address_only() -> None:
    variables = role(litellm_proxy_tls_enabled=False, litellm_proxy_bind_address="10.0.0.10")
    assert ports(variables) == ["10.0.0.10:4000:4000"]
    assert firewall(variables)[0] == "absent"


def test_the_proxys_lan_port_lets_in_the_gateways_only_ahead_of_dockers_nat() -> None:
    variables = role(litellm_proxy_peers=PEERS, litellm_proxy_peer_sources=["192.0.2.7"])
    state, rules = firewall(variables)
    assert state == "present"
    assert rules == [
        "elements = { 10.0.0.10/31, 192.0.2.7 }",  # both gateways, merged
        "type filter hook prerouting priority mangle; policy accept;",
        'iifname "lo" fib daddr type local tcp dport 4000 accept',
        "ip saddr @clients_v4 fib daddr type local tcp dport 4000 accept",
        "ip6 saddr @clients_v6 fib daddr type local tcp dport 4000 accept",
        "fib daddr type local tcp dport 4000 counter drop",
    ]
    assert firewall(role(litellm_proxy_firewall_enabled=False))[0] == "absent"


def test_a_gateway_that_published_loopback_is_left_out_of_the_others_fronts() -> None:
    """A gateway that was off when the endpoints were learnt has no facts; its
    loopback address would be the other gateway itself."""
    peers = {**PEERS, "gw2": {"host": "127.0.0.1", "port": 4000}}
    assert servers(role(litellm_proxy_peers=peers)) == ["server gw1 10.0.0.10:4000 check"]


def test_peers_are_checked() -> None:
    front = role_filters("litellm_proxy", "front")
    assert front is not None
    with pytest.raises(AnsibleFilterError, match="gw2 has no"):
        front.litellm_proxy_front_servers({"gw2": "10.0.0.11"}, "gw1", PEERS["gw1"])
    with pytest.raises(AnsibleFilterError, match="one HAProxy server name"):
        front.litellm_proxy_front_servers(
            {"gw 1": PEERS["gw2"], "gw_1": PEERS["gw2"]}, "gw1", PEERS["gw1"]
        )
    assert front.litellm_proxy_front_servers({"gw.b": PEERS["gw2"]}, "gw1", PEERS["gw1"]) == [
        {"name": "gw.b", "host": "10.0.0.11", "port": 4000, "this": False},
        {"name": "gw1", "host": "10.0.0.10", "port": 4000, "this": True},
    ]


def test_the_endpoint_says_where_the_fronts_reach_the_proxy() -> None:
    assert role()["_litellm_proxy_peer"] == {"host": "10.0.0.10", "port": 4000}
    alone = role(litellm_proxy_peer_bind_address="")
    assert alone["_litellm_proxy_peer"] == {"host": "127.0.0.1", "port": 4000}


def test_a_port_the_running_proxy_publishes_stays_guarded_while_the_stack_moves() -> None:
    """Before the deploy the table guards the running proxy's port beside the new
    one, so a change that cannot start leaves the previous stack behind its
    firewall; once the new stack runs, the role writes it with its port alone."""
    before = {"results": [running(4000), {"exists": False}]}
    moving = role(litellm_proxy_port=9100, __litellm_proxy_running=before)
    rules = firewall(moving)[1]
    assert rules[-1] == "fib daddr type local tcp dport { 4000, 9100 } counter drop"
    after = {"results": [running(9100), {"exists": False}]}
    rules = firewall(role(litellm_proxy_port=9100, __litellm_proxy_running=after))[1]
    assert rules[-1] == "fib daddr type local tcp dport 9100 counter drop"
    # A change that did not start: the previous stack is back, on its port alone.
    back = role(
        litellm_proxy_port=9100,
        __litellm_proxy_running=before,
        __litellm_proxy_firewall_follow="running",
    )
    assert firewall(back)[1][-1] == "fib daddr type local tcp dport 4000 counter drop"
    front = role_filters("litellm_proxy", "front")
    assert front is not None
    assert front.litellm_proxy_published_ports({"exists": False}) == []
    assert front.litellm_proxy_published_ports(running(4000, 4001)) == [4000, 4001]
