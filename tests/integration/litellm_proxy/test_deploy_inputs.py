"""Bad input at deploy time: each is refused before anything on a host changes, with a
message that names the problem and prints no secret, and the running stack keeps serving.

Real: ansible-playbook with the project's playbooks against the lab's inventory and
vault, and the gateway stack it would change. Stand-in: the upstreams behind the
gateway (the provider emulator).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import yaml

from tests.support.lab_client import changed_hosts, chat, flat, run_playbook

REPO = Path(__file__).resolve().parents[3]
DEFAULT_MODELS = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())[
    "litellm_proxy_models"
]
STACK_FILES = " ".join(
    [
        "/opt/litellm-proxy/config.yaml",
        "/opt/litellm-proxy/compose.yaml",
        "/opt/litellm-proxy/litellm.env",
        "/etc/haproxy/haproxy.cfg",
        "/etc/nftables.d/litellm_proxy.nft",
        "/etc/nftables.d/litellm_ledger.nft",
    ]
)

# (extra vars, what the failure must say)
CASES = {
    "wrong-type": (
        {"litellm_proxy_port": "four-thousand"},
        ["litellm_proxy_port", "int"],
    ),
    "unknown-choice": (
        {"litellm_proxy_service_state": "sideways"},
        ["litellm_proxy_service_state", "sideways", "present, stopped, absent"],
    ),
    "missing-vault-secret": (
        {"vault_litellm_master_key": ""},
        ["litellm_proxy_master_key (vault_litellm_master_key in the vault) is empty or missing"],
    ),
    "example-vault-value": (
        {"vault_litellm_postgres_password": "CHANGE-ME"},
        [
            "litellm_proxy_postgres_password (vault_litellm_postgres_password in the vault)"
            " is still the example value"
        ],
    ),
    "weak-master-key": (
        {"vault_litellm_master_key": "sk-1234"},
        ["litellm_proxy_master_key (vault_litellm_master_key in the vault) is a well-known"],
    ),
    "short-master-key": (
        {"vault_litellm_master_key": "sk-abcdefghij"},
        ["litellm_proxy_master_key", "is shorter than 32 characters"],
    ),
    "duplicate-alias": (
        {"litellm_proxy_models": [*DEFAULT_MODELS, DEFAULT_MODELS[0]]},
        ["model names must be unique; repeated: gpt-4o-mini"],
    ),
    "second-gateway-on-loopback": (
        {"litellm_proxy_peer_bind_address": "127.0.0.1", "litellm_proxy_gateway_count": 2},
        [
            'litellm_proxy_peer_bind_address is "127.0.0.1": with 2 gateway(s)',
            "not loopback or empty: the other gateways reach this proxy there",
        ],
    ),
    "unknown-provider": (
        {
            "litellm_proxy_models": [
                *DEFAULT_MODELS,
                {**DEFAULT_MODELS[0], "name": "typo-model", "provider": "openia"},
            ]
        },
        ["value of provider must be one of: openai, anthropic, gemini, got: openia"],
    ),
}


def stack_state(hosts: dict) -> str:
    """What would show a change: the gateway's containers (id and start time) and the
    checksums of the files the role writes."""
    gateway = hosts["gateway"]
    # The exact start time, not `docker ps`'s "3 minutes ago", which ages during the run.
    containers = gateway.check_output(
        "docker inspect --format '{{.Id}} {{.Name}} {{.State.StartedAt}}'"
        " $(docker ps -q --filter label=com.docker.compose.project=litellm-proxy) | sort"
    )
    sums = gateway.check_output(f"sha256sum {STACK_FILES}")
    assert "litellm-proxy-litellm-1" in containers, containers
    return f"{containers}\n{sums}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_deploy_input_is_refused_and_changes_nothing(
    case: str,
    lab: dict[str, str],
    hosts: dict,
    gateway: requests.Session,
    gateway_url: str,
    lab_secrets: list[str],
) -> None:
    extra_vars, expected = CASES[case]
    before = stack_state(hosts)

    run = run_playbook(lab, "playbooks/gateway.yml", extra_vars)

    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    for words in expected:
        assert words in flat(output), f"{words!r} not in:\n{output[-3000:]}"
    assert changed_hosts(run.stdout) == {}, "a refused run changed something"
    assert "TASK [litellm_proxy : Install Docker" not in output
    leaked = [s for s in lab_secrets if s in output]
    assert not leaked, f"{len(leaked)} secret value(s) in the output"
    assert stack_state(hosts) == before
    answer = chat(gateway, gateway_url, "cheap")
    assert answer.status_code == 200, answer.text
