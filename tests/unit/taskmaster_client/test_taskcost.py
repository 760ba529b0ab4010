"""taskcost (roles/taskmaster_client/files/taskcost.py) and the play that sets a project up.

The upstream here is a small local HTTP(S) server that records what reached
it (the HTTPS one with a CA made for the test, like the gateway role's own);
the real Task Master CLI against the real gateway is in
tests/integration/taskmaster_client/test_taskmaster.py.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.loader import load

REPO = Path(__file__).resolve().parents[3]
SOURCE = "roles/taskmaster_client/files/taskcost.py"
tc = load(SOURCE, "taskcost")

# A tasks.json as Task Master 0.43 writes it (JSON.stringify(data, null, 2), no
# final newline), with a second tag, a non-ASCII title and metadata of its own.
TASKS = {
    "master": {
        "tasks": [
            {
                "id": 1,
                "title": "Build the login page",
                "description": "A login form",
                "details": "Größe der Felder prüfen ✓",
                "testStrategy": "",
                "status": "in-progress",
                "dependencies": [],
                "priority": "medium",
                "subtasks": [
                    {
                        "id": 1,
                        "title": "Form fields",
                        "description": "user and password",
                        "details": "",
                        "status": "done",
                        "dependencies": [],
                        "parentTaskId": 1,
                    },
                    {
                        "id": 2,
                        "title": "Error messages",
                        "description": "",
                        "details": "",
                        "status": "pending",
                        "dependencies": [1],
                        "parentTaskId": 1,
                    },
                ],
                "metadata": {"githubIssue": 42},
            },
            {
                "id": 2,
                "title": "Ship it",
                "description": "",
                "details": "",
                "testStrategy": "",
                "status": "pending",
                "dependencies": [1],
                "priority": "high",
                "subtasks": [],
            },
        ],
        "metadata": {"created": "2026-11-24T00:00:00.000Z", "description": "Tasks"},
    },
    "feature-x": {"tasks": [{"id": 1, "title": "Other tag", "status": "pending"}]},
}

SUMMARY = [
    {
        "task": "1",
        "model": "gemini/gemini-2.5-flash",
        "provider": "gemini",
        "status": "success",
        "calls": 1,
        "input_tokens": 301,
        "output_tokens": 6,
        "cost_usd": 0.0001053,
    },
    {
        "task": "1.2",
        "model": "openai/gpt-4.1",
        "provider": "openai",
        "status": "success",
        "calls": 2,
        "input_tokens": 400,
        "output_tokens": 12,
        "cost_usd": 0.000896,
    },
    {
        "task": "1.2",
        "model": "ollama_chat/llama3.2:1b",
        "provider": "ollama",
        "status": "failure",
        "calls": 3,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
    },
    {
        "task": "7",
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "status": "refused",
        "calls": 1,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
    },
    {
        "task": None,
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "status": "success",
        "calls": 4,
        "input_tokens": 12,
        "output_tokens": 24,
        "cost_usd": 0.0000162,
    },
]


def write_project(root: Path, base_url: str = "http://127.0.0.1:4000/v1") -> Path:
    (root / ".taskmaster" / "tasks").mkdir(parents=True)
    config = {
        "models": {
            role: {"provider": "openai-compatible", "modelId": alias, "baseURL": base_url}
            for role, alias in (("main", "balanced"), ("research", "smart"), ("fallback", "cheap"))
        },
        "global": {"anonymousTelemetry": False},
    }
    (root / ".taskmaster" / "config.json").write_text(json.dumps(config, indent=2))
    (root / ".taskmaster" / "tasks" / "tasks.json").write_text(
        json.dumps(TASKS, indent=2, ensure_ascii=False)
    )
    (root / ".env").write_text("LLM_GATEWAY_APP_KEY=sk-from-the-project\n")
    return root


# ------------------------------------------------------------------------ report


def test_subtasks_roll_up_into_their_task_with_the_split_by_model_and_provider() -> None:
    report = tc.build_report(SUMMARY, tc.task_index(TASKS["master"]["tasks"]), False)
    first, refused = report["tasks"]
    assert (first["id"], first["title"], first["status"]) == (
        "1",
        "Build the login page",
        "in-progress",
    )
    assert (first["calls"], first["succeeded"], first["failed"]) == (6, 3, 3)
    assert (first["input_tokens"], first["output_tokens"]) == (701, 18)
    assert first["cost_usd"] == pytest.approx(0.0010013)
    assert [(m["model"], m["provider"], m["calls"]) for m in first["by_model"]] == [
        ("gemini/gemini-2.5-flash", "gemini", 1),
        ("ollama_chat/llama3.2:1b", "ollama", 3),
        ("openai/gpt-4.1", "openai", 2),
    ]
    assert [(p["provider"], p["cost_usd"]) for p in first["by_provider"]] == [
        ("gemini", 0.0001053),
        ("ollama", 0.0),
        ("openai", 0.000896),
    ]
    (sub,) = first["subtasks"]
    assert (sub["id"], sub["title"], sub["calls"], sub["cost_usd"]) == (
        "1.2",
        "Error messages",
        5,
        0.000896,
    )
    assert (refused["id"], refused["title"], refused["refused"]) == ("7", None, 1)
    assert report["untagged"]["calls"] == 4
    assert report["total"]["calls"] == 7


def test_all_lists_tasks_without_calls_too() -> None:
    report = tc.build_report(SUMMARY[:1], tc.task_index(TASKS["master"]["tasks"]), True)
    assert [t["id"] for t in report["tasks"]] == ["1", "2"]


def test_the_table_names_each_task_and_what_served_it() -> None:
    report = tc.build_report(SUMMARY, tc.task_index(TASKS["master"]["tasks"]), False)
    table = tc.format_table(report)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["Task", "Status", "Calls"]
    assert "Build the login page" in lines[1] and lines[1].startswith("1 ")
    assert "openai/gpt-4.1 (openai): 2 calls" in table
    assert "(not in tasks.json)" in table
    assert "Not tagged with a task: 4 calls" in table


def test_write_metadata_adds_the_totals_and_leaves_the_rest_of_the_file_as_it_was(
    tmp_path: Path,
) -> None:
    project = write_project(tmp_path)
    path = tc.tasks_path(project)
    before = path.read_text()
    # The premise: Python writes Task Master's layout byte for byte.
    assert json.dumps(json.loads(before), indent=2, ensure_ascii=False) == before
    report = tc.build_report(SUMMARY, tc.task_index(TASKS["master"]["tasks"]), False)
    assert tc.write_metadata(project, "master", report) == 2  # task 1 and subtask 1.2
    after = json.loads(path.read_text())
    task = after["master"]["tasks"][0]
    assert list(task) == list(TASKS["master"]["tasks"][0])  # no key moved
    assert task["metadata"]["githubIssue"] == 42
    cost = task["metadata"]["gatewayCost"]
    assert (cost["calls"], cost["failedCalls"], cost["inputTokens"]) == (6, 3, 701)
    assert cost["byModel"]["openai/gpt-4.1"] == {
        "provider": "openai",
        "calls": 2,
        "costUsd": 0.000896,
    }
    assert task["subtasks"][1]["metadata"]["gatewayCost"]["calls"] == 5
    assert list(task["subtasks"][1])[-1] == "metadata"
    # Everything but the new metadata is what it was, down to the bytes.
    del task["metadata"]["gatewayCost"]
    del task["subtasks"][1]["metadata"]
    assert json.dumps(after, indent=2, ensure_ascii=False) == before
    # A second run with the same ledger changes nothing.
    written = path.read_bytes()
    assert tc.write_metadata(project, "master", report) == 0
    assert path.read_bytes() == written


def test_the_current_tag_comes_from_task_masters_state(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    assert tc.current_tag(project, None) == "master"
    (project / ".taskmaster" / "state.json").write_text('{"currentTag": "feature-x"}')
    assert tc.current_tag(project, None) == "feature-x"
    assert tc.current_tag(project, "master") == "master"
    _doc, index = tc.load_tasks(project, "feature-x")
    assert index["1"]["title"] == "Other tag"


# --------------------------------------------------------- a stand-in gateway


class Upstream(ThreadingHTTPServer):
    """A stand-in gateway (HTTP, or HTTPS with its own CA) that records what reached it."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), UpstreamHandler)
        self.seen: list[dict[str, Any]] = []
        self.summary: list[dict[str, Any]] = SUMMARY
        self.scheme = "http"
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"

    @property
    def url(self) -> str:
        return f"{self.scheme}://localhost:{self.server_address[1]}"


class UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path.endswith("/stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for word in ("data: one\n\n", "data: two\n\n", "data: [DONE]\n\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(word), word.encode()))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        self._json(200, {"echo": body.decode(), "path": self.path})

    def do_GET(self) -> None:
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "body": b""})
        if self.headers.get("Authorization") != "Bearer sk-from-the-project":
            self._json(401, {"error": {"message": "bad key"}})
        elif self.path == "/gateway/ledger/summary":
            self._json(200, {"rows": self.server.summary, "pending_rows": 0})
        else:
            self._json(404, {"detail": "Not Found"})

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(server: Upstream) -> Upstream:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = serve(Upstream())
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def gateway_ca(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA of our own and a certificate from it for `localhost`, like the role's small CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def certificate(subject: str, key: Any, issuer: Any, issuer_key: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unit test CA")])
    ca_cert = certificate("unit test CA", ca_key, ca_name, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate("localhost", key, ca_name, ca_key, False)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.crt").write_bytes(ca_cert.public_bytes(pem))
    (tmp_path / "server.crt").write_bytes(cert.public_bytes(pem))
    (tmp_path / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    return tmp_path / "ca.crt", server_tls


SHOW_ENV = r"""
import json, os, sys, urllib.request
names = sys.argv[1].split(",")
seen = {name: os.environ.get(name) for name in names}
if len(sys.argv) > 2:  # reach the gateway the way an SDK would, trusting what it is handed
    seen["status"] = urllib.request.urlopen(sys.argv[2], data=b"{}").status
print(json.dumps(seen))
sys.exit(3)
"""
AGENT_VARIABLES = (
    "OPENAI_COMPATIBLE_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_API_KEY",
)
SEEN = (
    *AGENT_VARIABLES,
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "LLM_GATEWAY_APP_KEY",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
)


def taskcost(project: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """The installed script as a user runs it (run replaces itself with the command)."""
    return subprocess.run(
        [sys.executable, str(REPO / SOURCE), *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(project.parent / "home"), **(env or {})},
    )


def show_env(project: Path, *run_args: str, url: str | None = None, **kw: Any) -> Any:
    extra = [url] if url else []
    cmd = ["run", *run_args, "--", sys.executable, "-c", SHOW_ENV, ",".join(SEEN), *extra]
    return taskcost(project, *cmd, **kw)


def claim_of(key: str) -> dict[str, Any]:
    import base64

    payload = key.split(".")[0][len("sk-task-") :]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_run_hands_the_command_a_task_key_where_agents_read_it_and_changes_no_file(
    tmp_path: Path,
) -> None:
    project = write_project(tmp_path, "https://gateway.home.arpa/v1")
    files = {p: p.read_bytes() for p in (project / ".env", project / ".taskmaster/config.json")}
    started = time.time()
    result = show_env(project, "12")
    assert result.returncode == 3, result.stderr  # the command's own exit code
    seen = json.loads(result.stdout)
    key = seen["OPENAI_COMPATIBLE_API_KEY"]
    assert key.startswith("sk-task-") and {seen[name] for name in AGENT_VARIABLES} == {key}
    claim = claim_of(key)
    assert claim["task"] == "12"
    assert started + 12 * 3600 - 5 <= claim["exp"] <= time.time() + 12 * 3600
    assert seen["OPENAI_BASE_URL"] == "https://gateway.home.arpa/v1"
    assert seen["ANTHROPIC_BASE_URL"] == "https://gateway.home.arpa"
    assert seen["LLM_GATEWAY_APP_KEY"] is None  # the command gets the task key only
    assert "sk-from-the-project" not in result.stdout + result.stderr
    assert {p: p.read_bytes() for p in files} == files
    assert "task 12's key" in result.stderr
    shorter = claim_of(json.loads(show_env(project, "12.3", "--ttl", "30m").stdout)[SEEN[0]])
    assert shorter["task"] == "12.3" and shorter["exp"] <= time.time() + 1800


def test_run_untagged_hands_on_the_application_key_and_wants_one_or_the_other(
    tmp_path: Path,
) -> None:
    project = write_project(tmp_path)
    seen = json.loads(show_env(project, "--untagged").stdout)
    assert seen["OPENAI_API_KEY"] == "sk-from-the-project"
    for wrong in ([], ["12", "--untagged"]):
        result = show_env(project, *wrong)
        assert result.returncode == 2 and "--untagged" in result.stderr
    assert "not a task id" in show_env(project, "12 3").stderr
    assert "not a lifetime" in show_env(project, "12", "--ttl", "soon").stderr


def test_run_refuses_while_the_projects_env_would_win_over_the_task_key(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    env_file = project / ".env"
    env_file.write_text(env_file.read_text() + "OPENAI_COMPATIBLE_API_KEY=sk-static\n")
    result = show_env(project, "12")
    assert result.returncode == 2 and result.stdout == ""
    assert "sets OPENAI_COMPATIBLE_API_KEY" in result.stderr
    assert "sk-static" not in result.stderr


def test_run_refuses_a_project_that_does_not_use_the_gateway(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    (project / ".taskmaster" / "config.json").write_text('{"models": {}}')
    result = show_env(project, "12")
    assert result.returncode == 2 and "no Task Master role uses the gateway" in result.stderr
    (project / ".env").write_text("")
    assert "no application key" in show_env(project, "12").stderr
    write_project(tmp_path / "earlier", "http://127.0.0.1:41234/0")  # a killed earlier run's
    assert "run playbooks/taskmaster.yml" in show_env(tmp_path / "earlier", "12").stderr


def test_key_prints_a_task_key_alone_or_as_exports(tmp_path: Path) -> None:
    project = write_project(tmp_path, "https://gateway.home.arpa/v1")
    printed = taskcost(project, "key", "7", "--ttl", "2h")
    assert printed.returncode == 0, printed.stderr
    claim = claim_of(printed.stdout.strip())
    assert claim["task"] == "7" and claim["exp"] <= time.time() + 7200
    assert "valid until" in printed.stderr and "sk-task-" not in printed.stderr
    exports = taskcost(project, "key", "7", "--env").stdout.splitlines()
    assert "export ANTHROPIC_BASE_URL='https://gateway.home.arpa'" in exports
    assert sum(line.startswith("export OPENAI_API_KEY='sk-task-") for line in exports) == 1


def test_run_hands_on_the_gateways_ca_beside_the_systems(
    tmp_path: Path, gateway_ca: tuple[Path, ssl.SSLContext]
) -> None:
    ca, server_tls = gateway_ca
    secure = serve(Upstream(server_tls))
    try:
        project = write_project(tmp_path / "p", f"{secure.url}/v1")
        env = {"GATEWAY_CA_FILE": str(ca), "SSL_CERT_FILE": ""}
        result = show_env(project, "12", url=f"{secure.url}/v1/chat/completions", env=env)
        assert result.returncode == 3, result.stderr
        seen = json.loads(result.stdout)
        assert seen["status"] == 200
        assert seen["NODE_EXTRA_CA_CERTS"] == seen["SSL_CERT_FILE"]
        bundle = Path(seen["SSL_CERT_FILE"]).read_text()
        assert ca.read_text().strip() in bundle
        assert bundle.count("BEGIN CERTIFICATE") > 1  # the system's CAs are still trusted
        nested = show_env(project, "12", env={**env, "SSL_CERT_FILE": seen["SSL_CERT_FILE"]})
        assert Path(json.loads(nested.stdout)["SSL_CERT_FILE"]).read_text() == bundle
        env = {"NODE_EXTRA_CA_CERTS": "", "SSL_CERT_FILE": ""}
        without = show_env(project, "12", url=f"{secure.url}/v1/chat/completions", env=env)
        assert without.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in without.stderr
    finally:
        secure.shutdown()
        secure.server_close()


def test_the_gateways_ca_is_trusted_on_top_of_the_system_store(
    gateway_ca: tuple[Path, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, _ = gateway_ca
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("GATEWAY_CA_FILE", str(ca))
    assert tc.ca_files()[0] == str(ca)
    system = len(ssl.create_default_context().get_ca_certs())
    assert len(tc.tls_context().get_ca_certs()) >= system + 1


def test_report_reads_the_ledger_with_the_projects_key_and_prints_titles(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = write_project(tmp_path, f"{upstream.url}/v1")
    assert tc.main(["--project", str(project), "report"]) == 0
    table = capsys.readouterr().out
    assert "Build the login page" in table
    assert tc.main(["--project", str(project), "report", "--json", "--write-metadata"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gateway"] == upstream.url
    assert report["tasks"][0]["title"] == "Build the login page"
    written = json.loads(tc.tasks_path(project).read_text())
    assert written["master"]["tasks"][0]["metadata"]["gatewayCost"]["calls"] == 6
    assert upstream.seen[0]["headers"]["Authorization"] == "Bearer sk-from-the-project"


def test_report_says_plainly_when_the_gateway_has_no_ledger(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = write_project(tmp_path, f"{upstream.url}/v1")
    gateway = tc.Gateway(upstream.url, "sk-from-the-project")
    with pytest.raises(tc.TaskcostError, match="no cost ledger API"):
        gateway.call("GET", "/gateway/ledger/nothing-here")
    assert tc.main(["--project", str(project), "--gateway", "http://127.0.0.1:9", "report"]) == 2
    assert "cannot reach the gateway" in capsys.readouterr().err


# ---------------------------------------------------------------- the playbook


def ansible_playbook() -> str:
    found = Path(sys.executable).parent / "ansible-playbook"
    if not found.exists():
        pytest.skip("ansible-playbook is not installed next to this Python")
    return str(found)


FAKE_CA = "-----BEGIN CERTIFICATE-----\nMIIBfakefakefake\n-----END CERTIFICATE-----"


def play(project: Path, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """playbooks/taskmaster.yml on this machine (inventory/local), as a user would run it."""
    variables = home / "vars.json"
    home.mkdir(parents=True, exist_ok=True)
    variables.write_text(
        json.dumps(
            {
                "taskmaster_client_project_dir": str(project),
                "taskmaster_client_gateway_url": "https://192.0.2.10/",
                "taskmaster_client_gateway_key": "sk-unit-test-key-0123456789abcdefghij",
                "taskmaster_client_gateway_ca": FAKE_CA,
                "taskmaster_client_gateway_ca_path": f"{home}/.config/llm-gateway/gateway-ca.crt",
                "taskmaster_client_taskcost_path": f"{home}/bin/taskcost",
            }
        )
    )
    return subprocess.run(
        [
            ansible_playbook(),
            "playbooks/taskmaster.yml",
            "-i",
            "inventory/local/hosts.yml",
            "-e",
            f"@{variables}",
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default"},
    )


def recap(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    line = next(line for line in result.stdout.splitlines() if line.startswith("localhost "))
    return {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}


def test_the_play_merges_into_an_existing_config_and_a_second_run_changes_nothing(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    (project / ".taskmaster").mkdir(parents=True)
    (project / ".git").mkdir()
    original = {
        "models": {
            "main": {
                "provider": "anthropic",
                "modelId": "claude",
                "maxTokens": 64000,
                "temperature": 0.2,
            },
            "research": {"provider": "perplexity", "modelId": "sonar", "temperature": 0.1},
        },
        "global": {"logLevel": "info", "projectName": "Mine", "anonymousTelemetry": True},
        "claudeCode": {},
    }
    config = project / ".taskmaster" / "config.json"
    config.write_text(json.dumps(original, indent=2))
    (project / ".env").write_text("ANTHROPIC_API_KEY=keep-me\nOPENAI_COMPATIBLE_API_KEY=old\n")
    (project / ".env").chmod(0o644)

    home = tmp_path / "home"
    first = play(project, home)
    assert first.returncode == 0, first.stdout + first.stderr
    assert recap(first)["changed"] >= 3
    merged = json.loads(config.read_text())
    assert list(merged) == ["models", "global", "claudeCode"]
    assert merged["models"]["main"] == {
        "provider": "openai-compatible",
        "modelId": "balanced",
        "maxTokens": 16384,
        "temperature": 0.2,
        "baseURL": "https://192.0.2.10/v1",
    }
    assert merged["models"]["research"]["modelId"] == "smart"
    assert merged["models"]["research"]["temperature"] == 0.1
    assert merged["models"]["fallback"]["modelId"] == "cheap"
    assert merged["global"] == {
        "logLevel": "info",
        "projectName": "Mine",
        "anonymousTelemetry": False,
    }
    env_file = project / ".env"
    # Task Master would take a key in .env over the task key taskcost hands it
    assert env_file.read_text() == (
        "ANTHROPIC_API_KEY=keep-me\nLLM_GATEWAY_APP_KEY=sk-unit-test-key-0123456789abcdefghij\n"
    )
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert (project / ".gitignore").read_text() == ".env\n"
    assert os.access(home / "bin" / "taskcost", os.X_OK)
    ca = home / ".config" / "llm-gateway" / "gateway-ca.crt"
    assert ca.read_text() == FAKE_CA + "\n"
    assert (ca.parent.stat().st_mode & 0o777) == 0o700
    assert "sk-unit-test-key" not in first.stdout

    second = play(project, home)
    assert second.returncode == 0, second.stdout + second.stderr
    assert recap(second)["changed"] == 0, second.stdout


def test_the_play_leaves_a_config_it_cannot_read_alone(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".taskmaster").mkdir(parents=True)
    config = project / ".taskmaster" / "config.json"
    config.write_text('{"models": ')
    result = play(project, tmp_path / "home")
    assert result.returncode != 0
    assert "is not valid JSON" in result.stdout
    assert config.read_text() == '{"models": '


def test_the_play_stops_before_touching_anything_without_a_project(tmp_path: Path) -> None:
    result = play(tmp_path / "missing", tmp_path / "home")
    assert result.returncode != 0
    assert "Set taskmaster_client_project_dir to an existing folder" in result.stdout
    assert not (tmp_path / "home" / "bin").exists()


@pytest.fixture(autouse=True)
def _no_gateway_env() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in ("GATEWAY_URL", "GATEWAY_KEY") if k in os.environ}
    yield
    os.environ.update(saved)
