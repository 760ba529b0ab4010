"""The ollama_host role, checked on the running lab's hosts.

Stand-in: the Ollama binary. No registry here carries the Ollama server, so
the archive the role installs on the lab's ollama host is the one
tests/lab/ollama_archive.py builds, with the release archive's layout
(``bin/ollama``, ``lib/ollama/``) and tests/emulator/provider_emulator.py as
the server behind ``bin/ollama``. It goes through the role's real install
tasks (get_url with the checksum from a ``sha256sum.txt``, unpack, version
marker, systemd unit), and it answers Ollama's HTTP API (``/api/version``,
``/api/tags``, ``/api/pull``, ``/api/delete``), which the role's model tasks
use. Everything else here is real: systemd, the unit's user and hardening, the
listening socket, the environment, nftables and the network between the hosts.

Expected values come from the role's defaults/main.yml with the lab's
overrides from molecule/default/group_vars (``LAB_GROUP_VARS`` points
elsewhere), and the hosts' addresses from the hosts themselves.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLE_DEFAULTS = REPO / "roles" / "ollama_host" / "defaults" / "main.yml"
LAB_GROUP_VARS = Path(
    os.environ.get("LAB_GROUP_VARS", REPO / "molecule" / "default" / "group_vars")
)
FIREWALL_TABLE = "ollama_host"
FIREWALL_UNIT = "ollama-host-firewall.service"
MARKER = "lib/ollama/.ansible-installed-version"

# Run on a lab host: GET a URL, print {"status", "body"} or {"error"} as JSON.
FETCH = """
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as answer:
        print(json.dumps({"status": answer.status, "body": answer.read().decode()}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__ + ": " + str(exc)}))
"""

# Run on a lab host: open a TCP connection, say whether it was let through.
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except OSError as exc:
    print("blocked: " + type(exc).__name__ + ": " + str(exc))
else:
    print("connected")
"""


def _yaml_dict(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else {}  # an encrypted vault is a plain string


def model_name(name: str) -> str:
    """Ollama's short form: ``:latest`` when there is no tag."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def host_ipv4(host: Any) -> str:
    """The host's default IPv4 address, found the way Ansible's facts find it."""
    route = host.check_output("ip -4 route get 8.8.8.8")
    match = re.search(r"\bsrc (\S+)", route)
    assert match, f"no default IPv4 route on the host: {route!r}"
    return match.group(1)


def fetch(host: Any, url: str, timeout: float = 5) -> dict[str, Any]:
    return json.loads(host.check_output("python3 -c %s %s %s", FETCH, url, str(timeout)))


def journal(host: Any, unit: str) -> str:
    return host.run(f"journalctl -u {unit} -n 40 --no-pager").stdout


@pytest.fixture(scope="module")
def settings() -> dict[str, Any]:
    """The role's defaults with the lab's group_vars (all, then ollama) on top."""
    merged = _yaml_dict(ROLE_DEFAULTS)
    for group in ("all", "ollama"):
        folder = LAB_GROUP_VARS / group
        for path in sorted(folder.glob("*.yml")) if folder.is_dir() else []:
            merged.update(_yaml_dict(path))
    return merged


@pytest.fixture(scope="module")
def ollama(hosts: dict[str, Any]) -> Any:
    return hosts["ollama"]


@pytest.fixture(scope="module")
def bind_address(ollama: Any, settings: dict[str, Any]) -> str:
    configured = str(settings["ollama_host_bind_address"])
    return host_ipv4(ollama) if "{{" in configured else configured


@pytest.fixture(scope="module")
def api_address(ollama: Any, bind_address: str) -> str:
    """Where other hosts reach the API (the host's own address when bound to all)."""
    return host_ipv4(ollama) if bind_address in ("0.0.0.0", "::") else bind_address


@pytest.fixture(scope="module")
def port(settings: dict[str, Any]) -> int:
    return int(settings["ollama_host_port"])


@pytest.fixture(scope="module")
def api_url(api_address: str, port: int) -> str:
    host = f"[{api_address}]" if ":" in api_address else api_address
    return f"http://{host}:{port}"


def test_the_archive_went_through_the_install_tasks(
    ollama: Any, settings: dict[str, Any], api_url: str
) -> None:
    version = settings["ollama_host_version"]
    prefix = settings["ollama_host_install_dir"]
    marker = ollama.file(f"{prefix}/{MARKER}")
    assert marker.is_file, f"{marker.path} is missing: the role's install tasks did not finish"
    # The archive was a .tar.zst, as Ollama's own are: unpacking it needed zstd.
    assert settings["ollama_host_archive_url"].endswith(".tar.zst")
    assert ollama.package("zstd").is_installed
    assert marker.content_string.strip() == version
    assert ollama.file(f"{prefix}/bin/ollama").mode & 0o111, "bin/ollama is not executable"
    assert f"version is {version}" in ollama.check_output(f"{prefix}/bin/ollama --version")
    answer = fetch(ollama, f"{api_url}/api/version")
    assert answer.get("status") == 200, answer
    assert json.loads(answer["body"])["version"] == version


def test_the_service_runs_under_systemd_as_the_ollama_user(ollama: Any) -> None:
    shown = dict(
        line.split("=", 1)
        for line in ollama.check_output(
            "systemctl show -p MainPID,User,ActiveState ollama"
        ).splitlines()
    )
    assert shown["ActiveState"] == "active", journal(ollama, "ollama")
    assert shown["User"] == "ollama"
    pid = int(shown["MainPID"])
    assert pid > 0, journal(ollama, "ollama")
    assert ollama.check_output(f"ps -o user= -p {pid}").strip() == "ollama"
    account = ollama.user("ollama")
    assert account.shell in ("/usr/sbin/nologin", "/sbin/nologin")
    assert account.uid < 1000, "ollama is not a system user"


def test_the_unit_is_hardened(ollama: Any, settings: dict[str, Any]) -> None:
    shown = dict(
        line.split("=", 1)
        for line in ollama.check_output(
            "systemctl show -p NoNewPrivileges,ProtectSystem,ProtectHome,PrivateTmp,"
            "PrivateDevices,ReadWritePaths,ProtectKernelModules,RestrictNamespaces,"
            "CapabilityBoundingSet ollama"
        ).splitlines()
    )
    assert shown["NoNewPrivileges"] == "yes"
    assert shown["ProtectSystem"] == "strict"
    assert shown["ProtectHome"] == "yes"
    assert shown["PrivateTmp"] == "yes"
    # The same sandbox as every other service of the project (roles/common).
    assert shown["ProtectKernelModules"] == "yes"
    assert shown["RestrictNamespaces"] == "yes"
    assert shown["CapabilityBoundingSet"] == ""
    assert settings["ollama_host_models_dir"] in shown["ReadWritePaths"].split()
    gpu = ollama.file("/dev/nvidia0").exists
    assert shown["PrivateDevices"] == ("no" if gpu else "yes"), "GPU detection and unit disagree"


def test_it_listens_on_the_configured_address_and_port_only(
    ollama: Any, bind_address: str, port: int
) -> None:
    listening = [line.split()[3] for line in ollama.check_output("ss -ltnH").splitlines()]
    on_port = {address for address in listening if address.rsplit(":", 1)[-1] == str(port)}
    expected = f"[{bind_address}]:{port}" if ":" in bind_address else f"{bind_address}:{port}"
    assert on_port == {expected}, f"sockets on port {port}: {sorted(on_port)}"


def test_the_drop_in_environment_reaches_the_service(
    ollama: Any, settings: dict[str, Any], bind_address: str, port: int
) -> None:
    dropins = ollama.check_output("systemctl show -p DropInPaths ollama")
    assert "/etc/systemd/system/ollama.service.d/override.conf" in dropins
    raw = ollama.check_output("systemctl show -p Environment ollama").removeprefix("Environment=")
    environment = dict(item.split("=", 1) for item in shlex.split(raw))
    listen = f"[{bind_address}]" if ":" in bind_address else bind_address
    expected: dict[str, str] = {
        "OLLAMA_HOST": f"{listen}:{port}",
        "OLLAMA_MODELS": settings["ollama_host_models_dir"],
    }
    if settings["ollama_host_keep_alive"]:
        expected["OLLAMA_KEEP_ALIVE"] = str(settings["ollama_host_keep_alive"])
    for key, variable in (
        ("OLLAMA_NUM_PARALLEL", "ollama_host_num_parallel"),
        ("OLLAMA_MAX_LOADED_MODELS", "ollama_host_max_loaded_models"),
        ("OLLAMA_CONTEXT_LENGTH", "ollama_host_context_length"),
    ):
        if int(settings[variable]) > 0:
            expected[key] = str(settings[variable])
        else:
            assert key not in environment, f"{key} is set although {variable} is 0"
    expected.update({k: str(v) for k, v in settings["ollama_host_environment"].items()})
    assert {k: environment.get(k) for k in expected} == expected


def test_the_listed_models_are_there_and_the_absent_ones_are_not(
    ollama: Any, settings: dict[str, Any], api_url: str
) -> None:
    answer = fetch(ollama, f"{api_url}/api/tags")
    assert answer.get("status") == 200, answer
    names = {model["name"] for model in json.loads(answer["body"])["models"]}
    for model in settings["ollama_host_models"]:
        name = model_name(model["name"])
        if model.get("state", "present") == "present":
            assert name in names, f"{name} was not pulled; the server has {sorted(names)}"
        else:
            assert name not in names, f"{name} is marked absent but the server has it"


def test_the_gateway_reaches_the_api(hosts: dict[str, Any], api_url: str) -> None:
    answer = fetch(hosts["gateway"], f"{api_url}/api/version")
    assert answer.get("status") == 200, f"from the gateway host: {answer}"


@pytest.mark.parametrize("name", ["monitoring", "providers"])
def test_other_hosts_are_kept_out(
    hosts: dict[str, Any], name: str, api_address: str, port: int
) -> None:
    result = hosts[name].check_output("python3 -c %s %s %s 3", CONNECT, api_address, str(port))
    assert result.startswith("blocked"), f"{name} reached {api_address}:{port} ({result})"


def test_only_the_api_port_is_filtered(hosts: dict[str, Any], api_address: str) -> None:
    """Another port of the same host, where nothing listens, is refused at once, not dropped."""
    result = hosts["monitoring"].check_output("python3 -c %s %s 9 3", CONNECT, api_address)
    assert "ConnectionRefusedError" in result, f"port 9 of {api_address}: {result}"


def _set_networks(ollama: Any, name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    listed = json.loads(ollama.check_output(f"nft -j list set inet {FIREWALL_TABLE} {name}"))
    networks = []
    for entry in listed["nftables"]:
        for element in entry.get("set", {}).get("elem", []):
            value = (
                element.get("elem", {}).get("val", element)
                if isinstance(element, dict)
                else element
            )
            if isinstance(value, str):
                networks.append(ipaddress.ip_network(value))
            elif "prefix" in value:
                networks.append(
                    ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}")
                )
            elif "range" in value:
                low, high = (ipaddress.ip_address(v) for v in value["range"])
                networks.extend(ipaddress.summarize_address_range(low, high))
    return networks


def test_the_firewall_table_is_loaded_with_the_allowed_sources(
    hosts: dict[str, Any], ollama: Any, settings: dict[str, Any], port: int
) -> None:
    table = ollama.run(f"nft list table inet {FIREWALL_TABLE}")
    assert table.rc == 0, f"table inet {FIREWALL_TABLE} is not loaded: {table.stderr}"
    assert re.search(rf"tcp dport {port} .*drop", table.stdout), table.stdout
    allowed = _set_networks(ollama, "clients_v4") + _set_networks(ollama, "clients_v6")
    expected = [host_ipv4(hosts[group]) for group in settings["ollama_host_allowed_groups"]]
    expected += [str(source) for source in settings["ollama_host_allowed_sources"]]
    for source in expected:
        network = ipaddress.ip_network(source, strict=False)
        assert any(network.version == net.version and network.subnet_of(net) for net in allowed), (
            f"{source} is not among the allowed sources {allowed}"
        )


def test_the_firewall_is_loaded_at_boot_before_ollama(ollama: Any) -> None:
    unit = ollama.service(FIREWALL_UNIT.removesuffix(".service"))
    assert unit.is_enabled, f"{FIREWALL_UNIT} is not enabled"
    assert unit.is_running, journal(ollama, FIREWALL_UNIT)
    before = ollama.check_output(f"systemctl show -p Before {FIREWALL_UNIT}")
    assert "ollama.service" in before.split("=", 1)[1].split()
    requires = ollama.check_output("systemctl show -p Requires ollama")
    assert FIREWALL_UNIT in requires, "ollama.service may start without its firewall"


ADMIN_RULES = """
# An admin's own rules, in the distribution's firewall config (lab test).
table inet lab_admin_rules {
	chain input {
		type filter hook input priority filter + 10; policy accept;
	}
}
"""


def docker_dns_rules(host: Any) -> str:
    """The lab host's name resolution, as native nftables rules to load again.

    A lab host is a container on a Docker network: its resolver, 127.0.0.11,
    reaches Docker's embedded DNS through NAT rules Docker put in the
    container's `ip nat` table. Debian's nftables.conf flushes every table,
    those included; a real host has no such rules. The ports Docker's DNS listens
    on in the container are read, and the same forwarding is loaded after."""
    listening = host.check_output("ss -Hlntu src 127.0.0.11")
    ports = dict(re.findall(r"^(tcp|udp)\s.*?127\.0\.0\.11:(\d+)", listening, re.M))
    assert set(ports) == {"tcp", "udp"}, listening
    tcp, udp = ports["tcp"], ports["udp"]
    return textwrap.dedent(
        f"""\
        table ip lab_docker_dns {{
          chain output {{
            type nat hook output priority -100; policy accept;
            ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:{tcp}
            ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:{udp}
          }}
          chain postrouting {{
            type nat hook postrouting priority srcnat; policy accept;
            ip saddr 127.0.0.11 tcp sport {tcp} snat to 127.0.0.11:53
            ip saddr 127.0.0.11 udp sport {udp} snat to 127.0.0.11:53
          }}
        }}
        """
    )


@pytest.fixture(scope="module")
def lab_dns(ollama: Any) -> str:
    return docker_dns_rules(ollama)


@pytest.mark.parametrize("action", ["start", "reload", "restart"])
def test_the_allowlist_survives_the_distributions_firewall(
    action: str,
    ollama: Any,
    hosts: dict[str, Any],
    api_address: str,
    port: int,
    api_url: str,
    lab_dns: str,
) -> None:
    """Debian's nftables.service loads /etc/nftables.conf, which begins with
    `flush ruleset`: starting, reloading or restarting it must leave the Ollama
    API's table in place (with the admin's own rules next to it), and the port
    closed to everyone but the gateways."""
    conf = ollama.file("/etc/nftables.conf").content_string
    try:
        ollama.run_expect([0], f"printf %s {shlex.quote(conf + ADMIN_RULES)} > /etc/nftables.conf")
        if action == "reload":
            ollama.run_expect([0], "systemctl start nftables")
        ollama.run_expect([0], f"systemctl {action} nftables")
        tables = ollama.check_output("nft list tables")
        assert f"table inet {FIREWALL_TABLE}" in tables, tables
        assert "table inet lab_admin_rules" in tables, tables
        result = hosts["providers"].check_output(
            "python3 -c %s %s %s 3", CONNECT, api_address, str(port)
        )
        assert result.startswith("blocked"), f"providers reached the API after {action} ({result})"
        assert fetch(hosts["gateway"], f"{api_url}/api/version").get("status") == 200
    finally:
        ollama.run_expect([0], f"printf %s {shlex.quote(conf)} > /etc/nftables.conf")
        ollama.run_expect([0], "systemctl restart nftables && systemctl start ollama")
        ollama.run("nft delete table ip lab_docker_dns")
        ollama.run_expect([0], f"printf %s {shlex.quote(lab_dns)} | nft -f -")
        ollama.run_expect([0], "getent hosts deb.debian.org")
    assert f"table inet {FIREWALL_TABLE}" in ollama.check_output("nft list tables")
