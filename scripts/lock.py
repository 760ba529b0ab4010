#!/usr/bin/env python3
"""Regenerate the hash-pinned lock files from their .in sources (`make lock`).

    python3 scripts/lock.py

Every lock pins each package, direct or not, to one version with the hashes
of all its files on PyPI, so that `pip install -r <lock>` (which then
requires hashes) installs exactly what was reviewed. The controller's locks
are resolved for every Python from 3.11 up (`--universal`); each later lock is
constrained by the one before, so the packages they share stay the same.
The stand-in LiteLLM image's lock is resolved for the Python of its Debian
release. Needs `uv` (`pip install uv`); run it, review the diff, commit.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "tests/lab/images/litellm"
# (source, lock, python version, constraints)
LOCKS = (
    ("requirements.in", "requirements.txt", "3.11", None),
    ("requirements-test.in", "requirements-test.txt", "3.11", "requirements.txt"),
    ("requirements-bench.in", "requirements-bench.txt", "3.11", "requirements-test.txt"),
    (IMAGE / "requirements.in", IMAGE / "requirements.txt", "3.13", None),
)


def main() -> int:
    uv = shutil.which("uv")
    if uv is None:
        print("scripts/lock.py needs uv: pip install uv", file=sys.stderr)
        return 2
    for source, lock, python, constraints in LOCKS:
        argv = [uv, "pip", "compile", "--quiet", "--universal", "--generate-hashes"]
        argv += ["--python-version", python, "--no-header", "--custom-compile-command"]
        argv += ["make lock", str(source), "-o", str(lock)]
        if constraints:
            argv += ["--constraint", str(constraints)]
        print("$", " ".join(argv), flush=True)
        subprocess.run(argv, cwd=REPO, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
