"""Task Master on the gateway: every call counted against its task, in a ledger that survives.

Real: the LiteLLM proxy (pinned release) with the role's cost ledger callback,
the stack's Postgres, Docker Compose on the gateway host, the Task Master CLI
(task-master-ai from npm, installed here into ~/.cache/llmlab), taskcost
(roles/taskmaster_client/files/taskcost.py) and the playbook that configures the project.
Stand-ins: the cloud APIs and Ollama (the provider emulator), whose token
counts are deterministic: prompt tokens = words of the input, completion
tokens = 6 (`emulated reply from <provider> model <model>`). Prices are the
role's defaults, read from roles/litellm_proxy/defaults/main.yml.

Each run uses its own task ids (random), so the ledger's earlier rows never
count. Tests that stop or restart containers put them back before they end.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.lab_client import (
    Emulator,
    answered_by,
    changed_hosts,
    chat,
    ledger_status,
    wait_until,
)

REPO = Path(__file__).resolve().parents[3]
TASKCOST = REPO / "roles/taskmaster_client/files/taskcost.py"
DEFAULTS = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
PRICES = {
    m["name"]: (m.get("input_cost_per_token", 0.0), m.get("output_cost_per_token", 0.0))
    for m in DEFAULTS["litellm_proxy_models"]
}
PROJECT_DIR = DEFAULTS["litellm_proxy_project_dir"]
COMPOSE = f"docker compose -p {DEFAULTS['litellm_proxy_compose_project']}"
TASKMASTER_VERSION = "0.43.1"
RUN = random.randint(100000, 899999)  # noqa: S311 (task ids of this run, not a secret)


GATEWAYS = ("gateway", "gateway-2")


def task_id(offset: int) -> str:
    return str(RUN + offset)


class Ledger:
    """The cost ledger's HTTP API on the gateway (master key)."""

    def __init__(self, session: requests.Session, gateway_url: str) -> None:
        self.session = session
        self.url = f"{gateway_url}/gateway/ledger"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(f"{self.url}{path}", params=params, timeout=30)

    def status(self) -> dict[str, Any]:
        answer = self.get("/status")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def rows(self, **params: Any) -> list[dict[str, Any]]:
        answer = self.get("/rows", limit=1000, **params)
        assert answer.status_code == 200, answer.text
        return answer.json()["rows"]

    def wait_rows(
        self,
        check: Callable[[list[dict[str, Any]]], bool],
        what: str,
        deadline_s: float = 60,
        **q: Any,
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        def ready() -> bool:
            nonlocal found
            answer = self.get("/rows", limit=1000, **q)
            found = answer.json()["rows"] if answer.status_code == 200 else []
            return check(found)

        wait_until(ready, deadline_s, what, every_s=1.0)
        return found


@pytest.fixture(scope="module")
def ledger(gateway: requests.Session, gateway_url: str) -> Ledger:
    wait_ready(gateway_url)
    api = Ledger(gateway, gateway_url)
    answer = api.get("/status")
    if answer.status_code == 404:
        pytest.fail(
            "the gateway serves no /gateway/ledger API: the litellm_proxy role does not load "
            "its cost ledger (litellm_settings.callbacks: gateway.litellm_entry.ledger)"
        )
    assert answer.status_code == 200, answer.text
    return api


def tagged_chat(
    session: requests.Session,
    gateway_url: str,
    model: str,
    task: str,
    text: str,
    timeout_s: float = 60,
    **extra: Any,
) -> requests.Response:
    return session.post(
        f"{gateway_url}/v1/chat/completions",
        headers={"x-litellm-tags": f"task:{task}"},
        json={"model": model, "messages": [{"role": "user", "content": text}], **extra},
        timeout=timeout_s,
    )


def expected_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    price_in, price_out = PRICES[model]
    return prompt_tokens * price_in + completion_tokens * price_out


def compose(hosts: dict, *args: str) -> str:
    command = f"cd {PROJECT_DIR} && {COMPOSE} {' '.join(args)}"
    result = hosts["gateway"].run(command)
    assert result.rc == 0, f"{command}: {result.stderr}"
    return result.stdout


def wait_ready(gateway_url: str) -> None:
    def ready() -> bool:
        try:
            return requests.get(f"{gateway_url}/health/readiness", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, 180, "the proxy answering /health/readiness", every_s=2)


@pytest.fixture
def mini_answers(gateway: requests.Session, gateway_url: str, emulator: Emulator) -> Emulator:
    """`gpt-4o-mini` answering again (another test may have cooled it down)."""
    wait_until(
        lambda: chat(gateway, gateway_url, "gpt-4o-mini").status_code == 200,
        90,
        "gpt-4o-mini answering",
    )
    emulator.clear()
    return emulator


# -------------------------------------------------------------------------- costs


def task_spend(gateway: requests.Session, endpoints: dict[str, Any]) -> float:
    """gateway_task_spend_usd_total over every task label of every gateway (each
    front's /metrics is its own proxy's)."""
    spent = 0.0
    for name, published in endpoints["gateways"].items():
        metrics = gateway.get(f"{published['url']}/metrics", timeout=30)
        assert metrics.status_code == 200, name
        spent += sum(
            float(line.split()[-1])
            for line in metrics.text.splitlines()
            if line.startswith("gateway_task_spend_usd_total{")
        )
    return spent


def test_ledger_cost_is_tokens_times_prices_and_litellms_own_header(
    gateway: requests.Session,
    gateway_url: str,
    ledger: Ledger,
    mini_answers: Emulator,
    endpoints: dict[str, Any],
) -> None:
    task = task_id(1)
    words = "count these five words please"
    spent_before = task_spend(gateway, endpoints)
    answer = tagged_chat(gateway, gateway_url, "gpt-4o-mini", task, words)
    assert answer.status_code == 200, answer.text
    header_cost = float(answer.headers["x-litellm-response-cost"])
    call_id = answer.headers["x-litellm-call-id"]
    (row,) = ledger.wait_rows(lambda r: len(r) == 1, "the ledger row", request_id=call_id)
    assert (row["task"], row["status"], row["alias"]) == (task, "success", "gpt-4o-mini")
    assert row["consumer"] == "master"
    assert (row["input_tokens"], row["output_tokens"]) == (5, 6)
    assert row["cost_usd"] == header_cost
    assert row["cost_usd"] == pytest.approx(expected_cost("gpt-4o-mini", 5, 6), rel=1e-12)
    (upstream,) = mini_answers.model_calls("openai")
    assert (upstream["prompt_tokens"], upstream["completion_tokens"]) == (5, 6)
    assert "x-litellm-tags" not in upstream["headers"], "the task tag went upstream"

    # Streamed: no cost header (it is known only at the end), the same exact ledger cost.
    streamed = tagged_chat(gateway, gateway_url, "gpt-4o-mini", task, words, stream=True)
    assert streamed.status_code == 200, streamed.text
    stream_id = streamed.headers["x-litellm-call-id"]
    (row,) = ledger.wait_rows(lambda r: len(r) == 1, "the stream's row", request_id=stream_id)
    assert (row["input_tokens"], row["output_tokens"], row["stream"]) == (5, 6, True)
    assert row["cost_usd"] == pytest.approx(expected_cost("gpt-4o-mini", 5, 6), rel=1e-12)

    # The dashboard's metric counts the same money, over the gateways that
    # served the two calls (under the task's label, or `other` once a worker
    # has labelled its share of tasks).
    assert task_spend(gateway, endpoints) - spent_before == pytest.approx(2 * header_cost, rel=1e-9)


def lab_app(index: int = 0) -> tuple[str, str, list[str]]:
    """One of the lab's applications (name, key from the lab's vault, aliases it may use)."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    scenario = yaml.safe_load((REPO / "molecule/default/group_vars/gateway/lab.yml").read_text())
    apps = scenario.get("litellm_proxy_apps") or []
    if len(apps) <= index:
        pytest.fail(f"the lab scenario defines fewer than {index + 1} applications")
    app = apps[index]
    password = (REPO / "molecule/default/vault-password.txt").read_bytes().strip()
    vault = VaultLib([("default", VaultSecret(password))])
    secrets = yaml.safe_load(
        vault.decrypt((REPO / "molecule/default/group_vars/all/vault.yml").read_bytes())
    )
    return app["name"], secrets["vault_litellm_app_keys"][app["name"]], app.get("models") or []


def test_a_call_made_with_an_application_key_is_that_applications(
    gateway_url: str, ledger: Ledger, emulator: Emulator
) -> None:
    name, key, models = lab_app()
    task = task_id(7)
    app = requests.Session()
    app.headers["Authorization"] = f"Bearer {key}"
    answers: list[requests.Response] = []

    def answered() -> bool:  # the app's requests per minute may be spent by another test
        answers.append(tagged_chat(app, gateway_url, (models or ["cheap"])[0], task, "hi"))
        return answers[-1].status_code != 429

    wait_until(answered, 70, "the application key being under its rate", every_s=5)
    assert answers[-1].status_code == 200, answers[-1].text
    call_id = answers[-1].headers["x-litellm-call-id"]
    (row,) = ledger.wait_rows(lambda r: len(r) == 1, "the app's row", request_id=call_id)
    assert (row["consumer"], row["task"]) == (name, task)


def model_ids(gateway: requests.Session, gateway_url: str) -> dict[tuple[str, str], str]:
    """(alias, upstream model) -> the router's deployment id."""
    info = gateway.get(f"{gateway_url}/v1/model/info", timeout=30).json()["data"]
    return {(d["model_name"], d["litellm_params"]["model"]): d["model_info"]["id"] for d in info}


def test_failed_attempts_and_fallbacks_are_rows_of_the_deployments_that_failed_and_answered(
    gateway: requests.Session,
    gateway_url: str,
    ledger: Ledger,
    emulator: Emulator,
    ollama_emulator: Emulator,
) -> None:
    task = task_id(2)
    wait_until(
        lambda: answered_by(chat(gateway, gateway_url, "cheap")) == "ollama/llama3.2:1b",
        90,
        "`cheap` going back to Ollama after any cooldown",
    )
    emulator.clear()
    ollama_emulator.clear()
    ollama_emulator.set("ollama", "error", status=500)
    emulator.set("openai", "error", status=500)
    try:
        answer = tagged_chat(gateway, gateway_url, "cheap", task, "one two three")
    finally:
        ollama_emulator.set("ollama", "ok")
        emulator.set("openai", "ok")
    assert answer.status_code == 200, answer.text
    assert answered_by(answer) == "gemini/gemini-2.5-flash"
    call_id = answer.headers["x-litellm-call-id"]
    failed_upstream = [
        r
        for r in ollama_emulator.model_calls("ollama") + emulator.model_calls("openai")
        if r["status"] == 500
    ]
    rows = ledger.wait_rows(
        lambda r: (
            any(x["status"] == "success" for x in r)
            and sum(x["status"] == "failure" for x in r) == len(failed_upstream)
        ),
        "a row per failed attempt and one for the answer",
        request_id=call_id,
    )
    ids = model_ids(gateway, gateway_url)
    failures = [r for r in rows if r["status"] == "failure"]
    assert {(r["provider"], r["deployment_id"]) for r in failures} == {
        ("ollama", ids[("cheap", "ollama_chat/llama3.2:1b")]),
        ("openai", ids[("cheap", "openai/gpt-4o-mini")]),
    }
    assert all(r["task"] == task and r["http_status"] == 500 for r in failures)
    assert all(r["cost_usd"] == 0 for r in failures)
    (success,) = [r for r in rows if r["status"] == "success"]
    assert success["provider"] == "gemini"
    assert success["deployment_id"] == ids[("balanced", "gemini/gemini-2.5-flash")]
    assert (success["alias"], success["model_group"]) == ("cheap", "balanced")
    assert success["fallbacks"] >= 1
    assert success["cost_usd"] == pytest.approx(expected_cost("gemini-2.5-flash", 3, 6))


# ------------------------------------------------------------------------ budgets


def taskcost(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, tool: Path | None = None
) -> Any:
    """roles/taskmaster_client/files/taskcost.py, or the copy the playbook installed (`tool`)."""
    command = [str(tool)] if tool else [sys.executable, str(TASKCOST)]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
        cwd=cwd,
    )


def test_a_task_over_its_budget_is_refused_before_any_upstream(
    gateway: requests.Session,
    gateway_url: str,
    gateway_key: str,
    ledger: Ledger,
    mini_answers: Emulator,
    ollama_emulator: Emulator,
) -> None:
    task = task_id(3)
    env = {**os.environ, "GATEWAY_URL": gateway_url, "GATEWAY_KEY": gateway_key}
    budget = 0.000001
    done = taskcost("budget", "set", task, str(budget), env=env)
    assert done.returncode == 0, done.stderr
    try:
        first = tagged_chat(gateway, gateway_url, "gpt-4o-mini", task, "one two three")
        assert first.status_code == 200, first.text  # spend 0 < budget: allowed
        spent = float(first.headers["x-litellm-response-cost"])
        # Once the row is in Postgres the spend counts in every worker's check; before
        # that only in the worker that served it (the others see it after its next
        # flush, within a second), and the next request may reach another worker.
        ledger.wait_rows(lambda r: len(r) == 1, "the first request's row", task=task)
        assert ledger.status()["spend_by_task"].get(task) == spent
        mini_answers.clear()
        ollama_emulator.clear()
        refused = tagged_chat(gateway, gateway_url, "gpt-4o-mini", task, "one two three")
        streamed = tagged_chat(gateway, gateway_url, "cheap", f"{task}.4", "hi", stream=True)
        assert refused.status_code == 402, refused.text
        assert streamed.status_code == 402, streamed.text
        error = refused.json()["error"]
        assert error["type"] == "budget_exceeded"
        assert f"task {task} has reached its budget" in error["message"]
        assert "spent $0.00000405 of $0.000001" in error["message"]
        assert (
            f"task {task} has reached its budget (request for {task}.4)"
            in (streamed.json()["error"]["message"])
        )
        assert mini_answers.model_calls() == [], "a refused request reached a cloud upstream"
        assert ollama_emulator.model_calls() == [], "a refused request reached Ollama"
        rows = ledger.wait_rows(
            lambda r: sum(x["status"] == "refused" for x in r) == 2, "refused rows", task=task
        )
        assert {(r["task"], r["http_status"]) for r in rows if r["status"] == "refused"} == {
            (task, 402),
            (f"{task}.4", 402),
        }
        shown = taskcost("budget", "show", env=env)
        assert f"task {task}: $0.000001 (set at run time), spent $0.000004" in shown.stdout
    finally:
        cleared = taskcost("budget", "clear", task, env=env)
        assert cleared.returncode == 0, cleared.stderr
    again = tagged_chat(gateway, gateway_url, "gpt-4o-mini", task, "one two three")
    assert again.status_code == 200, again.text


def test_concurrent_calls_overrun_a_task_budget_by_at_most_one_call(
    gateway: requests.Session,
    gateway_url: str,
    gateway_key: str,
    ledger: Ledger,
    mini_answers: Emulator,
) -> None:
    """Sixteen calls at once, over both gateways, for a task whose budget is smaller
    than one call: every worker of every gateway reserves a call's worst case in
    the house's one ledger before it goes upstream, so one call is served and
    fifteen are refused, where a check of the spend alone let every call that
    started before the first one ended through."""
    task = task_id(9)
    env = {**os.environ, "GATEWAY_URL": gateway_url, "GATEWAY_KEY": gateway_key}
    done = taskcost("budget", "set", task, "0.000001", env=env)
    assert done.returncode == 0, done.stderr
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(
                pool.map(
                    lambda n: tagged_chat(gateway, gateway_url, "gpt-4o-mini", task, f"call {n}"),
                    range(16),
                )
            )
        codes = sorted(a.status_code for a in answers)
        assert codes == [200] + [402] * 15, [(a.status_code, a.text[:200]) for a in answers]
        # The front spread them over both gateways: the budget holds for the house.
        gateways = {a.headers.get("X-LLM-Gateway") for a in answers}
        assert gateways == {"llmlab-gateway", "llmlab-gateway-2"}, gateways
        assert len(mini_answers.model_calls()) == 1, "a refused call reached the upstream"
        rows = ledger.wait_rows(lambda r: len(r) == 16, "a row for each call", task=task)
        assert sorted(r["status"] for r in rows) == ["refused"] * 15 + ["success"]
        served = next(a for a in answers if a.status_code == 200)
        assert ledger.status()["spend_by_task"][task] == pytest.approx(
            float(served.headers["x-litellm-response-cost"])
        )
    finally:
        cleared = taskcost("budget", "clear", task, env=env)
        assert cleared.returncode == 0, cleared.stderr


def test_budgets_from_the_inventory_reach_the_proxy(ledger: Ledger) -> None:
    scenario = REPO / "molecule/default/group_vars/gateway/lab.yml"
    configured = (yaml.safe_load(scenario.read_text()) or {}).get(
        "litellm_proxy_task_budgets", DEFAULTS.get("litellm_proxy_task_budgets", {})
    )
    budgets = ledger.get("/budgets").json()
    assert budgets["from_env"] == {str(k): float(v) for k, v in (configured or {}).items()}


# ----------------------------------------------------------------- durability


def test_no_row_is_lost_when_the_containers_are_killed_recreated_or_restarted(
    gateway: requests.Session,
    gateway_url: str,
    hosts: dict,
    ledger: Ledger,
    mini_answers: Emulator,
) -> None:
    task = task_id(4)
    calls = []

    def send(count: int) -> None:
        for _ in range(count):
            answer = tagged_chat(gateway, gateway_url, "gpt-4o-mini", task, "one two")
            assert answer.status_code == 200, answer.text
            calls.append(answer.headers["x-litellm-call-id"])

    # With Postgres away the rows can only be in the spool. Then the proxy is
    # killed outright and its container replaced: the spool is a folder of the
    # host, and the new container writes the rows once Postgres is back.
    compose(hosts, "stop postgres")
    try:
        send(5)
        compose(hosts, "kill -s SIGKILL litellm")
        compose(hosts, "up -d --force-recreate --no-deps litellm")
        wait_ready(gateway_url)
    finally:
        compose(hosts, "start postgres")
    ledger.wait_rows(lambda r: len(r) == 5, "the rows spooled before the kill", 180, task=task)
    # Restarts of both containers, each right after requests.
    send(5)
    compose(hosts, "restart postgres")
    send(3)
    compose(hosts, "restart litellm")
    wait_ready(gateway_url)
    rows = ledger.wait_rows(lambda r: len(r) >= 13, "thirteen rows", 180, task=task)
    assert sorted(r["request_id"] for r in rows) == sorted(calls)
    assert len({r["id"] for r in rows}) == len(rows) == 13
    expected = 13 * expected_cost("gpt-4o-mini", 2, 6)
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(expected)
    # ...and the restarted proxy knows the task's spend (seeded from Postgres).
    assert ledger.status()["spend_by_task"][task] == pytest.approx(expected)


def test_requests_succeed_while_postgres_is_stopped_and_rows_arrive_once_it_is_back(
    gateway: requests.Session,
    gateway_url: str,
    gateway_key: str,
    hosts: dict,
    ledger: Ledger,
    mini_answers: Emulator,
) -> None:
    task = task_id(5)
    compose(hosts, "stop postgres")
    try:
        for _ in range(5):
            # A client that gives up after 10 s, where a request waiting on the
            # stopped database would hang: requests.Timeout fails the test.
            answer = tagged_chat(
                gateway, gateway_url, "gpt-4o-mini", task, "one two three", timeout_s=10
            )
            assert answer.status_code == 200, answer.text
        # A task with a budget (990, from the inventory) cannot reserve its call's
        # cost now: refused, not served unchecked (litellm_proxy_task_budgets_without_database).
        mini_answers.clear()
        budgeted = tagged_chat(gateway, gateway_url, "gpt-4o-mini", "990.5", "hi", timeout_s=10)
        assert budgeted.status_code == 503, budgeted.text
        assert budgeted.json()["error"]["type"] == "budget_unchecked", budgeted.text
        assert mini_answers.model_calls() == [], "an unchecked call reached the upstream"

        # Each gateway's spool holds the rows of the calls it served.
        def spooled() -> bool:
            statuses = [ledger_status(hosts[name], gateway_key) for name in GATEWAYS]
            return (
                all(s["database"] == "down" for s in statuses)
                and sum(s["pending_rows"] for s in statuses) >= 5
            )

        wait_until(spooled, 60, "the ledgers keeping the rows in their spools")
        summary = ledger.get("/summary")
        assert summary.status_code == 503
        assert "rows wait in the spool" in summary.json()["detail"]
    finally:
        compose(hosts, "start postgres")
    rows = ledger.wait_rows(lambda r: len(r) == 5, "the spooled rows", deadline_s=180, task=task)
    assert {r["status"] for r in rows} == {"success"}
    wait_until(
        lambda: all(ledger_status(hosts[n], gateway_key)["pending_rows"] == 0 for n in GATEWAYS),
        60,
        "empty spools",
    )


# ------------------------------------------------------------------ Task Master


def taskmaster_cli() -> Path:
    """task-master-ai from npm, installed once into the lab's cache."""
    base = Path(os.environ.get("LAB_CACHE_DIR") or Path.home() / ".cache" / "llmlab")
    prefix = base / f"taskmaster-{TASKMASTER_VERSION}"
    cli = prefix / "node_modules" / ".bin" / "task-master"
    if cli.exists():
        return cli
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to install the Task Master CLI (task-master-ai) for this test")
    prefix.mkdir(parents=True, exist_ok=True)
    installed = subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            f"task-master-ai@{TASKMASTER_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert installed.returncode == 0 and cli.exists(), installed.stderr[-2000:]
    return cli


@pytest.fixture
def project(tmp_path: Path, gateway_url: str, trust_gateway_ca: Path) -> Iterator[Path]:
    """A Task Master project configured by playbooks/taskmaster.yml for the lab's
    application, with one task; the gateway's CA goes where taskcost looks for it in
    the test's own home."""
    root = tmp_path / "project"
    (root / ".taskmaster" / "tasks").mkdir(parents=True)
    tid = int(task_id(6))
    tasks = {
        "master": {
            "tasks": [
                {
                    "id": tid,
                    "title": f"Harden the login page ({RUN})",
                    "description": "Login form",
                    "details": "",
                    "testStrategy": "",
                    "status": "in-progress",
                    "dependencies": [],
                    "priority": "medium",
                    "subtasks": [
                        {
                            "id": 1,
                            "title": "Password field",
                            "description": "",
                            "details": "",
                            "status": "pending",
                            "dependencies": [],
                            "parentTaskId": tid,
                        }
                    ],
                }
            ],
            "metadata": {"created": "2026-01-01T00:00:00.000Z", "description": "Tasks"},
        }
    }
    (root / ".taskmaster" / "tasks" / "tasks.json").write_text(json.dumps(tasks, indent=2))
    extra = tmp_path / "vars.json"
    extra.write_text(
        json.dumps(
            {
                "taskmaster_client_project_dir": str(root),
                "taskmaster_client_gateway_url": gateway_url,
                "taskmaster_client_gateway_key": lab_app()[1],
                "taskmaster_client_gateway_ca": trust_gateway_ca.read_text(),
                "taskmaster_client_gateway_ca_path": str(
                    tmp_path / "home/.config/llm-gateway/gateway-ca.crt"
                ),
                "taskmaster_client_taskcost_path": str(tmp_path / "home/.local/bin/taskcost"),
            }
        )
    )
    extra.chmod(0o600)
    playbook = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "playbooks/taskmaster.yml",
        "-i",
        "inventory/local/hosts.yml",
        "-e",
        f"@{extra}",
    ]
    for _ in range(2):
        result = subprocess.run(
            playbook, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stdout[-3000:]
    assert changed_hosts(result.stdout) == {}, "the second run of the playbook changed something"
    yield root


def test_task_master_calls_are_counted_against_their_task_and_reported_with_its_title(
    project: Path,
    gateway: requests.Session,
    gateway_url: str,
    gateway_key: str,
    ledger: Ledger,
    emulator: Emulator,
    ollama_emulator: Emulator,
    tmp_path: Path,
) -> None:
    cli = taskmaster_cli()
    task = task_id(6)
    home = tmp_path / "home"  # the playbook put taskcost and the gateway's CA here
    (home / "tmp").mkdir(parents=True)
    unset = ("GATEWAY_URL", "GATEWAY_KEY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
    env = {
        **{k: v for k, v in os.environ.items() if k not in unset},
        "HOME": str(home),  # Task Master writes ~/.taskmaster and a cache under $TMPDIR
        "TMPDIR": str(home / "tmp"),
        "NO_COLOR": "1",
    }
    emulator.clear()
    ollama_emulator.clear()
    started = time.time()
    config = project / ".taskmaster/config.json"

    def gateway_roles() -> dict[str, tuple[str, str]]:
        models = json.loads(config.read_text())["models"]
        return {role: (m["provider"], m["baseURL"], m["modelId"]) for role, m in models.items()}

    roles_set_up = gateway_roles()

    installed = home / ".local/bin/taskcost"
    assert os.access(installed, os.X_OK)
    update = taskcost(
        "run",
        task,
        "--",
        str(cli),
        "update-subtask",
        f"--id={task}.1",
        "--prompt",
        "Use a password field with a show toggle",
        env=env,
        cwd=project,
        tool=installed,
    )
    assert update.returncode == 0, update.stdout[-2000:] + update.stderr[-2000:]
    assert f"task {task}'s key" in update.stderr
    # update-subtask exits 0 even when its AI call failed: tasks.json tells.
    tasks = json.loads((project / ".taskmaster/tasks/tasks.json").read_text())
    details = tasks["master"]["tasks"][0]["subtasks"][0]["details"]
    assert "emulated reply from" in details, update.stdout[-2000:]
    # Task Master writes its own defaults into config.json on its first run (global.*,
    # userId); from then on the file is its own, and no taskcost run changes a byte.
    assert gateway_roles() == roles_set_up
    config_before = config.read_bytes()

    research = taskcost(
        "run",
        f"{task}.1",
        "--",
        str(cli),
        "research",
        "Which password hashing?",
        f"--id={task}",
        env=env,
        cwd=project,
        tool=installed,
    )
    assert research.returncode == 0, research.stdout[-2000:] + research.stderr[-2000:]
    assert "emulated reply from openai model gpt-4.1" in research.stdout
    # A structured command: Task Master asks for JSON (response_format json_object,
    # the shape in its prompt) and checks the subtasks it gets against its schema.
    expand = taskcost(
        "run", task, "--", str(cli), "expand", f"--id={task}", "--num=2",
        env=env, cwd=project, tool=installed,
    )  # fmt: skip
    assert expand.returncode == 0, expand.stdout[-2000:] + expand.stderr[-2000:]
    tasks = json.loads((project / ".taskmaster/tasks/tasks.json").read_text())
    subtasks = tasks["master"]["tasks"][0]["subtasks"]
    assert len(subtasks) == 3 and subtasks[-1]["title"].startswith("emulated"), subtasks
    assert config.read_bytes() == config_before  # Task Master's own file is left alone

    # (keyed, in case one emulator stands in for both the clouds and Ollama)
    upstream = {
        (r["time"], r["provider"], r["path"]): r
        for r in emulator.model_calls() + ollama_emulator.model_calls()
        if r["time"] >= started and r["status"] == 200
    }
    assert upstream, "Task Master reached no upstream through the gateway"
    assert all("x-litellm-tags" not in r["headers"] for r in upstream.values())
    rows = ledger.wait_rows(
        lambda r: sum(x["status"] == "success" for x in r) == len(upstream),
        "a ledger row for every call Task Master made",
        task=task,
    )
    by_alias = {r["alias"]: r for r in rows if r["status"] == "success"}
    assert {r["task"] for r in rows} == {task, f"{task}.1"}
    research_row = by_alias["smart"]
    assert research_row["stream"] is True
    assert research_row["cost_usd"] == pytest.approx(
        expected_cost("gpt-4.1", research_row["input_tokens"], 6), rel=1e-12
    )
    assert research_row["input_tokens"] > 0
    assert "balanced" in by_alias  # update-subtask asked Task Master's main role

    env["GATEWAY_KEY"] = gateway_key  # the ledger's API is the operator's
    report = taskcost("report", "--json", "--write-metadata", env=env, cwd=project, tool=installed)
    assert report.returncode == 0, report.stderr
    (entry,) = [t for t in json.loads(report.stdout)["tasks"] if t["id"] == task]
    assert entry["title"] == f"Harden the login page ({RUN})"
    assert entry["status"] == "in-progress"
    assert entry["calls"] == len(rows)
    assert entry["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows), rel=1e-9)
    assert {m["provider"] for m in entry["by_model"]} >= {"openai"}
    assert [s["id"] for s in entry["subtasks"]] == [f"{task}.1"]
    table = taskcost("report", env=env, cwd=project, tool=installed)
    assert f"Harden the login page ({RUN})" in table.stdout
    written = json.loads((project / ".taskmaster/tasks/tasks.json").read_text())
    assert written["master"]["tasks"][0]["metadata"]["gatewayCost"]["calls"] == len(rows)

    # Why the role keeps OPENAI_COMPATIBLE_API_KEY out of the project's .env: the real
    # CLI takes the key from there before the process environment. With a dead key in
    # .env and a good task key in the environment, its call is refused.
    dotenv = project / ".env"
    kept = dotenv.read_text()
    dotenv.write_text(kept + "OPENAI_COMPATIBLE_API_KEY=sk-dead-0123456789abcdefghijklmnop\n")
    direct = {**env, "OPENAI_COMPATIBLE_API_KEY": task_key(task)}
    direct["NODE_EXTRA_CA_CERTS"] = str(home / ".config/llm-gateway/gateway-ca.crt")
    try:
        shadowed = subprocess.run(
            [str(cli), "update-subtask", f"--id={task}.1", "--prompt", "shadowed"],
            capture_output=True, text=True, timeout=600, check=False, env=direct, cwd=project,
        )  # fmt: skip
    finally:
        dotenv.write_text(kept)
    said = shadowed.stdout + shadowed.stderr
    assert "401" in said or "invalid API key" in said, said[-2000:]
    after = json.loads((project / ".taskmaster/tasks/tasks.json").read_text())
    assert after["master"]["tasks"][0]["subtasks"][0]["details"] == details


# ------------------------------------------------------------------- task keys

SDK_CALLS = r"""
import anthropic, openai
chat = openai.OpenAI().chat.completions.create(
    model="cheap", messages=[{"role": "user", "content": "one two three"}])
print("openai", chat.choices[0].message.content)
message = anthropic.Anthropic().messages.create(
    model="cheap", max_tokens=16, messages=[{"role": "user", "content": "four five"}])
print("anthropic", message.content[0].text)
"""


def task_key(task: str, ttl_s: int = 600, app: int = 0) -> str:
    """A task key of one of the lab's applications, as `taskcost key` mints it."""
    sys.path.insert(0, str(TASKCOST.parent))
    try:
        import taskcost as tool
    finally:
        sys.path.pop(0)
    return tool.mint_task_key(lab_app(app)[1], task, int(time.time()) + ttl_s)


def test_the_sdks_given_only_what_taskcost_run_sets_are_counted_against_the_task(
    project: Path, gateway_url: str, ledger: Ledger, tmp_path: Path
) -> None:
    task = task_id(8)
    home = tmp_path / "home"
    unset = ("GATEWAY_URL", "GATEWAY_KEY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
    unset += tuple(k for k in os.environ if k.startswith(("OPENAI_", "ANTHROPIC_")))
    env = {**{k: v for k, v in os.environ.items() if k not in unset}, "HOME": str(home)}
    ran = taskcost(
        "run", task, "--", sys.executable, "-c", SDK_CALLS,
        env=env, cwd=project, tool=home / ".local/bin/taskcost",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    assert "openai emulated reply" in ran.stdout and "anthropic emulated reply" in ran.stdout
    rows = ledger.wait_rows(lambda r: len(r) == 2, "a row for each SDK's call", task=task)
    assert {(r["status"], r["consumer"], r["task"]) for r in rows} == {
        ("success", lab_app()[0], task)
    }
    assert lab_app()[1] not in ran.stdout + ran.stderr


@pytest.mark.usefixtures("trust_gateway_ca")
def test_a_bad_task_key_or_one_used_outside_its_task_or_app_reaches_no_upstream(
    gateway_url: str, emulator: Emulator, ollama_emulator: Emulator
) -> None:
    task = task_id(9)
    good = task_key(task)
    signed, signature = good.split(".")
    limited = next(i for i in range(3) if lab_app(i)[2])  # an application held to some aliases
    outside = next(a for a in ("smart", "balanced", "cheap") if a not in lab_app(limited)[2])
    cases = {
        "expired": (task_key(task, ttl_s=-5), {}, "cheap", 401),
        "tampered task": (task_key(f"{task}1").split(".")[0] + "." + signature, {}, "cheap", 401),
        "forged signature": (f"{signed}.{signature[::-1]}", {}, "cheap", 401),
        "another task's tag": (good, {"x-litellm-tags": "task:1"}, "cheap", 403),
        "alias outside its app": (task_key(task, app=limited), {}, outside, 403),
    }
    emulator.clear()
    ollama_emulator.clear()
    for what, (key, headers, model, status) in cases.items():
        answer = requests.post(
            f"{gateway_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}", **headers},
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert answer.status_code == status, (what, answer.text)
        assert key not in answer.text
    assert emulator.model_calls() + ollama_emulator.model_calls() == []
    fine = requests.post(
        f"{gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {good}", "x-litellm-tags": f"task:{task}.2"},
        json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert fine.status_code == 200, fine.text


@pytest.mark.usefixtures("trust_gateway_ca")
def test_a_task_over_its_budget_is_refused_through_a_task_key_as_through_the_header(
    gateway: requests.Session, gateway_url: str, gateway_key: str, ledger: Ledger,
    mini_answers: Emulator,
) -> None:  # fmt: skip
    task = task_id(10)
    env = {**os.environ, "GATEWAY_URL": gateway_url, "GATEWAY_KEY": gateway_key}
    done = taskcost("budget", "set", task, "0.000001", env=env)
    assert done.returncode == 0, done.stderr
    keyed = requests.Session()
    keyed.headers["Authorization"] = f"Bearer {task_key(task)}"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}]}
    try:
        first = keyed.post(f"{gateway_url}/v1/chat/completions", json=body, timeout=60)
        assert first.status_code == 200, first.text
        ledger.wait_rows(lambda r: len(r) == 1, "the first call's row", task=task)
        wait_until(
            lambda: ledger.status()["spend_by_task"].get(task, 0) > 0, 30, "the spend counted"
        )
        mini_answers.clear()
        through_key = keyed.post(f"{gateway_url}/v1/chat/completions", json=body, timeout=60)
        through_header = tagged_chat(gateway, gateway_url, "gpt-4o-mini", task, "one two three")
        for refused in (through_key, through_header):
            assert refused.status_code == 402, refused.text
            assert f"task {task} has reached its budget" in refused.json()["error"]["message"]
        assert mini_answers.model_calls() == []
    finally:
        cleared = taskcost("budget", "clear", task, env=env)
        assert cleared.returncode == 0, cleared.stderr


# ----------------------------------------------------- a request cannot stop the ledger


def test_a_model_name_postgres_cannot_store_does_not_stop_the_ledger(
    gateway: requests.Session, gateway_url: str, ledger: Ledger, mini_answers: Emulator
) -> None:
    """A NUL in the model name (anyone with any key can send one) used to be spooled
    as it was; Postgres refused the row, and the flush failed on that segment for
    ever. The ledger now cleans what a client chose before it spools it, and a row
    Postgres refuses anyway goes to the quarantine folder: the rows behind it move."""
    task = task_id(8)
    quarantined = ledger.status()["quarantined_rows"]  # the alert test sets one row aside
    bad = tagged_chat(gateway, gateway_url, "x\u0000y", task, "one two three")
    assert bad.status_code in (400, 404), bad.text
    good = tagged_chat(gateway, gateway_url, "gpt-4o-mini", task, "one two three")
    assert good.status_code == 200, good.text
    rows = ledger.wait_rows(
        lambda r: any(x["status"] == "success" for x in r), "the good row in Postgres", task=task
    )
    assert {r["status"] for r in rows} >= {"success"}
    status = ledger.status()
    assert status["database"] == "up", status
    assert status["quarantined_rows"] == quarantined, status


def test_task_labels_of_the_metrics_are_bounded(
    gateway: requests.Session, gateway_url: str, hosts: dict, mini_answers: Emulator
) -> None:
    """Task ids come from the clients: each worker labels the metrics of 3 tasks (in
    the lab) and counts the rest as `other`, on a tmpfs of a bounded size."""
    for offset in range(20, 28):
        answer = tagged_chat(gateway, gateway_url, "gpt-4o-mini", task_id(offset), "hi")
        assert answer.status_code == 200, answer.text
    metrics = gateway.get(f"{gateway_url}/metrics", timeout=30).text
    labels = set(re.findall(r'gateway_task_requests_total\{[^}]*task="([^"]+)"', metrics))
    assert "other" in labels, sorted(labels)
    workers = 4  # litellm_proxy_workers is one per core, at most 4
    assert len(labels - {"other", "none"}) <= 3 * workers, sorted(labels)
    tmpfs = json.loads(
        hosts["gateway"].check_output(
            "docker inspect --format '{{json .HostConfig.Tmpfs}}' litellm-proxy-litellm-1"
        )
    )
    (options,) = tmpfs.values()
    assert "size=64m" in options.split(","), tmpfs
