"""What the gateway_vip role writes (keepalived's config and its scripts),
from the role's own variables and group_vars/all's wiring on made-up
gateways; and the gateways' fronts serving the address (litellm_proxy)."""

from __future__ import annotations

from typing import Any

import yaml

from tests.support.loader import REPO
from tests.support.role_render import RoleVars, render_template
from tests.unit.litellm_proxy.test_front import backends
from tests.unit.litellm_proxy.test_front import role as gateway_role

ADDRESSES = {"gw1": "10.0.0.10", "gw2": "10.0.0.11", "gw3": "10.0.0.12"}
VIP = "10.0.0.9"
WIRING = yaml.safe_load((REPO / "group_vars/all/vars.yml").read_text())


def role(
    host: str = "gw1", gateways: tuple[str, ...] = ("gw1", "gw2"), **overrides: Any
) -> RoleVars:
    base = {
        "inventory_hostname": host,
        "ansible_facts": {
            "default_ipv4": {"address": ADDRESSES[host], "interface": "eth0", "prefix": "24"}
        },
        "groups": {"gateway": list(gateways)},
        "node_exporter_endpoint": {"textfile_dir": "/var/lib/prometheus/node-exporter"},
        "gateway_vip_address": VIP,
        # group_vars/all's wiring, as the play has it.
        **{
            name: WIRING[name]
            for name in (
                "gateway_vip_state",
                "gateway_vip_peers",
                "gateway_vip_priority",
                "gateway_vip_textfile_dir",
            )
        },
    }
    variables = RoleVars("gateway_vip", base, overrides)
    variables._raw["hostvars"] = {
        name: (
            {"ansible_facts": {"default_ipv4": {"address": address}}} if name != host else variables
        )
        for name, address in ADDRESSES.items()
    }
    return variables


def config(variables: RoleVars) -> str:
    return render_template("gateway_vip", "keepalived.conf.j2", variables)


def test_each_gateway_names_every_other_as_its_unicast_peer_and_hears_only_them() -> None:
    for host, peer in (("gw1", "10.0.0.11"), ("gw2", "10.0.0.10")):
        variables = role(host)
        text = config(variables)
        assert f"unicast_src_ip {ADDRESSES[host]}" in text
        block = text.split("unicast_peer {", 1)[1].split("}", 1)[0].split()
        assert block == [peer]
        assert "check_unicast_src" in text
        assert f"{VIP}/24 dev eth0" in text
        assert variables["gateway_vip_state"] == "present"


def test_the_first_gateway_has_the_highest_priority_and_none_preempts() -> None:
    priorities = [role(host, ("gw1", "gw2", "gw3"))["gateway_vip_priority"] for host in ADDRESSES]
    assert [int(p) for p in priorities] == [200, 199, 198]
    text = config(role("gw2"))
    assert "state BACKUP" in text and "nopreempt" in text and "priority 199" in text


def test_one_gateway_has_no_peer_and_no_unicast_settings() -> None:
    variables = role("gw1", ("gw1",))
    assert variables["gateway_vip_peers"] == []
    text = config(variables)
    assert "unicast_peer" not in text and "check_unicast_src" not in text


def test_no_address_means_keepalived_is_removed() -> None:
    assert role(gateway_vip_address="")["gateway_vip_state"] == "absent"


def test_the_address_stays_only_where_the_front_runs_and_its_holder_is_reported() -> None:
    variables = role()
    text = config(variables)
    assert "track_script" in text and "gateway_front" in text
    check = render_template("gateway_vip", "gateway-vip-check.j2", variables)
    assert "systemctl is-active --quiet haproxy.service" in check
    assert 'notify "/usr/local/libexec/gateway-vip-notify"' in text
    notify = render_template("gateway_vip", "gateway-vip-notify.j2", variables)
    assert "dir=/var/lib/prometheus/node-exporter\n" in notify
    assert 'file="$dir/gateway_vip.prom"' in notify
    assert f'llm_gateway_vip_held{{address="{VIP}"}} $held' in notify
    assert 'notify "' not in config(role(gateway_vip_textfile_dir=""))


def test_every_front_listens_on_the_address_and_its_certificate_names_it() -> None:
    variables = gateway_role(
        "gw2", litellm_proxy_tls_virtual_address=VIP, litellm_proxy_tls_ca_host="gw1"
    )
    sections = backends(variables)
    assert (
        f"bind {VIP}:443 transparent ssl crt /etc/litellm-proxy/tls/server.crt alpn h2,http/1.1"
        in (sections["frontend llm_gateway_tls"])
    )
    assert f"bind {VIP}:80 transparent" in sections["frontend llm_gateway_http"]
    assert VIP in variables["_litellm_proxy_tls_names"]
    assert variables["_litellm_proxy_house_url"].strip() == f"https://{VIP}"
    assert "retries 2" in sections["defaults"] and "option redispatch 1" in sections["defaults"]


def test_without_an_address_the_front_listens_on_the_lan_address_alone() -> None:
    variables = gateway_role("gw1")
    text = render_template("litellm_proxy", "haproxy.cfg.j2", variables)
    assert "transparent" not in text
    assert (
        variables["_litellm_proxy_house_url"].strip()
        == variables["_litellm_proxy_endpoint_url"].strip()
    )


def test_keepalived_stops_before_the_front_so_the_address_leaves_first() -> None:
    dropin = render_template("gateway_vip", "ordering.conf.j2", role())
    assert "[Unit]\nAfter=haproxy.service" in dropin
