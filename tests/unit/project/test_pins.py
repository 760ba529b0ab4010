"""One LiteLLM version everywhere: role default, test requirements, stand-in image."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]


def role_version() -> str:
    defaults = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
    return str(defaults["litellm_proxy_version"])


def test_requirements_pin_the_role_version() -> None:
    source = (REPO / "requirements-test.in").read_text()
    assert re.search(rf"^litellm\[proxy\]=={re.escape(role_version())}$", source, re.MULTILINE)
    for lock in ("requirements-test.txt", "tests/lab/images/litellm/requirements.txt"):
        text = (REPO / lock).read_text()
        assert re.search(rf"^litellm=={re.escape(role_version())} \\$", text, re.MULTILINE), lock


def test_installed_litellm_is_the_pinned_one() -> None:
    from importlib.metadata import version

    assert version("litellm") == role_version()


def test_readme_names_the_pinned_version() -> None:
    assert f"LiteLLM {role_version()}" in (REPO / "README.md").read_text()


LOCKS = (
    "requirements.txt",
    "requirements-test.txt",
    "requirements-bench.txt",
    "tests/lab/images/litellm/requirements.txt",
)


def _locked(name: str) -> dict[str, tuple[str, list[str]]]:
    """{package: (version, hashes)} of a lock made by `make lock`."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in (REPO / name).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pin = re.match(r"^([A-Za-z0-9_.\-]+)==([0-9][A-Za-z0-9.+]*)(?: ; [^\\]+)? \\$", line)
        if pin:
            current = pin.group(1).lower()
            entries[current] = (pin.group(2), [])
            continue
        digest = re.match(r"^\s+--hash=sha256:([0-9a-f]{64})(?: \\)?$", line)
        assert digest and current, f"{name}: not a pinned, hashed line: {line!r}"
        entries[current][1].append(digest.group(1))
    return entries


@pytest.mark.parametrize("name", LOCKS)
def test_every_requirement_is_pinned_by_version_and_hash(name: str) -> None:
    entries = _locked(name)
    assert entries, f"{name} pins nothing"
    for package, (_version, hashes) in entries.items():
        assert hashes, f"{name}: {package} has no hash"


@pytest.mark.parametrize(("source", "lock"), [(n.replace(".txt", ".in"), n) for n in LOCKS])
def test_every_lock_holds_what_its_source_asks_for(source: str, lock: str) -> None:
    locked = _locked(lock)
    for line in (REPO / source).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-r "):
            continue
        exact = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[a-z,_-]+\])?==(\S+)$", line)
        name = re.match(r"^([A-Za-z0-9_.\-]+)", line)
        assert name, line
        assert name.group(1).lower() in locked, f"{lock} lacks {line}"
        if exact:
            assert locked[exact.group(1).lower()][0] == exact.group(2), f"{lock}: {line}"


def test_the_shared_packages_of_the_controller_locks_agree() -> None:
    deploy, test, bench = (_locked(n) for n in LOCKS[:3])
    assert {p: v for p, (v, _) in deploy.items()} == {p: test[p][0] for p in deploy}
    assert {p: v for p, (v, _) in test.items()} == {p: bench[p][0] for p in test}


def test_requirements_yml_lists_exactly_the_collections_the_code_uses() -> None:
    listed = {
        c["name"] for c in yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]
    }
    used: set[str] = set()
    for folder in ("roles", "playbooks"):
        for path in (REPO / folder).rglob("*.yml"):
            used |= set(
                re.findall(r"\b((?!ansible\.builtin)[a-z_]+\.[a-z_]+)\.[a-z_]+\b", path.read_text())
            )
    used = {name for name in used if name.split(".")[0] in ("community", "ansible", "kubernetes")}
    assert listed == used
