"""A role's variables and templates rendered the way Ansible renders them, for
unit tests that check what a role would write without running a play.

``RoleVars`` stands in for what a play would have: the role's defaults and
``vars/main.yml``, then the facts and inventory of a made-up host, then the
caller's overrides; values are templated on first use into native values, as
Ansible does (a list stays a list), with Ansible's core filters, the
project's shared filters (filter_plugins/) and the role's own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2
import jinja2.nativetypes
import yaml
from ansible.plugins.filter.core import FilterModule as AnsibleCoreFilters
from ansible.plugins.test.core import TestModule as AnsibleCoreTests
from jinja2.nativetypes import native_concat

from tests.support.loader import REPO, load

SHARED_FILTERS = load("filter_plugins/llm_gateway.py", "llm_gateway_filters")


class Undefined(jinja2.ChainableUndefined, jinja2.StrictUndefined):
    """As in Ansible: `facts.a.b | default(x)` works when `a` is missing, and any
    other use of an undefined value fails."""


def role_filters(role: str, module: str = "") -> ModuleType | None:
    """One of the role's filter plugin modules (the one named after the role
    unless ``module`` is given), if it has it."""
    name = module or role
    path = REPO / "roles" / role / "filter_plugins" / f"{name}.py"
    return load(str(path.relative_to(REPO)), f"{role}_{name}_filters") if path.is_file() else None


class RoleVars(Mapping[str, Any]):
    """The variables one role sees in a play, templated lazily."""

    def __init__(self, role: str, base: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
        raw: dict[str, Any] = {}
        for path in ("defaults/main.yml", "vars/main.yml"):
            file = REPO / "roles" / role / path
            if file.is_file():
                raw.update(yaml.safe_load(file.read_text()) or {})
        raw.update({"ansible_managed": "Ansible managed", **base})
        raw.update(overrides)
        # The host's own hostvars entry is this mapping itself, templated lazily.
        raw.setdefault("hostvars", {raw.get("inventory_hostname", "host"): self})
        self._env = with_filters(role, jinja2.nativetypes.NativeEnvironment(undefined=Undefined))
        self._raw, self._done = raw, {}

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            template = self._env.from_string(value)
            return native_concat(template.root_render_func(template.new_context(self, shared=True)))
        if isinstance(value, list):
            return [self._resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self._resolve(v) for k, v in value.items()}
        return value

    def __getitem__(self, key: str) -> Any:
        if key in self._done:
            return self._done[key]
        if key in self._raw:
            self._done[key] = self._resolve(self._raw[key])
            return self._done[key]
        if key in self._env.globals:
            return self._env.globals[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self._raw or key in self._env.globals

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def with_filters(role: str, env: jinja2.Environment) -> jinja2.Environment:
    # Ansible's own `default` knows only Ansible's undefined values; Jinja's
    # does the same job for the ones here.
    core = {k: v for k, v in AnsibleCoreFilters().filters().items() if k not in ("default", "d")}
    env.filters.update(core)
    env.tests.update(AnsibleCoreTests().tests())  # search, match, ...
    env.filters.update(SHARED_FILTERS.FilterModule().filters())
    for path in sorted((REPO / "roles" / role / "filter_plugins").glob("*.py")):
        own = role_filters(role, path.stem)
        if own is not None:
            env.filters.update(own.FilterModule().filters())
    return env


def render_template(role: str, template: str, variables: RoleVars) -> str:
    """One of the role's templates, rendered with ``variables``."""
    # The roles' templates are YAML, INI and unit files, not HTML: no
    # autoescaping, as in Ansible.
    env = with_filters(
        role,
        jinja2.Environment(  # noqa: S701
            loader=jinja2.FileSystemLoader(Path(REPO / "roles" / role / "templates")),
            undefined=Undefined,
            trim_blocks=True,
            keep_trailing_newline=True,
        ),
    )
    compiled = env.get_template(template)
    context = compiled.new_context(variables, shared=True)
    return "".join(compiled.root_render_func(context))


def included(caller: RoleVars, task_file: str, role: str, tasks_from: str) -> RoleVars:
    """What `role` sees when the caller's task file includes it (include_role with
    `tasks_from`): the included role's defaults and vars, and the include's own
    `vars:`, read from the caller's task file and templated as the caller sees them."""
    tasks = yaml.safe_load((REPO / task_file).read_text())
    (task,) = [
        t
        for t in tasks
        if (t.get("ansible.builtin.include_role") or {}).get("name") == role
        and t["ansible.builtin.include_role"].get("tasks_from") == tasks_from
    ]
    given = {name: caller._resolve(value) for name, value in task.get("vars", {}).items()}
    return RoleVars(role, {"ansible_managed": "Ansible managed", **given}, {})
