#!/usr/bin/env python3
"""What each Task Master task cost through the gateway, and commands run on a task's behalf.

    taskcost run 12 -- task-master update-subtask --id=12.1 --prompt "..."
    taskcost report [--json] [--write-metadata] [--all] [--tag TAG]
    taskcost budget show | set 12 0.50 | clear 12
    taskcost restore

`run` makes every gateway call of the command carry the request tag `task:12`.
Task Master sends no task id, no custom header and no `user` field, and it
takes its `baseURL` from `.taskmaster/config.json` with no environment
override (an environment variable is consulted only when config.json has no
baseURL). So for as long as the command runs, the gateway roles' baseURLs in
config.json point at a forwarder that this process serves on 127.0.0.1; it
adds `x-litellm-tags: task:12` and passes each request on to the gateway (over
HTTPS, checked against the gateway's CA). The original file is journaled in
`.taskmaster/.taskcost-run.json` first and put back when the command ends,
also on Ctrl-C, SIGTERM or SIGHUP; byte for byte, or, if Task Master changed
the file meanwhile, by putting back only the baseURLs. If this process is
killed outright, the next taskcost command in the project (or `taskcost
restore`) puts it back. Nothing stays running: the forwarder is a thread of
this process. While a run lasts, other Task Master processes of the same
project (an editor's MCP server) also go through the forwarder.

`report` reads the gateway's cost ledger over its HTTP API
(`/gateway/ledger/summary`, master key), and titles and statuses from
`.taskmaster/tasks/tasks.json`; subtasks (`12.3`) roll up into their parent.
`--write-metadata` stores the totals in each task's `metadata.gatewayCost`.

The gateway URL and key come from the project (the `openai-compatible`
baseURL in config.json without `/v1`, and `OPENAI_COMPATIBLE_API_KEY` in its
`.env`), or from GATEWAY_URL / GATEWAY_KEY, or `--gateway`. The gateway's CA:
`--ca-file`, GATEWAY_CA_FILE, NODE_EXTRA_CA_CERTS, or
~/.config/llm-gateway/gateway-ca.crt (where playbooks/taskmaster.yml puts it).
Standard library only, so it runs with any Python 3.10+ on a workstation.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# The gateway's task-id grammar (roles/litellm_proxy/files/gateway/tasks.py), copied:
# this file runs on its own. tests/unit/litellm_proxy/gateway/test_tasks.py proves they agree.
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
METADATA_KEY = "gatewayCost"
GATEWAY_PROVIDER = "openai-compatible"
ROLES = ("main", "research", "fallback")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
}
UPSTREAM_TIMEOUT = 900.0
JOURNAL_NAME = ".taskcost-run.json"
DEFAULT_CA_FILE = Path("~/.config/llm-gateway/gateway-ca.crt")
LOCAL_HOSTS = ("127.0.0.1", "localhost")


class TaskcostError(Exception):
    """A problem the user can act on; printed without a traceback."""


# ------------------------------------------------------------------ the project


def find_project(start: Path) -> Path | None:
    """The nearest folder at or above `start` that holds `.taskmaster/`."""
    for folder in [start, *start.parents]:
        if (folder / ".taskmaster").is_dir():
            return folder
    return None


def project_dir(option: str | None) -> Path:
    if option:
        path = Path(option).expanduser().resolve()
        if not (path / ".taskmaster").is_dir():
            raise TaskcostError(f"{path} has no .taskmaster folder: not a Task Master project")
        return path
    found = find_project(Path.cwd().resolve())
    if found is None:
        raise TaskcostError("no Task Master project here (no .taskmaster folder); use --project")
    return found


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (optionally `export`-ed and quoted), as dotenv reads them."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def read_config(project: Path) -> dict[str, Any]:
    path = project / ".taskmaster" / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TaskcostError(f"{path} is not valid JSON: {error}") from error
    return config if isinstance(config, dict) else {}


def gateway_base_urls(config: Mapping[str, Any]) -> dict[str, str]:
    """baseURL of every role that talks to an OpenAI-compatible server."""
    models = config.get("models") or {}
    found = {}
    for role in ROLES:
        entry = models.get(role) or {}
        if entry.get("provider") == GATEWAY_PROVIDER and entry.get("baseURL"):
            found[role] = str(entry["baseURL"])
    return found


def gateway_from_project(project: Path | None) -> tuple[str | None, str | None]:
    """(gateway URL without /v1, key) as the project's Task Master setup has them."""
    if project is None:
        return None, None
    urls = gateway_base_urls(read_config(project))
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        # A run in progress points config.json at its forwarder: use the real gateway.
        record = json.loads(journal_path(project).read_text(encoding="utf-8"))
        for role, (original, temporary) in record["roles"].items():
            if urls.get(role) == temporary:
                urls[role] = original
    url = urls.get("main") or next(iter(urls.values()), None)
    if url:
        url = re.sub(r"/v1/?$", "", url.rstrip("/"))
    key = read_dotenv(project / ".env").get("OPENAI_COMPATIBLE_API_KEY")
    return url, key or os.environ.get("OPENAI_COMPATIBLE_API_KEY")


# ---------------------------------------------------------------------------- TLS


def ca_files(option: str | None = None) -> list[str]:
    """CA bundles to trust for the gateway, on top of the system's (SSL_CERT_FILE too).

    `--ca-file`, GATEWAY_CA_FILE, NODE_EXTRA_CA_CERTS (what Task Master itself
    needs for the gateway's own CA), and the file playbooks/taskmaster.yml
    installs: every one of them that exists."""
    found: list[str] = []
    for candidate in (
        option,
        os.environ.get("GATEWAY_CA_FILE"),
        os.environ.get("NODE_EXTRA_CA_CERTS"),
        str(DEFAULT_CA_FILE),
    ):
        path = Path(candidate).expanduser() if candidate else None
        if path is not None and path.is_file() and str(path) not in found:
            found.append(str(path))
    return found


def tls_context(option: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for path in ca_files(option):
        try:
            context.load_verify_locations(cafile=path)
        except (ssl.SSLError, OSError) as error:
            raise TaskcostError(f"cannot read the CA bundle {path}: {error}") from error
    return context


# ---------------------------------------------------------------------- forwarder


class TaggingForwarder(ThreadingHTTPServer):
    """Plain HTTP on 127.0.0.1, passed on to the gateway with `x-litellm-tags: task:<id>`.

    `/<n>/<path>` goes to upstream base URL number n plus `<path>`, over HTTPS
    when the gateway is HTTPS (checked against the gateway's CA)."""

    daemon_threads = True

    def __init__(self, task: str, upstreams: list[str], context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), ForwardingHandler)
        self.tag = f"task:{task}"
        self.upstreams = [urllib.parse.urlsplit(u.rstrip("/")) for u in upstreams]
        self.context = context
        self.tagged = 0
        self.count_lock = threading.Lock()

    def local_base(self, index: int) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{index}"

    def count(self) -> None:
        with self.count_lock:
            self.tagged += 1


def merge_tags(existing: str | None, tag: str) -> str:
    """Our task tag first; the client's other tags kept, any task tag of its own dropped."""
    others = [t.strip() for t in (existing or "").split(",") if t.strip()]
    return ",".join([tag, *[t for t in others if not t.startswith("task:")]])


class ForwardingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TaggingForwarder

    def log_message(self, format: str, *args: Any) -> None:
        return  # the wrapped command's output is what the user reads

    def do_GET(self) -> None:
        self._forward()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return body
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(self) -> None:
        first, _, rest = self.path.lstrip("/").partition("/")
        if not first.isdigit() or int(first) >= len(self.server.upstreams):
            self._send_json(404, f"taskcost forwarder: no gateway behind {self.path}")
            return
        upstream = self.server.upstreams[int(first)]
        path = f"{upstream.path}/{rest}"
        body = self._read_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        existing = next((v for k, v in headers.items() if k.lower() == "x-litellm-tags"), None)
        headers = {k: v for k, v in headers.items() if k.lower() != "x-litellm-tags"}
        headers["x-litellm-tags"] = merge_tags(existing, self.server.tag)
        if body is not None:
            headers["Content-Length"] = str(len(body))  # a TLS front may refuse chunked bodies
        port = upstream.port or (443 if upstream.scheme == "https" else 80)
        if upstream.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                upstream.hostname, port, timeout=UPSTREAM_TIMEOUT, context=self.server.context
            )
        else:
            connection = http.client.HTTPConnection(
                upstream.hostname, port, timeout=UPSTREAM_TIMEOUT
            )
        self.server.count()
        try:
            connection.request(self.command, path, body=body, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            self._send_json(502, f"taskcost forwarder: cannot reach the gateway: {error}")
            return
        try:
            self._relay(response)
        finally:
            connection.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response(response.status, response.reason)
        length = response.getheader("Content-Length")
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        if self.command == "HEAD" or response.status in (204, 304):
            self.send_header("Content-Length", "0" if length is None else length)
            self.end_headers()
            return
        if length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            while chunk := response.read(65536):
                self.wfile.write(chunk)
            self.wfile.flush()
            return
        # No length (server-sent events): pass each piece on as it arrives.
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while chunk := response.read1(65536):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send_json(self, status: int, message: str) -> None:
        payload = json.dumps({"error": {"message": message, "type": "taskcost"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextlib.contextmanager
def forwarder(
    task: str, upstreams: list[str], context: ssl.SSLContext
) -> Iterator[TaggingForwarder]:
    server = TaggingForwarder(task, upstreams, context)
    thread = threading.Thread(target=server.serve_forever, name="taskcost-forwarder", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------- the temporary baseURL


def journal_path(project: Path) -> Path:
    return project / ".taskmaster" / JOURNAL_NAME


def config_path(project: Path) -> Path:
    return project / ".taskmaster" / "config.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dump_like(document: Any, original: str) -> str:
    """JSON in Task Master's own layout (JSON.stringify(data, null, 2))."""
    return json.dumps(document, indent=2, ensure_ascii=False) + (
        "\n" if original.endswith("\n") else ""
    )


def restore_config(project: Path) -> bool:
    """Put back the baseURLs an interrupted or finished run replaced; True if it did.

    Byte for byte when config.json is as the run left it; otherwise (Task Master
    changed it meanwhile) only the baseURLs that still point at the forwarder."""
    journal = journal_path(project)
    try:
        record = json.loads(journal.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    path = config_path(project)
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if current == record["rewritten"]:
        atomic_write(path, record["original"])
    elif current:
        document = json.loads(current)
        for role, (original, temporary) in record["roles"].items():
            entry = (document.get("models") or {}).get(role) or {}
            if entry.get("baseURL") == temporary:
                entry["baseURL"] = original
        atomic_write(path, _dump_like(document, current))
    journal.unlink(missing_ok=True)
    return True


def running_pid(project: Path) -> int | None:
    """The pid of a taskcost run that is using the project right now, if any."""
    try:
        record = json.loads(journal_path(project).read_text(encoding="utf-8"))
        pid = int(record.get("pid") or 0)
    except (OSError, ValueError, AttributeError):
        return None
    return pid if pid and pid != os.getpid() and _alive(pid) else None


def recover(project: Path | None) -> None:
    """Undo what a run that died without cleaning up (SIGKILL, power loss) left."""
    if project is None or not journal_path(project).exists() or running_pid(project):
        return  # nothing to undo, or that run is still going and puts it back itself
    if restore_config(project):
        print(
            f"taskcost: restored {config_path(project)} after an interrupted run",
            file=sys.stderr,
        )


@contextlib.contextmanager
def gateway_through(
    project: Path, server: TaggingForwarder, roles: dict[str, str]
) -> Iterator[None]:
    """config.json's gateway baseURLs point at the forwarder while the block runs."""
    journal = journal_path(project)
    path = config_path(project)
    original = path.read_text(encoding="utf-8")
    document = json.loads(original)
    bases = sorted(set(roles.values()))
    mapping = {role: (url, server.local_base(bases.index(url))) for role, url in roles.items()}
    for role, (_url, local) in mapping.items():
        document["models"][role]["baseURL"] = local
    rewritten = _dump_like(document, original)
    record = {
        "pid": os.getpid(),
        "original": original,
        "rewritten": rewritten,
        "roles": mapping,
    }
    try:
        descriptor = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as error:
        raise TaskcostError(
            f"another taskcost run is using {project} ({journal} exists)"
        ) from error
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump(record, out)
        out.flush()
        os.fsync(out.fileno())
    try:
        atomic_write(path, rewritten)
        yield
    finally:
        restore_config(project)


# ----------------------------------------------------------------------------- run


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The wrapped command's environment (it talks plain HTTP to 127.0.0.1)."""
    env = dict(base)
    env["TASKMASTER_SKIP_AUTO_UPDATE"] = "1"
    # A proxy the user set for Task Master must not carry the calls to 127.0.0.1 away.
    for name in ("NO_PROXY", "no_proxy"):
        current = [h for h in env.get(name, "").split(",") if h.strip()]
        env[name] = ",".join([*current, *[h for h in LOCAL_HOSTS if h not in current]])
    return env


def gateway_roles(project: Path) -> dict[str, str]:
    roles = gateway_base_urls(read_config(project))
    if not roles:
        raise TaskcostError(
            "no Task Master role uses the gateway (provider openai-compatible with a baseURL "
            f"in {config_path(project)}); run playbooks/taskmaster.yml for this project"
        )
    local = sorted(r for r, u in roles.items() if "127.0.0.1:" in u and u.split("/")[-1].isdigit())
    if local:
        raise TaskcostError(
            f"{config_path(project)} still points {', '.join(local)} at a taskcost forwarder; "
            "run `taskcost restore` (or playbooks/taskmaster.yml)"
        )
    return roles


def run_command(task: str, command: list[str], project: Path, ca_option: str | None) -> int:
    if not TASK_ID.match(task):
        raise TaskcostError(f"not a task id: {task!r} (like 12 or 12.3)")
    if not command:
        raise TaskcostError("nothing to run: put the command after --")
    other = running_pid(project)
    if other:
        raise TaskcostError(
            f"another taskcost run (pid {other}) is using {project}; wait until it ends"
        )
    recover(project)
    roles = gateway_roles(project)
    context = tls_context(ca_option)
    with forwarder(task, sorted(set(roles.values())), context) as server:
        forwarded = (signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.getsignal(sig) for sig in (*forwarded, signal.SIGINT)}
        child: subprocess.Popen[bytes] | None = None

        def pass_on(number: int, _frame: Any) -> None:
            if child is not None and child.poll() is None:
                child.send_signal(number)

        # Ctrl-C reaches the command from the terminal; SIGTERM/SIGHUP are passed on.
        # Either way this process waits for it and then puts config.json back.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in forwarded:
            signal.signal(sig, pass_on)
        try:
            with gateway_through(project, server, roles):
                try:
                    child = subprocess.Popen(command, env=child_environment(os.environ))
                except OSError as error:
                    raise TaskcostError(f"cannot run {command[0]}: {error}") from error
                code = child.wait()
        finally:
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        tagged = server.tagged
    print(f"taskcost: {tagged} gateway call(s) tagged task:{task}", file=sys.stderr)
    return code


# -------------------------------------------------------------- the gateway's API


class Gateway:
    """The cost ledger's HTTP API on the gateway (master key)."""

    def __init__(self, url: str, key: str, context: ssl.SSLContext | None = None) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.context = context or tls_context()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (URL from the user's own config)
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=60, context=self.context
            ) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                parsed = json.loads(detail)
                detail = (
                    parsed.get("detail") or (parsed.get("error") or {}).get("message") or detail
                )
            if error.code == 404:
                detail = "the gateway has no cost ledger API (is its cost ledger enabled?)"
            raise TaskcostError(f"gateway {method} {path}: HTTP {error.code}: {detail}") from error
        except (urllib.error.URLError, OSError) as error:
            raise TaskcostError(f"cannot reach the gateway at {self.url}: {error}") from error


def gateway_for(args: argparse.Namespace, project: Path | None) -> Gateway:
    url, key = gateway_from_project(project)
    url = args.gateway or os.environ.get("GATEWAY_URL") or url
    key = os.environ.get("GATEWAY_KEY") or key
    if not url:
        raise TaskcostError("no gateway URL: use --gateway, GATEWAY_URL, or configure the project")
    if not key:
        raise TaskcostError(
            "no gateway key: set GATEWAY_KEY or OPENAI_COMPATIBLE_API_KEY in the project's .env"
        )
    return Gateway(re.sub(r"/v1/?$", "", url.rstrip("/")), key, tls_context(args.ca_file))


# ---------------------------------------------------------------------- tasks.json


def tasks_path(project: Path) -> Path:
    return project / ".taskmaster" / "tasks" / "tasks.json"


def current_tag(project: Path, option: str | None) -> str:
    if option:
        return option
    if os.environ.get("TASKMASTER_TAG"):
        return os.environ["TASKMASTER_TAG"]
    state = project / ".taskmaster" / "state.json"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return str(json.loads(state.read_text(encoding="utf-8")).get("currentTag") or "master")
    return "master"


def task_list(document: Any, tag: str) -> list[dict[str, Any]]:
    """The tasks of one tag (tagged format), or of the legacy `{"tasks": [...]}` file."""
    if not isinstance(document, dict):
        return []
    if isinstance(document.get("tasks"), list):
        return document["tasks"]
    section = document.get(tag)
    if isinstance(section, dict) and isinstance(section.get("tasks"), list):
        return section["tasks"]
    return []


def task_index(tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every task and subtask by its dotted id (`12`, `12.3`)."""
    index: dict[str, dict[str, Any]] = {}
    for task in tasks:
        tid = str(task.get("id"))
        index[tid] = task
        for sub in task.get("subtasks") or []:
            sid = str(sub.get("id"))
            index[sid if "." in sid else f"{tid}.{sid}"] = sub
    return index


def load_tasks(project: Path, tag: str) -> tuple[Any, dict[str, dict[str, Any]]]:
    path = tasks_path(project)
    if not path.is_file():
        return None, {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TaskcostError(f"{path} is not valid JSON: {error}") from error
    return document, task_index(task_list(document, tag))


# ---------------------------------------------------------------------- the report


def _empty() -> dict[str, Any]:
    return {
        "calls": 0,
        "succeeded": 0,
        "failed": 0,
        "refused": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
    }


def _add(total: dict[str, Any], row: Mapping[str, Any]) -> None:
    calls = int(row.get("calls") or 0)
    total["calls"] += calls
    status = row.get("status")
    key = {"success": "succeeded", "failure": "failed", "refused": "refused"}.get(str(status))
    if key:
        total[key] += calls
    total["input_tokens"] += int(row.get("input_tokens") or 0)
    total["output_tokens"] += int(row.get("output_tokens") or 0)
    total["cost_usd"] += float(row.get("cost_usd") or 0)


def _split(rows: Iterable[Mapping[str, Any]], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(str(row.get(f) or "(no deployment)") for f in fields)
        group = groups.setdefault(key, {**dict(zip(fields, key, strict=True)), **_empty()})
        _add(group, row)
    return [groups[key] for key in sorted(groups)]


def _round(entry: dict[str, Any]) -> dict[str, Any]:
    entry["cost_usd"] = round(entry["cost_usd"], 10)
    return entry


def _sort_key(task_id: str) -> tuple[Any, ...]:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in task_id.split("."))


def build_report(
    summary: list[Mapping[str, Any]], index: Mapping[str, Mapping[str, Any]], include_all: bool
) -> dict[str, Any]:
    """Ledger summary rows (by exact task id) -> per-task totals, subtasks rolled up."""
    by_root: dict[str, list[Mapping[str, Any]]] = {}
    untagged = _empty()
    for row in summary:
        task = row.get("task")
        if not task:
            _add(untagged, row)
            continue
        by_root.setdefault(str(task).split(".", 1)[0], []).append(row)
    roots = set(by_root)
    if include_all:
        roots |= {tid for tid in index if "." not in tid}
    tasks = []
    total = _empty()
    for root in sorted(roots, key=_sort_key):
        rows = by_root.get(root, [])
        known = index.get(root) or {}
        entry: dict[str, Any] = {
            "id": root,
            "title": known.get("title"),
            "status": known.get("status"),
            **_empty(),
        }
        for row in rows:
            _add(entry, row)
            _add(total, row)
        entry["by_model"] = [_round(m) for m in _split(rows, ("model", "provider"))]
        entry["by_provider"] = [_round(p) for p in _split(rows, ("provider",))]
        subtasks = []
        for sid in sorted({str(r["task"]) for r in rows if "." in str(r["task"])}, key=_sort_key):
            sub = index.get(sid) or {}
            sub_entry = {"id": sid, "title": sub.get("title"), "status": sub.get("status")}
            sub_entry.update(_empty())
            for row in rows:
                if str(row["task"]) == sid:
                    _add(sub_entry, row)
            subtasks.append(_round(sub_entry))
        entry["subtasks"] = subtasks
        tasks.append(_round(entry))
    return {"tasks": tasks, "untagged": _round(untagged), "total": _round(total)}


def format_usd(amount: float) -> str:
    return f"{amount:.6f}" if amount < 1 else f"{amount:.2f}"


def format_table(report: Mapping[str, Any]) -> str:
    header = ("Task", "Status", "Calls", "Failed", "In tok", "Out tok", "Cost USD", "Title")
    lines = [header]
    details: dict[int, list[str]] = {}
    for task in report["tasks"]:
        lines.append(
            (
                task["id"],
                task["status"] or "?",
                str(task["calls"]),
                str(task["failed"] + task["refused"]),
                str(task["input_tokens"]),
                str(task["output_tokens"]),
                format_usd(task["cost_usd"]),
                task["title"] or "(not in tasks.json)",
            )
        )
        details[len(lines) - 1] = [
            f"    {m['model']} ({m['provider']}): {m['calls']} calls, "
            f"{m['input_tokens']}/{m['output_tokens']} tokens, ${format_usd(m['cost_usd'])}"
            for m in task["by_model"]
        ]
    widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
    out = []
    for number, row in enumerate(lines):
        cells = [
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
            for i, cell in enumerate(row[:-1])
        ]
        out.append("  ".join([*cells, row[-1]]))
        out += details.get(number, [])
    total, untagged = report["total"], report["untagged"]
    out.append(
        f"Total: {total['calls']} calls, {total['input_tokens']} in / "
        f"{total['output_tokens']} out tokens, ${format_usd(total['cost_usd'])}"
    )
    if untagged["calls"]:
        out.append(
            f"Not tagged with a task: {untagged['calls']} calls, "
            f"${format_usd(untagged['cost_usd'])}"
        )
    if report.get("pending_rows"):
        out.append(f"({report['pending_rows']} ledger rows still wait for the database)")
    return "\n".join(out)


def metadata_entry(entry: Mapping[str, Any], with_models: bool) -> dict[str, Any]:
    value: dict[str, Any] = {
        "calls": entry["calls"],
        "failedCalls": entry["failed"] + entry["refused"],
        "inputTokens": entry["input_tokens"],
        "outputTokens": entry["output_tokens"],
        "costUsd": entry["cost_usd"],
    }
    if with_models:
        value["byModel"] = {
            m["model"]: {"provider": m["provider"], "calls": m["calls"], "costUsd": m["cost_usd"]}
            for m in entry["by_model"]
        }
        value["byProvider"] = {
            p["provider"]: {"calls": p["calls"], "costUsd": p["cost_usd"]}
            for p in entry["by_provider"]
        }
    return value


def write_metadata(project: Path, tag: str, report: Mapping[str, Any]) -> int:
    """Put each task's totals in its `metadata.gatewayCost`; nothing else in the file moves."""
    path = tasks_path(project)
    text = path.read_text(encoding="utf-8")
    document = json.loads(text)
    index = task_index(task_list(document, tag))
    changed = 0
    for task in report["tasks"]:
        targets = [(task["id"], metadata_entry(task, with_models=True))]
        targets += [(s["id"], metadata_entry(s, with_models=False)) for s in task["subtasks"]]
        for tid, value in targets:
            node = index.get(tid)
            if node is None:
                continue
            metadata = node.get("metadata")
            if not isinstance(metadata, dict):
                metadata = {}
                node["metadata"] = metadata
            if metadata.get(METADATA_KEY) != value:
                metadata[METADATA_KEY] = value
                changed += 1
    if changed:
        # Task Master writes JSON.stringify(data, null, 2): the same layout.
        new_text = json.dumps(document, indent=2, ensure_ascii=False)
        if text.endswith("\n"):
            new_text += "\n"
        atomic_write(path, new_text)
    return changed


def atomic_write(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o7777
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(temp).chmod(mode)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def report_command(args: argparse.Namespace) -> int:
    project = project_dir(args.project)
    recover(project)
    gateway = gateway_for(args, project)
    tag = current_tag(project, args.tag)
    answer = gateway.call("GET", "/gateway/ledger/summary")
    _document, index = load_tasks(project, tag)
    report = build_report(answer.get("rows") or [], index, args.all)
    report.update(tag=tag, gateway=gateway.url, pending_rows=answer.get("pending_rows", 0))
    if args.write_metadata:
        if not tasks_path(project).is_file():
            raise TaskcostError(f"{tasks_path(project)} does not exist: nothing to write to")
        changed = write_metadata(project, tag, report)
        print(f"taskcost: updated {changed} task(s) in {tasks_path(project)}", file=sys.stderr)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def budget_command(args: argparse.Namespace) -> int:
    project = None
    with contextlib.suppress(TaskcostError):
        project = project_dir(args.project)
    gateway = gateway_for(args, project)
    if args.action == "show":
        answer = gateway.call("GET", "/gateway/ledger/budgets")
        if args.json:
            print(json.dumps(answer, indent=2))
            return 0
        spend = answer.get("spend_by_task") or {}
        effective = answer.get("effective") or {}
        runtime = answer.get("runtime") or {}
        if not effective:
            print("No task budgets.")
        for task, budget in sorted(effective.items(), key=lambda kv: _sort_key(kv[0])):
            spent = sum(v for k, v in spend.items() if k == task or k.startswith(f"{task}."))
            source = "set at run time" if task in runtime else "from the inventory"
            what = "each task" if task == "*" else f"task {task}"
            shown = "" if task == "*" else f", spent ${format_usd(spent)}"
            print(f"{what}: ${format_usd(budget)} ({source}){shown}")
        return 0
    if not TASK_ID.match(args.task) and args.task != "*":
        raise TaskcostError(f"not a task id: {args.task!r}")
    if args.action == "set":
        if args.usd < 0:
            raise TaskcostError("a budget is a number of USD >= 0")
        gateway.call("PUT", f"/gateway/ledger/budgets/{args.task}", {"budget_usd": args.usd})
        print(f"task {args.task}: budget ${format_usd(args.usd)}")
    else:
        gateway.call("DELETE", f"/gateway/ledger/budgets/{args.task}")
        print(f"task {args.task}: run-time budget removed")
    return 0


# -------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", help="the Task Master project (default: found from here)")
    parser.add_argument("--gateway", help="gateway URL (default: from the project's config)")
    parser.add_argument("--ca-file", help="CA bundle of the gateway's certificate")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a command with its gateway calls tagged task:<id>")
    run.add_argument("task", help="task id, like 12 (a subtask id like 12.3 is kept as is)")
    report = sub.add_parser("report", help="what each task cost")
    report.add_argument("--json", action="store_true", help="JSON for scripts")
    report.add_argument("--write-metadata", action="store_true", help="store totals in tasks.json")
    report.add_argument("--all", action="store_true", help="list tasks without calls too")
    report.add_argument("--tag", help="Task Master tag whose tasks to read (default: current)")
    budget = sub.add_parser("budget", help="show or change per-task budgets")
    budget.add_argument("--json", action="store_true")
    actions = budget.add_subparsers(dest="action", required=True)
    actions.add_parser("show")
    setter = actions.add_parser("set")
    setter.add_argument("task")
    setter.add_argument("usd", type=float)
    clearer = actions.add_parser("clear")
    clearer.add_argument("task")
    sub.add_parser("restore", help="put back config.json after a run that was killed")
    return parser.parse_args(argv), command


def main(argv: list[str] | None = None) -> int:
    args, command = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "run":
            return run_command(args.task, command, project_dir(args.project), args.ca_file)
        if args.command == "report":
            return report_command(args)
        if args.command == "restore":
            project = project_dir(args.project)
            other = running_pid(project)
            if other:
                raise TaskcostError(f"a taskcost run (pid {other}) is still using {project}")
            if not restore_config(project):
                print(f"taskcost: nothing to restore in {project}", file=sys.stderr)
            return 0
        return budget_command(args)
    except TaskcostError as error:
        print(f"taskcost: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
