"""Where alerts go: monitoring_alert_receivers becomes Alertmanager config that
names secret files, and amtool (in the lab's stand-in Alertmanager image, the
release the role deploys) accepts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.support.loader import REPO
from tests.support.monitoring_role import RoleVars, filters, promtool, render
from tests.support.monitoring_role import stand_in_prometheus_image as stand_in_image

RECEIVERS = [
    {
        "name": "phone",
        "type": "ntfy",
        "url": "https://ntfy.home.arpa/llm-gateway",
        "token": "tk-fake-token",
        "priority": "high",
    },
    {
        "name": "mail",
        "type": "email",
        "to": "admin@home.arpa",
        "from": "am@home.arpa",
        "smarthost": "mail.home.arpa:587",
        "username": "am",
        "password": "fake-smtp-password",
    },
    {"name": "ha", "type": "webhook", "url": "https://ha.home.arpa/api/webhook/fake-id"},
]
SECRETS = ("tk-fake-token", "fake-smtp-password", "fake-id")


def config(overrides: dict | None = None) -> dict:
    return yaml.safe_load(render("alertmanager.yml.j2", overrides or {}))


def test_no_receiver_keeps_alerts_in_alertmanager_with_the_default_grouping() -> None:
    rendered = config()
    assert rendered["route"] == {
        "receiver": "default",
        "group_by": ["alertname", "instance"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
    }
    assert rendered["receivers"] == [{"name": "default"}]


def test_each_receiver_becomes_config_that_names_files_and_holds_no_secret() -> None:
    text = render("alertmanager.yml.j2", {"monitoring_alert_receivers": RECEIVERS})
    assert not [s for s in SECRETS if s in text], "a secret in alertmanager.yml"
    (receiver,) = yaml.safe_load(text)["receivers"]
    secrets_dir = RoleVars({})["_monitoring_container_alertmanager_secrets_dir"]
    ntfy, webhook = receiver["webhook_configs"]
    assert ntfy == {
        "url_file": f"{secrets_dir}/phone.url",
        "send_resolved": True,
        "http_config": {
            "authorization": {"type": "Bearer", "credentials_file": f"{secrets_dir}/phone.token"}
        },
    }
    assert webhook == {"url_file": f"{secrets_dir}/ha.url", "send_resolved": True}
    (mail,) = receiver["email_configs"]
    assert mail["auth_password_file"] == f"{secrets_dir}/mail.password"
    assert (mail["to"], mail["smarthost"], mail["require_tls"]) == (
        "admin@home.arpa",
        "mail.home.arpa:587",
        True,
    )


def test_the_secret_files_hold_the_secrets_and_ntfy_gets_its_templates() -> None:
    files = {f["name"]: f["value"] for f in filters.monitoring_alert_secret_files(RECEIVERS)}
    assert set(files) == {"phone.url", "phone.token", "mail.password", "ha.url"}
    assert files["phone.token"] == "tk-fake-token"
    assert files["mail.password"] == "fake-smtp-password"
    url = urlsplit(files["phone.url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://ntfy.home.arpa/llm-gateway"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["tpl"] == "1" and query["p"] == "high"
    assert query["t"] == "[{{.status}}] {{.commonLabels.alertname}}"
    assert "{{range .alerts}}{{.annotations.summary}}" in query["m"]


@pytest.mark.parametrize(
    ("receivers", "problem"),
    [
        ([{"name": "Phone", "type": "ntfy", "url": "https://n/t"}], "lower case"),
        ([{"name": "x", "type": "pager", "url": "https://n/t"}], "type must be one of"),
        ([{"name": "x", "type": "ntfy"}], "needs url"),
        ([{"name": "x", "type": "ntfy", "url": "ntfy.sh/t"}], "http(s) URL"),
        ([{"name": "x", "type": "ntfy", "url": "https://n/t?tpl=1"}], "without a query"),
        ([{"name": "x", "type": "ntfy", "url": "https://n/t", "priority": "max"}], "priority"),
        ([{"name": "x", "type": "webhook", "url": "https://h", "to": "a@b"}], "does not take to"),
        (
            [{"name": "x", "type": "email", "to": "a@b", "from": "c@d", "smarthost": "mail"}],
            "host:port",
        ),
        (
            [
                {
                    "name": "x",
                    "type": "email",
                    "to": "a@b",
                    "from": "c@d",
                    "smarthost": "m:25",
                    "username": "u",
                }
            ],
            "both username and password",
        ),
        (
            [{"name": "x", "type": "webhook", "url": "https://a"}] * 2,
            "names must differ: x",
        ),
    ],
)
def test_a_wrong_receiver_is_named_without_its_secrets(receivers: list, problem: str) -> None:
    message = filters.monitoring_alert_receivers_problem(receivers)
    assert problem in message
    assert "https://n/t" not in message and "https://a" not in message


@pytest.mark.engine
def test_amtool_accepts_the_config_with_every_kind_of_receiver(tmp_path: Path) -> None:
    image = stand_in_image()
    variables = RoleVars({"monitoring_alert_receivers": RECEIVERS})
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(render("alertmanager.yml.j2", {"monitoring_alert_receivers": RECEIVERS}))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for item in filters.monitoring_alert_secret_files(RECEIVERS):
        (secrets / item["name"]).write_text(item["value"])
    result = promtool(
        image,
        {
            config_path: variables["_monitoring_container_alertmanager_config"],
            secrets: variables["_monitoring_container_alertmanager_secrets_dir"],
        },
        f"amtool check-config {variables['_monitoring_container_alertmanager_config']}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 receivers" in result.stdout, result.stdout


@pytest.mark.parametrize("retired", [None, "monitoring_alertmanager_webhook_url"])
def test_an_alert_variable_of_an_earlier_release_is_refused_by_name(
    tmp_path: Path, retired: str | None
) -> None:
    """The role's preflight, run by ansible-playbook: the single e-mail and webhook
    variables it replaced by receivers stop the play, named, instead of being
    quietly ignored (and the alerts with them)."""
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role: {name: monitoring, tasks_from: preflight}\n"
    )
    extra = {
        "ansible_python_interpreter": sys.executable,
        "monitoring_prometheus_image": "prom/prometheus:v3.5.0",
        "monitoring_alertmanager_image": "prom/alertmanager:v0.28.1",
        "monitoring_grafana_enabled": False,
        **({retired: "https://ha.home.arpa/api/webhook/fake-id"} if retired else {}),
    }
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            str(playbook),
            "-e",
            json.dumps(extra),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_NOCOLOR": "1"},
    )
    output = " ".join((run.stdout + run.stderr).split())
    if retired is None:
        assert run.returncode == 0, output[-2000:]
        return
    assert run.returncode != 0
    assert f"This role no longer reads {retired}: list where alerts go in" in output, output[-2000:]
    assert "fake-id" not in output
