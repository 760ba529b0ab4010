"""Fixtures for the tests that run against the lab (Molecule's verify step, or
`make lab-up` followed by `pytest tests/integration`).

Everything comes from `.lab/env`, which `scripts/lab.py` writes while the lab
is up. What is real in the lab: systemd, Docker, Compose, LiteLLM (the pinned
release from PyPI), Postgres and Prometheus. What is a stand-in: the cloud
APIs (OpenAI, Anthropic, Gemini) and the Ollama binary, both served by
tests/emulator/provider_emulator.py; the tests that touch them say so.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import testinfra
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from tests.support.lab_client import Emulator, run_playbook

REPO = Path(__file__).resolve().parents[2]
LAB_ENV = Path(os.environ.get("LAB_ENV_FILE", REPO / ".lab" / "env"))


def _read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ")
        key, _, raw = line.partition("=")
        values[key] = shlex.split(raw)[0] if raw else ""
    return values


@pytest.fixture(scope="session")
def lab() -> dict[str, str]:
    if not LAB_ENV.is_file():
        pytest.fail(f"{LAB_ENV} is missing: bring the lab up first (make lab-up)")
    return _read_env(LAB_ENV)


@pytest.fixture(scope="session")
def endpoints(lab: dict[str, str]) -> dict[str, Any]:
    """Where the lab's gateways and Ollama hosts serve, as their roles publish it
    (playbooks/endpoints.yml, the user's own way to ask)."""
    path = LAB_ENV.parent / "endpoints.json"
    result = run_playbook(lab, "playbooks/endpoints.yml", {"endpoints_file": str(path)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads(path.read_text())


@pytest.fixture(scope="session", autouse=True)
def background(request: pytest.FixtureRequest, lab: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Work that takes minutes on a host of its own, started as the session starts, so
    that the other tests run meanwhile: each selected module's `start_in_background(lab)`,
    by module name. The module's tests wait for what it returns; `close()` at the end."""
    modules = dict.fromkeys(getattr(item, "module", None) for item in request.session.items)
    jobs = {
        module.__name__: module.start_in_background(lab)
        for module in modules
        if hasattr(module, "start_in_background")
    }
    yield jobs
    for job in jobs.values():
        job.close()


@pytest.fixture(scope="session", autouse=True)
def trust_gateway_ca(lab: dict[str, str], endpoints: dict[str, Any]) -> Path:
    """Trust the CA the gateway role created (the gateway's endpoint is HTTPS), for
    requests (REQUESTS_CA_BUNDLE) and the SDKs' httpx (SSL_CERT_FILE)."""
    ca_file = endpoints["gateways"]["llmlab-gateway"]["ca_file"]
    pem = lab_host(lab, "gateway").file(ca_file).content_string
    assert "BEGIN CERTIFICATE" in pem, f"no CA certificate at {ca_file} on the gateway"
    path = LAB_ENV.parent / "gateway-ca.crt"
    path.write_text(pem)
    os.environ["REQUESTS_CA_BUNDLE"] = str(path)
    os.environ["SSL_CERT_FILE"] = str(path)
    return path


@pytest.fixture(scope="session")
def gateway_url(lab: dict[str, str]) -> str:
    return lab["GATEWAY_URL"]


@pytest.fixture(scope="session")
def gateway_key(lab: dict[str, str]) -> str:
    return lab["GATEWAY_KEY"]


@pytest.fixture(scope="session")
def emulator_url(lab: dict[str, str]) -> str:
    return lab["EMULATOR_URL"]


@pytest.fixture(scope="session")
def ollama_url(lab: dict[str, str]) -> str:
    return lab["OLLAMA_URL"]


@pytest.fixture(scope="session")
def gateway(lab: dict[str, str]) -> requests.Session:
    """A session that sends the lab's master key to the gateway."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {lab['GATEWAY_KEY']}"
    return session


def lab_host(lab: dict[str, str], name: str) -> testinfra.host.Host:
    """A testinfra handle on one lab host (`gateway`, `gateway-2`, `ollama`, `monitoring`, ...)."""
    inventory = lab["LAB_INVENTORY"]
    return testinfra.get_host(f"ansible://llmlab-{name}?ansible_inventory={inventory}")


@pytest.fixture(scope="session")
def hosts(lab: dict[str, str]) -> dict[str, testinfra.host.Host]:
    names = ("gateway", "gateway-2", "ollama", "ollama-bookworm", "monitoring", "providers")
    return {name: lab_host(lab, name) for name in names}


@pytest.fixture
def emulator(emulator_url: str) -> Iterator[Emulator]:
    """The cloud-API stand-in, with every provider reset to `ok` before and after."""
    emu = Emulator(emulator_url)
    for provider in ("openai", "anthropic", "gemini"):
        emu.set(provider, "ok")
    emu.clear()
    yield emu
    for provider in ("openai", "anthropic", "gemini"):
        emu.set(provider, "ok")


@pytest.fixture
def ollama_emulator(ollama_url: str) -> Iterator[Emulator]:
    """The Ollama stand-in on the ollama host, reset to `ok` before and after."""
    emu = Emulator(ollama_url)
    emu.set("ollama", "ok")
    emu.clear()
    yield emu
    emu.set("ollama", "ok")


def _flatten(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _flatten(v)]
    if isinstance(value, list):
        return [s for v in value for s in _flatten(v)]
    return [str(value)] if value else []


@pytest.fixture(scope="session")
def lab_vault() -> dict[str, Any]:
    """The lab's vault, decrypted: its secrets are fake."""
    password = (REPO / "molecule/default/vault-password.txt").read_bytes().strip()
    vault = VaultLib([("default", VaultSecret(password))])
    return yaml.safe_load(
        vault.decrypt((REPO / "molecule/default/group_vars/all/vault.yml").read_bytes())
    )


@pytest.fixture(scope="session")
def lab_secrets(lab_vault: dict[str, Any]) -> list[str]:
    """Every (fake) secret value of the lab's vault: no output or file may show one."""
    values = _flatten(lab_vault)
    assert len(values) >= 6
    return values
