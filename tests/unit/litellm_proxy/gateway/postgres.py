"""A throwaway Postgres for the ledger's database tests.

The lab's stand-in image (`llmlab/postgres:*`, Debian's PostgreSQL 17, built by
scripts/lab.py) in a container on this machine's Docker. Tests that use it
carry ``@pytest.mark.engine``; without an engine or the image they are skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_image() -> str | None:
    if shutil.which("docker") is None:
        return None
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return None
    if info.returncode != 0:
        return None
    wanted = os.environ.get("LAB_POSTGRES_IMAGE")
    listing = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "llmlab/postgres"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if wanted and wanted in listing:
        return wanted
    return listing[0] if listing else None


class Postgres:
    def __init__(self, image: str) -> None:
        self.port = free_port()
        self.name = f"ledger-unit-{uuid.uuid4().hex[:8]}"
        self.dsn = f"postgresql://ledger:ledger-unit-password@127.0.0.1:{self.port}/ledger"
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                self.name,
                "-e",
                "POSTGRES_USER=ledger",
                "-e",
                "POSTGRES_PASSWORD=ledger-unit-password",
                "-e",
                "POSTGRES_DB=ledger",
                "-p",
                f"127.0.0.1:{self.port}:5432",
                image,
            ],
            check=True,
            capture_output=True,
        )
        self.wait()

    def wait(self, deadline_s: float = 60) -> None:
        import psycopg

        end = time.monotonic() + deadline_s
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        subprocess.run(["docker", "stop", "-t", "5", self.name], check=True, capture_output=True)

    def start(self) -> None:
        subprocess.run(["docker", "start", self.name], check=True, capture_output=True)
        self.wait()

    def query(self, sql: str, *params: Any) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.dsn, client_encoding="utf8") as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], check=False, capture_output=True)
