"""What the lab's alert receiver (tests/emulator/alert_receiver.py, on the
providers host) got from Alertmanager: webhook calls and mails."""

from __future__ import annotations

import email
import email.policy
import json
import shlex
from typing import Any

import testinfra

URL = "http://127.0.0.1:8090"
REQUEST = (
    "import sys, urllib.request; "
    "r = urllib.request.Request(sys.argv[1], method=sys.argv[2]); "
    "sys.stdout.write(urllib.request.urlopen(r, timeout=15).read().decode())"
)


class AlertInbox:
    def __init__(self, host: testinfra.host.Host) -> None:
        self.host = host

    def _ask(self, path: str, method: str = "GET") -> Any:
        command = f"python3 -c {shlex.quote(REQUEST)} {shlex.quote(URL + path)} {method}"
        result = self.host.run(command)
        assert result.rc == 0, f"{method} {path} on the providers host: {result.stderr}"
        return json.loads(result.stdout)

    def clear(self) -> None:
        self._ask("/_received", "DELETE")

    def calls(self, path: str) -> list[dict[str, Any]]:
        """Webhook calls to `path`, oldest first."""
        return [c for c in self._ask("/_received") if c["path"] == path]

    def mail(self) -> list[dict[str, Any]]:
        return self._ask("/_mail")


def alerts_in(call: dict[str, Any], name: str, status: str) -> list[dict[str, Any]]:
    """The alerts called `name` with that status in one of Alertmanager's webhook bodies."""
    body = call.get("body") or {}
    return [
        a
        for a in body.get("alerts", [])
        if a.get("labels", {}).get("alertname") == name and a.get("status") == status
    ]


def mail_text(message: dict[str, Any]) -> tuple[str, str]:
    """A kept mail's subject and its text parts, decoded (Alertmanager sends
    quoted-printable HTML and text)."""
    parsed = email.message_from_string(message["data"], policy=email.policy.default)
    parts = [p for p in parsed.walk() if p.get_content_maintype() == "text"]
    return str(parsed["Subject"] or ""), "\n".join(str(p.get_content()) for p in parts)
