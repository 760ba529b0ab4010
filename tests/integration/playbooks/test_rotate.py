"""Rotating keys with playbooks/rotate.yml, as docs/SECURITY.md tells the operator to.

Real: ansible-playbook running rotate.yml against the lab, the gateway's LiteLLM,
HAProxy and Postgres containers, the ledger, Prometheus scraping the gateway.
Stand-in: the cloud APIs (the provider emulator). The new keys are passed as
extra vars, which stand for the edited vault (and override it); the last run
without them puts the lab's own keys back.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

import requests

from tests.support.lab_client import chat, run_playbook, wait_until
from tests.support.prometheus import Prometheus

ROTATED = {
    "vault_litellm_master_key": "sk-llmlab-rotated-master-not-a-secret-00000",
    "vault_litellm_metrics_key": "sk-llmlab-rotated-metrics-not-a-secret-0000",
    "vault_litellm_postgres_password": "llmlab-rotated-postgres-not-a-secret",
}
ROTATED_HOUSE = "sk-llmlab-rotated-house-not-a-secret-000000"


def session(key: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {key}"
    return s


def haproxy_pid(hosts: dict) -> str:
    return hosts["gateway"].check_output("systemctl show -p MainPID --value haproxy")


def tagged_call(gateway_url: str, key: str, task: str) -> requests.Response:
    return session(key).post(
        f"{gateway_url}/v1/chat/completions",
        headers={"x-litellm-tags": f"task:{task}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )


def ledger_rows(gateway_url: str, master_key: str, call_id: str) -> list[dict[str, Any]]:
    answer = session(master_key).get(
        f"{gateway_url}/gateway/ledger/rows", params={"request_id": call_id}, timeout=30
    )
    return answer.json()["rows"] if answer.ok else []


def gateway_scraped_after(prometheus: Prometheus, since: float) -> list[dict[str, Any]]:
    """The gateway's scrape targets once each was scraped, successfully, after `since`."""
    targets = [t for t in prometheus.targets() if t["labels"]["job"] == "litellm"]
    fresh = all(
        t["health"] == "up"
        and calendar.timegm(time.strptime(t["lastScrape"][:19], "%Y-%m-%dT%H:%M:%S")) > since
        for t in targets
    )
    return targets if targets and fresh else []


def test_rotated_keys_replace_the_old_ones_and_the_ledger_keeps_counting(
    lab: dict[str, str],
    lab_vault: dict[str, Any],
    gateway_url: str,
    hosts: dict,
) -> None:
    old_master = lab_vault["vault_litellm_master_key"]
    old_house = lab_vault["vault_litellm_app_keys"]["house"]
    old_metrics = lab_vault["vault_litellm_metrics_key"]
    app_keys = {**lab_vault["vault_litellm_app_keys"], "house": ROTATED_HOUSE}
    new_master = ROTATED["vault_litellm_master_key"]
    haproxy = haproxy_pid(hosts)
    prometheus = Prometheus(hosts["monitoring"])
    earlier = tagged_call(gateway_url, old_house, "rotated.1")
    assert earlier.status_code == 200, earlier.text
    earlier_id = earlier.headers["x-litellm-call-id"]
    wait_until(lambda: ledger_rows(gateway_url, old_master, earlier_id), 60, "the first row")
    try:
        run = run_playbook(
            lab, "playbooks/rotate.yml", {**ROTATED, "vault_litellm_app_keys": app_keys}
        )
        assert run.returncode == 0, run.stdout[-3000:]
        rotated_at = time.time()

        models = f"{gateway_url}/v1/models"
        assert session(old_master).get(models, timeout=30).status_code == 401
        assert session(new_master).get(models, timeout=30).ok
        assert chat(session(old_house), gateway_url, "gpt-4o-mini").status_code == 401
        lab_app = chat(session(app_keys["lab-app"]), gateway_url, "cheap")
        assert lab_app.status_code == 200, "a key nobody rotated stopped working"

        # The ledger, on the database whose password changed, has the earlier row
        # and records the new key's call.
        call = tagged_call(gateway_url, ROTATED_HOUSE, "rotated.2")
        assert call.status_code == 200, call.text
        call_id = call.headers["x-litellm-call-id"]
        wait_until(
            lambda: ledger_rows(gateway_url, new_master, call_id),
            60,
            "the rotated key's call in the ledger",
        )
        assert ledger_rows(gateway_url, new_master, earlier_id), "the ledger lost a row"
        assert (
            session(new_master)
            .get(f"{gateway_url}/gateway/ledger/status", timeout=30)
            .json()["database"]
            == "up"
        )

        metrics = f"{gateway_url}/metrics"
        assert session(old_metrics).get(metrics, timeout=30).status_code == 401
        wait_until(
            lambda: bool(gateway_scraped_after(prometheus, rotated_at)),
            120,
            "Prometheus scraping the gateway with the new metrics key",
            every_s=3,
        )
        assert haproxy_pid(hosts) == haproxy, "rotating keys restarted HAProxy"
    finally:
        back = run_playbook(lab, "playbooks/rotate.yml")
        assert back.returncode == 0, back.stdout[-3000:]
    assert session(old_master).get(f"{gateway_url}/v1/models", timeout=30).ok
    assert tagged_call(gateway_url, old_house, "rotated.3").status_code == 200
