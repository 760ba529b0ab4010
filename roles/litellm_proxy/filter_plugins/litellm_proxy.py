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
* An Ollama host that publishes its ``num_parallel`` (the requests it serves at
  once) gets, on each deployment of a tier alias, ``max_parallel_requests``:
  an equal share of that number for each gateway, split over its workers
  (at least one each).
  LiteLLM answers a full deployment's attempt with a 429 at once, without
  calling the host (router_utils/client_initalization_utils.py,
  MaxParallelRequestsLimit), and its order-based fallback tries the alias's
  next order, so the overflow goes to the next deployment of the tier
  instead of a queue on a busy GPU. A model asked for under its own name has
  nowhere else to go and is not capped: Ollama queues it.
* Every deployment has an explicit ``model_info.id`` that says what it is
  (``cheap/llama3.2:1b@gpu-a``: alias, model, Ollama host). LiteLLM keys its
  cooldowns, failure counters and metrics by that id; without one it hashes
  the deployment's parameters, which no person can read in an alert and
  which changes with any parameter.
"""

from __future__ import annotations

import re
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


def _slots_per_worker(entry: Mapping[str, Any], settings: Mapping[str, Any]) -> int:
    """How many requests one worker may have in flight on an Ollama host's
    deployment: an equal share of the host's ``num_parallel`` for each gateway,
    split over this gateway's workers, at least 1; 0 (no cap) when the host
    leaves the number to Ollama."""
    parallel = int(entry.get("_num_parallel") or 0)
    gateways = max(1, int(settings.get("ollama_gateways") or 1))
    workers = max(1, int(settings.get("ollama_workers") or 1))
    if parallel <= 0:
        return 0
    return max(1, parallel // gateways // workers)


def _deployment_id(public_name: str, entry: Mapping[str, Any]) -> str:
    """`alias/model@host`: the alias only when it is not the model's own name, the
    host only for an Ollama model (a cloud model is one deployment per alias)."""
    name = str(entry["name"])
    base = name if public_name == name else f"{public_name}/{name}"
    return f"{base}@{entry['_host']}" if entry.get("_host") else base


OLLAMA_MODEL_FIELDS = ("tier", "mode", "context_window")


def _ollama_models(servers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each Ollama model once, with the gateway fields its hosts give it: a model on
    two hosts must be the same model to the gateway (one tier, one mode)."""
    found: dict[str, dict[str, Any]] = {}
    first_host: dict[str, str] = {}
    for host, server in servers.items():
        for model in server.get("models") or []:
            name = str(model["name"])
            fields = {k: model.get(k) for k in OLLAMA_MODEL_FIELDS}
            fields["mode"] = fields["mode"] or "chat"
            if name in found and found[name] != fields:
                raise AnsibleFilterError(
                    f"Ollama model {name!r} is {found[name]} on {first_host[name]} but {fields} on "
                    f"{host}: give it the same tier, mode and context_window on every host "
                    "(ollama_host_models)"
                )
            found[name], first_host[name] = fields, str(host)
    return found


def _expand(
    models: Iterable[Mapping[str, Any]],
    ollama_servers: Mapping[str, Mapping[str, Any]],
    providers: Mapping[str, Mapping[str, Any]],
    key_env: Mapping[str, str],
    enabled: Iterable[str],
) -> list[dict[str, Any]]:
    """One entry per real deployment: cloud models once, an Ollama model once per
    host that serves it."""
    enabled_set = set(enabled)
    entries: list[dict[str, Any]] = []
    for model in models:
        provider = model.get("provider")
        if provider not in KNOWN_PROVIDERS or provider == "ollama":
            raise AnsibleFilterError(
                f"model {model.get('name')!r}: unknown cloud provider {provider!r}; "
                f"use one of openai, anthropic, gemini (Ollama models are the ones each "
                f"Ollama host serves: ollama_host_models)"
            )
        if provider not in enabled_set:
            continue
        api_base = model.get("api_base") or providers.get(provider, {}).get("api_base") or None
        entries.append(
            {**model, "_api_base": api_base, "_key_env": key_env.get(provider), "_host": None}
        )
    for host, server in ollama_servers.items():
        url = str(server["url"]).rstrip("/")
        for model in server.get("models") or []:
            entries.append(
                {
                    **{k: model[k] for k in ("name", *OLLAMA_MODEL_FIELDS) if model.get(k)},
                    "provider": "ollama",
                    "model": model["name"],
                    "_api_base": url,
                    "_key_env": None,
                    "_host": host,
                    "_num_parallel": int(server.get("num_parallel") or 0),
                }
            )
    return entries


def litellm_proxy_config(
    models: list[Mapping[str, Any]],
    ollama_servers: Mapping[str, Mapping[str, Any]],
    providers: Mapping[str, Mapping[str, Any]],
    key_env: Mapping[str, str],
    enabled_providers: list[str],
    tiers: list[str],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """Build LiteLLM's config: every model under its own name and under its tier alias.

    ``ollama_servers`` is what the Ollama hosts published, by host: the URL of its
    API and the models it serves; a model is routed only to the hosts that have it."""
    ollama_models = _ollama_models(ollama_servers)
    entries = _expand(models, ollama_servers, providers, key_env, enabled_providers)
    names = [m["name"] for m in models] + list(ollama_models)
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
        deployment = _deployment(
            entry["name"], entry, entry["_api_base"], entry["_key_env"], deployment_defaults
        )
        deployment["model_info"]["id"] = _deployment_id(entry["name"], entry)
        model_list.append(deployment)
    for tier in tiers:
        members = [e for e in entries if e.get("tier") == tier]
        prices = sorted({_price(e) for e in members})
        for entry in sorted(members, key=_price):
            deployment = _deployment(
                tier, entry, entry["_api_base"], entry["_key_env"], deployment_defaults
            )
            deployment["litellm_params"]["order"] = prices.index(_price(entry)) + 1
            slots = _slots_per_worker(entry, settings)
            if slots:
                deployment["litellm_params"]["max_parallel_requests"] = slots
            deployment["model_info"]["gateway_serves"] = entry["name"]
            deployment["model_info"]["id"] = _deployment_id(tier, entry)
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
        "model_info": {"id": str(auto["name"]), "gateway_tier": "auto"},
    }


IMAGE_REFERENCE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
# Tags that another push moves to a different image.
MOVING_TAGS = re.compile(
    r"^(latest|stable|lts|main|main-latest|main-stable|.*-latest|.*-nightly|.*-dev)$"
)
# LiteLLM's tag scheme up to 1.83 (main-v1.x.y, v1.x.y-stable), which it no
# longer publishes: such a tag of a later release is "manifest unknown".
LEGACY_TAGS = re.compile(r"^(main-v.*|.*-stable(\.patch\.\d+)?)$")


def litellm_proxy_image_problem(reference: Any) -> str:
    """What is wrong with an image reference for a deploy, or '' when it is pinned.

    Pinned means an exact tag (a release, `v1.108.7`, or a build's own name) or a
    digest (`@sha256:<64 hex>`), and no tag that moves: LiteLLM's `main-latest`,
    `main-stable`, `latest` and `lts` point at a new image with every release."""
    text = str(reference or "").strip()
    match = IMAGE_REFERENCE.match(text)
    if not match:
        return "is not an image reference (name[:tag][@sha256:digest])"
    tag, digest = match.group("tag"), match.group("digest")
    if not tag and not digest:
        return "has neither a tag nor a digest, which means latest"
    if tag and MOVING_TAGS.match(tag) and not digest:
        return f"uses the moving tag {tag!r}; name a release (v1.108.7) or a digest"
    if tag and LEGACY_TAGS.match(tag):
        return (
            f"uses the tag {tag!r} of LiteLLM's scheme up to 1.83, which later releases are not "
            "published under; name the release as v<version> (v1.108.7)"
        )
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
            "litellm_proxy_app_table": litellm_proxy_app_table,
            "litellm_proxy_image_problem": litellm_proxy_image_problem,
        }
