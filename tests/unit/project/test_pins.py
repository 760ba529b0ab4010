"""One LiteLLM version everywhere: role default, test requirements, stand-in image."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def role_version() -> str:
    defaults = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
    return str(defaults["litellm_proxy_version"])


def test_requirements_pin_the_role_version() -> None:
    text = (REPO / "requirements-test.txt").read_text()
    assert re.search(rf"^litellm(\[proxy\])?=={re.escape(role_version())}$", text, re.MULTILINE)


def test_installed_litellm_is_the_pinned_one() -> None:
    from importlib.metadata import version

    assert version("litellm") == role_version()


def test_readme_names_the_pinned_version() -> None:
    assert f"LiteLLM {role_version()}" in (REPO / "README.md").read_text()


def test_every_requirement_is_pinned_exactly() -> None:
    for name in ("requirements.txt", "requirements-test.txt"):
        for line in (REPO / name).read_text().splitlines():
            line = line.strip()
            if not line or line.startswith(("#", "-r ")):
                continue
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.]*", line), line
