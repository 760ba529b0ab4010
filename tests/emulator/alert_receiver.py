#!/usr/bin/env python3
"""Where the lab's Alertmanager delivers: a webhook endpoint and an SMTP server
that keep what they receive, for the tests to read.

A stand-in for the people of the house: their ntfy server, their mail server,
their Home Assistant webhook. It accepts anything and judges nothing; the tests
read what arrived.

    POST   /<any path>   a webhook call: kept with its path, query, the headers
                         below and its JSON body -> 200 {"ok": true}
    GET    /_received    every webhook call, oldest first
    GET    /_mail        every message the SMTP server took: envelope and text
    DELETE /_received    forgets both -> {"cleared": N}
    GET    /_health      {"ok": true}

The SMTP side speaks the commands Alertmanager's client sends over plain TCP
(EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and offers no AUTH or STARTTLS.
Standard library only: it runs on the lab's providers host with Debian's python3.
"""

from __future__ import annotations

import argparse
import json
import socketserver
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEPT_HEADERS = ("authorization", "content-type", "user-agent")
MAX_BODY = 1 << 20


class Inbox:
    """What arrived, shared by both servers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.mail: list[dict[str, Any]] = []

    def add_call(self, call: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append(call)

    def add_mail(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.mail.append(message)

    def snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with self.lock:
            return list(self.calls), list(self.mail)

    def clear(self) -> int:
        with self.lock:
            count = len(self.calls) + len(self.mail)
            self.calls.clear()
            self.mail.clear()
            return count


class WebhookHandler(BaseHTTPRequestHandler):
    server: WebhookServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        calls, mail = self.server.inbox.snapshot()
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_health":
            self._send(200, {"ok": True})
        elif path == "/_received":
            self._send(200, calls)
        elif path == "/_mail":
            self._send(200, mail)
        else:
            self._send(404, {"error": f"no {path} here"})

    def do_DELETE(self) -> None:
        self._send(200, {"cleared": self.server.inbox.clear()})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, {"error": "too large"})
            return
        raw = self.rfile.read(length)
        try:
            body: Any = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode(errors="replace")
        parts = urllib.parse.urlsplit(self.path)
        self.server.inbox.add_call(
            {
                "path": parts.path,
                "query": dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)),
                "headers": {k: v for k, v in self.headers.items() if k.lower() in KEPT_HEADERS},
                "body": body,
            }
        )
        self._send(200, {"ok": True})


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], inbox: Inbox) -> None:
        super().__init__(address, WebhookHandler)
        self.inbox = inbox


class SmtpHandler(socketserver.StreamRequestHandler):
    server: SmtpServer

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())
        self.wfile.flush()

    def handle(self) -> None:
        self.reply("220 lab-alerts ESMTP")
        sender, recipients = "", []
        while True:
            raw = self.rfile.readline(4096)
            if not raw:
                return
            command = raw.decode(errors="replace").strip()
            verb = command[:4].upper()
            if verb == "EHLO":
                self.reply("250-lab-alerts")
                self.reply("250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 lab-alerts")
            elif verb == "MAIL":
                sender, recipients = command.partition(":")[2].strip(), []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(command.partition(":")[2].strip())
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                lines = []
                while True:
                    line = self.rfile.readline(1 << 16)
                    if not line or line in (b".\r\n", b".\n"):
                        break
                    lines.append(line[1:] if line.startswith(b"..") else line)
                self.server.inbox.add_mail(
                    {
                        "from": sender,
                        "to": recipients,
                        "data": b"".join(lines).decode(errors="replace"),
                    }
                )
                self.reply("250 OK: kept")
            elif verb in ("RSET", "NOOP"):
                if verb == "RSET":
                    sender, recipients = "", []
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not here")


class SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], inbox: Inbox) -> None:
        super().__init__(address, SmtpHandler)
        self.inbox = inbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8090)
    parser.add_argument("--smtp-port", type=int, default=2525)
    options = parser.parse_args()
    inbox = Inbox()
    smtp = SmtpServer((options.listen, options.smtp_port), inbox)
    threading.Thread(target=smtp.serve_forever, daemon=True).start()
    WebhookServer((options.listen, options.http_port), inbox).serve_forever()


if __name__ == "__main__":
    main()
