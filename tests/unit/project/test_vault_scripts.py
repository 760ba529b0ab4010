"""scripts/deploy.py and scripts/ansible.py hand the vault password to Ansible as
the vault id `llm-gateway`, so that a vault password file of the user's own
(ANSIBLE_VAULT_PASSWORD_FILE, as many Ansible users set) does not clash with
it: Ansible refuses two passwords for its default id ("vault-ids default,default")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.loader import REPO

sys.path.insert(0, str(REPO))
from scripts import vault

VAULT_BIN = Path(sys.executable).parent / "ansible-vault"


@pytest.fixture
def password_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vault-password"
    path.write_text("llmlab-unit-vault-password-not-a-secret\n")
    monkeypatch.setenv("LLM_GATEWAY_VAULT_PASSWORD_FILE", str(path))
    return path


def test_the_password_goes_as_its_own_vault_id(password_file: Path) -> None:
    assert vault.vault_id_args([]) == ["--vault-id", f"llm-gateway@{password_file}"]
    assert vault.vault_id_args(["--ask-vault-pass"]) == []
    assert vault.vault_id_args(["--vault-id", f"llm-gateway@{password_file}"]) == []


def test_nothing_is_added_before_deploy_wrote_the_password(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LLM_GATEWAY_VAULT_PASSWORD_FILE", str(tmp_path / "none"))
    assert vault.vault_id_args([]) == []


def test_a_users_own_vault_password_file_does_not_get_in_the_way(
    password_file: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "vault.yml"
    plain.write_text('vault_litellm_master_key: "sk-llmlab-unit-test-key-not-a-secret-000"\n')
    encrypt = subprocess.run(
        [
            str(VAULT_BIN),
            "encrypt",
            *vault.vault_id_args([]),
            "--encrypt-vault-id",
            "llm-gateway",
            str(plain),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert encrypt.returncode == 0, encrypt.stderr
    assert plain.read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;llm-gateway")
    theirs = tmp_path / "their-own-password"
    theirs.write_text("something else entirely\n")
    env = {**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(theirs)}
    view = subprocess.run(
        [str(VAULT_BIN), "view", *vault.vault_id_args([]), str(plain)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=env,
    )
    assert view.returncode == 0, view.stderr
    assert "sk-llmlab-unit-test-key-not-a-secret-000" in view.stdout


def test_the_readmes_line_reads_the_house_key_out_of_a_generated_vault(
    password_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vault deploy.py writes on a first run, read back with the README's own
    line (`scripts/ansible.py vault view ... | sed ...`): it prints the house's key."""
    from scripts import deploy

    readme = (REPO / "README.md").read_text()
    (line,) = [x for x in readme.splitlines() if x.startswith("KEY=$(python3 scripts/ansible.py")]
    command = line[len("KEY=$(") : -1].replace(
        "group_vars/all/vault.yml", str(tmp_path / "vault.yml")
    )
    monkeypatch.setattr(deploy, "REPO", tmp_path)
    monkeypatch.setattr(deploy, "VAULT", tmp_path / "vault.yml")
    monkeypatch.setattr(deploy, "PASSWORD_FILE", password_file)
    deploy.ensure_vault(Path(sys.executable).parent)
    env = {**os.environ, "LLM_GATEWAY_VENV": str(Path(sys.executable).parent.parent)}
    read = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, check=False, cwd=REPO, env=env
    )
    assert read.returncode == 0, read.stderr
    key = read.stdout.strip()
    assert key.startswith("sk-") and len(key) >= 32, (read.stdout, read.stderr)


def test_a_secret_a_newer_release_adds_is_generated_into_an_existing_vault(
    password_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vault made from an older example (without the shared state's passwords)
    gets them on the next deploy, generated and different; every value it had
    stays, and a run after that changes nothing."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    from scripts import deploy

    example = (REPO / "group_vars/all/vault.yml.example").read_text()
    older = tmp_path / "vault.yml.example.older"
    older.write_text(
        "\n".join(x for x in example.splitlines() if not x.startswith("vault_gateway_state"))
    )
    monkeypatch.setattr(deploy, "REPO", tmp_path)
    monkeypatch.setattr(deploy, "VAULT", tmp_path / "vault.yml")
    monkeypatch.setattr(deploy, "PASSWORD_FILE", password_file)
    monkeypatch.setattr(deploy, "VAULT_EXAMPLE", older)
    bin_dir = Path(sys.executable).parent
    deploy.ensure_vault(bin_dir)
    vault = VaultLib([("llm-gateway", VaultSecret(password_file.read_bytes().strip()))])

    def values() -> dict:
        import yaml

        return yaml.safe_load(vault.decrypt((tmp_path / "vault.yml").read_bytes()))

    before = values()
    assert not [name for name in before if name.startswith("vault_gateway_state")]

    def deploy_again() -> None:
        """add_new_secrets as `python3 scripts/deploy.py` runs it: with scripts/
        first on sys.path, where scripts/ansible.py would shadow Ansible."""
        driver = (
            "import sys; from pathlib import Path\n"
            f"sys.path.insert(0, {str(REPO / 'scripts')!r})\n"
            "import deploy\n"
            f"deploy.REPO = Path({str(tmp_path)!r})\n"
            f"deploy.VAULT = Path({str(tmp_path / 'vault.yml')!r})\n"
            f"deploy.PASSWORD_FILE = Path({str(password_file)!r})\n"
            f"deploy.VAULT_EXAMPLE = Path({str(REPO / 'group_vars/all/vault.yml.example')!r})\n"
            f"deploy.add_new_secrets(Path({str(bin_dir)!r}))\n"
        )
        run = subprocess.run(
            [sys.executable, "-c", driver], capture_output=True, text=True, check=False
        )
        assert run.returncode == 0, run.stderr

    deploy_again()
    after = values()
    added = [after.pop(f"vault_gateway_state_{name}") for name in ("password", "admin_password")]
    assert all(len(value) >= 24 and "CHANGE-ME" not in value for value in added)
    assert added[0] != added[1]
    assert after == before
    assert oct((tmp_path / "vault.yml").stat().st_mode & 0o777) == "0o600"
    sealed = (tmp_path / "vault.yml").read_bytes()
    deploy_again()
    assert (tmp_path / "vault.yml").read_bytes() == sealed
