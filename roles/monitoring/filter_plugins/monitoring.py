"""Data decisions of the monitoring role, as plain Python the unit tests call.

* Scrape targets come from what the other roles published: a gateway's
  endpoint (``litellm_proxy_endpoint``: where the house reaches it, its TLS
  front or the proxy itself) and a node exporter's ``host:port``
  (``node_exporter_endpoint``). A service bound to a loopback address of
  another machine cannot be scraped; that is an error saying which variable
  to set, not a target that is silently down forever.
* Prometheus durations (``90s``, ``1h30m``) are parsed here, so a typo fails
  the preflight and the rules' unit tests can be timed from the same values.
* Where alerts go (``monitoring_alert_receivers``): each receiver becomes
  Alertmanager config that names files, and the files hold its secrets (a
  webhook URL, an ntfy topic URL and token, an SMTP password), so that
  alertmanager.yml holds none.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

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


RECEIVER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
RECEIVER_FIELDS = {
    "webhook": {"required": ("url",), "optional": ()},
    "ntfy": {"required": ("url",), "optional": ("token", "priority")},
    "email": {
        "required": ("to", "from", "smarthost"),
        "optional": ("username", "password", "require_tls"),
    },
}
# ntfy (2.10 and later) fills a message from a JSON body it is posted when the
# URL asks it to (tpl=1): title t and message m are Go templates over the body,
# here Alertmanager's webhook payload (https://docs.ntfy.sh/publish/#message-templating).
NTFY_TITLE = "[{{.status}}] {{.commonLabels.alertname}}"
NTFY_MESSAGE = (
    "{{range .alerts}}{{.annotations.summary}}"
    '{{if eq .status "resolved"}} (resolved){{end}}\n{{end}}'
)
NTFY_PRIORITIES = {"min", "low", "default", "high", "urgent", "1", "2", "3", "4", "5"}


def _receiver_problem(receiver: Mapping[str, Any]) -> str:
    name = str(receiver.get("name") or "")
    if not RECEIVER_NAME.match(name):
        return f"a receiver's name must be lower case letters, digits, - or _: {name!r}"
    kind = receiver.get("type")
    if kind not in RECEIVER_FIELDS:
        return f"receiver {name}: type must be one of {', '.join(RECEIVER_FIELDS)}, not {kind!r}"
    fields = RECEIVER_FIELDS[kind]
    unknown = set(receiver) - {"name", "type", *fields["required"], *fields["optional"]}
    if unknown:
        return f"receiver {name} ({kind}) does not take {', '.join(sorted(unknown))}"
    missing = [f for f in fields["required"] if not str(receiver.get(f) or "").strip()]
    if missing:
        return f"receiver {name} ({kind}) needs {', '.join(missing)}"
    if kind in ("webhook", "ntfy") and not re.match(r"^https?://[^/\s]+", str(receiver["url"])):
        return f"receiver {name}: url must be an http(s) URL"
    if kind == "ntfy" and "?" in str(receiver["url"]):
        return f"receiver {name}: url is the topic's URL, without a query"
    if kind == "ntfy" and str(receiver.get("priority", "default")) not in NTFY_PRIORITIES:
        return f"receiver {name}: priority must be one of {', '.join(sorted(NTFY_PRIORITIES))}"
    if kind == "email":
        if not re.match(r"^[^:\s]+:[0-9]+$", str(receiver["smarthost"])):
            return f"receiver {name}: smarthost must be host:port"
        if bool(receiver.get("username")) != bool(receiver.get("password")):
            return f"receiver {name}: give both username and password, or neither"
    return ""


def monitoring_alert_receivers_problem(receivers: Any) -> str:
    """What is wrong with monitoring_alert_receivers, or ''. Never shows a value
    that may be a secret (URLs, tokens, passwords): only names and fields."""
    if not isinstance(receivers, list):
        return "monitoring_alert_receivers must be a list"
    names: list[str] = []
    for receiver in receivers:
        if not isinstance(receiver, Mapping):
            return "each entry of monitoring_alert_receivers is a mapping (name, type, ...)"
        problem = _receiver_problem(receiver)
        if problem:
            return problem
        names.append(str(receiver["name"]))
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        return f"receiver names must differ: {', '.join(duplicates)}"
    return ""


def _ntfy_url(receiver: Mapping[str, Any]) -> str:
    query = {"tpl": "1", "t": NTFY_TITLE, "m": NTFY_MESSAGE}
    if receiver.get("priority"):
        query["p"] = str(receiver["priority"])
    return f"{str(receiver['url']).rstrip('/')}?{urlencode(query)}"


def monitoring_alert_secret_files(receivers: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The files of the receivers' secrets: [{name, value}], one per secret."""
    files: list[dict[str, str]] = []
    for receiver in receivers:
        name, kind = receiver["name"], receiver["type"]
        if kind == "webhook":
            files.append({"name": f"{name}.url", "value": str(receiver["url"])})
        elif kind == "ntfy":
            files.append({"name": f"{name}.url", "value": _ntfy_url(receiver)})
            if receiver.get("token"):
                files.append({"name": f"{name}.token", "value": str(receiver["token"])})
        elif receiver.get("username"):
            files.append({"name": f"{name}.password", "value": str(receiver["password"])})
    return files


def monitoring_alert_receiver(
    receivers: list[Mapping[str, Any]], secrets_dir: str, name: str = "default"
) -> dict[str, Any]:
    """Alertmanager's one receiver, which sends every alert to each of ours."""
    webhooks: list[dict[str, Any]] = []
    mails: list[dict[str, Any]] = []
    for receiver in receivers:
        base, kind = f"{secrets_dir}/{receiver['name']}", receiver["type"]
        if kind in ("webhook", "ntfy"):
            config: dict[str, Any] = {"url_file": f"{base}.url", "send_resolved": True}
            if kind == "ntfy" and receiver.get("token"):
                config["http_config"] = {
                    "authorization": {"type": "Bearer", "credentials_file": f"{base}.token"}
                }
            webhooks.append(config)
        else:
            mail: dict[str, Any] = {
                "to": str(receiver["to"]),
                "from": str(receiver["from"]),
                "smarthost": str(receiver["smarthost"]),
                "require_tls": bool(receiver.get("require_tls", True)),
                "send_resolved": True,
            }
            if receiver.get("username"):
                mail["auth_username"] = str(receiver["username"])
                mail["auth_password_file"] = f"{base}.password"
            mails.append(mail)
    result: dict[str, Any] = {"name": name}
    if mails:
        result["email_configs"] = mails
    if webhooks:
        result["webhook_configs"] = webhooks
    return result


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "monitoring_duration_seconds": monitoring_duration_seconds,
            "monitoring_node_target": monitoring_node_target,
            "monitoring_gateway_target": monitoring_gateway_target,
            "monitoring_alert_receivers_problem": monitoring_alert_receivers_problem,
            "monitoring_alert_secret_files": monitoring_alert_secret_files,
            "monitoring_alert_receiver": monitoring_alert_receiver,
        }
