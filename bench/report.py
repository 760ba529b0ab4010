"""Turn the benchmark's measurements into results.json, results.md and latency.png.

Everything here works on the plain dictionary that scripts/bench.py fills (the
content of results.json), so a saved run can be rendered again. The four
targets of issue 8 and those of issue 19 are checked exactly as the issues state
them; a target whose numbers were not all measured is "not measured", never met.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# The targets of issue 8 (on the 2-core machine). Do not loosen them here.
RATE_RATIO_MIN = 2.0  # gateway's sustained rate at c=32 over shipped's, with no errors
SUSTAIN_S = 30.0  # "the highest request rate held for 30 s"
ADDED_P50_MAX_MS = 10.0  # gateway's added p50 at c=1 (and no more than shipped's)
FAILOVER_P50_MAX_MS = 20.0  # p50 over the healthy case after the first second, preferred down
FIRST_WINDOW_S = 1.0
RERUN_MAX_S = 60.0  # idempotent re-run of site.yml over the lab

# The targets of issue 19 (performance, round two). Do not loosen them here either.
CPU_RATIO_MAX = 1.0  # gateway's proxy CPU per request over shipped's, sustained c=32
MEMORY_RATIO_MAX = 1.5  # gateway's proxy resident memory over shipped's, after the runs
ADDED_P50_OVER_SHIPPED_MAX_MS = 1.0  # gateway's added p50 at c=1 minus shipped's
RATE_RATIO_MIN_ROUND_TWO = 1.5  # at c=32, no errors (issue 8's 2x is the stretch)

MET, MISSED, NOT_MEASURED = "met", "missed", "not measured"
TARGET_ORDER = ("floor", "shipped", "gateway")


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def run_at(runs: Iterable[dict[str, Any]] | None, concurrency: int) -> dict[str, Any] | None:
    """The run of a list at the given concurrency."""
    for run in runs or ():
        if run.get("concurrency") == concurrency:
            return run
    return None


def difference(
    value: dict[str, Any] | None, base: dict[str, Any] | None
) -> dict[str, float | None]:
    """p50/p99 of ``value`` minus those of ``base`` (ms), None where either is missing."""
    out: dict[str, float | None] = {}
    for key in ("p50", "p99"):
        a, b = _get(value, key), _get(base, key)
        out[key] = None if a is None or b is None else round(a - b, 2)
    return out


def fill_added(latency: dict[str, Any]) -> None:
    """Add ``added_ms`` (over the floor at the same concurrency) to every run.

    Non-streaming runs compare full latency, streaming runs time to first byte.
    """
    targets = latency.get("targets", {})
    floor = targets.get("floor", {})
    for target in targets.values():
        for kind, metric in (("plain", "latency_ms"), ("stream", "ttfb_ms")):
            for run in target.get(kind, []):
                base = run_at(floor.get(kind), run["concurrency"])
                run["added_ms"] = difference(run.get(metric), _get(base, metric))


def fill_failover_extra(failover: dict[str, Any]) -> None:
    """Add ``extra_ms`` per window (over the healthy run's p50/p99) to every mode."""
    healthy = _get(failover, "healthy", "latency_ms")
    for mode in (failover.get("modes") or {}).values():
        mode["extra_ms"] = {
            window: difference(_get(mode, window, "latency_ms"), healthy)
            for window in ("first_second", "after")
        }


def _check(name: str, status: str, detail: str) -> dict[str, str]:
    return {"name": name, "status": status, "detail": detail}


def _combine(parts: list[bool | None]) -> str:
    """Missed if any measured part fails; met only if every part was measured and holds."""
    if any(part is False for part in parts):
        return MISSED
    if any(part is None for part in parts):
        return NOT_MEASURED
    return MET


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def check_rate(results: dict[str, Any], ratio_min: float = RATE_RATIO_MIN) -> dict[str, str]:
    name = f"gateway sustains >= {ratio_min:g}x shipped's rate at c=32, no errors"
    gateway = _get(results, "latency", "targets", "gateway", "sustained")
    shipped = _get(results, "latency", "targets", "shipped", "sustained")
    no_errors = None if gateway is None else gateway["errors"] == 0
    ratio_ok: bool | None = None
    detail = []
    if gateway is not None and shipped is not None:
        if shipped["rps"]:
            ratio = gateway["rps"] / shipped["rps"]
            ratio_ok = ratio >= ratio_min
            detail.append(f"{gateway['rps']:.1f} vs {shipped['rps']:.1f} req/s = {ratio:.2f}x")
        if shipped["errors"]:
            detail.append(f"shipped had {shipped['errors']} errors (rate counts its successes)")
    if gateway is not None:
        detail.append(f"gateway errors: {gateway['errors']}")
    status = _combine([ratio_ok, no_errors])
    short = [r["duration_s"] for r in (gateway, shipped) if r and r["duration_s"] < SUSTAIN_S]
    if short:  # a quick run says nothing about 30 s, either way
        status = NOT_MEASURED
        detail.append(f"runs of {min(short):g} s, shorter than the {SUSTAIN_S:g} s of the target")
    return _check(name, status, "; ".join(detail) or "gateway or shipped not measured")


def check_added_p50(results: dict[str, Any]) -> dict[str, str]:
    name = f"gateway's added p50 at c=1 <= shipped's and <= {ADDED_P50_MAX_MS:g} ms"
    targets = _get(results, "latency", "targets") or {}
    gateway = _get(run_at(_get(targets, "gateway", "plain"), 1), "added_ms", "p50")
    shipped = _get(run_at(_get(targets, "shipped", "plain"), 1), "added_ms", "p50")
    within_cap = None if gateway is None else gateway <= ADDED_P50_MAX_MS
    vs_shipped = None if gateway is None or shipped is None else gateway <= shipped
    detail = f"gateway {_fmt(gateway)} ms, shipped {_fmt(shipped)} ms"
    return _check(name, _combine([within_cap, vs_shipped]), detail)


def check_failover(results: dict[str, Any]) -> dict[str, str]:
    name = (
        f"preferred deployment down: after the first second, p50 within "
        f"{FAILOVER_P50_MAX_MS:g} ms of healthy and no request fails"
    )
    mode = _get(results, "failover", "modes", "down")
    extra = _get(mode, "extra_ms", "after", "p50")
    errors = _get(mode, "after", "errors")
    within = None if extra is None else extra <= FAILOVER_P50_MAX_MS
    no_fail = None if errors is None else errors == 0
    detail = f"extra p50 after 1 s: {_fmt(extra)} ms; failed after 1 s: {_fmt(errors, 0)}"
    first_errors = _get(mode, "first_second", "errors")
    if first_errors:
        detail += f" (first second: {first_errors} failed)"
    return _check(name, _combine([within, no_fail]), detail)


def check_rerun(results: dict[str, Any]) -> dict[str, str]:
    name = f"idempotent re-run of site.yml over the lab < {RERUN_MAX_S:g} s"
    seconds = _get(results, "deploy", "idempotent_rerun_s")
    status = _combine([None if seconds is None else seconds < RERUN_MAX_S])
    return _check(name, status, f"{_fmt(seconds)} s")


def evaluate(results: dict[str, Any]) -> list[dict[str, str]]:
    """The four targets of issue 8, each met, missed or not measured."""
    return [check(results) for check in (check_rate, check_added_p50, check_failover, check_rerun)]


def _cpu_ms(results: dict[str, Any], name: str) -> float | None:
    return _get(results, "latency", "targets", name, "sustained", "cpu", "ms_per_request", "proxy")


def check_cpu(results: dict[str, Any]) -> dict[str, str]:
    name = "gateway's proxy CPU per request at c=32 no more than shipped's"
    gateway, shipped = _cpu_ms(results, "gateway"), _cpu_ms(results, "shipped")
    ok = None if gateway is None or not shipped else gateway / shipped <= CPU_RATIO_MAX
    detail = f"gateway {_fmt(gateway, 2)} ms, shipped {_fmt(shipped, 2)} ms of CPU per request"
    front = _get(
        results, "latency", "targets", "gateway", "sustained", "cpu", "ms_per_request", "front"
    )
    if front is not None:
        detail += f" (the gateway's TLS front adds {_fmt(front, 2)} ms)"
    return _check(name, _combine([ok]), detail)


def check_memory(results: dict[str, Any]) -> dict[str, str]:
    name = f"gateway's proxy memory after the runs at most {MEMORY_RATIO_MAX:g}x shipped's"
    targets = _get(results, "latency", "targets") or {}
    gateway = _get(targets, "gateway", "memory_kib")
    shipped = _get(targets, "shipped", "memory_kib")
    ok = None if gateway is None or not shipped else gateway / shipped <= MEMORY_RATIO_MAX
    mib = {k: None if v is None else v / 1024 for k, v in (("g", gateway), ("s", shipped))}
    detail = f"gateway {_fmt(mib['g'])} MiB, shipped {_fmt(mib['s'])} MiB"
    if gateway and shipped:
        detail += f" = {gateway / shipped:.2f}x"
    return _check(name, _combine([ok]), detail)


def check_added_p50_round_two(results: dict[str, Any]) -> dict[str, str]:
    limit = ADDED_P50_OVER_SHIPPED_MAX_MS
    name = f"gateway's added p50 at c=1 at most shipped's + {limit:g} ms"
    targets = _get(results, "latency", "targets") or {}
    gateway = _get(run_at(_get(targets, "gateway", "plain"), 1), "added_ms", "p50")
    shipped = _get(run_at(_get(targets, "shipped", "plain"), 1), "added_ms", "p50")
    ok = None if gateway is None or shipped is None else gateway <= shipped + limit
    return _check(name, _combine([ok]), f"gateway {_fmt(gateway)} ms, shipped {_fmt(shipped)} ms")


def check_rate_round_two(results: dict[str, Any]) -> dict[str, str]:
    found = check_rate(results, RATE_RATIO_MIN_ROUND_TWO)
    return {**found, "name": found["name"] + " (issue 8's 2x is the stretch)"}


def evaluate_round_two(results: dict[str, Any]) -> list[dict[str, str]]:
    """The targets of issue 19, each met, missed or not measured."""
    checks = (check_cpu, check_memory, check_added_p50_round_two, check_rate_round_two)
    return [check(results) for check in checks]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _ordered(targets: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    names = [n for n in TARGET_ORDER if n in targets] + sorted(set(targets) - set(TARGET_ORDER))
    return [(n, targets[n]) for n in names]


def _machine_lines(results: dict[str, Any]) -> list[str]:
    m = results.get("machine", {})
    s = results.get("settings", {})
    mem = m.get("memory_kib")
    return [
        f"- Date: {m.get('date', 'n/a')}; commit {m.get('git_commit', 'n/a')}; "
        f"environment: {s.get('environment', 'n/a')}{' (quick run)' if s.get('quick') else ''}",
        f"- Machine: {m.get('cores', 'n/a')} cores ({m.get('cpu_model', 'n/a')}), "
        f"{_fmt(None if mem is None else mem / 1048576)} GiB, kernel {m.get('kernel', 'n/a')}",
        f"- hey {m.get('hey_version', 'n/a')}, LiteLLM {m.get('litellm_version', 'n/a')}",
        "",
    ]


def _latency_sections(latency: dict[str, Any]) -> list[str]:
    targets = _ordered(latency.get("targets", {}))
    upstream = latency.get("upstream_latency_ms", "n/a")
    out = [
        "## Latency",
        "",
        f"The emulator answers after {upstream} ms. *Added* is the target minus the floor "
        "(the emulator called directly) at the same concurrency. Percentiles are over the "
        "successful requests; rate is successful requests per second. Errors are answers "
        "other than 2xx plus requests that got no answer at all (hey leaves those out of its "
        "CSV; each gap they leave in a worker's run counts once, so that part is a lower "
        "bound).",
        "",
        "### Non-streaming",
        "",
    ]
    rows = []
    for name, target in targets:
        for run in target.get("plain", []):
            added = run.get("added_ms", {})
            rows.append(
                [name, str(run["concurrency"]), _fmt(run["latency_ms"]["p50"]),
                 _fmt(run["latency_ms"]["p99"]), _fmt(added.get("p50")),
                 _fmt(added.get("p99")), _fmt(run["rps"]), str(run["errors"])]
            )  # fmt: skip
    header = ["target", "concurrency", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms"]
    out += _table([*header, "rate req/s", "errors"], rows)
    out += ["### Streaming: time to first byte", ""]
    rows = []
    for name, target in targets:
        for run in target.get("stream", []):
            added = run.get("added_ms", {})
            rows.append(
                [name, str(run["concurrency"]), _fmt(run["ttfb_ms"]["p50"]),
                 _fmt(run["ttfb_ms"]["p99"]), _fmt(added.get("p50")),
                 _fmt(added.get("p99")), _fmt(run["rps"]), str(run["errors"])]
            )  # fmt: skip
    header = ["target", "concurrency", "TTFB p50 ms", "TTFB p99 ms", "added p50 ms", "added p99 ms"]
    out += _table([*header, "rate req/s", "errors"], rows)
    out += ["### Sustained rate", ""]
    rows = []
    for name, target in targets:
        run = target.get("sustained")
        if run:
            held = "held" if run["errors"] == 0 else "not held"
            cpu = _get(run, "cpu", "ms_per_request") or {}
            rows.append(
                [name, str(run["concurrency"]), f"{run['duration_s']:g}", _fmt(run["rps"]),
                 str(run["errors"]), held, _fmt(cpu.get("proxy"), 2), _fmt(cpu.get("front"), 2)]
            )  # fmt: skip
    header = ["target", "concurrency", "seconds", "rate req/s", "errors", "no errors"]
    out += _table([*header, "proxy CPU ms/request", "TLS front CPU ms/request"], rows)
    out += [
        "CPU per request is the CPU time the proxy's cgroup (every process in its "
        "container, workers that were replaced included) used during the sustained run, "
        "over the requests sent in it; the gateway's TLS front (HAProxy, a unit of its own) "
        "is counted apart. Health checks and scrapes in that time count too.",
        "",
    ]
    out += _local_stream_lines(latency.get("local_stream"))
    out += ["### Resident memory of the proxy (after the runs)", ""]
    rows = []
    for name, target in targets:
        kib, anon = target.get("memory_kib"), target.get("anon_memory_kib")
        rows.append(
            [name, "no proxy" if kib is None else _fmt(kib / 1024), _mib(anon)]
        )  # fmt: skip
    out += _table(["target", "RSS MiB (sum over processes)", "anonymous MiB (counted once)"], rows)
    for name, reason in (latency.get("skipped") or {}).items():
        out.append(f"- {name}: not measured ({reason})")
    if latency.get("skipped"):
        out.append("")
    return out


def _heading(title: str, part: dict[str, Any] | None) -> tuple[list[str], bool]:
    """A section's heading, with why it was not measured if it was not; and whether it was."""
    if part and not part.get("skipped"):
        return [title, ""], True
    return [title, "", f"Not measured: {(part or {}).get('skipped', 'not run')}.", ""], False


def _mib(kib: float | None) -> str:
    return "n/a" if kib is None else _fmt(kib / 1024)


def _local_stream_lines(local: dict[str, Any] | None) -> list[str]:
    out, measured = _heading("### Time to first byte, streaming from a local model at c=1", local)
    if not measured:
        return out
    out += [
        f"`{local['model']}` asked from the Ollama host's own API (`ollama`), and "
        "through the gateway by its name (`gateway`): what a person typing into a chat "
        "page waits for before the first word.",
        "",
    ]
    rows = []
    for name, run in local.get("targets", {}).items():
        ttfb = run.get("ttfb_ms", {})
        rows.append(
            [name, str(run.get("requests")), str(run.get("errors")), _fmt(ttfb.get("p50")),
             _fmt(ttfb.get("p99"))]
        )  # fmt: skip
    added = local.get("added_ttfb_ms", {})
    rows.append(["added by the gateway", "", "", _fmt(added.get("p50")), _fmt(added.get("p99"))])
    return out + _table(["target", "requests", "errors", "TTFB p50 ms", "TTFB p99 ms"], rows)


def _failover_section(failover: dict[str, Any] | None) -> list[str]:
    out = ["## Failover", ""]
    if not failover or failover.get("skipped"):
        reason = (failover or {}).get("skipped", "not run")
        return [*out, f"Not measured: {reason}.", ""]
    out += [
        f"Model `{failover['model']}`, concurrency {failover['concurrency']}, "
        f"{failover['duration_s']:g} s per case; `{failover['preferred']}` (preferred) in each "
        f"mode, `{failover['fallback']}` healthy. *Extra* is over the healthy case's p50/p99. "
        f"Windows: requests started in the first {FIRST_WINDOW_S:g} s, and after.",
        "",
    ]
    healthy = failover["healthy"]
    rows = [
        ["healthy", "all", str(healthy["requests"]), str(healthy["errors"]),
         _fmt(healthy["latency_ms"]["p50"]), _fmt(healthy["latency_ms"]["p99"]), "", ""]
    ]  # fmt: skip
    for mode_name, mode in failover.get("modes", {}).items():
        for window in ("first_second", "after"):
            part = mode[window]
            extra = mode.get("extra_ms", {}).get(window, {})
            rows.append(
                [mode_name, window.replace("_", " "), str(part["requests"]), str(part["errors"]),
                 _fmt(part["latency_ms"]["p50"]), _fmt(part["latency_ms"]["p99"]),
                 _fmt(extra.get("p50")), _fmt(extra.get("p99"))]
            )  # fmt: skip
    header = ["case", "window", "requests", "errors", "p50 ms", "p99 ms", "extra p50 ms"]
    return (
        out
        + _table([*header, "extra p99 ms"], rows)
        + _ollama_down_lines(failover.get("ollama_down"))
    )


def _ollama_down_lines(down: dict[str, Any] | None) -> list[str]:
    out, measured = _heading("### The preferred Ollama host dies", down)
    if not measured:
        return out
    out += [
        f"One person's requests (c=1) to `{down['model']}`, whose cheapest deployment is a "
        f"local model on one Ollama host; {_fmt(down.get('killed_at_s'))} s into the run "
        "that host's server is stopped, and the tier's cloud deployments answer. Windows: "
        "the requests started in the first second after it died, and after.",
        "",
    ]
    rows = []
    for label, part in (
        ("host up", down.get("healthy")),
        ("first second after it died", down.get("first_second")),
        ("after", down.get("after")),
    ):
        if part:
            lat = part.get("latency_ms", {})
            rows.append(
                [label, str(part["requests"]), str(part["errors"]), _fmt(lat.get("p50")),
                 _fmt(lat.get("p99"))]
            )  # fmt: skip
    return out + _table(["case", "requests", "errors", "p50 ms", "p99 ms"], rows)


def _soak_section(soak: dict[str, Any] | None) -> list[str]:
    out, measured = _heading("## Memory under a soak", soak)
    if not measured:
        return out
    out += [
        f"Resident memory of the proxy (all its processes) after that many requests at "
        f"c={soak.get('concurrency')}, counted from this phase's start: `shipped` starts "
        "fresh, the gateway has served the phases before.",
        "",
    ]
    rows = []
    for name, target in _ordered(soak.get("targets", {})):
        if target.get("skipped"):
            rows.append([name, "not measured", target["skipped"], "", ""])
            continue
        for point in target.get("points", []):
            rows.append(
                [name, str(point["requests"]), _mib(point.get("memory_kib")),
                 _mib(point.get("anon_memory_kib")), ""]
            )  # fmt: skip
        rows[-1][4] = str(target.get("errors", "n/a"))
    header = ["target", "requests", "RSS MiB", "anonymous MiB", "errors in the soak"]
    return out + _table(header, rows)


def _deploy_section(deploy: dict[str, Any] | None) -> list[str]:
    out, measured = _heading("## Deployment", deploy)
    if not measured:
        return out
    rows = [
        ["converge of the lab from fresh hosts (no image builds)",
         _fmt(deploy.get("converge_fresh_s"))],
        ["idempotent re-run of site.yml "
         f"(changed={deploy.get('idempotent_rerun_changed', '?')})",
         _fmt(deploy.get("idempotent_rerun_s"))],
    ]  # fmt: skip
    return out + _table(["step", "wall s"], rows)


def render_markdown(results: dict[str, Any], notes: str = "") -> str:
    """results.md: machine, targets, latency, failover and deployment tables."""
    out = ["# Gateway benchmark", "", *_machine_lines(results)]
    for issue, key in (("8", "targets"), ("19", "targets_round_two")):
        out += [f"## Targets (issue {issue})", ""]
        rows = [[t["name"], f"**{t['status']}**", t["detail"]] for t in results.get(key, [])]
        out += _table(["target", "result", "measured"], rows)
    if "latency" in results:
        out += _latency_sections(results["latency"])
    out += _soak_section(results.get("soak"))
    out += _failover_section(results.get("failover"))
    out += _deploy_section(results.get("deploy"))
    if notes.strip():
        out += ["## What limits a missed target", "", notes.strip(), ""]
    return "\n".join(out)


def write_chart(results: dict[str, Any], path: Path) -> None:
    """latency.png: p50/p99 latency and added latency against concurrency, per target."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    targets = _ordered(_get(results, "latency", "targets") or {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, target in targets:
        runs = sorted(target.get("plain", []), key=lambda r: r["concurrency"])
        if not runs:
            continue
        known = name in TARGET_ORDER
        color = f"C{TARGET_ORDER.index(name) if known else len(TARGET_ORDER)}"
        xs = [r["concurrency"] for r in runs]
        for q, style in (("p50", "-o"), ("p99", "--s")):
            left.plot(xs, [r["latency_ms"][q] for r in runs], style, color=color,
                      label=f"{name} {q}")  # fmt: skip
            if name != "floor":
                right.plot(xs, [r.get("added_ms", {}).get(q) for r in runs], style, color=color,
                           label=f"{name} {q}")  # fmt: skip
    upstream = _get(results, "latency", "upstream_latency_ms")
    left.set_title(f"Latency (emulator answers after {upstream} ms)")
    left.set_ylabel("ms")
    right.set_title("Added over the floor")
    right.set_ylabel("ms")
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks([1, 8, 32], labels=["1", "8", "32"])
        axis.set_xlabel("concurrency")
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize="small")
    cores = _get(results, "machine", "cores")
    fig.suptitle(f"Non-streaming chat completions, {cores} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(results: dict[str, Any], out_dir: Path, notes: str = "") -> list[Path]:
    """Write results.json, results.md and latency.png into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.json", out_dir / "results.md", out_dir / "latency.png"]
    paths[0].write_text(json.dumps(results, indent=2) + "\n")
    paths[1].write_text(render_markdown(results, notes))
    write_chart(results, paths[2])
    return paths
