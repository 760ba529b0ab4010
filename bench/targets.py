"""The three things the benchmark measures, and where they run.

- ``floor``: the provider emulator called directly (tests/emulator/provider_emulator.py);
- ``shipped``: LiteLLM as its docs ship it, ``litellm --config config.yaml`` with its
  defaults (one worker, default logging), one model pointing at the emulator;
- ``gateway``: this project's deployment, HTTPS through HAProxy with the master key.

An `Environment` starts and stops them, reads the resident memory and the CPU
time of a proxy, and drives the emulator's control API. `LocalEnvironment` runs floor and shipped
as processes on 127.0.0.1 (for developing the benchmark anywhere); `LabEnvironment`
uses the running Molecule lab (``make lab-up``), reached on its own addresses.

LiteLLM 1.106 refuses to start without a strong master key (even the ``sk-1234``
of its docs), so ``shipped`` gets one in ``general_settings``, like the gateway.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.load import check_allowed_url

REPO = Path(__file__).resolve().parents[1]
EMULATOR_SCRIPT = REPO / "tests" / "emulator" / "provider_emulator.py"
MODEL = "gpt-4o-mini"
# What the emulator wants as a key (any non-empty one); nothing real.
FAKE_PROVIDER_KEY = "sk-bench-not-a-real-key"
# The master key `shipped` must have to start at all (see the module docstring).
SHIPPED_MASTER_KEY = "sk-bench-shipped-7d3f0a9c2e61b845"
READY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Target:
    """An OpenAI-compatible chat-completions endpoint and the headers it needs."""

    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    model: str = MODEL


def shipped_config(api_base: str) -> str:
    """LiteLLM's config for `shipped`: one model on the emulator, nothing else set.

    JSON is YAML, so LiteLLM reads it as it is.
    """
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": api_base,
                    "api_key": FAKE_PROVIDER_KEY,
                },
            }
        ],
        "general_settings": {"master_key": SHIPPED_MASTER_KEY},
    }
    return json.dumps(config, indent=2) + "\n"


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a shell env file (``export`` and quotes allowed, # comments)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        line = line.removeprefix("export ").strip()
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def sum_rss_kib(ps_output: str) -> int:
    """Sum the last column, RSS in KiB, of ``docker top C -eo pid,rss`` (docker top
    insists on a PID column) or ``ps -o rss``; the header is skipped."""
    lines = [line.split() for line in ps_output.splitlines()]
    return sum(int(words[-1]) for words in lines if words and words[-1].isdigit())


def _proc_tree_sum(root_pid: int, proc: Path, read: Callable[[Path], tuple[int, int]]) -> int:
    """Sum ``read(/proc/PID)``'s value over a process and all its descendants;
    ``read`` gives (parent pid, value) and may raise OSError for a process gone."""
    children: dict[int, list[int]] = {}
    values: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid, value = read(entry)
        except OSError:
            continue  # gone meanwhile
        pid = int(entry.name)
        children.setdefault(ppid, []).append(pid)
        values[pid] = value
    total, pending = 0, [root_pid]
    while pending:
        pid = pending.pop()
        total += values.get(pid, 0)
        pending.extend(children.get(pid, []))
    return total


def _status_rss_kib(entry: Path) -> tuple[int, int]:
    status = (entry / "status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields.get("PPid", "0").strip()), int(fields.get("VmRSS", "0 kB").split()[0])


def proc_tree_rss_kib(root_pid: int, proc: Path = Path("/proc")) -> int:
    """Resident memory of a process and all its descendants, from /proc (KiB)."""
    return _proc_tree_sum(root_pid, proc, _status_rss_kib)


def cgroup_counters(proc_cgroup: str) -> dict[str, tuple[str, str]]:
    """Where the cgroup of a process (its ``/proc/PID/cgroup``) counts CPU and memory:
    ``{"cpu": (file, field), "memory": (file, field)}``. With cgroup v2 those are
    ``cpu.stat``'s usage_usec and ``memory.stat``'s anon; on a v1 (or hybrid) host,
    where the v2 tree has no controllers, ``cpuacct.usage`` (ns) and ``memory.stat``'s
    total_rss. Both count every process the container held, replaced workers too,
    and each memory page once however many forked workers share it."""
    v1: dict[str, str] = {}
    v2 = None
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.strip().split(":", 2)
        if controllers:
            v1.update(dict.fromkeys(controllers.split(","), path))
        else:
            v2 = path
    if "cpuacct" in v1 and "memory" in v1:
        return {
            "cpu": (f"/sys/fs/cgroup/cpuacct{v1['cpuacct']}/cpuacct.usage", ""),
            "memory": (f"/sys/fs/cgroup/memory{v1['memory']}/memory.stat", "total_rss"),
        }
    if v2 is None:
        raise ValueError(f"no cgroup with CPU and memory counters in {proc_cgroup[:200]!r}")
    folder = "/sys/fs/cgroup" + v2.rstrip("/")
    return {
        "cpu": (f"{folder}/cpu.stat", "usage_usec"),
        "memory": (f"{folder}/memory.stat", "anon"),
    }


def counter_value(text: str, field: str) -> int:
    """A counter from a cgroup file: the ``field`` line of a stat file, or the file's
    only number when ``field`` is empty."""
    if not field:
        return int(text.strip())
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == field:
            return int(value)
    raise ValueError(f"no {field} in {text[:200]!r}")


def cpu_usec_of(counters: dict[str, tuple[str, str]], text: str) -> int:
    """CPU time in microseconds from the cpu counter's file (v1 counts nanoseconds)."""
    value = counter_value(text, counters["cpu"][1])
    return value if counters["cpu"][1] else value // 1000


def stat_cpu_ticks(stat: str) -> tuple[int, int]:
    """(parent pid, utime + stime + cutime + cstime) of a ``/proc/PID/stat`` line."""
    # The command name is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]), sum(int(fields[i]) for i in (11, 12, 13, 14))


def proc_tree_cpu_usec(root_pid: int, proc: Path = Path("/proc")) -> int:
    """CPU time (microseconds) of a process and its live descendants, with what they reaped
    (utime, stime, cutime and cstime of /proc/PID/stat)."""
    ticks = _proc_tree_sum(
        root_pid, proc, lambda entry: stat_cpu_ticks((entry / "stat").read_text())
    )
    return ticks * 1_000_000 // os.sysconf("SC_CLK_TCK")


def http_request(method: str, url: str, body: Any = None, timeout_s: float = 10.0) -> bytes:
    """A small request (JSON body) to the emulator's control API or a health endpoint."""
    check_allowed_url(url)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (checked above)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        return bytes(response.read())


def wait_until_ready(url: str, timeout_s: float, alive: Any = None) -> None:
    """Poll ``url`` until it answers 200; ``alive()`` returning False aborts early."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"the process behind {url} exited before it was ready")
        try:
            http_request("GET", url, timeout_s=5)
            return
        except (urllib.error.URLError, OSError):
            time.sleep(1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Environment(ABC):
    """Where the targets run: start/stop them, read memory, drive the emulator."""

    kind = ""
    emulator_url = ""  # base URL of the emulator (control API and floor)

    def __enter__(self) -> Environment:
        self.setup()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def setup(self) -> None:
        """Make the emulator reachable (start it, or check that the lab's answers)."""

    @abstractmethod
    def available(self) -> dict[str, str | None]:
        """Each target name -> None if it can run here, else why not."""

    def floor(self) -> Target:
        """The emulator called directly: what no proxy can beat."""
        return Target(
            "floor",
            f"{self.emulator_url}/v1/chat/completions",
            {"Authorization": f"Bearer {FAKE_PROVIDER_KEY}"},
        )

    @abstractmethod
    def start(self, name: str) -> Target:
        """Bring up target ``name`` (if it is not already up) and return its endpoint."""

    @abstractmethod
    def stop(self, name: str) -> None:
        """Take down what `start` brought up; a no-op for what was already running."""

    @abstractmethod
    def memory_kib(self, name: str) -> int | None:
        """Resident memory of the target's proxy (all its processes), None for no proxy."""

    def anon_memory_kib(self, name: str) -> int | None:
        """The proxy's anonymous memory counted once (its cgroup's), None where unknown."""
        return None

    @abstractmethod
    def cpu_usec(self, name: str) -> dict[str, int]:
        """CPU time (microseconds) used so far by the target's proxy, and for the gateway by its
        TLS front; empty for no proxy. Differences of two readings are what counts."""

    @abstractmethod
    def close(self) -> None:
        """Stop everything this environment started and reset the emulator."""

    def failover_target(self) -> tuple[Target | None, str]:
        """The gateway asked for the `balanced` alias, or None and why not."""
        return None, f"no gateway in the {self.kind} environment"

    def stop_ollama_host(self) -> None:
        """Stop the preferred Ollama host's server (the one `local_targets` asks)."""
        raise NotImplementedError(f"no Ollama host in the {self.kind} environment")

    def start_ollama_host(self) -> None:
        """Start it again and wait until it answers."""
        raise NotImplementedError(f"no Ollama host in the {self.kind} environment")

    def local_targets(self) -> tuple[Target | None, Target | None, str]:
        """An Ollama host's own chat API and the gateway asked for the same model by
        name (what a chat page on a local model goes through), or Nones and why not."""
        return None, None, f"no gateway or Ollama host in the {self.kind} environment"

    def cooldown_s(self) -> float:
        """How long the gateway keeps a failed deployment out."""
        return 0.0

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "emulator_url": self.emulator_url}

    # The emulator's control API (tests/emulator/provider_emulator.py).
    def set_provider(self, provider: str, mode: str = "ok", latency_ms: int = 0) -> None:
        state = {"mode": mode, "latency_ms": latency_ms}
        http_request("PUT", f"{self.emulator_url}/_control/{provider}", state)

    def reset_emulator(self) -> None:
        http_request("DELETE", f"{self.emulator_url}/_control")


class LocalEnvironment(Environment):
    """floor and shipped as processes on 127.0.0.1; no gateway (it needs the lab)."""

    kind = "local"

    def __init__(self, workdir: Path, venv_bin: Path) -> None:
        self.workdir = workdir
        self.venv_bin = venv_bin
        self._emulator: subprocess.Popen[bytes] | None = None
        self._shipped: subprocess.Popen[bytes] | None = None
        self._shipped_port = 0

    def setup(self) -> None:
        port = free_port()
        self.emulator_url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, str(EMULATOR_SCRIPT), "--listen", "127.0.0.1", "--port", str(port)]
        self._emulator = self._spawn([*argv, "--quiet"], "emulator.log", {})
        emulator = self._emulator
        wait_until_ready(f"{self.emulator_url}/_health", 30, lambda: emulator.poll() is None)

    def available(self) -> dict[str, str | None]:
        return {
            "floor": None,
            "shipped": None,
            "gateway": "this project's deployment runs only in the lab (drop --local)",
        }

    def start(self, name: str) -> Target:
        if name == "floor":
            return self.floor()
        if name != "shipped":
            raise ValueError(f"{name}: {self.available().get(name) or 'unknown target'}")
        if self._shipped is None:
            config = self.workdir / "shipped-config.yaml"
            config.write_text(shipped_config(f"{self.emulator_url}/v1"))
            self._shipped_port = free_port()
            # Defaults but the address: LiteLLM would listen on 0.0.0.0.
            argv = [str(self.venv_bin / "litellm"), "--config", str(config), "--host", "127.0.0.1"]
            self._shipped = self._spawn(
                [*argv, "--port", str(self._shipped_port)],
                "shipped.log",
                {"LITELLM_LOCAL_MODEL_COST_MAP": "True"},
            )
            shipped = self._shipped
            try:
                wait_until_ready(
                    f"http://127.0.0.1:{self._shipped_port}/health/liveliness",
                    READY_TIMEOUT_S,
                    lambda: shipped.poll() is None,
                )
            except RuntimeError as exc:
                log = (self.workdir / "shipped.log").read_text(errors="replace")
                self.stop("shipped")
                raise RuntimeError(f"{exc}\n--- shipped.log (end) ---\n{log[-3000:]}") from None
        return Target(
            "shipped",
            f"http://127.0.0.1:{self._shipped_port}/v1/chat/completions",
            {"Authorization": f"Bearer {SHIPPED_MASTER_KEY}"},
        )

    def stop(self, name: str) -> None:
        if name == "shipped" and self._shipped is not None:
            _stop_process_group(self._shipped)
            self._shipped = None

    def memory_kib(self, name: str) -> int | None:
        if name == "shipped" and self._shipped is not None:
            return proc_tree_rss_kib(self._shipped.pid)
        return None

    def cpu_usec(self, name: str) -> dict[str, int]:
        if name == "shipped" and self._shipped is not None:
            return {"proxy": proc_tree_cpu_usec(self._shipped.pid)}
        return {}

    def close(self) -> None:
        self.stop("shipped")
        if self._emulator is not None:
            _stop_process_group(self._emulator)
            self._emulator = None

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "shipped": f"{self.venv_bin / 'litellm'} --config shipped-config.yaml (one process)",
        }

    def _spawn(
        self, argv: list[str], log_name: str, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        with (self.workdir / log_name).open("ab") as log:
            return subprocess.Popen(
                argv,
                cwd=self.workdir,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
            )


def _stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group `process` leads, SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class LabEnvironment(Environment):
    """The running lab (``make lab-up``): every target on the lab's own addresses.

    The machine reaches the lab's network directly, so the benchmark bypasses the
    port forwards of .lab/env (Docker's userland proxy would add its own cost):
    the gateway's HAProxy on 172.30.77.10:443, the emulator on 172.30.77.13:8080.
    ``shipped`` runs as a container on the gateway host, from the same LiteLLM
    image as the gateway, published on 172.30.77.10:4100.
    """

    kind = "lab"
    GATEWAY_HOST = "llmlab-gateway"  # the lab host (a container) that runs the gateway
    GATEWAY_CONTAINER = "litellm-proxy-litellm-1"  # the gateway's LiteLLM, inside it
    FRONT_UNIT = "haproxy.service"  # the gateway's TLS front, a unit on the gateway host
    GATEWAY_ADDRESS = "172.30.77.10"
    EMULATOR_URL = "http://172.30.77.13:8080"
    # The lab's trixie Ollama host, which lets the lab machine in (group_vars/ollama),
    # and a model only it serves, so the gateway's choice is that host.
    OLLAMA_URL = "http://172.30.77.11:11434"
    OLLAMA_HOST = "llmlab-ollama"
    LOCAL_MODEL = "llama3.2:1b"
    SHIPPED_CONTAINER = "bench-shipped"
    SHIPPED_PORT = 4100
    # A path inside the gateway host, not on this machine.
    SHIPPED_CONFIG = "/tmp/bench-shipped.yaml"  # noqa: S108
    LAB_VARS = REPO / "molecule" / "default" / "group_vars" / "gateway" / "lab.yml"

    def __init__(self, env_file: Path) -> None:
        if not env_file.is_file():
            raise SystemExit(f"{env_file} is missing: bring the lab up first (`make lab-up`)")
        self.env = parse_env_file(env_file.read_text())
        if not self.env.get("GATEWAY_KEY"):
            raise SystemExit(f"{env_file} has no GATEWAY_KEY")
        self.emulator_url = self.EMULATOR_URL
        self._shipped_up = False
        self._image = ""

    def setup(self) -> None:
        wait_until_ready(f"{self.emulator_url}/_health", 30)
        running = self._docker(
            "inspect", self.GATEWAY_CONTAINER, "--format", "{{.State.Running}}", check=False
        )
        if running.strip() != "true":
            raise SystemExit(f"{self.GATEWAY_CONTAINER} is not running on {self.GATEWAY_HOST}")

    def available(self) -> dict[str, str | None]:
        return {"floor": None, "shipped": None, "gateway": None}

    def _gateway(self, model: str) -> Target:
        return Target(
            "gateway",
            f"https://{self.GATEWAY_ADDRESS}/v1/chat/completions",
            {"Authorization": f"Bearer {self.env['GATEWAY_KEY']}"},
            model,
        )

    def start(self, name: str) -> Target:
        if name == "floor":
            return self.floor()
        if name == "gateway":
            return self._gateway(MODEL)
        if name != "shipped":
            raise ValueError(f"unknown target {name}")
        if not self._shipped_up:
            self._start_shipped()
        return Target(
            "shipped",
            f"http://{self.GATEWAY_ADDRESS}:{self.SHIPPED_PORT}/v1/chat/completions",
            {"Authorization": f"Bearer {SHIPPED_MASTER_KEY}"},
        )

    def _start_shipped(self) -> None:
        self._image = self._docker(
            "inspect", self.GATEWAY_CONTAINER, "--format", "{{.Config.Image}}"
        ).strip()
        self._remove_shipped()
        config = shipped_config(f"{self.emulator_url}/v1")
        self._exec(["sh", "-c", f"cat > {self.SHIPPED_CONFIG}"], stdin=config)
        self._shipped_up = True  # from here on, stop() must clean up
        self._docker(
            "run", "-d", "--rm", "--name", self.SHIPPED_CONTAINER,
            "-p", f"{self.GATEWAY_ADDRESS}:{self.SHIPPED_PORT}:4000",
            "-v", f"{self.SHIPPED_CONFIG}:/app/config.yaml:ro",
            "-e", "LITELLM_LOCAL_MODEL_COST_MAP=True",
            self._image, "--config", "/app/config.yaml", "--port", "4000",
        )  # fmt: skip
        ready = f"http://{self.GATEWAY_ADDRESS}:{self.SHIPPED_PORT}/health/liveliness"
        try:
            wait_until_ready(ready, READY_TIMEOUT_S, self._shipped_running)
        except RuntimeError as exc:
            logs = self._docker("logs", "--tail", "40", self.SHIPPED_CONTAINER, check=False)
            self.stop("shipped")
            raise RuntimeError(
                f"{exc}\n--- docker logs {self.SHIPPED_CONTAINER} ---\n{logs}"
            ) from None

    def _shipped_running(self) -> bool:
        state = self._docker(
            "inspect", self.SHIPPED_CONTAINER, "--format", "{{.State.Running}}", check=False
        )
        return state.strip() == "true"

    def _remove_shipped(self) -> None:
        self._docker("rm", "-f", self.SHIPPED_CONTAINER, check=False)

    def stop(self, name: str) -> None:
        if name == "shipped" and self._shipped_up:
            self._remove_shipped()
            self._exec(["rm", "-f", self.SHIPPED_CONFIG], check=False)
            self._shipped_up = False

    def memory_kib(self, name: str) -> int | None:
        container = {"shipped": self.SHIPPED_CONTAINER, "gateway": self.GATEWAY_CONTAINER}.get(name)
        if container is None:
            return None
        return sum_rss_kib(self._docker("top", container, "-eo", "pid,rss"))

    def _counters(self, name: str) -> dict[str, tuple[str, str]] | None:
        """Where the cgroup of the target's container counts, on the gateway host."""
        container = {"shipped": self.SHIPPED_CONTAINER, "gateway": self.GATEWAY_CONTAINER}.get(name)
        if container is None:
            return None
        pid = self._docker("inspect", container, "--format", "{{.State.Pid}}").strip()
        return cgroup_counters(self._exec(["cat", f"/proc/{pid}/cgroup"]))

    def anon_memory_kib(self, name: str) -> int | None:
        counters = self._counters(name)
        if counters is None:
            return None
        path, field = counters["memory"]
        return counter_value(self._exec(["cat", path]), field) // 1024

    def cpu_usec(self, name: str) -> dict[str, int]:
        """The container's cgroup, and HAProxy's processes (its master and workers)."""
        counters = self._counters(name)
        if counters is None:
            return {}
        used = {"proxy": cpu_usec_of(counters, self._exec(["cat", counters["cpu"][0]]))}
        if name == "gateway":
            main = self._exec(["systemctl", "show", "-p", "MainPID", "--value", self.FRONT_UNIT])
            children = self._exec(["pgrep", "-P", main.strip()], check=False).split()
            stats = self._exec(["cat", *(f"/proc/{pid}/stat" for pid in [main.strip(), *children])])
            ticks = sum(stat_cpu_ticks(line)[1] for line in stats.splitlines() if line.strip())
            used["front"] = ticks * 1_000_000 // os.sysconf("SC_CLK_TCK")
        return used

    def close(self) -> None:
        try:
            self.stop("shipped")
        finally:
            self.reset_emulator()

    def failover_target(self) -> tuple[Target | None, str]:
        return self._gateway("balanced"), ""

    def stop_ollama_host(self) -> None:
        self._exec_on(self.OLLAMA_HOST, ["systemctl", "stop", "ollama"])

    def start_ollama_host(self) -> None:
        self._exec_on(self.OLLAMA_HOST, ["systemctl", "start", "ollama"])
        wait_until_ready(f"{self.OLLAMA_URL}/api/version", 60)

    def local_targets(self) -> tuple[Target | None, Target | None, str]:
        ollama = Target("ollama", f"{self.OLLAMA_URL}/api/chat", {}, self.LOCAL_MODEL)
        return ollama, self._gateway(self.LOCAL_MODEL), ""

    def cooldown_s(self) -> float:
        """The lab's litellm_proxy_cooldown_time (30 s if it cannot be read)."""
        try:
            import yaml

            data = yaml.safe_load(self.LAB_VARS.read_text()) or {}
            return float(data.get("litellm_proxy_cooldown_time", 30))
        except (OSError, ValueError, ImportError):
            return 30.0

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "gateway": f"https://{self.GATEWAY_ADDRESS} (HAProxy -> {self.GATEWAY_CONTAINER})",
            "shipped": f"container {self.SHIPPED_CONTAINER} on {self.GATEWAY_HOST}, image "
            f"{self._image or 'that of ' + self.GATEWAY_CONTAINER}",
        }

    def _exec(self, argv: list[str], *, stdin: str | None = None, check: bool = True) -> str:
        """Run a command on the gateway host (``docker exec``); return its stdout."""
        return self._exec_on(self.GATEWAY_HOST, argv, stdin=stdin, check=check)

    @staticmethod
    def _exec_on(
        host: str, argv: list[str], *, stdin: str | None = None, check: bool = True
    ) -> str:
        """Run a command on a lab host (``docker exec``); return its stdout."""
        command = ["docker", "exec", *(["-i"] if stdin is not None else []), host]
        done = subprocess.run(
            [*command, *argv], input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} on {host}: {done.stderr.strip()}")
        return done.stdout

    def _docker(self, *args: str, check: bool = True) -> str:
        """The gateway host's own docker (the lab's containers run Docker inside)."""
        return self._exec(["docker", *args], check=check)
