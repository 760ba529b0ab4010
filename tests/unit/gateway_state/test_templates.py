"""What the gateway_state role writes (its Redis config and firewall) and
publishes (gateway_state_endpoint), from the role's own variables."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from tests.support.role_render import RoleVars, included, render_template

PASSWORD = "unit-test-state-password-not-a-secret"
ADMIN_PASSWORD = "unit-test-state-admin-password-not-a-secret"


def role(host: str = "gw1", **overrides: Any) -> RoleVars:
    inventory = {
        "gw1": {"ansible_host": "10.0.0.10"},
        "gw2": {"ansible_host": "10.0.0.11"},
        "state": {"ansible_host": "10.0.0.30"},
    }
    base = {
        "inventory_hostname": host,
        "ansible_facts": {"default_ipv4": {"address": inventory[host]["ansible_host"]}},
        "ansible_host": inventory[host]["ansible_host"],
        "groups": {"gateway": ["gw1", "gw2"], "gateway_state": [host]},
        "gateway_state_password": PASSWORD,
        "gateway_state_admin_password": ADMIN_PASSWORD,
    }
    variables = RoleVars("gateway_state", base, overrides)
    variables._raw["hostvars"] = {  # the other hosts as the play sees them
        name: ({"ansible_host": info["ansible_host"]} if name != host else variables)
        for name, info in inventory.items()
    }
    return variables


def rules(variables: RoleVars) -> list[str]:
    """The firewall's rules and set elements, as common's port_firewall writes them."""
    firewall = included(variables, "roles/gateway_state/tasks/main.yml", "common", "port_firewall")
    text = render_template("common", "port_firewall.nft.j2", firewall)
    return [line.strip() for line in text.splitlines() if "dport" in line or "elements" in line]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_redis_listens_on_loopback_and_the_lan_with_two_accounts_and_writes_nothing() -> None:
    """The operator's account may do everything, the gateways' is held to keys and
    scripts; the config holds each password's SHA-256, never the password."""
    text = render_template("gateway_state", "redis.conf.j2", role())
    config = text.splitlines()
    assert "bind 127.0.0.1 10.0.0.10" in config
    assert f"user default reset on #{sha256(ADMIN_PASSWORD)} ~* &* +@all" in config
    assert f"user gateway reset on #{sha256(PASSWORD)} ~* &* +@all -@admin -@dangerous" in config
    assert PASSWORD not in text
    assert ADMIN_PASSWORD not in text
    assert not [line for line in config if line.startswith("requirepass")]
    assert 'save ""' in config
    assert "appendonly no" in config
    assert "protected-mode yes" in config


def test_only_the_gateways_and_this_hosts_containers_pass_the_firewall() -> None:
    on_a_gateway = rules(role("gw1"))
    assert on_a_gateway == [
        "elements = { 10.0.0.10/31 }",  # the two gateways, merged
        'iifname "lo" tcp dport 6379 accept',
        'iifname "docker0" tcp dport 6379 accept',
        'iifname "br-*" tcp dport 6379 accept',
        "ip saddr @clients_v4 tcp dport 6379 accept",
        "ip6 saddr @clients_v6 tcp dport 6379 accept",
        "tcp dport 6379 counter drop",
    ]
    # A state host that is no gateway lets no container in, and the extra sources.
    apart = rules(role("state", gateway_state_allowed_sources=["192.168.1.0/24", "fd00::7"]))
    assert not [line for line in apart if "docker0" in line or "br-" in line]
    assert apart[:2] == [
        "elements = { 10.0.0.10/31, 192.168.1.0/24 }",
        "elements = { fd00::7 }",
    ]


def test_a_source_that_is_no_address_is_refused_naming_it() -> None:
    with pytest.raises(AnsibleFilterError, match="not-an-address"):
        role(gateway_state_allowed_sources=["not-an-address"])["_gateway_state_firewall_sources"]


def test_the_gateways_are_given_the_lan_address_and_their_account() -> None:
    assert role()["gateway_state_bind_address"] == "10.0.0.10"
    assert role()["gateway_state_user"] == "gateway"
