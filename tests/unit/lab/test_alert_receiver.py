"""The lab's alert receiver keeps what Alertmanager sends it, by webhook and by mail."""

from __future__ import annotations

import json
import smtplib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from tests.emulator.alert_receiver import (
    Inbox,
    SmtpServer,
    TemplateError,
    WebhookServer,
    render_go_template,
)


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
    assert call["ntfy"] == {"title": "[firing]", "message": "", "priority": "default"}


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


# ------------------------------------------------------- ntfy's message templating

PAYLOAD = {  # Alertmanager's webhook payload (version 4), as the lab's Alertmanager sends it
    "version": "4",
    "status": "firing",
    "receiver": "ntfy",
    "groupLabels": {"alertname": "GatewayDown"},
    "commonLabels": {"alertname": "GatewayDown", "severity": "critical"},
    "commonAnnotations": {},
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "GatewayDown", "instance": "gw1"},
            "annotations": {"summary": "The gateway on gw1 does not answer"},
        },
        {
            "status": "resolved",
            "labels": {"alertname": "GatewayDown", "instance": "gw2"},
            "annotations": {"summary": "The gateway on gw2 does not answer"},
        },
    ],
}


def test_the_roles_ntfy_templates_show_the_alert_as_ntfy_would() -> None:
    from tests.support.monitoring_role import filters

    assert render_go_template(filters.NTFY_TITLE, PAYLOAD) == "[firing] GatewayDown"
    assert render_go_template(filters.NTFY_MESSAGE, PAYLOAD) == (
        "The gateway on gw1 does not answer\nThe gateway on gw2 does not answer (resolved)\n"
    )


@pytest.mark.parametrize(
    ("template", "shown"),
    [
        ("{{.missing}}|{{.commonLabels.nothing}}", "<no value>|<no value>"),
        ("a {{- .status -}} b", "afiringb"),
        ('{{if eq .status "resolved" "firing"}}yes{{else}}no{{end}}', "yes"),
        ("{{range .nothing}}x{{end}}{{range .alerts}}{{.labels.instance}},{{end}}", "gw1,gw2,"),
        ("{{if .commonAnnotations}}x{{else}}empty{{end}}", "empty"),
    ],
)
def test_go_template_semantics_the_templates_rely_on(template: str, shown: str) -> None:
    assert render_go_template(template, PAYLOAD) == shown


@pytest.mark.parametrize(
    "template",
    ["{{.alerts}}", "{{len .alerts}}", "{{range .alerts}}x", "{{end}}", "{{.status | upper}}"],
)
def test_a_template_outside_what_the_stand_in_knows_is_refused(template: str) -> None:
    with pytest.raises(TemplateError):
        render_go_template(template, PAYLOAD)


def test_a_templated_publish_shows_what_ntfy_would_or_is_refused_like_ntfy(
    receiver: tuple[str, int],
) -> None:
    url, _ = receiver
    query = "tpl=1&t=%5B%7B%7B.status%7D%7D%5D&m=%7B%7Blen%20.alerts%7D%7D&p=high"
    for body, status in ((PAYLOAD, 400), ("not json", 400)):
        request = urllib.request.Request(
            f"{url}/ntfy/t?{query}", data=json.dumps(body).encode(), method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == status
    calls = get(f"{url}/_received")
    assert "template message" in calls[0]["ntfy"]["error"]
    assert "must be JSON" in calls[1]["ntfy"]["error"]
