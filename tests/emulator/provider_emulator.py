#!/usr/bin/env python3
"""Deterministic stand-in for the cloud LLM APIs and for the Ollama server (lab use only).

One HTTP server (standard library only) that answers like OpenAI, Anthropic, Google Gemini and
Ollama, with deterministic replies and token counts, plus a control API that lets tests make any
provider fail on purpose and a log of every request it received.

Command line
------------
    provider_emulator.py [--listen ADDR] [--port N] [--ollama-models a,b] [--quiet]
        All four providers on one port (default 127.0.0.1:8080).  The Ollama model list starts
        with the (normalized) names of --ollama-models and lives in memory only.
    provider_emulator.py ollama serve
        Stand-in for the ``ollama`` binary (a wrapper named ``ollama`` execs this script with
        ``ollama "$@"``).  Binds to $OLLAMA_HOST (``host``, ``host:port``, ``:port`` or
        ``http://host:port``; default 127.0.0.1:11434) and persists the pulled models in
        ``$OLLAMA_MODELS/emulator-models.json`` ($OLLAMA_MODELS defaults to ~/.ollama/models), so
        that a restart keeps them.  All providers are served, as in the plain mode.  Requests
        are logged to stderr unless $EMULATOR_QUIET is set (to anything but 0/false).
    provider_emulator.py ollama --version | -v
        Prints ``ollama version is X``: X is $EMULATOR_OLLAMA_VERSION, else the content of a file
        ``VERSION`` next to this script, else ``0.0.0-emulator``.  /api/version reports the same.
    provider_emulator.py ollama pull NAME | list | ls | rm NAME...
        Minimal clients of a running ``ollama serve`` at $OLLAMA_HOST, like the real CLI.

Endpoints (a request is attributed to a provider by its path)
--------------------------------------------------------------
openai (auth: ``Authorization: Bearer <non-empty>``, else 401 in OpenAI's error format)
    POST /v1/chat/completions   plain, or ``"stream": true`` as SSE ``data: {chunk}`` events ended
                                by ``data: [DONE]``; with ``stream_options.include_usage`` a last
                                chunk with empty ``choices`` carries ``usage``.  Structured
                                calls (see "Structured answers"): a tool call -> ``tool_calls``
                                with finish_reason ``tool_calls`` (streamed as ``arguments``
                                pieces); ``response_format`` json_schema/json_object -> JSON
                                content
    POST /v1/embeddings         ``input``: a string or a list of strings -> one vector each
                                (``encoding_format: "base64"`` gives little-endian float32 base64)
    GET  /v1/models             a fixed model list (management endpoint)
    The same three paths are also accepted without the ``/v1`` prefix.
anthropic (auth: non-empty ``x-api-key`` or ``Authorization: Bearer``, else 401)
    POST /v1/messages           plain, or ``"stream": true`` as SSE ``event: X`` / ``data: {...}``:
                                message_start, content_block_start, one content_block_delta
                                (text_delta) per word, content_block_stop, message_delta
                                (stop_reason, usage.output_tokens), message_stop.  With
                                ``tool_choice`` ``{"type": "tool", "name": X}`` (or ``"any"``:
                                the first tool) one ``tool_use`` block whose ``input`` fits X's
                                ``input_schema``, stop_reason ``tool_use``; streamed as
                                ``input_json_delta`` pieces
gemini (auth: ``?key=`` or ``x-goog-api-key``, else 403 PERMISSION_DENIED in Google's format)
    POST /v1beta/models/{model}:generateContent
    POST /v1beta/models/{model}:streamGenerateContent   ``?alt=sse`` -> SSE ``data: {...}`` events,
                                without it one JSON array of the same chunks
    POST /v1beta/models/{model}:embedContent            -> ``embedding.values``
    POST /v1beta/models/{model}:batchEmbedContents      -> ``embeddings[].values``
    The same under /v1/models/... and /v1alpha/models/...; ``{model}`` may carry a ``models/``
    prefix.  The answers' ``modelVersion`` echoes the model.
ollama (no auth)
    GET    /                    ``Ollama is running`` (HEAD too)
    GET    /api/version         ``{"version": X}``
    GET    /api/tags            pulled models (name, model, modified_at, size, digest, details)
    POST   /api/show            ``{"model"|"name"}`` -> details, model_info (general.architecture,
                                <arch>.context_length, ...), capabilities (["embedding"] for names
                                containing "embed", else ["completion"]); 404 if not pulled
    POST   /api/pull            ``{"model"|"name", "stream": true}`` -> NDJSON progress
                                (pulling manifest, pulling <digest> x3, verifying sha256 digest,
                                writing manifest, success); ``"stream": false`` -> one
                                ``{"status": "success"}``.  Names starting with ``missing`` fail
                                with 500 ``{"error": "pull model manifest: file does not
                                exist"}`` (whatever ``stream`` says)
    DELETE /api/delete          ``{"model"|"name"}`` -> 200 with an empty body; 404
                                ``{"error": "model 'x' not found"}`` if absent
    POST   /api/chat            NDJSON ``message`` chunks then a final ``done: true`` object with
                                done_reason, prompt_eval_count, eval_count, durations (stream is the
                                default); ``"stream": false`` -> one JSON object
    POST   /api/generate        the same with ``response`` instead of ``message``
    POST   /api/embed           ``input`` string or list -> ``embeddings``
    POST   /api/embeddings      legacy: ``prompt`` -> ``embedding``
    Model names are normalized like Ollama (no tag -> ``:latest``).  chat/generate/embed/
    embeddings/show for a model that is not pulled -> 404
    ``{"error": "model \\"x\\" not found, try pulling it first"}``.
Errors: malformed JSON -> 400 in the provider's error format; unknown path -> 404.

Control API (same server, no auth, not recorded)
------------------------------------------------
    PUT    /_control/<provider>  body ``{"mode": M, "status": 500, "latency_ms": 0,
                                 "prompt_tokens": 0}``; omitted fields take these defaults
                                 (``{"mode": "ok"}`` resets latency). ``prompt_tokens`` > 0 is
                                 the prompt's token count every answer reports in its usage
                                 (an upstream whose usage is absurd), instead of the words.
                                 -> 200 with the new state; unknown provider 404; bad body 400.
    GET    /_control/<provider>  that provider's state; GET /_control -> every provider's state
    DELETE /_control             resets every provider to ``ok``
    GET    /_requests            recorded requests, oldest first; filters ``?provider=`` and
                                 ``?since=<epoch float>`` (time >= since).  Each entry: provider,
                                 model, path (no query string), method, time, stream, status (null
                                 while unanswered, dropped or timed out), mode, user_agent, key_hint
                                 (last 4 chars of the API key or null), prompt_tokens,
                                 completion_tokens (null unless answered successfully), headers
                                 (the request's ``x-*`` headers, lowercased, without x-api-key and
                                 x-goog-api-key), body_keys (sorted top-level JSON keys).
                                 At most 10000 entries are kept (oldest dropped).
    DELETE /_requests            clears the log -> ``{"cleared": N}``
    GET    /_health              ``{"status": "ok"}``
    Modes (``<provider>`` is openai, anthropic, gemini or ollama):
      ok          answer normally after latency_ms (streams: before the first byte)
      error       answer ``status`` with a body in the provider's error format
      rate_limit  429 with ``retry-after: 1`` and the provider's error body
      timeout     hold the request, answering nothing, until the mode changes or 300 s pass (or
                  the client goes away), then close the connection without a response
      down        read the request, then close the connection without writing anything
    Modes apply to the model-serving endpoints (chat/completions, embeddings, messages, Gemini
    model actions, /api/show, /api/chat, /api/generate, /api/embed, /api/embeddings).  The
    management endpoints (/v1/models, /, /api/version, /api/tags, /api/pull, /api/delete) always
    answer, except in ``down`` mode where they are dropped too.  Every request to an API
    endpoint is recorded when it arrives, so dropped and held requests show up as well.

Structured answers
------------------
    The value is built from a JSON Schema by ``schema_instance``: objects get every property,
    strings ``emulated <property>`` (`` <n>`` for the n-th array item; padded to minLength, fixed
    values for formats such as date-time or email), numbers their lower bound (else 1) plus the
    array index, booleans true, enums/const their first value, anyOf/oneOf the first non-null
    branch, ``$ref`` into ``$defs``/``definitions``; arrays of objects get max(minItems, 1) items,
    other arrays minItems.  OpenAI chat completions pick, in this order:
      tool call       ``tool_choice`` naming a function, ``"required"`` (the first tool), or no
                      choice/``"auto"`` with exactly one tool while the last message is not a
                      tool result; the arguments fit the function's ``parameters``
      json_schema     ``response_format.json_schema.schema`` -> content fitting it
      json_object     no schema: the shape is read from the prompt (an example object such as
                      ``{"title": "string", "ids": [array of numbers]}`` or a ``- name: ...``
                      field list, placed in ``a "tasks" property containing an array`` when a
                      text says so), else ``{"reply": "<the fixed reply>"}``.  This is what
                      Task Master sends through the openai-compatible provider.
    Gemini answers JSON when ``generationConfig.responseMimeType`` is application/json (what
    LiteLLM sends for a json_object or json_schema response_format): an instance of
    ``responseJsonSchema`` or ``responseSchema`` (OpenAPI types), else of the prompt's shape.
    Ollama ``format`` is not honoured (it gets the fixed reply).

Deterministic token rule
------------------------
    prompt tokens     = number of whitespace-separated words (``str.split``) in all input text of
                        the request: every message's content (string or list of text parts),
                        Anthropic's ``system``, Gemini ``contents[].parts[].text`` and
                        ``systemInstruction``, Ollama ``prompt`` and ``system``, embedding inputs.
    reply             = ``emulated reply from <provider> model <model>`` (model as requested)
    completion tokens = words in the reply: 6 for a model name without spaces (0 for embeddings);
                        for a structured answer, words in its JSON text (the content or the tool
                        call's arguments).
    Streams send the reply word by word, each word with its following space, so the concatenated
    deltas equal the plain reply.  Embeddings have EMBEDDING_DIM = 16 floats in [-1, 1] derived
    from the sha256 of the input text.  Usage is where each API puts it: OpenAI ``usage``,
    Anthropic ``usage.input_tokens/output_tokens``, Gemini ``usageMetadata`` (in the last stream
    chunk), Ollama ``prompt_eval_count/eval_count``.  Response ids are unique.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import math
import os
import re
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

EMBEDDING_DIM = 16
PROVIDERS = ("openai", "anthropic", "gemini", "ollama")
MODES = ("ok", "error", "rate_limit", "timeout", "down")
DEFAULT_ERROR_STATUS = 500
MAX_RECORDS = 10000
TIMEOUT_HOLD_S = 300.0
POLL_INTERVAL_S = 0.1
DEFAULT_OLLAMA_VERSION = "0.0.0-emulator"
DEFAULT_OLLAMA_PORT = 11434
MODELS_FILE_NAME = "emulator-models.json"
OPENAI_MODELS = ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "text-embedding-3-large")
SYSTEM_FINGERPRINT = "fp_emulator"
AUTH_PROVIDERS = ("openai", "anthropic", "gemini")

JSONDict = dict[str, Any]


# --------------------------------------------------------------------------- deterministic helpers


def count_words(texts: Iterable[str]) -> int:
    """Token rule: the number of whitespace-separated words in all the texts."""
    return sum(len(text.split()) for text in texts)


def reply_text(provider: str, model: str) -> str:
    return f"emulated reply from {provider} model {model}"


def reply_pieces(text: str) -> list[str]:
    """The reply word by word, each word keeping its following whitespace."""
    return re.findall(r"\S+\s*", text)


def embedding_for(text: str) -> list[float]:
    """EMBEDDING_DIM floats in [-1, 1], two bytes of sha256(text) each."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [
        round(int.from_bytes(digest[2 * i : 2 * i + 2], "big") / 32767.5 - 1.0, 6)
        for i in range(EMBEDDING_DIM)
    ]


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:length]


def iso_now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def content_texts(content: Any) -> list[str]:
    """Text of a message content: a string, a text part, or a list of them (nested too)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            texts.extend(content_texts(part))
        return texts
    if isinstance(content, dict):
        text = content.get("text")
        if isinstance(text, str):
            return [text]
        if "content" in content:  # e.g. Anthropic tool_result blocks
            return content_texts(content["content"])
    return []


def messages_texts(messages: Any) -> list[str]:
    if not isinstance(messages, list):
        return []
    texts: list[str] = []
    for message in messages:
        if isinstance(message, dict):
            texts.extend(content_texts(message.get("content")))
    return texts


def gemini_texts(content: Any) -> list[str]:
    """Text of Gemini Content objects: ``{"parts": [{"text": ...}]}``, lists of them, strings."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        texts: list[str] = []
        for item in content:
            texts.extend(gemini_texts(item))
        return texts
    if isinstance(content, dict):
        parts = content.get("parts")
        if isinstance(parts, list):
            return [
                part["text"]
                for part in parts
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            ]
        if isinstance(content.get("text"), str):
            return [content["text"]]
    return []


def input_list(value: Any) -> list[str]:
    """Embedding inputs: a string or a list; non-string items are JSON-encoded."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(item, int) for item in value):
            return [json.dumps(value)]  # one pre-tokenized input
        return [item if isinstance(item, str) else json.dumps(item) for item in value]
    return []


def prompt_texts(provider: str, kind: str, body: JSONDict) -> list[str]:
    if provider == "openai":
        if kind == "chat":
            return messages_texts(body.get("messages"))
        return input_list(body.get("input"))
    if provider == "anthropic":
        return content_texts(body.get("system")) + messages_texts(body.get("messages"))
    if provider == "gemini":
        if kind == "embedContent":
            return gemini_texts(body.get("content"))
        if kind == "batchEmbedContents":
            requests = body.get("requests")
            if not isinstance(requests, list):
                return []
            return [
                text
                for request in requests
                if isinstance(request, dict)
                for text in gemini_texts(request.get("content"))
            ]
        system = body.get("systemInstruction", body.get("system_instruction"))
        return gemini_texts(system) + gemini_texts(body.get("contents"))
    # ollama
    if kind == "chat":
        return messages_texts(body.get("messages"))
    if kind == "generate":
        return [v for v in (body.get("system"), body.get("prompt")) if isinstance(v, str)]
    if kind == "embed":
        return input_list(body.get("input"))
    if kind == "embeddings":
        prompt = body.get("prompt")
        return [prompt] if isinstance(prompt, str) else []
    return []


# ---------------------------------------------------------------------------- structured answers

MAX_SCHEMA_DEPTH = 8  # deeper than this, arrays get only their minItems items (recursive schemas)
STRING_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "email": "emulated@example.com",
    "uri": "https://example.com/emulated",
    "url": "https://example.com/emulated",
    "hostname": "emulated.example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


@dataclass(frozen=True)
class Reply:
    """What a chat answer carries: plain text or JSON content, or one tool call."""

    text: str  # the message content, or the tool call's arguments (JSON text)
    tool: str | None = None  # name of the called tool (function), None for content
    tool_input: Any = None  # the arguments as a value (Anthropic's ``input``)


def resolve_ref(ref: str, root: Any) -> Any:
    """A local ``$ref`` (``#/$defs/X``, ``#/definitions/X``, any JSON pointer); {} if dangling."""
    if not ref.startswith("#"):
        return {}
    node = root
    for token in ref[1:].split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return {}
    return node


def string_instance(schema: JSONDict, name: str, index: int) -> str:
    """``emulated <name>`` (`` <n>`` for the n-th array item), padded to minLength, cut to
    maxLength; known formats get a fixed valid value.  ``pattern`` is not honoured."""
    fixed = STRING_FORMATS.get(str(schema.get("format")))
    if fixed is not None:
        return fixed
    text = f"emulated {name}" + (f" {index + 1}" if index else "")
    min_length = schema.get("minLength")
    if isinstance(min_length, int):
        while len(text) < min_length:
            text += " emulated"
    max_length = schema.get("maxLength")
    if isinstance(max_length, int) and len(text) > max_length:
        text = text[:max_length]
    return text


def number_instance(schema: JSONDict, index: int, integer: bool) -> int | float:
    """The lowest allowed value (1 without a lower bound) plus the array index, within maximum."""
    low: int | float = 1
    minimum, exclusive = schema.get("minimum"), schema.get("exclusiveMinimum")
    if isinstance(minimum, (int, float)):
        low = math.ceil(minimum) if integer else minimum
    elif isinstance(exclusive, (int, float)):
        low = math.floor(exclusive) + 1
    value = low + index
    maximum, exclusive = schema.get("maximum"), schema.get("exclusiveMaximum")
    if isinstance(maximum, (int, float)):
        value = min(value, math.floor(maximum) if integer else maximum)
    if isinstance(exclusive, (int, float)):
        value = min(value, math.ceil(exclusive) - 1)
    return value


def schema_type(schema: JSONDict) -> str:
    """The type to generate: the first non-null one, else guessed from the keywords."""
    declared = schema.get("type")
    types = declared if isinstance(declared, list) else [declared] if declared else []
    for candidate in types:
        if candidate != "null":
            return str(candidate)
    if types:
        return "null"
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def schema_instance(
    schema: Any, root: Any = None, name: str = "value", index: int = 0, depth: int = 0
) -> Any:
    """A deterministic value that validates against the JSON Schema ``schema``.

    Objects get every property; arrays of objects get max(minItems, 1) items and other arrays
    minItems items (an invented id in a list of references usually points at nothing); the
    first branch of anyOf/oneOf (first non-null one); allOf branches are merged.
    """
    if root is None:
        root = schema
    if not isinstance(schema, dict):
        return f"emulated {name}"  # true / {} accept anything
    if depth > 2 * MAX_SCHEMA_DEPTH:
        return None
    if isinstance(schema.get("$ref"), str):
        target = resolve_ref(schema["$ref"], root)
        rest = {key: value for key, value in schema.items() if key != "$ref"}
        merged = {**target, **rest} if isinstance(target, dict) else rest
        return schema_instance(merged, root, name, index, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for keyword in ("anyOf", "oneOf"):
        branches = schema.get(keyword)
        if isinstance(branches, list) and branches:
            non_null = [
                b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")
            ]
            branch = (non_null or branches)[0]
            rest = {key: value for key, value in schema.items() if key != keyword}
            merged = {**rest, **branch} if isinstance(branch, dict) else rest
            return schema_instance(merged, root, name, index, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged = {key: value for key, value in schema.items() if key != "allOf"}
        for branch in schema["allOf"]:
            if isinstance(branch, dict) and isinstance(branch.get("$ref"), str):
                branch = resolve_ref(branch["$ref"], root)
            if isinstance(branch, dict):
                properties = {**merged.get("properties", {}), **branch.get("properties", {})}
                required = [*merged.get("required", []), *branch.get("required", [])]
                merged = {**merged, **branch, "properties": properties, "required": required}
        return schema_instance(merged, root, name, index, depth + 1)
    kind = schema_type(schema)
    if kind == "null":
        return None
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return number_instance(schema, index, kind == "integer")
    if kind == "string":
        return string_instance(schema, name, index)
    if kind == "array":
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            return [
                schema_instance(item, root, name, i, depth + 1) for i, item in enumerate(prefix)
            ]
        min_items = schema.get("minItems")
        count = min_items if isinstance(min_items, int) else 0
        if isinstance(items, dict) and isinstance(items.get("$ref"), str):
            target = resolve_ref(items["$ref"], root)
            item_kind = schema_type(target) if isinstance(target, dict) else "string"
        else:
            item_kind = schema_type(items) if isinstance(items, dict) else "string"
        if item_kind == "object" and depth <= MAX_SCHEMA_DEPTH:
            count = max(count, 1)
        max_items = schema.get("maxItems")
        if isinstance(max_items, int):
            count = min(count, max_items)
        return [schema_instance(items, root, name, i, depth + 1) for i in range(count)]
    # object
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    value = {
        key: schema_instance(sub, root, key, index, depth + 1) for key, sub in properties.items()
    }
    required = schema.get("required")
    for key in required if isinstance(required, list) else []:
        if isinstance(key, str) and key not in value:
            value[key] = f"emulated {key}"
    return value


# JSON mode without a schema (``response_format: {"type": "json_object"}``) leaves the shape to
# the prompt.  Task Master 0.43.1 through openai-compatible does exactly that (the AI SDK drops
# the schema when the provider does not declare structured outputs), so the shape is read from
# the prompt text, in the forms its prompts use:
#   an example object   {"title": "string", "dependencies": [array of numbers]}  (add-task),
#                       {"id": number, "priority": "high" | "low", "ids": number[] (note)}
#                       (parse-prd); // comments are dropped
#   a field list        - id: sequential integers / - title: ... (5-200 characters)  (expand)
# and a phrase such as ``a "subtasks" property containing an array`` puts the object found into
# that array, with ``exactly N <words> subtasks`` items when a text says so.
EXAMPLE_TYPE_NAMES = ("string", "integer", "number", "boolean", "object")
EXAMPLE_LITERAL = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null")
EXAMPLE_WORD = re.compile(r"[A-Za-z_]\w*")
FIELD_LINE = re.compile(r"^[ \t]*[-*][ \t]+`?([A-Za-z_]\w*)`?[ \t]*:[ \t]*(\S.*)$")
ARRAY_WRAPPER = re.compile(
    r"[\"'`](\w+)[\"'`]\s+(?:property|field|key)\s+(?:containing|with|holding)\s+an?\s+"
    r"(?:array|list)",
    re.IGNORECASE,
)


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _type_from_words(text: str) -> JSONDict:
    """A schema from words such as ``array of numbers`` or ``string``."""
    words = text.lower()
    if re.search(r"\bobjects?\b", words):
        return {"type": "object"}
    if re.search(r"\b(?:numbers?|integers?|ids?)\b", words):
        return {"type": "integer"}
    if re.search(r"\bbooleans?\b", words):
        return {"type": "boolean"}
    if re.search(r"\bstrings?\b", words):
        return {"type": "string"}
    return {}


def _example_scalar(value: Any) -> JSONDict:
    """A literal of an example: a type name ("string"), a one-word value ("pending", kept as
    the only choice), or sample data (its type: "Task title goes here" is any string)."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if value is None:
        return {"type": ["string", "null"]}
    text = str(value).strip()
    if text.lower() in EXAMPLE_TYPE_NAMES:
        return {"type": text.lower()}
    if re.fullmatch(r"[\w-]+", text):
        return {"type": "string", "enum": [text]}
    return {"type": "string"}


def _example_value(text: str, i: int) -> tuple[JSONDict, int]:
    """One value of an example, with TypeScript-like suffixes: ``[]``, ``| other``, ``(note)``."""
    schema, i = _example_base(text, i)
    while True:
        j = _skip_space(text, i)
        if text.startswith("[]", j):
            schema, i = {"type": "array", "items": schema}, j + 2
        elif text.startswith("|", j):
            other, i = _example_base(text, j + 1)
            if "enum" in schema and "enum" in other:
                schema = {**schema, "enum": [*schema["enum"], *other["enum"]]}
        elif text.startswith("(", j):
            close = text.find(")", j)
            if close < 0:
                raise ValueError(f"unclosed '(' at {j}")
            i = close + 1
        else:
            return schema, i


def _example_base(text: str, i: int) -> tuple[JSONDict, int]:
    i = _skip_space(text, i)
    if text.startswith("{", i):
        return _example_object(text, i)
    if text.startswith("[", i):
        return _example_array(text, i)
    if text.startswith('"', i):
        value, end = json.JSONDecoder().raw_decode(text, i)
        return _example_scalar(value), end
    match = EXAMPLE_LITERAL.match(text, i)
    if match is not None:
        return _example_scalar(json.loads(match.group(0))), match.end()
    match = EXAMPLE_WORD.match(text, i)
    if match is not None and match.group(0).lower() in EXAMPLE_TYPE_NAMES:
        return {"type": match.group(0).lower()}, match.end()  # a bare type: "id": number
    raise ValueError(f"no example value at {i}")


def _example_array(text: str, i: int) -> tuple[JSONDict, int]:
    i = _skip_space(text, i + 1)
    if text.startswith("]", i):
        return {"type": "array", "items": {}}, i + 1
    try:
        items, i = _example_value(text, i)
    except ValueError:  # free text such as [array of numbers]
        end = text.find("]", i)
        if end < 0:
            raise
        return {"type": "array", "items": _type_from_words(text[i:end])}, end + 1
    while True:  # the other elements only show more of the same
        i = _skip_space(text, i)
        if text.startswith("]", i):
            return {"type": "array", "items": items}, i + 1
        if text.startswith("...", i):
            i += 3
        elif text.startswith(",", i):
            i = _skip_space(text, i + 1)
            if not text.startswith(("...", "]"), i):
                i = _example_value(text, i)[1]
        else:
            raise ValueError(f"unexpected {text[i : i + 1]!r} in an example array")


def _closed_object(properties: JSONDict) -> JSONDict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _example_object(text: str, i: int) -> tuple[JSONDict, int]:
    properties: JSONDict = {}
    i += 1
    while True:
        i = _skip_space(text, i)
        if text.startswith("}", i):
            return _closed_object(properties), i + 1
        if text.startswith("...", i):
            i += 3
            continue
        if text.startswith('"', i):
            key, i = json.JSONDecoder().raw_decode(text, i)
        else:
            match = EXAMPLE_WORD.match(text, i)
            if match is None:
                raise ValueError(f"no example key at {i}")
            key, i = match.group(0), match.end()
        i = _skip_space(text, i)
        if not text.startswith(":", i):
            raise ValueError(f"no ':' after example key at {i}")
        properties[str(key)], i = _example_value(text, i + 1)
        i = _skip_space(text, i)
        if text.startswith(",", i):
            i += 1
        elif not text.startswith("}", i):
            raise ValueError(f"unexpected {text[i : i + 1]!r} in an example object")


def example_schema(text: str) -> JSONDict | None:
    """The schema of the first JSON-like example object in ``text`` (None if there is none)."""
    clean = re.sub(r"(^|[ \t])//[^\n]*", r"\1", text, flags=re.MULTILINE)
    for match in re.finditer(r"\{", clean):
        try:
            schema, _ = _example_object(clean, match.start())
        except ValueError:
            continue
        if schema["properties"]:
            return schema
    return None


def _field_schema(name: str, description: str) -> JSONDict:
    """A field's schema from its description in a prompt's field list."""
    words = description.lower()
    choices = re.findall(r'"([^"]+)"', description)
    if choices and re.search(r"\b(?:must be|one of)\b", words):
        return {"type": "string", "enum": choices}
    if re.search(r"\b(?:array|list)\b", words):
        return {"type": "array", "items": _type_from_words(words) or {"type": "string"}}
    if "integer" in words or "number" in words or name == "id":
        return {"type": "integer", "minimum": 1}
    if "boolean" in words:
        return {"type": "boolean"}
    schema: JSONDict = {"type": "string"}
    span = re.search(r"(\d+)\s*-\s*(\d+)\s+characters", words)
    least = re.search(r"(?:minimum|at least|min\.?)\s+(?:of\s+)?(\d+)\s+characters", words)
    if span:
        schema.update(minLength=int(span.group(1)), maxLength=int(span.group(2)))
    elif least:
        schema["minLength"] = int(least.group(1))
    if "null" in words:
        schema["type"] = ["string", "null"]
    return schema


def field_list_schema(text: str) -> JSONDict | None:
    """The object described by the first ``- name: description`` list after a mention of JSON
    (or of an array property); None without such a list of at least two fields."""
    mention = ARRAY_WRAPPER.search(text) or re.search(r"json", text, re.IGNORECASE)
    if mention is None:
        return None
    properties: JSONDict = {}
    for line in text[mention.end() :].splitlines()[1:]:
        match = FIELD_LINE.match(line)
        if match is None:
            if properties:
                break
            continue
        properties[match.group(1)] = _field_schema(match.group(1), match.group(2))
    return _closed_object(properties) if len(properties) >= 2 else None


def wrapped_schema(item: JSONDict, texts: list[str]) -> JSONDict:
    """``item`` inside the array property that a text names (``a "tasks" property containing
    an array``), unless the item itself has that property; ``item`` without such a phrase."""
    for text in texts:
        for wrapper in ARRAY_WRAPPER.finditer(text):
            name = wrapper.group(1)
            if name in item.get("properties", {}):
                continue
            array: JSONDict = {"type": "array", "items": item}
            pattern = rf"\bexactly\s+(\d+)\s+(?:\w+\s+){{0,3}}?{re.escape(name)}\b"
            for candidate in texts:
                count = re.search(pattern, candidate, re.IGNORECASE)
                if count:
                    array["minItems"] = array["maxItems"] = int(count.group(1))
                    break
            return _closed_object({name: array})
    return item


def prompt_schema(messages: Any) -> JSONDict | None:
    """The JSON shape a prompt asks for: system/developer messages first, then the others."""
    if not isinstance(messages, list):
        return None
    ordered = sorted(
        (m for m in messages if isinstance(m, dict)),
        key=lambda m: m.get("role") not in ("system", "developer"),
    )
    texts = ["\n".join(content_texts(message.get("content"))) for message in ordered]
    for text in texts:
        item = example_schema(text) or field_list_schema(text)
        if item is not None:
            return wrapped_schema(item, texts)
    return None


def _last_role(messages: Any) -> str | None:
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return messages[-1].get("role")
    return None


def openai_reply(body: JSONDict, model: str) -> Reply:
    """The answer to a chat completion: a tool call, JSON content, or the fixed text.

    A tool is called when ``tool_choice`` names it, when it is ``"required"`` (first tool), or
    when it is absent/``"auto"``, there is exactly one tool and the last message is not a tool
    result (so that an agent loop ends).  ``response_format`` json_schema -> an instance of its
    ``schema``; json_object -> an instance of the shape read from the prompt (prompt_schema),
    else ``{"reply": <the fixed text>}``.
    """
    tools = [
        tool["function"]
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict)
    ]
    choice = body.get("tool_choice")
    tool: JSONDict | None = None
    if isinstance(choice, dict):
        function = choice.get("function")
        wanted = function.get("name") if isinstance(function, dict) else None
        tool = next((t for t in tools if t.get("name") == wanted), None)
    else:
        forced = choice == "required"
        only = len(tools) == 1 and choice in (None, "auto")
        if tools and (forced or (only and _last_role(body["messages"]) != "tool")):
            tool = tools[0]
    if tool is not None:
        value = schema_instance(tool.get("parameters") or {"type": "object"})
        return Reply(json.dumps(value), str(tool.get("name", "tool")), value)
    response_format = body.get("response_format")
    fmt: JSONDict = response_format if isinstance(response_format, dict) else {}
    kind = fmt.get("type")
    spec = fmt.get("json_schema")
    if kind == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        return Reply(json.dumps(schema_instance(spec["schema"])))
    if kind in ("json_object", "json_schema"):
        schema = prompt_schema(body["messages"])
        if schema is not None:
            return Reply(json.dumps(schema_instance(schema)))
        return Reply(json.dumps({"reply": reply_text("openai", model)}))
    return Reply(reply_text("openai", model))


def anthropic_reply(body: JSONDict, model: str) -> Reply:
    """The answer to a message: a tool_use for ``tool_choice`` ``{"type": "tool", "name": X}``
    (or ``{"type": "any"}``: the first tool), with an instance of its ``input_schema``; else
    the fixed text."""
    tools = [tool for tool in body.get("tools") or [] if isinstance(tool, dict)]
    choice = body.get("tool_choice")
    tool: JSONDict | None = None
    if isinstance(choice, dict) and choice.get("type") == "tool":
        tool = next((t for t in tools if t.get("name") == choice.get("name")), None)
    elif isinstance(choice, dict) and choice.get("type") == "any" and tools:
        tool = tools[0]
    if tool is None:
        return Reply(reply_text("anthropic", model))
    value = schema_instance(tool.get("input_schema") or {"type": "object"})
    return Reply(json.dumps(value), str(tool.get("name", "tool")), value)


def _openapi_to_json_schema(schema: Any) -> Any:
    """Gemini's responseSchema (OpenAPI subset: upper-case types, ``nullable``) as JSON Schema."""
    if isinstance(schema, list):
        return [_openapi_to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _openapi_to_json_schema(value) for key, value in schema.items()}
    if isinstance(converted.get("type"), str):
        converted["type"] = converted["type"].lower()
    if converted.pop("nullable", False) and isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
    return converted


def gemini_reply(body: JSONDict, model: str) -> str:
    """The text of a generateContent answer: JSON when ``generationConfig.responseMimeType`` is
    application/json (an instance of ``responseJsonSchema``/``responseSchema``, else of the shape
    read from the prompt, as for OpenAI's json_object), else the fixed text.  LiteLLM turns an
    OpenAI ``response_format`` json_object into that MIME type."""
    config = body.get("generationConfig") or body.get("generation_config") or {}
    config = config if isinstance(config, dict) else {}
    mime = config.get("responseMimeType") or config.get("response_mime_type")
    if mime != "application/json":
        return reply_text("gemini", model)
    for key in ("responseJsonSchema", "response_json_schema"):
        if isinstance(config.get(key), dict):
            return json.dumps(schema_instance(config[key]))
    for key in ("responseSchema", "response_schema"):
        if isinstance(config.get(key), dict):
            return json.dumps(schema_instance(_openapi_to_json_schema(config[key])))
    system = body.get("systemInstruction") or body.get("system_instruction")
    messages = [
        {"role": "system", "content": "\n".join(gemini_texts(system))},
        {"role": "user", "content": "\n".join(gemini_texts(body.get("contents")))},
    ]
    schema = prompt_schema(messages)
    if schema is not None:
        return json.dumps(schema_instance(schema))
    return json.dumps({"reply": reply_text("gemini", model)})


# --------------------------------------------------------------------------------- ollama models


def normalize_model_name(name: str) -> str:
    """Ollama's short form: registry and ``library/`` prefixes dropped, ``:latest`` if no tag."""
    name = name.strip()
    for prefix in ("registry.ollama.ai/", "library/"):
        name = name.removeprefix(prefix)
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def model_family(name: str) -> str:
    if "embed" in name.lower():
        return "bert"
    base = name.split(":", 1)[0].rsplit("/", 1)[-1].lower()
    match = re.match(r"[a-z]+", base)
    return match.group(0) if match else "llama"


def model_details(name: str) -> JSONDict:
    family = model_family(name)
    tag = name.rsplit(":", 1)[-1].lower()
    size_match = re.search(r"(\d+(?:\.\d+)?)b\b", tag) or re.search(
        r"(\d+(?:\.\d+)?)b\b", name.lower()
    )
    if "embed" in name.lower():
        parameter_size = "137M"
    else:
        parameter_size = f"{size_match.group(1)}B" if size_match else "7B"
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": parameter_size,
        "quantization_level": "F16" if "embed" in name.lower() else "Q4_K_M",
    }


def new_model_record(name: str) -> JSONDict:
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
    base_size = 274_000_000 if "embed" in name.lower() else 2_000_000_000
    return {
        "modified_at": iso_now(),
        "size": base_size + int(digest[:6], 16),
        "digest": digest,
    }


class OllamaStore:
    """The pulled models, optionally persisted as JSON so that a restart keeps them."""

    def __init__(self, path: Path | None = None, initial: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._path = path
        self._models: dict[str, JSONDict] = {}
        if path is not None:
            self._load(path)
        for name in initial:
            if name.strip():
                normalized = normalize_model_name(name)
                self._models.setdefault(normalized, new_model_record(normalized))

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            print(f"provider-emulator: ignoring unreadable {path}: {exc}", file=sys.stderr)
            return
        models = data.get("models") if isinstance(data, dict) else None
        if isinstance(models, dict):
            for name, record in models.items():
                if isinstance(name, str) and isinstance(record, dict):
                    self._models[name] = {**new_model_record(name), **record}

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(self._path.name + ".tmp")
        tmp.write_text(json.dumps({"models": self._models}, indent=2, sort_keys=True) + "\n")
        tmp.replace(self._path)

    def get(self, name: str) -> JSONDict | None:
        with self._lock:
            record = self._models.get(normalize_model_name(name))
            return dict(record) if record else None

    def add(self, name: str) -> JSONDict:
        normalized = normalize_model_name(name)
        record = new_model_record(normalized)
        with self._lock:
            self._models[normalized] = record
            self._save()
        return dict(record)

    def delete(self, name: str) -> bool:
        with self._lock:
            if self._models.pop(normalize_model_name(name), None) is None:
                return False
            self._save()
            return True

    def tags(self) -> list[JSONDict]:
        with self._lock:
            items = sorted(self._models.items())
        return [
            {
                "name": name,
                "model": name,
                "modified_at": record["modified_at"],
                "size": record["size"],
                "digest": record["digest"],
                "details": model_details(name),
            }
            for name, record in items
        ]


# ---------------------------------------------------------------------------------- shared state


@dataclass(frozen=True)
class ProviderState:
    mode: str = "ok"
    status: int = DEFAULT_ERROR_STATUS
    latency_ms: int = 0
    prompt_tokens: int = 0  # reported in every answer's usage instead of the count; 0: count

    def as_dict(self) -> JSONDict:
        return {
            "mode": self.mode,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "prompt_tokens": self.prompt_tokens,
        }


def read_ollama_version() -> str:
    env = os.environ.get("EMULATOR_OLLAMA_VERSION", "").strip()
    if env:
        return env
    script = Path(__file__)
    for directory in dict.fromkeys((script.absolute().parent, script.resolve().parent)):
        try:
            text = (directory / "VERSION").read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if text:
            return text
    return DEFAULT_OLLAMA_VERSION


class Emulator:
    """Provider states, the request log and the Ollama models, shared by all handler threads."""

    def __init__(
        self,
        *,
        ollama_models: Iterable[str] = (),
        models_file: Path | None = None,
        ollama_version: str | None = None,
        log_requests: bool = False,
    ) -> None:
        self.lock = threading.Lock()
        self.states: dict[str, ProviderState] = {p: ProviderState() for p in PROVIDERS}
        self.records: deque[JSONDict] = deque(maxlen=MAX_RECORDS)
        self.ollama = OllamaStore(models_file, ollama_models)
        self.ollama_version = ollama_version or read_ollama_version()
        self.log_requests = log_requests
        self.held_requests = 0  # requests currently held by the timeout mode

    def state(self, provider: str) -> ProviderState:
        with self.lock:
            return self.states[provider]

    def set_state(self, provider: str, state: ProviderState) -> None:
        with self.lock:
            self.states[provider] = state

    def all_states(self) -> JSONDict:
        with self.lock:
            return {p: s.as_dict() for p, s in self.states.items()}

    def record(self, entry: JSONDict) -> None:
        with self.lock:
            self.records.append(entry)

    def update(self, entry: JSONDict, **fields: Any) -> None:
        with self.lock:
            entry.update(fields)

    def requests(self, provider: str | None = None, since: float | None = None) -> list[JSONDict]:
        with self.lock:
            return [
                {**entry, "headers": dict(entry["headers"]), "body_keys": list(entry["body_keys"])}
                for entry in self.records
                if (provider is None or entry["provider"] == provider)
                and (since is None or entry["time"] >= since)
            ]

    def clear_requests(self) -> int:
        with self.lock:
            count = len(self.records)
            self.records.clear()
            return count

    def held(self, delta: int) -> None:
        with self.lock:
            self.held_requests += delta


# ---------------------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class Route:
    provider: str
    kind: str
    serving: bool  # model-serving endpoint (subject to the control modes)
    model: str | None = None  # model taken from the path (Gemini)


STATIC_ROUTES: dict[tuple[str, str], Route] = {}
for _prefix in ("/v1", ""):
    STATIC_ROUTES[("POST", f"{_prefix}/chat/completions")] = Route("openai", "chat", True)
    STATIC_ROUTES[("POST", f"{_prefix}/embeddings")] = Route("openai", "embeddings", True)
    STATIC_ROUTES[("GET", f"{_prefix}/models")] = Route("openai", "models", False)
STATIC_ROUTES.update(
    {
        ("POST", "/v1/messages"): Route("anthropic", "messages", True),
        ("GET", "/"): Route("ollama", "root", False),
        ("HEAD", "/"): Route("ollama", "root", False),
        ("GET", "/api/version"): Route("ollama", "version", False),
        ("GET", "/api/tags"): Route("ollama", "tags", False),
        ("POST", "/api/pull"): Route("ollama", "pull", False),
        ("DELETE", "/api/delete"): Route("ollama", "delete", False),
        ("POST", "/api/show"): Route("ollama", "show", True),
        ("POST", "/api/chat"): Route("ollama", "chat", True),
        ("POST", "/api/generate"): Route("ollama", "generate", True),
        ("POST", "/api/embed"): Route("ollama", "embed", True),
        ("POST", "/api/embeddings"): Route("ollama", "embeddings", True),
    }
)
GEMINI_PATH = re.compile(
    r"^/(?:v1beta|v1alpha|v1)/models/(?P<model>[^:]+):"
    r"(?P<action>generateContent|streamGenerateContent|embedContent|batchEmbedContents)$"
)


def resolve_route(method: str, path: str) -> Route | None:
    route = STATIC_ROUTES.get((method, path))
    if route is not None:
        return route
    match = GEMINI_PATH.match(path)
    if match and method == "POST":
        model = match.group("model").removeprefix("models/")
        return Route("gemini", match.group("action"), True, model)
    return None


# --------------------------------------------------------------------------------- error formats

OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(provider: str, status: int, message: str) -> JSONDict:
    if provider == "openai":
        error_type, code = OPENAI_ERROR_TYPES.get(status, ("server_error", None))
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    if provider == "anthropic":
        error_type = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": error_type, "message": message}}
    if provider == "gemini":
        google_status = GOOGLE_STATUSES.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")
        return {"error": {"code": status, "message": message, "status": google_status}}
    return {"error": message}


def sse(data: JSONDict, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(data)}\n\n".encode()


def ndjson(data: JSONDict) -> bytes:
    return (json.dumps(data) + "\n").encode()


# ---------------------------------------------------------------------------------------- handler


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, EmulatorHandler)

    def server_bind(self) -> None:
        # Skip HTTPServer.server_bind's getfqdn(): a reverse DNS lookup at startup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # clients hanging up are business as usual here
        super().handle_error(request, client_address)


class EmulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "provider-emulator/1.0"
    sys_version = ""
    timeout = TIMEOUT_HOLD_S + 30  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stalls on keep-alive answers
    server: EmulatorServer

    _entry: JSONDict | None = None

    def version_string(self) -> str:
        return self.server_version

    # ------------------------------------------------------------------ plumbing

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def log_message(self, fmt: str, *args: Any) -> None:
        if self.server.emulator.log_requests:
            super().log_message(fmt, *args)

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = bytearray()
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024).strip():
                        pass  # trailers
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline(8)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _set_answer(self, status: int) -> None:
        if self._entry is not None:
            self.emulator.update(self._entry, status=status)

    def _send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self._set_answer(status)  # before writing: the client may ask /_requests right away
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def _send_error(
        self, provider: str, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send_json(status, error_body(provider, status, message), headers)

    def _stream(self, status: int, content_type: str, pieces: Iterable[bytes]) -> None:
        chunked = self.request_version == "HTTP/1.1"
        self._set_answer(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        try:
            for piece in pieces:
                if piece:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drop(self) -> None:
        """Close the connection without writing anything."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _client_gone(self, wait: float) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], wait)
            if not readable:
                return False
            if self.connection.recv(1, socket.MSG_PEEK) == b"":
                return True
        except OSError:
            return True
        time.sleep(wait)  # the client sent more data: keep holding without busy-looping
        return False

    def _hold(self, provider: str) -> None:
        """Timeout mode: wait until the mode changes, 300 s pass, or the client goes away."""
        self.emulator.held(1)
        try:
            deadline = time.monotonic() + TIMEOUT_HOLD_S
            while time.monotonic() < deadline:
                if self.emulator.state(provider).mode != "timeout":
                    break
                if self._client_gone(POLL_INTERVAL_S):
                    break
        finally:
            self.emulator.held(-1)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self) -> None:
        self._entry = None
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send_json(400, {"error": "invalid request body framing"})
            return
        if path in ("/_health", "/_requests", "/_control") or path.startswith("/_control/"):
            self._control(path, query, raw)
            return
        route = resolve_route(self.command, path)
        if route is None:
            self._send_json(404, {"error": f"no such endpoint: {self.command} {path}"})
            return
        self._api(route, path, query, raw)

    def _api_key(self, provider: str, query: dict[str, str]) -> str | None:
        auth = self.headers.get("Authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if provider == "anthropic":
            return self.headers.get("x-api-key", "").strip() or bearer or None
        if provider == "gemini":
            return (
                query.get("key", "").strip()
                or self.headers.get("x-goog-api-key", "").strip()
                or None
            )
        return bearer or None

    def _api(self, route: Route, path: str, query: dict[str, str], raw: bytes) -> None:
        emulator = self.emulator
        provider = route.provider
        body: JSONDict | None = {}
        if raw.strip() and self.command not in ("GET", "HEAD"):
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else None

        model = route.model
        if model is None and body:
            candidate = body.get("model") or body.get("name")
            model = candidate if isinstance(candidate, str) else None
        if provider == "gemini":
            stream = route.kind == "streamGenerateContent"
        elif provider == "ollama":
            stream = route.kind in ("chat", "generate", "pull") and (
                body is None or body.get("stream") is not False
            )
        else:
            stream = bool(body and body.get("stream") is True)
        prompt_tokens = (
            count_words(prompt_texts(provider, route.kind, body))
            if route.serving and body is not None
            else None
        )
        key = self._api_key(provider, query)
        state = emulator.state(provider)
        self._entry = {
            "provider": provider,
            "model": model,
            "path": path,
            "method": self.command,
            "time": time.time(),
            "stream": stream,
            "status": None,
            "mode": state.mode,
            "user_agent": self.headers.get("User-Agent"),
            "key_hint": key[-4:] if key else None,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": None,
            "headers": {
                name.lower(): value
                for name, value in self.headers.items()
                if name.lower().startswith("x-")
                and name.lower() not in ("x-api-key", "x-goog-api-key")
            },
            "body_keys": sorted(body) if body else [],
        }
        emulator.record(self._entry)

        if state.mode == "down":
            self._drop()
            return
        if route.serving and state.mode == "timeout":
            self._hold(provider)
            self._drop()
            return
        if provider in AUTH_PROVIDERS and not key:
            if provider == "gemini":
                message = "Method doesn't allow unregistered callers. Please use an API Key."
                self._send_error(provider, 403, message)
            elif provider == "anthropic":
                self._send_error(provider, 401, "x-api-key header is required")
            else:
                self._send_error(provider, 401, "You didn't provide an API key.")
            return
        if body is None:
            self._send_error(provider, 400, "malformed JSON in request body")
            return
        if route.serving:
            if state.mode == "error":
                message = f"emulated {provider} error (status {state.status})"
                self._send_error(provider, state.status, message)
                return
            if state.mode == "rate_limit":
                message = f"emulated {provider} rate limit"
                self._send_error(provider, 429, message, {"retry-after": "1"})
                return
            if state.latency_ms > 0:
                time.sleep(state.latency_ms / 1000)
        handler = getattr(self, f"_{provider}_{route.kind}")
        handler(route, body, query, state.prompt_tokens or prompt_tokens or 0)

    def _completed(self, completion_tokens: int) -> None:
        if self._entry is not None:
            self.emulator.update(self._entry, completion_tokens=completion_tokens)

    def _require_model(self, provider: str, body: JSONDict) -> str | None:
        model = body.get("model")
        if isinstance(model, str) and model.strip():
            return model
        if provider == "ollama":
            self._send_json(400, {"error": "model is required"})
        else:
            self._send_error(provider, 400, "you must provide a model parameter")
        return None

    # ------------------------------------------------------------------ openai

    def _openai_chat(self, route: Route, body: JSONDict, query: dict[str, str], pt: int) -> None:
        model = self._require_model("openai", body)
        if model is None:
            return
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            self._send_error("openai", 400, "Missing required parameter: 'messages'.")
            return
        reply = openai_reply(body, model)
        ct = count_words([reply.text])
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        base: JSONDict = {
            "id": new_id("chatcmpl-", 29),
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        call_id = new_id("call_", 24)
        finish = "stop" if reply.tool is None else "tool_calls"
        self._completed(ct)
        if body.get("stream") is not True:
            message: JSONDict = {"role": "assistant", "content": reply.text, "refusal": None}
            if reply.tool is not None:
                function = {"name": reply.tool, "arguments": reply.text}
                call = {"id": call_id, "type": "function", "function": function}
                message.update(content=None, tool_calls=[call])
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            answer = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            self._send_json(200, answer)
            return
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True

        def chunk(delta: JSONDict, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            data: JSONDict = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            if include_usage:
                data["usage"] = None
            return sse(data)

        def events() -> Iterator[bytes]:
            if reply.tool is None:
                yield chunk({"role": "assistant", "content": "", "refusal": None})
                for piece in reply_pieces(reply.text):
                    yield chunk({"content": piece})
            else:
                function = {"name": reply.tool, "arguments": ""}
                call = {"index": 0, "id": call_id, "type": "function", "function": function}
                yield chunk({"role": "assistant", "content": None, "tool_calls": [call]})
                for piece in reply_pieces(reply.text):
                    yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            yield chunk({}, finish)
            if include_usage:
                yield sse(
                    {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                )
            yield b"data: [DONE]\n\n"

        self._stream(200, "text/event-stream; charset=utf-8", events())

    def _openai_embeddings(
        self, route: Route, body: JSONDict, query: dict[str, str], pt: int
    ) -> None:
        model = self._require_model("openai", body)
        if model is None:
            return
        inputs = input_list(body.get("input"))
        if not inputs:
            self._send_error("openai", 400, "'input' must be a string or a non-empty list.")
            return
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector: Any = embedding_for(text)
            if as_base64:
                packed = struct.pack(f"<{len(vector)}f", *vector)
                vector = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": vector})
        self._completed(0)
        usage = {"prompt_tokens": pt, "total_tokens": pt}
        self._send_json(200, {"object": "list", "data": data, "model": model, "usage": usage})

    def _openai_models(self, route: Route, body: JSONDict, query: dict[str, str], pt: int) -> None:
        data = [
            {"id": name, "object": "model", "created": 1700000000, "owned_by": "emulator"}
            for name in OPENAI_MODELS
        ]
        self._send_json(200, {"object": "list", "data": data})

    # ------------------------------------------------------------------ anthropic

    def _anthropic_messages(
        self, route: Route, body: JSONDict, query: dict[str, str], pt: int
    ) -> None:
        model = self._require_model("anthropic", body)
        if model is None:
            return
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            self._send_error("anthropic", 400, "messages: field required")
            return
        reply = anthropic_reply(body, model)
        ct = count_words([reply.text])
        message_id = new_id("msg_emu_")
        stop_reason = "end_turn" if reply.tool is None else "tool_use"
        block: JSONDict = {"type": "text", "text": reply.text}
        if reply.tool is not None:
            block = {
                "type": "tool_use",
                "id": new_id("toolu_emu_"),
                "name": reply.tool,
                "input": reply.tool_input,
            }
        self._completed(ct)
        if body.get("stream") is not True:
            answer = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [block],
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": pt, "output_tokens": ct},
            }
            self._send_json(200, answer)
            return

        def events() -> Iterator[bytes]:
            start = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": pt, "output_tokens": 0},
            }
            yield sse({"type": "message_start", "message": start}, "message_start")
            empty = {**block, "text": ""} if reply.tool is None else {**block, "input": {}}
            start_block = {"type": "content_block_start", "index": 0, "content_block": empty}
            yield sse(start_block, "content_block_start")
            for piece in reply_pieces(reply.text):
                delta = (
                    {"type": "text_delta", "text": piece}
                    if reply.tool is None
                    else {"type": "input_json_delta", "partial_json": piece}
                )
                event = {"type": "content_block_delta", "index": 0, "delta": delta}
                yield sse(event, "content_block_delta")
            yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            end = {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": ct},
            }
            yield sse(end, "message_delta")
            yield sse({"type": "message_stop"}, "message_stop")

        self._stream(200, "text/event-stream; charset=utf-8", events())

    # ------------------------------------------------------------------ gemini

    def _gemini_answer(self, model: str, text: str, usage: JSONDict | None, rid: str) -> JSONDict:
        candidate: JSONDict = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        answer: JSONDict = {"candidates": [candidate]}
        if usage is not None:
            candidate["finishReason"] = "STOP"
            answer["usageMetadata"] = usage
        answer["modelVersion"] = model
        answer["responseId"] = rid
        return answer

    def _gemini_generateContent(
        self, route: Route, body: JSONDict, query: dict[str, str], pt: int
    ) -> None:
        model = route.model or ""
        reply = gemini_reply(body, model)
        ct = count_words([reply])
        usage = {"promptTokenCount": pt, "candidatesTokenCount": ct, "totalTokenCount": pt + ct}
        rid = new_id("", 22)
        self._completed(ct)
        if route.kind == "generateContent":
            self._send_json(200, self._gemini_answer(model, reply, usage, rid))
            return
        pieces = reply_pieces(reply)
        chunks = [
            self._gemini_answer(model, piece, usage if i == len(pieces) - 1 else None, rid)
            for i, piece in enumerate(pieces)
        ]
        if query.get("alt") == "sse":
            self._stream(200, "text/event-stream", (sse(chunk) for chunk in chunks))
            return

        def array() -> Iterator[bytes]:
            for i, chunk in enumerate(chunks):
                yield (b"[" if i == 0 else b",\r\n") + json.dumps(chunk).encode()
            yield b"]"

        self._stream(200, "application/json; charset=UTF-8", array())

    _gemini_streamGenerateContent = _gemini_generateContent

    def _gemini_embedContent(
        self, route: Route, body: JSONDict, query: dict[str, str], pt: int
    ) -> None:
        text = " ".join(gemini_texts(body.get("content")))
        self._completed(0)
        self._send_json(200, {"embedding": {"values": embedding_for(text)}})

    def _gemini_batchEmbedContents(
        self, route: Route, body: JSONDict, query: dict[str, str], pt: int
    ) -> None:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            self._send_error("gemini", 400, "requests must be a non-empty list")
            return
        embeddings = [
            {"values": embedding_for(" ".join(gemini_texts(r.get("content"))))}
            for r in requests
            if isinstance(r, dict)
        ]
        self._completed(0)
        self._send_json(200, {"embeddings": embeddings})

    # ------------------------------------------------------------------ ollama

    def _ollama_root(self, route: Route, body: JSONDict, query: dict[str, str], pt: int) -> None:
        self._send_bytes(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _ollama_version(self, route: Route, body: JSONDict, query: dict[str, str], pt: int) -> None:
        self._send_json(200, {"version": self.emulator.ollama_version})

    def _ollama_tags(self, route: Route, body: JSONDict, query: dict[str, str], pt: int) -> None:
        self._send_json(200, {"models": self.emulator.ollama.tags()})

    def _ollama_name(self, body: JSONDict) -> str | None:
        name = body.get("model") or body.get("name")
        if isinstance(name, str) and name.strip():
            return name
        self._send_json(400, {"error": "model is required"})
        return None

    def _ollama_pulled(self, body: JSONDict) -> tuple[str, JSONDict] | None:
        """The requested model name and its record, or None after answering 400/404."""
        name = self._ollama_name(body)
        if name is None:
            return None
        record = self.emulator.ollama.get(name)
        if record is None:
            self._send_json(404, {"error": f'model "{name}" not found, try pulling it first'})
            return None
        return name, record

    def _ollama_pull(self, route: Route, body: JSONDict, query: dict[str, str], pt: int) -> None:
        name = self._ollama_name(body)
        if name is None:
            return
        normalized = normalize_model_name(name)
        if normalized.rsplit("/", 1)[-1].startswith("missing"):
            self._send_json(500, {"error": "pull model manifest: file does not exist"})
            return
        record = self.emulator.ollama.add(normalized)
        if body.get("stream") is False:
            self._send_json(200, {"status": "success"})
            return
        digest, total = record["digest"], record["size"]

        def progress() -> Iterator[bytes]:
            yield ndjson({"status": "pulling manifest"})
            for completed in (0, total // 2, total):
                yield ndjson(
                    {
                        "status": f"pulling {digest[:12]}",
                        "digest": f"sha256:{digest}",
                        "total": total,
                        "completed": completed,
                    }
                )
            yield ndjson({"status": "verifying sha256 digest"})
            yield ndjson({"status": "writing manifest"})
            yield ndjson({"status": "success"})

        self._stream(200, "application/x-ndjson", progress())

    def _ollama_delete(self, route: Route, body: JSONDict, query: dict[str, str], pt: int) -> None:
        name = self._ollama_name(body)
        if name is None:
            return
        if not self.emulator.ollama.delete(name):
            self._send_json(404, {"error": f"model '{name}' not found"})
            return
        self._send_bytes(200, b"")

    def _ollama_show(self, route: Route, body: JSONDict, query: dict[str, str], pt: int) -> None:
        found = self._ollama_pulled(body)
        if found is None:
            return
        name, record = found
        normalized = normalize_model_name(name)
        details = model_details(normalized)
        arch = details["family"]
        embedding = "embed" in normalized.lower()
        model_info = {
            "general.architecture": arch,
            "general.basename": normalized.split(":", 1)[0].rsplit("/", 1)[-1],
            "general.file_type": 15,
            "general.parameter_count": 137_000_000 if embedding else 7_000_000_000,
            "general.quantization_version": 2,
            f"{arch}.context_length": 8192 if embedding else 32768,
            f"{arch}.embedding_length": 768 if embedding else 4096,
            f"{arch}.block_count": 12 if embedding else 32,
        }
        answer = {
            "license": "emulated model, no license",
            "modelfile": f"# Modelfile generated by provider-emulator\nFROM {normalized}\n",
            "parameters": "" if embedding else 'stop "<|eot_id|>"',
            "template": "{{ .Prompt }}",
            "details": details,
            "model_info": model_info,
            "capabilities": ["embedding"] if embedding else ["completion"],
            "modified_at": record["modified_at"],
        }
        self._send_json(200, answer)

    def _ollama_generation(self, body: JSONDict, pt: int, field: str) -> None:
        found = self._ollama_pulled(body)
        if found is None:
            return
        model = found[0]
        reply = reply_text("ollama", model)
        ct = count_words([reply])
        self._completed(ct)
        final: JSONDict = {
            "done": True,
            "done_reason": "stop",
            "total_duration": 1_000_000 * (pt + ct + 1),
            "load_duration": 1_000_000,
            "prompt_eval_count": pt,
            "prompt_eval_duration": 100_000 * pt,
            "eval_count": ct,
            "eval_duration": 100_000 * ct,
        }

        def content(text: str) -> Any:
            return {"role": "assistant", "content": text} if field == "message" else text

        if body.get("stream") is False:
            answer = {"model": model, "created_at": iso_now(), field: content(reply), **final}
            self._send_json(200, answer)
            return

        def lines() -> Iterator[bytes]:
            for piece in reply_pieces(reply):
                yield ndjson(
                    {"model": model, "created_at": iso_now(), field: content(piece), "done": False}
                )
            yield ndjson({"model": model, "created_at": iso_now(), field: content(""), **final})

        self._stream(200, "application/x-ndjson", lines())

    def _ollama_chat(self, route: Route, body: JSONDict, query: dict[str, str], pt: int) -> None:
        self._ollama_generation(body, pt, "message")

    def _ollama_generate(
        self, route: Route, body: JSONDict, query: dict[str, str], pt: int
    ) -> None:
        self._ollama_generation(body, pt, "response")

    def _ollama_embed(self, route: Route, body: JSONDict, query: dict[str, str], pt: int) -> None:
        found = self._ollama_pulled(body)
        if found is None:
            return
        inputs = input_list(body.get("input"))
        self._completed(0)
        answer = {
            "model": found[0],
            "embeddings": [embedding_for(text) for text in inputs],
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": pt,
        }
        self._send_json(200, answer)

    def _ollama_embeddings(
        self, route: Route, body: JSONDict, query: dict[str, str], pt: int
    ) -> None:
        if self._ollama_pulled(body) is None:
            return
        prompt = body.get("prompt")
        self._completed(0)
        self._send_json(
            200, {"embedding": embedding_for(prompt if isinstance(prompt, str) else "")}
        )

    # ------------------------------------------------------------------ control API

    def _control(self, path: str, query: dict[str, str], raw: bytes) -> None:
        emulator = self.emulator
        method = self.command
        if path == "/_health":
            if method in ("GET", "HEAD"):
                self._send_json(200, {"status": "ok"})
            else:
                self._send_json(405, {"error": "method not allowed"})
            return
        if path == "/_requests":
            if method == "GET":
                provider = query.get("provider") or None
                since: float | None = None
                if query.get("since"):
                    try:
                        since = float(query["since"])
                    except ValueError:
                        self._send_json(400, {"error": "since must be an epoch float"})
                        return
                self._send_json(200, emulator.requests(provider, since))
            elif method == "DELETE":
                self._send_json(200, {"cleared": emulator.clear_requests()})
            else:
                self._send_json(405, {"error": "method not allowed"})
            return
        if path == "/_control":
            if method == "DELETE":
                for provider in PROVIDERS:
                    emulator.set_state(provider, ProviderState())
            elif method != "GET":
                self._send_json(405, {"error": "method not allowed"})
                return
            self._send_json(200, emulator.all_states())
            return
        provider = path[len("/_control/") :]
        if provider not in PROVIDERS:
            self._send_json(404, {"error": f"unknown provider {provider!r}"})
            return
        if method == "GET":
            self._send_json(200, {"provider": provider, **emulator.state(provider).as_dict()})
            return
        if method != "PUT":
            self._send_json(405, {"error": "method not allowed"})
            return
        try:
            state = parse_control_body(raw)
        except (TypeError, ValueError) as exc:
            self._send_json(400, {"error": str(exc)})
            return
        emulator.set_state(provider, state)
        self._send_json(200, {"provider": provider, **state.as_dict()})


def parse_control_body(raw: bytes) -> ProviderState:
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise ValueError(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise TypeError("body must be a JSON object")
    mode = body.get("mode", "ok")
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    status = body.get("status", DEFAULT_ERROR_STATUS)
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise ValueError("status must be an integer HTTP status (200-599)")
    latency = body.get("latency_ms", 0)
    if isinstance(latency, bool) or not isinstance(latency, int) or latency < 0:
        raise ValueError("latency_ms must be a non-negative integer")
    reported = body.get("prompt_tokens", 0)
    if isinstance(reported, bool) or not isinstance(reported, int) or reported < 0:
        raise ValueError("prompt_tokens must be a non-negative integer")
    return ProviderState(mode=mode, status=status, latency_ms=latency, prompt_tokens=reported)


# -------------------------------------------------------------------------------------------- CLI


def make_server(host: str, port: int, emulator: Emulator) -> EmulatorServer:
    return EmulatorServer((host, port), emulator)


def serve(server: EmulatorServer, banner: str) -> int:
    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(banner, file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def parse_ollama_host(value: str | None) -> tuple[str, int]:
    """OLLAMA_HOST the way Ollama reads it: host, host:port, :port, scheme://host[:port]."""
    default = ("127.0.0.1", DEFAULT_OLLAMA_PORT)
    text = (value or "").strip()
    if not text:
        return default
    default_port = DEFAULT_OLLAMA_PORT
    if "://" in text:
        scheme, text = text.split("://", 1)
        default_port = {"http": 80, "https": 443}.get(scheme.lower(), DEFAULT_OLLAMA_PORT)
    text = text.split("/", 1)[0]
    host, port_text = text, ""
    if text.startswith("["):  # [v6]:port
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not port_text:
        return (host or "127.0.0.1", default_port)
    try:
        port = int(port_text)
    except ValueError:
        return default
    if not 0 <= port <= 65535:
        return default
    return (host, port)


def ollama_models_file() -> Path:
    directory = os.environ.get("OLLAMA_MODELS", "").strip() or "~/.ollama/models"
    return Path(directory).expanduser() / MODELS_FILE_NAME


def ollama_client_url(path: str) -> str:
    host, port = parse_ollama_host(os.environ.get("OLLAMA_HOST"))
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def ollama_call(method: str, path: str, body: JSONDict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(ollama_client_url(path), data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def ollama_error(payload: bytes) -> str:
    try:
        return str(json.loads(payload)["error"])
    except (ValueError, KeyError, TypeError):
        return payload.decode("utf-8", "replace").strip()


OLLAMA_USAGE = """Usage:
  ollama [flags]
  ollama [command]

Available Commands:
  serve       Start ollama (emulated)
  pull        Pull a model
  list        List models
  rm          Remove a model

Flags:
  -h, --help      help for ollama
  -v, --version   Show version information
"""


def ollama_main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        print(OLLAMA_USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    if command in ("-v", "--version", "version"):
        print(f"ollama version is {read_ollama_version()}")
        return 0
    try:
        if command == "serve":
            return ollama_serve()
        if command == "pull" and len(rest) == 1:
            status, payload = ollama_call("POST", "/api/pull", {"model": rest[0], "stream": False})
            if status != 200:
                print(f"Error: {ollama_error(payload)}", file=sys.stderr)
                return 1
            print("success")
            return 0
        if command in ("list", "ls") and not rest:
            status, payload = ollama_call("GET", "/api/tags")
            if status != 200:
                print(f"Error: {ollama_error(payload)}", file=sys.stderr)
                return 1
            print(f"{'NAME':<40}{'ID':<16}{'SIZE':<10}MODIFIED")
            for model in json.loads(payload)["models"]:
                size = f"{model['size'] / 1e9:.1f} GB"
                print(
                    f"{model['name']:<40}{model['digest'][:12]:<16}{size:<10}{model['modified_at']}"
                )
            return 0
        if command == "rm" and rest:
            for name in rest:
                status, payload = ollama_call("DELETE", "/api/delete", {"model": name})
                if status != 200:
                    print(f"Error: {ollama_error(payload)}", file=sys.stderr)
                    return 1
                print(f"deleted '{name}'")
            return 0
    except urllib.error.URLError as exc:
        print(
            f"Error: could not connect to ollama app, is it running? ({exc.reason})",
            file=sys.stderr,
        )
        return 1
    print(f"Error: unknown command or arguments: {' '.join(args)}", file=sys.stderr)
    print(OLLAMA_USAGE, end="", file=sys.stderr)
    return 1


def ollama_serve() -> int:
    host, port = parse_ollama_host(os.environ.get("OLLAMA_HOST"))
    models_file = ollama_models_file()
    try:
        models_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"Error: cannot create {models_file.parent}: {exc}", file=sys.stderr)
        return 1
    quiet = os.environ.get("EMULATOR_QUIET", "").strip() not in ("", "0", "false")
    emulator = Emulator(models_file=models_file, log_requests=not quiet)
    try:
        server = make_server(host, port, emulator)
    except OSError as exc:
        print(f"Error: listen tcp {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    bound_port = server.server_address[1]
    banner = (
        f"Listening on {host}:{bound_port} (version {emulator.ollama_version}, "
        f"provider-emulator, models in {models_file})"
    )
    return serve(server, banner)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "ollama":
        return ollama_main(args[1:])
    parser = argparse.ArgumentParser(
        description="Emulator of the OpenAI, Anthropic, Gemini and Ollama APIs (lab use).",
        epilog="Use 'provider_emulator.py ollama serve' to stand in for the ollama binary.",
    )
    parser.add_argument("--listen", default="127.0.0.1", help="bind address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (8080)")
    parser.add_argument(
        "--ollama-models", default="", help="comma-separated models that Ollama starts with"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    options = parser.parse_args(args)
    models = [name.strip() for name in options.ollama_models.split(",") if name.strip()]
    emulator = Emulator(ollama_models=models, log_requests=not options.quiet)
    try:
        server = make_server(options.listen, options.port, emulator)
    except OSError as exc:
        print(f"error: cannot listen on {options.listen}:{options.port}: {exc}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    return serve(server, f"provider-emulator listening on {host}:{port}")


if __name__ == "__main__":
    sys.exit(main())
