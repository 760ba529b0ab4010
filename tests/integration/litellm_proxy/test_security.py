"""Bad input gets a clear answer, reaches no upstream, and breaks nothing.

Real: HAProxy (TLS, body limit) in front of the LiteLLM proxy, the gateway's
auth hook, nftables on the Ollama host. Stand-ins: the upstreams (provider
emulator), which only serve here to prove that no bad request reached them.
The lab's application key `lab-app` may use `cheap` only, 5 requests a minute.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
from pathlib import Path
from typing import Any

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


# --- least privilege at the front and in the hook -----------------------------------

REQUEST = """
import base64, json, ssl, sys, urllib.request, urllib.error
spec = json.loads(base64.b64decode(sys.argv[1]))
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
data = json.dumps(spec["body"]).encode() if spec.get("body") is not None else None
request = urllib.request.Request(
    spec["url"], data=data, method=spec["method"], headers=spec["headers"]
)
try:
    answer = urllib.request.urlopen(request, context=ctx, timeout=20)
    print(json.dumps({"status": answer.status, "body": answer.read().decode(errors="replace")}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")}))
"""


def from_host(
    host, method: str, url: str, key: str | None = None, body: dict | None = None
) -> dict:
    """A request from another machine of the lab (its own address as the source)."""
    import base64

    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    spec = {"method": method, "url": url, "headers": headers, "body": body}
    encoded = base64.b64encode(json.dumps(spec).encode()).decode()
    return json.loads(host.check_output(f"python3 -c '{REQUEST}' {encoded}"))


def house_key() -> str:
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([("default", VaultSecret(LAB_VAULT_PASSWORD.read_bytes().strip()))])
    text = (REPO / "molecule/default/group_vars/all/vault.yml").read_bytes()
    return yaml.safe_load(vault.decrypt(text))["vault_litellm_app_keys"]["house"]


FRONT = "https://172.30.77.10"
# Routes the house must not reach, whatever key it holds: LiteLLM's admin,
# spend, cache and pass-through routes, /health (which calls every upstream),
# the UI, and the cost ledger's API.
ADMIN_ROUTES = [
    ("POST", "/key/generate"),
    ("POST", "/user/new"),
    ("POST", "/team/new"),
    ("POST", "/model/new"),
    ("GET", "/model/info"),
    ("POST", "/config/update"),
    ("GET", "/ui"),
    ("GET", "/spend/logs"),
    ("GET", "/global/spend"),
    ("GET", "/cache/ping"),
    ("GET", "/health"),
    ("POST", "/openai/v1/chat/completions"),
    ("POST", "/anthropic/v1/messages"),
    ("POST", "/gemini/v1beta/models/gemini-2.5-flash:generateContent"),
    ("POST", "/vertex_ai/v1/projects/x/locations/y/publishers/google/models/z:generateContent"),
    ("GET", "/gateway/ledger/status"),
    ("PUT", "/gateway/ledger/budgets/12"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_the_front_refuses_every_route_it_does_not_list(
    method: str, path: str, hosts: dict, gateway_key: str, upstreams: tuple[Emulator, Emulator]
) -> None:
    """From a LAN device, even with the master key: only listed routes pass the front."""
    answer = from_host(hosts["providers"], method, f"{FRONT}{path}", gateway_key, body={})
    assert answer["status"] == 403, answer
    assert "not served to the house" in answer["body"]
    clouds, ollama = upstreams
    assert clouds.requests() == [] and ollama.model_calls() == []


def test_the_house_reaches_what_it_needs(hosts: dict, gateway_key: str) -> None:
    lan = hosts["providers"]
    assert from_host(lan, "GET", f"{FRONT}/health/liveliness")["status"] == 200
    assert from_host(lan, "GET", f"{FRONT}/health/readiness")["status"] == 200
    assert from_host(lan, "GET", f"{FRONT}/v1/models", house_key())["status"] == 200
    answer = from_host(lan, "POST", f"{FRONT}/v1/chat/completions", house_key(), GOOD)
    assert answer["status"] == 200, answer


def test_the_operator_reaches_the_ledger_from_an_operator_address(
    hosts: dict, gateway_key: str
) -> None:
    """From the gateway host itself (and litellm_proxy_admin_sources), with the master key;
    never with an application key, from anywhere."""
    ledger = f"{FRONT}/gateway/ledger/status"
    assert from_host(hosts["gateway"], "GET", ledger, gateway_key)["status"] == 200
    refused = from_host(hosts["gateway"], "GET", ledger, house_key())
    assert refused["status"] == 403, refused
    assert "may only use the model API" in refused["body"]


def test_an_app_key_cannot_widen_its_models_through_the_body(
    gateway_url: str, upstreams: tuple[Emulator, Emulator]
) -> None:
    clouds, ollama = upstreams
    for field, value in (
        ("fallbacks", ["claude-sonnet-4-5"]),
        ("context_window_fallbacks", [{"cheap": ["smart"]}]),
        ("content_policy_fallbacks", [{"cheap": ["smart"]}]),
    ):
        answer = post(gateway_url, lab_app_key(), {**GOOD, field: value})
        assert answer.status_code == 400, answer.text
        assert field in answer.text
    assert clouds.model_calls() == [] and ollama.model_calls() == []


def test_the_tier_fallbacks_do_not_carry_an_app_outside_its_aliases(
    gateway_url: str, gateway_key: str, upstreams: tuple[Emulator, Emulator]
) -> None:
    """lab-app may use `cheap` only: when every `cheap` deployment fails, it gets the
    error, not an answer from `balanced` (the master key does fall back)."""
    clouds, ollama = upstreams
    ollama.set("ollama", "error", status=500)
    clouds.set("openai", "error", status=500)
    try:
        app = post(gateway_url, lab_app_key(), GOOD)
        assert app.status_code >= 400, app.text
        called = {r["provider"] for r in clouds.model_calls()}
        assert called <= {"openai"}, f"lab-app fell back to {called}"
        operator = post(gateway_url, gateway_key, GOOD)
        assert operator.status_code == 200, operator.text
    finally:
        ollama.set("ollama", "ok")
        clouds.set("openai", "ok")


def test_a_request_without_any_key_is_refused_at_the_front_as_litellm_would(
    hosts: dict, gateway_url: str
) -> None:
    direct = from_host(
        hosts["gateway"], "POST", "http://127.0.0.1:4000/v1/chat/completions", None, GOOD
    )
    front = requests.post(f"{gateway_url}/v1/chat/completions", json=GOOD, timeout=30)
    assert front.status_code == direct["status"] == 401
    assert front.json() == json.loads(direct["body"])


def test_a_post_that_does_not_say_how_long_its_body_is_is_refused(gateway_url: str) -> None:
    """HTTP/1.1 without content-length or chunked, and HTTP/2 (whose frames carry no
    length the front could check first): 411 before LiteLLM."""
    import httpx

    def body() -> Any:
        yield json.dumps(GOOD).encode()

    trust = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
    with httpx.Client(http2=True, verify=trust, timeout=30) as client:
        answer = client.post(
            f"{gateway_url}/v1/chat/completions",
            content=body(),
            headers={"Authorization": f"Bearer {house_key()}"},
        )
        assert answer.http_version == "HTTP/2"
        assert answer.status_code == 411, answer.text


def _tls_socket(gateway_url: str) -> Any:
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(gateway_url)
    context = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
    context.check_hostname = False
    raw = socket.create_connection((parts.hostname, parts.port), timeout=30)
    return context.wrap_socket(raw, server_hostname=parts.hostname)


def test_a_slow_body_is_cut_off_at_the_front(gateway_url: str, upstreams: tuple) -> None:
    """A client that announces a body and sends it a byte at a time holds a connection
    at the front for the request timeout (5 s in the lab), never a proxy worker."""
    import time

    body = json.dumps(GOOD).encode()
    conn = _tls_socket(gateway_url)
    try:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
            + f"Authorization: Bearer {house_key()}\r\n".encode()
            + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        started = time.monotonic()
        answer = b""
        for byte in body[:20]:
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(1)
            if time.monotonic() - started > 15:
                break
        conn.settimeout(20)
        with contextlib.suppress(OSError):
            answer = conn.recv(4096)
    finally:
        conn.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    clouds, ollama = upstreams
    assert clouds.model_calls() == [] and ollama.model_calls() == []


def test_one_address_holds_at_most_its_share_of_connections(gateway_url: str) -> None:
    """40 connections at once from the lab machine in the lab (the per-address limit):
    the ones past it are closed at once, and the gateway serves the others."""
    limit = 40
    opened: list[Any] = []
    refused = 0
    try:
        for _ in range(limit):
            opened.append(_tls_socket(gateway_url))
        for _ in range(5):
            try:
                conn = _tls_socket(gateway_url)
            except OSError:
                refused += 1
                continue
            opened.append(conn)
            conn.settimeout(5)
            try:
                conn.sendall(b"GET /health/liveliness HTTP/1.1\r\nHost: gateway\r\n\r\n")
                data = conn.recv(100)
            except OSError:
                data = b""
            refused += not data.startswith(b"HTTP/1.1 200")
        assert refused == 5, f"{5 - refused} connection(s) past the limit were served"
    finally:
        for conn in opened:
            conn.close()
    assert requests.get(f"{gateway_url}/health/liveliness", timeout=30).status_code == 200
