"""The house's one ledger database, from the role's own variables on two
made-up gateways: the ledger gateway's stack runs it and publishes it to the
other gateways alone; the other gateway's stack has no database and writes to
that one."""

from __future__ import annotations

from typing import Any

import yaml

from tests.support.role_render import RoleVars, render_template
from tests.unit.litellm_proxy.test_front import ADDRESSES, PEERS, firewall, role

PASSWORD = "unit-test-ledger-password-not-a-secret"


def gateway(host: str, **overrides: Any) -> RoleVars:
    ledger = {
        "litellm_proxy_peers": PEERS,
        "litellm_proxy_ledger_host": "gw1",
        "litellm_proxy_ledger_address": ADDRESSES["gw1"],
        "litellm_proxy_postgres_password": PASSWORD,
        "litellm_proxy_master_key": "sk-unit-test-master-key-not-a-secret-000",
        "__litellm_proxy_enabled_providers": [],
    }
    return role(host, **{**ledger, **overrides})


def services(variables: RoleVars) -> dict[str, Any]:
    return yaml.safe_load(render_template("litellm_proxy", "compose.yaml.j2", variables))


def dsn(variables: RoleVars) -> str:
    env = render_template("litellm_proxy", "litellm.env.j2", variables)
    (line,) = [line for line in env.splitlines() if line.startswith("GATEWAY_LEDGER_DSN=")]
    return line.partition("=")[2].strip("'")


def test_the_ledger_gateway_runs_the_database_and_publishes_it_to_the_gateways_alone() -> None:
    variables = gateway(
        "gw1", litellm_proxy_peer_sources=["192.0.2.7"]
    )  # the proxy's, not the ledger's
    compose = services(variables)
    assert compose["services"]["postgres"]["ports"] == ["10.0.0.10:5432:5432"]
    assert "postgres-data" in compose["volumes"]
    assert dsn(variables) == f"postgresql://litellm:{PASSWORD}@postgres:5432/litellm"
    assert [image["image"] for image in variables["_litellm_proxy_stack_images"]] == [
        variables["litellm_proxy_image"],
        variables["litellm_proxy_postgres_image"],
    ]
    state, rules = firewall(variables, "litellm_ledger")
    assert state == "present"
    assert rules[0] == "elements = { 10.0.0.10/31 }"  # both gateways
    assert rules[-1] == "fib daddr type local tcp dport 5432 counter drop"


def test_another_gateway_writes_to_the_ledger_gateways_database_and_runs_none() -> None:
    variables = gateway("gw2")
    compose = services(variables)
    assert set(compose["services"]) == {"litellm"}
    assert "volumes" not in compose
    # Its spool holds the rows while the ledger gateway is away.
    assert any(v.startswith("./ledger-spool:") for v in compose["services"]["litellm"]["volumes"])
    assert dsn(variables) == f"postgresql://litellm:{PASSWORD}@10.0.0.10:5432/litellm"
    assert [image["image"] for image in variables["_litellm_proxy_stack_images"]] == [
        variables["litellm_proxy_image"]
    ]
    assert firewall(variables, "litellm_ledger")[0] == "absent"
    assert firewall(variables, "litellm_proxy")[0] == "present"


def test_a_single_gateway_keeps_its_ledger_as_before() -> None:
    variables = gateway("gw1", litellm_proxy_peers={}, litellm_proxy_ledger_host="")
    assert dsn(variables).endswith("@postgres:5432/litellm")
    assert "postgres" in services(variables)["services"]
    alone = gateway("gw1", litellm_proxy_peers={}, litellm_proxy_peer_bind_address="")
    assert "ports" not in services(alone)["services"]["postgres"]
    assert firewall(alone, "litellm_ledger")[0] == "absent"
