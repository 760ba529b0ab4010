"""Turn the role's model data into LiteLLM's ``config.yaml`` structure.

The template only dumps what ``litellm_proxy_config`` returns with
``to_nice_yaml``; every decision about deployments, order and fallbacks lives
here, where it is plain Python that the unit tests call directly.

Routing choices, and the LiteLLM traps they avoid:

* Within an alias, deployments get an ``order`` from their price (cheapest is
  1). The router only considers the lowest ``order`` that still has a healthy
  (not cooled-down) deployment, so the cheapest healthy deployment always
  answers first. LiteLLM's cost-based strategy is not used: it treats a price
  of 0 as "unset" (a free local model would be priced at a default and lose)
  and ignores prices kept under ``model_info``.
* Prices go in ``litellm_params`` (where LiteLLM's cost tracking reads them);
  a price of 0 is left out, which LiteLLM tracks as free for Ollama models.
* Deployments of equal price (the same Ollama model on two hosts) share an
  order, so the router spreads load over them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

PROVIDER_PREFIX = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "ollama": "ollama_chat",
}
EMBEDDING_PREFIX = {"openai": "openai", "gemini": "gemini", "ollama": "ollama"}
KNOWN_PROVIDERS = tuple(PROVIDER_PREFIX)


def _price(entry: Mapping[str, Any]) -> float:
    return float(entry.get("input_cost_per_token", 0) or 0) + float(
        entry.get("output_cost_per_token", 0) or 0
    )


def _deployment(
    public_name: str,
    entry: Mapping[str, Any],
    api_base: str | None,
    key_env: str | None,
    defaults: Mapping[str, Any],
) -> dict[str, Any]:
    provider = entry["provider"]
    mode = entry.get("mode", "chat")
    prefix = (EMBEDDING_PREFIX if mode == "embedding" else PROVIDER_PREFIX)[provider]
    params: dict[str, Any] = {"model": f"{prefix}/{entry['model']}"}
    if api_base:
        params["api_base"] = api_base
    if key_env:
        params["api_key"] = f"os.environ/{key_env}"
    for field in ("input_cost_per_token", "output_cost_per_token"):
        value = float(entry.get(field, 0) or 0)
        if value > 0:
            params[field] = value
    params["timeout"] = entry.get("timeout", defaults.get("timeout"))
    params["stream_timeout"] = entry.get("stream_timeout", defaults.get("stream_timeout"))
    params = {k: v for k, v in params.items() if v is not None}
    # LiteLLM reserves some model_info keys ("tier" means free/paid to it), so
    # the gateway's own annotations carry a prefix.
    info: dict[str, Any] = {
        "mode": mode,
        "gateway_provider": provider,
        "gateway_tier": entry.get("tier"),
    }
    if entry.get("context_window"):
        info["max_input_tokens"] = int(entry["context_window"])
    return {"model_name": public_name, "litellm_params": params, "model_info": info}


def _expand(
    models: Iterable[Mapping[str, Any]],
    ollama_models: Iterable[Mapping[str, Any]],
    ollama_endpoints: Iterable[str],
    providers: Mapping[str, Mapping[str, Any]],
    key_env: Mapping[str, str],
    enabled: Iterable[str],
) -> list[dict[str, Any]]:
    """One entry per real deployment: cloud models once, Ollama models once per host."""
    enabled_set = set(enabled)
    entries: list[dict[str, Any]] = []
    for model in models:
        provider = model.get("provider")
        if provider not in KNOWN_PROVIDERS or provider == "ollama":
            raise AnsibleFilterError(
                f"model {model.get('name')!r}: unknown cloud provider {provider!r}; "
                f"use one of openai, anthropic, gemini (Ollama models go in "
                f"litellm_proxy_ollama_models)"
            )
        if provider not in enabled_set:
            continue
        api_base = model.get("api_base") or providers.get(provider, {}).get("api_base") or None
        entries.append(
            {**model, "_api_base": api_base, "_key_env": key_env.get(provider), "_host": None}
        )
    endpoints = list(ollama_endpoints)
    for model in ollama_models:
        for endpoint in endpoints:
            entries.append(
                {
                    **model,
                    "provider": "ollama",
                    "model": model.get("model", model["name"]),
                    "_api_base": endpoint,
                    "_key_env": None,
                    "_host": endpoint,
                }
            )
    return entries


def litellm_proxy_config(
    models: list[Mapping[str, Any]],
    ollama_models: list[Mapping[str, Any]],
    ollama_endpoints: list[str],
    providers: Mapping[str, Mapping[str, Any]],
    key_env: Mapping[str, str],
    enabled_providers: list[str],
    tiers: list[str],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """Build LiteLLM's config: every model under its own name and under its tier alias."""
    entries = _expand(
        models, ollama_models, ollama_endpoints, providers, key_env, enabled_providers
    )
    names = [m["name"] for m in [*models, *ollama_models]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AnsibleFilterError(f"model names must be unique; repeated: {', '.join(duplicates)}")
    clashes = sorted(set(names) & set(tiers))
    if clashes:
        raise AnsibleFilterError(f"model names clash with tier aliases: {', '.join(clashes)}")
    for entry in entries:
        if entry.get("tier") and entry["tier"] not in tiers:
            raise AnsibleFilterError(
                f"model {entry['name']!r}: tier {entry['tier']!r} is not one of {', '.join(tiers)}"
            )

    deployment_defaults = settings.get("deployment_defaults", {})
    model_list: list[dict[str, Any]] = []
    for entry in entries:
        model_list.append(
            _deployment(
                entry["name"], entry, entry["_api_base"], entry["_key_env"], deployment_defaults
            )
        )
    for tier in tiers:
        members = [e for e in entries if e.get("tier") == tier]
        prices = sorted({_price(e) for e in members})
        for entry in sorted(members, key=_price):
            deployment = _deployment(
                tier, entry, entry["_api_base"], entry["_key_env"], deployment_defaults
            )
            deployment["litellm_params"]["order"] = prices.index(_price(entry)) + 1
            deployment["model_info"]["gateway_serves"] = entry["name"]
            model_list.append(deployment)

    available = {d["model_name"] for d in model_list}
    auto = settings.get("auto_router") or {}
    if auto.get("name"):
        model_list.append(_auto_router(auto, tiers, available))
    fallbacks = [
        {src: [dst for dst in dsts if dst in available]}
        for rule in settings.get("fallbacks", [])
        for src, dsts in rule.items()
        if src in available
    ]
    router_settings = {
        **settings.get("router_settings", {}),
        "fallbacks": [f for f in fallbacks if next(iter(f.values()))],
    }
    return {
        "model_list": model_list,
        "router_settings": router_settings,
        "litellm_settings": dict(settings.get("litellm_settings", {})),
        "general_settings": {
            "master_key": "os.environ/LITELLM_MASTER_KEY",
            **settings.get("general_settings", {}),
        },
    }


def _auto_router(auto: Mapping[str, Any], tiers: list[str], available: set[str]) -> dict[str, Any]:
    """The `auto` alias: LiteLLM's local, rule-based complexity router (no model call).

    Each complexity level maps to a tier alias; a tier with no deployments (no key
    for its provider, say) is replaced by the nearest tier above it that has one,
    else the nearest below, so `auto` works with whatever the house has."""
    usable = [t for t in tiers if t in available]
    if not usable:
        raise AnsibleFilterError("the auto router needs at least one tier alias with a model")
    mapping: dict[str, str] = {}
    for level, tier in auto.get("tiers", {}).items():
        if tier not in tiers:
            raise AnsibleFilterError(
                f"auto router: level {level} maps to {tier!r}, not one of {', '.join(tiers)}"
            )
        index = tiers.index(tier)
        above = [t for t in tiers[index:] if t in available]
        below = [t for t in reversed(tiers[:index]) if t in available]
        mapping[level] = (above or below)[0]
    return {
        "model_name": auto["name"],
        "litellm_params": {
            "model": "auto_router/complexity_router",
            "complexity_router_config": {"tiers": mapping},
        },
        "model_info": {"gateway_tier": "auto"},
    }


def litellm_proxy_ollama_url(host_vars: Mapping[str, Any], port: int) -> str:
    """Base URL of one Ollama host: its own ``ollama_host_url`` if it published one,
    else its default IPv4 address (facts), else its inventory address, and ``port``."""
    if host_vars.get("ollama_host_url"):
        return str(host_vars["ollama_host_url"]).rstrip("/")
    facts = host_vars.get("ansible_facts", {}) or {}
    address = (facts.get("default_ipv4") or {}).get("address") or host_vars.get(
        "ansible_host", host_vars.get("inventory_hostname")
    )
    return f"http://{address}:{int(port)}"


WELL_KNOWN_KEYS = ("sk-1234",)


def litellm_proxy_secret_problem(value: Any, prefix: str = "", min_length: int = 0) -> str:
    """What is wrong with a secret, in words that never contain it; '' when it is fine."""
    if value is None or not isinstance(value, str) or not value:
        return "is empty or missing"
    if "CHANGE-ME" in value:
        return "is still the example value"
    if value.startswith(WELL_KNOWN_KEYS):
        return "is a well-known example key"
    if prefix and not value.startswith(prefix):
        return f'does not start with "{prefix}"'
    if len(value) < min_length:
        return f"is shorter than {min_length} characters"
    if len(set(value.removeprefix(prefix))) < 8:
        return "has fewer than 8 different characters"
    return ""


def litellm_proxy_app_table(
    apps: list[Mapping[str, Any]], keys: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """{name: {key, models, rpm}} for the auth hook; refuses bad entries without
    ever putting a key into the message."""
    table: dict[str, dict[str, Any]] = {}
    for app in apps:
        name = str(app.get("name") or "")
        if not name or name in table:
            raise AnsibleFilterError(f"litellm_proxy_apps: empty or repeated name {name!r}")
        key = str(keys.get(name) or "")
        if not key.startswith("sk-") or len(key) < 32:
            raise AnsibleFilterError(
                f"application {name!r} needs a key in litellm_proxy_app_keys "
                f"(vault_litellm_app_keys.{name}) that starts with 'sk-' and has 32+ characters"
            )
        table[name] = {
            "key": key,
            "models": sorted(app.get("models") or []),
            "rpm": int(app.get("rpm") or 0),
        }
    reused = {k for k in (t["key"] for t in table.values()) if list(keys.values()).count(k) > 1}
    if reused:
        raise AnsibleFilterError("two applications share one key; give each its own")
    return table


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "litellm_proxy_config": litellm_proxy_config,
            "litellm_proxy_ollama_url": litellm_proxy_ollama_url,
            "litellm_proxy_app_table": litellm_proxy_app_table,
            "litellm_proxy_secret_problem": litellm_proxy_secret_problem,
        }
