"""Unit tests of the provider emulator (tests/emulator/provider_emulator.py).

The emulator runs in-process (a ThreadingHTTPServer on 127.0.0.1, port 0) except for the
``ollama serve`` / ``ollama --version`` tests, which run the script as a subprocess.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.loader import load

EMULATOR_PATH = Path(__file__).resolve().parents[2] / "emulator" / "provider_emulator.py"
OPENAI_KEY = "sk-test-key-abcd"
ANTHROPIC_KEY = "sk-ant-test-wxyz"
GEMINI_KEY = "AIza-test-9876"


pe = load("tests/emulator/provider_emulator.py", "provider_emulator")


@dataclass
class Running:
    url: str
    emulator: Any
    http: requests.Session

    def control(self, provider: str, **state: Any) -> dict[str, Any]:
        response = self.http.put(f"{self.url}/_control/{provider}", json=state, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def requests_log(self, **params: Any) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.url}/_requests", params=params, timeout=5)
        assert response.status_code == 200
        return response.json()


@pytest.fixture
def emu() -> Iterator[Running]:
    emulator = pe.Emulator(
        ollama_models=["llama3.2", "nomic-embed-text"], ollama_version="9.9.9-test"
    )
    server = pe.make_server("127.0.0.1", 0, emulator)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    session = requests.Session()
    try:
        yield Running(f"http://127.0.0.1:{server.server_address[1]}", emulator, session)
    finally:
        for provider in pe.PROVIDERS:  # release any held request
            emulator.set_state(provider, pe.ProviderState())
        session.close()
        server.shutdown()
        server.server_close()
        thread.join(5)


def openai_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPENAI_KEY}"}


def anthropic_headers() -> dict[str, str]:
    return {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}


def chat_body(model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there general kenobi"},
    ]
    return {"model": model, "messages": messages, **extra}


def sse_events(text: str) -> list[tuple[str | None, str]]:
    events: list[tuple[str | None, str]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        events.append((name, "\n".join(data)))
    return events


def ndjson_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------ token rule


def test_token_rule_helpers() -> None:
    assert pe.count_words(["a b  c", "\td\n"]) == 4
    reply = pe.reply_text("openai", "gpt-4o")
    assert reply == "emulated reply from openai model gpt-4o"
    assert pe.reply_pieces(reply) == ["emulated ", "reply ", "from ", "openai ", "model ", "gpt-4o"]
    vector = pe.embedding_for("hello")
    assert len(vector) == pe.EMBEDDING_DIM == 16
    assert vector == pe.embedding_for("hello")
    assert vector != pe.embedding_for("hello!")
    assert all(-1.0 <= value <= 1.0 for value in vector)


# ---------------------------------------------------------------------------------------- openai


def test_openai_chat_plain(emu: Running) -> None:
    first = emu.http.post(
        f"{emu.url}/v1/chat/completions", json=chat_body(), headers=openai_headers(), timeout=5
    )
    second = emu.http.post(
        f"{emu.url}/v1/chat/completions", json=chat_body(), headers=openai_headers(), timeout=5
    )
    assert first.status_code == 200
    assert first.headers["Content-Length"] == str(len(first.content))
    body = first.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "emulated reply from openai model gpt-4o-mini",
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 6, "total_tokens": 12}
    assert body["id"].startswith("chatcmpl-")
    assert body["id"] != second.json()["id"]


def test_openai_chat_stream_with_usage(emu: Running) -> None:
    response = emu.http.post(
        f"{emu.url}/v1/chat/completions",
        json=chat_body(stream=True, stream_options={"include_usage": True}),
        headers=openai_headers(),
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Transfer-Encoding"] == "chunked"
    events = sse_events(response.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "emulated reply from openai model gpt-4o-mini"
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:7]] == [
        "emulated ",
        "reply ",
        "from ",
        "openai ",
        "model ",
        "gpt-4o-mini",
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 6, "completion_tokens": 6, "total_tokens": 12}
    assert len({c["id"] for c in chunks}) == 1


def test_openai_stream_without_usage_and_without_v1_prefix(emu: Running) -> None:
    body = {
        "model": "gpt-4o",
        "stream": True,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three"}]}],
    }
    response = emu.http.post(
        f"{emu.url}/chat/completions", json=body, headers=openai_headers(), timeout=5
    )
    assert response.status_code == 200
    chunks = [json.loads(data) for _, data in sse_events(response.text)[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert all(chunk["choices"] for chunk in chunks)
    assert emu.requests_log()[-1]["prompt_tokens"] == 3
    assert emu.requests_log()[-1]["completion_tokens"] == 6


def test_openai_auth(emu: Running) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}):
        response = emu.http.post(
            f"{emu.url}/v1/chat/completions", json=chat_body(), headers=headers, timeout=5
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.json()["error"]["type"] == "invalid_request_error"
    models = emu.http.get(f"{emu.url}/v1/models", headers=openai_headers(), timeout=5)
    assert models.status_code == 200
    assert "gpt-4o" in [m["id"] for m in models.json()["data"]]


def test_openai_embeddings(emu: Running) -> None:
    response = emu.http.post(
        f"{emu.url}/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": ["alpha beta", "gamma"]},
        headers=openai_headers(),
        timeout=5,
    )
    assert response.status_code == 200
    body = response.json()
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert body["data"][0]["embedding"] == pe.embedding_for("alpha beta")
    assert body["data"][1]["embedding"] == pe.embedding_for("gamma")
    assert all(len(item["embedding"]) == 16 for item in body["data"])
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert body["model"] == "text-embedding-3-small"

    single = emu.http.post(
        f"{emu.url}/embeddings",
        json={"model": "m", "input": "alpha beta", "encoding_format": "base64"},
        headers=openai_headers(),
        timeout=5,
    ).json()
    decoded = struct.unpack("<16f", base64.b64decode(single["data"][0]["embedding"]))
    assert decoded == pytest.approx(pe.embedding_for("alpha beta"), abs=1e-6)


# ------------------------------------------------------------------------------------- anthropic


def anthropic_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "you are terse"}],
        "messages": [
            {"role": "user", "content": "what is up"},
            {"role": "assistant", "content": [{"type": "text", "text": "not much"}]},
            {"role": "user", "content": [{"type": "text", "text": "ok then"}]},
        ],
        **extra,
    }


def test_anthropic_plain(emu: Running) -> None:
    response = emu.http.post(
        f"{emu.url}/v1/messages", json=anthropic_body(), headers=anthropic_headers(), timeout=5
    )
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "message"
    assert body["model"] == "claude-3-5-haiku-latest"
    assert body["content"] == [
        {"type": "text", "text": "emulated reply from anthropic model claude-3-5-haiku-latest"}
    ]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"] == {"input_tokens": 10, "output_tokens": 6}
    assert body["id"].startswith("msg_")


def test_anthropic_stream(emu: Running) -> None:
    response = emu.http.post(
        f"{emu.url}/v1/messages",
        json=anthropic_body(stream=True),
        headers={"Authorization": f"Bearer {ANTHROPIC_KEY}"},
        timeout=5,
    )
    assert response.status_code == 200
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 6,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    payloads = [json.loads(data) for _, data in events]
    assert [p["type"] for p in payloads] == names
    assert payloads[0]["message"]["usage"]["input_tokens"] == 10
    text = "".join(p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta")
    assert text == "emulated reply from anthropic model claude-3-5-haiku-latest"
    assert payloads[-2]["usage"] == {"output_tokens": 6}
    assert payloads[-2]["delta"]["stop_reason"] == "end_turn"


def test_anthropic_auth(emu: Running) -> None:
    response = emu.http.post(f"{emu.url}/v1/messages", json=anthropic_body(), timeout=5)
    assert response.status_code == 401
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "authentication_error"


# ---------------------------------------------------------------------------------------- gemini


def gemini_body() -> dict[str, Any]:
    return {
        "systemInstruction": {"parts": [{"text": "answer in French"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "bonjour tout"}, {"text": "le monde"}]},
        ],
    }


def test_gemini_generate_plain(emu: Running) -> None:
    url = f"{emu.url}/v1beta/models/gemini-2.0-flash:generateContent?key={GEMINI_KEY}"
    body = emu.http.post(url, json=gemini_body(), timeout=5).json()
    candidate = body["candidates"][0]
    assert candidate["content"]["parts"][0]["text"] == (
        "emulated reply from gemini model gemini-2.0-flash"
    )
    assert candidate["finishReason"] == "STOP"
    assert body["usageMetadata"] == {
        "promptTokenCount": 7,
        "candidatesTokenCount": 6,
        "totalTokenCount": 13,
    }
    assert body["modelVersion"] == "gemini-2.0-flash"
    record = emu.requests_log()[-1]
    assert record["model"] == "gemini-2.0-flash"
    assert record["key_hint"] == "9876"
    assert record["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"


def test_gemini_stream_sse_and_array(emu: Running) -> None:
    headers = {"x-goog-api-key": GEMINI_KEY}
    sse_url = f"{emu.url}/v1beta/models/models/gemini-pro:streamGenerateContent?alt=sse"
    response = emu.http.post(sse_url, json=gemini_body(), headers=headers, timeout=5)
    assert response.status_code == 200
    chunks = [json.loads(data) for _, data in sse_events(response.text)]
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == "emulated reply from gemini model gemini-pro"
    assert len(chunks) == 6
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] == 13
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"

    array_url = f"{emu.url}/v1/models/gemini-pro:streamGenerateContent"
    array = emu.http.post(array_url, json=gemini_body(), headers=headers, timeout=5).json()
    assert isinstance(array, list)
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in array) == text
    assert emu.requests_log()[-1]["stream"] is True


def test_gemini_embeddings_and_auth(emu: Running) -> None:
    base = f"{emu.url}/v1beta/models/text-embedding-004"
    single = emu.http.post(
        f"{base}:embedContent?key={GEMINI_KEY}",
        json={"content": {"parts": [{"text": "hello world"}]}},
        timeout=5,
    ).json()
    assert single == {"embedding": {"values": pe.embedding_for("hello world")}}
    batch = emu.http.post(
        f"{base}:batchEmbedContents?key={GEMINI_KEY}",
        json={
            "requests": [
                {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
                {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b c"}]}},
            ]
        },
        timeout=5,
    ).json()
    assert [len(e["values"]) for e in batch["embeddings"]] == [16, 16]
    assert batch["embeddings"][1]["values"] == pe.embedding_for("b c")
    assert emu.requests_log()[-1]["prompt_tokens"] == 3

    denied = emu.http.post(f"{base}:embedContent", json={"content": {}}, timeout=5)
    assert denied.status_code == 403
    assert denied.json()["error"]["status"] == "PERMISSION_DENIED"
    assert denied.json()["error"]["code"] == 403


# ---------------------------------------------------------------------------------------- ollama


def test_ollama_root_version_tags(emu: Running) -> None:
    root = emu.http.get(f"{emu.url}/", timeout=5)
    assert root.text == "Ollama is running"
    assert emu.http.head(f"{emu.url}/", timeout=5).status_code == 200
    assert emu.http.get(f"{emu.url}/api/version", timeout=5).json() == {"version": "9.9.9-test"}
    models = emu.http.get(f"{emu.url}/api/tags", timeout=5).json()["models"]
    assert [m["name"] for m in models] == ["llama3.2:latest", "nomic-embed-text:latest"]
    assert set(models[0]) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert models[0]["model"] == "llama3.2:latest"
    assert models[0]["details"]["format"] == "gguf"


def test_ollama_chat_and_generate(emu: Running) -> None:
    chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "why is the sky"}]}
    lines = ndjson_lines(emu.http.post(f"{emu.url}/api/chat", json=chat, timeout=5).text)
    assert len(lines) == 7
    assert all(line["done"] is False for line in lines[:-1])
    assert "".join(line["message"]["content"] for line in lines) == (
        "emulated reply from ollama model llama3.2"
    )
    final = lines[-1]
    assert final["done"] is True
    assert final["done_reason"] == "stop"
    assert (final["prompt_eval_count"], final["eval_count"]) == (4, 6)

    plain = emu.http.post(
        f"{emu.url}/api/chat", json={**chat, "model": "llama3.2:latest", "stream": False}, timeout=5
    ).json()
    assert plain["message"]["content"] == "emulated reply from ollama model llama3.2:latest"
    assert plain["model"] == "llama3.2:latest"
    assert (plain["prompt_eval_count"], plain["eval_count"]) == (4, 6)

    generate = {"model": "llama3.2", "prompt": "tell me", "system": "be short", "stream": False}
    body = emu.http.post(f"{emu.url}/api/generate", json=generate, timeout=5).json()
    assert body["response"] == "emulated reply from ollama model llama3.2"
    assert (body["prompt_eval_count"], body["eval_count"], body["done"]) == (4, 6, True)
    streamed = ndjson_lines(
        emu.http.post(f"{emu.url}/api/generate", json={**generate, "stream": True}, timeout=5).text
    )
    assert "".join(line["response"] for line in streamed) == body["response"]
    assert streamed[-1]["eval_count"] == 6
    assert emu.requests_log()[-1]["stream"] is True


def test_ollama_embed(emu: Running) -> None:
    body = emu.http.post(
        f"{emu.url}/api/embed", json={"model": "nomic-embed-text", "input": ["x y", "z"]}, timeout=5
    ).json()
    assert body["embeddings"] == [pe.embedding_for("x y"), pe.embedding_for("z")]
    assert body["prompt_eval_count"] == 3
    legacy = emu.http.post(
        f"{emu.url}/api/embeddings", json={"model": "nomic-embed-text", "prompt": "x y"}, timeout=5
    ).json()
    assert legacy == {"embedding": pe.embedding_for("x y")}


def test_ollama_model_not_pulled(emu: Running) -> None:
    for path, body in (
        ("/api/chat", {"model": "mistral", "messages": []}),
        ("/api/generate", {"model": "mistral", "prompt": "hi"}),
        ("/api/embed", {"model": "mistral", "input": "hi"}),
        ("/api/show", {"name": "mistral"}),
    ):
        response = emu.http.post(f"{emu.url}{path}", json=body, timeout=5)
        assert response.status_code == 404, path
        assert response.json() == {"error": 'model "mistral" not found, try pulling it first'}


def test_ollama_pull_show_delete(emu: Running) -> None:
    pulled = emu.http.post(f"{emu.url}/api/pull", json={"model": "qwen2.5:7b"}, timeout=5)
    assert pulled.status_code == 200
    assert pulled.headers["Content-Type"] == "application/x-ndjson"
    lines = ndjson_lines(pulled.text)
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"status": "success"}
    progress = [line for line in lines if "digest" in line]
    assert len(progress) == 3
    assert progress[-1]["completed"] == progress[-1]["total"]
    assert progress[0]["status"].startswith("pulling ")
    assert progress[0]["digest"].startswith("sha256:")

    quiet = emu.http.post(
        f"{emu.url}/api/pull", json={"name": "library/phi3", "stream": False}, timeout=5
    )
    assert quiet.json() == {"status": "success"}
    names = [m["name"] for m in emu.http.get(f"{emu.url}/api/tags", timeout=5).json()["models"]]
    assert names == ["llama3.2:latest", "nomic-embed-text:latest", "phi3:latest", "qwen2.5:7b"]

    show = emu.http.post(f"{emu.url}/api/show", json={"model": "qwen2.5:7b"}, timeout=5).json()
    arch = show["model_info"]["general.architecture"]
    assert arch == show["details"]["family"] == "qwen"
    assert show["model_info"]["qwen.context_length"] == 32768
    assert show["capabilities"] == ["completion"]
    embed = emu.http.post(f"{emu.url}/api/show", json={"name": "nomic-embed-text"}, timeout=5)
    assert embed.json()["capabilities"] == ["embedding"]

    deleted = emu.http.delete(f"{emu.url}/api/delete", json={"model": "phi3"}, timeout=5)
    assert (deleted.status_code, deleted.content) == (200, b"")
    again = emu.http.delete(f"{emu.url}/api/delete", json={"model": "phi3"}, timeout=5)
    assert again.status_code == 404
    assert again.json() == {"error": "model 'phi3' not found"}
    names = [m["name"] for m in emu.http.get(f"{emu.url}/api/tags", timeout=5).json()["models"]]
    assert "phi3:latest" not in names


def test_ollama_pull_missing_fails(emu: Running) -> None:
    for stream in (True, False):
        response = emu.http.post(
            f"{emu.url}/api/pull", json={"model": "missing-model", "stream": stream}, timeout=5
        )
        assert response.status_code == 500
        assert response.json() == {"error": "pull model manifest: file does not exist"}
    tags = emu.http.get(f"{emu.url}/api/tags", timeout=5).json()["models"]
    assert all(not m["name"].startswith("missing") for m in tags)


def test_model_name_normalization() -> None:
    assert pe.normalize_model_name("llama3.2") == "llama3.2:latest"
    assert pe.normalize_model_name("llama3.2:3b") == "llama3.2:3b"
    assert pe.normalize_model_name("library/llama3.2") == "llama3.2:latest"
    assert pe.normalize_model_name("registry.ollama.ai/library/phi3:mini") == "phi3:mini"
    assert pe.normalize_model_name("hf.co/org/model") == "hf.co/org/model:latest"
    assert pe.normalize_model_name("host:5000/org/model") == "host:5000/org/model:latest"


def test_parse_ollama_host() -> None:
    assert pe.parse_ollama_host(None) == ("127.0.0.1", 11434)
    assert pe.parse_ollama_host("") == ("127.0.0.1", 11434)
    assert pe.parse_ollama_host("0.0.0.0") == ("0.0.0.0", 11434)
    assert pe.parse_ollama_host("10.1.2.3:8000") == ("10.1.2.3", 8000)
    assert pe.parse_ollama_host("http://example:9000") == ("example", 9000)
    assert pe.parse_ollama_host(":9001") == ("", 9001)
    assert pe.parse_ollama_host("[::1]:9002") == ("::1", 9002)


# --------------------------------------------------------------------------------- control modes


def test_control_api(emu: Running) -> None:
    state = emu.control("openai", mode="error", status=503, latency_ms=50)
    assert state == {
        "provider": "openai",
        "mode": "error",
        "status": 503,
        "latency_ms": 50,
        "prompt_tokens": 0,
    }
    assert emu.control("openai", mode="ok") == {
        "provider": "openai",
        "mode": "ok",
        "status": 500,
        "latency_ms": 0,
        "prompt_tokens": 0,
    }
    emu.control("gemini", mode="down")
    everything = emu.http.get(f"{emu.url}/_control", timeout=5).json()
    assert set(everything) == {"openai", "anthropic", "gemini", "ollama"}
    idle = {"status": 500, "latency_ms": 0, "prompt_tokens": 0}
    assert everything["gemini"] == {"mode": "down", **idle}
    assert everything["anthropic"] == {"mode": "ok", **idle}

    unknown = emu.http.put(f"{emu.url}/_control/azure", json={"mode": "ok"}, timeout=5)
    assert unknown.status_code == 404
    for bad in (
        b"{not json",
        b"[1]",
        b'{"mode": "sleepy"}',
        b'{"mode": "error", "status": "x"}',
        b'{"mode": "ok", "prompt_tokens": -1}',
    ):
        response = emu.http.put(f"{emu.url}/_control/openai", data=bad, timeout=5)
        assert response.status_code == 400, bad
    assert emu.http.get(f"{emu.url}/_health", timeout=5).json() == {"status": "ok"}


def test_a_reported_prompt_token_count_replaces_the_count_in_every_usage(emu: Running) -> None:
    """An upstream whose usage is absurd: the control's prompt_tokens is what it reports."""
    emu.control("openai", mode="ok", prompt_tokens=3_000_000_000)
    body = emu.http.post(
        f"{emu.url}/v1/chat/completions", json=chat_body(), headers=openai_headers(), timeout=5
    ).json()
    assert body["usage"]["prompt_tokens"] == 3_000_000_000
    assert body["usage"]["total_tokens"] == 3_000_000_000 + body["usage"]["completion_tokens"]
    emu.control("openai", mode="ok")
    again = emu.http.post(
        f"{emu.url}/v1/chat/completions", json=chat_body(), headers=openai_headers(), timeout=5
    ).json()
    assert again["usage"]["prompt_tokens"] == 6


def test_mode_error_per_provider(emu: Running) -> None:
    for provider in pe.PROVIDERS:
        emu.control(provider, mode="error", status=503)
    openai = emu.http.post(
        f"{emu.url}/v1/chat/completions", json=chat_body(), headers=openai_headers(), timeout=5
    )
    assert openai.status_code == 503
    assert openai.json()["error"]["type"] == "server_error"
    anthropic = emu.http.post(
        f"{emu.url}/v1/messages", json=anthropic_body(), headers=anthropic_headers(), timeout=5
    )
    assert anthropic.status_code == 503
    assert anthropic.json()["type"] == "error"
    gemini = emu.http.post(
        f"{emu.url}/v1beta/models/g:generateContent?key=k", json=gemini_body(), timeout=5
    )
    assert gemini.status_code == 503
    assert gemini.json()["error"]["status"] == "UNAVAILABLE"
    ollama = emu.http.post(
        f"{emu.url}/api/chat", json={"model": "llama3.2", "messages": []}, timeout=5
    )
    assert ollama.status_code == 503
    assert set(ollama.json()) == {"error"}
    # management endpoints keep working in error mode
    assert emu.http.get(f"{emu.url}/api/tags", timeout=5).status_code == 200
    pull = emu.http.post(f"{emu.url}/api/pull", json={"model": "a", "stream": False}, timeout=5)
    assert pull.status_code == 200
    show = emu.http.post(f"{emu.url}/api/show", json={"model": "a"}, timeout=5)
    assert show.status_code == 503
    statuses = [(r["provider"], r["status"], r["mode"]) for r in emu.requests_log()]
    assert statuses[:4] == [
        ("openai", 503, "error"),
        ("anthropic", 503, "error"),
        ("gemini", 503, "error"),
        ("ollama", 503, "error"),
    ]
    assert emu.requests_log()[0]["completion_tokens"] is None


def test_mode_rate_limit(emu: Running) -> None:
    emu.control("anthropic", mode="rate_limit")
    response = emu.http.post(
        f"{emu.url}/v1/messages", json=anthropic_body(), headers=anthropic_headers(), timeout=5
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "rate_limit_error"
    # other providers are unaffected
    ok = emu.http.post(
        f"{emu.url}/v1/chat/completions", json=chat_body(), headers=openai_headers(), timeout=5
    )
    assert ok.status_code == 200


def test_mode_down(emu: Running) -> None:
    emu.control("openai", mode="down")
    emu.control("ollama", mode="down")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            f"{emu.url}/v1/chat/completions", json=chat_body(), headers=openai_headers(), timeout=5
        )
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{emu.url}/api/tags", timeout=5)
    log = emu.requests_log()
    assert [(r["path"], r["status"], r["mode"]) for r in log] == [
        ("/v1/chat/completions", None, "down"),
        ("/api/tags", None, "down"),
    ]
    emu.control("openai", mode="ok")
    ok = requests.post(
        f"{emu.url}/v1/chat/completions", json=chat_body(), headers=openai_headers(), timeout=5
    )
    assert ok.status_code == 200


def test_mode_timeout_releases_thread(emu: Running) -> None:
    emu.control("gemini", mode="timeout")
    url = f"{emu.url}/v1beta/models/g:generateContent?key=k"
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(url, json=gemini_body(), timeout=(2, 0.4))
    # the client's socket is closed by requests on timeout, so hold the next one with a raw socket
    held = socket.create_connection(("127.0.0.1", int(emu.url.rsplit(":", 1)[1])), timeout=5)
    payload = json.dumps(gemini_body()).encode()
    held.sendall(
        b"POST /v1beta/models/g:generateContent?key=k HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    deadline = time.monotonic() + 2
    while emu.emulator.held_requests < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emu.emulator.held_requests == 1
    # management endpoints of a provider in timeout mode still answer
    emu.control("ollama", mode="timeout")
    assert emu.http.get(f"{emu.url}/api/tags", timeout=2).status_code == 200
    emu.control("ollama", mode="ok")

    emu.control("gemini", mode="ok")
    held.settimeout(2)
    assert held.recv(1024) == b""  # closed without any response
    held.close()
    deadline = time.monotonic() + 2
    while emu.emulator.held_requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emu.emulator.held_requests == 0
    gemini_log = emu.requests_log(provider="gemini")
    assert [(r["status"], r["mode"]) for r in gemini_log] == [(None, "timeout"), (None, "timeout")]
    answered = requests.post(url, json=gemini_body(), timeout=5)
    assert answered.status_code == 200


def test_latency(emu: Running) -> None:
    emu.control("ollama", mode="ok", latency_ms=300)
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    started = time.monotonic()
    assert emu.http.post(f"{emu.url}/api/chat", json=body, timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.3  # the configured delay was applied
    # management endpoints are not delayed: with a 5 s latency they still answer inside 2 s
    emu.control("ollama", mode="ok", latency_ms=5000)
    assert emu.http.get(f"{emu.url}/api/tags", timeout=2).status_code == 200
    emu.control("ollama", mode="ok")


def test_concurrent_connections(emu: Running) -> None:
    """64 requests are held at once (timeout mode), so none waits for another to finish."""
    emu.control("openai", mode="timeout")
    port = int(emu.url.rsplit(":", 1)[1])
    payload = json.dumps(chat_body()).encode()
    sockets = []
    for _ in range(64):
        held = socket.create_connection(("127.0.0.1", port), timeout=5)
        held.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(payload), payload)
        )
        sockets.append(held)
    deadline = time.monotonic() + 10
    while emu.emulator.held_requests < 64 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emu.emulator.held_requests == 64
    emu.control("openai", mode="ok")
    for held in sockets:
        held.close()
    ok = requests.post(
        f"{emu.url}/v1/chat/completions", json=chat_body(), headers=openai_headers(), timeout=5
    )
    assert ok.status_code == 200
    assert len(emu.requests_log(provider="openai")) == 65


def test_keep_alive_across_streams(emu: Running) -> None:
    port = int(emu.url.rsplit(":", 1)[1])
    connection = HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {**openai_headers(), "Content-Type": "application/json"}
    for stream in (True, False, True):
        connection.request(
            "POST", "/v1/chat/completions", json.dumps(chat_body(stream=stream)), headers
        )
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        assert not response.will_close
    connection.request("GET", "/api/version")
    assert json.loads(connection.getresponse().read()) == {"version": "9.9.9-test"}
    connection.close()


def test_malformed_json_and_unknown_path(emu: Running) -> None:
    cases = {
        "/v1/chat/completions": lambda b: b["error"]["type"] == "invalid_request_error",
        "/v1/messages": lambda b: b["error"]["type"] == "invalid_request_error",
        "/v1beta/models/g:generateContent": lambda b: b["error"]["status"] == "INVALID_ARGUMENT",
        "/api/chat": lambda b: isinstance(b["error"], str),
    }
    headers = {**openai_headers(), **anthropic_headers(), "x-goog-api-key": "k"}
    for path, check in cases.items():
        response = emu.http.post(f"{emu.url}{path}", data=b"{oops", headers=headers, timeout=5)
        assert response.status_code == 400, path
        assert check(response.json()), path
    assert emu.http.get(f"{emu.url}/v2/nothing", timeout=5).status_code == 404
    assert emu.http.get(f"{emu.url}/v1/chat/completions", timeout=5).status_code == 404
    assert len(emu.requests_log()) == 4  # unknown paths are not recorded


# ---------------------------------------------------------------------------------- request log


def test_requests_log_fields_filters_and_clear(emu: Running) -> None:
    before = time.time()
    emu.http.post(
        f"{emu.url}/v1/chat/completions",
        json=chat_body(temperature=0),
        headers={**openai_headers(), "X-Trace-Id": "t-1", "User-Agent": "unit-test/1"},
        timeout=5,
    )
    emu.http.post(
        f"{emu.url}/v1/messages",
        json=anthropic_body(stream=True),
        headers={**anthropic_headers(), "User-Agent": "unit-test/1"},
        timeout=5,
    )
    emu.http.get(f"{emu.url}/_control", timeout=5)  # not recorded
    log = emu.requests_log()
    assert len(log) == 2
    first = log[0]
    assert before <= first["time"] <= time.time()
    assert {k: v for k, v in first.items() if k != "time"} == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "path": "/v1/chat/completions",
        "method": "POST",
        "stream": False,
        "status": 200,
        "mode": "ok",
        "user_agent": "unit-test/1",
        "key_hint": "abcd",
        "prompt_tokens": 6,
        "completion_tokens": 6,
        "headers": {"x-trace-id": "t-1"},
        "body_keys": ["messages", "model", "temperature"],
    }
    second = log[1]
    assert (second["provider"], second["stream"], second["key_hint"]) == ("anthropic", True, "wxyz")
    assert second["headers"] == {}  # x-api-key is never recorded
    assert (second["prompt_tokens"], second["completion_tokens"]) == (10, 6)

    assert [r["provider"] for r in emu.requests_log(provider="anthropic")] == ["anthropic"]
    assert emu.requests_log(since=second["time"]) == [second]
    assert emu.requests_log(since=time.time() + 10) == []
    cleared = emu.http.delete(f"{emu.url}/_requests", timeout=5).json()
    assert cleared == {"cleared": 2}
    assert emu.requests_log() == []


def test_requests_log_is_capped() -> None:
    emulator = pe.Emulator()
    for index in range(pe.MAX_RECORDS + 5):
        emulator.record(
            {"provider": "openai", "time": float(index), "headers": {}, "body_keys": []}
        )
    entries = emulator.requests()
    assert pe.MAX_RECORDS == 10000
    assert len(entries) == 10000
    assert entries[0]["time"] == 5.0


# ------------------------------------------------------------------------ ollama CLI (subprocess)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if requests.get(f"{url}/api/version", timeout=0.5).status_code == 200:
                return
        except requests.exceptions.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("ollama serve did not come up")


def test_ollama_serve_persists_models(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(tmp_path / "models"),
        "EMULATOR_OLLAMA_VERSION": "0.5.7",
        "EMULATOR_QUIET": "1",
    }
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, str(EMULATOR_PATH), "ollama", "serve"]

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_until_up(url, process)
        return process

    def stop(process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        assert process.wait(timeout=5) == 0
        if process.stderr:
            process.stderr.close()

    process = start()
    try:
        assert requests.get(f"{url}/api/tags", timeout=5).json() == {"models": []}
        assert requests.get(f"{url}/api/version", timeout=5).json() == {"version": "0.5.7"}
        pulled = requests.post(
            f"{url}/api/pull", json={"model": "llama3.2", "stream": False}, timeout=5
        )
        assert pulled.json() == {"status": "success"}
        cli = subprocess.run(
            [*command[:-1], "pull", "nomic-embed-text"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert (cli.returncode, cli.stdout.strip()) == (0, "success")
        failed = subprocess.run(
            [*command[:-1], "pull", "missing-thing"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert failed.returncode == 1
        assert "pull model manifest: file does not exist" in failed.stderr
    finally:
        stop(process)
    assert (tmp_path / "models" / pe.MODELS_FILE_NAME).is_file()

    process = start()
    try:
        names = [m["name"] for m in requests.get(f"{url}/api/tags", timeout=5).json()["models"]]
        assert names == ["llama3.2:latest", "nomic-embed-text:latest"]
        deleted = requests.delete(f"{url}/api/delete", json={"name": "llama3.2"}, timeout=5)
        assert deleted.status_code == 200
        listing = subprocess.run(
            [*command[:-1], "list"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert listing.returncode == 0
        assert [line.split()[0] for line in listing.stdout.splitlines()] == [
            "NAME",
            "nomic-embed-text:latest",
        ]
    finally:
        stop(process)

    process = start()
    try:
        names = [m["name"] for m in requests.get(f"{url}/api/tags", timeout=5).json()["models"]]
        assert names == ["nomic-embed-text:latest"]
    finally:
        stop(process)


def test_ollama_version_cli(tmp_path: Path) -> None:
    script = tmp_path / "provider_emulator.py"
    shutil.copy(EMULATOR_PATH, script)
    env = {k: v for k, v in os.environ.items() if k != "EMULATOR_OLLAMA_VERSION"}

    def version(*args: str, **extra_env: str) -> str:
        result = subprocess.run(
            [sys.executable, str(script), "ollama", *args],
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert version("--version") == "ollama version is 0.0.0-emulator"
    (tmp_path / "VERSION").write_text("0.6.2\n")
    assert version("-v") == "ollama version is 0.6.2"
    assert version("--version", EMULATOR_OLLAMA_VERSION="0.9.0") == "ollama version is 0.9.0"


# ------------------------------------------------------------------------------------ real SDKs


def test_openai_sdk(emu: Running) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{emu.url}/v1", api_key=OPENAI_KEY, max_retries=0)
    messages = [{"role": "user", "content": "hello from the sdk"}]
    completion = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert completion.choices[0].message.content == "emulated reply from openai model gpt-4o"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 6)

    stream = client.chat.completions.create(
        model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == "emulated reply from openai model gpt-4o"
    assert usage is not None and usage.total_tokens == 10

    embeddings = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert [len(item.embedding) for item in embeddings.data] == [16, 16]
    assert embeddings.data[0].embedding == pytest.approx(pe.embedding_for("a b"), abs=1e-6)


def test_anthropic_sdk(emu: Running) -> None:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(base_url=emu.url, api_key=ANTHROPIC_KEY, max_retries=0)
    messages = [{"role": "user", "content": "hello from the sdk"}]
    message = client.messages.create(
        model="claude-haiku-4-5", max_tokens=32, system="be kind", messages=messages
    )
    assert message.content[0].text == "emulated reply from anthropic model claude-haiku-4-5"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (6, 6)

    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=32, system="be kind", messages=messages
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "emulated reply from anthropic model claude-haiku-4-5"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (6, 6)
    assert final.stop_reason == "end_turn"
    assert emu.requests_log()[-1]["key_hint"] == "wxyz"


# ---------------------------------------------------------------------------- structured answers

TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 30, "maxLength": 40},
        "status": {"$ref": "#/$defs/status"},
        "owner": {"$ref": "#/definitions/person"},
        "estimate": {"type": "integer", "minimum": 3, "maximum": 9},
        "score": {"type": "number", "exclusiveMinimum": 0.5},
        "urgent": {"type": "boolean"},
        "due": {"type": "string", "format": "date-time"},
        "notes": {"type": ["null", "string"]},
        "parent": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 1}]},
        "kind": {"oneOf": [{"const": "feature"}, {"const": "bug"}]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "uniqueItems": True},
        "blockedBy": {"type": "array", "items": {"type": "integer"}},
        "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
    },
    "required": ["title", "status", "owner", "estimate", "tags", "steps"],
    "additionalProperties": False,
    "$defs": {
        "status": {"enum": ["pending", "done"]},
        "step": {
            "type": "object",
            "properties": {"id": {"type": "integer", "exclusiveMinimum": 0}},
            "required": ["id"],
            "additionalProperties": False,
        },
    },
    "definitions": {
        "person": {
            "allOf": [
                {"type": "object", "properties": {"name": {"type": "string"}}},
                {"properties": {"email": {"type": "string", "format": "email"}}},
            ],
            "required": ["name", "email"],
        }
    },
}


def assert_valid(instance: Any, schema: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.Draft202012Validator(schema, format_checker=checker).validate(instance)


def test_schema_instance() -> None:
    value = pe.schema_instance(TASK_SCHEMA)
    assert_valid(value, TASK_SCHEMA)
    assert value["title"].startswith("emulated title") and 30 <= len(value["title"]) <= 40
    assert value["status"] == "pending"
    assert value["owner"] == {"name": "emulated name", "email": "emulated@example.com"}
    assert (value["estimate"], value["score"], value["urgent"]) == (3, 1, True)
    assert (value["notes"], value["parent"], value["kind"]) == ("emulated notes", 1, "feature")
    assert value["tags"] == ["emulated tags", "emulated tags 2"]
    assert value["blockedBy"] == []  # a list of references stays empty
    assert value["steps"] == [{"id": 1}]  # a list of objects shows one item
    assert pe.schema_instance({"type": "integer", "maximum": 0}) == 0
    assert pe.schema_instance({"type": "null"}) is None


def structured_body(**extra: Any) -> dict[str, Any]:
    return chat_body("balanced", **extra)


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "task", "strict": True, "schema": schema},
    }


def test_openai_json_schema_answer(emu: Running) -> None:
    body = structured_body(response_format=json_schema_format(TASK_SCHEMA))
    plain = emu.http.post(
        f"{emu.url}/v1/chat/completions", json=body, headers=openai_headers(), timeout=5
    ).json()
    choice = plain["choices"][0]
    content = choice["message"]["content"]
    assert_valid(json.loads(content), TASK_SCHEMA)
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    assert plain["usage"]["completion_tokens"] == len(content.split())
    assert emu.requests_log()[-1]["completion_tokens"] == len(content.split())

    body.update(stream=True, stream_options={"include_usage": True})
    response = emu.http.post(
        f"{emu.url}/v1/chat/completions", json=body, headers=openai_headers(), timeout=5
    )
    chunks = [json.loads(data) for _, data in sse_events(response.text)[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(delta.get("content") or "" for delta in deltas) == content
    assert chunks[-1]["usage"] == plain["usage"]


def weather_tool(name: str = "get_weather") -> dict[str, Any]:
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city", "days"],
    }
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


def test_openai_tool_call(emu: Running) -> None:
    def chat(**extra: Any) -> dict[str, Any]:
        response = emu.http.post(
            f"{emu.url}/v1/chat/completions",
            json=structured_body(**extra),
            headers=openai_headers(),
            timeout=5,
        )
        assert response.status_code == 200, response.text
        return response.json()

    tools = [weather_tool("get_time"), weather_tool()]
    forced = {"type": "function", "function": {"name": "get_weather"}}
    answer = chat(tools=tools, tool_choice=forced)
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    arguments = call["function"]["arguments"]
    assert json.loads(arguments) == {"city": "emulated city", "days": 1}
    assert answer["usage"]["completion_tokens"] == len(arguments.split())

    required = chat(tools=tools, tool_choice="required")["choices"][0]["message"]
    assert required["tool_calls"][0]["function"]["name"] == "get_time"
    only = chat(tools=[weather_tool()])["choices"][0]
    assert only["message"]["tool_calls"][0]["function"]["name"] == "get_weather"

    text = "emulated reply from openai model balanced"
    for extra in ({}, {"tools": tools}, {"tools": tools, "tool_choice": "none"}):
        message = chat(**extra)["choices"][0]["message"]
        assert (message["content"], message.get("tool_calls")) == (text, None)
    after_result = structured_body(tools=[weather_tool()])
    after_result["messages"].append({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
    response = emu.http.post(
        f"{emu.url}/v1/chat/completions", json=after_result, headers=openai_headers(), timeout=5
    )
    assert response.json()["choices"][0]["message"]["content"] == text

    response = emu.http.post(
        f"{emu.url}/v1/chat/completions",
        json=structured_body(tools=tools, tool_choice=forced, stream=True),
        headers=openai_headers(),
        timeout=5,
    )
    chunks = [json.loads(data) for _, data in sse_events(response.text)[:-1]]
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert (first["index"], first["function"]) == (0, {"name": "get_weather", "arguments": ""})
    streamed = "".join(
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-1]
    )
    assert streamed == arguments
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


# The prompts of Task Master 0.43.1 (add-task, expand, parse-prd), trimmed: through the
# openai-compatible provider it sends response_format json_object and no schema.
ADD_TASK_SYSTEM = """Generate a single new task, adhering strictly to the provided JSON schema.

IMPORTANT: Your response MUST be a JSON object with the following structure:
{
  "title": "string",
  "description": "string",
  "details": "string",
  "testStrategy": "string",
  "dependencies": [array of numbers]
}

Do not include any other top-level properties."""
ADD_TASK_USER = """Return your answer as a single JSON object matching the schema precisely:
      {
        "title": "Task title goes here",
        "dependencies": [1, 3] // Example: IDs of tasks that must be completed before this task
  }"""
EXPAND_SYSTEM = """IMPORTANT: Your response MUST be a JSON object with a "subtasks" property \
containing an array of subtask objects. Each subtask must include ALL of the following fields:
- id: MUST be sequential integers starting EXACTLY from 1. First subtask id=1, second id=1+1.
- title: A clear, actionable title (5-200 characters)
- description: A detailed description (minimum 10 characters)
- dependencies: An array of task IDs this subtask depends on (can be empty [])
- details: Implementation details (minimum 20 characters)
- status: Must be "pending" for new subtasks
- testStrategy: Testing approach (can be null)

You may optionally include a "metadata" object."""
EXPAND_USER = "Break down this task into exactly 3 specific subtasks:\n\nTask ID: 1"
PARSE_PRD_SYSTEM = """Each task should follow this JSON structure:
{
	"id": number,
	"title": string,
	"status": "pending",
	"dependencies": number[] (IDs of tasks this depends on),
	"priority": "high" | "medium" | "low",
	"details": string (implementation details)
}

Guidelines:
1. Unless complexity warrants otherwise, create exactly 2 tasks, numbered sequentially"""
PARSE_PRD_USER = """IMPORTANT: Your response must be a JSON object with a "tasks" property \
containing an array of task objects."""


def json_object_answer(emu: Running, system: str, user: str) -> Any:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    body = {"model": "balanced", "messages": messages, "response_format": {"type": "json_object"}}
    response = emu.http.post(
        f"{emu.url}/v1/chat/completions", json=body, headers=openai_headers(), timeout=5
    )
    assert response.status_code == 200, response.text
    return json.loads(response.json()["choices"][0]["message"]["content"])


def test_openai_json_object_follows_the_prompt(emu: Running) -> None:
    assert json_object_answer(emu, ADD_TASK_SYSTEM, ADD_TASK_USER) == {
        "title": "emulated title",
        "description": "emulated description",
        "details": "emulated details",
        "testStrategy": "emulated testStrategy",
        "dependencies": [],
    }
    subtasks = json_object_answer(emu, EXPAND_SYSTEM, EXPAND_USER)["subtasks"]
    assert [s["id"] for s in subtasks] == [1, 2, 3]
    for subtask in subtasks:  # Task Master's own limits on a subtask
        assert set(subtask) == {
            *("id", "title", "description", "dependencies", "details", "status"),
            "testStrategy",
        }
        assert len(subtask["title"]) >= 5 and len(subtask["description"]) >= 10
        assert len(subtask["details"]) >= 20 and subtask["details"].startswith("emulated details")
        assert (subtask["status"], subtask["dependencies"]) == ("pending", [])
    tasks = json_object_answer(emu, PARSE_PRD_SYSTEM, PARSE_PRD_USER)["tasks"]
    assert tasks[1] == {
        "id": 2,
        "title": "emulated title 2",
        "status": "pending",
        "dependencies": [],
        "priority": "high",
        "details": "emulated details 2",
    }
    assert len(tasks) == 2
    fallback = json_object_answer(emu, "be brief", "say hi in JSON")
    assert fallback == {"reply": "emulated reply from openai model balanced"}


def test_anthropic_forced_tool_use(emu: Running) -> None:
    tool = {"name": "record_task", "input_schema": TASK_SCHEMA}
    body = anthropic_body(tools=[tool], tool_choice={"type": "tool", "name": "record_task"})
    answer = emu.http.post(
        f"{emu.url}/v1/messages", json=body, headers=anthropic_headers(), timeout=5
    ).json()
    [block] = answer["content"]
    assert block["type"] == "tool_use" and block["name"] == "record_task"
    assert block["id"].startswith("toolu_")
    assert_valid(block["input"], TASK_SCHEMA)
    assert answer["stop_reason"] == "tool_use"
    assert answer["usage"]["output_tokens"] == len(json.dumps(block["input"]).split())

    body["stream"] = True
    response = emu.http.post(
        f"{emu.url}/v1/messages", json=body, headers=anthropic_headers(), timeout=5
    )
    payloads = [json.loads(data) for _, data in sse_events(response.text)]
    started = payloads[1]["content_block"]
    assert {**started, "id": None} == {**block, "id": None, "input": {}}
    partial = "".join(
        p["delta"]["partial_json"] for p in payloads if p["type"] == "content_block_delta"
    )
    assert json.loads(partial) == block["input"]
    assert payloads[-2]["delta"]["stop_reason"] == "tool_use"

    auto = emu.http.post(
        f"{emu.url}/v1/messages",
        json=anthropic_body(tools=[tool]),
        headers=anthropic_headers(),
        timeout=5,
    ).json()
    assert (
        auto["content"][0]["text"] == "emulated reply from anthropic model claude-3-5-haiku-latest"
    )


def test_openai_sdk_structured(emu: Running) -> None:
    openai = pytest.importorskip("openai")
    pydantic = pytest.importorskip("pydantic")

    class Step(pydantic.BaseModel):
        id: int
        title: str

    class Plan(pydantic.BaseModel):
        name: str
        steps: list[Step]
        done: bool | None

    client = openai.OpenAI(base_url=f"{emu.url}/v1", api_key=OPENAI_KEY, max_retries=0)
    messages = [{"role": "user", "content": "plan the day"}]
    completion = client.chat.completions.parse(
        model="gpt-4o", messages=messages, response_format=Plan
    )
    plan = completion.choices[0].message.parsed
    assert plan == Plan(name="emulated name", steps=[Step(id=1, title="emulated title")], done=True)

    tool = openai.pydantic_function_tool(Plan)
    forced = {"type": "function", "function": {"name": "Plan"}}
    completion = client.chat.completions.parse(
        model="gpt-4o", messages=messages, tools=[tool], tool_choice=forced
    )
    [call] = completion.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == plan


def gemini_json(emu: Running, system: str, user: str, **config: Any) -> Any:
    url = f"{emu.url}/v1beta/models/gemini-2.5-flash:generateContent?key={GEMINI_KEY}"
    body = {
        "systemInstruction": {"parts": [{"text": system}]},
        "contents": [{"role": "user", "parts": [{"text": user}]}],
        "generationConfig": {"responseMimeType": "application/json", **config},
    }
    answer = emu.http.post(url, json=body, timeout=5).json()
    text = answer["candidates"][0]["content"]["parts"][0]["text"]
    assert answer["usageMetadata"]["candidatesTokenCount"] == len(text.split())
    return json.loads(text)


def test_gemini_json_mode_follows_its_schema_or_the_prompt(emu: Running) -> None:
    """LiteLLM sends an OpenAI json_object to Gemini as responseMimeType application/json
    (Task Master's balanced role reaches Gemini first in the lab)."""
    assert gemini_json(emu, ADD_TASK_SYSTEM, ADD_TASK_USER)["title"] == "emulated title"
    subtasks = gemini_json(emu, EXPAND_SYSTEM, EXPAND_USER)["subtasks"]
    assert len(subtasks) == 3 and all(s["status"] == "pending" for s in subtasks)
    openapi = {"type": "OBJECT", "properties": {"n": {"type": "INTEGER", "nullable": True}}}
    assert gemini_json(emu, "x", "y", responseSchema=openapi) == {"n": 1}
    assert_valid(gemini_json(emu, "x", "y", responseJsonSchema=TASK_SCHEMA), TASK_SCHEMA)
    assert gemini_json(emu, "be brief", "hi") == {
        "reply": "emulated reply from gemini model gemini-2.5-flash"
    }
