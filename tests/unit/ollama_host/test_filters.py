"""Unit tests of the ollama_host role's filter plugin (roles/ollama_host/filter_plugins)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from tests.support.loader import load

f = load("roles/ollama_host/filter_plugins/ollama_host.py", "ollama_host_filters")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("llama3.2:3b", "llama3.2:3b"),
        (" nomic-embed-text ", "nomic-embed-text:latest"),
        ("library/qwen3:8b", "qwen3:8b"),
        ("registry.ollama.ai/library/mistral", "mistral:latest"),
        (
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        ),
        ("myregistry:5000/team/model", "myregistry:5000/team/model:latest"),
    ],
)
def test_model_names_are_normalized_like_ollama(given: str, expected: str) -> None:
    assert f.ollama_host_model_name(given) == expected


def test_the_plan_pulls_only_missing_and_deletes_only_present() -> None:
    models = [
        {"name": "llama3.2:1b", "state": "present"},
        {"name": "nomic-embed-text"},  # state defaults to present
        {"name": "qwen3:8b", "state": "present"},
        {"name": "llama3.2:3b", "state": "absent"},
        {"name": "mistral", "state": "absent"},
    ]
    present = ["llama3.2:1b", "llama3.2:3b", "gemma3:4b"]
    plan = f.ollama_host_model_plan(models, present)
    assert plan == {"pull": ["nomic-embed-text:latest", "qwen3:8b"], "delete": ["llama3.2:3b"]}


def test_a_second_run_plans_nothing() -> None:
    models = [{"name": "nomic-embed-text", "state": "present"}, {"name": "x:1b", "state": "absent"}]
    assert f.ollama_host_model_plan(models, ["nomic-embed-text:latest"]) == {
        "pull": [],
        "delete": [],
    }


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([{"name": "llama3.2"}, {"name": "llama3.2:latest", "state": "absent"}], "more than once"),
        ([{"name": ""}], r"ollama_host_models\[0\] needs a name"),
        ([{"state": "present"}], "needs a name"),
        ([{"name": "a", "state": "latest"}], "has state 'latest'"),
    ],
)
def test_bad_model_lists_are_refused(models: list[dict], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        f.ollama_host_model_plan(models, [])


def test_group_members_are_unique_and_unknown_groups_empty() -> None:
    groups = {"gateway": ["gw1", "gw2"], "ollama": ["gw1", "box"]}
    assert f.ollama_host_group_members(groups, ["gateway", "ollama", "nope"]) == [
        "gw1",
        "gw2",
        "box",
    ]


def test_environment_is_quoted_for_systemd_and_empty_settings_left_out() -> None:
    managed = {
        "OLLAMA_HOST": "192.168.1.20:11434",
        "OLLAMA_KEEP_ALIVE": "0",
        "OLLAMA_NUM_PARALLEL": "",
        "OLLAMA_CONTEXT_LENGTH": 8192,
    }
    extra = {"OLLAMA_ORIGINS": 'http://a,"b"', "Z_PATH": "C:\\x 50%", "OLLAMA_DEBUG": True}
    assert f.ollama_host_environment_assignments(managed, extra) == [
        "OLLAMA_HOST=192.168.1.20:11434",
        "OLLAMA_KEEP_ALIVE=0",
        "OLLAMA_CONTEXT_LENGTH=8192",
        "OLLAMA_DEBUG=true",
        'OLLAMA_ORIGINS=http://a,\\"b\\"',
        "Z_PATH=C:\\\\x 50%%",
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"OLLAMA_HOST": "0.0.0.0"}, "OLLAMA_HOST, which the role manages"),
        ({"BAD-NAME": "1"}, "BAD-NAME is not a valid variable name"),
        ({"OLLAMA_X": "a\nb"}, "must be one line"),
    ],
)
def test_bad_environment_is_refused(extra: dict, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        f.ollama_host_environment_assignments({"OLLAMA_HOST": "x"}, extra)


def test_the_gateways_are_told_the_present_models_with_their_fields() -> None:
    models = [
        {"name": "llama3.2:3b", "tier": "cheap", "context_window": "131072"},
        {"name": "nomic-embed-text", "state": "present", "mode": "embedding", "tier": "embed"},
        {"name": "mistral:7b", "state": "absent", "tier": "balanced"},
        {"name": "qwen2.5:0.5b"},
    ]
    assert f.ollama_host_served_models(models) == [
        {"name": "llama3.2:3b", "mode": "chat", "tier": "cheap", "context_window": 131072},
        {"name": "nomic-embed-text", "mode": "embedding", "tier": "embed"},
        {"name": "qwen2.5:0.5b", "mode": "chat"},
    ]


def test_a_model_with_an_unknown_mode_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="mode 'vision'"):
        f.ollama_host_served_models([{"name": "llava", "mode": "vision"}])
    with pytest.raises(AnsibleFilterError, match="more than once"):
        f.ollama_host_served_models([{"name": "llava"}, {"name": "llava:latest"}])
