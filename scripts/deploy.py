#!/usr/bin/env python3
"""Deploy the whole stack on this machine, as root: `python3 scripts/deploy.py`.

1. Creates .venv with the pinned requirements (Ansible and its collections).
2. On first run, creates group_vars/all/vault.yml from the example with a
   generated master key, encrypted with ansible-vault; the vault password is
   kept in ~/.config/llm-gateway/vault-password (mode 0600). The vault file is
   git-ignored and mode 0600. Cloud keys stay empty until you add them with
   `ansible-vault edit group_vars/all/vault.yml`; the gateway still comes up
   and serves the Ollama models. On later runs, a secret that a newer
   release added to the example (say, the shared state's password) and that
   the vault lacks is generated and added the same way, the rest untouched.
3. Runs `ansible-playbook site.yml` with the inventory from ansible.cfg (the
   all-in-one `inventory/local`), passing on any extra arguments, e.g.
   `python3 scripts/deploy.py -i inventory/homelab/hosts.yml --check`.

Every other Ansible command, with the same .venv and vault password:
`python3 scripts/ansible.py playbook playbooks/smoke.yml`,
`python3 scripts/ansible.py vault edit group_vars/all/vault.yml`.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.bootstrap import reexec_in_venv  # noqa: E402
from scripts.vault import VAULT_ID, password_file, vault_id_args  # noqa: E402

VAULT = REPO / "group_vars" / "all" / "vault.yml"
VAULT_EXAMPLE = REPO / "group_vars" / "all" / "vault.yml.example"
PASSWORD_FILE = password_file()


def _say(message: str) -> None:
    print(f"[deploy] {message}", file=sys.stderr, flush=True)


def ensure_password_file() -> None:
    if PASSWORD_FILE.is_file():
        return
    PASSWORD_FILE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    _say(f"created the vault password file {PASSWORD_FILE} (mode 0600)")


PLACEHOLDER = r'"(sk-)?CHANGE-ME[^"]*"'


def _generated(match: re.Match[str]) -> str:
    """A fresh value for one placeholder; "sk-" ones stay API-key shaped."""
    return f'"{match.group(1) or ""}{secrets.token_urlsafe(32 if match.group(1) else 24)}"'


def _encrypt(bin_dir: Path, text: str) -> None:
    """Write `text` to the vault, encrypted, mode 0600; the old vault is replaced
    only once the new one is whole."""
    sealed = VAULT.with_name(VAULT.name + ".new")
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "vault.yml"
        plain.touch(mode=0o600)
        plain.write_text(text)
        subprocess.run(
            [
                str(bin_dir / "ansible-vault"),
                "encrypt",
                "--vault-id",
                f"{VAULT_ID}@{PASSWORD_FILE}",
                "--encrypt-vault-id",
                VAULT_ID,
                "--output",
                str(sealed),
                str(plain),
            ],
            check=True,
            cwd=REPO,
        )
    sealed.chmod(0o600)
    sealed.replace(VAULT)


def missing_placeholders(vault_text: str, example_text: str) -> list[str]:
    """The example's top-level `name: "CHANGE-ME..."` lines whose name the vault lacks."""
    present = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):", vault_text, flags=re.MULTILINE))
    return [
        line
        for line in example_text.splitlines()
        if (m := re.match(rf"^([A-Za-z_][A-Za-z0-9_]*): {PLACEHOLDER}\s*$", line))
        and m.group(1) not in present
    ]


def add_new_secrets(bin_dir: Path) -> None:
    """Later runs: generate the secrets a newer release added to the example."""
    if not (VAULT.is_file() and PASSWORD_FILE.is_file()):
        return
    # ansible-vault itself, not Ansible's Python: run as a script, this file's
    # folder comes first on sys.path, and its scripts/ansible.py is `ansible`.
    view = subprocess.run(
        [
            str(bin_dir / "ansible-vault"),
            "view",
            "--vault-id",
            f"{VAULT_ID}@{PASSWORD_FILE}",
            str(VAULT),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, "PAGER": "cat"},
    )
    if view.returncode != 0:  # a vault of the user's own password: theirs to edit
        _say(f"{VAULT.relative_to(REPO)} is not under {PASSWORD_FILE}; new secrets not added")
        return
    text = view.stdout
    lines = missing_placeholders(text, VAULT_EXAMPLE.read_text())
    if not lines:
        return
    added = [re.sub(PLACEHOLDER, _generated, line) for line in lines]
    note = "\n\n# Added by scripts/deploy.py for a newer release:\n"
    _encrypt(bin_dir, text.rstrip("\n") + note + "\n".join(added) + "\n")
    names = ", ".join(line.split(":", 1)[0] for line in lines)
    _say(f"added {names} to {VAULT.relative_to(REPO)}, generated (encrypted, mode 0600)")


def ensure_vault(bin_dir: Path) -> None:
    """First run: a vault with a generated master key and
    database password, encrypted, mode 0600."""
    if VAULT.exists():
        return
    ensure_password_file()
    _encrypt(bin_dir, re.sub(PLACEHOLDER, _generated, VAULT_EXAMPLE.read_text()))
    _say(f"created {VAULT.relative_to(REPO)} with a new master key (encrypted, mode 0600)")
    _say("read it with: python3 scripts/ansible.py vault view group_vars/all/vault.yml")


def main() -> int:
    reexec_in_venv(REPO / "requirements.txt")
    bin_dir = Path(sys.executable).parent
    ensure_vault(bin_dir)
    add_new_secrets(bin_dir)
    argv = [str(bin_dir / "ansible-playbook"), "site.yml", *vault_id_args(sys.argv[1:])]
    argv += sys.argv[1:]
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    _say(" ".join(argv))
    return subprocess.call(argv, cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main())
