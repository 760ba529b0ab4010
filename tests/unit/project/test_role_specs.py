"""Every role's meta/argument_specs.yml lists exactly its defaults, with the same values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "defaults/main.yml").is_file())
REQUIRED_FILES = (
    "defaults/main.yml",
    "meta/main.yml",
    "meta/argument_specs.yml",
    "tasks/main.yml",
    "README.md",
)
# A role that runs a service also has handlers and templates. The helper
# roles run none: local_tls writes a certificate for the role that calls it,
# common holds the steps the service roles share (entry points only); both
# notify the caller's handlers.
HELPER_ROLES = {"local_tls", "common"}
# Roles whose variables another role may set: in the vars of its own
# include_role / import_role of them, nowhere else.
CALLED_ROLES = {"local_tls", "common"}
# What a role publishes for the others (a fact it sets), by role.
PUBLISHED = {
    "ollama_host": {"ollama_host_endpoint"},
    "litellm_proxy": {"litellm_proxy_endpoint"},
    "node_exporter": {"node_exporter_endpoint"},
    "gateway_state": {"gateway_state_endpoint"},
}


def _load(role: str, path: str) -> dict:
    return yaml.safe_load((REPO / "roles" / role / path).read_text()) or {}


def test_every_role_of_the_design_exists() -> None:
    assert {
        "litellm_proxy",
        "ollama_host",
        "monitoring",
        "node_exporter",
        "ollama_probe",
        "common",
        "local_tls",
        "taskmaster_client",
        "gateway_state",
    } <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_role_has_the_standard_layout(role: str) -> None:
    missing = [f for f in REQUIRED_FILES if not (REPO / "roles" / role / f).is_file()]
    assert not missing
    if role not in HELPER_ROLES:
        assert (REPO / "roles" / role / "handlers/main.yml").is_file()
        assert (REPO / "roles" / role / "templates").is_dir()


def _entry_points(role: str) -> dict[str, dict]:
    return _load(role, "meta/argument_specs.yml")["argument_specs"]


@pytest.mark.parametrize("role", ROLES)
def test_argument_spec_matches_defaults(role: str) -> None:
    """The main entry point lists exactly the defaults (for common, which only has
    entry points, all of them together do); every entry point's defaults agree."""
    defaults = _load(role, "defaults/main.yml")
    entries = _entry_points(role)
    if role == "common":
        options = {k: v for e in entries.values() for k, v in (e.get("options") or {}).items()}
    else:
        options = entries["main"]["options"]
    assert sorted(options) == sorted(defaults), "spec and defaults list different variables"
    for name, value in defaults.items():
        assert options[name].get("default") == value, f"{name}: spec default differs"
        assert options[name].get("description"), f"{name}: no description"
        assert name.startswith(f"{role}_"), f"{name}: not prefixed with the role name"
    for entry, spec in entries.items():
        assert (REPO / "roles" / role / "tasks" / f"{entry}.yml").is_file(), entry
        for name, option in (spec.get("options") or {}).items():
            assert name in defaults, f"{entry}: {name} is not a default of the role"
            assert option.get("default") == defaults[name], f"{entry}: {name} default differs"


@pytest.mark.parametrize("role", ROLES)
def test_internal_variables_are_marked_as_such(role: str) -> None:
    """vars/ holds constants and expressions, never settings: every name there starts
    with an underscore, so setting one in an inventory is plainly not an option."""
    for path in sorted((REPO / "roles" / role / "vars").glob("*.yml")):
        names = yaml.safe_load(path.read_text()) or {}
        public = [n for n in names if not n.startswith(f"_{role}_")]
        assert not public, f"{path.relative_to(REPO)}: {public} look like settings"


def _role_variable_names(role: str) -> set[str]:
    return set(_load(role, "defaults/main.yml"))


def _files(folder: Path, suffixes: tuple[str, ...] = (".yml", ".j2", ".py")) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in suffixes)


@pytest.mark.parametrize("role", ROLES)
def test_no_role_reads_another_roles_variables(role: str) -> None:
    """A role uses what another role published (a fact), never that role's defaults;
    the only other variables it names are the inputs of the helper roles it calls."""
    others = {other: _role_variable_names(other) for other in ROLES if other != role}
    problems = []
    for path in _files(REPO / "roles" / role):
        text = path.read_text()
        if path.suffix == ".py":  # a filter reads a variable by its name, as a key
            tokens = set(re.findall(r"""(?:get\(|\[)["']([a-z][a-z0-9_]+)["']""", text))
        else:  # comments may name another role's variable; code may not read one
            code = "\n".join(
                line.split(" #")[0]
                for line in text.splitlines()
                if not line.lstrip().startswith("#")
            )
            tokens = set(re.findall(r"(?<![\w])([a-z][a-z0-9_]+)", code))
        for other, names in others.items():
            used = tokens & names
            if other in CALLED_ROLES and path.parent.name == "tasks":
                continue  # include_role/import_role vars of the helper it calls
            if used:
                problems.append(f"{path.relative_to(REPO)} uses {other}'s {sorted(used)}")
    assert not problems


def test_plays_read_only_what_roles_publish() -> None:
    """Playbooks and group_vars wire roles together through published facts: a
    hostvars lookup of another host names a published fact, never a role default."""
    published = set().union(*PUBLISHED.values())
    defaults = set().union(*(_role_variable_names(r) for r in ROLES))
    places = [*_files(REPO / "playbooks"), *_files(REPO / "group_vars")]
    for path in places:
        text = path.read_text()
        for fact in re.findall(r"hostvars\[[^\]]+\]\[?['\".]?([a-z][a-z0-9_]+)", text):
            assert fact not in defaults or fact in published, f"{path}: reads {fact}"
        for fact in re.findall(r"hostvars, '([a-z][a-z0-9_]+)'", text):
            assert fact in published, f"{path}: gathers {fact}, which no role publishes"


@pytest.mark.parametrize("role", ROLES)
def test_readme_names_only_variables_that_exist(role: str) -> None:
    """The README points to defaults/main.yml and the spec for the full list; every
    variable it does name is a default, an internal constant or a published fact."""
    text = (REPO / "roles" / role / "README.md").read_text()
    known = _role_variable_names(role) | PUBLISHED.get(role, set())
    for path in (REPO / "roles" / role / "vars").glob("*.yml"):
        known |= set(yaml.safe_load(path.read_text()) or {})
    tags = {f"{role}_{t}" for t in ("preflight", "install", "configure", "run", "tls", "models")}
    named = set(re.findall(rf"(?<![\w])(_?{role}_[a-z0-9_]+)", text))
    # A family written as `prefix_*` stands for the variables it starts.
    families = {n for n in named if n.endswith("_") and any(k.startswith(n) for k in known)}
    assert named - known - tags - families == set()
    assert "defaults/main.yml" in text
    assert "meta/argument_specs.yml" in text


@pytest.mark.parametrize("role", ROLES)
def test_readme_sections_in_order(role: str) -> None:
    text = (REPO / "roles" / role / "README.md").read_text()
    headings = [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]
    expected = ["Requirements", "Role Variables", "Dependencies", "Example Playbook", "License"]
    assert headings == expected


@pytest.mark.parametrize("role", ROLES)
def test_defaults_a_readme_quotes_are_the_defaults(role: str) -> None:
    """A README may quote defaults in YAML blocks; what it quotes is what
    defaults/main.yml says, so the copy cannot drift."""
    text = (REPO / "roles" / role / "README.md").read_text()
    defaults = _load(role, "defaults/main.yml")
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        data = yaml.safe_load(block)
        if not isinstance(data, dict):
            continue  # a playbook example
        for name, value in data.items():
            if name.startswith(f"{role}_"):
                assert name in defaults, f"{name} is not a default"
                assert value == defaults[name], f"{name}: the README says {value!r}"


def _role_calls() -> list[tuple[Path, str, str]]:
    """Every include_role / import_role with tasks_from in the roles and playbooks:
    (file, role called, tasks_from)."""
    calls = []

    def walk(node: object, path: Path) -> None:
        if isinstance(node, dict):
            for key in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
                args = node.get(key)
                if isinstance(args, dict) and "tasks_from" in args:
                    calls.append((path, args["name"], args["tasks_from"]))
            for value in node.values():
                walk(value, path)
        elif isinstance(node, list):
            for item in node:
                walk(item, path)

    for path in [*_files(REPO / "roles", (".yml",)), *_files(REPO / "playbooks", (".yml",))]:
        if "/tasks/" in str(path) or "playbooks" in path.parts:
            walk(yaml.safe_load(path.read_text()), path)
    return calls


def test_every_tasks_from_is_validated_against_its_entry_point() -> None:
    """Ansible checks a role's inputs against the entry point whose name is exactly
    the tasks_from value; `tasks_from: endpoint.yml` would skip the check silently
    (a wrong type then fails later, in a filter, with no word of the variable)."""
    calls = _role_calls()
    assert len(calls) >= 10, calls
    for path, role, tasks_from in calls:
        where = f"{path.relative_to(REPO)} calls {role} tasks_from={tasks_from}"
        assert tasks_from in _entry_points(role), f"{where}: no entry point of that name"
