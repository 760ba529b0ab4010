"""The module LiteLLM's config names (gateway/litellm_entry.py): what it hands LiteLLM, and when."""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import gateway
import pytest
from fastapi import FastAPI
from gateway.auth import user_api_key_auth
from gateway.cooldown import CooldownOnConnectionError
from gateway.ledger import CostLedger
from litellm.proxy.types_utils.utils import get_instance_fn

from tests.unit.litellm_proxy.gateway.conftest import FILES

ENTRY = "gateway.litellm_entry"


@pytest.fixture
def entry() -> Iterator[ModuleType]:
    """gateway.litellm_entry as a new worker process imports it: nothing made yet."""
    saved = sys.modules.pop(ENTRY, None)
    fresh = importlib.import_module(ENTRY)
    try:
        yield fresh
    finally:
        if saved is None:
            sys.modules.pop(ENTRY, None)
        else:
            sys.modules[ENTRY] = saved
            gateway.litellm_entry = saved  # type: ignore[attr-defined]


@pytest.fixture
def outside_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "litellm.proxy.proxy_server", raising=False)


IMPORTS = f"""
import sys, threading
sys.path.insert(0, {str(FILES)!r})
import gateway, gateway.tasks, gateway.events, gateway.budgets, gateway.spool, gateway.store
import gateway.metrics, gateway.ratelimit, gateway.api, gateway.litellm_entry
heavy = sorted(m for m in sys.modules if m.split(".")[0] in
               ("litellm", "fastapi", "psycopg", "prometheus_client"))
assert not heavy, heavy
assert threading.active_count() == 1, threading.enumerate()
import fastapi, litellm.integrations.custom_logger, litellm.proxy._types
before = threading.active_count()
import gateway.auth, gateway.cooldown, gateway.ledger
assert threading.active_count() == before, threading.enumerate()
made = {{"ledger", "cooldown_hook", "user_api_key_auth"}} & set(vars(gateway.litellm_entry))
assert not made, made
print("nothing made")
"""


def test_importing_the_package_makes_nothing_and_starts_no_thread() -> None:
    """Only the modules that talk to LiteLLM import it, and none starts anything."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS],
        capture_output=True,
        text=True,
        check=False,
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nothing made"


@pytest.mark.usefixtures("outside_the_proxy")
def test_the_names_in_the_config_resolve_through_litellms_loader(
    entry: ModuleType, ledger_env: Path, tmp_path: Path
) -> None:
    """As the proxy loads them: no gateway/litellm_entry.py beside the config, so by name."""
    config = str(tmp_path / "config.yaml")
    names = (entry.CUSTOM_AUTH, entry.COOLDOWN_CALLBACK, entry.LEDGER_CALLBACK)
    assert names == tuple(f"{ENTRY}.{n}" for n in ("user_api_key_auth", "cooldown_hook", "ledger"))
    auth_hook, cooldown_hook, ledger = (get_instance_fn(n, config_file_path=config) for n in names)
    assert auth_hook is user_api_key_auth
    assert isinstance(cooldown_hook, CooldownOnConnectionError)
    assert isinstance(ledger, CostLedger)
    assert ledger.settings.spool == ledger_env  # the environment of its making, not of import
    assert ledger._worker is None  # outside the proxy nothing starts
    again = [get_instance_fn(n, config_file_path=config) for n in names]
    assert again == [auth_hook, cooldown_hook, ledger]  # each one made once
    assert entry.ledger is ledger
    assert {"ledger", "cooldown_hook", "user_api_key_auth"} <= set(dir(entry))


def test_an_unknown_name_is_refused(entry: ModuleType) -> None:
    assert not hasattr(entry, "nope")
    with pytest.raises(AttributeError, match="nope"):
        get_instance_fn(f"{ENTRY}.nope", config_file_path="/app/config.yaml")


@pytest.mark.usefixtures("outside_the_proxy", "ledger_env")
def test_threads_asking_at_once_get_one_ledger(
    entry: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[CostLedger] = []

    class SlowLedger(CostLedger):
        def __init__(self) -> None:
            time.sleep(0.05)  # long enough for the others to ask meanwhile
            super().__init__()
            made.append(self)

    monkeypatch.setattr("gateway.ledger.CostLedger", SlowLedger)
    barrier = threading.Barrier(8)
    seen: list[object] = []

    def ask() -> None:
        barrier.wait()
        seen.append(entry.ledger)

    askers = [threading.Thread(target=ask) for _ in range(8)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(10)
    assert len(made) == 1
    assert seen == made * 8


@pytest.mark.usefixtures("ledger_env")
def test_the_ledger_made_inside_the_proxy_serves_its_api_and_starts_its_worker(
    entry: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_server = ModuleType("litellm.proxy.proxy_server")
    proxy_server.app = FastAPI()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "litellm.proxy.proxy_server", proxy_server)
    ledger = entry.ledger
    try:
        app = proxy_server.app  # type: ignore[attr-defined]
        assert app.state.gateway_ledger is ledger
        assert "/gateway/ledger/status" in app.openapi()["paths"]
        assert ledger._worker is not None and ledger._worker.is_alive()
    finally:
        ledger.close()
        if ledger._worker is not None:
            ledger._worker.join(5)
