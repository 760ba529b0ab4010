"""The gateway's cost ledger callback (roles/litellm_proxy/files/cost_ledger.py).

The events fed to it have the shape LiteLLM 1.106 gives its callbacks (taken
from a proxy run against the provider emulator). The database tests use a real
Postgres: the lab's stand-in image (`llmlab/postgres:*`, Debian's PostgreSQL 17,
built by scripts/lab.py) in a throwaway container on this machine's Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from fastapi import Request

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "roles/litellm_proxy/files/cost_ledger.py"


def load_ledger_module() -> ModuleType:
    """Load the file the way LiteLLM does: by path, not registered in sys.modules."""
    saved = {k: os.environ.get(k) for k in ("GATEWAY_LEDGER_SPOOL", "GATEWAY_LEDGER_DSN")}
    os.environ["GATEWAY_LEDGER_SPOOL"] = tempfile.mkdtemp(prefix="ledger-import-")
    os.environ["GATEWAY_LEDGER_DSN"] = ""
    try:
        spec = importlib.util.spec_from_file_location("cost_ledger", SOURCE)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


cl = load_ledger_module()


def make_ledger(spool: Path, dsn: str = "", budgets: dict | None = None, **kw: Any) -> Any:
    """A ledger whose worker runs only when a test starts it (or calls flush_once)."""
    settings = cl.Settings(dsn=dsn, spool=spool, budgets=budgets or {}, flush_seconds=0.2)
    router = kw.pop("router", lambda: None)
    return cl.CostLedger(settings=settings, router_getter=router, autostart=False, **kw)


def success_kwargs(
    task: str | None = "12.3",
    cost: float = 4.05e-06,
    call_id: str | None = None,
    deployment: str = "dep-mini",
) -> dict[str, Any]:
    call_id = call_id or str(uuid.uuid4())
    tags = [f"task:{task}"] if task else []
    return {
        "litellm_call_id": call_id,
        "standard_logging_object": {
            "id": f"chatcmpl-{call_id}",
            "litellm_call_id": call_id,
            "call_type": "acompletion",
            "stream": False,
            "response_cost": cost,
            "status": "success",
            "custom_llm_provider": "openai",
            "prompt_tokens": 3,
            "completion_tokens": 6,
            "model": "openai/gpt-4o-mini",
            "model_id": deployment,
            "model_group": "cheap",
            "api_base": "http://emulator:8080/v1/chat/completions?key=secret",
            "request_tags": [*tags, "User-Agent: ai/5.0"],
            "startTime": 1000.0,
            "endTime": 1000.25,
            "metadata": {"user_api_key_alias": None, "user_api_key_user_id": None},
            "hidden_params": {
                "additional_headers": {
                    "x-litellm-attempted-retries": 1,
                    "x-litellm-attempted-fallbacks": 1,
                }
            },
        },
        "litellm_params": {
            "metadata": {"model_info": {"id": deployment, "gateway_provider": "openai"}},
            "proxy_server_request": {"body": {"model": "cheap"}},
        },
    }


def failed_attempt(task: str = "7", retry: int = 0, call_id: str = "call-f") -> dict[str, Any]:
    return {
        "model": "ollama_chat/llama3.2:1b",
        "api_base": "http://ollama:11434",
        "litellm_call_id": call_id,
        "stream": False,
        "proxy_server_request": {"body": {"model": "cheap"}},
        "model_info": {"id": "dep-ollama", "gateway_provider": "ollama"},
        "metadata": {
            "tags": [f"task:{task}"],
            "model_group": "cheap",
            "attempted_retries": retry,
            "user_api_key_alias": "laptop",
            "llm_api_timing_windows": [[10.0, 10.5], [11.0, 11.25]],
        },
    }


class UpstreamError(Exception):
    status_code = 500


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ------------------------------------------------------------------ what is recorded


@pytest.mark.parametrize(
    ("tags", "task"),
    [
        (["task:12"], "12"),
        (["User-Agent: curl", " task:12.3 "], "12.3"),
        (["task:"], None),
        (["task:has space"], None),
        (["tasks:12", "task:9", "task:10"], "9"),
        (None, None),
    ],
)
def test_the_task_comes_from_the_first_task_tag(tags: list[str] | None, task: str | None) -> None:
    assert cl.task_from_tags(tags) == task


def test_a_success_row_records_what_answered_and_what_it_cost(tmp_path: Path) -> None:
    deployment = SimpleNamespace(litellm_params=SimpleNamespace(api_base="http://emulator:8080/v1"))
    router = SimpleNamespace(get_deployment=lambda model_id: deployment)
    ledger = make_ledger(tmp_path, router=lambda: router)
    run(ledger.async_log_success_event(success_kwargs(cost=4.05e-06), None, None, None))
    (row,) = read_own(ledger)
    assert row["task"] == "12.3"
    assert row["consumer"] == "master"
    assert row["alias"] == "cheap"
    assert row["model_group"] == "cheap"
    assert row["deployment_id"] == "dep-mini"
    assert row["model"] == "openai/gpt-4o-mini"
    assert row["provider"] == "openai"
    assert row["api_base"] == "http://emulator:8080/v1"
    assert (row["input_tokens"], row["output_tokens"]) == (3, 6)
    assert row["cost_usd"] == 4.05e-06
    assert row["status"] == "success"
    assert row["latency_ms"] == 250.0
    assert (row["retries"], row["fallbacks"]) == (1, 1)
    assert ledger.spend.of_root("12") == 4.05e-06


def read_own(ledger: Any) -> list[dict[str, Any]]:
    """Every row in the ledger's spool (closing the segment it writes)."""
    ledger.spool.rotate()
    rows = []
    for path in ledger.spool.segments():
        with ledger.spool.claim(path) as found:
            rows += found or []
    return rows


def test_an_api_base_never_keeps_a_query_string(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    run(ledger.async_log_success_event(success_kwargs(), None, None, None))
    (row,) = read_own(ledger)
    assert row["api_base"] == "http://emulator:8080/v1/chat/completions"


def test_every_failed_attempt_is_a_row_attributed_to_its_deployment(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    for retry in range(3):
        run(
            ledger.async_post_call_failure_deployment_hook(
                failed_attempt(retry=retry), UpstreamError("boom"), "acompletion", None
            )
        )
    # LiteLLM's request-level failure event for the same request carries the
    # deployment of the first attempt: already recorded, not a fourth row.
    request_level = {
        "standard_logging_object": {"litellm_call_id": "call-f", "model_id": "dep-ollama"}
    }
    run(ledger.async_log_failure_event(request_level, None, None, None))
    rows = read_own(ledger)
    assert [r["retries"] for r in rows] == [0, 1, 2]
    for row in rows:
        assert row["status"] == "failure"
        assert row["http_status"] == 500
        assert row["deployment_id"] == "dep-ollama"
        assert row["provider"] == "ollama"
        assert row["api_base"] == "http://ollama:11434"
        assert row["consumer"] == "laptop"
        assert row["task"] == "7"
        assert row["latency_ms"] == 250.0
        assert row["error"].startswith("UpstreamError: boom")


def test_keys_an_upstream_quotes_in_its_error_are_not_recorded(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    error = UpstreamError(
        "POST https://gemini/v1beta/models/x:generateContent?alt=sse&key=AIzaSecret123 failed; "
        "Authorization: Bearer sk-live-0123456789abcdef"
    )
    run(ledger.async_post_call_failure_deployment_hook(failed_attempt(), error, "acompletion"))
    (row,) = read_own(ledger)
    assert "AIzaSecret123" not in row["error"]
    assert "0123456789abcdef" not in row["error"]
    assert "key=***" in row["error"]


def test_a_fallback_hop_records_its_depth(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    run(
        ledger.async_post_call_failure_deployment_hook(
            failed_attempt(), UpstreamError("x"), "acompletion", fallback_depth=1
        )
    )
    assert read_own(ledger)[0]["fallbacks"] == 1


def test_a_failure_before_any_deployment_is_recorded_once(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    event = {
        "exception": SimpleNamespace(status_code=400),
        "standard_logging_object": {
            "litellm_call_id": "call-x",
            "model_id": None,
            "request_tags": ["task:3"],
            "error_str": "Invalid model name passed in model=nope",
            "startTime": 5.0,
            "endTime": 5.1,
        },
        "litellm_params": {"proxy_server_request": {"body": {"model": "nope"}}},
    }
    run(ledger.async_log_failure_event(event, None, None, None))
    run(ledger.async_log_failure_event(event, None, None, None))
    (row,) = read_own(ledger)
    assert (row["task"], row["alias"], row["status"], row["deployment_id"]) == (
        "3",
        "nope",
        "failure",
        None,
    )
    assert row["http_status"] == 400


def test_one_success_logged_twice_counts_once(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    event = success_kwargs(call_id="same")
    run(ledger.async_log_success_event(event, None, None, None))
    run(ledger.async_log_success_event(event, None, None, None))
    assert len(read_own(ledger)) == 1
    assert ledger.spend.of_task("12.3") == 4.05e-06


def test_a_broken_spool_never_fails_the_request(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    ledger = make_ledger(blocker)
    run(ledger.async_log_success_event(success_kwargs(task="4"), None, None, None))
    assert ledger.spend.of_task("4") == 4.05e-06
    assert "spool" in (ledger.last_error or "")


# ---------------------------------------------------------------------- budgets


def test_budgets_from_the_environment_skip_what_is_not_a_budget() -> None:
    budgets = cl.parse_budgets('{"12": 0.5, "*": 5, "13": -1, "bad id": 1, "14": "x", "15": 0}')
    assert budgets == {"12": 0.5, "*": 5.0, "15": 0.0}
    assert cl.parse_budgets("not json") == {}
    assert cl.parse_budgets("[1, 2]") == {}
    assert cl.parse_budgets("") == {}


def test_subtasks_count_against_their_parents_budget() -> None:
    spend = cl.Spend()
    spend.add("12.1", 0.30)
    spend.add("12.2", 0.25)
    spend.add("13", 0.10)
    budgets = cl.Budgets({"12": 0.50, "*": 1.0})
    refusal = budgets.check("12.3", spend)
    assert refusal is not None
    assert (refusal.task, refusal.requested_for, refusal.budget) == ("12", "12.3", 0.50)
    assert refusal.spend == pytest.approx(0.55)
    assert budgets.check("13", spend) is None  # under the "*" default
    spend.add("13.4", 0.95)
    assert budgets.check("13", spend) is not None
    assert budgets.check("99", spend) is None


def test_a_subtask_may_have_a_budget_of_its_own() -> None:
    spend = cl.Spend()
    spend.add("12.1", 0.30)
    budgets = cl.Budgets({"12.1": 0.25})
    assert budgets.check("12.1", spend).task == "12.1"
    assert budgets.check("12.2", spend) is None


def test_a_run_time_budget_wins_over_the_environment() -> None:
    spend = cl.Spend()
    spend.add("12", 0.10)
    budgets = cl.Budgets({"12": 5.0})
    assert budgets.check("12", spend) is None
    budgets.put("12", 0.05)
    assert budgets.check("12", spend).budget == 0.05
    budgets.put("12", None)
    assert budgets.check("12", spend) is None


def test_a_task_over_its_budget_is_refused_with_402_naming_task_spend_and_budget(
    tmp_path: Path,
) -> None:
    ledger = make_ledger(tmp_path, budgets={"12": 0.00001})
    for task in ("12.1", "12.2", "12"):
        run(ledger.async_log_success_event(success_kwargs(task=task), None, None, None))
    data = {
        "model": "balanced",
        "litellm_call_id": "refused-1",
        "metadata": {"tags": ["task:12.3"], "user_api_key_alias": None},
    }
    with pytest.raises(Exception) as caught:
        run(ledger.async_pre_call_hook(None, None, data, "acompletion"))
    error = caught.value
    assert type(error).__name__ == "ProxyException"
    assert error.code == "402"
    assert error.type == "budget_exceeded"
    message = str(error.message)
    assert "task 12 " in message
    assert "spent $0.00001215" in message
    assert "of $0.00001" in message
    assert error.provider_specific_fields["gateway_budget"] == {
        "task": "12",
        "spend_usd": pytest.approx(1.215e-05),
        "budget_usd": 0.00001,
        "requested_for": "12.3",
    }
    rows = read_own(ledger)
    refused = [r for r in rows if r["status"] == "refused"]
    assert [(r["task"], r["http_status"], r["alias"]) for r in refused] == [
        ("12.3", 402, "balanced")
    ]
    # The proxy's own failure event for the refused request adds nothing.
    event = {"standard_logging_object": {"litellm_call_id": "refused-1", "model_id": None}}
    run(ledger.async_log_failure_event(event, None, None, None))
    assert len(read_own(ledger)) == len(rows)


def test_a_refusal_is_recorded_for_the_application_that_asked(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, budgets={"8": 0.0})
    data = {"model": "cheap", "metadata": {"tags": ["task:8"], "user_api_key_alias": None}}
    with pytest.raises(Exception, match="task 8 has reached its budget"):
        run(ledger.async_pre_call_hook(SimpleNamespace(key_alias="app-x"), None, data, "x"))
    assert read_own(ledger)[0]["consumer"] == "app-x"


def test_requests_of_other_tasks_and_untagged_ones_pass(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, budgets={"12": 0.0})
    for data in ({"metadata": {"tags": ["task:13"]}}, {"metadata": {}}, {"tags": ["x"]}):
        assert run(ledger.async_pre_call_hook(None, None, data, "acompletion")) is data


def test_the_hook_reads_tags_from_the_body_too(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, budgets={"5": 0.0})
    with pytest.raises(Exception, match="task 5 has reached its budget"):
        run(ledger.async_pre_call_hook(None, None, {"tags": ["task:5"]}, "acompletion"))


# ------------------------------------------------------------------------ spool


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    run(ledger.async_log_success_event(success_kwargs(), None, None, None))
    ledger.spool.rotate()
    (segment,) = ledger.spool.segments()
    with segment.open("a") as out:
        out.write('{"id": "half-writ')
    rows = read_own(ledger)
    assert len(rows) == 1


def test_a_segment_another_process_is_writing_is_left_alone(tmp_path: Path) -> None:
    other = cl.Spool(tmp_path)
    other.append(cl.new_row(status="success"))
    mine = cl.Spool(tmp_path)
    (segment,) = mine.segments()
    with mine.claim(segment) as rows:
        assert rows is None  # locked by `other`, which still writes it
    other.rotate()
    with mine.claim(segment) as rows:
        assert rows is not None and len(rows) == 1
    assert len(mine.earlier_rows()) == 1
    assert other.earlier_rows() == []


def test_every_process_counts_the_rows_of_the_whole_spool(tmp_path: Path) -> None:
    first, second = cl.Spool(tmp_path), cl.Spool(tmp_path)  # two worker processes
    for _ in range(3):
        first.append(cl.new_row(status="success"))
    second.append(cl.new_row(status="success"))
    assert first.pending_rows() == second.pending_rows() == 4
    first.rotate()
    (closed,) = [p for p in second.segments() if p != second.current()]
    with second.claim(closed) as rows:  # the second process moves the first's rows
        assert rows is not None and len(rows) == 3
        closed.unlink()
    assert first.pending_rows() == second.pending_rows() == 1


def test_rows_are_fsynced_in_the_background_not_per_request(tmp_path: Path) -> None:
    spool = cl.Spool(tmp_path)
    synced: list[int] = []
    real_fsync = os.fsync
    try:
        os.fsync = lambda fd: synced.append(fd)  # type: ignore[assignment]
        for _ in range(50):
            spool.append(cl.new_row(status="success"))
        assert synced == []
        spool.sync()
        spool.sync()
    finally:
        os.fsync = real_fsync  # type: ignore[assignment]
    assert len(synced) == 1


# ---------------------------------------------------------------------- metrics


def test_metrics_roll_subtasks_up_into_their_task(tmp_path: Path) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.REGISTRY
    before = registry.get_sample_value("gateway_task_spend_usd_total", {"task": "41"}) or 0.0
    ledger = make_ledger(tmp_path)
    run(ledger.async_log_success_event(success_kwargs(task="41.2"), None, None, None))
    run(ledger.async_log_success_event(success_kwargs(task="41"), None, None, None))
    spend = registry.get_sample_value("gateway_task_spend_usd_total", {"task": "41"})
    assert spend - before == pytest.approx(2 * 4.05e-06)
    tokens = registry.get_sample_value(
        "gateway_task_tokens_total", {"task": "41", "direction": "output"}
    )
    assert tokens >= 12
    ok = registry.get_sample_value(
        "gateway_task_requests_total", {"task": "41", "status": "success"}
    )
    assert ok >= 2


def test_metrics_create_the_shared_folder_of_the_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is on a tmpfs, empty at each start; the ledger's metrics must not
    depend on LiteLLM's Prometheus logger having made it first."""
    pytest.importorskip("prometheus_client")
    shared = tmp_path / "run" / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    assert cl.Metrics().enabled
    assert shared.is_dir()


# ------------------------------------------------------------------------- HTTP API


def test_the_http_api_needs_the_master_key_and_says_when_it_has_no_database(
    tmp_path: Path,
) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    def fake_auth(request: Request) -> Any:
        role = "proxy_admin" if request.headers.get("authorization") == "Bearer master" else "x"
        return SimpleNamespace(user_role=role)

    ledger = make_ledger(tmp_path, budgets={"12": 0.5})
    app = FastAPI()
    cl.install_routes(app, fake_auth, lambda: ledger)
    routes = len(app.routes)
    cl.install_routes(app, fake_auth, lambda: ledger)  # a second load adds nothing
    assert len(app.routes) == routes
    client = TestClient(app)
    admin = {"Authorization": "Bearer master"}
    assert client.get("/gateway/ledger/status").status_code == 403
    status = client.get("/gateway/ledger/status", headers=admin).json()
    assert status["database"] == "disabled"
    assert status["budgets"] == {"12": 0.5}
    answer = client.get("/gateway/ledger/summary", headers=admin)
    assert answer.status_code == 503
    assert "GATEWAY_LEDGER_DSN" in answer.json()["detail"]
    bad = client.put("/gateway/ledger/budgets/12", json={"budget_usd": -1}, headers=admin)
    assert bad.status_code == 400
    assert client.get("/gateway/ledger/rows?task=a%20b", headers=admin).status_code == 400


# --------------------------------------------------------- with a real Postgres


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _postgres_image() -> str | None:
    if shutil.which("docker") is None:
        return None
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return None
    if info.returncode != 0:
        return None
    wanted = os.environ.get("LAB_POSTGRES_IMAGE")
    listing = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "llmlab/postgres"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if wanted and wanted in listing:
        return wanted
    return listing[0] if listing else None


class Postgres:
    def __init__(self, image: str) -> None:
        self.port = _free_port()
        self.name = f"ledger-unit-{uuid.uuid4().hex[:8]}"
        self.dsn = f"postgresql://ledger:ledger-unit-password@127.0.0.1:{self.port}/ledger"
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                self.name,
                "-e",
                "POSTGRES_USER=ledger",
                "-e",
                "POSTGRES_PASSWORD=ledger-unit-password",
                "-e",
                "POSTGRES_DB=ledger",
                "-p",
                f"127.0.0.1:{self.port}:5432",
                image,
            ],
            check=True,
            capture_output=True,
        )
        self.wait()

    def wait(self, deadline_s: float = 60) -> None:
        import psycopg

        end = time.monotonic() + deadline_s
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        subprocess.run(["docker", "stop", "-t", "5", self.name], check=True, capture_output=True)

    def start(self) -> None:
        subprocess.run(["docker", "start", self.name], check=True, capture_output=True)
        self.wait()

    def query(self, sql: str, *params: Any) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.dsn, client_encoding="utf8") as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pytest.importorskip("psycopg")
    image = _postgres_image()
    if image is None:
        pytest.skip(
            "needs a Docker engine and the lab's llmlab/postgres image "
            "(scripts/lab.py builds it) for a throwaway Postgres"
        )
    server = Postgres(image)
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def db(postgres: Postgres) -> Postgres:
    with contextlib.suppress(Exception):
        postgres.query("TRUNCATE gateway_ledger, gateway_task_budgets")
    return postgres


def test_rows_reach_postgres_once_even_when_a_segment_is_replayed(
    db: Postgres, tmp_path: Path
) -> None:
    first = make_ledger(tmp_path, dsn=db.dsn)
    for task in ("12.1", "12.2", "12"):
        run(first.async_log_success_event(success_kwargs(task=task), None, None, None))
    first.spool.rotate()
    (segment,) = first.spool.segments()
    kept = tmp_path.parent / f"{tmp_path.name}-replay.jsonl"
    shutil.copy(segment, kept)
    assert first.flush_once() == 3
    assert first.spool.segments() == []
    # A crash after the commit and before the segment was deleted: it comes back.
    shutil.copy(kept, segment)
    second = make_ledger(tmp_path, dsn=db.dsn)
    second.flush_once()
    assert db.query("SELECT count(*), sum(cost_usd) FROM gateway_ledger")[0] == (
        3,
        pytest.approx(3 * 4.05e-06),
    )
    assert second.spool.segments() == []
    assert second.spend.of_root("12") == pytest.approx(3 * 4.05e-06)


def test_rows_wait_in_the_spool_while_postgres_is_down_and_arrive_after(
    db: Postgres, tmp_path: Path
) -> None:
    ledger = make_ledger(tmp_path, dsn=db.dsn)
    ledger.start()
    run(ledger.async_log_success_event(success_kwargs(task="20"), None, None, None))
    wait_for(lambda: db.query("SELECT count(*) FROM gateway_ledger")[0][0] == 1, "first row")
    # Recording must never wait for the database: only the ledger's own thread may
    # connect to it, never the request's.
    connecting_threads: list[str] = []
    connect = ledger.store.connect

    def spied_connect() -> Any:
        connecting_threads.append(threading.current_thread().name)
        return connect()

    ledger.store.connect = spied_connect
    db.stop()
    try:
        for _ in range(20):
            run(ledger.async_log_success_event(success_kwargs(task="20"), None, None, None))
        assert threading.current_thread().name not in connecting_threads
        wait_for(lambda: not ledger.database_up, "the ledger noticing Postgres is down")
        assert ledger.spool.pending_rows() == 20
    finally:
        db.start()
    wait_for(lambda: db.query("SELECT count(*) FROM gateway_ledger")[0][0] == 21, "spooled rows")
    wait_for(lambda: ledger.spool.pending_rows() == 0, "an empty spool")
    ledger.close()


def test_spend_is_seeded_from_postgres_without_counting_a_row_twice(
    db: Postgres, tmp_path: Path
) -> None:
    earlier = make_ledger(tmp_path, dsn=db.dsn)
    run(earlier.async_log_success_event(success_kwargs(task="30", cost=0.25), None, None, None))
    earlier.flush_once()  # in Postgres, spool empty
    run(earlier.async_log_success_event(success_kwargs(task="30.1", cost=0.5), None, None, None))
    earlier.spool.rotate()
    (segment,) = earlier.spool.segments()
    kept = segment.read_text()
    earlier.flush_once()  # in Postgres too...
    segment.write_text(kept)  # ...and still in the spool (crash before the delete)
    run(earlier.async_log_success_event(success_kwargs(task="30.2", cost=1.0), None, None, None))
    earlier.spool.rotate()  # only in the spool: Postgres was gone when it was written

    restarted = make_ledger(tmp_path, dsn=db.dsn, budgets={"30": 1.75})
    restarted._count_leftovers()
    restarted.flush_once()
    assert restarted.spend.of_root("30") == pytest.approx(1.75)
    refusal = restarted.budgets.check("30.3", restarted.spend)
    assert refusal is not None and refusal.spend == pytest.approx(1.75)
    assert db.query("SELECT count(*) FROM gateway_ledger")[0][0] == 3


def test_worker_processes_enforce_one_budget_through_postgres(db: Postgres, tmp_path: Path) -> None:
    """What one worker spent counts in another's check once it is in Postgres;
    a budget set through one worker holds in the other at once."""
    first = make_ledger(tmp_path, dsn=db.dsn)
    second = make_ledger(tmp_path, dsn=db.dsn)
    for ledger in (first, second):
        ledger.flush_once()  # both up and seeded, before anything is spent
    run(first.async_log_success_event(success_kwargs(task="40.1", cost=0.3), None, None, None))
    assert run(second.check("40.2")) is None  # no budget yet
    first.set_budget("40", 0.35)
    run(second.async_log_success_event(success_kwargs(task="40.2", cost=0.1), None, None, None))
    assert run(second.check("40")) is None  # first's 0.3 is still in first's spool
    first.flush_once()
    refusal = run(second.check("40.3"))
    assert refusal is not None
    assert (refusal.task, refusal.spend, refusal.budget) == ("40", pytest.approx(0.4), 0.35)
    second.flush_once()
    assert run(first.check("40")) == refusal._replace(requested_for="40")
    assert (
        first.standing()["spend_by_task"]
        == second.standing()["spend_by_task"]
        == {
            "40.1": pytest.approx(0.3),
            "40.2": pytest.approx(0.1),
        }
    )


def test_every_worker_shows_a_budget_set_through_another(db: Postgres, tmp_path: Path) -> None:
    """`taskcost budget show` may reach any worker: each one reads the run-time
    budgets from Postgres, not what it last cached."""
    first = make_ledger(tmp_path, dsn=db.dsn, budgets={"990": 0.5})
    second = make_ledger(tmp_path, dsn=db.dsn, budgets={"990": 0.5})
    for ledger in (first, second):
        ledger.flush_once()
    first.set_budget("41", 0.25)
    shown = second.standing()
    assert shown["runtime"] == {"41": 0.25}
    assert shown["effective"] == {"990": 0.5, "41": 0.25}
    assert second.status()["budgets"] == shown["effective"]
    first.set_budget("41", None)
    assert second.standing()["effective"] == {"990": 0.5}


def test_run_time_budgets_live_in_postgres_and_win_over_the_environment(
    db: Postgres, tmp_path: Path
) -> None:
    ledger = make_ledger(tmp_path, dsn=db.dsn, budgets={"12": 100.0})
    ledger.set_budget("12", 0.0)
    assert ledger.budgets.effective()["12"] == 0.0
    restarted = make_ledger(tmp_path / "other", dsn=db.dsn, budgets={"12": 100.0})
    restarted.flush_once()
    assert restarted.budgets.check("12", restarted.spend) is not None
    restarted.set_budget("12", None)
    assert restarted.budgets.effective()["12"] == 100.0
    assert db.query("SELECT count(*) FROM gateway_task_budgets")[0][0] == 0


def test_the_summary_groups_by_task_model_provider_and_status(db: Postgres, tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, dsn=db.dsn)
    run(ledger.async_log_success_event(success_kwargs(task="50.1"), None, None, None))
    run(ledger.async_log_success_event(success_kwargs(task="50.1"), None, None, None))
    run(
        ledger.async_post_call_failure_deployment_hook(
            failed_attempt(task="50"), UpstreamError("x"), "acompletion"
        )
    )
    run(ledger.async_log_success_event(success_kwargs(task="500"), None, None, None))
    ledger.flush_once()
    rows = ledger.query(lambda conn: ledger.store.summary(conn, "50"))
    found = {(r["task"], r["model"], r["provider"], r["status"]): r for r in rows}
    assert set(found) == {
        ("50", "ollama_chat/llama3.2:1b", "ollama", "failure"),
        ("50.1", "openai/gpt-4o-mini", "openai", "success"),
    }
    success = found[("50.1", "openai/gpt-4o-mini", "openai", "success")]
    assert (success["calls"], success["input_tokens"], success["output_tokens"]) == (2, 6, 12)
    assert success["cost_usd"] == pytest.approx(2 * 4.05e-06)
    listed = ledger.query(lambda conn: ledger.store.rows(conn, "50", None, 10))
    assert {r["task"] for r in listed} == {"50", "50.1"}


def wait_for(check: Any, what: str, deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline_s}s")
        time.sleep(0.2)
