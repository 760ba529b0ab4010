"""Small helpers to run commands and talk to the person at the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

_START = time.monotonic()


def log(message: str) -> None:
    elapsed = time.monotonic() - _START
    print(f"[lab {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str],
    *,
    extra_env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    capture: bool = False,
    check: bool = True,
    stdin: int | None = None,
    stdout: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` without a shell; raise with the command's words if it fails."""
    env = dict(os.environ)
    if extra_env:
        env.update(extra_env)
    result = subprocess.run(
        list(argv),
        env=env,
        cwd=cwd,
        text=True,
        capture_output=capture,
        stdin=stdin,
        stdout=stdout if not capture else None,
        check=False,
    )
    if check and result.returncode != 0:
        detail = f"\n{result.stderr}" if capture and result.stderr else ""
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(argv)}{detail}")
    return result
