"""The servers of the gateways' TLS front: every gateway's proxy, and the
ports the running stack publishes (which its firewall keeps guarding while
a change moves to other ports).

Each gateway publishes where the other gateways' fronts reach its proxy
(``litellm_proxy_endpoint.peer``, ``{host, port}``), and every front spreads
the house's requests over all of them. A gateway that was off when the
endpoints were learnt may have published a loopback address (it had no
facts): from another host that address is this host, so it is left out
rather than counted twice.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def litellm_proxy_is_loopback(address: Any) -> bool:
    """Whether ``address`` is a loopback address (``localhost`` counts; other names do not)."""
    host = str(address).strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def litellm_proxy_front_server_name(inventory_name: Any) -> str:
    """A gateway's server name in every front's HAProxy backend: its inventory
    name, with what HAProxy does not allow in a name (all but letters, digits
    and ``. _ -``) as ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(inventory_name))


def litellm_proxy_front_servers(
    peers: Mapping[str, Any], this_host: str, this_peer: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``[{name, host, port, this}]``, by inventory name: this gateway's proxy
    (``this`` true) and every other one."""
    servers: dict[str, dict[str, Any]] = {}
    for inventory_name, peer in {**(peers or {}), this_host: this_peer}.items():
        if not isinstance(peer, Mapping) or "host" not in peer or "port" not in peer:
            raise AnsibleFilterError(
                f"litellm_proxy_peers: {inventory_name} has no {{host, port}}: {peer!r}"
            )
        host = str(peer["host"]).strip().strip("[]")
        if not host or (inventory_name != this_host and litellm_proxy_is_loopback(host)):
            continue
        servers[str(inventory_name)] = {
            "name": litellm_proxy_front_server_name(inventory_name),
            "host": host,
            "port": int(peer["port"]),
            "this": inventory_name == this_host,
        }
    names = [server["name"] for server in servers.values()]
    if len(set(names)) != len(names):
        raise AnsibleFilterError(
            f"two gateways' names become one HAProxy server name: {sorted(names)}"
        )
    return [servers[name] for name in sorted(servers)]


def litellm_proxy_published_ports(container_info: Mapping[str, Any]) -> list[int]:
    """The host ports a container publishes, from community.docker's
    docker_container_info (none when the container does not exist)."""
    if not container_info.get("exists"):
        return []
    bindings = ((container_info.get("container") or {}).get("HostConfig") or {}).get(
        "PortBindings"
    ) or {}
    ports = {
        int(binding["HostPort"])
        for entries in bindings.values()
        for binding in entries or []
        if str(binding.get("HostPort") or "").isdigit()
    }
    return sorted(ports)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "litellm_proxy_front_servers": litellm_proxy_front_servers,
            "litellm_proxy_is_loopback": litellm_proxy_is_loopback,
            "litellm_proxy_front_server_name": litellm_proxy_front_server_name,
            "litellm_proxy_published_ports": litellm_proxy_published_ports,
        }
