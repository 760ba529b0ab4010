"""Data decisions of the monitoring role, as plain Python the unit tests call.

* Scrape targets come from what the other roles published: a gateway's
  endpoint (``litellm_proxy_endpoint``: where the house reaches it, its TLS
  front or the proxy itself) and a node exporter's ``host:port``
  (``node_exporter_endpoint``). A service bound to a loopback address of
  another machine cannot be scraped; that is an error saying which variable
  to set, not a target that is silently down forever.
* Prometheus durations (``90s``, ``1h30m``) are parsed here, so a typo fails
  the preflight and the rules' unit tests can be timed from the same values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def monitoring_duration_seconds(text: Any) -> float:
    """Seconds in a Prometheus duration such as ``30s``, ``5m`` or ``1h30m``."""
    match = DURATION.match(str(text).strip())
    if not match or not any(match.groups()):
        raise AnsibleFilterError(
            f"{text!r} is not a Prometheus duration; write it like 30s, 5m, 1h or 1h30m"
        )
    seconds = sum(
        int(n) * unit for n, unit in zip(match.groups(), DURATION_UNITS, strict=True) if n
    )
    return int(seconds) if float(seconds).is_integer() else seconds


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _reachable(name: str, address: str, monitoring_host: str, hint: str) -> str:
    """``address`` unless it is a loopback address of a machine other than the monitoring host."""
    ip = _ip(address)
    if ip is None or not ip.is_loopback or name == monitoring_host:
        return address
    raise AnsibleFilterError(
        f"{name} listens on {address} only, so Prometheus on {monitoring_host} "
        f"cannot reach it. {hint}"
    )


def monitoring_node_target(item: Mapping[str, Any], monitoring_host: str) -> dict[str, Any]:
    """The static config that scrapes one node exporter.

    ``item`` is one entry of ``monitoring_node_targets | dict2items``: the
    host's inventory name and the ``host:port`` its node exporter published.
    """
    name, target = str(item["key"]), str(item["value"] or "").strip()
    parts = urlsplit(f"//{target}")
    if not parts.hostname or not parts.port:
        raise AnsibleFilterError(
            f"monitoring_node_targets: {name} has {target!r}, not host:port (the node_exporter "
            "role publishes it as node_exporter_endpoint.target)"
        )
    _reachable(
        name,
        parts.hostname,
        monitoring_host,
        f"Set node_exporter_bind_address for {name} to an address the monitoring host reaches.",
    )
    return {"targets": [target], "labels": {"instance": name}}


def monitoring_gateway_target(item: Mapping[str, Any], monitoring_host: str) -> dict[str, Any]:
    """The static config that scrapes one gateway where the house reaches it.

    ``item`` is one entry of ``monitoring_gateways | dict2items``: the gateway's
    inventory name and the endpoint it published (``litellm_proxy_endpoint``:
    ``url``, and ``ca_file``). Its scheme and address are the URL's.
    """
    name = str(item["key"])
    endpoint = item["value"] if isinstance(item["value"], Mapping) else {}
    url = str(endpoint.get("url") or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AnsibleFilterError(
            f"monitoring_gateways: {name} has no http(s) url (it has {url!r}); the litellm_proxy "
            "role publishes it as litellm_proxy_endpoint"
        )
    _reachable(
        name,
        parts.hostname,
        monitoring_host,
        f"Serve {name}'s endpoint on an address the monitoring host reaches "
        "(litellm_proxy_tls_bind_address, or litellm_proxy_bind_address with TLS off).",
    )
    default_port = 443 if parts.scheme == "https" else 80
    return {
        "targets": [parts.netloc if parts.port else f"{parts.netloc}:{default_port}"],
        "labels": {"instance": name, "__scheme__": parts.scheme},
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "monitoring_duration_seconds": monitoring_duration_seconds,
            "monitoring_node_target": monitoring_node_target,
            "monitoring_gateway_target": monitoring_gateway_target,
        }
