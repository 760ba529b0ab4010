"""The monitoring role rendered the way Ansible renders it, and promtool in the
lab's stand-in Prometheus image: what the role's unit tests and the lab's
monitoring tests share.

``RoleVars`` is what a play on a made-up monitoring host would have (see
tests/support/role_render.py); ``render`` renders one of the role's
templates with it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import role_render

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "monitoring"
LAB_VARS = REPO / "molecule" / "default" / "group_vars" / "monitoring" / "lab.yml"
LITELLM_METRICS_SOURCE = "litellm/integrations/prometheus.py"

filters = role_render.role_filters("monitoring")

# --- rendering the role's templates the way the role does -------------------


# One monitoring host at 192.0.2.30 that is also the only gateway and Ollama
# host, with the endpoints group_vars/all wires from what the gateway and
# node exporter roles publish.
HOST = {
    "inventory_hostname": "monitoring",
    "groups": {"gateway": ["monitoring"], "ollama": ["monitoring"], "monitoring": ["monitoring"]},
    "ansible_facts": {"default_ipv4": {"address": "192.0.2.30"}, "os_family": "Debian"},
    "monitoring_gateways": {
        "monitoring": {"url": "https://192.0.2.30", "ca_file": "/etc/litellm-proxy/tls/ca.crt"}
    },
    "monitoring_node_targets": {"monitoring": "192.0.2.30:9100"},
}


def RoleVars(overrides: Mapping[str, Any]) -> role_render.RoleVars:
    """The monitoring role's variables on that host, with ``overrides``."""
    return role_render.RoleVars("monitoring", HOST, overrides)


def render(template: str, overrides: Mapping[str, Any] | None = None) -> str:
    """One of the role's templates, rendered with its defaults and ``overrides``."""
    return role_render.render_template("monitoring", template, RoleVars(overrides or {}))


def lab_overrides() -> dict[str, Any]:
    """The lab's values for the rules (its image lookups are not needed here)."""
    values = yaml.safe_load(LAB_VARS.read_text()) or {}
    return {
        k: v for k, v in values.items() if k.startswith(("monitoring_alert_", "monitoring_prom"))
    }


VARIANTS = {"defaults": {}, "lab": lab_overrides()}


# --- promtool, in the lab's stand-in Prometheus image -------------------------


def _docker_answers() -> bool:
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def stand_in_prometheus_image() -> str:
    """The lab's stand-in Prometheus image (Debian's packages, cached by its inputs);
    skips the calling test when no Docker engine answers."""
    if not _docker_answers():
        pytest.skip(
            "no Docker engine answers (`docker info` failed): promtool runs in the lab's "
            "stand-in Prometheus image; start dockerd to run these checks"
        )
    if os.environ.get("LAB_PROMETHEUS_IMAGE"):
        return os.environ["LAB_PROMETHEUS_IMAGE"]
    sys.path.insert(0, str(REPO))
    from tests.lab import images

    return images.service_image("prometheus", images.host_image(), {}).ref


def promtool(image: str, mounts: Mapping[Path, str], *command: str) -> subprocess.CompletedProcess:
    """Run ``command`` (a shell line) in ``image`` with ``mounts`` (host path -> container path)."""
    argv = ["docker", "run", "--rm", "--network", "none", "--user", "0:0"]
    for source, target in mounts.items():
        argv += ["-v", f"{source}:{target}:ro"]
    argv += ["--entrypoint", "/bin/sh", image, "-c", " ".join(command)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def role_var(name: str) -> Any:
    return RoleVars({})[name]


def write_rules(folder: Path, rules: str, tests: str) -> dict[Path, str]:
    """The rendered files, and where the role mounts them for promtool."""
    rules_dir, tests_dir = folder / "rules", folder / "tests"
    rules_dir.mkdir(parents=True, exist_ok=True)
    tests_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / role_var("_monitoring_rules_file")).write_text(rules)
    (tests_dir / role_var("_monitoring_rules_test_file")).write_text(tests)
    return {
        rules_dir: role_var("_monitoring_container_rules_dir"),
        tests_dir: role_var("_monitoring_container_rules_tests_dir"),
    }


def check_and_test(image: str, mounts: Mapping[Path, str]) -> subprocess.CompletedProcess:
    """The role's own gate: `promtool check rules` then `promtool test rules`."""
    rules_dir, tests_dir = (
        role_var("_monitoring_container_rules_dir"),
        role_var("_monitoring_container_rules_tests_dir"),
    )
    rules = f"{rules_dir}/{role_var('_monitoring_rules_file')}"
    tests = f"{tests_dir}/{role_var('_monitoring_rules_test_file')}"
    return promtool(image, mounts, f"promtool check rules {rules} && promtool test rules {tests}")


def litellm_metric_names() -> set[str]:
    """Every metric name the installed (pinned) LiteLLM release declares."""
    import litellm

    source = (Path(litellm.__file__).parent.parent / LITELLM_METRICS_SOURCE).read_text()
    return set(re.findall(r'"(litellm_[a-z0-9_]+)"', source))


def unknown_litellm_metrics(exprs: list[str], known: set[str]) -> set[str]:
    used = {m for e in exprs for m in re.findall(r"\b(litellm_[a-z0-9_]+)", e)}
    suffixes = re.compile(r"_(total|bucket|count|sum)$")
    return {m for m in used if m not in known and suffixes.sub("", m) not in known}
