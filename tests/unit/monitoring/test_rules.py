"""The monitoring role's alert rules, checked and unit-tested by promtool.

The rules and their `promtool test rules` file are templates of the role
(``templates/rules/``), rendered here with the role's defaults and with the
lab's values, the way the role renders them. promtool runs in the lab's
stand-in Prometheus image (Debian's packages; no registry here carries the
official one), through ``docker run``, with the same mounts as the role's
``validate:``; the tests skip when no Docker engine answers. The last tests
cover the role's target filters, which turn the inventory into the targets
these rules watch (jobs ``litellm``, ``ollama``, ``node``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
import jinja2.nativetypes
import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import FilterModule as AnsibleCoreFilters
from jinja2.nativetypes import native_concat

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "monitoring"
LAB_VARS = REPO / "molecule" / "default" / "group_vars" / "monitoring" / "lab.yml"
LITELLM_METRICS_SOURCE = "litellm/integrations/prometheus.py"

_spec = importlib.util.spec_from_file_location(
    "monitoring_filters", ROLE / "filter_plugins" / "monitoring.py"
)
assert _spec and _spec.loader
filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(filters)

# What the issue asks for, by alert name.
ALERTS = {
    "GatewayDown",
    "GatewayErrorRatioHigh",
    "DeploymentFailing",
    "SpendOverBudget",
    "OllamaHostUnreachable",
    "HostDown",
    "DiskNearlyFull",
}


# --- rendering the role's templates the way the role does -------------------


class RoleVars(Mapping[str, Any]):
    """The role's defaults and vars (plus ``overrides``), templated on first use.

    Stands in for what a play would have: one monitoring host at 192.0.2.30
    that is also the only gateway and Ollama host. Variables are rendered to
    native values, as Ansible does (a list stays a list).
    """

    def __init__(self, overrides: Mapping[str, Any]) -> None:
        raw: dict[str, Any] = {}
        for path in ("defaults/main.yml", "vars/main.yml", "vars/Debian.yml"):
            raw.update(yaml.safe_load((ROLE / path).read_text()) or {})
        raw.update(
            ansible_managed="Ansible managed",
            inventory_hostname="monitoring",
            groups={
                "gateway": ["monitoring"],
                "ollama": ["monitoring"],
                "monitoring": ["monitoring"],
            },
            ansible_facts={"default_ipv4": {"address": "192.0.2.30"}, "os_family": "Debian"},
        )
        raw.update(overrides)
        self._env = with_role_filters(
            jinja2.nativetypes.NativeEnvironment(undefined=jinja2.StrictUndefined)
        )
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


def with_role_filters(env: jinja2.Environment) -> jinja2.Environment:
    env.filters.update(AnsibleCoreFilters().filters())
    env.filters.update(filters.FilterModule().filters())
    return env


def render(template: str, overrides: Mapping[str, Any] | None = None) -> str:
    """One of the role's templates, rendered with its defaults and ``overrides``."""
    # The role's templates are YAML, not HTML: no autoescaping, as in Ansible.
    env = with_role_filters(
        jinja2.Environment(  # noqa: S701
            loader=jinja2.FileSystemLoader(ROLE / "templates"),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            keep_trailing_newline=True,
        )
    )
    compiled = env.get_template(template)
    context = compiled.new_context(RoleVars(overrides or {}), shared=True)
    return "".join(compiled.root_render_func(context))


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


@pytest.fixture(scope="session")
def prometheus_image() -> str:
    return stand_in_prometheus_image()


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
    (rules_dir / role_var("monitoring_rules_file")).write_text(rules)
    (tests_dir / role_var("monitoring_rules_test_file")).write_text(tests)
    return {
        rules_dir: role_var("monitoring_container_rules_dir"),
        tests_dir: role_var("monitoring_container_rules_tests_dir"),
    }


def check_and_test(image: str, mounts: Mapping[Path, str]) -> subprocess.CompletedProcess:
    """The role's own gate: `promtool check rules` then `promtool test rules`."""
    rules_dir, tests_dir = (
        role_var("monitoring_container_rules_dir"),
        role_var("monitoring_container_rules_tests_dir"),
    )
    rules = f"{rules_dir}/{role_var('monitoring_rules_file')}"
    tests = f"{tests_dir}/{role_var('monitoring_rules_test_file')}"
    return promtool(image, mounts, f"promtool check rules {rules} && promtool test rules {tests}")


# --- the rules ----------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rules_pass_promtool_check_and_their_unit_tests(
    variant: str, prometheus_image: str, tmp_path: Path
) -> None:
    overrides = VARIANTS[variant]
    mounts = write_rules(
        tmp_path,
        render("rules/llm-gateway.yml.j2", overrides),
        render("rules/llm-gateway.test.yml.j2", overrides),
    )
    result = check_and_test(prometheus_image, mounts)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_alert_of_the_issue_exists_and_has_a_test_that_fires_it(variant: str) -> None:
    rules = yaml.safe_load(render("rules/llm-gateway.yml.j2", VARIANTS[variant]))
    tests = yaml.safe_load(render("rules/llm-gateway.test.yml.j2", VARIANTS[variant]))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert set(alerts) == ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert filters.monitoring_duration_seconds(rule["for"]) >= 0, name
    fired = {
        case["alertname"]
        for group in tests["tests"]
        for case in group["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == ALERTS, "every alert needs a test case in which it fires"


def test_thresholds_and_durations_come_from_the_role_variables() -> None:
    overrides = {
        "monitoring_alert_error_ratio": 0.2,
        "monitoring_alert_spend_per_hour_usd": 7.5,
        "monitoring_alert_disk_free_ratio": 0.25,
        "monitoring_alert_rate_window": "10m",
        "monitoring_alert_gateway_down_for": "3m",
    }
    rules = yaml.safe_load(render("rules/llm-gateway.yml.j2", overrides))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert alerts["GatewayErrorRatioHigh"]["expr"].rstrip().endswith("> 0.2")
    assert "[10m]" in alerts["GatewayErrorRatioHigh"]["expr"]
    assert "[10m]" in alerts["DeploymentFailing"]["expr"]
    assert alerts["SpendOverBudget"]["expr"].endswith("> 7.5")
    assert "< 0.25" in alerts["DiskNearlyFull"]["expr"]
    assert alerts["GatewayDown"]["for"] == "3m"


def test_rules_with_other_thresholds_still_pass_their_own_tests(
    prometheus_image: str, tmp_path: Path
) -> None:
    """The tests are rendered from the thresholds, so a user's values are tested too."""
    overrides = {
        "monitoring_alert_error_ratio": 0.5,
        "monitoring_alert_spend_per_hour_usd": 20,
        "monitoring_alert_disk_free_ratio": 0.02,
        "monitoring_alert_rate_window": "2m",
        "monitoring_alert_deployment_failing_for": "0s",
        "monitoring_alert_host_down_for": "1h",
    }
    mounts = write_rules(
        tmp_path,
        render("rules/llm-gateway.yml.j2", overrides),
        render("rules/llm-gateway.test.yml.j2", overrides),
    )
    result = check_and_test(prometheus_image, mounts)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_rule_is_rejected_by_promtool(prometheus_image: str, tmp_path: Path) -> None:
    broken = {
        "monitoring_prometheus_extra_rule_groups": [
            {"name": "broken", "rules": [{"alert": "Broken", "expr": "rate(up[5m]"}]}
        ]
    }
    mounts = write_rules(
        tmp_path,
        render("rules/llm-gateway.yml.j2", broken),
        render("rules/llm-gateway.test.yml.j2", broken),
    )
    result = check_and_test(prometheus_image, mounts)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "FAILED" in output
    assert '"Broken": could not parse expression' in output


def test_a_rule_that_no_longer_does_what_its_test_says_is_rejected(
    prometheus_image: str, tmp_path: Path
) -> None:
    """Valid PromQL, wrong behaviour: the rules ask for 90 % errors, the tests for 5 %."""
    mounts = write_rules(
        tmp_path,
        render("rules/llm-gateway.yml.j2", {"monitoring_alert_error_ratio": 0.9}),
        render("rules/llm-gateway.test.yml.j2"),
    )
    result = check_and_test(prometheus_image, mounts)
    assert result.returncode != 0
    assert "GatewayErrorRatioHigh" in result.stdout + result.stderr


def test_the_play_stops_a_broken_rule_before_it_replaces_the_installed_one(
    prometheus_image: str, tmp_path: Path
) -> None:
    """The role's own task file, run by ansible-playbook on this machine: a good rules file
    is installed, a broken one fails the play and leaves the installed file as it was."""
    if os.geteuid() != 0:
        pytest.skip("the role's tasks set root ownership; run the unit tests as root (CI does)")
    playbook = tmp_path / "rules.yml"
    playbook.write_text(
        textwrap.dedent(
            """\
            - name: Install the monitoring role's alert rules here
              hosts: localhost
              connection: local
              gather_facts: false
              tasks:
                - name: Write the alert rules
                  ansible.builtin.include_role:
                    name: monitoring
                    tasks_from: rules.yml
            """
        )
    )
    project = tmp_path / "project"
    common = {
        "ansible_python_interpreter": sys.executable,
        "monitoring_project_dir": str(project),
        "monitoring_prometheus_image": prometheus_image,
        # No stack runs here, so the reload handler has nothing to reload.
        "monitoring_service_state": "stopped",
    }
    installed = project / "prometheus" / "rules" / role_var("monitoring_rules_file")

    def play(extra: dict[str, Any]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                "-i",
                "localhost,",
                str(playbook),
                "-e",
                json.dumps({**common, **extra}),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_NOCOLOR": "1"},
        )

    good = play({})
    assert good.returncode == 0, good.stdout + good.stderr
    before = installed.read_text()
    assert "alert: GatewayDown" in before

    broken = play(
        {
            "monitoring_prometheus_extra_rule_groups": [
                {"name": "broken", "rules": [{"alert": "Broken", "expr": "rate(up[5m]"}]}
            ]
        }
    )
    assert broken.returncode != 0, broken.stdout
    assert "failed to validate" in broken.stdout
    assert installed.read_text() == before


# --- metric names the rules use exist in the pinned LiteLLM -----------------------


def litellm_metric_names() -> set[str]:
    """Every metric name the installed (pinned) LiteLLM release declares."""
    import litellm

    source = (Path(litellm.__file__).parent.parent / LITELLM_METRICS_SOURCE).read_text()
    return set(re.findall(r'"(litellm_[a-z0-9_]+)"', source))


def unknown_litellm_metrics(exprs: list[str], known: set[str]) -> set[str]:
    used = {m for e in exprs for m in re.findall(r"\b(litellm_[a-z0-9_]+)", e)}
    suffixes = re.compile(r"_(total|bucket|count|sum)$")
    return {m for m in used if m not in known and suffixes.sub("", m) not in known}


def test_the_rules_use_metrics_the_pinned_litellm_exports() -> None:
    rules = yaml.safe_load(render("rules/llm-gateway.yml.j2"))
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert not unknown_litellm_metrics(exprs, litellm_metric_names())


# --- the targets the rules watch ------------------------------------------------


def host(name: str, address: str | None = None, **extra: Any) -> dict[str, Any]:
    facts = {"default_ipv4": {"address": address}} if address else {}
    return {"inventory_hostname": name, "ansible_facts": facts, **extra}


def test_node_targets_use_each_hosts_default_address() -> None:
    assert filters.monitoring_node_target(host("gpu", "10.0.0.20"), 9100) == {
        "targets": ["10.0.0.20:9100"],
        "labels": {"instance": "gpu"},
    }
    assert filters.monitoring_node_target(host("nas", ansible_host="10.0.0.30"), 9100)[
        "targets"
    ] == ["10.0.0.30:9100"]


def test_a_host_without_facts_or_address_is_an_error_saying_what_to_do() -> None:
    with pytest.raises(AnsibleFilterError, match=r"Gather the facts"):
        filters.monitoring_node_target(host("laptop", ansible_host="laptop.home.arpa"), 9100)


GATEWAY_DEFAULTS = {"tls_enabled": True, "tls_port": 443, "bind_address": "127.0.0.1", "port": 4000}


def gateway_target(host_vars: dict[str, Any], monitoring_host: str = "mon") -> tuple[str, str]:
    config = filters.monitoring_gateway_target(host_vars, monitoring_host, GATEWAY_DEFAULTS)
    assert config["labels"]["instance"] == host_vars["inventory_hostname"]
    (target,) = config["targets"]
    return config["labels"]["__scheme__"], target


def test_gateways_are_scraped_at_their_tls_front_by_default() -> None:
    assert gateway_target(host("gw1", "10.0.0.10")) == ("https", "10.0.0.10:443")
    assert gateway_target(
        host(
            "gw2",
            "10.0.0.11",
            litellm_proxy_tls_bind_address="10.0.9.11",
            litellm_proxy_tls_port=8443,
        )
    ) == ("https", "10.0.9.11:8443")


def test_several_gateways_without_tls_are_scraped_where_each_proxy_listens() -> None:
    plain = {"litellm_proxy_tls_enabled": False}
    assert gateway_target(
        host("gw1", "10.0.0.10", litellm_proxy_bind_address="10.0.0.10", **plain)
    ) == (
        "http",
        "10.0.0.10:4000",
    )
    assert gateway_target(
        host(
            "gw2",
            "10.0.0.11",
            litellm_proxy_bind_address="0.0.0.0",
            litellm_proxy_port=4100,
            **plain,
        )
    ) == ("http", "10.0.0.11:4100")
    assert gateway_target(
        host("gw3", "10.0.0.12", litellm_proxy_bind_address="fd00::12", **plain)
    ) == (
        "http",
        "[fd00::12]:4000",
    )


def test_a_gateway_that_publishes_its_url_is_scraped_there() -> None:
    published = host("gw", "10.0.0.10", litellm_proxy_url="https://gateway.home.arpa")
    assert gateway_target(published) == ("https", "gateway.home.arpa:443")


def test_a_gateway_on_its_loopback_is_scraped_only_from_its_own_host() -> None:
    plain = {"litellm_proxy_tls_enabled": "false"}
    assert gateway_target(host("localhost", "192.168.1.5", **plain), "localhost") == (
        "http",
        "127.0.0.1:4000",
    )
    with pytest.raises(AnsibleFilterError, match="litellm_proxy_bind_address"):
        gateway_target(host("gw", "10.0.0.10", **plain))


def test_ollama_hosts_are_probed_at_their_published_url() -> None:
    published = host("gpu", "10.0.0.20", ollama_host_url="http://10.0.0.20:11434/")
    assert filters.monitoring_ollama_target(published, "mon") == {
        "targets": ["http://10.0.0.20:11434/api/version"],
        "labels": {"instance": "gpu"},
    }
    unpublished = host("laptop", "10.0.0.21", ollama_host_port=11500)
    assert filters.monitoring_ollama_target(unpublished, "mon")["targets"] == [
        "http://10.0.0.21:11500/api/version"
    ]
    with pytest.raises(AnsibleFilterError, match="ollama_host_bind_address"):
        filters.monitoring_ollama_target(
            host("gpu", "10.0.0.20", ollama_host_url="http://127.0.0.1:11434"), "mon"
        )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("0s", 0), ("1500ms", 1.5)],
)
def test_prometheus_durations(text: str, seconds: float) -> None:
    assert filters.monitoring_duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "", "m", "1.5h", "10"])
def test_a_duration_prometheus_would_refuse_is_an_error(text: str) -> None:
    with pytest.raises(AnsibleFilterError, match="Prometheus duration"):
        filters.monitoring_duration_seconds(text)


def test_listen_and_local_addresses() -> None:
    assert filters.monitoring_listen_address("0.0.0.0", 9090) == ":9090"
    assert filters.monitoring_listen_address("127.0.0.1", 9090) == "127.0.0.1:9090"
    assert filters.monitoring_local_address("0.0.0.0", 9090) == "127.0.0.1:9090"
    assert filters.monitoring_local_address("::1", 9093) == "[::1]:9093"
