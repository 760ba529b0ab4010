"""The cost ledger's HTTP API, added to the proxy's own app (proxy-admin key, i.e. the master key).

    GET    /gateway/ledger/status                 spool, database, spend and budgets
    GET    /gateway/ledger/summary[?task=12]      calls, tokens, cost by task/model/provider/status
    GET    /gateway/ledger/rows[?task=&request_id=&limit=]   the rows themselves, newest first
    GET    /gateway/ledger/budgets                budgets from the environment and the table
    PUT    /gateway/ledger/budgets/{task}         body {"budget_usd": 0.5}
    DELETE /gateway/ledger/budgets/{task}

:mod:`gateway.litellm_entry` installs it when the proxy loads the ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.tasks import valid_task

if TYPE_CHECKING:
    from gateway.ledger import CostLedger


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
