"""Cost routing and fallback through the real gateway.

Real: the LiteLLM proxy (pinned release) with the config the role rendered.
Stand-ins: the cloud APIs (emulator on the providers host, EMULATOR_URL) and
Ollama (the same emulator installed as the `ollama` binary on the ollama host,
OLLAMA_URL). Every assertion about who answered reads the emulators'
`/_requests`, and the reply text, which names the provider and model.

Lab prices (role defaults): cheap = Ollama llama3.2:1b (free) < gpt-4o-mini;
balanced = gemini-2.5-flash < claude-haiku-4-5; smart = gpt-4.1 < claude-sonnet-4-5.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.lab_client import Emulator, answered_by, chat, chat_alone, wait_until

CLOUD = ("openai", "anthropic", "gemini")
REPO = Path(__file__).resolve().parents[3]
OLLAMA_LAB = yaml.safe_load((REPO / "molecule/default/group_vars/ollama/lab.yml").read_text())


class Upstream(Emulator):
    """The emulator, noting when an upstream that a test made fail was healthy again.

    The workers share their cooldowns through Redis (the shared state) but each
    keeps a copy for up to a second, and a check through one connection reaches
    one worker: every worker's cooldowns are over one `cooldown_time` after the
    last recovery."""

    recovered_at = 0.0  # time.monotonic() of the last recovery, over all instances

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.failing: set[str] = set()

    def set(self, provider: str, mode: str = "ok", **extra: int) -> None:
        super().set(provider, mode, **extra)
        if mode != "ok" or extra:
            self.failing.add(provider)
        elif provider in self.failing:
            self.failing.discard(provider)
            self.recovered()

    @staticmethod
    def recovered() -> None:
        Upstream.recovered_at = time.monotonic()


@pytest.fixture
def clouds(emulator_url: str) -> Upstream:
    return Upstream(emulator_url)


@pytest.fixture
def ollama(ollama_url: str) -> Upstream:
    return Upstream(ollama_url)


def _reset(clouds: Emulator, ollama: Emulator) -> None:
    for provider in CLOUD:
        clouds.set(provider, "ok")
    ollama.set("ollama", "ok")


@pytest.fixture(scope="module")
def router(hosts: dict) -> dict:
    """The router settings of the config the gateway runs (cooldown, retries)."""
    config = hosts["gateway"].file("/opt/litellm-proxy/config.yaml").content_string
    return yaml.safe_load(config)["router_settings"]


@pytest.fixture
def healthy(
    gateway: requests.Session,
    gateway_url: str,
    clouds: Upstream,
    ollama: Upstream,
    router: dict,
) -> Iterator[None]:
    """Every upstream `ok`, and the gateway routing `cheap` to Ollama again (cooldowns over)."""
    _reset(clouds, ollama)
    time.sleep(max(0.0, Upstream.recovered_at + router["cooldown_time"] - time.monotonic()))
    wait_until(
        lambda: answered_by(chat(gateway, gateway_url, "cheap")) == "ollama/llama3.2:1b",
        90,
        "`cheap` going back to Ollama after the cooldown",
    )
    clouds.clear()
    ollama.clear()
    yield
    _reset(clouds, ollama)


@pytest.mark.usefixtures("healthy")
def test_cheapest_healthy_deployment_answers_first_and_each_tier_falls_back_upwards(
    gateway: requests.Session, gateway_url: str, clouds: Emulator, ollama: Emulator
) -> None:
    # All up: the free local model answers `cheap`; no cloud is asked.
    answer = chat(gateway, gateway_url, "cheap")
    assert answer.status_code == 200, answer.text
    assert [r["model"] for r in ollama.model_calls("ollama")] == ["llama3.2:1b"]
    assert clouds.model_calls() == []

    # Ollama down: the next cheapest in `cheap`, the cloud's mini model.
    ollama.set("ollama", "down")
    clouds.clear()
    assert chat(gateway, gateway_url, "cheap").status_code == 200
    assert [(r["provider"], r["model"]) for r in clouds.model_calls() if r["status"] == 200] == [
        ("openai", "gpt-4o-mini")
    ]

    # The whole `cheap` tier down: `balanced`, cheapest first (Gemini Flash).
    clouds.set("openai", "down")
    clouds.clear()
    answer = chat(gateway, gateway_url, "cheap")
    assert answer.status_code == 200, answer.text
    assert answered_by(answer) == "gemini/gemini-2.5-flash"
    answered = [(r["provider"], r["model"]) for r in clouds.model_calls() if r["status"] == 200]
    assert answered == [("gemini", "gemini-2.5-flash")]

    # ... and when Gemini is down too, the next one in `balanced`.
    clouds.set("gemini", "down")
    answer = chat(gateway, gateway_url, "cheap")
    assert answer.status_code == 200, answer.text
    assert answered_by(answer) == "anthropic/claude-haiku-4-5"


@pytest.mark.usefixtures("healthy")
def test_smart_never_falls_back_down_to_cheaper_tiers(
    gateway: requests.Session, gateway_url: str, clouds: Emulator, ollama: Emulator
) -> None:
    clouds.set("openai", "error", status=500)
    clouds.set("anthropic", "error", status=500)
    answer = chat(gateway, gateway_url, "smart")
    assert answer.status_code >= 500
    assert ollama.model_calls("ollama") == []
    assert [r for r in clouds.model_calls() if r["provider"] == "gemini"] == []


FAILURES = {
    "error": {"status": 500},
    "rate_limit": {},
    "timeout": {},
    "down": {},
}


GATEWAYS = ("gateway", "gateway-2")


def proxy_workers(hosts: dict, name: str = "gateway") -> int:
    """How many LiteLLM workers a gateway's proxy runs (its Compose command)."""
    command = hosts[name].check_output("grep -A1 -- --num_workers /opt/litellm-proxy/compose.yaml")
    return int(command.split()[-1].strip('"'))


def deployment_slots(hosts: dict, name: str, deployment: str) -> int:
    """max_parallel_requests of one deployment in a gateway's LiteLLM config."""
    config = yaml.safe_load(hosts[name].file("/opt/litellm-proxy/config.yaml").content_string)
    (entry,) = [d for d in config["model_list"] if d["model_info"].get("id") == deployment]
    return int(entry["litellm_params"]["max_parallel_requests"])


@pytest.mark.usefixtures("healthy")
@pytest.mark.parametrize("mode", sorted(FAILURES))
def test_failing_preferred_deployment_leaves_the_rotation_and_comes_back(
    mode: str,
    gateway: requests.Session,
    gateway_url: str,
    clouds: Emulator,
    ollama: Emulator,
    hosts: dict,
    router: dict,
) -> None:
    """Every request is answered while the preferred deployment fails, and it
    leaves the rotation: a worker cools the deployment on the `allowed_fails + 1`-th
    failure it counts, each of which is a request that LiteLLM may retry on it
    `num_retries` times before the cooldown lands, and the others read that
    cooldown from Redis within a second (test_shared_state.py measures that
    part). The bound here does not lean on the sharing: within one cooldown of
    the first failure the deployment gets at most
    workers * (allowed_fails + 1) * (num_retries + 1) calls (the workers of both
    gateways, which the front spreads the requests over), where 50 requests
    would give it 50 or more if it stayed in."""
    workers = sum(proxy_workers(hosts, name) for name in GATEWAYS)  # every worker of the house
    bound = workers * (router["allowed_fails"] + 1) * (router["num_retries"] + 1)
    ollama.set("ollama", mode, **FAILURES[mode])
    statuses = [chat(gateway, gateway_url, "cheap").status_code for _ in range(50)]
    assert statuses == [200] * 50
    calls = [call["time"] for call in ollama.model_calls("ollama")]
    assert calls, f"no request reached the deployment made to fail ({mode})"
    window = [t for t in calls if t < calls[0] + router["cooldown_time"]]
    assert len(window) <= bound, (
        f"the failing deployment kept getting requests: {len(window)} calls within"
        f" {router['cooldown_time']} s of its first failure, at most {bound} expected"
    )

    ollama.set("ollama", "ok")
    wait_until(
        lambda: answered_by(chat(gateway, gateway_url, "cheap")) == "ollama/llama3.2:1b",
        90,
        f"Ollama being used again after recovering from {mode}",
    )


@pytest.mark.usefixtures("healthy")
def test_a_dead_ollama_host_leaves_the_rotation_and_returns_when_started(
    gateway: requests.Session, gateway_url: str, hosts: dict, ollama: Emulator
) -> None:
    """The real failure of a home network: the model host's service stops (connection refused)."""
    ollama_host = hosts["ollama"]
    ollama_host.run_expect([0], "systemctl stop ollama")
    try:
        statuses = [chat(gateway, gateway_url, "cheap").status_code for _ in range(20)]
        assert statuses == [200] * 20
    finally:
        ollama_host.run_expect([0], "systemctl start ollama")
        Upstream.recovered()  # not through the emulator's control API
    wait_until(
        lambda: answered_by(chat(gateway, gateway_url, "cheap")) == "ollama/llama3.2:1b",
        90,
        "the gateway using the Ollama host again after it started",
    )


@pytest.mark.usefixtures("healthy")
def test_a_busy_ollama_host_gets_no_more_than_its_slots_and_the_tier_takes_the_rest(
    gateway: requests.Session,
    gateway_url: str,
    clouds: Emulator,
    ollama: Emulator,
    hosts: dict,
) -> None:
    """The lab's Ollama host serves `ollama_host_num_parallel` requests at once, and
    each gateway gets an equal share of it for `cheap`, split over its workers
    (at least one each). Eight `cheap` requests at once, over both gateways,
    while Ollama takes 2 s to answer: every one is answered, at most the
    house's slots reach Ollama, and the rest are answered at once by the tier's
    next deployment (gpt-4o-mini), not queued on the busy host. A full host is
    not a broken one: the next request goes to Ollama again, with no cooldown."""
    parallel = int(OLLAMA_LAB["ollama_host_num_parallel"])
    per_gateway = {
        name: max(1, parallel // len(GATEWAYS) // proxy_workers(hosts, name)) for name in GATEWAYS
    }
    for name, share in per_gateway.items():
        assert deployment_slots(hosts, name, "cheap/llama3.2:1b@llmlab-ollama") == share, name
    slots = sum(share * proxy_workers(hosts, name) for name, share in per_gateway.items())
    # Slow, not failing: the emulator's own control, so no recovery is waited for.
    Emulator.set(ollama, "ollama", "ok", latency_ms=2000)
    start = threading.Barrier(8)

    def one(_: int) -> requests.Response:
        start.wait()
        return chat_alone(gateway, gateway_url, "cheap")

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, range(8)))
    Emulator.set(ollama, "ollama", "ok")
    assert [a.status_code for a in answers] == [200] * 8, [a.text[:200] for a in answers]
    by = sorted(answered_by(a) for a in answers)
    local = by.count("ollama/llama3.2:1b")
    assert 1 <= local <= slots, f"{local} requests reached Ollama at once ({slots} slots): {by}"
    assert by.count("openai/gpt-4o-mini") == 8 - local, by
    assert len(ollama.model_calls("ollama")) == local
    assert answered_by(chat(gateway, gateway_url, "cheap")) == "ollama/llama3.2:1b"


@pytest.mark.usefixtures("healthy")
def test_streaming_falls_back_before_the_first_byte(
    gateway_url: str, gateway_key: str, ollama: Emulator
) -> None:
    import openai

    ollama.set("ollama", "error", status=500)
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=gateway_key, max_retries=0)
    stream = client.chat.completions.create(
        model="cheap", messages=[{"role": "user", "content": "hello"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "emulated reply from openai model gpt-4o-mini"


@pytest.mark.usefixtures("healthy")
def test_auto_picks_the_tier_from_the_request(
    gateway: requests.Session, gateway_url: str, clouds: Emulator, ollama: Emulator
) -> None:
    simple = chat(gateway, gateway_url, "auto", "Hi!")
    assert simple.status_code == 200, simple.text
    assert [r["model"] for r in ollama.model_calls("ollama")] == ["llama3.2:1b"]
    hard = (
        "Think step by step. First, design a Python class hierarchy for a distributed "
        "task queue with retries and exponential backoff; then implement the worker "
        "function, explain the algorithm's complexity, write unit tests with mocks for "
        "the database layer, and finally refactor the code for async concurrency, "
        "debugging the race conditions in the scheduler. def schedule(task): pass "
        "class Worker: import asyncio. Analyze the trade-offs of each architecture."
    )
    complex_answer = chat(gateway, gateway_url, "auto", hard)
    assert complex_answer.status_code == 200, complex_answer.text
    assert [r["model"] for r in clouds.model_calls()] == ["gpt-4.1"]


@pytest.mark.usefixtures("healthy")
def test_openai_and_anthropic_sdks_get_answers_plain_and_streaming(
    gateway_url: str, gateway_key: str
) -> None:
    import anthropic
    import openai

    oa = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=gateway_key, max_retries=0)
    plain = oa.chat.completions.create(
        model="balanced", messages=[{"role": "user", "content": "hi"}]
    )
    assert plain.choices[0].message.content == "emulated reply from gemini model gemini-2.5-flash"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in oa.chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        if c.choices
    )
    assert streamed == "emulated reply from openai model gpt-4.1"

    claude = anthropic.Anthropic(base_url=gateway_url, api_key=gateway_key, max_retries=0)
    message = claude.messages.create(
        model="cheap", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "emulated reply from ollama model llama3.2:1b"
    with claude.messages.stream(
        model="balanced", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "emulated reply from gemini model gemini-2.5-flash"


@pytest.mark.usefixtures("healthy")
def test_embed_alias_serves_the_local_embedding_model_with_cloud_fallback(
    gateway_url: str, gateway_key: str, ollama: Emulator, clouds: Emulator
) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=gateway_key, max_retries=0)
    vectors = client.embeddings.create(model="embed", input=["one", "two"])
    assert [len(v.embedding) for v in vectors.data] == [16, 16]
    assert [r["model"] for r in ollama.model_calls("ollama")] == ["nomic-embed-text"]

    ollama.set("ollama", "down")
    again = client.embeddings.create(model="embed", input="three")
    assert len(again.data[0].embedding) == 16
    assert [r["model"] for r in clouds.model_calls("openai")] == ["text-embedding-3-small"]


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({}, {"model": "cheap", "messages": [{"role": "user", "content": "x"}]}, {401}),
        (
            {"Authorization": "Bearer sk-wrong-key-0000000000000000000000"},
            {"model": "cheap", "messages": [{"role": "user", "content": "x"}]},
            {401},
        ),
    ],
    ids=["no-key", "wrong-key"],
)
def test_requests_without_the_key_are_refused(
    gateway_url: str, clouds: Emulator, ollama: Emulator, headers: dict, body: dict, expected: set
) -> None:
    clouds.clear()
    ollama.clear()
    answer = requests.post(
        f"{gateway_url}/v1/chat/completions", json=body, headers=headers, timeout=30
    )
    assert answer.status_code in expected
    assert clouds.model_calls() == [] and ollama.model_calls() == []


def test_unknown_model_and_malformed_json_get_clear_client_errors(
    gateway: requests.Session, gateway_url: str, clouds: Emulator, ollama: Emulator
) -> None:
    clouds.clear()
    ollama.clear()
    unknown = chat(gateway, gateway_url, "no-such-model")
    assert unknown.status_code in (400, 404)
    assert "no-such-model" in unknown.text
    malformed = gateway.post(
        f"{gateway_url}/v1/chat/completions",
        data=b'{"model": "cheap", "messages": [',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert malformed.status_code == 400
    assert clouds.model_calls() == [] and ollama.model_calls() == []
    assert chat(gateway, gateway_url, "cheap").status_code == 200
