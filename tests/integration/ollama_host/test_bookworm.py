"""The ollama_host role on Debian 12, the oldest release it supports: the second
Ollama host of the lab, with a model of its own that the gateway routes to it
and to nothing else. And what Debian 12 cannot be: a host of a Compose stack
(its only Compose is the old Python 1.29), refused before anything changes.

Real: a Debian 12 host with systemd, the role's install, service, firewall and
model tasks, the gateway's routing. Stand-in: the Ollama server (the provider
emulator, in an archive with Ollama's layout).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support.lab_client import Emulator, chat, flat, run_playbook

MODEL = "qwen2.5:0.5b"  # this host's own model
SHARED = "smollm2:135m"  # served by the other host too (test_shared_state.py)


@pytest.fixture(scope="module")
def bookworm(hosts: dict) -> object:
    return hosts["ollama-bookworm"]


@pytest.fixture
def bookworm_emulator(lab: dict[str, str]) -> Emulator:
    emulator = Emulator(lab["OLLAMA_BOOKWORM_URL"])
    emulator.clear()
    return emulator


def test_the_host_runs_debian_12(bookworm: object) -> None:
    assert bookworm.file("/etc/debian_version").content_string.startswith("12.")


def test_ollama_runs_there_behind_its_firewall(bookworm: object) -> None:
    assert bookworm.service("ollama").is_running
    assert bookworm.service("ollama").is_enabled
    assert bookworm.check_output("systemctl show -p User --value ollama") == "ollama"
    table = bookworm.check_output("nft list table inet ollama_host")
    assert "172.30.77.10" in table, table  # the gateway


def test_the_host_pulled_its_own_models(lab: dict[str, str]) -> None:
    tags = requests.get(f"{lab['OLLAMA_BOOKWORM_URL']}/api/tags", timeout=10).json()
    assert sorted(m["name"] for m in tags["models"]) == sorted([MODEL, SHARED])


def test_its_model_is_routed_to_it_and_the_other_hosts_model_is_not(
    gateway: requests.Session,
    gateway_url: str,
    bookworm_emulator: Emulator,
    ollama_emulator: Emulator,
) -> None:
    answer = chat(gateway, gateway_url, MODEL)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"].startswith(
        f"emulated reply from ollama model {MODEL}"
    )
    assert [r["path"] for r in bookworm_emulator.model_calls()] == ["/api/chat"]
    assert ollama_emulator.model_calls() == []

    bookworm_emulator.clear()
    for _ in range(5):
        assert chat(gateway, gateway_url, "llama3.2:1b").status_code == 200
    assert bookworm_emulator.model_calls() == [], "a model of one host was sent to the other"


def test_a_compose_stack_on_debian_12_is_refused_naming_the_way_out(
    lab: dict[str, str], tmp_path: Path, bookworm: object
) -> None:
    playbook = tmp_path / "docker-on-bookworm.yml"
    playbook.write_text(
        "- name: Try to give a Debian 12 host a Compose stack\n"
        "  hosts: llmlab-ollama-bookworm\n"
        "  become: true\n"
        "  tasks:\n"
        "    - name: Install Docker and Compose the way the stack roles do\n"
        "      ansible.builtin.include_role:\n"
        "        name: common\n"
        "        tasks_from: docker\n"
    )
    run = run_playbook(lab, str(playbook))
    output = flat(run.stdout)
    assert run.returncode != 0, output[-2000:]
    assert "llmlab-ollama-bookworm has no `docker compose` (Compose v2), and Debian 12" in output
    assert "Docker's own repository" in output and "Debian 13" in output
    assert not bookworm.package("docker.io").is_installed
