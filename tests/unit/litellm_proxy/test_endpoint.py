"""Where the house reaches a gateway, as litellm_proxy publishes it
(tasks/endpoint.yml: litellm_proxy_endpoint {url, ca_file}), worked out from the
role's own variables on a made-up gateway host."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.role_render import RoleVars


def endpoint(address: str | None = "10.0.0.10", **overrides: Any) -> tuple[str, str]:
    facts = {"default_ipv4": {"address": address}} if address else {}
    host = {"inventory_hostname": "gw", "ansible_facts": facts, "ansible_host": "gw.home.arpa"}
    role = RoleVars("litellm_proxy", host, overrides)
    return role["_litellm_proxy_endpoint_url"].strip(), role[
        "_litellm_proxy_endpoint_ca_file"
    ].strip()


def test_a_gateway_serves_the_house_at_its_tls_front_by_default() -> None:
    assert endpoint() == ("https://10.0.0.10", "/etc/litellm-proxy/tls/ca.crt")


def test_the_tls_front_may_use_another_address_and_port() -> None:
    url, _ = endpoint(litellm_proxy_tls_bind_address="10.0.9.11", litellm_proxy_tls_port=8443)
    assert url == "https://10.0.9.11:8443"


def test_the_ca_file_follows_the_tls_folder_and_is_empty_for_a_certificate_of_yours() -> None:
    assert endpoint(litellm_proxy_tls_dir="/srv/tls")[1] == "/srv/tls/ca.crt"
    mine = {"litellm_proxy_tls_certificate": "PEM", "litellm_proxy_tls_private_key": "KEY"}
    assert endpoint(**mine)[1] == ""


@pytest.mark.parametrize(
    ("bind", "port", "url"),
    [
        ("10.0.0.10", 4000, "http://10.0.0.10:4000"),
        ("0.0.0.0", 4100, "http://10.0.0.10:4100"),
        ("fd00::12", 4000, "http://[fd00::12]:4000"),
        ("127.0.0.1", 80, "http://127.0.0.1"),
    ],
)
def test_without_tls_the_endpoint_is_the_proxy_itself(bind: str, port: int, url: str) -> None:
    found = endpoint(
        litellm_proxy_tls_enabled=False, litellm_proxy_bind_address=bind, litellm_proxy_port=port
    )
    assert found == (url, "")


def test_a_gateway_without_facts_keeps_its_inventory_address() -> None:
    url, _ = endpoint(None, litellm_proxy_tls_enabled=False, litellm_proxy_bind_address="0.0.0.0")
    assert url == "http://gw.home.arpa:4000"


def test_the_play_asks_the_proxy_on_this_host() -> None:
    role = RoleVars("litellm_proxy", {"inventory_hostname": "gw", "ansible_facts": {}}, {})
    assert role["_litellm_proxy_local_url"] == "http://127.0.0.1:4000"
    any_address = RoleVars(
        "litellm_proxy",
        {"inventory_hostname": "gw", "ansible_facts": {}},
        {"litellm_proxy_bind_address": "0.0.0.0"},
    )
    assert any_address["_litellm_proxy_local_url"] == "http://127.0.0.1:4000"
