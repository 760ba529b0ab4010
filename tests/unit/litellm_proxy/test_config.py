"""The gateway's LiteLLM config, built by the role's filter plugin from model data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from tests.support.loader import load

REPO = Path(__file__).resolve().parents[3]
filters = load("roles/litellm_proxy/filter_plugins/litellm_proxy.py", "litellm_proxy_filters")

KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}
PROVIDERS = {"openai": {"api_base": ""}, "anthropic": {"api_base": ""}, "gemini": {"api_base": ""}}
SETTINGS = {
    "deployment_defaults": {"timeout": 60, "stream_timeout": 30},
    "fallbacks": [{"cheap": ["balanced"]}, {"balanced": ["smart"]}],
    "router_settings": {"routing_strategy": "simple-shuffle"},
    "litellm_settings": {},
    "general_settings": {},
}
MODELS = [
    {
        "name": "mini",
        "provider": "openai",
        "model": "gpt-mini",
        "tier": "cheap",
        "input_cost_per_token": 1e-7,
        "output_cost_per_token": 4e-7,
    },
    {
        "name": "haiku",
        "provider": "anthropic",
        "model": "claude-haiku",
        "tier": "balanced",
        "input_cost_per_token": 1e-6,
        "output_cost_per_token": 5e-6,
    },
    {
        "name": "sonnet",
        "provider": "anthropic",
        "model": "claude-sonnet",
        "tier": "smart",
        "input_cost_per_token": 3e-6,
        "output_cost_per_token": 15e-6,
    },
]
OLLAMA = [{"name": "llama3.2:1b", "tier": "cheap", "mode": "chat"}]
ENDPOINTS = ["http://10.0.0.11:11434", "http://10.0.0.12:11434"]
# What two Ollama hosts published (ollama_host_endpoint), by host.
SERVERS = {
    "gpu-a": {"url": ENDPOINTS[0], "models": OLLAMA},
    "gpu-b": {"url": ENDPOINTS[1] + "/", "models": OLLAMA},
}


def build(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "models": MODELS,
        "ollama_servers": SERVERS,
        "providers": PROVIDERS,
        "key_env": KEY_ENV,
        "enabled_providers": ["openai", "anthropic"],
        "tiers": ["cheap", "balanced", "smart"],
        "settings": SETTINGS,
    }
    args.update(overrides)
    return filters.litellm_proxy_config(**args)


def group(config: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [d for d in config["model_list"] if d["model_name"] == name]


def test_free_ollama_model_is_first_in_its_tier_on_every_host() -> None:
    cheap = group(build(), "cheap")
    first = [d for d in cheap if d["litellm_params"]["order"] == 1]
    assert sorted(d["litellm_params"]["api_base"] for d in first) == ENDPOINTS
    assert all(d["litellm_params"]["model"] == "ollama_chat/llama3.2:1b" for d in first)
    paid = [d for d in cheap if d["litellm_params"]["order"] == 2]
    assert [d["litellm_params"]["model"] for d in paid] == ["openai/gpt-mini"]


def test_prices_live_in_litellm_params_and_zero_is_never_written() -> None:
    config = build()
    for deployment in config["model_list"]:
        params = deployment["litellm_params"]
        assert "input_cost_per_token" not in deployment["model_info"]
        if params["model"].startswith("ollama"):
            assert "input_cost_per_token" not in params
        else:
            assert params["input_cost_per_token"] > 0


def test_every_model_is_reachable_under_its_own_name() -> None:
    names = {d["model_name"] for d in build()["model_list"]}
    assert {"mini", "haiku", "sonnet", "llama3.2:1b", "cheap", "balanced", "smart"} <= names


def test_provider_without_key_is_left_out() -> None:
    config = build(enabled_providers=["anthropic"])
    assert not group(config, "mini")
    assert all("openai" not in d["litellm_params"]["model"] for d in config["model_list"])


def test_keys_are_only_environment_references() -> None:
    for deployment in build()["model_list"]:
        key = deployment["litellm_params"].get("api_key")
        assert key is None or key.startswith("os.environ/")
    assert build()["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"


def test_fallbacks_only_go_upwards_and_skip_missing_tiers() -> None:
    config = build()
    assert config["router_settings"]["fallbacks"] == [
        {"cheap": ["balanced"]},
        {"balanced": ["smart"]},
    ]
    no_smart = build(models=MODELS[:2])
    assert no_smart["router_settings"]["fallbacks"] == [{"cheap": ["balanced"]}]


def test_duplicate_model_name_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="repeated: mini"):
        build(models=[*MODELS, {**MODELS[0]}])


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="unknown cloud provider 'mistral'"):
        build(models=[{"name": "x", "provider": "mistral", "model": "m", "tier": "cheap"}])


def test_unknown_tier_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="tier 'premium'"):
        build(models=[{**MODELS[0], "tier": "premium"}])


def test_model_name_may_not_shadow_a_tier() -> None:
    with pytest.raises(AnsibleFilterError, match="clash with tier aliases: cheap"):
        build(models=[{**MODELS[0], "name": "cheap"}])


def test_every_deployment_has_an_id_that_says_what_it_is() -> None:
    ids = [d["model_info"]["id"] for d in build()["model_list"]]
    assert len(ids) == len(set(ids)), ids
    assert {
        "mini",
        "llama3.2:1b@gpu-a",
        "llama3.2:1b@gpu-b",
        "cheap/mini",
        "cheap/llama3.2:1b@gpu-a",
        "cheap/llama3.2:1b@gpu-b",
        "balanced/haiku",
        "smart/sonnet",
    } <= set(ids)
    # The same inventory gives the same ids on every gateway and every run.
    assert ids == [d["model_info"]["id"] for d in build()["model_list"]]


def test_litellm_itself_accepts_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pinned LiteLLM builds a router from the rendered model list (it rejects, for
    example, model_info keys it reserves, such as `tier`)."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    for env in KEY_ENV.values():
        monkeypatch.setenv(env, "sk-unit-test-fake")
    import litellm

    config = build()
    router = litellm.Router(
        model_list=config["model_list"],
        fallbacks=config["router_settings"]["fallbacks"],
    )
    deployments = router.get_model_list(model_name="cheap") or []
    assert len(deployments) == 3
    assert sorted(d["litellm_params"]["order"] for d in deployments) == [1, 1, 2]
    # The router counts each deployment under the id the config gave it.
    assert router.get_deployment(model_id="cheap/llama3.2:1b@gpu-a") is not None
    assert sorted(d["model_info"]["id"] for d in deployments) == [
        "cheap/llama3.2:1b@gpu-a",
        "cheap/llama3.2:1b@gpu-b",
        "cheap/mini",
    ]


def test_a_model_is_routed_only_to_the_hosts_that_serve_it() -> None:
    servers = {
        "gpu-a": {
            "url": ENDPOINTS[0],
            "models": [*OLLAMA, {"name": "qwen2.5:7b", "tier": "balanced"}],
        },
        "gpu-b": {"url": ENDPOINTS[1], "models": OLLAMA},
    }
    config = build(ollama_servers=servers)
    assert [d["litellm_params"]["api_base"] for d in group(config, "qwen2.5:7b")] == [ENDPOINTS[0]]
    assert (
        sorted(d["litellm_params"]["api_base"] for d in group(config, "llama3.2:1b")) == ENDPOINTS
    )
    balanced = [d["model_info"]["gateway_serves"] for d in group(config, "balanced")]
    assert "qwen2.5:7b" in balanced


def test_one_model_is_one_model_on_every_host() -> None:
    servers = {
        "gpu-a": {"url": ENDPOINTS[0], "models": OLLAMA},
        "gpu-b": {"url": ENDPOINTS[1], "models": [{**OLLAMA[0], "tier": "smart"}]},
    }
    with pytest.raises(AnsibleFilterError, match="same tier, mode and context_window"):
        build(ollama_servers=servers)


def test_an_ollama_model_may_not_take_a_cloud_models_name() -> None:
    servers = {"gpu-a": {"url": ENDPOINTS[0], "models": [{"name": "mini", "tier": "cheap"}]}}
    with pytest.raises(AnsibleFilterError, match="repeated: mini"):
        build(ollama_servers=servers)


@pytest.mark.parametrize(
    ("num_parallel", "gateways", "workers", "slots"),
    [(8, 2, 2, 2), (4, 1, 2, 2), (5, 2, 1, 2), (1, 2, 2, 1)],
)
def test_a_host_that_publishes_its_parallel_slots_is_shared_by_every_worker(
    num_parallel: int, gateways: int, workers: int, slots: int
) -> None:
    """Each gateway takes an equal part of a host's slots, split over its
    workers (at least one each), on the host's deployments of tier aliases; a
    model asked for by its own name is left to Ollama's queue."""
    servers = {
        "gpu-a": {"url": ENDPOINTS[0], "models": OLLAMA, "num_parallel": num_parallel},
        "gpu-b": {"url": ENDPOINTS[1], "models": OLLAMA},
    }
    settings = {**SETTINGS, "ollama_gateways": gateways, "ollama_workers": workers}
    config = build(ollama_servers=servers, settings=settings)
    caps = {
        d["model_info"]["id"]: d["litellm_params"].get("max_parallel_requests")
        for d in config["model_list"]
        if d["model_info"].get("gateway_provider") == "ollama"
    }
    assert caps == {
        "llama3.2:1b@gpu-a": None,
        "llama3.2:1b@gpu-b": None,
        "cheap/llama3.2:1b@gpu-a": slots,
        "cheap/llama3.2:1b@gpu-b": None,  # 0: left to Ollama
    }
    assert all("max_parallel_requests" not in d["litellm_params"] for d in group(config, "mini"))


def test_no_ollama_host_means_no_ollama_deployment() -> None:
    config = build(ollama_servers={})
    assert all(d["model_info"].get("gateway_provider") != "ollama" for d in config["model_list"])
