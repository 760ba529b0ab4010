"""CI runs the README's test command and nothing else (.ci/run)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _commands(text: str) -> list[str]:
    """The command lines of a shell text: no comments, blank lines or `set`/`cd` setup."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", readme, re.DOTALL)
    assert first_block, "the README's first shell block holds the two commands"
    deploy, test = _commands(first_block.group(1))
    assert deploy == "python3 scripts/deploy.py"
    ci = _commands((REPO / ".ci/run").read_text())
    # Shell setup, a cd to the repository root, then the command itself, last.
    assert ci[:-1] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."'], ci
    assert ci[-1] == test == "python3 scripts/test.py"
