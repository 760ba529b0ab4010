#!/usr/bin/env python3
"""Where the lab's Alertmanager delivers: a webhook endpoint and an SMTP server
that keep what they receive, for the tests to read.

A stand-in for the people of the house: their ntfy server, their mail server,
their Home Assistant webhook. It keeps what arrives, for the tests to read,
and judges nothing, except where a real receiver would: what the roles rely on
of ntfy, the one receiver that works on what it is sent, is reproduced here,
each from its official source:

- message templating (ntfy v2.10.0 and later; release notes of v2.10.0 and
  https://docs.ntfy.sh/publish/#message-templating): a publish with
  ``tpl=1`` (or ``yes``/``true``) in the query takes the title from ``t`` (or
  ``title``) and the message from ``m`` (or ``message``), each a Go
  text/template executed over the JSON body; a body that is not a JSON
  object, or a template that does not parse or run, is refused with 400;
- the priority from ``p`` (or ``priority``), and the token as
  ``Authorization: Bearer <token>`` (https://docs.ntfy.sh/publish/,
  "Access tokens").

The templates are run by :func:`render_go_template`, which knows the part of
Go's text/template the role's templates use (field paths, ``range``, ``if``
with ``eq``, ``else``, ``end``, the ``{{-``/``-}}`` trims, ``<no value>`` for
a missing key) and refuses any other action, so a template the stand-in cannot
judge fails the lab instead of passing unread.

    POST   /<any path>   a webhook call: kept with its path, query, the headers
                         below and its JSON body -> 200 {"ok": true}; with
                         ``tpl=1`` also what ntfy would show ("ntfy": title,
                         message, priority), or 400 as ntfy answers
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
import re
import socketserver
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEPT_HEADERS = ("authorization", "content-type", "user-agent")
MAX_BODY = 1 << 20
TRUE = ("1", "yes", "true")


class TemplateError(ValueError):
    """A template ntfy would refuse (or this stand-in cannot judge)."""


ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.DOTALL)
ARGUMENT = re.compile(r'"((?:[^"\\]|\\.)*)"|(\.[A-Za-z0-9_.]*)')


def _lookup(dot: Any, path: str) -> Any:
    """`.a.b` on maps, as Go's text/template resolves it; None for a missing key."""
    value = dot
    for name in [n for n in path.split(".") if n]:
        if not isinstance(value, dict):
            raise TemplateError(f"can't evaluate field {name} in {type(value).__name__}")
        value = value.get(name)
    return value


def _argument(dot: Any, text: str) -> Any:
    match = ARGUMENT.fullmatch(text.strip())
    if match is None:
        raise TemplateError(f"unsupported argument {text!r}")
    if match.group(1) is not None:
        return json.loads(f'"{match.group(1)}"')
    return _lookup(dot, match.group(2))


def _pipeline(dot: Any, text: str) -> Any:
    if text.startswith("eq "):
        args = [m.group(0) for m in ARGUMENT.finditer(text[3:])]
        if len(args) < 2 or "".join(args).replace(" ", "") != text[3:].replace(" ", ""):
            raise TemplateError(f"unsupported pipeline {text!r}")
        first = _argument(dot, args[0])
        return any(first == _argument(dot, a) for a in args[1:])
    return _argument(dot, text)


def _truth(value: Any) -> bool:
    return value not in (None, False, 0, "") and value != [] and value != {}


def _shown(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise TemplateError("a map or list is printed in Go's own format; use its fields")
    return str(value)


def _parse(template: str) -> list[Any]:
    """Text and actions as a tree: ("text", s), ("value", p), ("range"|"if", p, body, else)."""
    tokens: list[tuple[str, str]] = []
    position = 0
    for match in ACTION.finditer(template):
        text = template[position : match.start()]
        if match.group(1):
            text = text.rstrip()
        if tokens and tokens[-1][0] == "trim-next":
            tokens.pop()
            text = text.lstrip()
        tokens.append(("text", text))
        tokens.append(("action", match.group(2)))
        if match.group(3):
            tokens.append(("trim-next", ""))
        position = match.end()
    tail = template[position:]
    if tokens and tokens[-1][0] == "trim-next":
        tokens.pop()
        tail = tail.lstrip()
    if "{{" in tail:
        raise TemplateError("unclosed action")
    tokens.append(("text", tail))

    def block(at: int, closing: tuple[str, ...]) -> tuple[list[Any], int, str]:
        nodes: list[Any] = []
        while at < len(tokens):
            kind, text = tokens[at]
            at += 1
            if kind == "text":
                nodes.append(("text", text))
                continue
            word = text.split(" ", 1)[0]
            if word in closing:
                return nodes, at, word
            if word in ("range", "if"):
                body, at, ended = block(at, ("else", "end"))
                otherwise: list[Any] = []
                if ended == "else":
                    otherwise, at, _ = block(at, ("end",))
                nodes.append((word, text[len(word) :].strip(), body, otherwise))
            elif word in ("else", "end"):
                raise TemplateError(f"unexpected {{{{{word}}}}}")
            elif text.startswith(".") or text.startswith("eq "):
                nodes.append(("value", text))
            else:
                raise TemplateError(f"unsupported action {{{{{text}}}}}")
        if closing:
            raise TemplateError(f"unexpected EOF: missing {{{{{closing[-1]}}}}}")
        return nodes, at, ""

    return block(0, ())[0]


def _run(nodes: list[Any], dot: Any) -> str:
    out: list[str] = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "value":
            out.append(_shown(_pipeline(dot, node[1])))
        elif node[0] == "if":
            out.append(_run(node[2] if _truth(_pipeline(dot, node[1])) else node[3], dot))
        else:  # range
            items = _pipeline(dot, node[1])
            if items is None:
                continue
            if not isinstance(items, list):
                raise TemplateError(f"range can't iterate over {_shown(items)}")
            out.extend(_run(node[2], item) for item in items)
            if not items:
                out.append(_run(node[3], dot))
    return "".join(out)


def render_go_template(template: str, data: Any) -> str:
    """`template` run over `data` as Go's text/template would, for the subset above."""
    return _run(_parse(template), data)


def ntfy_view(query: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
    """What ntfy makes of a templated publish: (200, title/message/priority) or (400, error)."""
    if not isinstance(body, dict):
        return 400, {"error": "invalid request: message body must be JSON if templating is on"}
    shown: dict[str, Any] = {"priority": query.get("p") or query.get("priority") or "default"}
    for field, keys in (("title", ("t", "title")), ("message", ("m", "message"))):
        template = next((query[k] for k in keys if k in query), "")
        try:
            shown[field] = render_go_template(template, body)
        except TemplateError as error:
            return 400, {"error": f"invalid request: template {field}: {error}"}
    return 200, shown


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
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        call: dict[str, Any] = {
            "path": parts.path,
            "query": query,
            "headers": {k: v for k, v in self.headers.items() if k.lower() in KEPT_HEADERS},
            "body": body,
        }
        status, answer = 200, {"ok": True}
        if (query.get("tpl") or query.get("template") or "").lower() in TRUE:
            status, call["ntfy"] = ntfy_view(query, body)
            answer = call["ntfy"] if status != 200 else answer
        self.server.inbox.add_call(call)
        self._send(status, answer)


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
