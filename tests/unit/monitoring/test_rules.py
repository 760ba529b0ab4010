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

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from tests.support.loader import REPO
from tests.support.monitoring_role import (
    VARIANTS,
    check_and_test,
    filters,
    litellm_metric_names,
    render,
    role_var,
    stand_in_prometheus_image,
    unknown_litellm_metrics,
    write_rules,
)

# What the issue asks for, by alert name.
ALERTS = {
    "GatewayDown",
    "GatewayErrorRatioHigh",
    "DeploymentFailing",
    "SpendOverBudget",
    "OllamaHostUnreachable",
    "HostDown",
    "DiskNearlyFull",
    "LedgerDatabaseDown",
    "LedgerRowsPilingUp",
    "LedgerRowsQuarantined",
    "GatewayStateDown",
    "GatewayAddressNotHeld",
    "GatewayAddressMoved",
}


@pytest.fixture(scope="session")
def prometheus_image() -> str:
    return stand_in_prometheus_image()


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
        "monitoring_alert_address_unheld_for": "2m",
        "monitoring_alert_address_moved_window": "30m",
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
    installed = project / "prometheus" / "rules" / role_var("_monitoring_rules_file")

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


def test_the_rules_use_metrics_the_pinned_litellm_exports() -> None:
    rules = yaml.safe_load(render("rules/llm-gateway.yml.j2"))
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert not unknown_litellm_metrics(exprs, litellm_metric_names())


# --- the targets the rules watch ------------------------------------------------
# What the litellm_proxy and node_exporter roles published, turned into
# Prometheus' static configs (tests/unit/litellm_proxy/test_endpoint.py covers
# how a gateway works out its endpoint).


def node_target(name: str, target: str, monitoring_host: str = "mon") -> dict[str, Any]:
    return filters.monitoring_node_target({"key": name, "value": target}, monitoring_host)


def test_node_targets_are_what_each_exporter_published() -> None:
    assert node_target("gpu", "10.0.0.20:9100") == {
        "targets": ["10.0.0.20:9100"],
        "labels": {"instance": "gpu"},
    }
    assert node_target("nas", "[fd00::30]:9100")["targets"] == ["[fd00::30]:9100"]


def test_a_node_target_that_is_not_host_and_port_is_an_error() -> None:
    with pytest.raises(AnsibleFilterError, match="node_exporter_endpoint"):
        node_target("laptop", "laptop.home.arpa")


def test_a_node_exporter_on_another_hosts_loopback_is_an_error() -> None:
    assert node_target("mon", "127.0.0.1:9100", "mon")["targets"] == ["127.0.0.1:9100"]
    with pytest.raises(AnsibleFilterError, match="node_exporter_bind_address"):
        node_target("gpu", "127.0.0.1:9100", "mon")


def gateway_target(name: str, url: str, monitoring_host: str = "mon") -> tuple[str, str]:
    item = {"key": name, "value": {"url": url, "ca_file": ""}}
    config = filters.monitoring_gateway_target(item, monitoring_host)
    assert config["labels"]["instance"] == name
    (target,) = config["targets"]
    return config["labels"]["__scheme__"], target


def test_gateways_are_scraped_at_the_endpoint_they_published() -> None:
    assert gateway_target("gw1", "https://10.0.0.10") == ("https", "10.0.0.10:443")
    assert gateway_target("gw2", "https://10.0.9.11:8443") == ("https", "10.0.9.11:8443")
    assert gateway_target("gw3", "http://10.0.0.12:4100") == ("http", "10.0.0.12:4100")
    assert gateway_target("gw4", "http://[fd00::12]:4000") == ("http", "[fd00::12]:4000")
    assert gateway_target("gw5", "https://gateway.home.arpa") == ("https", "gateway.home.arpa:443")


def test_a_gateway_on_its_loopback_is_scraped_only_from_its_own_host() -> None:
    assert gateway_target("localhost", "http://127.0.0.1:4000", "localhost") == (
        "http",
        "127.0.0.1:4000",
    )
    with pytest.raises(AnsibleFilterError, match="litellm_proxy_bind_address"):
        gateway_target("gw", "http://127.0.0.1:4000")


def test_a_gateway_without_an_http_url_is_an_error() -> None:
    with pytest.raises(AnsibleFilterError, match="litellm_proxy_endpoint"):
        gateway_target("gw", "gateway.home.arpa")


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


# --- the releases the rules are tested with are the ones the role deploys ---------


@pytest.mark.parametrize(
    ("binary", "variable"),
    [
        ("/bin/promtool", "monitoring_prometheus_image"),
        ("/bin/alertmanager", "monitoring_alertmanager_image"),
    ],
)
def test_the_lab_runs_the_release_the_role_deploys(
    binary: str, variable: str, prometheus_image: str
) -> None:
    """Prometheus 3 changed range windows (left-open): rules tested with 2.53's promtool
    say nothing about 3.x. The stand-in image carries Debian's releases, so the role
    deploys the official images of exactly those releases."""
    answer = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            binary,
            prometheus_image,
            "--version",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"version (\d+\.\d+\.\d+)", answer.stdout + answer.stderr)
    assert found, answer.stdout + answer.stderr
    tag = role_var(variable).rsplit(":", 1)[1]
    assert tag == f"v{found.group(1)}"
