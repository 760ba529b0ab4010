"""The gateway's cost ledger: every model call, counted against the task it served.

``CostLedger`` is the LiteLLM callback (``litellm_settings.callbacks``, through
:mod:`gateway.litellm_entry`). It records one row per outcome of an attempt
(success, each failed attempt, a refusal; :mod:`gateway.events` says what is
in them), enforces task budgets (:mod:`gateway.budgets`) and moves the rows to
Postgres (:mod:`gateway.store`) in the background.

Off the hot path: a callback appends one JSON line to a spool file
(:mod:`gateway.spool`) and returns. A background thread, started at the first
row (or when the proxy loads the ledger; importing starts nothing), fsyncs the
spool about once a second and, when Postgres answers, moves closed spool
segments into it (``INSERT ... ON CONFLICT (id) DO NOTHING``, so replaying a
segment after a crash adds nothing twice) and then deletes them. A slow or
stopped Postgres never slows or fails a request: rows wait in the spool (a
folder of the host, mounted) and are written when it is back.

Several worker processes (and several gateway hosts) each run their own ledger
on one spool folder and one database, so Postgres is where they agree: a call
for a task with a budget reserves its worst-case cost there first, under a
lock every process takes (:mod:`gateway.reservations`), and is refused with
402 when the task's spend and reservations have reached its budget; so
concurrent calls overrun a budget by one call at most. Untagged requests, and
tasks without a budget, never wait for the database. While Postgres is
unreachable a call for a task with a budget is refused with 503
(``GATEWAY_BUDGETS_WITHOUT_DATABASE=refuse``, the default) or served and
counted in ``gateway_ledger_unchecked_requests_total`` (``serve``), checked
against what this process knows.

Environment: ``GATEWAY_LEDGER_DSN`` (libpq URL; empty keeps rows in the spool
only), ``GATEWAY_LEDGER_SPOOL`` (default ``/var/lib/gateway-ledger``),
``GATEWAY_TASK_BUDGETS``, ``GATEWAY_BUDGETS_WITHOUT_DATABASE`` (refuse, or
serve), ``GATEWAY_LEDGER_FLUSH_SECONDS`` (default 1), and
``PROMETHEUS_MULTIPROC_DIR`` (:mod:`gateway.metrics`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from litellm.integrations.custom_logger import CustomLogger

from gateway import reservations
from gateway.budgets import Budgets, Refusal, Spend, parse_budgets
from gateway.events import (
    attempt_failure_row,
    consumer_of,
    new_row,
    request_failure_row,
    strip_query,
    success_row,
    tags_of,
    to_float,
)
from gateway.metrics import Metrics
from gateway.reservations import applicable_budgets, worst_case_cost
from gateway.spool import Spool
from gateway.store import Store
from gateway.tasks import task_from_tags, task_root

LOG = logging.getLogger("cost_ledger")

DEFAULT_SPOOL = "/var/lib/gateway-ledger"
BUDGET_REFRESH_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 30.0


# How long a call's reservation counts at most (a worker killed mid-call
# never settles its own): longer than any call the gateway lets run.
RESERVATION_TTL_SECONDS = 900
# What a call for a task with a budget gets while Postgres is unreachable.
WITHOUT_DATABASE = ("refuse", "serve")


class Settings(NamedTuple):
    """What the environment says."""

    dsn: str
    spool: Path
    budgets: dict[str, float]
    flush_seconds: float
    without_database: str = "refuse"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        mode = env.get("GATEWAY_BUDGETS_WITHOUT_DATABASE", "").strip() or "refuse"
        return cls(
            dsn=env.get("GATEWAY_LEDGER_DSN", "").strip(),
            spool=Path(env.get("GATEWAY_LEDGER_SPOOL", "").strip() or DEFAULT_SPOOL),
            budgets=parse_budgets(env.get("GATEWAY_TASK_BUDGETS")),
            flush_seconds=max(to_float(env.get("GATEWAY_LEDGER_FLUSH_SECONDS")) or 1.0, 0.05),
            without_database=mode if mode in WITHOUT_DATABASE else "refuse",
        )


def _proxy_exception_type() -> type[BaseException]:
    """LiteLLM's ProxyException (what the pre-call hook raises on purpose)."""
    try:
        from litellm.proxy._types import ProxyException
    except ImportError:
        return BudgetExceeded
    return ProxyException


def current_router() -> Any:
    from litellm.proxy import proxy_server

    return getattr(proxy_server, "llm_router", None)


class BudgetExceeded(Exception):
    """Raised from the pre-call hook; the proxy answers it with HTTP 402."""


class BudgetUnchecked(Exception):
    """Raised from the pre-call hook; the proxy answers it with HTTP 503."""


def unchecked_error(task: str) -> Exception:
    """A call for a task with a budget while the ledger's database is unreachable
    (GATEWAY_BUDGETS_WITHOUT_DATABASE=refuse, the default)."""
    message = (
        f"task {task} has a budget, and the ledger's database is unreachable, so the "
        "gateway cannot reserve what this call may cost: calls for tasks with a budget "
        "are refused until it is back (litellm_proxy_task_budgets_without_database)"
    )
    try:
        from litellm.proxy._types import ProxyException
    except ImportError:
        return BudgetUnchecked(message)
    return ProxyException(message=message, type="budget_unchecked", param="task", code=503)


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
        # The calls this process reserved for, until they are settled.
        self._reserved: set[str] = set()

    # --- the hooks LiteLLM calls ----------------------------------------------------

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> dict:
        try:
            task = task_from_tags(tags_of(data))
            refusal = await self.admit(task, data) if task else None
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
                    consumer=consumer_of(who),
                    alias=data.get("model"),
                    status="refused",
                    http_status=402,
                    error=refusal.message()[:500],
                    call_type=getattr(call_type, "value", call_type),
                )
            )
        except (BudgetUnchecked, _proxy_exception_type()):
            raise
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
            row = success_row(kwargs, self._api_base_of)
            self.record(row)
            await self._settle(row.get("request_id"), to_float(row.get("cost_usd")))
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
            await self._settle(call_id, 0.0)  # the request failed: it cost nothing
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
                self.spend.add(row["task"], to_float(row.get("cost_usd")))
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
        return strip_query(base)

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
                    self.spend.add(row["task"], to_float(row.get("cost_usd")))
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
                    self._insert(conn, rows, path)
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

    def _insert(self, conn: Any, rows: list[dict[str, Any]], path: Path) -> None:
        """Insert a segment's rows. A row Postgres refuses (a value it cannot
        store) must not hold up the others for ever: the segment is inserted
        again row by row, and the refused rows go to the spool's quarantine
        folder, counted and shown in the status, while an unreachable database
        (any other error) still leaves the whole segment in the spool."""
        assert self.store is not None
        try:
            self.store.insert(conn, rows)
            return
        except self.store.row_errors() as error:
            conn.rollback()
            LOG.warning("cost ledger: Postgres refused a row of %s (%s)", path.name, error)
        refused = self.store.insert_each(conn, rows)
        if refused:
            kept = self.spool.quarantine(refused)
            self.metrics.quarantined(len(refused))
            LOG.error(
                "cost ledger: %s row(s) Postgres refused are kept in %s, the other %s moved",
                len(refused),
                kept,
                len(rows) - len(refused),
            )

    # --- the budget check ---------------------------------------------------------

    async def admit(self, task: str, data: Mapping[str, Any]) -> Refusal | None:
        """Reserve the call's worst case against its task's budgets, in Postgres, or
        say which budget it would not fit in. Without a database configured, what
        this process knows decides; while the database is unreachable, a task with a
        budget is refused (503) or served unchecked, as the settings say."""
        if self.store is None:
            return self.budgets.check(task, self.spend)
        call_id = str(data.get("litellm_call_id") or "")
        if self.database_up and call_id:
            try:
                amount = worst_case_cost(data, self._router_getter())
                refusal, reserved = await asyncio.to_thread(
                    self._reserve_with_database, call_id, task, amount
                )
            except Exception as error:
                LOG.warning("cost ledger: budget check without Postgres (%s)", error)
                with self._check_lock:
                    self._close_check_connection()
            else:
                if reserved:
                    with self._lock:
                        self._reserved.add(call_id)
                return refusal
        if not applicable_budgets(task, self.budgets.effective()):
            return None
        if self.settings.without_database == "refuse":
            raise unchecked_error(task)
        self.metrics.unchecked()
        return self.budgets.check(task, self.spend)

    def _reserve_with_database(
        self, call_id: str, task: str, amount: float
    ) -> tuple[Refusal | None, bool]:
        assert self.store is not None
        with self._check_lock:
            if self._check_conn is None or getattr(self._check_conn, "closed", False):
                self._check_conn = self.store.connect()
            try:
                return reservations.reserve(
                    self._check_conn,
                    call_id,
                    task,
                    self.budgets.from_env,
                    amount,
                    RESERVATION_TTL_SECONDS,
                )
            except Exception:
                _close_quietly(self._check_conn)
                self._check_conn = None
                raise

    async def _settle(self, call_id: Any, cost: float) -> None:
        """A call this process reserved for ended: it holds its real cost now."""
        with self._lock:
            if not call_id or call_id not in self._reserved:
                return
            self._reserved.discard(call_id)
        try:
            await asyncio.to_thread(self._settle_with_database, str(call_id), cost)
        except Exception as error:  # the reservation then counts until it expires
            LOG.warning("cost ledger: could not settle a reservation (%s)", error)

    def _settle_with_database(self, call_id: str, cost: float) -> None:
        assert self.store is not None
        with self._check_lock:
            if self._check_conn is None or getattr(self._check_conn, "closed", False):
                self._check_conn = self.store.connect()
            try:
                reservations.settle(self._check_conn, call_id, cost)
            except Exception:
                _close_quietly(self._check_conn)
                self._check_conn = None
                raise

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
            "quarantined_rows": self.spool.quarantined_rows(),
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
