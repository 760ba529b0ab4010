"""Make sure a Docker engine answers on this machine.

The lab needs a container engine. On a bare Debian/Ubuntu machine nothing is
installed and, without systemd as PID 1, nothing would start one either, so
this installs Debian's ``docker.io`` when the client or daemon is missing and
starts ``dockerd`` in the background when no engine answers.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.lab.shell import log, run

DOCKERD_LOG = Path("/var/log/llmlab-dockerd.log")


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0


def apt_install(*packages: str) -> None:
    missing = [p for p in packages if not _dpkg_installed(p)]
    if not missing:
        return
    log(f"installing Debian packages: {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], extra_env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], extra_env=env)


def _dpkg_installed(package: str) -> bool:
    status = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return status.stdout.strip() == "install ok installed"


def ensure_engine(timeout_s: float = 60.0) -> None:
    """Return once ``docker info`` answers, installing and starting dockerd if needed."""
    if engine_answers():
        return
    if shutil.which("dockerd") is None:
        apt_install("docker.io")
    if engine_answers():
        return
    log(f"starting dockerd in the background (log: {DOCKERD_LOG})")
    with DOCKERD_LOG.open("ab") as sink:
        subprocess.Popen(
            ["dockerd"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if engine_answers():
            log("docker engine is up")
            return
        time.sleep(1)
    raise SystemExit(f"dockerd did not answer within {timeout_s:.0f}s; see {DOCKERD_LOG}")
