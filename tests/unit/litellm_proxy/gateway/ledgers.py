"""Ledgers for tests, and the events LiteLLM feeds them.

The events have the shape LiteLLM 1.106 gives its callbacks (taken from a proxy
run against the provider emulator).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from gateway.ledger import CostLedger, Settings


def make_ledger(spool: Path, dsn: str = "", budgets: dict | None = None, **kw: Any) -> CostLedger:
    """A ledger whose worker runs only when a test starts it (or calls flush_once)."""
    settings = Settings(dsn=dsn, spool=spool, budgets=budgets or {}, flush_seconds=0.2)
    router = kw.pop("router", lambda: None)
    return CostLedger(settings=settings, router_getter=router, autostart=False, **kw)


def success_kwargs(
    task: str | None = "12.3",
    cost: float = 4.05e-06,
    call_id: str | None = None,
    deployment: str = "dep-mini",
) -> dict[str, Any]:
    call_id = call_id or str(uuid.uuid4())
    tags = [f"task:{task}"] if task else []
    return {
        "litellm_call_id": call_id,
        "standard_logging_object": {
            "id": f"chatcmpl-{call_id}",
            "litellm_call_id": call_id,
            "call_type": "acompletion",
            "stream": False,
            "response_cost": cost,
            "status": "success",
            "custom_llm_provider": "openai",
            "prompt_tokens": 3,
            "completion_tokens": 6,
            "model": "openai/gpt-4o-mini",
            "model_id": deployment,
            "model_group": "cheap",
            "api_base": "http://emulator:8080/v1/chat/completions?key=secret",
            "request_tags": [*tags, "User-Agent: ai/5.0"],
            "startTime": 1000.0,
            "endTime": 1000.25,
            "metadata": {"user_api_key_alias": None, "user_api_key_user_id": None},
            "hidden_params": {
                "additional_headers": {
                    "x-litellm-attempted-retries": 1,
                    "x-litellm-attempted-fallbacks": 1,
                }
            },
        },
        "litellm_params": {
            "metadata": {"model_info": {"id": deployment, "gateway_provider": "openai"}},
            "proxy_server_request": {"body": {"model": "cheap"}},
        },
    }


def failed_attempt(task: str = "7", retry: int = 0, call_id: str = "call-f") -> dict[str, Any]:
    return {
        "model": "ollama_chat/llama3.2:1b",
        "api_base": "http://ollama:11434",
        "litellm_call_id": call_id,
        "stream": False,
        "proxy_server_request": {"body": {"model": "cheap"}},
        "model_info": {"id": "dep-ollama", "gateway_provider": "ollama"},
        "metadata": {
            "tags": [f"task:{task}"],
            "model_group": "cheap",
            "attempted_retries": retry,
            "user_api_key_alias": "laptop",
            "llm_api_timing_windows": [[10.0, 10.5], [11.0, 11.25]],
        },
    }


class UpstreamError(Exception):
    status_code = 500


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def read_own(ledger: Any) -> list[dict[str, Any]]:
    """Every row in the ledger's spool (closing the segment it writes)."""
    ledger.spool.rotate()
    rows = []
    for path in ledger.spool.segments():
        with ledger.spool.claim(path) as found:
            rows += found or []
    return rows


def wait_for(check: Any, what: str, deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline_s}s")
        time.sleep(0.2)
