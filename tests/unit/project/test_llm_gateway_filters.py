"""The filters every role shares (filter_plugins/llm_gateway.py): host addresses,
addresses in URLs, listen addresses, secrets, and what the roles published."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from tests.support.loader import load

f = load("filter_plugins/llm_gateway.py", "llm_gateway_filters")


def test_host_addresses_come_from_facts_then_where_ansible_connects() -> None:
    facts = {"ansible_facts": {"default_ipv4": {"address": "192.168.1.10"}}, "ansible_host": "gw"}
    assert f.llm_gateway_host_address(facts) == "192.168.1.10"
    assert f.llm_gateway_host_address({"ansible_host": "192.168.1.11"}) == "192.168.1.11"
    off = {"inventory_hostname": "gpu", "ansible_facts": {}, "ansible_host": "gpu.home.arpa"}
    assert f.llm_gateway_host_address(off) == "gpu.home.arpa"
    bare = {"inventory_hostname": "nas.home.arpa", "ansible_facts": {"default_ipv4": {}}}
    assert f.llm_gateway_host_address(bare) == "nas.home.arpa"


def test_addresses_for_urls() -> None:
    assert f.llm_gateway_ip_version("192.168.1.2") == 4
    assert f.llm_gateway_ip_version("fd00::1") == 6
    assert f.llm_gateway_ip_version("[fd00::1]") == 6
    assert f.llm_gateway_ip_version("") == 0
    assert f.llm_gateway_ip_version("host.home.arpa") == 0
    assert f.llm_gateway_url_host("fd00::1") == "[fd00::1]"
    assert f.llm_gateway_url_host("[fd00::1]") == "[fd00::1]"
    assert f.llm_gateway_url_host("192.168.1.2") == "192.168.1.2"
    assert f.llm_gateway_host_port("fd00::1", "11434") == "[fd00::1]:11434"
    assert f.llm_gateway_host_port("gpu.home.arpa", 11434) == "gpu.home.arpa:11434"


def test_local_host_is_where_a_service_is_reached_on_its_own_host() -> None:
    assert f.llm_gateway_local_host("0.0.0.0") == "127.0.0.1"
    assert f.llm_gateway_local_host("::") == "127.0.0.1"
    assert f.llm_gateway_local_host("") == "127.0.0.1"
    assert f.llm_gateway_local_host(" 192.0.2.30 ") == "192.0.2.30"
    assert f.llm_gateway_local_host("[::1]") == "::1"


def test_listen_and_local_addresses() -> None:
    assert f.llm_gateway_listen_address("0.0.0.0", 9090) == ":9090"
    assert f.llm_gateway_listen_address("", 9100) == ":9100"
    assert f.llm_gateway_listen_address("127.0.0.1", 9090) == "127.0.0.1:9090"
    assert f.llm_gateway_host_port(f.llm_gateway_local_host("0.0.0.0"), 9090) == "127.0.0.1:9090"
    assert f.llm_gateway_host_port(f.llm_gateway_local_host("::1"), 9093) == "[::1]:9093"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty or missing"),
        (None, "is empty or missing"),
        ("sk-CHANGE-ME", "is still the example value"),
        ("sk-1234", "is a well-known example key"),
        ("sk-12345678901234567890123456789012", "is a well-known example key"),
        ("pk-" + "abcdefghij" * 4, 'does not start with "sk-"'),
        ("sk-abcdefghij", "is shorter than 32 characters"),
        ("sk-" + "ab" * 20, "has fewer than 8 different characters"),
        ("sk-llmlab-master-key-not-a-secret-0123456789", ""),
    ],
)
def test_secret_problem_says_what_is_wrong_without_the_value(value: Any, problem: str) -> None:
    found = f.llm_gateway_secret_problem(value, prefix="sk-", min_length=32)
    assert found == problem
    if value:
        assert value not in found


def test_published_facts_are_gathered_in_inventory_order() -> None:
    hostvars = {
        "gpu": {"ollama_host_url": "http://10.0.0.20:11434"},
        "box": {"ollama_host_url": "http://10.0.0.21:11434"},
        "gw": {"node_exporter_endpoint": {"target": "10.0.0.10:9100", "textfile_dir": "/x"}},
    }
    published = f.llm_gateway_published(["gpu", "box"], hostvars, "ollama_host_url", "ollama_host")
    assert list(published.items()) == [
        ("gpu", "http://10.0.0.20:11434"),
        ("box", "http://10.0.0.21:11434"),
    ]
    assert f.llm_gateway_published(
        ["gw"], hostvars, "node_exporter_endpoint", "node_exporter", "target"
    ) == {"gw": "10.0.0.10:9100"}
    assert f.llm_gateway_published([], hostvars, "ollama_host_url", "ollama_host") == {}


def test_a_host_that_has_not_published_names_the_role_to_run() -> None:
    with pytest.raises(
        AnsibleFilterError, match=r"box has not published ollama_host_url.*ollama_host"
    ):
        f.llm_gateway_published(["box"], {"box": {}}, "ollama_host_url", "ollama_host")


def test_networks_are_checked_and_written_one_way() -> None:
    assert f.llm_gateway_networks(["192.168.1.7/24", "10.0.0.5", "[fd00::1]", "10.0.0.5"]) == [
        "192.168.1.0/24",
        "10.0.0.5",
        "fd00::1",
    ]
    with pytest.raises(AnsibleFilterError, match=r"admin source 'gw.home.arpa' is not an IP"):
        f.llm_gateway_networks(["gw.home.arpa"], "admin source")


def test_firewall_sources_are_split_merged_and_checked() -> None:
    sources = f.llm_gateway_firewall_sources(
        ["172.30.77.10", "172.30.77.1", "172.30.77.0/28", "10.0.0.7/24", "fd00::5", "fd00::/64"]
    )
    assert sources == {"ipv4": ["10.0.0.0/24", "172.30.77.0/28"], "ipv6": ["fd00::/64"]}
    assert f.llm_gateway_firewall_sources(["192.168.1.10", "192.168.1.20"]) == {
        "ipv4": ["192.168.1.10", "192.168.1.20"],
        "ipv6": [],
    }
    assert f.llm_gateway_firewall_sources([]) == {"ipv4": [], "ipv6": []}
    with pytest.raises(AnsibleFilterError, match=r"'gateway\.home\.arpa' is not an IP"):
        f.llm_gateway_firewall_sources(["gateway.home.arpa"])
