"""Data decisions of the ollama_host role, as plain Python the unit tests call.

* Model names are compared the way Ollama compares them (``llama3.2`` is
  ``llama3.2:latest``), so a re-run pulls and deletes nothing.
* The drop-in's ``Environment=`` lines are quoted here, once, for systemd.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODEL_STATES = ("present", "absent")
MODEL_MODES = ("chat", "embedding")


def ollama_host_model_name(name: str) -> str:
    """Ollama's short form of a model name: registry prefix dropped, ``:latest`` if no tag."""
    text = str(name).strip()
    for prefix in ("registry.ollama.ai/", "library/"):
        text = text.removeprefix(prefix)
    if text and ":" not in text.rsplit("/", 1)[-1]:
        text += ":latest"
    return text


def ollama_host_model_plan(
    models: Iterable[Mapping[str, Any]], present: Iterable[str]
) -> dict[str, list[str]]:
    """Which models to pull (wanted, missing) and delete (absent, but there).

    ``models`` is ``ollama_host_models``; ``present`` the names ``/api/tags`` lists.
    Raises on an entry without a name, an unknown state, or a model listed twice.
    """
    wanted: dict[str, str] = {}
    for index, entry in enumerate(models):
        if not isinstance(entry, Mapping) or not str(entry.get("name") or "").strip():
            raise AnsibleFilterError(
                f"ollama_host_models[{index}] needs a name, e.g. {{name: llama3.2:3b}}"
            )
        name = ollama_host_model_name(entry["name"])
        state = str(entry.get("state") or "present")
        if state not in MODEL_STATES:
            raise AnsibleFilterError(
                f"ollama_host_models: {entry['name']!r} has state {state!r}; "
                f"use one of {', '.join(MODEL_STATES)}"
            )
        if name in wanted:
            raise AnsibleFilterError(
                f"ollama_host_models lists {name!r} more than once; keep one entry per model"
            )
        wanted[name] = state
    there = {ollama_host_model_name(n) for n in present}
    return {
        "pull": [n for n, s in wanted.items() if s == "present" and n not in there],
        "delete": [n for n, s in wanted.items() if s == "absent" and n in there],
    }


def ollama_host_served_models(models: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The present models of ``ollama_host_models``, as the gateways route them:
    Ollama's short name, and the gateway's fields (tier, mode, context_window)."""
    ollama_host_model_plan(models, [])  # the same checks as the pulls
    served: list[dict[str, Any]] = []
    for entry in models:
        if str(entry.get("state") or "present") != "present":
            continue
        mode = str(entry.get("mode") or "chat")
        if mode not in MODEL_MODES:
            raise AnsibleFilterError(
                f"ollama_host_models: {entry['name']!r} has mode {mode!r}; "
                f"use one of {', '.join(MODEL_MODES)}"
            )
        model: dict[str, Any] = {"name": str(entry["name"]).strip(), "mode": mode}
        if entry.get("tier"):
            model["tier"] = str(entry["tier"])
        if entry.get("context_window"):
            model["context_window"] = int(entry["context_window"])
        served.append(model)
    return served


def ollama_host_group_members(
    groups: Mapping[str, Iterable[str]], names: Iterable[str]
) -> list[str]:
    """Hosts of the named inventory groups, each once, in inventory order."""
    members: list[str] = []
    for name in names:
        for host in groups.get(name, []):
            if host not in members:
                members.append(host)
    return members


def _systemd_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def ollama_host_environment_assignments(
    managed: Mapping[str, Any], extra: Mapping[str, Any]
) -> list[str]:
    """``KEY=value`` assignments for the drop-in, quoted for ``Environment="..."``.

    ``managed`` holds the role's own settings (an empty value is left out, so
    Ollama uses its default); ``extra`` is ``ollama_host_environment``. A key
    of ``extra`` that the role manages, or that is not a variable name, raises.
    """
    clashes = sorted(set(extra) & set(managed))
    if clashes:
        raise AnsibleFilterError(
            f"ollama_host_environment sets {', '.join(clashes)}, which the role manages: "
            "use the matching ollama_host_* variable instead"
        )
    bad = sorted(str(k) for k in extra if not ENV_KEY.match(str(k)))
    if bad:
        raise AnsibleFilterError(
            f"ollama_host_environment: {', '.join(bad)} is not a valid variable name"
        )
    lines: list[str] = []
    for key, value in [*managed.items(), *sorted(extra.items())]:
        if value is None or str(value) == "":
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        text = str(value)
        if "\n" in text:
            raise AnsibleFilterError(f"environment value of {key} must be one line")
        lines.append(_systemd_quote(f"{key}={text}"))
    return lines


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "ollama_host_model_name": ollama_host_model_name,
            "ollama_host_model_plan": ollama_host_model_plan,
            "ollama_host_served_models": ollama_host_served_models,
            "ollama_host_group_members": ollama_host_group_members,
            "ollama_host_environment_assignments": ollama_host_environment_assignments,
        }
