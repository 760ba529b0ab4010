"""The project's vault password, as every script hands it to Ansible (standard library only).

scripts/deploy.py writes the password once, to
~/.config/llm-gateway/vault-password (mode 0600, or LLM_GATEWAY_VAULT_PASSWORD_FILE),
and encrypts group_vars/all/vault.yml with it under the vault id
`llm-gateway`. Giving it to Ansible as `--vault-id llm-gateway@<file>`, not as
`--vault-password-file`, keeps it apart from a password file of the user's
own: Ansible refuses two passwords for the same (default) id, and
ANSIBLE_VAULT_PASSWORD_FILE is one.
"""

from __future__ import annotations

import os
from pathlib import Path

VAULT_ID = "llm-gateway"


def password_file() -> Path:
    return Path(
        os.environ.get(
            "LLM_GATEWAY_VAULT_PASSWORD_FILE",
            Path.home() / ".config" / "llm-gateway" / "vault-password",
        )
    )


def vault_id_args(args: list[str], tool: str = "playbook") -> list[str]:
    """`--vault-id llm-gateway@<file>` when the file exists and the user did not ask
    for the password otherwise; [] else."""
    asked = ("--ask-vault-pass", "--ask-vault-password", "-J")
    if any(a in asked or a.startswith(f"--vault-id={VAULT_ID}@") for a in args):
        return []
    if any(
        a == "--vault-id" and i + 1 < len(args) and args[i + 1].startswith(f"{VAULT_ID}@")
        for i, a in enumerate(args)
    ):
        return []
    if not password_file().is_file():
        return []
    return ["--vault-id", f"{VAULT_ID}@{password_file()}"]
