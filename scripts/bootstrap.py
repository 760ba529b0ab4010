"""Create the project's virtualenv with the pinned requirements (standard library only).

Runs under the system's python3 on a bare Debian/Ubuntu machine: installs
python3-venv when `venv` cannot bootstrap pip, creates `.venv`, installs the
requirements file, and remembers its hash so that the next run skips pip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("LLM_GATEWAY_VENV", REPO / ".venv"))


def _say(message: str) -> None:
    print(f"[bootstrap] {message}", file=sys.stderr, flush=True)


def _requirements_digest(requirements: Path) -> str:
    sha = hashlib.sha256()
    pending = [requirements]
    while pending:
        path = pending.pop()
        text = path.read_text()
        sha.update(text.encode())
        for line in text.splitlines():
            if line.startswith("-r "):
                pending.append(path.parent / line[3:].strip())
    return sha.hexdigest()[:16]


def _can_make_venvs() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import ensurepip, venv"], capture_output=True, check=False
    )
    return probe.returncode == 0


def _apt_install(*packages: str) -> None:
    if shutil.which("apt-get") is None:
        raise SystemExit(f"install {' '.join(packages)} with your package manager, then re-run")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


def ensure_venv(requirements: Path) -> Path:
    """Return the venv's bin directory, with `requirements` installed."""
    marker = VENV / f".installed-{requirements.name}-{_requirements_digest(requirements)}"
    bin_dir = VENV / "bin"
    if marker.is_file() and (bin_dir / "python").exists():
        return bin_dir
    if not (bin_dir / "python").exists():
        if not _can_make_venvs():
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            _say(f"installing python{version}-venv")
            _apt_install(f"python{version}-venv")
        _say(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    _say(f"installing {requirements.name} into {VENV} (pinned versions)")
    # The lock is also given as constraints: a package asked for with an extra
    # (litellm needs `httpx[http2]`) is a requirement of its own to pip, which
    # otherwise looks at the newest release first and, in hash-checking mode,
    # refuses it as unpinned before it would backtrack to the locked one.
    subprocess.run(
        [
            str(bin_dir / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
            "-c",
            str(requirements),
        ],
        check=True,
    )
    for stale in VENV.glob(f".installed-{requirements.name}-*"):
        stale.unlink()
    marker.touch()
    return bin_dir


def reexec_in_venv(requirements: Path) -> None:
    """Make sure the venv exists, then continue this script with the venv's python."""
    bin_dir = ensure_venv(requirements)
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    os.execv(str(bin_dir / "python"), [str(bin_dir / "python"), *sys.argv])  # noqa: S606
