"""What every test of the project shares.

`scripts/test.py` (what CI runs) sets LLM_GATEWAY_STRICT_SKIPS=1: there, a
test that skips itself because something is missing (Docker, root, a
package, an image) fails instead, since that run installs everything it
needs and a skip would hide a test that never ran. Run by hand without it,
such a test is skipped as usual and says why.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

STRICT = os.environ.get("LLM_GATEWAY_STRICT_SKIPS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator:
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in a run that must run every test (scripts/test.py): {reason}"
