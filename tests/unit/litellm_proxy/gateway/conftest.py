"""The gateway package imported by name, as LiteLLM imports it, and the fixtures its tests share.

Importing a module of the package creates nothing (the ledger is made by
``gateway.litellm_entry`` on first access, from the environment): the
environment a test's ledger needs is set by the ``ledger_env`` fixture.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.litellm_proxy.gateway.postgres import Postgres, postgres_image

FILES = Path(__file__).resolve().parents[4] / "roles/litellm_proxy/files"
if str(FILES) not in sys.path:
    sys.path.insert(0, str(FILES))


@pytest.fixture
def ledger_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """What a ledger made from the environment needs here: a spool of its own, no database."""
    spool = tmp_path / "ledger-spool"
    monkeypatch.setenv("GATEWAY_LEDGER_SPOOL", str(spool))
    monkeypatch.setenv("GATEWAY_LEDGER_DSN", "")
    return spool


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    pytest.importorskip("psycopg")
    image = postgres_image()
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
    """The throwaway Postgres with the ledger's tables, empty: whichever test runs first."""
    from gateway.store import Store

    store = Store(postgres.dsn)
    with contextlib.closing(store.connect()) as conn:
        store.ensure_schema(conn)
    postgres.query("TRUNCATE gateway_ledger, gateway_task_budgets, gateway_task_reservations")
    return postgres
