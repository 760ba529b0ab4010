"""A client for the provider emulator (the stand-in for the cloud APIs and Ollama)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]


class Emulator:
    """The stand-in for the cloud APIs / Ollama: its control API and request log."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def set(self, provider: str, mode: str = "ok", **extra: int) -> None:
        answer = requests.put(
            f"{self.url}/_control/{provider}", json={"mode": mode, **extra}, timeout=5
        )
        answer.raise_for_status()

    def requests(self, provider: str | None = None) -> list[dict]:
        params = {"provider": provider} if provider else {}
        answer = requests.get(f"{self.url}/_requests", params=params, timeout=5)
        answer.raise_for_status()
        return answer.json()

    def clear(self) -> None:
        requests.delete(f"{self.url}/_requests", timeout=5).raise_for_status()

    def model_calls(self, provider: str | None = None) -> list[dict]:
        """Requests that asked a model for something (not management calls like /api/tags)."""
        return [
            r for r in self.requests(provider) if r["path"] in MODEL_PATHS or "models/" in r["path"]
        ]


MODEL_PATHS = {
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
}


def wait_until(
    check: Callable[[], bool], deadline_s: float, what: str, every_s: float = 1.0
) -> None:
    """Poll `check` until it is true; fail saying `what` did not happen in time."""
    end = time.monotonic() + deadline_s
    while True:
        if check():
            return
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline_s:.0f}s")
        time.sleep(every_s)


def chat(
    session: requests.Session, gateway_url: str, model: str, text: str = "hello there", **extra: Any
) -> requests.Response:
    return session.post(
        f"{gateway_url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}], **extra},
        timeout=60,
    )


def chat_alone(
    session: requests.Session, gateway_url: str, model: str, **extra: Any
) -> requests.Response:
    """`chat` on a connection of its own, with `session`'s headers (its key): for
    requests made from several threads at once, which must not share one pool."""
    with requests.Session() as own:
        own.headers.update(session.headers)
        return chat(own, gateway_url, model, **extra)


def answered_by(response: requests.Response) -> str:
    """`provider/model` that produced an emulator answer (its reply text says so)."""
    text = response.json()["choices"][0]["message"]["content"]
    words = text.split()
    assert words[:3] == ["emulated", "reply", "from"], text
    return f"{words[3]}/{words[5]}"


def run_playbook(
    lab: dict[str, str], playbook: str | list[str], extra_vars: dict | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run one of the project's playbooks (or several, in order, in one run) against the
    lab, as a user would: the repo's ansible.cfg, the inventory Molecule converged
    with, the lab's vault password.
    Molecule's own ANSIBLE_* settings are left out, so output reads the same
    whether the tests run under `molecule verify` or after `make lab-up`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env.update({k: v for k, v in lab.items() if k.startswith("LAB_")})
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        lab["LAB_ANSIBLE_INVENTORY"],
        "--vault-password-file",
        str(REPO / "molecule/default/vault-password.txt"),
        *args,
        *([playbook] if isinstance(playbook, str) else playbook),
    ]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    began = time.monotonic()
    run = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    # Where a lab test's time goes (shown with -s, and with a failure).
    print(f"{playbook} {' '.join(args)}: rc {run.returncode} in {time.monotonic() - began:.0f}s")
    return run


def flat(text: str) -> str:
    """Ansible's output with its line wrapping undone, for searching messages in it."""
    return " ".join(text.split())


def play_recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of ansible-playbook's output: {host: {"ok": n, "changed": n, ...}}."""
    rows = re.findall(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, re.M)
    return {
        host: {key: int(value) for key, value in (pair.split("=") for pair in counts.split())}
        for host, counts in rows
    }


def changed_hosts(output: str) -> dict[str, int]:
    """The hosts whose PLAY RECAP counts a change (none: the run was idempotent).
    An output without a recap fails: no recap proves nothing."""
    recap = play_recap(output)
    assert recap, f"no PLAY RECAP in:\n{output[-2000:]}"
    return {host: counts["changed"] for host, counts in recap.items() if counts["changed"]}


def service_running(host: Any, name: str) -> None:
    """Fail with the unit's journal unless ``name`` runs and is enabled on ``host``."""
    service = host.service(name)
    if not (service.is_running and service.is_enabled):
        log = host.run(f"journalctl -u {name} --no-pager -n 30").stdout
        raise AssertionError(
            f"{name} on {host.backend.get_hostname()} is not running and enabled:\n{log}"
        )


PROXY_GET = (
    "import json, sys, urllib.error, urllib.request\n"
    "key = {'Authorization': 'Bearer ' + sys.argv[2]}\n"
    "request = urllib.request.Request(sys.argv[1], headers=key)\n"
    "try:\n"
    "    answer = urllib.request.urlopen(request, timeout=20)\n"
    "    print(json.dumps({'status': answer.status, 'body': answer.read().decode()}))\n"
    "except urllib.error.HTTPError as error:\n"
    "    print(json.dumps({'status': error.code, 'body': error.read().decode()}))\n"
)


def proxy_get(host: Any, path: str, key: str, port: int = 4000) -> dict[str, Any]:
    """GET `path` from one gateway's own proxy, on its host (past the front,
    which would send it to any gateway's proxy): {status, body}."""
    import shlex

    url = f"http://127.0.0.1:{port}{path}"
    command = f"python3 -c {shlex.quote(PROXY_GET)} {shlex.quote(url)} {shlex.quote(key)}"
    return json.loads(host.check_output(command))


def ledger_status(host: Any, key: str) -> dict[str, Any]:
    """The cost ledger's status as one gateway's own proxy reports it."""
    answer = proxy_get(host, "/gateway/ledger/status", key)
    assert answer["status"] == 200, answer
    return json.loads(answer["body"])


def vip_holders(hosts: dict[str, Any], address: str, names: tuple[str, ...]) -> list[str]:
    """The lab hosts (of `names`) that have the virtual `address` on an interface."""
    found = []
    for name in names:
        result = hosts[name].run("ip -4 -o addr show")
        if result.rc == 0 and f" {address}/" in result.stdout:
            found.append(name)
    return found
