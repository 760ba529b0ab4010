"""Every role's meta/argument_specs.yml lists exactly its defaults, with the same values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "defaults/main.yml").is_file())
REQUIRED_FILES = (
    "defaults/main.yml",
    "meta/main.yml",
    "meta/argument_specs.yml",
    "tasks/main.yml",
    "README.md",
)
# A role that runs a service also has handlers and templates. local_tls runs
# none: it writes a certificate for the role that calls it and notifies that
# role's handlers.
HELPER_ROLES = {"local_tls"}


def _load(role: str, path: str) -> dict:
    return yaml.safe_load((REPO / "roles" / role / path).read_text()) or {}


def test_every_role_of_the_design_exists() -> None:
    assert {"litellm_proxy", "ollama_host", "monitoring"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_role_has_the_standard_layout(role: str) -> None:
    missing = [f for f in REQUIRED_FILES if not (REPO / "roles" / role / f).is_file()]
    assert not missing
    if role not in HELPER_ROLES:
        assert (REPO / "roles" / role / "handlers/main.yml").is_file()
        assert (REPO / "roles" / role / "templates").is_dir()


@pytest.mark.parametrize("role", ROLES)
def test_argument_spec_matches_defaults(role: str) -> None:
    defaults = _load(role, "defaults/main.yml")
    options = _load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(options) == sorted(defaults), "spec and defaults list different variables"
    for name, value in defaults.items():
        assert options[name].get("default") == value, f"{name}: spec default differs"
        assert options[name].get("description"), f"{name}: no description"
        assert name.startswith(f"{role}_"), f"{name}: not prefixed with the role name"


@pytest.mark.parametrize("role", ROLES)
def test_readme_sections_in_order(role: str) -> None:
    text = (REPO / "roles" / role / "README.md").read_text()
    headings = [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]
    expected = ["Requirements", "Role Variables", "Dependencies", "Example Playbook", "License"]
    assert headings == expected
