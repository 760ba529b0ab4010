#!/usr/bin/env python3
"""Run every test of the project: linters, unit tests, and the Molecule lab.

    python3 scripts/test.py            # everything (what CI runs)
    python3 scripts/test.py lint unit  # only some stages

On a bare machine it creates .venv with the pinned requirements, installs and
starts a Docker engine if none answers, builds the lab's images (cached by
their inputs), and runs `molecule test` on the default scenario.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.bootstrap import reexec_in_venv  # noqa: E402

STAGES = ("lint", "unit", "lab")


def _run(argv: list[str]) -> bool:
    print(f"\n$ {' '.join(argv)}", flush=True)
    return subprocess.call(argv, cwd=REPO) == 0


def lint(bin_dir: Path) -> bool:
    results = [
        _run([str(bin_dir / "yamllint"), "--strict", "."]),
        _run([str(bin_dir / "ansible-lint")]),
        _run([str(bin_dir / "ruff"), "check", "."]),
        _run([str(bin_dir / "ruff"), "format", "--check", "."]),
    ]
    return all(results)


def unit(bin_dir: Path) -> bool:
    # Most unit tests need nothing but Python: they run first, in seconds. The
    # few marked `engine` run promtool in the lab's Prometheus image or start
    # its Postgres: the engine and the images (both cached, and needed by the
    # lab) are made ready for them only then.
    pytest = [str(bin_dir / "pytest"), "-q", "tests/unit"]
    if not _run([*pytest, "-m", "not engine"]):
        return False
    from tests.lab import lab as lab_mod

    lab_mod.prepare()
    return _run([*pytest, "-m", "engine"])


def lab(bin_dir: Path) -> bool:
    from tests.lab import lab as lab_mod

    env = lab_mod.prepare()
    lab_mod.write_env(bin_dir, env)
    return lab_mod.molecule(bin_dir, "test", env) == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stages", nargs="*", metavar="STAGE", help=f"any of {', '.join(STAGES)}")
    args = parser.parse_args()
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s): {', '.join(sorted(unknown))}; choose from {STAGES}")
    args.stages = args.stages or list(STAGES)
    reexec_in_venv(REPO / "requirements-test.txt")
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    # This run installs everything the tests need, so a test that skips itself
    # for lack of something fails instead (tests/conftest.py).
    os.environ["LLM_GATEWAY_STRICT_SKIPS"] = "1"
    outcome: dict[str, str] = {}
    for stage in STAGES:
        if stage not in args.stages:
            continue
        started = time.monotonic()
        ok = {"lint": lint, "unit": unit, "lab": lab}[stage](bin_dir)
        outcome[stage] = f"{'ok' if ok else 'FAILED'} ({time.monotonic() - started:.0f}s)"
    print("\n" + ", ".join(f"{stage}: {result}" for stage, result in outcome.items()))
    return 0 if all(r.startswith("ok") for r in outcome.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
