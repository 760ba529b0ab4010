"""The cost ledger's HTTP API (gateway/api.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import Request
from gateway.api import install_routes

from tests.unit.litellm_proxy.gateway.ledgers import make_ledger


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
    install_routes(app, fake_auth, lambda: ledger)
    routes = len(app.routes)
    install_routes(app, fake_auth, lambda: ledger)  # a second load adds nothing
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
