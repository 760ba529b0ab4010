#!/usr/bin/env python3
"""Run one of Ansible's commands the way scripts/deploy.py does: from the
project's .venv, with the vault password file deploy.py wrote.

    python3 scripts/ansible.py playbook playbooks/smoke.yml
    python3 scripts/ansible.py vault edit group_vars/all/vault.yml
    python3 scripts/ansible.py playbook playbooks/rotate.yml -i inventory/homelab/hosts.yml

The first word names the command (playbook, vault, inventory, ...: the
`ansible-<word>` of .venv/bin); the rest is passed on, and runs in the clone
(where ansible.cfg is), so paths are the clone's. The vault password is
given as the vault id `llm-gateway`, so a vault password file of your own
(ANSIBLE_VAULT_PASSWORD_FILE, --vault-password-file) works next to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.bootstrap import reexec_in_venv  # noqa: E402
from scripts.vault import vault_id_args  # noqa: E402

COMMANDS = ("playbook", "vault", "inventory", "config", "doc", "galaxy", "console")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    reexec_in_venv(REPO / "requirements.txt")
    binary = Path(sys.executable).parent / f"ansible-{argv[0]}"
    args = argv[1:]
    if argv[0] == "vault" and args and not args[0].startswith("-"):
        # ansible-vault takes its options after the action: `vault view --vault-id ...`.
        args = [args[0], *vault_id_args(args[1:], tool="vault"), *args[1:]]
    elif argv[0] in ("playbook", "vault", "inventory", "console"):
        args = [*vault_id_args(args, tool=argv[0]), *args]
    env = {**os.environ, "PATH": f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # From the clone, where ansible.cfg is: paths are the clone's.
    return subprocess.call([str(binary), *args], cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
