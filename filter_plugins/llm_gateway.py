"""Filters every role of the project shares: one place for each of these facts.

``ansible.cfg`` names this folder (``filter_plugins``), so every playbook run
from the repository, Molecule's lab and ansible-lint find it;
``playbooks/filter_plugins`` links here for playbooks run from another folder.

* Where another machine reaches a host: its default IPv4 address from its
  facts, else the address Ansible connects to (``ansible_host``, else its
  inventory name).
* How an address goes into a URL (IPv6 in brackets), and where a service bound
  to "every address" is reached from its own host (loopback).
* What is wrong with a secret, in words that never contain it.
* Which addresses a firewall lets in, checked and merged for nftables.
* What the roles published, gathered over the hosts of a group: each role
  publishes where it serves (a fact of its own, never its defaults), and the
  wiring in ``group_vars/all/vars.yml`` hands that to the roles that talk to
  it; a host that has not published says which play to run.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# Addresses that mean "every interface" when a service is bound to them.
ANY_ADDRESSES = ("", "0.0.0.0", "::", "[::]")  # noqa: S104 (compared with, never bound to)
# Example keys from LiteLLM's own documentation, which its proxy refuses too.
WELL_KNOWN_KEYS = ("sk-1234",)
EXAMPLE_MARKER = "CHANGE-ME"


def llm_gateway_ip_version(value: Any) -> int:
    """4 or 6 for an IP address literal (IPv6 may be in brackets), 0 for anything else."""
    try:
        return ipaddress.ip_address(str(value).strip().strip("[]")).version
    except ValueError:
        return 0


def llm_gateway_url_host(address: Any) -> str:
    """The address as it goes in a URL or ``host:port``: IPv6 in brackets."""
    text = str(address).strip().strip("[]")
    return f"[{text}]" if llm_gateway_ip_version(text) == 6 else text


def llm_gateway_host_port(address: Any, port: Any) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"{llm_gateway_url_host(address)}:{int(port)}"


def llm_gateway_local_host(bind: Any) -> str:
    """The address a service bound to ``bind`` is reached at from its own host."""
    text = str(bind).strip()
    return "127.0.0.1" if text in ANY_ADDRESSES else text.strip("[]")


def llm_gateway_listen_address(bind: Any, port: Any) -> str:
    """A Go server's listen address: ``:port`` for every address, else ``host:port``."""
    text = str(bind).strip()
    return f":{int(port)}" if text in ANY_ADDRESSES else llm_gateway_host_port(text, port)


def llm_gateway_host_address(host_vars: Mapping[str, Any]) -> str:
    """The address other machines reach an inventory host at.

    Its default IPv4 address from its facts; else the address Ansible itself
    connects to, its ``ansible_host`` or its inventory name. A host that is off
    during a run (no facts) keeps its inventory address, so that what points
    at it (a route, a scrape target) reaches it again once it is back.
    """
    facts = host_vars.get("ansible_facts") or {}
    address = str((facts.get("default_ipv4") or {}).get("address") or "").strip()
    if llm_gateway_ip_version(address):
        return address
    for key in ("ansible_host", "inventory_hostname"):
        given = str(host_vars.get(key) or "").strip()
        if given:
            return given
    raise AnsibleFilterError(f"no address for a host without facts or name: {dict(host_vars)!r}")


def llm_gateway_secret_problem(value: Any, prefix: str = "", min_length: int = 0) -> str:
    """What is wrong with a secret, in words that never contain it; '' when it is fine."""
    if value is None or not isinstance(value, str) or not value:
        return "is empty or missing"
    if EXAMPLE_MARKER in value:
        return "is still the example value"
    if value.startswith(WELL_KNOWN_KEYS):
        return "is a well-known example key"
    if prefix and not value.startswith(prefix):
        return f'does not start with "{prefix}"'
    if len(value) < min_length:
        return f"is shorter than {min_length} characters"
    if len(set(value.removeprefix(prefix))) < 8:
        return "has fewer than 8 different characters"
    return ""


def llm_gateway_networks(entries: Any, what: str = "address") -> list[str]:
    """Addresses and networks (CIDR), each checked and written the one way Python's
    ipaddress writes it (``192.168.1.7/24`` is its network ``192.168.1.0/24``).

    Raises, naming the entry and ``what`` it was given as, for anything else."""
    networks: list[str] = []
    for entry in entries or []:
        text = str(entry).strip()
        try:
            network = ipaddress.ip_network(text.strip("[]"), strict=False)
        except ValueError as error:
            raise AnsibleFilterError(
                f"{what} {text!r} is not an IP address or network (CIDR): {error}"
            ) from error
        single = network.prefixlen == network.max_prefixlen
        written = str(network.network_address) if single else str(network)
        if written not in networks:
            networks.append(written)
    return networks


def llm_gateway_firewall_sources(entries: Any, what: str = "firewall source") -> dict[str, list]:
    """Addresses and networks as nftables set elements: checked (as
    ``llm_gateway_networks``), split by family and merged, so that a host inside
    an allowed network, or two overlapping networks, never make the interval
    set fail to load."""
    by_family: dict[int, list[Any]] = {4: [], 6: []}
    for text in llm_gateway_networks(entries, what):
        network = ipaddress.ip_network(text)
        by_family[network.version].append(network)
    return {
        f"ipv{version}": [
            str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
            for n in ipaddress.collapse_addresses(sorted(networks))
        ]
        for version, networks in by_family.items()
    }


def llm_gateway_published(
    hosts: Any, hostvars: Mapping[str, Any], fact: str, role: str, key: str = ""
) -> dict[str, Any]:
    """``{host: hostvars[host][fact]}`` (or that value's ``key``) for every host, in order.

    Raises, naming the host, the fact and the role, when a host has not
    published the fact in this run.
    """
    published: dict[str, Any] = {}
    for host in hosts or []:
        value = (hostvars.get(host) or {}).get(fact)
        if value is None or value == "":
            raise AnsibleFilterError(
                f"{host} has not published {fact} in this run: run the {role} role on it first, "
                f"or its endpoint alone (playbooks/endpoints.yml does, for every host)"
            )
        if key:
            if not isinstance(value, Mapping) or key not in value:
                raise AnsibleFilterError(f"{host}: {fact} has no {key!r}: {value!r}")
            value = value[key]
        published[str(host)] = value
    return published


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "llm_gateway_ip_version": llm_gateway_ip_version,
            "llm_gateway_url_host": llm_gateway_url_host,
            "llm_gateway_host_port": llm_gateway_host_port,
            "llm_gateway_local_host": llm_gateway_local_host,
            "llm_gateway_listen_address": llm_gateway_listen_address,
            "llm_gateway_host_address": llm_gateway_host_address,
            "llm_gateway_secret_problem": llm_gateway_secret_problem,
            "llm_gateway_published": llm_gateway_published,
            "llm_gateway_networks": llm_gateway_networks,
            "llm_gateway_firewall_sources": llm_gateway_firewall_sources,
        }
