"""An Ollama host that is off when you deploy (the GPU box asleep): the documented choice
is that the play reports that host as unreachable (the run fails, naming it), every
other host is deployed as usual, and the gateway keeps the sleeping host in its routes
at its inventory address, cooling it down while it does not answer, so it takes work
again as soon as it wakes up, without another deploy.

Real: ansible-playbook with site.yml against the lab's inventory plus one more Ollama
host at an address where nothing answers, the gateway it deploys, its router. Stand-in:
the Ollama that does answer, and the cloud APIs (the provider emulator).

It changes the whole stack for a while, so it runs last of the Ollama host's tests
(its name sorts last there) and puts back, before it ends, what the sleeping host
changed: the gateways' routes and probes and Prometheus' targets (gateway.yml and
monitoring.yml; the other hosts' plays do not depend on the Ollama hosts' list).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import yaml

from tests.support.lab_client import chat, flat, play_recap, run_playbook

ASLEEP = "llmlab-ollama-asleep"
ASLEEP_ADDRESS = "172.30.77.99"  # in the lab's network, and no host has it


@pytest.fixture(scope="module")
def asleep_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inventory") / "asleep.yml"
    host = {
        "ansible_host": ASLEEP_ADDRESS,
        "ansible_connection": "ssh",
        "ansible_user": "root",
        "ansible_ssh_common_args": "-o ConnectTimeout=5 -o StrictHostKeyChecking=no",
    }
    path.write_text(yaml.safe_dump({"ollama": {"hosts": {ASLEEP: host}}}))
    return path


def test_an_ollama_host_that_is_off_fails_clearly_and_the_rest_deploys(
    lab: dict[str, str],
    hosts: dict,
    gateway: requests.Session,
    gateway_url: str,
    asleep_inventory: Path,
) -> None:
    try:
        run = run_playbook(lab, "site.yml", None, "-i", str(asleep_inventory))
        output = run.stdout + run.stderr
        assert run.returncode != 0, output[-3000:]
        assert f"fatal: [{ASLEEP}]: UNREACHABLE!" in output, output[-3000:]
        counts = play_recap(run.stdout)
        assert counts[ASLEEP]["unreachable"] >= 1, counts
        for name in ("llmlab-gateway", "llmlab-gateway-2", "llmlab-ollama", "llmlab-monitoring"):
            assert counts[name]["failed"] == 0, (name, counts)
            assert counts[name]["unreachable"] == 0, (name, counts)
        assert "PLAY [Deploy Prometheus, Alertmanager and Grafana" in flat(output)

        # The sleeping host stays in the gateway's routes, at its inventory address...
        config = hosts["gateway"].file("/opt/litellm-proxy/config.yaml").content_string
        assert f"http://{ASLEEP_ADDRESS}:11434" in config
        # ...and the gateway keeps answering from the Ollama host that is up.
        for _ in range(5):
            answer = chat(gateway, gateway_url, "cheap")
            assert answer.status_code == 200, answer.text
    finally:
        restored = run_playbook(lab, ["playbooks/gateway.yml", "playbooks/monitoring.yml"])
    assert restored.returncode == 0, restored.stdout[-3000:]
    config = hosts["gateway"].file("/opt/litellm-proxy/config.yaml").content_string
    assert ASLEEP_ADDRESS not in config
    assert chat(gateway, gateway_url, "cheap").status_code == 200
