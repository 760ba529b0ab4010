#!/usr/bin/env python3
"""What each Task Master task cost through the gateway, and commands run on a task's behalf.

    taskcost run 12 [--ttl 12h] -- task-master update-subtask --id=12.1 --prompt "..."
    taskcost run --untagged -- task-master parse-prd prd.txt
    taskcost key 12 [--ttl 8h] [--env]
    taskcost report [--json] [--write-metadata] [--all] [--tag TAG]
    taskcost budget show | set 12 0.50 | clear 12

`run` runs the command with a *task key* for task 12 in the environment
variables the common agents read: OPENAI_COMPATIBLE_API_KEY (Task Master's
openai-compatible provider), OPENAI_API_KEY and OPENAI_BASE_URL (the OpenAI
SDK, aider), ANTHROPIC_AUTH_TOKEN, ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL
(Claude Code, the Anthropic SDK). The gateway tags every call made with that
key `task:12` (a call may name a subtask, `task:12.3`, and no other task),
counts it against the task and holds it to the task's budget. No file of the
command's is changed, and nothing of taskcost's keeps running: taskcost
replaces itself with the command. `key` prints a task key for tools started
some other way (`--env`: as shell exports). `--untagged` runs with the
application's own key, for work that belongs to no task yet.

A task key is minted here, signed with the project's application key (the
gateway checks the signature; see roles/litellm_proxy/files/gateway/taskkeys.py)
and ends at its expiry (`--ttl`; the gateway refuses one that lives longer
than it allows). Rotating the application key ends all of its task keys.

Task Master takes a key from the project's `.env` before the process
environment, so the project's `.env` must not set OPENAI_COMPATIBLE_API_KEY
(`run` refuses to start while it does; playbooks/taskmaster.yml keeps the
application key there as LLM_GATEWAY_APP_KEY instead, which Task Master does
not read). Task Master takes its baseURL from `.taskmaster/config.json`,
where the playbook points it at the gateway.

`report` reads the gateway's cost ledger over its HTTP API
(`/gateway/ledger/summary`, master key in GATEWAY_KEY), and titles and
statuses from `.taskmaster/tasks/tasks.json`; subtasks (`12.3`) roll up into
their parent. `--write-metadata` stores the totals in each task's
`metadata.gatewayCost`.

The gateway URL comes from the project (the `openai-compatible` baseURL in
config.json without `/v1`), GATEWAY_URL, or `--gateway`; the application key
from LLM_GATEWAY_APP_KEY in the project's `.env` or in the environment. The
gateway's CA: `--ca-file`, GATEWAY_CA_FILE, NODE_EXTRA_CA_CERTS, or
~/.config/llm-gateway/gateway-ca.crt (where playbooks/taskmaster.yml puts
it); `run` hands it on with the system's CAs beside it, in one file
(~/.cache/llm-gateway/trust-bundle.pem) named by NODE_EXTRA_CA_CERTS,
SSL_CERT_FILE and REQUESTS_CA_BUNDLE. Standard library only: any Python 3.10+ runs it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# The gateway's task-id grammar (roles/litellm_proxy/files/gateway/tasks.py), copied:
# this file runs on its own. tests/unit/litellm_proxy/gateway/test_tasks.py proves they agree.
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
METADATA_KEY = "gatewayCost"
GATEWAY_PROVIDER = "openai-compatible"
ROLES = ("main", "research", "fallback")
APP_KEY_VARIABLE = "LLM_GATEWAY_APP_KEY"
# Task Master reads this one from the project's .env before the environment.
TASKMASTER_KEY_VARIABLE = "OPENAI_COMPATIBLE_API_KEY"
DEFAULT_CA_FILE = Path("~/.config/llm-gateway/gateway-ca.crt")
TRUST_BUNDLE = Path("~/.cache/llm-gateway/trust-bundle.pem")
# The gateway's task-key format (roles/litellm_proxy/files/gateway/taskkeys.py),
# copied; tests/unit/taskmaster_client/test_taskcost.py proves the gateway takes these keys.
TASK_KEY_PREFIX = "sk-task-"
TASK_KEY_CONTEXT = b"llm-gateway task key v1"
PEM_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n.*?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
DEFAULT_RUN_TTL = "12h"
DEFAULT_KEY_TTL = "8h"
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
    """(gateway URL without /v1, application key) as the project's setup has them."""
    key = os.environ.get(APP_KEY_VARIABLE)
    if project is None:
        return None, key
    urls = gateway_base_urls(read_config(project))
    url = urls.get("main") or next(iter(urls.values()), None)
    if url:
        url = re.sub(r"/v1/?$", "", url.rstrip("/"))
    return url, read_dotenv(project / ".env").get(APP_KEY_VARIABLE) or key


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


# ---------------------------------------------------------------------- task keys


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_task_key(app_key: str, task: str, expires: int) -> str:
    """A task key for `task` until `expires` (unix seconds), signed with the application key."""
    signing_key = hmac.new(app_key.encode(), TASK_KEY_CONTEXT, hashlib.sha256).digest()
    claim = {"exp": int(expires), "task": task}
    signed = TASK_KEY_PREFIX + _encode(
        json.dumps(claim, separators=(",", ":"), sort_keys=True).encode()
    )
    signature = hmac.new(signing_key, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{_encode(signature)}"


def parse_ttl(text: str) -> int:
    """`8h`, `30m`, `2d`, `90s` or plain seconds -> seconds (at least one)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text or "")
    if not match or int(match.group(1)) <= 0:
        raise TaskcostError(f"not a lifetime: {text!r} (like 8h, 30m, 2d)")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def app_key_for(project: Path | None) -> tuple[str | None, str]:
    url, key = gateway_from_project(project)
    if not key:
        where = f"{project / '.env'} or " if project else ""
        raise TaskcostError(
            f"no application key: set {APP_KEY_VARIABLE} in {where}the environment "
            "(playbooks/taskmaster.yml puts it in the project's .env)"
        )
    return url, key


def key_for(task: str | None, app_key: str, ttl: int) -> str:
    if task is None:
        return app_key
    if not TASK_ID.match(task):
        raise TaskcostError(f"not a task id: {task!r} (like 12 or 12.3)")
    return mint_task_key(app_key, task, int(time.time()) + ttl)


# ----------------------------------------------------------------------------- run


def trust_bundle(cas: list[str]) -> str:
    """The system's CAs and the gateway's in one file (not secret), for all of
    NODE_EXTRA_CA_CERTS, SSL_CERT_FILE and REQUESTS_CA_BUNDLE: each takes one file."""
    paths = ssl.get_default_verify_paths()
    system = os.environ.get("SSL_CERT_FILE") or paths.cafile or paths.openssl_cafile
    certificates: list[str] = []  # each once, also when SSL_CERT_FILE is this bundle already
    for path in [system, *cas]:
        if path and Path(path).is_file():
            for found in PEM_CERTIFICATE.findall(Path(path).read_text(encoding="utf-8")):
                if found not in certificates:
                    certificates.append(found)
    text = "\n".join(certificates) + "\n"
    bundle = TRUST_BUNDLE.expanduser()
    if not bundle.is_file() or bundle.read_text(encoding="utf-8") != text:
        bundle.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(bundle, text)
    return str(bundle)


def agent_environment(
    base: Mapping[str, str], url: str, key: str, cas: list[str]
) -> dict[str, str]:
    """The command's environment: the key and the gateway's address where agents read them."""
    env = {k: v for k, v in base.items() if k != APP_KEY_VARIABLE}
    env.update(
        {
            TASKMASTER_KEY_VARIABLE: key,
            "OPENAI_API_KEY": key,
            "OPENAI_BASE_URL": f"{url}/v1",
            "OPENAI_API_BASE": f"{url}/v1",
            "ANTHROPIC_AUTH_TOKEN": key,
            "ANTHROPIC_API_KEY": key,
            "ANTHROPIC_BASE_URL": url,
            "TASKMASTER_SKIP_AUTO_UPDATE": "1",
        }
    )
    if cas:
        bundle = trust_bundle(cas)
        for name in ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            env[name] = bundle
    return env


def run_command(
    task: str | None, command: list[str], project: Path, ca_option: str | None, ttl: int
) -> int:
    if task is not None and not TASK_ID.match(task):
        raise TaskcostError(f"not a task id: {task!r} (like 12 or 12.3)")
    if not command:
        raise TaskcostError("nothing to run: put the command after --")
    if read_dotenv(project / ".env").get(TASKMASTER_KEY_VARIABLE):
        raise TaskcostError(
            f"{project / '.env'} sets {TASKMASTER_KEY_VARIABLE}, and Task Master takes a key "
            "from the project's .env before the environment, so its calls would not carry "
            f"the task's key; remove that line (keep the key as {APP_KEY_VARIABLE})"
        )
    url, app_key = app_key_for(project)
    if url and re.match(r"^http://127\.0\.0\.1:\d+/\d+$", url):
        raise TaskcostError(
            "config.json points at the local forwarder of an earlier taskcost, which a killed "
            "run left behind; run playbooks/taskmaster.yml for this project"
        )
    url = os.environ.get("GATEWAY_URL") or url
    if not url:
        raise TaskcostError(
            "no Task Master role uses the gateway (provider openai-compatible with a baseURL "
            f"in {project / '.taskmaster' / 'config.json'}); run playbooks/taskmaster.yml"
        )
    env = agent_environment(os.environ, url, key_for(task, app_key, ttl), ca_files(ca_option))
    what = f"task {task}'s key" if task else "the application key (untagged)"
    print(f"taskcost: running {command[0]} with {what}", file=sys.stderr)
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 (the user's own command)
    except OSError as error:
        raise TaskcostError(f"cannot run {command[0]}: {error}") from error
    return 127  # not reached: exec replaced this process


def key_command(args: argparse.Namespace) -> int:
    project = None
    with contextlib.suppress(TaskcostError):
        project = project_dir(args.project)
    url, app_key = app_key_for(project)
    ttl = parse_ttl(args.ttl)
    key = key_for(args.task, app_key, ttl)
    until = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(time.time() + ttl))
    if args.env:
        url = args.gateway or os.environ.get("GATEWAY_URL") or url
        if not url:
            raise TaskcostError("no gateway URL: use --gateway, GATEWAY_URL, or a project")
        env = agent_environment({}, url.rstrip("/"), key, ca_files(args.ca_file))
        del env["TASKMASTER_SKIP_AUTO_UPDATE"]
        for name, value in sorted(env.items()):
            print(f"export {name}={_shell_quote(value)}")
    else:
        print(key)
    print(f"taskcost: key for task {args.task}, valid until {until}", file=sys.stderr)
    return 0


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


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
            "no gateway key: set GATEWAY_KEY (the ledger's API takes the master key)"
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
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
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
    run = sub.add_parser("run", help="run a command with a task key: its calls count for the task")
    run.add_argument("task", nargs="?", help="task id, like 12 (or a subtask id like 12.3)")
    run.add_argument("--untagged", action="store_true", help="no task: the application key")
    run.add_argument("--ttl", default=DEFAULT_RUN_TTL, help=f"key lifetime ({DEFAULT_RUN_TTL})")
    key = sub.add_parser("key", help="print a task key for tools started some other way")
    key.add_argument("task", help="task id, like 12")
    key.add_argument("--ttl", default=DEFAULT_KEY_TTL, help=f"key lifetime ({DEFAULT_KEY_TTL})")
    key.add_argument("--env", action="store_true", help="as shell exports of what agents read")
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
    return parser.parse_args(argv), command


def main(argv: list[str] | None = None) -> int:
    args, command = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "run":
            if (args.task is None) is not args.untagged:
                raise TaskcostError("give a task id, or --untagged for work of no task")
            ttl = parse_ttl(args.ttl)
            return run_command(args.task, command, project_dir(args.project), args.ca_file, ttl)
        if args.command == "key":
            return key_command(args)
        if args.command == "report":
            return report_command(args)
        return budget_command(args)
    except TaskcostError as error:
        print(f"taskcost: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
