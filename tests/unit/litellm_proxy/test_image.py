"""The image the gateway runs: the tag LiteLLM publishes for a release, or a
digest, never a tag that moves; and never a compromised release."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.support.loader import REPO, load
from tests.support.role_render import RoleVars

filters = load("roles/litellm_proxy/filter_plugins/litellm_proxy.py", "litellm_proxy_filters")
ROLE_VARS = yaml.safe_load((REPO / "roles/litellm_proxy/vars/main.yml").read_text())
REFUSED = ROLE_VARS["_litellm_proxy_refused_versions"]
# LiteLLM's release workflow publishes each release as `v<version>` and
# `<version>` (tests/lab/images/litellm/official.yml says where this was read).
RELEASE_TAG = re.compile(
    r"^ghcr\.io/berriai/litellm-non_root:v\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?$"
)


def test_the_default_image_is_the_release_tag_litellm_publishes() -> None:
    role = RoleVars("litellm_proxy", {"inventory_hostname": "gw", "ansible_facts": {}}, {})
    image = role["litellm_proxy_image"]
    assert image == f"ghcr.io/berriai/litellm-non_root:v{role['litellm_proxy_version']}"
    assert RELEASE_TAG.match(image)
    assert filters.litellm_proxy_image_problem(image) == ""


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/berriai/litellm-non_root:v1.108.7",
        "ghcr.io/berriai/litellm-non_root:1.108.7",
        "ghcr.io/berriai/litellm-non_root:v1.108.7@sha256:" + "a" * 64,
        "ghcr.io/berriai/litellm-non_root@sha256:" + "0123456789abcdef" * 4,
        "registry.home.arpa:5000/mirror/litellm-non_root:v1.108.7",
        "llmlab/litellm:a2941b2c8a3a",
    ],
)
def test_release_tags_and_digests_are_pinned(image: str) -> None:
    assert filters.litellm_proxy_image_problem(image) == ""


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("ghcr.io/berriai/litellm", "neither a tag nor a digest"),
        ("ghcr.io/berriai/litellm:latest", "moving tag 'latest'"),
        ("ghcr.io/berriai/litellm:main-latest", "moving tag 'main-latest'"),
        ("ghcr.io/berriai/litellm:main-stable", "moving tag 'main-stable'"),
        ("ghcr.io/berriai/litellm:main-v1.106.2", "scheme up to 1.83"),
        ("ghcr.io/berriai/litellm:v1.83.14-stable", "scheme up to 1.83"),
        ("ghcr.io/berriai/litellm:lts", "moving tag 'lts'"),
        ("Not An Image", "not an image reference"),
        ("", "not an image reference"),
    ],
)
def test_moving_tags_and_nonsense_are_refused(image: str, problem: str) -> None:
    assert problem in filters.litellm_proxy_image_problem(image)


def test_the_pinned_release_is_not_a_refused_one() -> None:
    defaults = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
    assert defaults["litellm_proxy_version"] not in REFUSED
    assert {"1.82.7", "1.82.8", "1.107.0"} <= set(REFUSED)


# Where a LiteLLM version can be written down: a pip pin, the role's version,
# an image tag.
VERSION_MENTIONS = re.compile(
    r"(?:litellm(?:\[[a-z,_-]+\])?\s*==\s*|litellm_proxy_version:\s*\"?|litellm[\w-]*:v?)"
    r"(\d+\.\d+\.\d+)"
)


def test_no_file_of_the_repository_installs_a_refused_release() -> None:
    import subprocess

    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = []
    for name in files:
        path = REPO / name
        if not path.is_file() or path.suffix in (".png", ".tar", ".json"):
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {v}" for v in VERSION_MENTIONS.findall(text) if v in REFUSED]
    assert found == []
