"""A proxy that stops (a restart, an upgrade, `docker stop`) finishes the
requests it has open before it exits: LiteLLM's graceful shutdown, given
litellm_proxy_graceful_shutdown_timeout, and Docker waiting longer than that
before it kills the container (its own default, 10 s, would cut them first).

Real: the gateway's Compose stack, its proxy and TLS front, a restart with
Compose as the role does it. Stand-in: the upstream that takes its time (the
provider emulator's latency, above Docker's default 10 s).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

from tests.support.haproxy import servers
from tests.support.lab_client import Emulator, answered_by, chat_alone, wait_until

REPO = Path(__file__).resolve().parents[3]
DEFAULTS = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
CONTAINER = "litellm-proxy-litellm-1"
SLOW_MS = 15_000  # longer than Docker's default grace of 10 s


def started_at(gateway) -> str:
    return gateway.check_output(f"docker inspect --format '{{{{.State.StartedAt}}}}' {CONTAINER}")


def test_a_request_in_flight_when_the_proxy_restarts_gets_its_whole_answer(
    hosts: dict, gateway: requests.Session, gateway_url: str, emulator: Emulator
) -> None:
    grace = DEFAULTS["litellm_proxy_graceful_shutdown_timeout"]
    host = hosts["gateway"]
    assert host.check_output(
        f"docker inspect --format '{{{{.Config.StopTimeout}}}}' {CONTAINER}"
    ) == str(grace + 15)
    env = host.check_output(f"docker inspect --format '{{{{json .Config.Env}}}}' {CONTAINER}")
    assert f"GRACEFUL_SHUTDOWN_TIMEOUT={grace}" in env
    emulator.set("openai", "ok", latency_ms=SLOW_MS)
    with ThreadPoolExecutor(1) as pool:
        # The request's own timeout: the lab's proxy gives an upstream 5 s.
        pending = pool.submit(chat_alone, gateway, gateway_url, "gpt-4o-mini", timeout=40)
        wait_until(lambda: len(emulator.model_calls("openai")) == 1, 10, "the slow call to start")
        assert not pending.done()  # the request is in flight when the proxy stops
        # The front (the first gateway's) sent it to one of the two gateways'
        # proxies: the one it has a session open with is restarted.
        (serving,) = [name for name, row in servers(host).items() if int(row["scur"] or 0) > 0]
        host = hosts[serving.removeprefix("llmlab-")]
        before = started_at(host)
        restart = host.run("cd /opt/litellm-proxy && docker compose restart litellm")
        answer = pending.result(timeout=90)
    assert restart.rc == 0, restart.stderr
    assert started_at(host) != before  # it did restart
    assert answer.status_code == 200, answer.text
    assert answered_by(answer) == "openai/gpt-4o-mini"
    emulator.set("openai", "ok")
    wait_until(
        lambda: requests.get(f"{gateway_url}/health/readiness", timeout=5).status_code == 200,
        DEFAULTS["litellm_proxy_ready_timeout"],
        "the restarted proxy to be ready through the front",
        every_s=2,
    )
