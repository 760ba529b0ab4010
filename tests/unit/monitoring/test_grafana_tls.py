"""Grafana over HTTPS, and the local_tls role that gives it (and the gateway) a certificate.

Grafana's server cannot run on the machines that build and test this project
(no registry here carries it), and the lab keeps it off; so these tests
render the monitoring role's Compose file and variables the way the role
does and check what Grafana is told: HTTPS on its port, the certificate and
key from the TLS folder, that folder mounted read-only. They also check the
wiring between the callers and local_tls (every variable handed over exists,
every handler named to it exists in the caller), which Ansible would only
find out on a host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from tests.support.loader import REPO, load
from tests.support.monitoring_role import RoleVars, render

LOCAL_TLS = REPO / "roles" / "local_tls"
local_tls_filters = load("roles/local_tls/filter_plugins/local_tls.py", "local_tls_filters")

GRAFANA_ENV_TLS = ("GF_SERVER_PROTOCOL", "GF_SERVER_CERT_FILE", "GF_SERVER_CERT_KEY")


def grafana_service(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    compose = yaml.safe_load(render("compose.yaml.j2", overrides))
    return compose["services"]["grafana"]


def tls_mounts(service: dict[str, Any], tls_dir: str) -> list[str]:
    return [v for v in service["volumes"] if v.split(":")[0] == tls_dir]


# --- the Compose file -------------------------------------------------------


def test_grafana_serves_https_with_the_certificate_from_the_tls_folder() -> None:
    role = RoleVars({})
    service = grafana_service()
    env = service["environment"]
    inside = role["_monitoring_container_grafana_tls_dir"]
    certificate = role["_monitoring_grafana_tls_certificate_file"]
    key = role["_monitoring_grafana_tls_private_key_file"]
    assert env["GF_SERVER_PROTOCOL"] == "https"
    assert env["GF_SERVER_CERT_FILE"] == f"{inside}/{certificate}"
    assert env["GF_SERVER_CERT_KEY"] == f"{inside}/{key}"
    assert env["GF_SERVER_HTTP_PORT"] == str(role["monitoring_grafana_port"])
    assert tls_mounts(service, "/etc/monitoring/tls") == ["/etc/monitoring/tls:/etc/grafana/tls:ro"]


def test_the_tls_folder_is_mounted_from_where_the_role_writes_it() -> None:
    service = grafana_service({"monitoring_grafana_tls_dir": "/srv/grafana-tls"})
    assert tls_mounts(service, "/srv/grafana-tls") == ["/srv/grafana-tls:/etc/grafana/tls:ro"]


def test_with_tls_off_grafana_speaks_plain_http_and_mounts_no_certificate() -> None:
    service = grafana_service({"monitoring_grafana_tls_enabled": False})
    assert not set(GRAFANA_ENV_TLS) & set(service["environment"])
    assert not tls_mounts(service, "/etc/monitoring/tls")
    assert not [v for v in service["volumes"] if "/etc/grafana/tls" in v]
    # What stays: the provisioning folder (read-only) and Grafana's data.
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in service["volumes"]


def test_without_grafana_there_is_no_grafana_service_whatever_the_tls_setting() -> None:
    text = render("compose.yaml.j2", {"monitoring_grafana_enabled": False})
    assert "grafana" not in yaml.safe_load(text)["services"]
    assert "/etc/grafana/tls" not in text


# --- where the play checks Grafana, and the names of its certificate ----------


def test_the_play_checks_grafana_over_https_against_the_local_ca() -> None:
    role = RoleVars({})
    assert role["_monitoring_grafana_https"] is True
    assert role["_monitoring_grafana_tls_local_ca"] is True
    assert role["_monitoring_grafana_local_url"] == "https://192.0.2.30:3000"


def test_a_certificate_of_yours_is_not_the_local_ca() -> None:
    role = RoleVars(
        {"monitoring_grafana_tls_certificate": "PEM", "monitoring_grafana_tls_private_key": "KEY"}
    )
    assert role["_monitoring_grafana_https"] is True
    assert role["_monitoring_grafana_tls_local_ca"] is False


@pytest.mark.parametrize(
    "overrides",
    [{"monitoring_grafana_tls_enabled": False}, {"monitoring_grafana_enabled": False}],
    ids=["tls off", "grafana off"],
)
def test_without_https_the_play_checks_plain_http(overrides: dict[str, Any]) -> None:
    role = RoleVars(overrides)
    assert role["_monitoring_grafana_https"] is False
    assert role["_monitoring_grafana_tls_local_ca"] is False
    assert role["_monitoring_grafana_local_url"].startswith("http://")


def test_the_certificate_names_the_host_and_the_address_the_play_uses() -> None:
    names = RoleVars({})["_monitoring_grafana_tls_cert_names"]
    assert names == ["monitoring", "192.0.2.30", "localhost", "127.0.0.1"]


@pytest.mark.parametrize(
    ("bind", "added"),
    [("0.0.0.0", "127.0.0.1"), ("10.0.0.7", "10.0.0.7"), ("[fd00::7]", "fd00::7")],
)
def test_the_address_the_play_uses_is_always_named(bind: str, added: str) -> None:
    names = {"monitoring_grafana_tls_names": ["grafana.home.arpa"]}
    role = RoleVars({"monitoring_grafana_bind_address": bind, **names})
    assert role["_monitoring_grafana_tls_cert_names"] == ["grafana.home.arpa", added]
    assert added in role["_monitoring_grafana_local_url"]


# --- local_tls: names, and how the callers use it ---------------------------


@pytest.mark.parametrize(
    ("name", "san"),
    [
        ("gateway.home.arpa", "DNS:gateway.home.arpa"),
        ("localhost", "DNS:localhost"),
        ("192.0.2.30", "IP:192.0.2.30"),
        ("127.0.0.1", "IP:127.0.0.1"),
        ("fd00::7", "IP:fd00::7"),
        ("[fd00::7]", "IP:fd00::7"),
        ("192.0.2.300", "DNS:192.0.2.300"),
    ],
)
def test_subject_alt_names_are_ip_for_addresses_and_dns_for_the_rest(name: str, san: str) -> None:
    assert local_tls_filters.local_tls_san(name) == san


def test_the_role_turns_its_names_into_unique_subject_alt_names() -> None:
    role_vars = yaml.safe_load((LOCAL_TLS / "vars/main.yml").read_text())
    expression = role_vars["_local_tls_subject_alt_names"]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)  # noqa: S701 (not HTML)
    env.filters.update(local_tls_filters.FilterModule().filters())
    rendered = env.from_string(expression).render(
        local_tls_names=["gw", "192.0.2.1", "gw", "localhost", "127.0.0.1"]
    )
    assert rendered == "['DNS:gw', 'IP:192.0.2.1', 'DNS:localhost', 'IP:127.0.0.1']"


def _handlers(role: str) -> set[str]:
    names: set[str] = set()
    for handler in yaml.safe_load((REPO / "roles" / role / "handlers/main.yml").read_text()):
        names.add(handler["name"])
        listen = handler.get("listen", [])
        names.update([listen] if isinstance(listen, str) else listen)
    return names


def _local_tls_calls(tasks_file: Path) -> list[dict[str, Any]]:
    tasks = yaml.safe_load(tasks_file.read_text())
    return [
        t
        for t in tasks
        for key in ("ansible.builtin.import_role", "ansible.builtin.include_role")
        if t.get(key, {}).get("name") == "local_tls"
    ]


CALLERS = {
    "litellm_proxy": ("roles/litellm_proxy/tasks/tls.yml", "Reload HAProxy"),
    "monitoring": ("roles/monitoring/tasks/configure.yml", "Restart Grafana"),
}


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_each_caller_hands_over_known_variables_and_its_own_handler(caller: str) -> None:
    tasks_file, handler = CALLERS[caller]
    (call,) = _local_tls_calls(REPO / tasks_file)
    given = call["vars"]
    known = set(yaml.safe_load((LOCAL_TLS / "defaults/main.yml").read_text()))
    assert set(given) <= known, f"unknown local_tls variables: {set(given) - known}"
    assert given["local_tls_notify"] == [handler]
    assert set(given["local_tls_notify"]) <= _handlers(caller)
    assert given["local_tls_private_key"].strip("{} ").endswith("_tls_private_key")


def test_the_gateway_keeps_its_files_where_haproxy_reads_them() -> None:
    """The deployed files must not move: HAProxy's config and the lab tests name them."""
    (call,) = _local_tls_calls(REPO / CALLERS["litellm_proxy"][0])
    given = call["vars"]
    assert given["local_tls_group"] == "haproxy"
    assert given["local_tls_dir"] == "{{ litellm_proxy_tls_dir }}"
    assert given["local_tls_certificate_file"] == "server.crt"
    assert given["local_tls_private_key_file"] == "server.crt.key"
    haproxy = (REPO / "roles/litellm_proxy/templates/haproxy.cfg.j2").read_text()
    assert "ssl crt {{ litellm_proxy_tls_dir }}/server.crt " in haproxy
    defaults = yaml.safe_load((LOCAL_TLS / "defaults/main.yml").read_text())
    assert defaults["local_tls_ca_certificate_file"] == "ca.crt"
    assert defaults["local_tls_ca_private_key_file"] == "ca.key"


def test_grafana_gets_the_files_its_compose_service_names() -> None:
    (call,) = _local_tls_calls(REPO / CALLERS["monitoring"][0])
    given = call["vars"]
    assert given["local_tls_group"] == "{{ _monitoring_grafana_uid }}"
    assert given["local_tls_dir"] == "{{ monitoring_grafana_tls_dir }}"
    assert given["local_tls_names"] == "{{ _monitoring_grafana_tls_cert_names }}"
    assert given["local_tls_certificate_file"] == "{{ _monitoring_grafana_tls_certificate_file }}"
    assert given["local_tls_private_key_file"] == "{{ _monitoring_grafana_tls_private_key_file }}"
    assert given["local_tls_ca_certificate_file"] == "{{ _monitoring_grafana_tls_ca_file }}"
    assert call["when"] == "_monitoring_grafana_https | bool"
