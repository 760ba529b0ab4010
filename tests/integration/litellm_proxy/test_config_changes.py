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

from tests.integration.lab_client import answered_by, chat, flat, run_playbook

REPO = Path(__file__).resolve().parents[2]
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
    defaults = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
    return defaults["litellm_proxy_models"]


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
