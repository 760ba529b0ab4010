"""The ledger's tables in Postgres: ``gateway_ledger`` (the rows) and ``gateway_task_budgets``.

Through psycopg 3, which LiteLLM's proxy extras bring; imported when the first
connection is made, so a process without a database never needs it. Rows are
inserted with ``INSERT ... ON CONFLICT (id) DO NOTHING``: replaying a spool
segment after a crash adds nothing twice. ``GATEWAY_LEDGER_DSN`` (a libpq URL)
says where the database is (:mod:`gateway.ledger`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway import reservations
from gateway.events import COLUMNS, to_float

INSERT_BATCH = 500

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


def _sql_row(row: Mapping[str, Any]) -> tuple[Any, ...]:
    values = []
    for column in COLUMNS:
        value = row.get(column)
        if column == "ts":
            value = datetime.fromtimestamp(to_float(value) or time.time(), UTC)
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
            for statement in SCHEMA + reservations.SCHEMA:
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
            # The calls these rows are of stop counting as reservations in the
            # same transaction: a call is counted once, one way or the other.
            reservations.release_moved(
                cur, sorted({str(r["request_id"]) for r in rows if r.get("request_id")})
            )
        conn.commit()

    @staticmethod
    def row_errors() -> tuple[type[BaseException], ...]:
        """What Postgres (or psycopg, before it sends) raises for a row it will not
        take, as opposed to a database it cannot reach (OperationalError)."""
        import psycopg

        return (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)

    def insert_each(
        self, conn: Any, rows: list[Mapping[str, Any]]
    ) -> list[tuple[Mapping[str, Any], str]]:
        """Insert rows one at a time; return the ones Postgres refused, with why."""
        refused: list[tuple[Mapping[str, Any], str]] = []
        for row in rows:
            try:
                self.insert(conn, [row])
            except self.row_errors() as error:
                conn.rollback()
                refused.append((row, f"{type(error).__name__}: {error}"[:500]))
        return refused

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
