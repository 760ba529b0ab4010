"""The lab: four systemd hosts in Docker, converged by Molecule with site.yml.

`prepare()` gets everything the scenario needs (engine, images, the stand-in
Ollama archive) and returns the environment Molecule runs with; `write_env()`
writes `.lab/env`, the one file every test reads to find the lab.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from tests.lab import engine, images
from tests.lab.shell import log, run

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "molecule" / "default"
LAB_DIR = REPO / ".lab"
# Molecule's working folder (inventory, state) at a known place, so that tests
# and `make lab-down` find the lab that `make lab-up` made.
MOLECULE_DIR = LAB_DIR / "molecule"
PORTS = {
    "GATEWAY": int(os.environ.get("LAB_GATEWAY_PORT", "14000")),
    "OLLAMA": int(os.environ.get("LAB_OLLAMA_PORT", "21434")),
    "OLLAMA_BOOKWORM": int(os.environ.get("LAB_OLLAMA_BOOKWORM_PORT", "21435")),
    "EMULATOR": int(os.environ.get("LAB_EMULATOR_PORT", "18080")),
}
HOSTS = ("gateway", "gateway-2", "ollama", "ollama-bookworm", "monitoring", "providers")


def litellm_version() -> str:
    """The one LiteLLM version of the project: the role's default."""
    defaults = yaml.safe_load((REPO / "roles/litellm_proxy/defaults/main.yml").read_text())
    return str(defaults["litellm_proxy_version"])


def ollama_version() -> str:
    lab_vars = SCENARIO / "group_vars" / "ollama" / "lab.yml"
    defaults = yaml.safe_load((REPO / "roles/ollama_host/defaults/main.yml").read_text())
    version = defaults["ollama_host_version"]
    if lab_vars.is_file():
        version = (yaml.safe_load(lab_vars.read_text()) or {}).get("ollama_host_version", version)
    return str(version)


def prepare() -> dict[str, str]:
    """Engine, images and archives; returns the LAB_* variables for Molecule."""
    engine.ensure_engine()
    host = images.host_image()
    bookworm = images.host_image("bookworm")
    litellm = images.service_image("litellm", host, {"LITELLM_VERSION": litellm_version()})
    postgres = images.service_image("postgres", host, {})
    prometheus = images.service_image("prometheus", host, {})
    from tests.lab.ollama_archive import build_archive

    archive_dir = images.cache_dir() / f"ollama-standin-{ollama_version()}"
    build_archive(archive_dir, ollama_version())
    env = {
        "LAB_HOST_IMAGE": host,
        "LAB_BOOKWORM_IMAGE": bookworm,
        "LAB_LITELLM_IMAGE": litellm.ref,
        "LAB_LITELLM_ARCHIVE": str(litellm.archive),
        "LAB_POSTGRES_IMAGE": postgres.ref,
        "LAB_POSTGRES_ARCHIVE": str(postgres.archive),
        "LAB_PROMETHEUS_IMAGE": prometheus.ref,
        "LAB_PROMETHEUS_ARCHIVE": str(prometheus.archive),
        "LAB_OLLAMA_ARCHIVE_DIR": str(archive_dir),
        **{f"LAB_{name}_PORT": str(port) for name, port in PORTS.items()},
    }
    return env


def master_key(venv_bin: Path) -> str:
    """The lab's master key, read from the lab's own (fake, encrypted) vault."""
    out = run(
        [
            str(venv_bin / "ansible-vault"),
            "view",
            "--vault-password-file",
            str(SCENARIO / "vault-password.txt"),
            str(SCENARIO / "group_vars" / "all" / "vault.yml"),
        ],
        capture=True,
    ).stdout
    return str(yaml.safe_load(out)["vault_litellm_master_key"])


def virtual_address() -> str:
    """The gateways' virtual address, as the lab's inventory sets it."""
    group_vars = yaml.safe_load((SCENARIO / "group_vars" / "gateway" / "lab.yml").read_text())
    return group_vars["gateway_vip_address"]


def write_env(venv_bin: Path, images_env: dict[str, str]) -> Path:
    """Write `.lab/env` (shell-sourceable) and `.lab/inventory.yml` for testinfra."""
    LAB_DIR.mkdir(exist_ok=True)
    inventory = LAB_DIR / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {f"llmlab-{h}": {} for h in HOSTS},
                    "vars": {
                        "ansible_connection": "community.docker.docker",
                        "ansible_python_interpreter": "/usr/bin/python3",
                    },
                }
            }
        )
    )
    values = {
        "GATEWAY_URL": f"https://127.0.0.1:{PORTS['GATEWAY']}",
        # The gateways' virtual address (molecule/default/group_vars/gateway), on
        # the lab's network, which this machine is on.
        "GATEWAY_VIP_URL": f"https://{virtual_address()}",
        "GATEWAY_KEY": master_key(venv_bin),
        "EMULATOR_URL": f"http://127.0.0.1:{PORTS['EMULATOR']}",
        "OLLAMA_URL": f"http://127.0.0.1:{PORTS['OLLAMA']}",
        "OLLAMA_BOOKWORM_URL": f"http://127.0.0.1:{PORTS['OLLAMA_BOOKWORM']}",
        "LAB_INVENTORY": str(inventory),
        # The inventory Molecule converged with, for tests that re-run a playbook.
        "LAB_ANSIBLE_INVENTORY": str(MOLECULE_DIR / "inventory"),
        **{k: v for k, v in images_env.items() if k.startswith("LAB_") and not k.endswith("_PORT")},
    }
    env_file = LAB_DIR / "env"
    env_file.write_text(
        "# Written by scripts/lab.py while the lab is up; source it from a shell.\n"
        + "".join(f"export {key}={value}\n" for key, value in values.items())
    )
    env_file.chmod(0o600)
    return env_file


def molecule(venv_bin: Path, action: str, env: dict[str, str]) -> int:
    """Run `molecule <action>` for the default scenario; return its exit code."""
    log(f"molecule {action}")
    full_env = {
        **os.environ,
        **env,
        "MOLECULE_EPHEMERAL_DIRECTORY": str(MOLECULE_DIR),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
    }
    return subprocess.call(
        [str(venv_bin / "molecule"), action, "--scenario-name", "default"],
        cwd=REPO,
        env=full_env,
    )
