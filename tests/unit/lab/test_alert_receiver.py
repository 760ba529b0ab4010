"""The lab's alert receiver keeps what Alertmanager sends it, by webhook and by mail."""

from __future__ import annotations

import json
import smtplib
import threading
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from tests.emulator.alert_receiver import Inbox, SmtpServer, WebhookServer


@pytest.fixture
def receiver() -> Iterator[tuple[str, int]]:
    inbox = Inbox()
    web = WebhookServer(("127.0.0.1", 0), inbox)
    smtp = SmtpServer(("127.0.0.1", 0), inbox)
    for server in (web, smtp):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{web.server_address[1]}", smtp.server_address[1]
    for server in (web, smtp):
        server.shutdown()
        server.server_close()


def get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def test_a_webhook_call_is_kept_with_its_query_token_and_body(receiver: tuple[str, int]) -> None:
    url, _ = receiver
    request = urllib.request.Request(
        f"{url}/ntfy/llm-gateway?tpl=1&t=%5B%7B%7B.status%7D%7D%5D",
        data=json.dumps({"status": "firing", "alerts": [{"labels": {"alertname": "X"}}]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer tk_fake"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200
    (call,) = get(f"{url}/_received")
    assert call["path"] == "/ntfy/llm-gateway"
    assert call["query"] == {"tpl": "1", "t": "[{{.status}}]"}
    assert call["headers"]["Authorization"] == "Bearer tk_fake"
    assert call["body"]["alerts"][0]["labels"]["alertname"] == "X"


def test_a_mail_is_kept_with_its_envelope_and_text(receiver: tuple[str, int]) -> None:
    url, port = receiver
    message = EmailMessage()
    message["Subject"] = "[FIRING:1] GatewayDown"
    message["From"] = "alertmanager@home.arpa"
    message["To"] = "admin@home.arpa"
    message.set_content("line one\n.leading dot\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        client.send_message(message)
    (mail,) = get(f"{url}/_mail")
    assert mail["from"] == "<alertmanager@home.arpa>"
    assert mail["to"] == ["<admin@home.arpa>"]
    assert "Subject: [FIRING:1] GatewayDown" in mail["data"]
    assert "\n.leading dot" in mail["data"]
    request = urllib.request.Request(f"{url}/_received", method="DELETE")
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert json.loads(answer.read()) == {"cleared": 1}
    assert get(f"{url}/_mail") == []
