"""Steady, bounded load from the client's side, for the lab's tests of the
gateways behind one address: a few threads that each send one chat request
after another until told to stop, recording for each when it started and
ended (monotonic seconds), its status (0: no answer) and which gateway's proxy
answered (the fronts' X-LLM-Gateway header).

Each request opens a connection of its own (`Connection: close`): when the
virtual address moves, a kept-alive connection to the old holder is gone with
it, and the first request on it would fail for a reason no client that
reconnects sees.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests


@dataclass(frozen=True)
class Call:
    start: float
    end: float
    status: int
    gateway: str
    error: str = ""


@dataclass
class Load:
    url: str
    key: str
    model: str = "gpt-4o-mini"
    concurrency: int = 4
    timeout_s: float = 60
    calls: list[Call] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _one(self, session: requests.Session) -> Call:
        start = time.monotonic()
        try:
            answer = session.post(
                f"{self.url}/v1/chat/completions",
                json={"model": self.model, "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {self.key}", "Connection": "close"},
                timeout=self.timeout_s,
            )
        except requests.RequestException as error:
            return Call(start, time.monotonic(), 0, "", f"{type(error).__name__}: {error}")
        gateway = answer.headers.get("X-LLM-Gateway", "")
        error = "" if answer.status_code == 200 else answer.text[:300]
        return Call(start, time.monotonic(), answer.status_code, gateway, error)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                call = self._one(session)
                with self._lock:
                    self.calls.append(call)

    def start(self) -> Load:
        for number in range(self.concurrency):
            thread = threading.Thread(target=self._run, name=f"load-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Call]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 10)
        with self._lock:
            return sorted(self.calls, key=lambda call: call.start)

    def run_for(self, seconds: float) -> list[Call]:
        self.start()
        time.sleep(seconds)
        return self.stop()


def failed(calls: list[Call]) -> list[Call]:
    return [call for call in calls if call.status != 200]


def per_gateway(calls: list[Call]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        if call.status == 200:
            counts[call.gateway] = counts.get(call.gateway, 0) + 1
    return counts
