"""The lab's stand-in LiteLLM image has every property of the official image
that the role relies on (tests/lab/images/litellm/official.yml, which cites
where each was read), and not the ones the official image lacks.

Real: the stand-in image, built here from Debian's archive and PyPI (no
registry carries the official one), inspected with `docker image inspect` and
run with `docker run`.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
import yaml

from tests.support.loader import REPO

OFFICIAL = yaml.safe_load((REPO / "tests/lab/images/litellm/official.yml").read_text())
PROPERTIES = OFFICIAL["properties"]


@pytest.fixture(scope="module")
def litellm_image() -> str:
    if os.environ.get("LAB_LITELLM_IMAGE"):
        return os.environ["LAB_LITELLM_IMAGE"]
    from tests.lab import images, lab

    host = images.host_image()
    return images.service_image("litellm", host, {"LITELLM_VERSION": lab.litellm_version()}).ref


@pytest.fixture(scope="module")
def litellm_image_config(litellm_image: str) -> dict[str, Any]:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config}}", litellm_image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def shell(image: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_stand_in_is_what_the_role_deploys_by_default() -> None:
    defaults = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
    assert defaults["litellm_proxy_image"].startswith(OFFICIAL["image"] + ":")
    assert PROPERTIES["python_packages"]["value"]["litellm"] == defaults["litellm_proxy_version"]


def test_user_workdir_entrypoint_and_command_are_the_official_ones(
    litellm_image_config: dict[str, Any],
) -> None:
    config = litellm_image_config
    assert config["User"].split(":")[0] == PROPERTIES["user"]["value"]
    assert config["WorkingDir"] == PROPERTIES["workdir"]["value"]
    assert config["Entrypoint"] == PROPERTIES["entrypoint"]["value"]
    assert config["Cmd"] == PROPERTIES["cmd"]["value"]
    assert f"{PROPERTIES['exposed_port']}/tcp" in (config.get("ExposedPorts") or {})
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["HOME"] == PROPERTIES["home"]["value"]
    assert env["PATH"].split(":")[0] == f"{PROPERTIES['venv']['value']}/bin"


def test_commands_it_has_and_lacks(litellm_image: str) -> None:
    present = " ".join(PROPERTIES["commands_present"]["value"])
    found = shell(litellm_image, f"for c in {present}; do command -v $c || echo missing $c; done")
    assert found.returncode == 0, found.stderr
    assert "missing" not in found.stdout, found.stdout
    for command in PROPERTIES["commands_absent"]["value"]:
        absent = shell(litellm_image, f"command -v {command}")
        assert absent.returncode != 0, f"{command} is in the stand-in: {absent.stdout}"


def test_the_entrypoint_hands_the_command_to_litellm(litellm_image: str) -> None:
    answer = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", litellm_image, "--version"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    version = PROPERTIES["python_packages"]["value"]["litellm"]
    assert version in answer.stdout + answer.stderr, answer.stdout + answer.stderr


def test_the_python_packages_the_role_relies_on_are_there(litellm_image: str) -> None:
    wanted = sorted(PROPERTIES["python_packages"]["value"])
    script = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    answer = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "python3",
            litellm_image,
            "-c",
            script,
            *wanted,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    versions = json.loads(answer.stdout)
    assert versions["litellm"] == PROPERTIES["python_packages"]["value"]["litellm"]
    assert versions["opentelemetry-sdk"] == "1.45.1"
    assert versions["psycopg"].startswith("3.")
    modules = "psycopg, prometheus_client, prisma, opentelemetry.sdk, redis.asyncio"
    imports = shell(litellm_image, f"python3 -c 'import {modules}'")
    assert imports.returncode == 0, imports.stderr
