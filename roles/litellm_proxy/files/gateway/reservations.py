"""Task budgets that hold under concurrency: each call reserves its worst case first.

A check of "spent so far" before a call lets every call that starts before the
first one ends through: measured, 10 of 16 concurrent calls for a task whose
budget was smaller than one call. So a call for a task with a budget reserves,
before it goes upstream, the most it can cost: its prompt's tokens as LiteLLM
counts them plus its ``max_tokens`` (or the model's output limit) at the price
of the dearest deployment that could answer it (its alias and the aliases it
falls back to). The reservation is a row of ``gateway_task_reservations`` in
the ledger's Postgres, written under a transaction-level advisory lock on the
task's root that every worker of every gateway takes, after the spend in the
ledger plus the other reservations of that task was found below the budget.
So concurrent calls overrun a budget by at most one call.

When the call ends the reservation is settled to its real cost (a failed
request costs nothing), and the ledger's flush deletes it in the same
transaction that inserts the call's rows: a call is always counted once, as a
reservation or as rows. A reservation nobody settled (a worker killed
mid-call) stops counting when it expires.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.budgets import Refusal
from gateway.events import to_float
from gateway.tasks import task_root

LOG = logging.getLogger("cost_ledger")

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS gateway_task_reservations (
        id text PRIMARY KEY,
        task text NOT NULL,
        root text NOT NULL,
        amount double precision NOT NULL CHECK (amount >= 0),
        created timestamptz NOT NULL DEFAULT now(),
        expires timestamptz NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS gateway_task_reservations_root_idx "
    "ON gateway_task_reservations (root)",
    "CREATE INDEX IF NOT EXISTS gateway_ledger_root_idx "
    "ON gateway_ledger (split_part(task, '.', 1))",
)
# Output tokens assumed for a call that sets no limit and whose model states none.
DEFAULT_OUTPUT_TOKENS = 4096
# How long a reservation counts at most, past the request's own timeout.
RESERVATION_SLACK_SECONDS = 120


def _deployments(router: Any, group: str) -> list[Mapping[str, Any]]:
    try:
        return list(router.get_model_list(model_name=group) or [])
    except Exception:
        return []


def _groups_reached(router: Any, alias: str) -> list[str]:
    """The alias and every alias its fallbacks reach, transitively."""
    rules: dict[str, list[str]] = {}
    for rule in getattr(router, "fallbacks", None) or []:
        if isinstance(rule, Mapping):
            for source, targets in rule.items():
                rules.setdefault(str(source), []).extend(str(t) for t in targets or [])
    reached, pending = [], [alias]
    while pending:
        group = pending.pop(0)
        if group in reached:
            continue
        reached.append(group)
        pending.extend(rules.get(group, []))
    return reached


def _count_prompt_tokens(data: Mapping[str, Any], model: str | None) -> int:
    """The prompt's tokens as LiteLLM counts them; a generous guess if it cannot."""
    messages = data.get("messages")
    text = data.get("input") if messages is None else None
    try:
        import litellm

        if messages is not None:
            return int(litellm.token_counter(model=model or "gpt-4o", messages=messages))
        if text is not None:
            inputs = text if isinstance(text, list) else [text]
            return sum(
                int(litellm.token_counter(model=model or "gpt-4o", text=str(t))) for t in inputs
            )
    except Exception:
        LOG.debug("cost ledger: token counting failed, guessing from the length", exc_info=True)
    return len(json.dumps(messages if messages is not None else text or "")) // 2 + 1


def _output_limit(data: Mapping[str, Any], models: Iterable[str]) -> int:
    for field in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = data.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return int(value)
    limits = []
    try:
        import litellm

        for model in models:
            with contextlib.suppress(Exception):  # a model LiteLLM does not know
                info = litellm.get_model_info(model)
                if info.get("max_output_tokens"):
                    limits.append(int(info["max_output_tokens"]))
    except ImportError:
        pass
    return max(limits) if limits else DEFAULT_OUTPUT_TOKENS


def worst_case_cost(data: Mapping[str, Any], router: Any) -> float:
    """The most a call can cost: its prompt plus its output limit, at the price of
    the dearest deployment of its alias or of an alias it falls back to."""
    alias = str(data.get("model") or "")
    deployments = [d for g in _groups_reached(router, alias) for d in _deployments(router, g)]
    params = [d.get("litellm_params") or {} for d in deployments]
    if not params:
        return 0.0
    input_price = max(to_float(p.get("input_cost_per_token")) for p in params)
    output_price = max(to_float(p.get("output_cost_per_token")) for p in params)
    if input_price == 0 and output_price == 0:
        return 0.0  # only free (local) models can answer it
    models = [str(p.get("model") or "") for p in params]
    prompt = _count_prompt_tokens(data, models[0] if models else None)
    embedding = data.get("messages") is None and data.get("input") is not None
    output = 0 if embedding else _output_limit(data, models)
    return prompt * input_price + output * output_price


def applicable_budgets(task: str, budgets: Mapping[str, float]) -> list[tuple[str, float]]:
    """The budgets a call for `task` must fit in: the subtask's own, and its root's
    (or the `*` one)."""
    root = task_root(task)
    found: list[tuple[str, float]] = []
    if task != root and task in budgets:
        found.append((task, budgets[task]))
    budget = budgets.get(root, budgets.get("*"))
    if budget is not None:
        found.append((root, budget))
    return found


def ensure_schema(conn: Any) -> None:
    with conn.cursor() as cur:
        for statement in SCHEMA:
            cur.execute(statement)
    conn.commit()


def reserve(
    conn: Any,
    call_id: str,
    task: str,
    env_budgets: Mapping[str, float],
    amount: float,
    ttl_seconds: float,
) -> tuple[Refusal | None, bool]:
    """Reserve `amount` for the call, or say which budget it would not fit in.

    Returns (refusal, reserved): (None, False) when no budget applies to the task.
    One transaction, under an advisory lock on the task's root that every process
    takes, so two calls never both see the same room left."""
    root = task_root(task)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (root,))
        cur.execute(
            "SELECT task, budget_usd FROM gateway_task_budgets WHERE task = ANY(%s)",
            ([task, root, "*"],),
        )
        budgets = {**env_budgets, **{str(t): float(b) for t, b in cur.fetchall()}}
        wanted = applicable_budgets(task, budgets)
        if not wanted:
            conn.commit()
            return None, False
        for scope, budget in wanted:
            if scope == root:
                cur.execute(
                    "SELECT (SELECT coalesce(sum(cost_usd), 0) FROM gateway_ledger "
                    "        WHERE split_part(task, '.', 1) = %s) "
                    "     + (SELECT coalesce(sum(amount), 0) FROM gateway_task_reservations "
                    "        WHERE root = %s AND expires > now())",
                    (root, root),
                )
            else:
                cur.execute(
                    "SELECT (SELECT coalesce(sum(cost_usd), 0) FROM gateway_ledger "
                    "        WHERE task = %s) "
                    "     + (SELECT coalesce(sum(amount), 0) FROM gateway_task_reservations "
                    "        WHERE task = %s AND expires > now())",
                    (scope, scope),
                )
            spent = float(cur.fetchone()[0])
            if spent >= budget:
                conn.commit()
                return Refusal(scope, spent, budget, task), False
        cur.execute(
            "INSERT INTO gateway_task_reservations (id, task, root, amount, expires) "
            "VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s)) "
            "ON CONFLICT (id) DO NOTHING",
            (call_id, task, root, max(amount, 0.0), ttl_seconds),
        )
    conn.commit()
    return None, True


def settle(conn: Any, call_id: str, cost: float) -> None:
    """The call ended: it holds its real cost until its rows reach the ledger."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE gateway_task_reservations SET amount = %s WHERE id = %s",
            (max(cost, 0.0), call_id),
        )
    conn.commit()


def release_moved(cur: Any, request_ids: list[str]) -> None:
    """In the flush's transaction: the calls whose rows it inserts are counted by
    them now; and reservations long expired are dropped."""
    if request_ids:
        cur.execute("DELETE FROM gateway_task_reservations WHERE id = ANY(%s)", (request_ids,))
    cur.execute("DELETE FROM gateway_task_reservations WHERE expires < now() - interval '1 hour'")
