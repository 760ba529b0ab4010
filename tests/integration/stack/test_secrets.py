"""No secret leaks: not in Ansible's output (even at -vvv), not in any file the
roles write that another user could read, not in the rendered configs.

Real: the roles' files on the lab's hosts and a real -vvv run of the playbooks
that hand the hosts their secrets. The secrets are the lab vault's obviously fake values.
"""

from __future__ import annotations

import pytest

from tests.support.lab_client import changed_hosts, run_playbook

# Every file and folder the roles write on the hosts, by host.
WRITTEN = {
    "gateway": ["/opt/litellm-proxy", "/etc/haproxy", "/etc/litellm-proxy"],
    "ollama": [
        "/etc/systemd/system/ollama.service",
        "/etc/systemd/system/ollama.service.d",
        "/etc/nftables.d",
        "/etc/profile.d/ollama-host.sh",
    ],
    "monitoring": ["/opt/monitoring", "/etc/default/prometheus-node-exporter"],
}


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_files_holding_a_secret_are_root_only(
    name: str, hosts: dict, lab_secrets: list[str]
) -> None:
    host = hosts[name]
    paths = " ".join(WRITTEN[name])
    files = host.run(f"find {paths} -xdev -type f 2>/dev/null").stdout.split()
    assert files, f"nothing found under {paths} on {name}"
    for path in files:
        read = host.run("head -c 2000000 -- %s", path)
        if read.rc != 0 and not host.file(path).exists:
            continue  # a spool segment the ledger moved to Postgres since the listing
        assert read.rc == 0, read.stderr
        leaked = [s for s in lab_secrets if s.encode() in read.stdout_bytes]
        if not leaked:
            continue
        mode = host.file(path).mode
        assert host.file(path).user == "root", f"{path} holds a secret and is not root's"
        assert mode & 0o007 == 0, f"{path} holds a secret and others may read it ({oct(mode)})"
        assert not path.endswith((".yaml", ".yml", ".cfg")), f"{path}: a config holds a secret"


# Every playbook that hands a secret to a host, in one run (one start of
# Ansible, and site.yml's order).
WITH_SECRETS = ["playbooks/state.yml", "playbooks/gateway.yml", "playbooks/monitoring.yml"]


def test_verbose_converge_prints_no_secret(lab: dict[str, str], lab_secrets: list[str]) -> None:
    run = run_playbook(lab, WITH_SECRETS, None, "-vvv")
    assert run.returncode == 0, run.stdout[-2000:]
    log = run.stdout + run.stderr
    assert changed_hosts(run.stdout) == {}, "the verbose run should also be idempotent"
    leaked = [s[:6] + "..." for s in lab_secrets if s in log]
    assert not leaked, f"secrets in the -vvv log: {leaked}"
