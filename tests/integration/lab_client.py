"""A client for the provider emulator (the stand-in for the cloud APIs and Ollama)."""

from __future__ import annotations

import requests


class Emulator:
    """The stand-in for the cloud APIs / Ollama: its control API and request log."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def set(self, provider: str, mode: str = "ok", **extra: int) -> None:
        answer = requests.put(
            f"{self.url}/_control/{provider}", json={"mode": mode, **extra}, timeout=5
        )
        answer.raise_for_status()

    def requests(self, provider: str | None = None) -> list[dict]:
        params = {"provider": provider} if provider else {}
        answer = requests.get(f"{self.url}/_requests", params=params, timeout=5)
        answer.raise_for_status()
        return answer.json()

    def clear(self) -> None:
        requests.delete(f"{self.url}/_requests", timeout=5).raise_for_status()
