"""HAProxy's runtime API on a lab gateway (`/run/haproxy/admin.sock`, root's),
for the tests of the gateways' fronts."""

from __future__ import annotations

import csv
import io
import shlex

import testinfra

SOCKET = "/run/haproxy/admin.sock"  # roles/litellm_proxy/vars/main.yml
SCRIPT = (
    "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
    "s.sendall(sys.argv[2].encode() + b'\\n'); out = b''\n"
    "while chunk := s.recv(65536): out += chunk\n"
    "sys.stdout.write(out.decode())"
)


def runtime_api(gateway: testinfra.host.Host, command: str) -> str:
    """One command of HAProxy's runtime API on the gateway, as root."""
    result = gateway.run(f"python3 -c {shlex.quote(SCRIPT)} {SOCKET} {shlex.quote(command)}")
    assert result.rc == 0, result.stderr
    return result.stdout


def servers(gateway: testinfra.host.Host, backend: str = "litellm") -> dict[str, dict[str, str]]:
    """`show stat` of one backend's servers, by server name (status, scur...)."""
    rows = csv.DictReader(io.StringIO(runtime_api(gateway, "show stat").lstrip("# ")))
    return {
        row["svname"]: row
        for row in rows
        if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")
    }
