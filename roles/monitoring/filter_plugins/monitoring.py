"""Data decisions of the monitoring role, as plain Python the unit tests call.

* Scrape targets come from the inventory: each host's address is its default
  IPv4 address from its facts (else an IP address given as ``ansible_host``),
  a gateway's is where the house reaches it (its TLS front, or the proxy
  itself), an Ollama host's is the ``ollama_host_url`` it published. A
  service bound to a loopback address of another machine cannot be scraped;
  that is an error saying which variable to set, not a target that is
  silently down forever.
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
from ansible.module_utils.parsing.convert_bool import boolean

DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
# Addresses that mean "every interface" when a service is bound to them.
ANY_ADDRESSES = ("", "0.0.0.0", "::", "[::]")  # noqa: S104 (compared with, never bound to)


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


def _name(host_vars: Mapping[str, Any]) -> str:
    return str(host_vars.get("inventory_hostname") or "?")


def monitoring_host_address(host_vars: Mapping[str, Any]) -> str:
    """The address other machines reach a host at: its default IPv4 address."""
    facts = host_vars.get("ansible_facts") or {}
    address = (facts.get("default_ipv4") or {}).get("address")
    if address:
        return str(address)
    given = str(host_vars.get("ansible_host") or "")
    if _ip(given):
        return given
    raise AnsibleFilterError(
        f"the address of {_name(host_vars)} is unknown: its facts were not gathered in this "
        "run and its ansible_host is not an IP address. Gather the facts of every host of "
        "the stack first (playbooks/monitoring.yml does: its first play runs on "
        "gateway:ollama:monitoring), or give the host an IP address as ansible_host."
    )


def _host_port(address: str, port: Any) -> str:
    ip = _ip(address)
    host = f"[{ip}]" if ip is not None and ip.version == 6 else address
    return f"{host}:{int(port)}"


def _reachable(host_vars: Mapping[str, Any], address: str, monitoring_host: str, hint: str) -> str:
    """``address`` unless it is a loopback address of a machine other than the monitoring host."""
    ip = _ip(address)
    if ip is None or not ip.is_loopback or _name(host_vars) == monitoring_host:
        return address
    raise AnsibleFilterError(
        f"{_name(host_vars)} listens on {address} only, so Prometheus on {monitoring_host} "
        f"cannot reach it. {hint}"
    )


def monitoring_node_target(host_vars: Mapping[str, Any], port: Any) -> dict[str, Any]:
    """The static config that scrapes one host's node exporter."""
    address = monitoring_host_address(host_vars)
    return {"targets": [_host_port(address, port)], "labels": {"instance": _name(host_vars)}}


def monitoring_gateway_target(
    host_vars: Mapping[str, Any], monitoring_host: str, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """The static config that scrapes one gateway where the house reaches it.

    A gateway that published ``litellm_proxy_url`` is scraped there. Otherwise
    its inventory decides, with the gateway role's defaults (``defaults``) for
    what it does not set: its TLS front (``litellm_proxy_tls_*``: the host's
    address, HTTPS) when TLS is on, else the proxy's own address and port.
    """
    name = _name(host_vars)
    url = str(host_vars.get("litellm_proxy_url") or "").strip()
    if url:
        parts = urlsplit(url)
        scheme, bind = parts.scheme or "http", parts.hostname or ""
        port: Any = parts.port or (443 if scheme == "https" else 80)
        hint = f"Publish a litellm_proxy_url for {name} that the monitoring host reaches."
    elif boolean(host_vars.get("litellm_proxy_tls_enabled", defaults["tls_enabled"])):
        scheme = "https"
        bind = str(host_vars.get("litellm_proxy_tls_bind_address") or "").strip()
        bind = bind or monitoring_host_address(host_vars)
        port = host_vars.get("litellm_proxy_tls_port") or defaults["tls_port"]
        hint = f"Set litellm_proxy_tls_bind_address for {name} to its address on the network."
    else:
        scheme = "http"
        bind = str(host_vars.get("litellm_proxy_bind_address") or defaults["bind_address"])
        port = host_vars.get("litellm_proxy_port") or defaults["port"]
        hint = (
            f"Set litellm_proxy_bind_address for {name} to an address the monitoring host "
            "reaches, e.g. \"{{ ansible_facts['default_ipv4']['address'] }}\", or turn its "
            "TLS front on (litellm_proxy_tls_enabled)."
        )
    if bind.strip() in ANY_ADDRESSES:
        address = monitoring_host_address(host_vars)
    else:
        address = _reachable(host_vars, bind.strip(), monitoring_host, hint)
    return {
        "targets": [_host_port(address, port)],
        "labels": {"instance": name, "__scheme__": scheme},
    }


def monitoring_ollama_target(
    host_vars: Mapping[str, Any], monitoring_host: str, default_port: Any = 11434
) -> dict[str, Any]:
    """The static config that probes one Ollama host's API (``/api/version``)."""
    url = str(host_vars.get("ollama_host_url") or "").rstrip("/")
    if not url:
        port = host_vars.get("ollama_host_port") or default_port
        url = f"http://{_host_port(monitoring_host_address(host_vars), port)}"
    _reachable(
        host_vars,
        urlsplit(url).hostname or "",
        monitoring_host,
        f"Bind Ollama on {_name(host_vars)} to an address the monitoring host reaches "
        "(ollama_host_bind_address).",
    )
    return {"targets": [f"{url}/api/version"], "labels": {"instance": _name(host_vars)}}


def monitoring_local_host(bind: str) -> str:
    """The address a service bound to ``bind`` is reached at from its own host."""
    bind = str(bind).strip()
    return "127.0.0.1" if bind in ANY_ADDRESSES else bind.strip("[]")


def monitoring_local_address(bind: str, port: Any) -> str:
    """``host:port`` where a service bound to ``bind`` is reached from its own host."""
    return _host_port(monitoring_local_host(bind), port)


def monitoring_listen_address(bind: str, port: Any) -> str:
    """A ``--web.listen-address``: ``:port`` for every address, else ``host:port``."""
    bind = str(bind).strip()
    return f":{int(port)}" if bind in ANY_ADDRESSES else _host_port(bind, port)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "monitoring_duration_seconds": monitoring_duration_seconds,
            "monitoring_host_address": monitoring_host_address,
            "monitoring_node_target": monitoring_node_target,
            "monitoring_gateway_target": monitoring_gateway_target,
            "monitoring_ollama_target": monitoring_ollama_target,
            "monitoring_local_host": monitoring_local_host,
            "monitoring_local_address": monitoring_local_address,
            "monitoring_listen_address": monitoring_listen_address,
        }
