#!/usr/bin/env python3
"""Benchmark the gateway against LiteLLM as shipped and the bare emulator (issue 8).

    python3 scripts/bench.py                   # against the running lab (`make lab-up` first)
    python3 scripts/bench.py --quick           # the same with short runs, for development
    python3 scripts/bench.py --local --quick   # 127.0.0.1 only: floor and shipped, no lab
    python3 scripts/bench.py --phases latency  # some of: latency, failover, soak, deploy

Writes results.json, results.md and latency.png into --out (bench/results). The
load generator is hey (Debian's package, installed when missing); every run is
bounded by a duration and a per-request timeout (and a hard limit on hey
itself), and talks only to 127.0.0.1 or the lab's own network.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.bootstrap import reexec_in_venv  # noqa: E402

if TYPE_CHECKING:
    from bench.load import LoadResult
    from bench.targets import Environment, Target

PHASES = ("latency", "failover", "soak", "deploy")
CONCURRENCY = (1, 8, 32)
SUSTAINED_CONCURRENCY = 32
UPSTREAM_LATENCY_MS = 50
REQUEST_TIMEOUT_S = 20  # hey -t in the latency phase
FAILOVER_TIMEOUT_S = 60  # hey -t with a hanging upstream (the gateway gives up first)
FAILOVER_CONCURRENCY = 8
FAILOVER_MODES = ("down", "timeout", "rate_limit")
OLLAMA_KILL_AT_S = 3.0  # into the run, the preferred Ollama host's server is stopped
# The lab's `balanced` tier: gemini-2.5-flash is cheaper, so preferred; then claude-haiku-4-5.
PREFERRED, FALLBACK = "gemini", "anthropic"
_START = time.monotonic()


@dataclass(frozen=True)
class Durations:
    latency_s: float  # each non-streaming and streaming run
    sustained_s: float  # the rate held at concurrency 32
    failover_s: float  # each failover case
    warmup_requests: int  # per target, not counted


FULL = Durations(latency_s=10, sustained_s=30, failover_s=10, warmup_requests=20)
QUICK = Durations(latency_s=3, sustained_s=5, failover_s=5, warmup_requests=8)
# The soak: resident memory after this many requests in all (issue 19), at c=32.
SOAK_CHECKPOINTS = (1_000, 20_000)
QUICK_SOAK_CHECKPOINTS = (200, 1_000)


def deploy_phase() -> dict[str, Any]:
    """Wall time of site.yml over fresh lab hosts, then of an idempotent re-run.

    The lab is destroyed and created anew, and Molecule's prepare step runs (none
    of that is timed, nor are the image builds); then ansible-playbook site.yml
    runs twice the way a user runs it: the repo's ansible.cfg, the lab's
    inventory and vault. Leaves the lab up, with .lab/env written, for the
    other phases.
    """
    from tests.lab import lab
    from tests.support.lab_client import play_recap, run_playbook

    bin_dir = Path(sys.executable).parent
    env = lab.prepare()
    for step in ("destroy", "create", "prepare"):
        if lab.molecule(bin_dir, step, env) != 0:
            raise RuntimeError(f"molecule {step} failed")
    lab.write_env(bin_dir, env)
    lab_env = {**env, "LAB_ANSIBLE_INVENTORY": str(lab.MOLECULE_DIR / "inventory")}
    runs = {}
    for name in ("converge_fresh", "idempotent_rerun"):
        log(f"deploy: {name.replace('_', ' ')}")
        started = time.monotonic()
        done = run_playbook(lab_env, "site.yml")
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"site.yml failed ({name}):\n{done.stdout[-3000:]}")
        changed = sum(counts["changed"] for counts in play_recap(done.stdout).values())
        log(f"deploy: {name} took {seconds:.1f} s, changed={changed}")
        runs[name] = {"seconds": round(seconds, 1), "changed": changed}
    return {
        "converge_fresh_s": runs["converge_fresh"]["seconds"],
        "idempotent_rerun_s": runs["idempotent_rerun"]["seconds"],
        "idempotent_rerun_changed": runs["idempotent_rerun"]["changed"],
    }


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def write_body(workdir: Path, model: str, stream: bool, ollama: bool = False) -> Path:
    """A chat request: OpenAI's shape, or Ollama's own (/api/chat streams by default)."""
    import json

    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
    }
    if ollama:
        body.update({"stream": stream, "options": {"num_predict": 16}})
    else:
        body["max_tokens"] = 16
        if stream:
            body["stream"] = True
    name = model.replace(":", "_").replace("/", "_")
    path = workdir / f"body-{name}{'-ollama' if ollama else ''}{'-stream' if stream else ''}.json"
    path.write_text(json.dumps(body))
    return path


def _line(name: str, result: LoadResult) -> str:
    s = result.to_json()
    lat, ttfb = s["latency_ms"], s["ttfb_ms"]
    return (
        f"{name} c={result.concurrency}: p50 {lat['p50']} / p99 {lat['p99']} ms, "
        f"TTFB p50 {ttfb['p50']} ms, {s['rps']} req/s, {s['errors']} errors"
    )


def warm_up(target: Target, body_file: Path, requests: int) -> None:
    """A few requests that are not counted; fail early if the target does not answer."""
    from bench.load import run_hey

    result = run_hey(
        target.url,
        concurrency=min(4, requests),
        requests=requests,
        timeout_s=REQUEST_TIMEOUT_S,
        body_file=body_file,
        headers=target.headers,
    )
    summary = result.to_json()
    if summary["ok"] == 0:
        raise RuntimeError(f"{target.name}: no successful answer in warm-up: {summary['status']}")


def measure_target(env: Environment, name: str, durations: Durations, workdir: Path) -> dict:
    """Warm-up, non-streaming and streaming at each concurrency, sustained rate, memory."""
    from bench.load import run_hey

    target = env.start(name)
    try:
        bodies = {
            "plain": write_body(workdir, target.model, stream=False),
            "stream": write_body(workdir, target.model, stream=True),
        }
        log(f"{name}: warm-up ({target.url})")
        warm_up(target, bodies["plain"], durations.warmup_requests)
        warm_up(target, bodies["stream"], durations.warmup_requests)
        measured: dict[str, Any] = {"url": target.url, "model": target.model}

        def run(kind: str, concurrency: int, seconds: float) -> LoadResult:
            result = run_hey(
                target.url,
                concurrency=concurrency,
                duration_s=seconds,
                timeout_s=REQUEST_TIMEOUT_S,
                body_file=bodies[kind],
                headers=target.headers,
            )
            log(_line(f"{name} {kind}", result))
            return result

        for kind in ("plain", "stream"):
            measured[kind] = [run(kind, c, durations.latency_s).to_json() for c in CONCURRENCY]
        cpu_before = env.cpu_usec(name)
        sustained = run("plain", SUSTAINED_CONCURRENCY, durations.sustained_s)
        cpu_after = env.cpu_usec(name)
        measured["sustained"] = sustained.to_json()
        measured["sustained"]["cpu"] = cpu_per_request(
            cpu_before, cpu_after, measured["sustained"]["requests"]
        )
        measured["memory_kib"] = env.memory_kib(name)
        measured["anon_memory_kib"] = env.anon_memory_kib(name)
        return measured
    finally:
        env.stop(name)


def local_stream_phase(env: Environment, durations: Durations, workdir: Path) -> dict[str, Any]:
    """Time to first byte of a streamed answer from a local model at c=1: the Ollama
    host asked directly, and through the gateway; the difference is what a person
    typing into a chat page waits for the gateway."""
    from bench import report
    from bench.load import run_hey

    ollama, gateway, why = env.local_targets()
    if ollama is None or gateway is None:
        return {"skipped": why}
    out: dict[str, Any] = {"model": ollama.model, "concurrency": 1, "targets": {}}
    for target in (ollama, gateway):
        body = write_body(workdir, target.model, stream=True, ollama=target is ollama)
        warm_up(target, body, durations.warmup_requests)
        result = run_hey(
            target.url,
            concurrency=1,
            duration_s=durations.latency_s,
            timeout_s=REQUEST_TIMEOUT_S,
            body_file=body,
            headers=target.headers,
        )
        log(_line(f"{target.name} local stream", result))
        out["targets"][target.name] = result.to_json()
    out["added_ttfb_ms"] = report.difference(
        out["targets"]["gateway"]["ttfb_ms"], out["targets"]["ollama"]["ttfb_ms"]
    )
    return out


def ollama_down_phase(env: Environment, durations: Durations, workdir: Path) -> dict[str, Any]:
    """One person's requests (c=1) to the local model through the gateway while the
    Ollama host that serves it dies: what the requests in the first second after
    it died waited, and those after, against the same requests with the host up.
    The model is in the `cheap` tier, so the tier's cloud deployments answer next."""
    import threading

    from bench import report
    from bench.load import run_hey

    _, gateway, why = env.local_targets()
    if gateway is None:
        return {"skipped": why}
    target = replace(gateway, model="cheap")
    body = write_body(workdir, target.model, stream=False)
    seconds = max(durations.failover_s, OLLAMA_KILL_AT_S + 3)

    def run() -> LoadResult:
        return run_hey(
            target.url,
            concurrency=1,
            duration_s=seconds,
            timeout_s=FAILOVER_TIMEOUT_S,
            body_file=body,
            headers=target.headers,
        )

    env.reset_emulator()
    env.set_provider("openai", "ok", UPSTREAM_LATENCY_MS)
    env.set_provider("gemini", "ok", UPSTREAM_LATENCY_MS)
    out: dict[str, Any] = {"model": target.model, "concurrency": 1, "duration_s": seconds}
    try:
        warm_up(target, body, durations.warmup_requests)
        out["healthy"] = run().to_json()
        log(f"ollama down: healthy p50 {out['healthy']['latency_ms']['p50']} ms")
        found: dict[str, LoadResult] = {}
        load = threading.Thread(target=lambda: found.setdefault("run", run()))
        started = time.monotonic()
        load.start()
        time.sleep(OLLAMA_KILL_AT_S)
        killed_at = time.monotonic() - started
        env.stop_ollama_host()
        load.join()
        result = found["run"]
        log(_line("ollama down", result))
        first = report.FIRST_WINDOW_S
        out.update(
            killed_at_s=round(killed_at, 3),
            run=result.to_json(),
            first_second=result.window(killed_at, killed_at + first),
            after=result.window(killed_at + first),
        )
    finally:
        try:
            env.start_ollama_host()
        finally:
            env.reset_emulator()
    return out


def cpu_per_request(before: dict[str, int], after: dict[str, int], requests: int) -> dict:
    """CPU seconds each part used between two readings, and milliseconds per request."""
    seconds = {part: (after[part] - before[part]) / 1e6 for part in before if part in after}
    return {
        "requests": requests,
        "seconds": {part: round(value, 3) for part, value in seconds.items()},
        "ms_per_request": {
            part: round(1000 * value / requests, 3) if requests else None
            for part, value in seconds.items()
        },
    }


def memory_point(env: Environment, name: str, requests: int) -> dict[str, Any]:
    return {
        "requests": requests,
        "memory_kib": env.memory_kib(name),
        "anon_memory_kib": env.anon_memory_kib(name),
    }


def soak_phase(env: Environment, checkpoints: tuple[int, ...], workdir: Path) -> dict[str, Any]:
    """Resident memory of each proxy after ``checkpoints`` requests in all, at c=32.

    A fresh ``shipped`` starts at zero; the gateway has served the other phases
    before (its count starts at what this phase sends, which the report says).
    """
    from bench.load import run_hey

    out: dict[str, Any] = {"concurrency": SUSTAINED_CONCURRENCY, "targets": {}}
    env.reset_emulator()
    env.set_provider("openai", "ok", UPSTREAM_LATENCY_MS)
    try:
        for name in ("shipped", "gateway"):
            why = env.available().get(name)
            if why:
                out["targets"][name] = {"skipped": why}
                continue
            target = env.start(name)
            try:
                body = write_body(workdir, target.model, stream=False)
                points, sent, errors = [], 0, 0
                points.append(memory_point(env, name, 0))
                for total in checkpoints:
                    result = run_hey(
                        target.url,
                        concurrency=SUSTAINED_CONCURRENCY,
                        requests=total - sent,
                        timeout_s=REQUEST_TIMEOUT_S,
                        body_file=body,
                        headers=target.headers,
                    )
                    summary = result.to_json()
                    sent, errors = total, errors + summary["errors"]
                    points.append(memory_point(env, name, total))
                    log(f"{name} soak: {points[-1]}")
                out["targets"][name] = {"points": points, "errors": errors}
            finally:
                env.stop(name)
    finally:
        env.reset_emulator()
    return out


def latency_phase(env: Environment, durations: Durations, workdir: Path) -> dict[str, Any]:
    from bench import report

    out: dict[str, Any] = {"upstream_latency_ms": UPSTREAM_LATENCY_MS, "targets": {}}
    skipped = {name: why for name, why in env.available().items() if why}
    env.reset_emulator()
    env.set_provider("openai", "ok", UPSTREAM_LATENCY_MS)
    try:
        for name, why in env.available().items():
            if why:
                log(f"{name}: skipped ({why})")
                continue
            try:
                out["targets"][name] = measure_target(env, name, durations, workdir)
            except RuntimeError as exc:
                log(f"{name}: FAILED: {exc}")
                skipped[name] = f"failed: {exc}"
    finally:
        env.reset_emulator()
    out["skipped"] = skipped
    report.fill_added(out)
    out["local_stream"] = local_stream_phase(env, durations, workdir)
    return out


def wait_for_preferred(env: Environment, target: Target, body_file: Path, limit_s: float) -> float:
    """Probe the gateway until the preferred provider answers again (its cooldown is over).

    Returns the seconds waited. The emulator's request log tells who was called.
    """
    import json

    from bench.load import run_hey
    from bench.targets import http_request

    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        since = time.time()
        run_hey(
            target.url,
            concurrency=1,
            requests=1,
            timeout_s=REQUEST_TIMEOUT_S,
            body_file=body_file,
            headers=target.headers,
        )
        seen = json.loads(
            http_request("GET", f"{env.emulator_url}/_requests?provider={PREFERRED}&since={since}")
        )
        if seen:
            return time.monotonic() - started
        time.sleep(2)
    raise RuntimeError(f"{PREFERRED} was not called again within {limit_s:.0f}s of its recovery")


def failover_phase(env: Environment, durations: Durations, workdir: Path) -> dict[str, Any]:
    from bench import report
    from bench.load import run_hey

    target, why = env.failover_target()
    if target is None:
        log(f"failover: skipped ({why})")
        return {"skipped": why}
    body_file = write_body(workdir, target.model, stream=False)
    # The gateway keeps a failed deployment out for its cooldown; give it room.
    recovery_limit = env.cooldown_s() + 60

    def healthy_providers() -> None:
        env.reset_emulator()
        env.set_provider(PREFERRED, "ok", UPSTREAM_LATENCY_MS)
        env.set_provider(FALLBACK, "ok", UPSTREAM_LATENCY_MS)

    def run(case: str) -> LoadResult:
        result = run_hey(
            target.url,
            concurrency=FAILOVER_CONCURRENCY,
            duration_s=durations.failover_s,
            timeout_s=FAILOVER_TIMEOUT_S,
            body_file=body_file,
            headers=target.headers,
        )
        log(_line(f"failover {case}", result))
        return result

    out: dict[str, Any] = {
        "model": target.model,
        "concurrency": FAILOVER_CONCURRENCY,
        "duration_s": durations.failover_s,
        "preferred": PREFERRED,
        "fallback": FALLBACK,
        "upstream_latency_ms": UPSTREAM_LATENCY_MS,
        "modes": {},
        "recovery_wait_s": {},
    }
    try:
        healthy_providers()
        wait_for_preferred(env, target, body_file, recovery_limit)
        warm_up(target, body_file, durations.warmup_requests)
        out["healthy"] = run("healthy").to_json()
        for mode in FAILOVER_MODES:
            healthy_providers()
            env.set_provider(PREFERRED, mode)
            result = run(mode)
            healthy_providers()  # also releases the requests a `timeout` upstream holds
            out["modes"][mode] = {
                "run": result.to_json(),
                "first_second": result.window(0, report.FIRST_WINDOW_S),
                "after": result.window(report.FIRST_WINDOW_S),
            }
            log(f"failover {mode}: waiting until {PREFERRED} is used again")
            waited = wait_for_preferred(env, target, body_file, recovery_limit)
            out["recovery_wait_s"][mode] = round(waited, 1)
    finally:
        env.reset_emulator()
    report.fill_failover_extra(out)
    out["ollama_down"] = ollama_down_phase(env, durations, workdir)
    return out


def _run_text(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
    return done.stdout.strip() if done.returncode == 0 else ""


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from bench.load import hey_version

    cpu_model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory_kib = None
    meminfo = Path("/proc/meminfo")
    for line in meminfo.read_text().splitlines() if meminfo.is_file() else []:
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    try:
        litellm = version("litellm")
    except PackageNotFoundError:
        litellm = "not installed"
    commit = _run_text(["git", "rev-parse", "--short=12", "HEAD"]) or "unknown"
    if _run_text(["git", "status", "--porcelain", "--untracked-files=no"]):
        commit += " (with uncommitted changes)"
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_kib": memory_kib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "hey_version": hey_version(),
        "litellm_version": litellm,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (development)")
    parser.add_argument(
        "--local", action="store_true", help="run floor and shipped on 127.0.0.1, without the lab"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results", help="output folder"
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (default: all)",
    )
    parser.add_argument(
        "--notes", type=Path, help="Markdown appended to results.md: what limits a missed target"
    )
    args = parser.parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not phases or set(phases) - set(PHASES):
        parser.error(f"--phases takes a comma-separated subset of {','.join(PHASES)}")
    out_dir = args.out.resolve()
    notes = args.notes.read_text() if args.notes else ""
    reexec_in_venv(REPO / "requirements-bench.txt")

    from bench import load, report
    from bench.targets import LabEnvironment, LocalEnvironment

    load.ensure_hey()
    durations = QUICK if args.quick else FULL
    workdir = out_dir / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            "environment": "local" if args.local else "lab",
            "quick": args.quick,
            "phases": phases,
            "durations": asdict(durations),
            "concurrency": list(CONCURRENCY),
            "request_timeout_s": REQUEST_TIMEOUT_S,
            "failover_timeout_s": FAILOVER_TIMEOUT_S,
        },
    }
    if "deploy" not in phases:
        results["deploy"] = {"skipped": "phase not selected"}
    elif args.local:
        results["deploy"] = {"skipped": "the deployment is measured on the lab only"}
    else:
        results["deploy"] = deploy_phase()  # first: it makes the lab the others use
    env: Environment = (
        LocalEnvironment(workdir, Path(sys.executable).parent)
        if args.local
        else LabEnvironment(REPO / ".lab" / "env")
    )
    with env:
        if "latency" in phases:
            results["latency"] = latency_phase(env, durations, workdir)
        if "failover" in phases:
            results["failover"] = failover_phase(env, durations, workdir)
        if "soak" in phases:
            checkpoints = QUICK_SOAK_CHECKPOINTS if args.quick else SOAK_CHECKPOINTS
            results["soak"] = soak_phase(env, checkpoints, workdir)
        results["settings"]["targets"] = env.describe()
    results.setdefault("failover", {"skipped": "phase not selected"})
    results.setdefault("soak", {"skipped": "phase not selected"})
    results["targets"] = report.evaluate(results)
    results["targets_round_two"] = report.evaluate_round_two(results)
    for path in report.write_outputs(results, out_dir, notes):
        log(f"wrote {path}")
    for check in results["targets"] + results["targets_round_two"]:
        print(f"{check['status']:>12}: {check['name']} ({check['detail']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
