"""Bad input gets a clear answer, reaches no upstream, and breaks nothing.

Real: HAProxy (TLS, body limit) in front of the LiteLLM proxy, the gateway's
auth hook, nftables on the Ollama host. Stand-ins: the upstreams (provider
emulator), which only serve here to prove that no bad request reached them.
The lab's application key `lab-app` may use `cheap` only, 5 requests a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.lab_client import Emulator

REPO = Path(__file__).resolve().parents[3]
LAB_VAULT_PASSWORD = REPO / "molecule/default/vault-password.txt"


def lab_app_key() -> str:
    """The lab's (fake) application key, read from the lab's vault."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([("default", VaultSecret(LAB_VAULT_PASSWORD.read_bytes().strip()))])
    text = (REPO / "molecule/default/group_vars/all/vault.yml").read_bytes()
    return yaml.safe_load(vault.decrypt(text))["vault_litellm_app_keys"]["lab-app"]


@pytest.fixture
def upstreams(emulator_url: str, ollama_url: str) -> tuple[Emulator, Emulator]:
    clouds, ollama = Emulator(emulator_url), Emulator(ollama_url)
    for provider in ("openai", "anthropic", "gemini"):
        clouds.set(provider, "ok")
    ollama.set("ollama", "ok")
    clouds.clear()
    ollama.clear()
    return clouds, ollama


def post(gateway_url: str, key: str | None, body: bytes | dict) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{gateway_url}/v1/chat/completions", data=data, headers=headers, timeout=30
    )


GOOD = {"model": "cheap", "messages": [{"role": "user", "content": "hello"}]}
BAD_REQUESTS = {
    "malformed-json": (b'{"model": "cheap", "messages": [', {400}),
    "missing-model": ({"messages": [{"role": "user", "content": "x"}]}, {400}),
    "unknown-model": ({"model": "no-such-model", "messages": GOOD["messages"]}, {400, 404}),
    "messages-wrong-type": ({"model": "cheap", "messages": "not a list"}, {400}),
    "oversized-body": (
        {"model": "cheap", "messages": [{"role": "user", "content": "x" * 70000}]},
        {413},
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_a_client_error_and_reaches_no_upstream(
    case: str, gateway_url: str, gateway_key: str, upstreams: tuple[Emulator, Emulator]
) -> None:
    body, expected = BAD_REQUESTS[case]
    answer = post(gateway_url, gateway_key, body)
    assert answer.status_code in expected, answer.text[:500]
    if case == "unknown-model":
        assert "no-such-model" in answer.text
    clouds, ollama = upstreams
    assert clouds.model_calls() == [] and ollama.model_calls() == []
    assert post(gateway_url, gateway_key, GOOD).status_code == 200


@pytest.mark.parametrize(
    ("key", "expected"), [(None, 401), ("sk-wrong-key-00000000000000000000000", 401)]
)
def test_missing_or_wrong_key_gets_401(
    key: str | None, expected: int, gateway_url: str, upstreams: tuple[Emulator, Emulator]
) -> None:
    assert post(gateway_url, key, GOOD).status_code == expected
    clouds, ollama = upstreams
    assert clouds.model_calls() == [] and ollama.model_calls() == []


def test_app_key_is_held_to_its_aliases_and_its_rate(
    gateway_url: str, gateway_key: str, upstreams: tuple[Emulator, Emulator]
) -> None:
    key = lab_app_key()
    clouds, ollama = upstreams
    forbidden = post(gateway_url, key, {**GOOD, "model": "smart"})
    assert forbidden.status_code == 403
    assert "smart" in forbidden.text
    assert clouds.model_calls() == []

    statuses = [post(gateway_url, key, GOOD).status_code for _ in range(6)]
    assert statuses.count(429) >= 1, statuses
    limited = post(gateway_url, key, GOOD)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # Only the allowed requests reached an upstream; the master key still works.
    served = len(ollama.model_calls()) + len(clouds.model_calls())
    assert served == statuses.count(200)
    assert post(gateway_url, gateway_key, GOOD).status_code == 200


def test_metrics_need_a_key(gateway_url: str, gateway_key: str) -> None:
    assert requests.get(f"{gateway_url}/metrics", timeout=30).status_code == 401
    assert requests.get(f"{gateway_url}/health/liveliness", timeout=30).status_code == 200
    assert requests.get(f"{gateway_url}/health/readiness", timeout=30).status_code == 200
    with_key = requests.get(
        f"{gateway_url}/metrics", headers={"Authorization": f"Bearer {gateway_key}"}, timeout=30
    )
    assert with_key.status_code == 200


PROBE = """
import ssl, sys, urllib.request, urllib.error
url = sys.argv[1]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=ctx))
try:
    print(opener.open(url, timeout=3).status)
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get("location", ""))
except Exception as e:
    print("refused", type(e).__name__)
"""


def probe(host, url: str) -> str:  # host: a testinfra host
    return host.check_output(f"python3 -c '{PROBE}' {url}")


def test_lan_device_cannot_reach_ollama_or_plain_http_gateway(hosts: dict) -> None:
    """From the providers host (any other device on the LAN)."""
    lan = hosts["providers"]
    assert probe(lan, "http://172.30.77.11:11434/api/version").startswith("refused")
    assert probe(lan, "http://172.30.77.10:4000/health/readiness").startswith("refused")
    redirect = probe(lan, "http://172.30.77.10/v1/models")
    assert redirect.startswith("308 https://"), redirect
    assert probe(lan, "https://172.30.77.10/v1/models").startswith("401")
    # Prometheus and Alertmanager listen on the monitoring host's loopback only.
    assert probe(lan, "http://172.30.77.12:9090/-/ready").startswith("refused")
    assert probe(lan, "http://172.30.77.12:9093/-/ready").startswith("refused")


# Bind mounts a container may write to: the cost ledger's spool. Every other file or
# folder of the host that a container sees (configs, callbacks) is mounted read-only.
WRITABLE_BINDS = {"/var/lib/gateway-ledger"}


@pytest.mark.parametrize("name", ["gateway", "monitoring"])
def test_containers_run_as_non_root_with_read_only_configs_and_no_docker_socket(
    name: str, hosts: dict
) -> None:
    host = hosts[name]
    ids = host.check_output("docker ps -q").split()
    assert ids, f"no container runs on {name}"
    for container in json.loads(host.check_output(f"docker inspect {' '.join(ids)}")):
        cname = container["Name"]
        for mount in container["Mounts"]:
            assert "docker.sock" not in mount.get("Source", ""), (cname, mount)
            if mount["Type"] == "bind" and mount["Destination"] not in WRITABLE_BINDS:
                assert mount["RW"] is False, (cname, mount)
        processes = host.check_output(f"docker top {container['Id']} -eo pid,uid,comm")
        uids = {line.split()[1] for line in processes.splitlines()[1:]}
        assert uids and "0" not in uids, f"{cname} runs processes as root:\n{processes}"
    if name == "gateway":
        (proxy,) = json.loads(host.check_output("docker inspect litellm-proxy-litellm-1"))
        assert proxy["HostConfig"]["CapDrop"] == ["ALL"]
