"""LiteLLM's callback arguments -> ledger rows (gateway/events.py), as the ledger records them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from tests.unit.litellm_proxy.gateway.ledgers import (
    UpstreamError,
    failed_attempt,
    make_ledger,
    read_own,
    run,
    success_kwargs,
)


def test_a_success_row_records_what_answered_and_what_it_cost(tmp_path: Path) -> None:
    deployment = SimpleNamespace(litellm_params=SimpleNamespace(api_base="http://emulator:8080/v1"))
    router = SimpleNamespace(get_deployment=lambda model_id: deployment)
    ledger = make_ledger(tmp_path, router=lambda: router)
    run(ledger.async_log_success_event(success_kwargs(cost=4.05e-06), None, None, None))
    (row,) = read_own(ledger)
    assert row["task"] == "12.3"
    assert row["consumer"] == "master"
    assert row["alias"] == "cheap"
    assert row["model_group"] == "cheap"
    assert row["deployment_id"] == "dep-mini"
    assert row["model"] == "openai/gpt-4o-mini"
    assert row["provider"] == "openai"
    assert row["api_base"] == "http://emulator:8080/v1"
    assert (row["input_tokens"], row["output_tokens"]) == (3, 6)
    assert row["cost_usd"] == 4.05e-06
    assert row["status"] == "success"
    assert row["latency_ms"] == 250.0
    assert (row["retries"], row["fallbacks"]) == (1, 1)
    assert ledger.spend.of_root("12") == 4.05e-06


def test_an_api_base_never_keeps_a_query_string(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    run(ledger.async_log_success_event(success_kwargs(), None, None, None))
    (row,) = read_own(ledger)
    assert row["api_base"] == "http://emulator:8080/v1/chat/completions"


def test_every_failed_attempt_is_a_row_attributed_to_its_deployment(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    for retry in range(3):
        run(
            ledger.async_post_call_failure_deployment_hook(
                failed_attempt(retry=retry), UpstreamError("boom"), "acompletion", None
            )
        )
    # LiteLLM's request-level failure event for the same request carries the
    # deployment of the first attempt: already recorded, not a fourth row.
    request_level = {
        "standard_logging_object": {"litellm_call_id": "call-f", "model_id": "dep-ollama"}
    }
    run(ledger.async_log_failure_event(request_level, None, None, None))
    rows = read_own(ledger)
    assert [r["retries"] for r in rows] == [0, 1, 2]
    for row in rows:
        assert row["status"] == "failure"
        assert row["http_status"] == 500
        assert row["deployment_id"] == "dep-ollama"
        assert row["provider"] == "ollama"
        assert row["api_base"] == "http://ollama:11434"
        assert row["consumer"] == "laptop"
        assert row["task"] == "7"
        assert row["latency_ms"] == 250.0
        assert row["error"].startswith("UpstreamError: boom")


def test_keys_an_upstream_quotes_in_its_error_are_not_recorded(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    error = UpstreamError(
        "POST https://gemini/v1beta/models/x:generateContent?alt=sse&key=AIzaSecret123 failed; "
        "Authorization: Bearer sk-live-0123456789abcdef"
    )
    run(ledger.async_post_call_failure_deployment_hook(failed_attempt(), error, "acompletion"))
    (row,) = read_own(ledger)
    assert "AIzaSecret123" not in row["error"]
    assert "0123456789abcdef" not in row["error"]
    assert "key=***" in row["error"]


def test_a_task_key_quoted_in_an_error_is_not_recorded_in_part_either() -> None:
    from gateway import taskkeys
    from gateway.events import redact

    key = taskkeys.mint("sk-ha-" + "h" * 30, "12", 2_000_000_000)
    signature = key.split(".")[1]
    for text in (f"invalid key {key} given", f"Authorization: Bearer {key}"):
        assert signature not in redact(text) and key.split(".")[0] not in redact(text)


def test_a_fallback_hop_records_its_depth(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    run(
        ledger.async_post_call_failure_deployment_hook(
            failed_attempt(), UpstreamError("x"), "acompletion", fallback_depth=1
        )
    )
    assert read_own(ledger)[0]["fallbacks"] == 1


def test_text_a_client_chose_is_cleaned_for_postgres() -> None:
    from gateway import events

    row = events.new_row(alias="x\u0000y", model="z\ud800", error="e" * 2000)
    assert row["alias"] == "x\ufffdy"
    assert row["model"].encode("utf-8")
    assert len(row["error"]) == events.TEXT_LIMIT
    assert row["input_tokens"] == 0
