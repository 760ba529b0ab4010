"""The gateway's cost ledger: every model call, counted against the task it served.

LiteLLM loads this module from the config's folder and uses ``ledger`` (named in
``litellm_settings.callbacks`` as ``cost_ledger.ledger``).

What it records, one row per outcome of an attempt:

* ``success``: LiteLLM's success event, for the deployment that answered, with
  LiteLLM's own ``response_cost`` (tokens times the prices in the config), tokens,
  latency and the retries and fallbacks LiteLLM reports for the request.
* ``failure``: every failed attempt (first try, each retry, each fallback hop),
  from ``async_post_call_failure_deployment_hook``, attributed to the deployment
  that failed. LiteLLM's request-level failure event fires only once per request
  (behind a dedup gate), so it is used only for a failure that never reached a
  deployment (unknown model, no healthy deployment).
* ``refused``: a request the budget check turned away before any upstream.

The task comes from a ``task:<id>`` request tag (the ``x-litellm-tags`` header, or
``tags`` / ``metadata.tags`` in the body; LiteLLM does not forward tags upstream).
Subtask ids (``12.3``) are kept as they are; budgets and metrics roll them up
into their parent (``12``). The consumer is the key's alias or user, else
``master``.

Off the hot path: a callback appends one JSON line to a spool file and returns.
A background thread fsyncs the spool about once a second and, when Postgres
answers, moves closed spool segments into it (``INSERT ... ON CONFLICT (id) DO
NOTHING``, so replaying a segment after a crash adds nothing twice) and then
deletes them. A slow or stopped Postgres never slows or fails a request: rows
wait in the spool (a folder of the host, mounted) and are written when it is back.

Budgets: ``GATEWAY_TASK_BUDGETS`` (JSON, ``{"12": 0.5, "*": 5.0}``, from the
role) and the ``gateway_task_budgets`` table (set at run time through the HTTP
API below; a table entry wins over the environment for the same task). A
request tagged with a task whose recorded spend has reached its budget is
refused with HTTP 402 before any upstream sees it.

Several worker processes (and, later, several gateway hosts) each run their own
ledger on one spool folder and one database, so Postgres is where they agree:
the check for a tagged request reads the task's budgets and spend there (one
small query, off the event loop), plus what this process recorded that is not
there yet. What another process recorded in the last second or so, before its
next flush, is not seen: a budget can be overrun by that much. Untagged requests
never wait for the database. While Postgres is away the check uses what this
process knows (spend reloaded from Postgres every 30 s, plus its own rows since):
it fails open rather than refusing everything.

HTTP API (added to the proxy's own app; proxy-admin key, i.e. the master key):

    GET    /gateway/ledger/status                 spool, database, spend and budgets
    GET    /gateway/ledger/summary[?task=12]      calls, tokens, cost by task/model/provider/status
    GET    /gateway/ledger/rows[?task=&request_id=&limit=]   the rows themselves, newest first
    GET    /gateway/ledger/budgets                budgets from the environment and the table
    PUT    /gateway/ledger/budgets/{task}         body {"budget_usd": 0.5}
    DELETE /gateway/ledger/budgets/{task}

Environment: ``GATEWAY_LEDGER_DSN`` (libpq URL; empty keeps rows in the spool
only), ``GATEWAY_LEDGER_SPOOL`` (default ``/var/lib/gateway-ledger``),
``GATEWAY_TASK_BUDGETS``, ``GATEWAY_LEDGER_FLUSH_SECONDS`` (default 1).
Prometheus (LiteLLM's /metrics serves the default registry):
``gateway_task_spend_usd_total{task}``, ``gateway_task_tokens_total{task,direction}``,
``gateway_task_requests_total{task,status}`` (task rolled up, ``none`` when
untagged), ``gateway_ledger_pending_rows``, ``gateway_ledger_database_up``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from litellm.integrations.custom_logger import CustomLogger

LOG = logging.getLogger("cost_ledger")

DEFAULT_SPOOL = "/var/lib/gateway-ledger"
TASK_TAG = "task:"
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NO_TASK = "none"
SEGMENT_GLOB = "ledger-*.jsonl"
INSERT_BATCH = 500
BUDGET_REFRESH_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 30.0

COLUMNS = (
    "id",
    "ts",
    "request_id",
    "task",
    "consumer",
    "alias",
    "model_group",
    "deployment_id",
    "model",
    "provider",
    "api_base",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "status",
    "http_status",
    "error",
    "latency_ms",
    "retries",
    "fallbacks",
    "stream",
    "call_type",
)

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS gateway_ledger (
        id text PRIMARY KEY,
        ts timestamptz NOT NULL,
        request_id text,
        task text,
        consumer text NOT NULL,
        alias text,
        model_group text,
        deployment_id text,
        model text,
        provider text,
        api_base text,
        input_tokens integer NOT NULL DEFAULT 0,
        output_tokens integer NOT NULL DEFAULT 0,
        cost_usd double precision NOT NULL DEFAULT 0,
        status text NOT NULL,
        http_status integer,
        error text,
        latency_ms double precision,
        retries integer,
        fallbacks integer,
        stream boolean,
        call_type text
    )
    """,
    "CREATE INDEX IF NOT EXISTS gateway_ledger_task_idx ON gateway_ledger (task)",
    "CREATE INDEX IF NOT EXISTS gateway_ledger_ts_idx ON gateway_ledger (ts)",
    "CREATE INDEX IF NOT EXISTS gateway_ledger_request_idx ON gateway_ledger (request_id)",
    """
    CREATE TABLE IF NOT EXISTS gateway_task_budgets (
        task text PRIMARY KEY,
        budget_usd double precision NOT NULL CHECK (budget_usd >= 0),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
)


# --------------------------------------------------------------------------- rows


def task_root(task: str) -> str:
    """`12.3` -> `12`: the top-level task a subtask belongs to."""
    return task.split(".", 1)[0]


def task_from_tags(tags: Iterable[Any] | None) -> str | None:
    """The id in the first well-formed `task:<id>` tag, if any."""
    for tag in tags or ():
        if isinstance(tag, str) and tag.strip().startswith(TASK_TAG):
            candidate = tag.strip()[len(TASK_TAG) :].strip()
            if TASK_ID.match(candidate):
                return candidate
    return None


def valid_task(task: str) -> bool:
    return bool(TASK_ID.match(task)) or task == "*"


def _strip_query(url: str | None) -> str | None:
    """An API base without query string or credentials (a Gemini URL may carry `?key=`)."""
    if not url:
        return None
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float:
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _consumer(metadata: Mapping[str, Any]) -> str:
    for key in ("user_api_key_alias", "user_api_key_user_id"):
        value = metadata.get(key)
        if value:
            return str(value)
    return "master"


def _requested_model(holder: Mapping[str, Any]) -> str | None:
    body = (holder.get("proxy_server_request") or {}).get("body") or {}
    model = body.get("model") if isinstance(body, Mapping) else None
    return str(model) if model else None


SECRETS = (
    (re.compile(r"([?&](?:key|api_key|token|access_token)=)[^&\s'\"]+", re.IGNORECASE), r"\1***"),
    (re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-***"),
)


def redact(text: str) -> str:
    """An upstream's error text without the keys it may quote (URLs with ?key=, bearer tokens)."""
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _error_text(exception: BaseException | None, fallback: str | None = None) -> str | None:
    if exception is None:
        return redact(fallback)[:500] if fallback else None
    return redact(f"{type(exception).__name__}: {exception}")[:500]


def _tags_of(holder: Mapping[str, Any]) -> list[Any]:
    tags: list[Any] = []
    for meta_key in ("metadata", "litellm_metadata"):
        meta = holder.get(meta_key)
        if isinstance(meta, Mapping) and isinstance(meta.get("tags"), list):
            tags += meta["tags"]
    if isinstance(holder.get("tags"), list):
        tags += holder["tags"]
    return tags


def new_row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(id=uuid.uuid4().hex, ts=time.time(), consumer="master", input_tokens=0)
    row.update(output_tokens=0, cost_usd=0.0)
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown ledger fields: {sorted(unknown)}")
    row.update(fields)
    return row


def success_row(kwargs: Mapping[str, Any], api_base_of: Callable[[str], str | None]) -> dict:
    """The row for LiteLLM's success event: the deployment that answered."""
    slo = kwargs.get("standard_logging_object") or {}
    params = kwargs.get("litellm_params") or {}
    meta = params.get("metadata") or params.get("litellm_metadata") or {}
    hidden = slo.get("hidden_params") or {}
    headers = hidden.get("additional_headers") or {}
    info = params.get("model_info") or meta.get("model_info") or {}
    deployment = slo.get("model_id") or info.get("id")
    start, end = _float(slo.get("startTime")), _float(slo.get("endTime"))
    latency = (end - start) * 1000 if end and start else _float(slo.get("response_time")) * 1000
    retries = headers.get("x-litellm-attempted-retries", meta.get("attempted_retries"))
    fallbacks = headers.get("x-litellm-attempted-fallbacks", meta.get("attempted_fallbacks"))
    return new_row(
        ts=end or time.time(),
        request_id=slo.get("litellm_call_id") or kwargs.get("litellm_call_id"),
        task=task_from_tags(slo.get("request_tags") or _tags_of(params)),
        consumer=_consumer(slo.get("metadata") or meta),
        alias=_requested_model(params) or slo.get("model_group"),
        model_group=slo.get("model_group") or meta.get("model_group"),
        deployment_id=deployment,
        model=slo.get("model") or kwargs.get("model"),
        provider=info.get("gateway_provider") or slo.get("custom_llm_provider"),
        api_base=(api_base_of(deployment) if deployment else None)
        or _strip_query(slo.get("api_base")),
        input_tokens=_int(slo.get("prompt_tokens")) or 0,
        output_tokens=_int(slo.get("completion_tokens")) or 0,
        cost_usd=_float(slo.get("response_cost")),
        status="success",
        http_status=200,
        latency_ms=round(latency, 3),
        retries=_int(retries),
        fallbacks=_int(fallbacks),
        stream=bool(slo.get("stream")),
        call_type=slo.get("call_type") or kwargs.get("call_type"),
    )


def attempt_failure_row(
    request_data: Mapping[str, Any],
    exception: BaseException | None,
    call_type: Any,
    fallback_depth: int | None,
    api_base_of: Callable[[str], str | None],
) -> dict:
    """The row for one failed attempt, attributed to the deployment it went to."""
    meta = request_data.get("metadata") or request_data.get("litellm_metadata") or {}
    info = request_data.get("model_info") or meta.get("model_info") or {}
    deployment = info.get("id")
    model = request_data.get("model")
    provider = (
        info.get("gateway_provider")
        or request_data.get("custom_llm_provider")
        or (str(model).split("/", 1)[0] if model and "/" in str(model) else None)
    )
    now = time.time()
    windows = meta.get("llm_api_timing_windows") or []
    latency = None
    if windows and isinstance(windows[-1], list | tuple) and len(windows[-1]) == 2:
        latency = (_float(windows[-1][1]) - _float(windows[-1][0])) * 1000
    return new_row(
        ts=now,
        request_id=request_data.get("litellm_call_id"),
        task=task_from_tags(_tags_of(request_data)),
        consumer=_consumer(meta),
        alias=_requested_model(request_data) or meta.get("original_model_group"),
        model_group=meta.get("model_group"),
        deployment_id=deployment,
        model=model,
        provider=provider,
        api_base=(api_base_of(deployment) if deployment else None)
        or _strip_query(request_data.get("api_base") or meta.get("api_base")),
        status="failure",
        http_status=_int(getattr(exception, "status_code", None)),
        error=_error_text(exception),
        latency_ms=round(latency, 3) if latency is not None else None,
        retries=_int(meta.get("attempted_retries")),
        fallbacks=fallback_depth or 0,
        stream=bool(request_data.get("stream")),
        call_type=getattr(call_type, "value", call_type),
    )


def request_failure_row(kwargs: Mapping[str, Any]) -> dict:
    """The row for a request that failed before any deployment (unknown model, say)."""
    slo = kwargs.get("standard_logging_object") or {}
    params = kwargs.get("litellm_params") or {}
    meta = params.get("metadata") or params.get("litellm_metadata") or {}
    info = slo.get("error_information") or {}
    exception = kwargs.get("exception")
    start, end = _float(slo.get("startTime")), _float(slo.get("endTime"))
    return new_row(
        ts=end or time.time(),
        request_id=slo.get("litellm_call_id") or kwargs.get("litellm_call_id"),
        task=task_from_tags(slo.get("request_tags") or _tags_of(params)),
        consumer=_consumer(slo.get("metadata") or meta),
        alias=_requested_model(params) or slo.get("model_group") or kwargs.get("model"),
        model_group=slo.get("model_group") or None,
        status="failure",
        http_status=_int(getattr(exception, "status_code", None) or info.get("error_code")),
        error=_error_text(exception, slo.get("error_str")),
        latency_ms=round((end - start) * 1000, 3) if end and start else None,
        stream=bool(slo.get("stream")),
        call_type=slo.get("call_type") or kwargs.get("call_type"),
    )


# ----------------------------------------------------------------------- budgets


def parse_budgets(text: str | None) -> dict[str, float]:
    """`{"12": 0.5, "*": 5}` -> budgets by task; bad entries are logged and left out."""
    if not text or not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        LOG.error("GATEWAY_TASK_BUDGETS is not JSON (%s); no budgets from the environment", error)
        return {}
    if not isinstance(raw, Mapping):
        LOG.error("GATEWAY_TASK_BUDGETS must be a JSON object; no budgets from the environment")
        return {}
    budgets: dict[str, float] = {}
    for task, value in raw.items():
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if not valid_task(str(task)) or number is None or number < 0 or not math.isfinite(number):
            LOG.error("GATEWAY_TASK_BUDGETS: ignoring %r: %r", task, value)
            continue
        budgets[str(task)] = float(number)
    return budgets


def usd(amount: float) -> str:
    """0.5 -> `$0.50`; 0.00000405 -> `$0.00000405`: enough digits for lab-sized costs."""
    if amount == 0 or abs(amount) >= 0.01:
        return f"${amount:.2f}"
    return "$" + f"{amount:.10f}".rstrip("0")


class Refusal(NamedTuple):
    """A task (or its parent) whose spend has reached its budget."""

    task: str
    spend: float
    budget: float
    requested_for: str

    def message(self) -> str:
        scope = "" if self.task == self.requested_for else f" (request for {self.requested_for})"
        return (
            f"task {self.task} has reached its budget{scope}: spent {usd(self.spend)} "
            f"of {usd(self.budget)}. Raise it with "
            f"`taskcost budget set {self.task} <usd>` or remove it with "
            f"`taskcost budget clear {self.task}`."
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "spend_usd": self.spend,
            "budget_usd": self.budget,
            "requested_for": self.requested_for,
        }


class Spend:
    """Spend by task, in memory: a base seeded from Postgres plus what this process saw."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base: dict[str, float] = {}
        self._live: dict[str, float] = {}

    def add(self, task: str, cost: float) -> None:
        with self._lock:
            self._live[task] = self._live.get(task, 0.0) + cost

    def set_base(self, base: Mapping[str, float]) -> None:
        with self._lock:
            self._base = dict(base)

    def live(self) -> dict[str, float]:
        """What this process recorded that is not known to be in Postgres yet."""
        with self._lock:
            return dict(self._live)

    def settle(self, moved: Mapping[str, float], base: Mapping[str, float] | None) -> None:
        """`moved` (a `live()` taken before a flush) is in Postgres now: it leaves the
        live part, and joins the base unless a fresh `base` from Postgres replaces it."""
        with self._lock:
            for task, cost in moved.items():
                left = self._live.get(task, 0.0) - cost
                if abs(left) < 1e-12:
                    self._live.pop(task, None)
                else:
                    self._live[task] = left
            if base is not None:
                self._base = dict(base)
            else:
                for task, cost in moved.items():
                    self._base[task] = self._base.get(task, 0.0) + cost

    def with_base(self, base: Mapping[str, float]) -> Spend:
        """A copy with another base (spend read from Postgres) and this live part."""
        copy = Spend()
        copy._base = dict(base)
        copy._live = self.live()
        return copy

    def by_task(self) -> dict[str, float]:
        with self._lock:
            keys = set(self._base) | set(self._live)
            return {k: self._base.get(k, 0.0) + self._live.get(k, 0.0) for k in sorted(keys)}

    def of_task(self, task: str) -> float:
        with self._lock:
            return self._base.get(task, 0.0) + self._live.get(task, 0.0)

    def of_root(self, root: str) -> float:
        with self._lock:
            return sum(
                v
                for source in (self._base, self._live)
                for k, v in source.items()
                if task_root(k) == root
            )


class Budgets:
    """Budgets from the environment, overridden per task by the run-time table."""

    def __init__(self, from_env: Mapping[str, float]) -> None:
        self._lock = threading.Lock()
        self.from_env = dict(from_env)
        self._runtime: dict[str, float] = {}

    def set_runtime(self, budgets: Mapping[str, float]) -> None:
        with self._lock:
            self._runtime = dict(budgets)

    def put(self, task: str, budget: float | None) -> None:
        with self._lock:
            if budget is None:
                self._runtime.pop(task, None)
            else:
                self._runtime[task] = budget

    def runtime(self) -> dict[str, float]:
        with self._lock:
            return dict(self._runtime)

    def effective(self) -> dict[str, float]:
        with self._lock:
            return {**self.from_env, **self._runtime}

    def check(self, task: str, spend: Spend) -> Refusal | None:
        """The first budget the task has reached: its own (a subtask's), then its parent's."""
        budgets = self.effective()
        root = task_root(task)
        if task != root and task in budgets:
            spent = spend.of_task(task)
            if spent >= budgets[task]:
                return Refusal(task, spent, budgets[task], task)
        budget = budgets.get(root, budgets.get("*"))
        if budget is not None:
            spent = spend.of_root(root)
            if spent >= budget:
                return Refusal(root, spent, budget, task)
        return None


# ------------------------------------------------------------------------- spool


class Spool:
    """Rows as JSON lines in segment files; the one being written is flock'ed.

    Every append is flushed to the kernel (a killed process loses nothing); the
    worker fsyncs about once a second (a host crash loses at most that). A closed
    segment is one nobody holds a lock on: this process's earlier ones, or ones
    left by a process that is gone, or closed by another worker process of the
    proxy (any of them may move it). The rows waiting are counted from the folder
    itself, so every process reports the same number."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._file: Any = None
        self._path: Path | None = None
        self._dirty = False
        self._instance = uuid.uuid4().hex[:8]
        # Lines counted per segment so far, and the byte offset counted up to:
        # asking again reads only what was appended since.
        self._counted: dict[Path, tuple[int, int]] = {}

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"ledger-{time.time_ns():020d}-{self._instance}.jsonl"
        handle = path.open("a", encoding="utf-8")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file, self._path = handle, path

    def append(self, row: Mapping[str, Any]) -> None:
        line = json.dumps(row, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self._file is None:
                self._open()
            self._file.write(line)
            self._file.flush()
            self._dirty = True

    def sync(self) -> None:
        with self._lock:
            if self._file is not None and self._dirty:
                os.fsync(self._file.fileno())
                self._dirty = False

    def rotate(self) -> None:
        """Close the segment being written (if any) so the worker can move it."""
        with self._lock:
            if self._file is None:
                return
            if self._dirty:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file, self._path, self._dirty = None, None, False

    def current(self) -> Path | None:
        with self._lock:
            return self._path

    def segments(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(SEGMENT_GLOB))

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[list[dict[str, Any]] | None]:
        """The rows of a closed segment, with its lock held; None if someone holds it."""
        if path == self.current():
            yield None
            return
        try:
            handle = path.open("r", encoding="utf-8")
        except FileNotFoundError:
            yield None
            return
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            yield list(self._parse(path, handle))

    @staticmethod
    def _parse(path: Path, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                # A line cut short by a crash mid-write: nothing after it was written.
                LOG.warning("cost ledger: skipping unreadable line %s of %s", number, path.name)
                continue
            if isinstance(row, dict) and row.get("id"):
                yield row

    def pending_rows(self) -> int:
        """Rows in every segment of the folder, whichever process wrote them."""
        with self._lock:
            total = 0
            seen: dict[Path, tuple[int, int]] = {}
            for path in self.segments():
                offset, lines = self._counted.get(path, (0, 0))
                with contextlib.suppress(OSError), path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                    complete = chunk.rfind(b"\n") + 1  # a line being written counts when done
                    offset, lines = offset + complete, lines + chunk.count(b"\n", 0, complete)
                seen[path] = (offset, lines)
                total += lines
            self._counted = seen
            return total

    def earlier_rows(self) -> list[dict[str, Any]]:
        """Rows in segments that this instance did not write (left by an earlier process)."""
        rows: list[dict[str, Any]] = []
        for path in self.segments():
            if path.stem.endswith(f"-{self._instance}"):
                continue
            with contextlib.suppress(OSError), path.open("r", encoding="utf-8") as handle:
                rows += self._parse(path, handle)
        return rows


# ------------------------------------------------------------------------ database


def _sql_row(row: Mapping[str, Any]) -> tuple[Any, ...]:
    values = []
    for column in COLUMNS:
        value = row.get(column)
        if column == "ts":
            value = datetime.fromtimestamp(_float(value) or time.time(), UTC)
        values.append(value)
    return tuple(values)


class Store:
    """The ledger's tables in Postgres (psycopg 3, which LiteLLM's proxy extras bring)."""

    def __init__(self, dsn: str, connect_timeout: int = 3) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            self.dsn,
            connect_timeout=self.connect_timeout,
            options="-c statement_timeout=15000",
            application_name="gateway-cost-ledger",
            # A database created with the C locale is SQL_ASCII, and psycopg would
            # then return bytes for text columns.
            client_encoding="utf8",
        )

    @staticmethod
    def ensure_schema(conn: Any) -> None:
        with conn.cursor() as cur:
            # Two connections creating the same table at once would collide.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('gateway_ledger_schema'))")
            for statement in SCHEMA:
                cur.execute(statement)
        conn.commit()

    @staticmethod
    def insert(conn: Any, rows: list[Mapping[str, Any]]) -> None:
        columns = ", ".join(COLUMNS)
        marks = ", ".join(["%s"] * len(COLUMNS))
        query = (
            f"INSERT INTO gateway_ledger ({columns}) VALUES ({marks}) "  # noqa: S608
            "ON CONFLICT (id) DO NOTHING"
        )
        with conn.cursor() as cur:
            for start in range(0, len(rows), INSERT_BATCH):
                cur.executemany(query, [_sql_row(r) for r in rows[start : start + INSERT_BATCH]])
        conn.commit()

    @staticmethod
    def spend_by_task(conn: Any, root: str | None = None) -> dict[str, float]:
        """Spend by task: of every task, or of one task and its subtasks."""
        with conn.cursor() as cur:
            cur.execute(
                "SELECT task, coalesce(sum(cost_usd), 0) FROM gateway_ledger "
                "WHERE task IS NOT NULL AND (%s::text IS NULL OR split_part(task, '.', 1) = %s) "
                "GROUP BY task",
                (root, root),
            )
            result = {str(task): float(total) for task, total in cur.fetchall()}
        conn.commit()
        return result

    @staticmethod
    def budgets(conn: Any) -> dict[str, float]:
        with conn.cursor() as cur:
            cur.execute("SELECT task, budget_usd FROM gateway_task_budgets")
            result = {str(task): float(budget) for task, budget in cur.fetchall()}
        conn.commit()
        return result

    @staticmethod
    def set_budget(conn: Any, task: str, budget: float | None) -> None:
        with conn.cursor() as cur:
            if budget is None:
                cur.execute("DELETE FROM gateway_task_budgets WHERE task = %s", (task,))
            else:
                cur.execute(
                    "INSERT INTO gateway_task_budgets (task, budget_usd) VALUES (%s, %s) "
                    "ON CONFLICT (task) DO UPDATE SET budget_usd = excluded.budget_usd, "
                    "updated_at = now()",
                    (task, budget),
                )
        conn.commit()

    @staticmethod
    def _task_filter(task: str | None) -> tuple[str, list[Any]]:
        if not task:
            return "TRUE", []
        return "(task = %s OR task LIKE %s)", [task, task.replace("%", "") + ".%"]

    def summary(self, conn: Any, task: str | None) -> list[dict[str, Any]]:
        where, params = self._task_filter(task)
        query = (
            "SELECT task, model, provider, status, count(*), coalesce(sum(input_tokens), 0), "  # noqa: S608
            "coalesce(sum(output_tokens), 0), coalesce(sum(cost_usd), 0), "
            "min(ts), max(ts) "
            f"FROM gateway_ledger WHERE {where} "
            "GROUP BY task, model, provider, status ORDER BY task NULLS LAST, model, status"
        )
        with conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
        conn.commit()
        keys = ("task", "model", "provider", "status", "calls", "input_tokens", "output_tokens")
        result = []
        for values in rows:
            item = dict(zip(keys, values[:7], strict=True))
            item["cost_usd"] = float(values[7])
            item["first"], item["last"] = values[8].isoformat(), values[9].isoformat()
            result.append(item)
        return result

    def rows(
        self, conn: Any, task: str | None, request_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        where, params = self._task_filter(task)
        if request_id:
            where += " AND request_id = %s"
            params.append(request_id)
        query = (
            f"SELECT {', '.join(COLUMNS)} FROM gateway_ledger WHERE {where} "  # noqa: S608
            "ORDER BY ts DESC LIMIT %s"
        )
        with conn.cursor() as cur:
            cur.execute(query, [*params, limit])
            fetched = cur.fetchall()
        conn.commit()
        result = []
        for values in fetched:
            item = dict(zip(COLUMNS, values, strict=True))
            item["ts"] = item["ts"].isoformat()
            result.append(item)
        return result


# ------------------------------------------------------------------------- metrics


class Metrics:
    """Per-task counters for the dashboard, in prometheus_client's default registry."""

    def __init__(self) -> None:
        try:
            import prometheus_client
        except ImportError:  # the proxy image has it; a bare test venv may not
            LOG.warning("prometheus_client is missing: the ledger exports no metrics")
            self.enabled = False
            return
        self.enabled = True
        # With several workers, prometheus_client writes its values under this
        # folder (a tmpfs, empty at each start): have it before the first metric.
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if shared:
            Path(shared).mkdir(parents=True, exist_ok=True)
        self.spend = self._get(
            prometheus_client.Counter,
            "gateway_task_spend_usd",
            "USD spent on model calls, by task (subtasks rolled up; none = untagged)",
            ["task"],
        )
        self.tokens = self._get(
            prometheus_client.Counter,
            "gateway_task_tokens",
            "Tokens of model calls, by task and direction (input/output)",
            ["task", "direction"],
        )
        self.requests = self._get(
            prometheus_client.Counter,
            "gateway_task_requests",
            "Model call outcomes recorded by the cost ledger, by task and status",
            ["task", "status"],
        )
        self.pending = self._get(
            prometheus_client.Gauge,
            "gateway_ledger_pending_rows",
            "Ledger rows waiting in the spool for Postgres",
            [],
            # Every worker process counts the whole spool folder.
            multiprocess_mode="livemax",
        )
        self.database_up = self._get(
            prometheus_client.Gauge,
            "gateway_ledger_database_up",
            "1 when the cost ledger's last write to Postgres worked",
            [],
            multiprocess_mode="livemin",  # 0 when any worker process cannot write
        )

    @staticmethod
    def _get(kind: Any, name: str, help_text: str, labels: list[str], **options: Any) -> Any:
        from prometheus_client import REGISTRY

        # The module may be executed twice in one process (LiteLLM loads callback
        # files by path); the registry refuses a second collector with one name.
        existing = getattr(REGISTRY, "_names_to_collectors", {}).get(name)
        if existing is not None:
            return existing
        return kind(name, help_text, labels, **options)

    def observe(self, row: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        label = task_root(row["task"]) if row.get("task") else NO_TASK
        self.requests.labels(task=label, status=row["status"]).inc()
        self.spend.labels(task=label).inc(max(_float(row.get("cost_usd")), 0.0))
        self.tokens.labels(task=label, direction="input").inc(row.get("input_tokens") or 0)
        self.tokens.labels(task=label, direction="output").inc(row.get("output_tokens") or 0)

    def state(self, pending: int, database_up: bool) -> None:
        if self.enabled:
            self.pending.set(pending)
            self.database_up.set(1 if database_up else 0)


# -------------------------------------------------------------------------- ledger


class Settings(NamedTuple):
    """What the environment says (NamedTuple, not a dataclass: LiteLLM executes this
    file without registering it in sys.modules, which dataclasses need)."""

    dsn: str
    spool: Path
    budgets: dict[str, float]
    flush_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            dsn=env.get("GATEWAY_LEDGER_DSN", "").strip(),
            spool=Path(env.get("GATEWAY_LEDGER_SPOOL", "").strip() or DEFAULT_SPOOL),
            budgets=parse_budgets(env.get("GATEWAY_TASK_BUDGETS")),
            flush_seconds=max(_float(env.get("GATEWAY_LEDGER_FLUSH_SECONDS")) or 1.0, 0.05),
        )


def current_router() -> Any:
    from litellm.proxy import proxy_server

    return getattr(proxy_server, "llm_router", None)


class BudgetExceeded(Exception):
    """Raised from the pre-call hook; the proxy answers it with HTTP 402."""


def budget_error(refusal: Refusal) -> Exception:
    """The proxy's own exception type, so the client gets OpenAI's error format and 402."""
    try:
        from litellm.proxy._types import ProxyException
    except ImportError:  # outside the proxy (unit tests without the proxy extras)
        return BudgetExceeded(refusal.message())
    return ProxyException(
        message=refusal.message(),
        type="budget_exceeded",
        param="task",
        code=402,
        provider_specific_fields={"gateway_budget": refusal.as_dict()},
    )


def _close_quietly(conn: Any) -> None:
    """Close a database connection that may already be broken."""
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


class CostLedger(CustomLogger):
    """Records every outcome, enforces task budgets, moves rows to Postgres in the background."""

    def __init__(
        self,
        settings: Settings | None = None,
        router_getter: Callable[[], Any] = current_router,
        store_factory: Callable[[str], Store] = Store,
        autostart: bool = True,
    ) -> None:
        super().__init__()
        self.autostart = autostart
        self.settings = settings or Settings.from_env()
        self._router_getter = router_getter
        self.spool = Spool(self.settings.spool)
        self.store = store_factory(self.settings.dsn) if self.settings.dsn else None
        self.spend = Spend()
        self.budgets = Budgets(self.settings.budgets)
        self.metrics = Metrics()
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.seeded = False
        self.database_up = False
        self.last_error: str | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._conn: Any = None
        self._next_budget_refresh = 0.0
        # The budget check's own connection, used from one thread at a time.
        self._check_lock = threading.Lock()
        self._check_conn: Any = None

    # --- the hooks LiteLLM calls ----------------------------------------------------

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> dict:
        try:
            task = task_from_tags(_tags_of(data))
            refusal = await self.check(task) if task else None
            if refusal is None:
                return data
            metadata = data.get("metadata") or data.get("litellm_metadata") or {}
            who = {k: v for k, v in metadata.items() if k.startswith("user_api_key_") and v}
            for attribute, key in (
                ("key_alias", "user_api_key_alias"),
                ("user_id", "user_api_key_user_id"),
            ):
                value = getattr(user_api_key_dict, attribute, None)
                if value:
                    who.setdefault(key, value)
            self._remember(f"refused:{data.get('litellm_call_id')}")
            self.record(
                new_row(
                    request_id=data.get("litellm_call_id"),
                    task=task,
                    consumer=_consumer(who),
                    alias=data.get("model"),
                    status="refused",
                    http_status=402,
                    error=refusal.message()[:500],
                    call_type=getattr(call_type, "value", call_type),
                )
            )
        except Exception:  # a bug here must not turn every request into a 500
            LOG.exception("cost ledger: the budget check failed; the request goes ahead")
            return data
        LOG.warning("cost ledger: refused a request: %s", refusal.message())
        raise budget_error(refusal)

    async def async_log_success_event(
        self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        try:
            slo = kwargs.get("standard_logging_object") or {}
            key = f"success:{slo.get('litellm_call_id')}:{slo.get('id')}"
            if not self._remember(key):
                return
            self.record(success_row(kwargs, self._api_base_of))
        except Exception:  # a logging hook must never fail a request
            LOG.exception("cost ledger: could not record a success")

    async def async_post_call_failure_deployment_hook(
        self,
        request_data: Mapping[str, Any],
        exception: Exception,
        call_type: Any,
        fallback_depth: int | None = None,
    ) -> None:
        try:
            self.record(
                attempt_failure_row(
                    request_data, exception, call_type, fallback_depth, self._api_base_of
                )
            )
        except Exception:
            LOG.exception("cost ledger: could not record a failed attempt")

    async def async_log_failure_event(
        self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        try:
            slo = kwargs.get("standard_logging_object") or {}
            call_id = slo.get("litellm_call_id") or kwargs.get("litellm_call_id")
            if slo.get("model_id") or f"refused:{call_id}" in self._seen:
                return  # an attempt on a deployment: the deployment hook recorded it
            if not self._remember(f"failure:{call_id}"):
                return
            self.record(request_failure_row(kwargs))
        except Exception:
            LOG.exception("cost ledger: could not record a failure")

    # --- recording ----------------------------------------------------------------

    def _remember(self, key: str) -> bool:
        """False if `key` was seen recently (LiteLLM may log one outcome twice)."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            while len(self._seen) > 20000:
                self._seen.popitem(last=False)
            return True

    def record(self, row: dict[str, Any]) -> None:
        """Spool the row, count its spend, export its metrics. Never raises."""
        if self.autostart:
            self.start()
        with self._lock:
            try:
                self.spool.append(row)
            except OSError as error:
                self.last_error = f"spool: {error}"
                LOG.error("cost ledger: could not write the spool (%s); row lost: %s", error, row)
            if row.get("task"):
                self.spend.add(row["task"], _float(row.get("cost_usd")))
        self.metrics.observe(row)
        # No wake-up here: the worker moves rows every flush_seconds, in batches.
        # Waking it per row made it rotate per row, and the next request then
        # created a new segment file on the event loop.

    def _api_base_of(self, deployment_id: str) -> str | None:
        """The API base the router has for a deployment (no path or key added per call)."""
        try:
            router = self._router_getter()
            deployment = router.get_deployment(model_id=deployment_id) if router else None
        except Exception:
            return None
        if deployment is None:
            return None
        params = getattr(deployment, "litellm_params", None)
        base = getattr(params, "api_base", None)
        if base is None and isinstance(deployment, Mapping):
            base = (deployment.get("litellm_params") or {}).get("api_base")
        return _strip_query(base)

    # --- the background worker ----------------------------------------------------

    def start(self) -> None:
        """Start the worker thread once (lazily: importing the module starts nothing)."""
        if self._worker is not None:
            return
        with self._lock:
            if self._worker is not None:
                return
            self._worker = threading.Thread(
                target=self._run, name="gateway-cost-ledger", daemon=True
            )
            self._worker.start()
        atexit.register(self.close)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with contextlib.suppress(OSError):
            self.spool.sync()

    def _run(self) -> None:
        self._count_leftovers()
        backoff = self.settings.flush_seconds
        while not self._stop.is_set():
            self._wake.wait(self.settings.flush_seconds)
            self._wake.clear()
            try:
                self.spool.sync()
            except OSError as error:
                LOG.error("cost ledger: fsync of the spool failed: %s", error)
            if self.store is None:
                self.metrics.state(self.spool.pending_rows(), False)
                continue
            try:
                self.flush_once()
                backoff = self.settings.flush_seconds
            except Exception as error:
                self._close_connection()
                if self.database_up or self.last_error != str(error):
                    LOG.warning("cost ledger: Postgres unavailable, rows stay spooled: %s", error)
                self.database_up, self.last_error = False, str(error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            self.metrics.state(self.spool.pending_rows(), self.database_up)

    def _count_leftovers(self) -> None:
        """Rows a previous process spooled and may not have written yet count as spend."""
        try:
            rows = self.spool.earlier_rows()
        except OSError as error:
            LOG.error("cost ledger: cannot read the spool %s: %s", self.spool.directory, error)
            return
        with self._lock:
            for row in rows:
                if row.get("task"):
                    self.spend.add(row["task"], _float(row.get("cost_usd")))
        if rows:
            LOG.info("cost ledger: %s spooled rows from before this start", len(rows))

    def _connection(self) -> Any:
        if self._conn is None or getattr(self._conn, "closed", False):
            assert self.store is not None
            self._conn = self.store.connect()
            self.store.ensure_schema(self._conn)
        return self._conn

    def _close_connection(self) -> None:
        _close_quietly(self._conn)
        self._conn = None

    def flush_once(self) -> int:
        """Move every closed segment to Postgres, then settle the spend in memory
        (reloaded from Postgres at the first flush and every 30 s, which brings
        in what other processes recorded). Raises on database errors."""
        assert self.store is not None
        conn = self._connection()
        refresh = not self.seeded or time.monotonic() >= self._next_budget_refresh
        if refresh:
            self.budgets.set_runtime(self.store.budgets(conn))
        with self._lock:
            self.spool.rotate()
            counted = self.spend.live()  # all of it is in a closed segment now
        moved = 0
        for path in self.spool.segments():
            with self.spool.claim(path) as rows:
                if rows is None:
                    continue
                if rows:
                    self.store.insert(conn, rows)
                path.unlink(missing_ok=True)
                moved += len(rows)
        base = self.store.spend_by_task(conn) if refresh else None
        self.spend.settle(counted, base)
        if refresh:
            self._next_budget_refresh = time.monotonic() + BUDGET_REFRESH_SECONDS
            if not self.seeded:
                LOG.info("cost ledger: spend seeded from Postgres for %s tasks", len(base or {}))
            self.seeded = True
        self.database_up, self.last_error = True, None
        return moved

    # --- the budget check ---------------------------------------------------------

    async def check(self, task: str) -> Refusal | None:
        """The budget `task` has reached, if any: from Postgres while it answers."""
        if self.store is None or not self.database_up:
            return self.budgets.check(task, self.spend)
        try:
            return await asyncio.to_thread(self._check_with_database, task)
        except Exception as error:
            LOG.warning("cost ledger: budget check without Postgres (%s)", error)
            with self._check_lock:
                self._close_check_connection()
            return self.budgets.check(task, self.spend)

    def _check_with_database(self, task: str) -> Refusal | None:
        assert self.store is not None
        with self._check_lock:
            if self._check_conn is None or getattr(self._check_conn, "closed", False):
                self._check_conn = self.store.connect()
            spend = self._read_database(self._check_conn, task_root(task))
        return self.budgets.check(task, spend)

    def _read_database(self, conn: Any, root: str | None = None) -> Spend:
        """Take the run-time budgets from Postgres, and return the spend there (of
        one task, or of all) plus this process's rows still in its spool."""
        assert self.store is not None
        self.budgets.set_runtime(self.store.budgets(conn))
        return self.spend.with_base(self.store.spend_by_task(conn, root))

    def _close_check_connection(self) -> None:
        _close_quietly(self._check_conn)
        self._check_conn = None

    # --- what the HTTP API serves ---------------------------------------------------

    def status(self) -> dict[str, Any]:
        standing = self.standing()
        return {
            "database": "disabled"
            if self.store is None
            else ("up" if self.database_up else "down"),
            "last_error": self.last_error,
            "pending_rows": self.spool.pending_rows(),
            "spool": str(self.spool.directory),
            "seeded": self.seeded,
            "spend_by_task": standing["spend_by_task"],
            "budgets": standing["effective"],
        }

    def standing(self) -> dict[str, Any]:
        """Budgets and spend of every task as all processes see them: the run-time
        budgets and the spend in Postgres, plus this process's rows still in its
        spool. While Postgres is away, what this process knows."""
        spend = self.spend
        if self.store is not None and self.database_up:
            try:
                spend = self.query(self._read_database)
            except Exception as error:
                LOG.warning("cost ledger: budgets from memory, Postgres did not answer (%s)", error)
        return {
            "from_env": self.budgets.from_env,
            "runtime": self.budgets.runtime(),
            "effective": self.budgets.effective(),
            "spend_by_task": spend.by_task(),
        }

    def query(self, what: Callable[[Any], Any]) -> Any:
        """Run a read or a budget change on a short-lived connection of its own."""
        if self.store is None:
            raise LookupError("the ledger has no database (GATEWAY_LEDGER_DSN is empty)")
        conn = self.store.connect()
        try:
            self.store.ensure_schema(conn)
            return what(conn)
        finally:
            conn.close()

    def set_budget(
        self,
        task: str,
        budget: float | None,
        run: Callable[[Callable[[Any], Any]], Any] | None = None,
    ) -> None:
        """Store a run-time budget (None removes it), then use it at once."""
        store = self.store
        if store is None:
            raise LookupError("the ledger has no database (GATEWAY_LEDGER_DSN is empty)")
        (run or self.query)(lambda conn: store.set_budget(conn, task, budget))
        self.budgets.put(task, budget)


# -------------------------------------------------------------------------- routes


def install_routes(app: Any, auth_dependency: Any, ledger_getter: Callable[[], CostLedger]) -> None:
    """Add the ledger's read/budget API to the proxy's FastAPI app (once per app)."""
    from fastapi import APIRouter, Body, Depends, HTTPException, Query

    if getattr(app.state, "gateway_ledger_routes", False):
        return

    def admin(user: Any = Depends(auth_dependency)) -> None:  # noqa: B008
        role = getattr(getattr(user, "user_role", None), "value", getattr(user, "user_role", None))
        if role != "proxy_admin":
            raise HTTPException(status_code=403, detail="the cost ledger needs the master key")

    def database(what: Callable[[Any], Any]) -> Any:
        try:
            return ledger_getter().query(what)
        except LookupError as error:
            raise HTTPException(status_code=503, detail=str(error)) from error
        except Exception as error:
            pending = ledger_getter().spool.pending_rows()
            raise HTTPException(
                status_code=503,
                detail=f"ledger database unavailable ({type(error).__name__}: {error}); "
                f"{pending} rows wait in the spool",
            ) from error

    def checked_task(task: str) -> str:
        if not valid_task(task):
            raise HTTPException(status_code=400, detail=f"not a task id: {task!r}")
        return task

    router = APIRouter(prefix="/gateway/ledger", tags=["gateway cost ledger"])

    @router.get("/status", dependencies=[Depends(admin)])
    def status() -> dict[str, Any]:
        return ledger_getter().status()

    @router.get("/summary", dependencies=[Depends(admin)])
    def summary(task: str | None = Query(default=None)) -> dict[str, Any]:
        ledger = ledger_getter()
        task = checked_task(task) if task else None
        rows = database(lambda conn: ledger.store.summary(conn, task))  # type: ignore[union-attr]
        return {"rows": rows, "pending_rows": ledger.spool.pending_rows()}

    @router.get("/rows", dependencies=[Depends(admin)])
    def rows(
        task: str | None = Query(default=None),
        request_id: str | None = Query(default=None),
        limit: int = Query(default=100, ge=1, le=10000),
    ) -> dict[str, Any]:
        ledger = ledger_getter()
        task = checked_task(task) if task else None
        found = database(lambda conn: ledger.store.rows(conn, task, request_id, limit))  # type: ignore[union-attr]
        return {"rows": found, "pending_rows": ledger.spool.pending_rows()}

    @router.get("/budgets", dependencies=[Depends(admin)])
    def budgets() -> dict[str, Any]:
        return ledger_getter().standing()

    @router.put("/budgets/{task}", dependencies=[Depends(admin)])
    def put_budget(task: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        budget = body.get("budget_usd")
        if not isinstance(budget, int | float) or isinstance(budget, bool) or budget < 0:
            raise HTTPException(status_code=400, detail="budget_usd must be a number >= 0")
        ledger_getter().set_budget(checked_task(task), float(budget), database)
        return {"task": task, "budget_usd": float(budget)}

    @router.delete("/budgets/{task}", dependencies=[Depends(admin)])
    def delete_budget(task: str) -> dict[str, Any]:
        ledger_getter().set_budget(checked_task(task), None, database)
        return {"task": task, "budget_usd": None}

    app.include_router(router)
    app.state.gateway_ledger_routes = True


def _install_in_proxy(instance: CostLedger) -> None:
    """When LiteLLM's proxy loads this module, serve the API from its own app."""
    import sys

    if "litellm.proxy.proxy_server" not in sys.modules:
        return
    try:
        from litellm.proxy.auth.user_api_key_auth import user_api_key_auth
        from litellm.proxy.proxy_server import app

        app.state.gateway_ledger = instance
        install_routes(app, user_api_key_auth, lambda: app.state.gateway_ledger)
    except Exception:
        LOG.exception("cost ledger: could not add its HTTP API to the proxy")
    # Seed spend and budgets from Postgres now, not at the first request.
    instance.start()


ledger = CostLedger()
_install_in_proxy(ledger)
