"""Changing the gateway by re-running the playbook: a good change takes effect, a broken
one is refused while the old proxy keeps serving.

Real: ansible-playbook with the project's playbooks/gateway.yml against the lab's
inventory, and the LiteLLM proxy it (re)starts. Stand-in: the upstream that
answers (the provider emulator).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.lab_client import (
    answered_by,
    chat,
    flat,
    run_playbook,
    wait_until,
)

REPO = Path(__file__).resolve().parents[3]
LITELLM = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
EXTRA_MODEL = {
    "name": "lab-extra-model",
    "provider": "openai",
    "model": "gpt-4o-mini-extra",
    "tier": "cheap",
    "input_cost_per_token": 0.0000002,
    "output_cost_per_token": 0.0000008,
    "context_window": 128000,
}


def run_gateway_play(lab: dict[str, str], extra_vars: dict) -> subprocess.CompletedProcess[str]:
    return run_playbook(lab, "playbooks/gateway.yml", extra_vars)


def served_models(gateway: requests.Session, gateway_url: str) -> set[str]:
    answer = gateway.get(f"{gateway_url}/v1/models", timeout=30)
    answer.raise_for_status()
    return {m["id"] for m in answer.json()["data"]}


@pytest.fixture(scope="module")
def default_models() -> list[dict]:
    return LITELLM["litellm_proxy_models"]


def test_new_model_applies_and_broken_config_is_refused_with_old_proxy_serving(
    lab: dict[str, str], gateway: requests.Session, gateway_url: str, default_models: list[dict]
) -> None:
    added = run_gateway_play(lab, {"litellm_proxy_models": [*default_models, EXTRA_MODEL]})
    try:
        assert added.returncode == 0, added.stdout[-3000:]
        assert "lab-extra-model" in served_models(gateway, gateway_url)
        answer = chat(gateway, gateway_url, "lab-extra-model")
        assert answer.status_code == 200, answer.text
        assert answered_by(answer) == "openai/gpt-4o-mini-extra"

        broken = run_gateway_play(
            lab,
            {
                "litellm_proxy_models": [*default_models, EXTRA_MODEL],
                "litellm_proxy_router_settings": {"routing_strategy": "no-such-strategy"},
            },
        )
        assert broken.returncode != 0
        assert "refused before it replaced the running one" in flat(broken.stdout)
        assert "no-such-strategy" in flat(broken.stdout)
        # The proxy that was running still serves, with the config it had.
        assert chat(gateway, gateway_url, "lab-extra-model").status_code == 200
        assert chat(gateway, gateway_url, "cheap").status_code == 200
    finally:
        restored = run_gateway_play(lab, {})
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert "lab-extra-model" not in served_models(gateway, gateway_url)
    assert chat(gateway, gateway_url, "cheap").status_code == 200


# The stack's files, and the firewall of the ports only the gateways reach: a
# change that cannot start leaves the previous stack behind its own firewall.
STACK_FILES = (
    "/opt/litellm-proxy/config.yaml /opt/litellm-proxy/compose.yaml /opt/litellm-proxy/litellm.env"
    " /etc/nftables.d/litellm_proxy.nft /etc/nftables.d/litellm_ledger.nft"
)
# Changes the proxy's loader accepts but that cannot start, or not in time:
# the play must bring the previous proxy back for real and say what happened.
CANNOT_START = {
    # The node exporter already listens on port 9100 of every address.
    "port-taken": (
        {"litellm_proxy_port": 9100},
        ["address already in use", "previous proxy was recreated from them and serves again"],
    ),
    # An image whose entrypoint exits at once (LiteLLM's own loader, run with
    # python3 in it, accepts the config): built on the gateway from the lab's.
    "image-exits-at-once": (
        {
            "litellm_proxy_image": "EXITS",
            "litellm_proxy_image_archive": "",
            "litellm_proxy_ready_timeout": 20,
        },
        [
            "did not start or become ready",
            "previous proxy was recreated from them and serves again",
        ],
    ),
    # A setting LiteLLM's loader accepts and its start refuses: LiteLLM 1.108
    # will not start with a publicly known master key in its config
    # (litellm/proxy/auth/master_key_boot_check.py). The play waits the whole
    # timeout, then reads the log: long enough for LiteLLM to get that far
    # while the first-deploy test's host is busy beside it.
    "refused-at-start": (
        {
            "litellm_proxy_general_settings": {"master_key": "sk-1234"},
            "litellm_proxy_ready_timeout": 60,
        },
        [
            "LiteLLM proxy refused to start",
            "previous proxy was recreated from them and serves again",
        ],
    ),
    # A good change that is not ready within the time the play waits.
    "not-ready-in-time": (
        {"litellm_proxy_models": "EXTRA", "litellm_proxy_ready_timeout": 2},
        [
            "did not start or become ready",
            "previous proxy was recreated from them and serves again",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(CANNOT_START))
def test_a_change_that_cannot_start_brings_the_previous_proxy_back(
    case: str,
    lab: dict[str, str],
    hosts: dict,
    gateway: requests.Session,
    gateway_url: str,
    default_models: list[dict],
) -> None:
    extra_vars, expected = CANNOT_START[case]
    gateway_host = hosts["gateway"]
    if extra_vars.get("litellm_proxy_models") == "EXTRA":
        extra_vars = {**extra_vars, "litellm_proxy_models": [*default_models, EXTRA_MODEL]}
    if extra_vars.get("litellm_proxy_image") == "EXITS":
        image = lab["LAB_LITELLM_IMAGE"].rsplit(":", 1)[0] + ":exits-at-once"
        gateway_host.run_expect(
            [0],
            "docker rm -f llmlab-exits >/dev/null 2>&1; "
            f"docker create --name llmlab-exits {lab['LAB_LITELLM_IMAGE']} && "
            f"docker commit --change 'ENTRYPOINT [\"/bin/false\"]' llmlab-exits {image} && "
            "docker rm llmlab-exits",
        )
        extra_vars = {**extra_vars, "litellm_proxy_image": image}
    before = gateway_host.check_output(f"sha256sum {STACK_FILES}")
    try:
        run = run_gateway_play(lab, extra_vars)
        output = flat(run.stdout + run.stderr)
        assert run.returncode != 0, output[-3000:]
        for words in expected:
            assert words in output, f"{words!r} not in: {output[-3000:]}"
        assert gateway_host.check_output(f"sha256sum {STACK_FILES}") == before
        table = gateway_host.check_output("nft list table inet litellm_proxy")
        assert f"dport {LITELLM['litellm_proxy_port']} counter" in table  # its port alone
        wait_until(
            lambda: chat(gateway, gateway_url, "cheap").status_code == 200,
            30,
            "the previous proxy answering through the TLS front",
        )
        assert "lab-extra-model" not in served_models(gateway, gateway_url)
    finally:
        # Compose's own judgement, without touching anything: would `up` recreate a
        # container, because what runs is not what the files say? Only then does
        # the play run again, to leave the lab as it was for the next tests.
        plan = gateway_host.run(
            f"cd {LITELLM['litellm_proxy_project_dir']} && docker compose"
            f" -p {LITELLM['litellm_proxy_compose_project']} --dry-run up -d --no-build"
        )
        if plan.rc != 0 or "Recreate" in plan.stdout + plan.stderr:
            run_gateway_play(lab, {})
    assert plan.rc == 0, plan.stderr
    planned = [line for line in (plan.stdout + plan.stderr).splitlines() if "Container" in line]
    assert len(planned) == 2 and all(line.endswith("Running") for line in planned), (
        f"the previous stack is not what the files say: {planned}"
    )
