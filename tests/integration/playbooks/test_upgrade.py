"""The rolling upgrade (playbooks/upgrade.yml, issue 16): with steady load
through the gateways' virtual address, both gateways are upgraded one after
the other by a change that restarts their proxies. Not one request fails, and
none was answered by a gateway while the front had it out (draining or in
maintenance). The change is then undone on both gateways at once, with the
load stopped (nobody is measuring then, and a serial run takes twice as long).

Real: both gateways, their HAProxy fronts and runtime APIs, the playbook as a
user runs it, LiteLLM restarted by Compose. Stand-in: the upstream (the
provider emulator). The front's state is read every half second from the
front that holds the virtual address, the one the load goes through.
"""

from __future__ import annotations

import threading
import time

import testinfra
import yaml

from tests.support.haproxy import servers
from tests.support.lab_client import REPO, run_playbook, vip_holders, wait_until
from tests.support.load import Load, failed, per_gateway

DEFAULTS = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
GATEWAYS = ("gateway", "gateway-2")
CONTAINER = "litellm-proxy-litellm-1"


def front_states(host: testinfra.host.Host) -> dict[str, str]:
    """{server: status} of the proxies' backend in this gateway's front (UP, DRAIN, MAINT...)."""
    return {name: row["status"] for name, row in servers(host).items()}


class Sampler:
    """The front's server states every half second. Each sample keeps when its
    read began and ended: the state is of some moment in between."""

    def __init__(self, host: testinfra.host.Host) -> None:
        self.host = host
        self.samples: list[tuple[float, float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="front-states", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            states = front_states(self.host)
            if states:
                self.samples.append((began, time.monotonic(), states))
            time.sleep(0.5)

    def stop(self) -> list[tuple[float, float, dict[str, str]]]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.samples

    @staticmethod
    def out_around(
        samples: list[tuple[float, float, dict[str, str]]], at: float, server: str
    ) -> bool:
        """Whether the front had `server` out (draining, or in maintenance) in the
        last sample read wholly before `at` and in the first read wholly after
        it: out for the whole moment. (A server it merely checks as down is not
        sent anything either, but that is the health check's doing.)"""
        before = [states for _, ended, states in samples if ended <= at]
        after = [states for began, _, states in samples if began > at]
        if not before or not after:
            return False
        return out(before[-1].get(server, "")) and out(after[0].get(server, ""))


def out(status: str) -> bool:
    """HAProxy's status of a server taken out through its runtime API."""
    return status.startswith(("DRAIN", "MAINT"))


def started_at(host: testinfra.host.Host) -> str:
    return host.check_output(f"docker inspect --format '{{{{.State.StartedAt}}}}' {CONTAINER}")


def test_the_rolling_upgrade_of_both_gateways_fails_no_request(
    lab: dict[str, str], hosts: dict[str, testinfra.host.Host]
) -> None:
    (holder,) = vip_holders(hosts, lab["GATEWAY_VIP_URL"].removeprefix("https://"), GATEWAYS)
    before = {name: started_at(hosts[name]) for name in GATEWAYS}
    grace = DEFAULTS["litellm_proxy_graceful_shutdown_timeout"]
    sampler = Sampler(hosts[holder])
    load = Load(lab["GATEWAY_VIP_URL"], lab["GATEWAY_KEY"]).start()
    try:
        # A change that restarts every proxy: its environment and its stop grace.
        changed = run_playbook(
            lab, "playbooks/upgrade.yml", {"litellm_proxy_graceful_shutdown_timeout": grace - 1}
        )
        upgraded = {name: started_at(hosts[name]) for name in GATEWAYS}
    finally:
        calls = load.stop()
        samples = sampler.stop()
        # The inventory's own value again, for the tests after this one.
        restored = run_playbook(lab, "playbooks/gateway.yml")
    assert changed.returncode == 0, changed.stdout[-4000:] + changed.stderr[-2000:]
    assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr[-2000:]
    after = {name: started_at(hosts[name]) for name in GATEWAYS}
    for name in GATEWAYS:
        assert before[name] != upgraded[name] != after[name], name  # restarted, twice

    print(f"{len(calls)} requests during the rolling upgrade, per gateway {per_gateway(calls)}")
    assert calls and not failed(calls), failed(calls)[:5]
    # The front took each gateway out while it was upgraded...
    for name in GATEWAYS:
        assert any(out(states.get(f"llmlab-{name}", "")) for _, _, states in samples), name
    # ...and sent it nothing new meanwhile.
    served_while_out = [
        call for call in calls if Sampler.out_around(samples, call.start, call.gateway)
    ]
    assert not served_while_out, [
        (call, [sample for sample in samples if abs(sample[0] - call.start) < 1])
        for call in served_while_out[:3]
    ]
    # Both back in the front once their restarted proxies pass its checks.
    wait_until(
        lambda: front_states(hosts[holder]) == {f"llmlab-{name}": "UP" for name in GATEWAYS},
        60,
        "both gateways UP in the front",
    )
