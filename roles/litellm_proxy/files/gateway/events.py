"""LiteLLM's callback arguments -> cost ledger rows: what changes with a LiteLLM release.

The shapes read here are those LiteLLM gives its callbacks (1.106 to 1.108: the
``standard_logging_object``, ``litellm_params`` and the request data of the
deployment failure hook). One row per outcome of an attempt:

* ``success``: LiteLLM's success event, for the deployment that answered, with
  LiteLLM's own ``response_cost`` (tokens times the prices in the config), tokens,
  latency and the retries and fallbacks LiteLLM reports for the request.
* ``failure``: every failed attempt (first try, each retry, each fallback hop),
  from ``async_post_call_failure_deployment_hook``, attributed to the deployment
  that failed. LiteLLM's request-level failure event fires only once per request
  (behind a dedup gate), so it is used only for a failure that never reached a
  deployment (unknown model, no healthy deployment).
* ``refused``: a request the budget check turned away before any upstream
  (made by :mod:`gateway.ledger` with :func:`new_row`).

The task comes from the request's tags (:mod:`gateway.tasks`). The consumer is
the key's alias or user, else ``master``. An API base is kept without query
string or credentials, and an upstream's error text without the keys it quotes.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.tasks import task_from_tags

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


def strip_query(url: str | None) -> str | None:
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


def to_float(value: Any) -> float:
    """A finite float, or 0.0 for anything else (None, "", NaN, text)."""
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def consumer_of(metadata: Mapping[str, Any]) -> str:
    """The key's alias, else its user, else `master`."""
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
    (re.compile(r"\bsk-[A-Za-z0-9._-]{8,}"), "sk-***"),  # a task key has a dot
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


def tags_of(holder: Mapping[str, Any]) -> list[Any]:
    """The request's tags: in `metadata`, `litellm_metadata` or the body's `tags`."""
    tags: list[Any] = []
    for meta_key in ("metadata", "litellm_metadata"):
        meta = holder.get(meta_key)
        if isinstance(meta, Mapping) and isinstance(meta.get("tags"), list):
            tags += meta["tags"]
    if isinstance(holder.get("tags"), list):
        tags += holder["tags"]
    return tags


# What a text column may hold: Postgres refuses NUL in text, and a lone
# surrogate cannot be encoded at all; a client chooses some of these values
# (the model name, tags), so they are cleaned here, and bounded.
TEXT_LIMIT = 500


def clean_text(value: Any) -> Any:
    """A string as Postgres takes it: no NUL, valid UTF-8, at most TEXT_LIMIT
    characters; anything that is not a string is returned as it is."""
    if not isinstance(value, str):
        return value
    text = value.replace("\x00", "\ufffd")
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:TEXT_LIMIT]


def new_row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(id=uuid.uuid4().hex, ts=time.time(), consumer="master", input_tokens=0)
    row.update(output_tokens=0, cost_usd=0.0)
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown ledger fields: {sorted(unknown)}")
    row.update({key: clean_text(value) for key, value in fields.items()})
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
    start, end = to_float(slo.get("startTime")), to_float(slo.get("endTime"))
    latency = (end - start) * 1000 if end and start else to_float(slo.get("response_time")) * 1000
    retries = headers.get("x-litellm-attempted-retries", meta.get("attempted_retries"))
    fallbacks = headers.get("x-litellm-attempted-fallbacks", meta.get("attempted_fallbacks"))
    return new_row(
        ts=end or time.time(),
        request_id=slo.get("litellm_call_id") or kwargs.get("litellm_call_id"),
        task=task_from_tags(slo.get("request_tags") or tags_of(params)),
        consumer=consumer_of(slo.get("metadata") or meta),
        alias=_requested_model(params) or slo.get("model_group"),
        model_group=slo.get("model_group") or meta.get("model_group"),
        deployment_id=deployment,
        model=slo.get("model") or kwargs.get("model"),
        provider=info.get("gateway_provider") or slo.get("custom_llm_provider"),
        api_base=(api_base_of(deployment) if deployment else None)
        or strip_query(slo.get("api_base")),
        input_tokens=_int(slo.get("prompt_tokens")) or 0,
        output_tokens=_int(slo.get("completion_tokens")) or 0,
        cost_usd=to_float(slo.get("response_cost")),
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
        latency = (to_float(windows[-1][1]) - to_float(windows[-1][0])) * 1000
    return new_row(
        ts=now,
        request_id=request_data.get("litellm_call_id"),
        task=task_from_tags(tags_of(request_data)),
        consumer=consumer_of(meta),
        alias=_requested_model(request_data) or meta.get("original_model_group"),
        model_group=meta.get("model_group"),
        deployment_id=deployment,
        model=model,
        provider=provider,
        api_base=(api_base_of(deployment) if deployment else None)
        or strip_query(request_data.get("api_base") or meta.get("api_base")),
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
    start, end = to_float(slo.get("startTime")), to_float(slo.get("endTime"))
    return new_row(
        ts=end or time.time(),
        request_id=slo.get("litellm_call_id") or kwargs.get("litellm_call_id"),
        task=task_from_tags(slo.get("request_tags") or tags_of(params)),
        consumer=consumer_of(slo.get("metadata") or meta),
        alias=_requested_model(params) or slo.get("model_group") or kwargs.get("model"),
        model_group=slo.get("model_group") or None,
        status="failure",
        http_status=_int(getattr(exception, "status_code", None) or info.get("error_code")),
        error=_error_text(exception, slo.get("error_str")),
        latency_ms=round((end - start) * 1000, 3) if end and start else None,
        stream=bool(slo.get("stream")),
        call_type=slo.get("call_type") or kwargs.get("call_type"),
    )
