"""Monitoring in the lab: Prometheus watches every part of the stack, each dashboard
query returns data, an outage fires its alert and the recovery resolves it.

Real: Prometheus and Alertmanager (run by the role's Compose file on the
monitoring host), the node exporters (Debian's package, systemd services on
the hosts), the gateways' probe of the Ollama API (a systemd timer),
LiteLLM's own metrics, the role's rules and dashboards,
ansible-playbook re-running playbooks/monitoring.yml. Stand-ins: the
Prometheus/Alertmanager image (Debian's build of both, not the official images:
no registry is reachable), the cloud APIs and Ollama (the provider emulator).
Grafana's server is not in the lab at all (nothing here carries it): only its
provisioning files are checked, on the host.

Durations and thresholds come from the role's defaults and the lab's values
(molecule/default/group_vars/monitoring/lab.yml); every wait is a poll with a
generous deadline, never a fixed sleep.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import requests
import testinfra
import yaml

from tests.support.alert_inbox import AlertInbox, alerts_in, mail_text
from tests.support.dashboards import DASHBOARDS_DIR, dashboard_queries
from tests.support.lab_client import (
    Emulator,
    answered_by,
    chat,
    flat,
    ledger_status,
    run_playbook,
)
from tests.support.monitoring_role import filters
from tests.support.prometheus import REPO, Prometheus, fetch_json, settings

STACK_HOSTS = ("gateway", "gateway-2", "ollama", "ollama-bookworm", "monitoring")
EXPECTED_JOBS = {"prometheus", "alertmanager", "node", "litellm"}
GRAFANA_UID = 472
DASHBOARD_TASK = "dashboard-1"  # the task the dashboard test's traffic is tagged with
NTFY, WEBHOOK = "/ntfy/llm-gateway", "/webhook/home-automation"  # the lab's receivers
LITELLM = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
T = TypeVar("T")


# --- helpers ------------------------------------------------------------------


def seconds(name: str) -> float:
    return filters.monitoring_duration_seconds(settings()[name])


def poll(check: Callable[[], T], deadline_s: float, what: str, every_s: float = 2.0) -> T:
    """Call `check` until it returns something truthy; return that, or fail with the last value."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(
                f"{what} did not happen within {deadline_s:.0f}s (last: {value!r})"
            )
        time.sleep(every_s)


@pytest.fixture(scope="module")
def prometheus(hosts: dict[str, testinfra.host.Host]) -> Prometheus:
    return Prometheus(hosts["monitoring"])


def alertmanager_alerts(monitoring: testinfra.host.Host) -> list[dict[str, Any]]:
    """The alerts Alertmanager holds."""
    address = f"127.0.0.1:{settings()['monitoring_alertmanager_port']}"
    return fetch_json(monitoring, f"http://{address}/api/v2/alerts")


# --- traffic through the gateway ----------------------------------------------


@pytest.fixture(scope="module")
def traffic(
    lab: dict[str, str], gateway: requests.Session, gateway_url: str, prometheus: Prometheus
) -> Iterator[None]:
    """Requests of every kind the dashboards show: answered ones, failed ones,
    fallbacks that worked and one that did not (every provider failing); then every
    provider is healthy again and every alias answers from its first choice."""
    providers, ollama = Emulator(lab["EMULATOR_URL"]), Emulator(lab["OLLAMA_URL"])

    def reset() -> None:
        for provider in ("openai", "anthropic", "gemini"):
            providers.set(provider, "ok")
        ollama.set("ollama", "ok")

    reset()
    try:
        for model in ("gpt-4o-mini", "claude-haiku-4-5", "cheap") * 3:
            answer = chat(gateway, gateway_url, model)
            assert answer.status_code == 200, answer.text
        # Calls of a Task Master task: the spend-by-task panel shows them. A
        # counter's first sample is its baseline (increase() starts there), so
        # the task's series is scraped once before the calls that count.
        for call in range(4):
            if call == 1:
                poll(
                    lambda: prometheus.query(
                        f'gateway_task_spend_usd_total{{task="{DASHBOARD_TASK}"}}'
                    ),
                    120,
                    f"Prometheus scraping the spend of task {DASHBOARD_TASK}",
                )
            answer = gateway.post(
                f"{gateway_url}/v1/chat/completions",
                headers={"x-litellm-tags": f"task:{DASHBOARD_TASK}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
        # The cheap tier fails: `cheap` falls back to `balanced`; gpt-4o-mini alone fails.
        # Each counter's first sample is its baseline too: one fallback and one
        # failure first, scraped, then those that the panels count.
        providers.set("openai", "error")
        ollama.set("ollama", "error")
        for call in range(2):
            assert chat(gateway, gateway_url, "cheap").status_code == 200
            assert chat(gateway, gateway_url, "gpt-4o-mini").status_code >= 400
            if call == 0:
                for series in (
                    "litellm_deployment_successful_fallbacks_total",
                    "litellm_proxy_failed_requests_metric_total",
                ):
                    poll(lambda s=series: prometheus.query(s), 120, f"Prometheus scraping {series}")
        # Everything fails: the fallback fails too.
        providers.set("anthropic", "error")
        providers.set("gemini", "error")
        assert chat(gateway, gateway_url, "cheap").status_code >= 400
    finally:
        reset()
    first_choice = {
        "gpt-4o-mini": "openai",
        "cheap": "ollama",
        "balanced": "gemini",
        "smart": "openai",
    }
    for model, provider in first_choice.items():

        def recovered(model: str = model, provider: str = provider) -> bool:
            answer = chat(gateway, gateway_url, model)
            return answer.status_code == 200 and answered_by(answer).startswith(f"{provider}/")

        poll(recovered, 120, f"{model} answered by {provider} again")
    yield


# --- the tests ----------------------------------------------------------------


def test_every_scrape_target_is_up(prometheus: Prometheus) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        targets = prometheus.targets()
        jobs = {t["labels"]["job"] for t in targets}
        healthy = jobs >= EXPECTED_JOBS and all(t["health"] == "up" for t in targets)
        return targets if healthy else None

    try:
        targets = poll(all_up, 120, "every scrape target up")
    except AssertionError:
        down = [
            (t["labels"]["job"], t["labels"].get("instance"), t["health"], t["lastError"])
            for t in prometheus.targets()
            if t["health"] != "up"
        ]
        pytest.fail(f"targets not up: {down}")
    nodes = {t["labels"]["instance"] for t in targets if t["labels"]["job"] == "node"}
    assert nodes >= {f"llmlab-{name}" for name in STACK_HOSTS}
    gateways = [t for t in targets if t["labels"]["job"] == "litellm"]
    assert gateways and all(t["scrapeUrl"].startswith("https://") for t in gateways)


def test_every_gateway_reaches_every_ollama_host(prometheus: Prometheus) -> None:
    """The gateways probe Ollama (only they may reach it); their node exporters serve it."""

    def probes() -> list[dict[str, Any]] | None:
        results = prometheus.query("gateway_ollama_up")
        return results if results and all(r["value"][1] == "1" for r in results) else None

    results = poll(probes, 120, "every gateway reaching every Ollama host's API")
    assert {(r["metric"]["instance"], r["metric"]["ollama"]) for r in results} == {
        ("llmlab-gateway", "llmlab-ollama"),
        ("llmlab-gateway", "llmlab-ollama-bookworm"),
        ("llmlab-gateway-2", "llmlab-ollama"),
        ("llmlab-gateway-2", "llmlab-ollama-bookworm"),
    }


def test_every_dashboard_query_returns_data(prometheus: Prometheus, traffic: None) -> None:
    queries = dashboard_queries()
    assert queries

    def empty() -> list[str]:
        return [str(q) for q in queries if not prometheus.query(q.promql)]

    # Rates need two scrapes of a counter, so the last ones may take a little while.
    deadline = time.monotonic() + 120
    missing = empty()
    while missing and time.monotonic() < deadline:
        time.sleep(5)
        missing = empty()
    assert not missing, "queries without data:\n" + "\n".join(missing)
    # Where a value matters: what the traffic did is what the panels show.
    by_panel = {q.panel: q for q in queries}
    spend = {
        r["metric"].get("task"): float(r["value"][1])
        for r in prometheus.query(by_panel["Spend per hour by task"].promql)
    }
    assert spend.get(DASHBOARD_TASK, 0) > 0, spend
    fallbacks = prometheus.query(
        "sum(increase(litellm_deployment_successful_fallbacks_total[1h]))"
        " + sum(increase(litellm_deployment_failed_fallbacks_total[1h]))"
    )
    assert fallbacks and float(fallbacks[0]["value"][1]) > 0, fallbacks
    errors = prometheus.query("sum(increase(litellm_proxy_failed_requests_metric_total[1h]))")
    assert errors and float(errors[0]["value"][1]) > 0, errors


def test_a_provider_outage_fires_deployment_failing_and_recovery_resolves_it(
    prometheus: Prometheus,
    traffic: None,
    emulator: Emulator,
    gateway: requests.Session,
    gateway_url: str,
    hosts: dict[str, testinfra.host.Host],
) -> None:
    """OpenAI goes down: gpt-4o-mini's deployment keeps failing (the gateway has no
    fallback for it), so DeploymentFailing fires within the rule's `for` and window;
    OpenAI comes back: the next calls succeed and the alert resolves."""
    labels = {"api_provider": "openai", "litellm_model_name": "gpt-4o-mini"}
    promised = seconds("monitoring_alert_deployment_failing_for") + seconds(
        "monitoring_alert_rate_window"
    )
    deadline = 3 * promised + 60

    poll(
        lambda: not prometheus.alerts("DeploymentFailing", **labels),
        deadline,
        "no DeploymentFailing alert for gpt-4o-mini before the outage",
    )

    emulator.set("openai", "down")

    def firing() -> list[dict[str, Any]]:
        chat(gateway, gateway_url, "gpt-4o-mini")
        return [
            a for a in prometheus.alerts("DeploymentFailing", **labels) if a["state"] == "firing"
        ]

    (alert, *_) = poll(firing, deadline, "DeploymentFailing firing for gpt-4o-mini (openai)")
    assert alert["labels"]["severity"] == "warning"
    assert "gpt-4o-mini (openai) is failing" in alert["annotations"]["summary"]
    poll(
        lambda: [
            a
            for a in alertmanager_alerts(hosts["monitoring"])
            if a["labels"].get("alertname") == "DeploymentFailing"
            and a["labels"].get("api_provider") == "openai"
        ],
        120,
        "the alert reaching Alertmanager",
    )

    emulator.set("openai", "ok")

    def resolved() -> bool:
        chat(gateway, gateway_url, "gpt-4o-mini")
        return not prometheus.alerts("DeploymentFailing", **labels)

    poll(resolved, deadline, "DeploymentFailing for gpt-4o-mini resolving after recovery")


def test_the_ledgers_database_stopped_fires_its_alerts_and_they_reach_every_receiver(
    prometheus: Prometheus,
    emulator: Emulator,
    gateway: requests.Session,
    gateway_url: str,
    hosts: dict[str, testinfra.host.Host],
    lab_vault: dict[str, Any],
) -> None:
    """The house's ledger Postgres (on the first gateway) stops: neither gateway's
    ledger can write, their rows wait in their spools (more than the lab's
    threshold of 3 each: ten requests, spread over both by the front), and
    LedgerDatabaseDown and LedgerRowsPilingUp fire, for both gateways. Each of the
    lab's receivers hears of it (ntfy, mail, webhook, all kept by the alert
    receiver on the providers host; one notification per gateway, grouped by
    instance); Postgres starts again, the rows are written, both alerts resolve
    and the receivers hear that too."""
    names = ("LedgerDatabaseDown", "LedgerRowsPilingUp")
    promised = max(
        seconds("monitoring_alert_ledger_down_for"), seconds("monitoring_alert_ledger_pending_for")
    )
    deadline = 3 * promised + 60
    delivered = 60 + 2 * seconds("monitoring_alertmanager_group_interval")
    compose = (
        f"cd {LITELLM['litellm_proxy_project_dir']} && "
        f"docker compose -p {LITELLM['litellm_proxy_compose_project']}"
    )
    gateway_host = hosts["gateway"]
    inbox = AlertInbox(hosts["providers"])

    def active(state: str = "") -> set[str]:
        return {
            name
            for name in names
            for a in prometheus.alerts(name)
            if not state or a["state"] == state
        }

    def heard(status: str) -> dict[str, Any] | None:
        """One notification of LedgerDatabaseDown in that status on each receiver."""
        webhook = [c for c in inbox.calls(WEBHOOK) if alerts_in(c, names[0], status)]
        ntfy = [c for c in inbox.calls(NTFY) if alerts_in(c, names[0], status)]
        prefix = "[FIRING" if status == "firing" else "[RESOLVED"
        mails = [
            m
            for m in inbox.mail()
            if mail_text(m)[0].startswith(prefix) and names[0] in mail_text(m)[0]
        ]
        if webhook and ntfy and mails:
            return {"webhook": webhook[0], "ntfy": ntfy[0], "mail": mails[0]}
        return None

    poll(lambda: not active(), deadline, "no ledger alert before Postgres stops")
    inbox.clear()
    gateway_host.run_expect([0], f"{compose} stop postgres")
    try:
        for n in range(10):
            answer = gateway.post(
                f"{gateway_url}/v1/chat/completions",
                headers={"x-litellm-tags": "task:ledger-alert"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{n}"}]},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
        poll(lambda: active("firing") == set(names), deadline, "both ledger alerts firing")
        firing = poll(lambda: heard("firing"), delivered, "every receiver hearing of it")
    finally:
        gateway_host.run_expect([0], f"{compose} start postgres")

    (alert,) = alerts_in(firing["webhook"], names[0], "firing")
    assert alert["labels"]["instance"] in ("llmlab-gateway", "llmlab-gateway-2")
    assert alert["labels"]["severity"] == "critical"
    assert "cannot write to its database" in alert["annotations"]["summary"]
    ntfy = firing["ntfy"]
    assert ntfy["headers"].get("Authorization") == f"Bearer {lab_vault['vault_lab_ntfy_token']}"
    assert ntfy["query"]["tpl"] == "1" and ntfy["query"]["p"] == "high"
    # what the phone shows: ntfy's templates run over Alertmanager's payload
    assert ntfy["ntfy"]["title"] == f"[firing] {names[0]}", ntfy.get("ntfy")
    assert "cannot write to its database" in ntfy["ntfy"]["message"], ntfy["ntfy"]
    assert "<no value>" not in ntfy["ntfy"]["title"] + ntfy["ntfy"]["message"]
    mail = firing["mail"]
    assert mail["to"] == ["<operator@lab.home.arpa>"]
    assert "cannot write to its database" in mail_text(mail)[1]

    poll(lambda: not active(), deadline, "the ledger alerts resolving once Postgres is back")
    resolved = poll(lambda: heard("resolved"), delivered, "every receiver hearing that it resolved")
    assert resolved["ntfy"]["ntfy"]["title"] == f"[resolved] {names[0]}"
    assert "(resolved)" in resolved["ntfy"]["ntfy"]["message"]


def fires_and_reaches_the_webhook(
    prometheus: Prometheus,
    inbox: AlertInbox,
    name: str,
    labels: dict[str, str],
    for_setting: str | None,
    keep_causing: Callable[[], object] = lambda: None,
) -> tuple[dict[str, Any], float]:
    """Wait for `name` (with `labels`) to fire, calling `keep_causing` on each poll,
    and for the webhook receiver to hear of it; return the alert and how long
    it took. The deadline is the rule's `for`, two evaluations, a scrape and two
    group waits, doubled for a busy CI machine."""
    promised = (
        (seconds(for_setting) if for_setting else 0.0)  # None: a rule that fires at once
        + 2 * seconds("monitoring_prometheus_evaluation_interval")
        + seconds("monitoring_prometheus_scrape_interval")
        + 2 * seconds("monitoring_alertmanager_group_wait")
    )
    started = time.monotonic()

    def heard() -> list[dict[str, Any]]:
        keep_causing()
        return [
            a
            for c in inbox.calls(WEBHOOK)
            for a in alerts_in(c, name, "firing")
            if all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    (alert, *_) = poll(heard, 2 * promised + 60, f"{name} {labels} reaching the webhook")
    assert prometheus.alerts(name, **labels), f"{name} reached the webhook but is not in Prometheus"
    return alert, time.monotonic() - started


def resolves_and_reaches_the_webhook(inbox: AlertInbox, name: str, labels: dict[str, str]) -> None:
    deadline = 120 + 2 * seconds("monitoring_alertmanager_group_interval")
    poll(
        lambda: [
            a
            for c in inbox.calls(WEBHOOK)
            for a in alerts_in(c, name, "resolved")
            if all(a["labels"].get(k) == v for k, v in labels.items())
        ],
        deadline,
        f"{name} resolving on the webhook",
    )


@pytest.fixture
def inbox(hosts: dict[str, testinfra.host.Host]) -> AlertInbox:
    receiver = AlertInbox(hosts["providers"])
    receiver.clear()
    return receiver


# Three parts stopped at once, each the real cause of its own alert; none of
# them feeds another's rule (the Ollama probe runs on the gateway host and is
# scraped there, not on the Ollama host whose exporter stops).
# role: (host, stop, start, alert, labels, the rule's `for`, its summary says)
STOPPED_PARTS = {
    "the proxy": (
        "gateway",
        f"cd {LITELLM['litellm_proxy_project_dir']} && "
        f"docker compose -p {LITELLM['litellm_proxy_compose_project']} stop litellm",
        f"cd {LITELLM['litellm_proxy_project_dir']} && "
        f"docker compose -p {LITELLM['litellm_proxy_compose_project']} start litellm",
        "GatewayDown",
        {"instance": "llmlab-gateway", "severity": "critical"},
        "monitoring_alert_gateway_down_for",
        "Gateway llmlab-gateway is down",
    ),
    "a node exporter": (
        "ollama-bookworm",
        "systemctl stop prometheus-node-exporter",
        "systemctl start prometheus-node-exporter",
        "HostDown",
        {"instance": "llmlab-ollama-bookworm", "severity": "critical"},
        "monitoring_alert_host_down_for",
        "llmlab-ollama-bookworm",
    ),
    "an Ollama service": (
        "ollama-bookworm",
        "systemctl stop ollama",
        "systemctl start ollama",
        "OllamaHostUnreachable",
        {"ollama": "llmlab-ollama-bookworm"},
        "monitoring_alert_ollama_unreachable_for",
        "llmlab-ollama-bookworm is unreachable",
    ),
}


def test_a_stopped_part_fires_its_alert_and_its_return_resolves_it(
    prometheus: Prometheus, inbox: AlertInbox, hosts: dict[str, testinfra.host.Host]
) -> None:
    """The proxy's container, the node exporter of an Ollama host and that host's
    Ollama stop: GatewayDown, HostDown and OllamaHostUnreachable each reach the
    webhook with their labels and summary; the parts start again and each
    alert's resolution reaches it too."""
    took = {}
    for host, stop, *_rest in STOPPED_PARTS.values():
        hosts[host].run_expect([0], stop)
    stopped = time.monotonic()
    try:
        for part, (*_commands, name, labels, for_setting, summary) in STOPPED_PARTS.items():
            alert, _ = fires_and_reaches_the_webhook(prometheus, inbox, name, labels, for_setting)
            took[part] = time.monotonic() - stopped
            assert summary in alert["annotations"]["summary"], alert
    finally:
        for host, _stop, start, *_rest in STOPPED_PARTS.values():
            hosts[host].run_expect([0], start)
    for part, taken in took.items():
        print(f"{STOPPED_PARTS[part][3]} reached the webhook {taken:.0f}s after {part} stopped")
    for *_commands, name, labels, _for, _summary in STOPPED_PARTS.values():
        resolves_and_reaches_the_webhook(inbox, name, labels)


def test_the_shared_state_stopped_leaves_the_gateway_serving_and_fires_its_alert(
    prometheus: Prometheus,
    inbox: AlertInbox,
    hosts: dict[str, testinfra.host.Host],
    gateway: requests.Session,
    gateway_url: str,
) -> None:
    """Redis (the shared state, on the first gateway) stops: both gateways keep
    answering, gateway_state_up goes to 0 and GatewayStateDown reaches the
    webhook; Redis starts again and, without a restart of the proxies, the metric
    goes back to 1 and the alert resolves."""
    state_host = hosts["gateway"]

    def state_up() -> dict[str, float]:
        """gateway_state_up of each gateway, its lowest over the workers."""
        results = prometheus.query("min by (instance) (gateway_state_up)")
        return {r["metric"]["instance"]: float(r["value"][1]) for r in results}

    everywhere = {"llmlab-gateway": 1.0, "llmlab-gateway-2": 1.0}
    poll(lambda: state_up() == everywhere, 120, "gateway_state_up at 1 before Redis stops")
    state_host.run_expect([0], "systemctl stop redis-server")
    stopped = time.monotonic()
    try:
        served_by = set()
        for n in range(6):
            answer = chat(gateway, gateway_url, "gpt-4o-mini", f"without the state {n}")
            assert answer.status_code == 200, answer.text[:500]
            served_by.add(answer.headers.get("X-LLM-Gateway"))
        assert served_by == set(everywhere), served_by
        alert, _ = fires_and_reaches_the_webhook(
            prometheus,
            inbox,
            "GatewayStateDown",
            {"instance": "llmlab-gateway", "severity": "warning"},
            "monitoring_alert_state_down_for",
            keep_causing=lambda: chat(gateway, gateway_url, "gpt-4o-mini"),
        )
        took = time.monotonic() - stopped
        assert "cannot reach the gateways' shared state" in alert["annotations"]["summary"]
        assert state_up() and max(state_up().values()) == 0.0
    finally:
        state_host.run_expect([0], "systemctl start redis-server")
    print(f"GatewayStateDown reached the webhook {took:.0f}s after Redis stopped")
    poll(
        lambda: chat(gateway, gateway_url, "gpt-4o-mini").ok and state_up() == everywhere,
        120,
        "gateway_state_up back at 1 once Redis is back",
    )
    resolves_and_reaches_the_webhook(inbox, "GatewayStateDown", {"instance": "llmlab-gateway"})


def test_a_row_postgres_refuses_fires_ledger_rows_quarantined(
    prometheus: Prometheus,
    inbox: AlertInbox,
    ollama_emulator: Emulator,
    gateway: requests.Session,
    gateway_url: str,
    gateway_key: str,
    hosts: dict[str, testinfra.host.Host],
) -> None:
    """Ollama reports 3 billion prompt tokens for one call (a local model: the call
    costs nothing, so no spend alert follows), more than the ledger's integer column
    holds: Postgres refuses that row, the ledger keeps it in the spool's quarantine
    folder (the rows behind it are written), and LedgerRowsQuarantined reaches the
    webhook. It stays firing for the hour its rule looks back over, by design: that
    call is missing from the ledger."""
    assert not prometheus.alerts("LedgerRowsQuarantined"), (
        "LedgerRowsQuarantined still fires from an earlier run on this lab (it looks back an"
        " hour), so the webhook would hear nothing new: bring the lab up anew to run this again"
    )
    before = {name: ledger_status(hosts[name], gateway_key) for name in ("gateway", "gateway-2")}
    poll(
        lambda: answered_by(chat(gateway, gateway_url, "cheap")) == "ollama/llama3.2:1b",
        90,
        "`cheap` answered by Ollama",
    )
    ollama_emulator.set("ollama", "ok", prompt_tokens=3_000_000_000)
    try:
        answer = chat(gateway, gateway_url, "cheap", "a call whose usage is absurd")
        assert answer.status_code == 200, answer.text[:500]
        assert answered_by(answer) == "ollama/llama3.2:1b"
        assert answer.json()["usage"]["prompt_tokens"] == 3_000_000_000
        served = answer.headers["X-LLM-Gateway"]  # whose ledger gets the row
    finally:
        ollama_emulator.set("ollama", "ok")
    assert chat(gateway, gateway_url, "cheap", "the call after it").status_code == 200
    alert, took = fires_and_reaches_the_webhook(
        prometheus, inbox, "LedgerRowsQuarantined", {"instance": served}, None
    )
    print(f"LedgerRowsQuarantined reached the webhook {took:.0f}s after the call")
    assert "set rows aside" in alert["annotations"]["summary"], alert
    name = served.removeprefix("llmlab-")
    status = ledger_status(hosts[name], gateway_key)
    assert status["quarantined_rows"] == before[name]["quarantined_rows"] + 1, status
    assert status["database"] == "up", status


def test_a_failing_tier_fires_gateway_error_ratio_high_and_recovery_resolves_it(
    lab: dict[str, str],
    prometheus: Prometheus,
    inbox: AlertInbox,
    gateway: requests.Session,
    gateway_url: str,
) -> None:
    """Every deployment behind `cheap` and its fallbacks fails: the gateway's
    requests fail, the error ratio passes the threshold, the alert fires; the
    providers come back and the next requests succeed, so it resolves."""
    providers, ollama = Emulator(lab["EMULATOR_URL"]), Emulator(lab["OLLAMA_URL"])
    labels = {"instance": "llmlab-gateway"}
    try:
        for provider in ("openai", "anthropic", "gemini"):
            providers.set(provider, "error")
        ollama.set("ollama", "error")
        alert, took = fires_and_reaches_the_webhook(
            prometheus,
            inbox,
            "GatewayErrorRatioHigh",
            labels,
            "monitoring_alert_error_ratio_for",
            keep_causing=lambda: chat(gateway, gateway_url, "cheap"),
        )
    finally:
        for provider in ("openai", "anthropic", "gemini"):
            providers.set(provider, "ok")
        ollama.set("ollama", "ok")
    print(f"GatewayErrorRatioHigh reached the webhook {took:.0f}s after the tier failed")
    assert "fails more than" in alert["annotations"]["summary"]

    def recovered() -> bool:
        chat(gateway, gateway_url, "cheap")
        return not prometheus.alerts("GatewayErrorRatioHigh", **labels)

    poll(recovered, 3 * seconds("monitoring_alert_rate_window") + 60, "the error ratio falling")
    resolves_and_reaches_the_webhook(inbox, "GatewayErrorRatioHigh", labels)


def test_prometheus_and_alertmanager_run_in_the_stack(
    hosts: dict[str, testinfra.host.Host],
) -> None:
    project = settings()["monitoring_compose_project"]
    result = hosts["monitoring"].run(
        "docker ps --filter label=com.docker.compose.project=%s "
        "--format '{{.Label \"com.docker.compose.service\"}} {{.State}}'",
        project,
    )
    assert result.rc == 0, result.stderr
    states = dict(line.split() for line in result.stdout.splitlines())
    assert states.get("prometheus") == "running", states
    assert states.get("alertmanager") == "running", states
    assert "grafana" not in states, "Grafana's container is off in the lab"


def test_grafana_provisioning_files_are_on_the_host_with_the_right_owner_and_mode(
    hosts: dict[str, testinfra.host.Host],
) -> None:
    monitoring = hosts["monitoring"]
    provisioning = f"{settings()['monitoring_project_dir']}/grafana/provisioning"
    for folder in ("", "/datasources", "/dashboards", "/dashboards/llm-gateway"):
        entry = monitoring.file(provisioning + folder)
        assert entry.is_directory, folder
        assert (entry.uid, entry.gid, entry.mode) == (0, GRAFANA_UID, 0o750), folder
    files = ["/datasources/prometheus.yml", "/dashboards/llm-gateway.yml"]
    files += [f"/dashboards/llm-gateway/{p.name}" for p in sorted(DASHBOARDS_DIR.glob("*.json"))]
    for name in files:
        entry = monitoring.file(provisioning + name)
        assert entry.is_file, name
        assert (entry.uid, entry.gid, entry.mode) == (0, GRAFANA_UID, 0o640), name
    listed = monitoring.run("ls -A %s/dashboards/llm-gateway", provisioning).stdout.split()
    assert sorted(listed) == sorted(p.name for p in DASHBOARDS_DIR.glob("*.json"))
    for path in DASHBOARDS_DIR.glob("*.json"):
        on_host = monitoring.file(f"{provisioning}/dashboards/llm-gateway/{path.name}")
        assert json.loads(on_host.content_string) == json.loads(path.read_text())
    datasource = yaml.safe_load(monitoring.file(provisioning + files[0]).content_string)
    assert datasource["datasources"][0]["url"].endswith(
        f":{settings()['monitoring_prometheus_port']}"
    )


# --- changing the rules by re-running the play ------------------------------------


def run_monitoring_play(
    lab: dict[str, str], extra_vars: dict[str, Any]
) -> subprocess.CompletedProcess:
    """playbooks/monitoring.yml against the lab, without the node exporters' tasks."""
    return run_playbook(
        lab,
        "playbooks/monitoring.yml",
        extra_vars,
        "--tags",
        "monitoring_preflight,monitoring_configure,monitoring_run",
    )


def installed_rules(hosts: dict[str, testinfra.host.Host]) -> str:
    path = f"{settings()['monitoring_project_dir']}/prometheus/rules/llm-gateway.yml"
    return hosts["monitoring"].file(path).content_string


# Thresholds a re-run may set, at values the lab's real state passes: every
# host's disk has less than 99.99% free, and the lab's traffic of the last hour
# (the `traffic` fixture's calls are priced) cost more than a millionth of a
# dollar. DiskNearlyFull and SpendOverBudget then fire from the lab's own
# filesystems and spend, and resolve when the role's values come back.
LOW_THRESHOLDS = {
    "monitoring_alert_disk_free_ratio": 0.9999,
    "monitoring_alert_disk_full_for": "10s",
    "monitoring_alert_spend_per_hour_usd": 0.000001,
    "monitoring_alert_spend_for": "10s",
}


@pytest.mark.usefixtures("traffic")
def test_new_rules_and_thresholds_apply_and_a_broken_rule_never_reaches_prometheus(
    lab: dict[str, str],
    prometheus: Prometheus,
    inbox: AlertInbox,
    hosts: dict[str, testinfra.host.Host],
) -> None:
    """A re-run with an extra rule group and lower thresholds: Prometheus runs the
    group, DiskNearlyFull and SpendOverBudget fire and reach the webhook; a re-run
    with a broken rule is refused and changes nothing; the role's values come back
    and both alerts resolve, and the webhook hears it."""
    extra = {
        "name": "lab-extra",
        "rules": [{"alert": "LabNeverFires", "expr": "vector(0) > 1", "for": "1m"}],
    }
    broken = {"name": "lab-broken", "rules": [{"alert": "LabBroken", "expr": "rate(up[5m]"}]}
    lowered = {**LOW_THRESHOLDS, "monitoring_prometheus_extra_rule_groups": [extra]}
    disk = {"instance": "llmlab-gateway", "mountpoint": "/var/lib/docker"}
    try:
        added = run_monitoring_play(lab, lowered)
        assert added.returncode == 0, added.stdout[-3000:]
        poll(lambda: "lab-extra" in prometheus.rule_groups(), 60, "Prometheus running lab-extra")
        before = hashlib.sha256(installed_rules(hosts).encode()).hexdigest()
        alert, took = fires_and_reaches_the_webhook(
            prometheus, inbox, "DiskNearlyFull", disk, "monitoring_alert_disk_full_for"
        )
        assert (
            "llmlab-gateway: /var/lib/docker is nearly full" in alert["annotations"]["summary"]
        ), alert
        print(f"DiskNearlyFull reached the webhook {took:.0f}s after the threshold changed")
        alert, took = fires_and_reaches_the_webhook(
            prometheus, inbox, "SpendOverBudget", {}, "monitoring_alert_spend_for"
        )
        assert "LLM spend is over 1e-06 USD per hour" in alert["annotations"]["summary"], alert
        print(f"SpendOverBudget reached the webhook {took:.0f}s after DiskNearlyFull")

        refused = run_monitoring_play(
            lab, {**lowered, "monitoring_prometheus_extra_rule_groups": [extra, broken]}
        )
        assert refused.returncode != 0, refused.stdout[-3000:]
        assert "failed to validate" in flat(refused.stdout)
        assert "could not parse expression" in flat(refused.stdout)
        assert hashlib.sha256(installed_rules(hosts).encode()).hexdigest() == before
        groups = prometheus.rule_groups()
        assert "lab-extra" in groups and "lab-broken" not in groups
    finally:
        restored = run_monitoring_play(lab, {})
        assert restored.returncode == 0, restored.stdout[-3000:]
    poll(lambda: "lab-extra" not in prometheus.rule_groups(), 60, "lab-extra gone again")
    resolves_and_reaches_the_webhook(inbox, "DiskNearlyFull", disk)
    resolves_and_reaches_the_webhook(inbox, "SpendOverBudget", {})
