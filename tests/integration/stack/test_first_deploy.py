"""The README's first command on a fresh machine: `python3 scripts/deploy.py`, as
written, as root, in a clone, with nothing but the documented settings for an
offline network passed in; then the README's next step, the smoke playbook;
then a completion with the key the command generated; a second run changes
nothing.

Real: a fresh Debian 13 host with systemd (a container of the lab's network
that no playbook has touched), the project's own scripts creating .venv from
PyPI, installing Docker and Compose from Debian, and deploying the whole
all-in-one stack (gateway, Ollama, monitoring) with the all-in-one inventory.
Stand-ins, as everywhere in the lab: the images (the lab's stand-in LiteLLM,
Postgres and Prometheus images, saved under the official images' names, as an
offline user saves the real ones: the documented `*_image_archive` settings),
and the Ollama server (the stand-in archive on the lab's mirror: the
documented `ollama_host_archive_*` settings). Lab only: Grafana is off (no
registry or package here carries it), and the host gets the Docker drop-in
every lab host needs (ENVIRONMENT: nested Docker and IPv6).

The host is made and deployed twice in a thread started when the session
starts (`start_in_background`, called by tests/integration/conftest.py): that
takes minutes on a host no other test touches, and the lab's other tests run
meanwhile. The tests below wait for it, then check what it did.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.lab_client import changed_hosts, flat, play_recap

REPO = Path(__file__).resolve().parents[3]
NAME = "llmlab-allinone"
ADDRESS = "172.30.77.20"
CLONE = "/root/llm-gateway"
IMAGES = "/srv/images"
DEFAULTS = {
    role: yaml.safe_load((REPO / f"roles/{role}/defaults/main.yml").read_text())
    for role in ("litellm_proxy", "monitoring")
}


def docker(*args: str, timeout: int = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def inside(script: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run a shell line as root on the fresh host, in the clone."""
    return docker("exec", NAME, "sh", "-c", f"cd {CLONE} && {script}", timeout=timeout)


def save_as(archive: Path, image: str, *names: str) -> Path:
    """A `docker save` archive of `image` under the official `names`, as an offline
    user makes one from the real images; cached by what it holds."""
    if not archive.is_file():
        for name in names:
            assert docker("tag", image, name).returncode == 0
        saved = docker("save", "-o", str(archive.with_suffix(".partial")), *names)
        assert saved.returncode == 0, saved.stderr
        archive.with_suffix(".partial").rename(archive)
    return archive


def make_fresh_host(lab: dict[str, str]) -> None:
    """A Debian host that no playbook has touched, holding a clone and the offline
    settings; removed by FirstDeploy.close."""
    docker("rm", "-f", NAME)
    created = docker(
        "run", "-d", "--name", NAME, "--hostname", "allinone", "--cgroupns", "host",
        "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "SYS_PTRACE",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--tmpfs", "/run", "--tmpfs", "/run/lock",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "-v", "/var/lib/docker",
        "--network", "llmlab", "--ip", ADDRESS,
        lab["LAB_HOST_IMAGE"], "/lib/systemd/systemd",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    deadline = time.monotonic() + 120
    while docker("exec", NAME, "systemctl", "is-system-running").stdout.strip() not in (
        "running",
        "degraded",
    ):
        assert time.monotonic() < deadline, "systemd did not finish booting on the fresh host"
        time.sleep(1)
    # The lab's hosts are containers: nested Docker needs this (never a real host).
    dropin = "[Service]\nEnvironment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\n"
    docker("exec", NAME, "mkdir", "-p", "/etc/systemd/system/docker.service.d", CLONE, IMAGES)
    dropin_file = "/etc/systemd/system/docker.service.d/lab.conf"
    docker("exec", "-i", NAME, "sh", "-c", f"cat > {dropin_file}", input=dropin)
    # A clone: the files git has (a fresh clone has nothing else).
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    tar = subprocess.Popen(
        ["tar", "-C", str(REPO), "--null", "-T", "-", "-cf", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    untar = subprocess.Popen(
        ["docker", "exec", "-i", NAME, "tar", "-C", CLONE, "-xf", "-"], stdin=tar.stdout
    )
    assert tar.stdin is not None
    tar.stdin.write(files)
    tar.stdin.close()
    assert untar.wait(timeout=300) == 0 and tar.wait(timeout=300) == 0
    # HTTPS to PyPI from a container needs the machine's CA bundle (pip's PIP_CERT).
    docker("cp", "/etc/ssl/certs/ca-certificates.crt", f"{NAME}:/root/ca-bundle.crt")
    archives = {
        "litellm": save_as(
            Path(lab["LAB_LITELLM_ARCHIVE"]).with_name("allinone-litellm.tar"),
            lab["LAB_LITELLM_IMAGE"],
            DEFAULTS["litellm_proxy"]["litellm_proxy_image"].replace(
                "{{ litellm_proxy_version }}",
                DEFAULTS["litellm_proxy"]["litellm_proxy_version"],
            ),
        ),
        "postgres": save_as(
            Path(lab["LAB_POSTGRES_ARCHIVE"]).with_name("allinone-postgres.tar"),
            lab["LAB_POSTGRES_IMAGE"],
            DEFAULTS["litellm_proxy"]["litellm_proxy_postgres_image"],
        ),
        "prometheus": save_as(
            Path(lab["LAB_PROMETHEUS_ARCHIVE"]).with_name("allinone-prometheus.tar"),
            lab["LAB_PROMETHEUS_IMAGE"],
            DEFAULTS["monitoring"]["monitoring_prometheus_image"],
            DEFAULTS["monitoring"]["monitoring_alertmanager_image"],
        ),
    }
    for name, archive in archives.items():
        copied = docker("cp", str(archive), f"{NAME}:{IMAGES}/{name}.tar", timeout=900)
        assert copied.returncode == 0, copied.stderr
    offline = {
        "litellm_proxy_image_archive": f"{IMAGES}/litellm.tar",
        "litellm_proxy_postgres_image_archive": f"{IMAGES}/postgres.tar",
        "monitoring_prometheus_image_archive": f"{IMAGES}/prometheus.tar",
        "monitoring_alertmanager_image_archive": f"{IMAGES}/prometheus.tar",
        "ollama_host_archive_url": "http://172.30.77.13:8081/ollama-linux-amd64.tar.zst",
        "ollama_host_archive_checksum": "sha256:http://172.30.77.13:8081/sha256sum.txt",
        # Lab only: no registry or package here carries Grafana's server.
        "monitoring_grafana_enabled": False,
    }
    docker("exec", "-i", NAME, "sh", "-c", "cat > /root/offline.yml",
           input=yaml.safe_dump(offline))  # fmt: skip


DEPLOY = "PIP_CERT=/root/ca-bundle.crt python3 scripts/deploy.py -e @/root/offline.yml"


class FirstDeploy:
    """The fresh host made, then the README's first command run on it twice."""

    def __init__(self, lab: dict[str, str]) -> None:
        self.first: subprocess.CompletedProcess[str] | None = None
        self.second: subprocess.CompletedProcess[str] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(lab,), name=NAME, daemon=True)
        self._thread.start()

    def _run(self, lab: dict[str, str]) -> None:
        try:
            make_fresh_host(lab)
            self.first = inside(DEPLOY, timeout=2400)
            if self.first.returncode == 0:
                self.second = inside(DEPLOY, timeout=1800)
        except BaseException as error:  # raised again in the tests (wait)
            self._error = error

    def wait(self) -> FirstDeploy:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self

    def close(self) -> None:
        # Removing the host also ends a deploy still running in it.
        docker("rm", "-f", NAME, timeout=300)
        self._thread.join(timeout=120)


def start_in_background(lab: dict[str, str]) -> FirstDeploy:
    return FirstDeploy(lab)


@pytest.fixture(scope="module", autouse=True)
def _host_removed_after_the_tests(background: dict[str, FirstDeploy]) -> Iterator[None]:
    yield
    background[__name__].close()


@pytest.fixture(scope="module")
def first_deploy(background: dict[str, FirstDeploy]) -> subprocess.CompletedProcess[str]:
    deployed = background[__name__].wait()
    assert deployed.first is not None
    return deployed.first


@pytest.fixture(scope="module")
def second_deploy(background: dict[str, FirstDeploy]) -> subprocess.CompletedProcess[str]:
    deployed = background[__name__].wait()
    assert deployed.second is not None, "the first deploy failed: no second run"
    return deployed.second


def test_the_readmes_first_command_deploys_the_stack(
    first_deploy: subprocess.CompletedProcess[str],
) -> None:
    output = first_deploy.stdout + first_deploy.stderr
    assert first_deploy.returncode == 0, output[-4000:]
    recap = play_recap(first_deploy.stdout)
    assert recap["localhost"]["failed"] == 0 and recap["localhost"]["unreachable"] == 0
    assert "created group_vars/all/vault.yml with a new master key" in output
    mode = inside("stat -c %a group_vars/all/vault.yml ~/.config/llm-gateway/vault-password")
    assert mode.stdout.split() == ["600", "600"], mode.stdout


def test_the_readmes_smoke_playbook_then_passes(
    first_deploy: subprocess.CompletedProcess[str],
) -> None:
    assert first_deploy.returncode == 0
    smoke = inside("python3 scripts/ansible.py playbook playbooks/smoke.yml", timeout=900)
    assert smoke.returncode == 0, (smoke.stdout + smoke.stderr)[-4000:]
    out = flat(smoke.stdout)
    for name in ("cheap", "embed", "llama3.2:3b", "nomic-embed-text"):
        assert f"{name} " in out, name


def test_the_key_the_readme_reads_gets_a_completion(
    first_deploy: subprocess.CompletedProcess[str],
) -> None:
    """The README's own line reads the house's key out of the vault; with it, a
    completion through the TLS front (Python's urllib: a minimal Debian has no curl)."""
    assert first_deploy.returncode == 0
    readme = (REPO / "README.md").read_text()
    (line,) = [x for x in readme.splitlines() if x.startswith("KEY=$(python3 scripts/ansible.py")]
    read_key = inside(f"{line[len('KEY=$(') : -1]}")
    assert read_key.returncode == 0, read_key.stderr
    key = read_key.stdout.strip()
    assert key.startswith("sk-") and len(key) >= 32
    body = {"model": "cheap", "messages": [{"role": "user", "content": "Hello"}]}
    request = (
        "import json, ssl, sys, urllib.request\n"
        "ctx = ssl.create_default_context(cafile='/etc/litellm-proxy/tls/ca.crt')\n"
        "headers = {'Authorization': 'Bearer ' + sys.stdin.read().strip(),\n"
        "           'Content-Type': 'application/json'}\n"
        f"r = urllib.request.Request('https://{ADDRESS}/v1/chat/completions',\n"
        f"                           data={json.dumps(body)!r}.encode(), headers=headers)\n"
        "print(urllib.request.urlopen(r, context=ctx, timeout=60).read().decode())\n"
    )
    answer = docker("exec", "-i", NAME, "python3", "-c", request, input=key)
    assert answer.returncode == 0, answer.stderr[-2000:]
    reply = json.loads(answer.stdout)
    assert reply["choices"][0]["message"]["content"].startswith(
        "emulated reply from ollama model llama3.2:3b"
    )


def test_a_second_run_changes_nothing(second_deploy: subprocess.CompletedProcess[str]) -> None:
    again = second_deploy
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert changed_hosts(again.stdout) == {}, shlex.quote(again.stdout[-3000:])
