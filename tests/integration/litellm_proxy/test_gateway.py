"""The gateway answers through LiteLLM, and only with a key.

Real: the LiteLLM proxy (pinned release, stand-in image built from PyPI) in
Docker Compose on the gateway host. Stand-in: the cloud API that answers,
which is the provider emulator on the providers host.
"""

from __future__ import annotations

import json

import requests

from tests.support.lab_client import Emulator


def test_chat_completion_is_answered_by_the_upstream_through_litellm(
    gateway: requests.Session, gateway_url: str, emulator: Emulator
) -> None:
    answer = gateway.post(
        f"{gateway_url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (
        body["choices"][0]["message"]["content"] == "emulated reply from openai model gpt-4o-mini"
    )
    assert body["usage"]["prompt_tokens"] == 2
    assert body["usage"]["completion_tokens"] == 6
    received = emulator.requests("openai")
    assert [(r["model"], r["path"]) for r in received] == [("gpt-4o-mini", "/v1/chat/completions")]


def test_request_without_a_key_gets_401_and_reaches_no_upstream(
    gateway_url: str, emulator: Emulator
) -> None:
    answer = requests.post(
        f"{gateway_url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert answer.status_code == 401
    assert emulator.requests() == []


def test_request_with_a_wrong_key_gets_401(gateway_url: str, emulator: Emulator) -> None:
    answer = requests.post(
        f"{gateway_url}/v1/chat/completions",
        headers={"Authorization": "Bearer sk-not-the-lab-key-0000000000000000"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert answer.status_code == 401
    assert emulator.requests() == []


def test_the_proxys_container_reports_healthy(hosts: dict) -> None:
    """Compose's healthcheck runs in the proxy's image, which (like the official one)
    has neither wget nor curl: it asks /health/liveliness with Python's urllib."""
    gateway = hosts["gateway"]
    # The lab's hosts cannot `docker exec` (the inner runtime's setns is refused
    # there), so the image the container runs is asked in a container of its own.
    image = gateway.check_output(
        "docker inspect --format '{{.Config.Image}}' litellm-proxy-litellm-1"
    )
    found = gateway.run(
        f"docker run --rm --network none --entrypoint sh {image} -c "
        "'command -v python3; command -v wget; command -v curl'"
    )
    (python,) = found.stdout.split()  # python3 is there, wget and curl are not
    assert python.endswith("/python3"), found.stdout
    state = gateway.check_output(
        "docker inspect --format '{{.State.Health.Status}}' litellm-proxy-litellm-1"
    )
    assert state == "healthy", gateway.check_output(
        "docker inspect --format '{{json .State.Health}}' litellm-proxy-litellm-1"
    )


def test_no_worker_of_the_proxy_was_killed_by_its_supervisor(hosts: dict) -> None:
    """uvicorn's supervisor kills a worker that leaves its ping unanswered, and a
    new worker answers only after importing LiteLLM: with the 5 s default, a busy
    machine lost every new worker, again and again. The role gives them longer."""
    gateway = hosts["gateway"]
    args = json.loads(
        gateway.check_output("docker inspect --format '{{json .Args}}' litellm-proxy-litellm-1")
    )
    assert args[args.index("--timeout_worker_healthcheck") + 1] == "60", args
    logs = gateway.check_output("docker logs litellm-proxy-litellm-1 2>&1")
    assert "Started parent process" in logs, logs[-2000:]
    assert " died" not in logs, [line for line in logs.splitlines() if "died" in line]
