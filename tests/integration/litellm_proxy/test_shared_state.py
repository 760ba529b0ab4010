"""The gateways' shared state: Redis on the state host (the first gateway in
the lab), reachable only by the gateways, holding LiteLLM's router state and
the applications' per-minute windows for every worker of every gateway.

Real: Debian's redis-server run by the gateway_state role, its nftables
table, the gateway's LiteLLM (two workers) and the gateway's own rate
windows. Stand-in: the cloud APIs (the provider emulator). What Redis being
away does to serving and to the alerts is in
tests/integration/monitoring/test_monitoring.py.
"""

from __future__ import annotations

import ast
import hashlib
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import testinfra
import yaml

from tests.integration.litellm_proxy.test_security import GOOD, lab_app_key, post
from tests.support.lab_client import Emulator, answered_by, chat, chat_alone, wait_until

REPO = Path(__file__).resolve().parents[3]
STATE = yaml.safe_load((REPO / "roles/gateway_state/defaults/main.yml").read_text())
GATEWAY_LAB = yaml.safe_load((REPO / "molecule/default/group_vars/gateway/lab.yml").read_text())
STATE_ADDRESS = "172.30.77.10"  # the first gateway (molecule/default/molecule.yml)
# The model both lab Ollama hosts serve (molecule/default: group_vars/ollama
# and host_vars/llmlab-ollama-bookworm.yml), and its deployments' ids.
SHARED_MODEL = "smollm2:135m"
SHARED_DEPLOYMENTS = (f"{SHARED_MODEL}@llmlab-ollama", f"{SHARED_MODEL}@llmlab-ollama-bookworm")
CONNECT = (
    "python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)'"
)


def redis_cli(
    host: testinfra.host.Host, password: str, *command: str, user: str | None = None
) -> Any:
    """A redis-cli command on the state host, as the gateways' account (`user`) or
    the operator's (None: Redis' default user), the password in the environment."""
    argv = " ".join(shlex.quote(part) for part in command)
    account = f"--user {shlex.quote(user)} " if user else ""
    return host.run(
        f"REDISCLI_AUTH={shlex.quote(password)} redis-cli --no-auth-warning {account}"
        f"-h {STATE_ADDRESS} -p {STATE['gateway_state_port']} {argv}"
    )


def redis(host: testinfra.host.Host, password: str, *command: str) -> str:
    """A command as the gateways' account, which must succeed."""
    result = redis_cli(host, password, *command, user=STATE["gateway_state_user"])
    assert result.rc == 0, result.stderr
    assert not result.stdout.startswith(("NOPERM", "ERR", "WRONGPASS")), result.stdout
    return result.stdout.strip()


def admin(host: testinfra.host.Host, password: str, *command: str) -> str:
    """A command as the operator's account."""
    result = redis_cli(host, password, *command)
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def password(lab_vault: dict[str, Any]) -> str:
    return lab_vault["vault_gateway_state_password"]


@pytest.fixture(scope="module")
def admin_password(lab_vault: dict[str, Any]) -> str:
    return lab_vault["vault_gateway_state_admin_password"]


def test_only_the_gateways_reach_the_shared_state(
    hosts: dict[str, testinfra.host.Host], password: str, admin_password: str
) -> None:
    """The state host answers the gateway's account with its password, refuses
    it without, and drops every other host of the lab at its firewall. That
    account may not reconfigure, empty or stop the store (the operator's may):
    Redis refuses it and logs each refusal in its ACL log, which the last test
    of this file finds empty after the gateway's own traffic."""
    gateway = hosts["gateway"]
    assert redis(gateway, password, "ping") == "PONG"
    for command in (("config", "get", "save"), ("flushall",), ("shutdown", "nosave")):
        refused = redis_cli(gateway, password, *command, user=STATE["gateway_state_user"])
        assert "NOPERM" in refused.stdout + refused.stderr, (command, refused.stdout)
    assert redis(gateway, password, "ping") == "PONG"  # still up
    as_default = redis_cli(gateway, password, "ping")  # its password is not the operator's
    assert "PONG" not in as_default.stdout
    assert "WRONGPASS" in as_default.stdout + as_default.stderr, as_default.stderr
    admin(gateway, admin_password, "acl", "log", "reset")
    anonymous = gateway.run(f"redis-cli -h {STATE_ADDRESS} -p {STATE['gateway_state_port']} ping")
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    for name in ("providers", "monitoring", "ollama"):
        probe = hosts[name].run(f"{CONNECT} {STATE_ADDRESS} {STATE['gateway_state_port']}")
        assert probe.rc != 0, f"{name} reached the shared state"
        assert "timed out" in probe.stderr, probe.stderr  # dropped, not refused
    # Nothing of it is ever written to disk.
    assert admin(gateway, admin_password, "config", "get", "save").split() == ["save"]  # empty
    assert admin(gateway, admin_password, "config", "get", "appendonly").splitlines()[-1] == "no"


def test_every_worker_counts_an_app_in_one_window_in_redis(
    hosts: dict[str, testinfra.host.Host], password: str, gateway_url: str, emulator: Emulator
) -> None:
    """lab-app may make 5 requests a minute: of 8 made now (spread over both
    gateways and their workers by the front) exactly 5 are served, and the
    window in Redis holds 5."""
    for provider in ("openai", "anthropic", "gemini"):
        emulator.set(provider, "ok")
    (app,) = [a for a in GATEWAY_LAB["litellm_proxy_apps"] if a["name"] == "lab-app"]
    key = "gateway:rate:" + hashlib.sha256(b"lab-app").hexdigest()[:32]
    redis(hosts["gateway"], password, "del", key)
    answers = [post(gateway_url, lab_app_key(), GOOD) for _ in range(8)]
    statuses = [answer.status_code for answer in answers]
    gateways = {answer.headers.get("X-LLM-Gateway") for answer in answers}
    assert gateways == {"llmlab-gateway", "llmlab-gateway-2"}, gateways
    assert statuses.count(200) == app["rpm"], statuses
    assert statuses.count(429) == 8 - app["rpm"], statuses
    assert int(redis(hosts["gateway"], password, "zcard", key)) == app["rpm"]
    ttl = int(redis(hosts["gateway"], password, "ttl", key))
    assert 0 < ttl <= 61


def test_a_cooldown_is_shared_by_every_worker_through_redis(
    hosts: dict[str, testinfra.host.Host],
    password: str,
    gateway: requests.Session,
    gateway_url: str,
    emulator: Emulator,
    ollama_emulator: Emulator,
) -> None:
    """Ollama fails: LiteLLM cools its deployment of `cheap` down in Redis, under
    its named id, with its own record of why. Ollama answers again and the
    cooldown ends; then a cooldown of it is written to Redis from outside, as
    another gateway's worker would: within a second (how often LiteLLM's workers
    re-read the cooldowns there) no worker of either gateway sends it a request,
    though it is healthy: 20 requests, spread over both gateways by the front,
    reach Ollama 0 times."""
    for provider in ("openai", "anthropic", "gemini"):
        emulator.set(provider, "ok")
    deployment = "cheap/llama3.2:1b@llmlab-ollama"
    key = f"deployment:{deployment}:cooldown"
    cooldown = GATEWAY_LAB["litellm_proxy_cooldown_time"]
    redis(hosts["gateway"], password, "del", key)
    ollama_emulator.set("ollama", "error")

    def cooled() -> bool:
        assert chat(gateway, gateway_url, "cheap").status_code == 200
        return redis(hosts["gateway"], password, "exists", key) == "1"

    wait_until(cooled, 30, "a cooldown of Ollama's deployment in Redis")
    # LiteLLM writes the record as a Python dict's repr.
    record = ast.literal_eval(redis(hosts["gateway"], password, "get", key))
    assert record["status_code"] == "500", record
    assert record["cooldown_time"] == cooldown
    assert 0 < int(redis(hosts["gateway"], password, "ttl", key)) <= cooldown

    ollama_emulator.set("ollama", "ok")
    wait_until(
        lambda: answered_by(chat(gateway, gateway_url, "cheap")) == "ollama/llama3.2:1b",
        cooldown + 60,
        "`cheap` going back to Ollama once the cooldown is over",
    )
    written = {
        "exception_received": "written by another gateway",
        "status_code": "503",
        "timestamp": time.time(),
        "cooldown_time": cooldown,
    }
    redis(hosts["gateway"], password, "set", key, repr(written), "ex", str(cooldown))
    time.sleep(1.5)  # DEFAULT_COOLDOWN_REDIS_READ_INTERVAL_SECONDS in LiteLLM, and margin
    ollama_emulator.clear()
    statuses = [chat(gateway, gateway_url, "cheap").status_code for _ in range(20)]
    assert statuses == [200] * 20
    assert ollama_emulator.model_calls("ollama") == []


def test_a_model_on_two_ollama_hosts_goes_to_the_least_busy_one_counted_in_redis(
    hosts: dict[str, testinfra.host.Host],
    password: str,
    admin_password: str,
    lab: dict[str, str],
    gateway: requests.Session,
    gateway_url: str,
    ollama_emulator: Emulator,
) -> None:
    """Both Ollama hosts serve SHARED_MODEL, each taking 1.5 s to answer. Six
    times, a request is made and, while it is in flight, a second: the second
    goes to the other host every time, whichever worker took it, because
    LiteLLM's least-busy routing reads every worker's in-flight counts from
    Redis (under the deployments' named ids). Every count is back to 0 once
    the requests are answered."""
    bookworm = Emulator(lab["OLLAMA_BOOKWORM_URL"])
    emulators = {"llmlab-ollama": ollama_emulator, "llmlab-ollama-bookworm": bookworm}

    def one() -> int:
        return chat_alone(gateway, gateway_url, SHARED_MODEL).status_code

    pairs = []
    try:
        for emu in emulators.values():
            emu.set("ollama", "ok", latency_ms=1500)
        with ThreadPoolExecutor(max_workers=2) as pool:
            for _ in range(6):
                for emu in emulators.values():
                    emu.clear()
                first = pool.submit(one)
                time.sleep(0.5)  # the first is in flight, and counted
                second = pool.submit(one)
                statuses = [first.result(), second.result()]
                served = {name: len(emu.model_calls("ollama")) for name, emu in emulators.items()}
                pairs.append((statuses, served))
    finally:
        for emu in emulators.values():
            emu.set("ollama", "ok")
    assert all(statuses == [200, 200] for statuses, _ in pairs), pairs
    assert all(set(served.values()) == {1} for _, served in pairs), (
        f"a request went to the busy host while the other was idle: {pairs}"
    )
    for deployment in SHARED_DEPLOYMENTS:
        key = f"{SHARED_MODEL}_request_count:{deployment}"
        count = redis(hosts["gateway"], password, "get", key)
        assert count == "0", f"{deployment}: {count!r} requests still counted in flight"
    # Every command LiteLLM and the gateway sent in this file's tests (windows,
    # cooldowns, in-flight counts) was one its account may send.
    assert admin(hosts["gateway"], admin_password, "acl", "log") == "", "a refused command"
