"""Playbooks a user runs after the deploy, and the Ollama role's model management.

Real: ansible-playbook with the project's playbooks against the lab, the
gateway they talk to. Stand-ins: the Ollama binary and the cloud APIs (the
provider emulator), whose /api/tags and request logs the assertions read.
"""

from __future__ import annotations

import requests

from tests.support.lab_client import changed_hosts, flat, run_playbook


def ollama_models(ollama_url: str) -> set[str]:
    answer = requests.get(f"{ollama_url}/api/tags", timeout=10)
    answer.raise_for_status()
    return {m["name"] for m in answer.json()["models"]}


def test_a_model_switched_to_absent_is_removed(lab: dict[str, str], ollama_url: str) -> None:
    """The lab lists llama3.2:3b as absent: pulled by hand, the next run deletes it."""
    pulled = requests.post(
        f"{ollama_url}/api/pull", json={"model": "llama3.2:3b", "stream": False}, timeout=60
    )
    assert pulled.status_code == 200, pulled.text
    assert "llama3.2:3b" in ollama_models(ollama_url)

    run = run_playbook(lab, "playbooks/ollama.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "llama3.2:3b" not in ollama_models(ollama_url)
    assert {"llama3.2:1b", "nomic-embed-text:latest"} <= ollama_models(ollama_url)

    again = run_playbook(lab, "playbooks/ollama.yml")
    assert again.returncode == 0, again.stdout[-3000:]
    assert changed_hosts(again.stdout) == {}


def test_smoke_playbook_reports_every_alias_and_model(lab: dict[str, str]) -> None:
    run = run_playbook(lab, "playbooks/smoke.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    out = flat(run.stdout)
    for name in ("cheap", "balanced", "smart", "embed", "auto", "gpt-4o-mini", "llama3.2:1b"):
        assert f"{name} " in out, name
    assert "alias/model" in out and "latency" in out
