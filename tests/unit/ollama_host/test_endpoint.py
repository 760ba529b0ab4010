"""Where the gateways reach an Ollama host, as ollama_host publishes it
(tasks/endpoint.yml: ollama_host_endpoint), from the role's own variables."""

from __future__ import annotations

from typing import Any

from tests.support.role_render import RoleVars


def url(address: str | None = "10.0.0.20", **overrides: Any) -> str:
    facts = {"default_ipv4": {"address": address}, "architecture": "x86_64"} if address else {}
    host = {"inventory_hostname": "gpu", "ansible_facts": facts, "ansible_host": "172.30.77.99"}
    return RoleVars("ollama_host", host, overrides)["_ollama_host_public_url"].strip()


def test_the_api_is_published_at_the_hosts_lan_address() -> None:
    assert url() == "http://10.0.0.20:11434"
    assert url(ollama_host_port=11500) == "http://10.0.0.20:11500"


def test_bound_to_every_address_the_host_address_is_published() -> None:
    assert url(ollama_host_bind_address="0.0.0.0") == "http://10.0.0.20:11434"
    assert url(ollama_host_bind_address="fd00::20") == "http://[fd00::20]:11434"


def test_a_host_that_is_off_keeps_its_inventory_address() -> None:
    assert url(None) == "http://172.30.77.99:11434"


def test_the_default_models_include_the_embedding_model_the_gateway_routes() -> None:
    """One list says what a host pulls and what the gateway routes: `embed` is served
    because the host that serves it pulls it (a first deploy's smoke test asks it)."""
    host = {"inventory_hostname": "gpu", "ansible_facts": {}, "ansible_host": "10.0.0.20"}
    role = RoleVars("ollama_host", host, {})
    served = role["ollama_host_models"]
    from tests.support.role_render import role_filters

    published = role_filters("ollama_host").ollama_host_served_models(served)
    assert {m["tier"] for m in published} == {"cheap", "embed"}
    assert any(m["mode"] == "embedding" for m in published)
