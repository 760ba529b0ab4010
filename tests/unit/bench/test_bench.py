"""The benchmark's pure parts: hey's CSV, percentiles, lost requests, targets, report.

No Docker, no network, no matplotlib: the runs themselves are exercised by
`python3 scripts/bench.py --local --quick`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from bench import load, report, targets

REPO = Path(__file__).resolve().parents[3]

# What `hey -o csv` printed against the emulator (trimmed), and a 500 and a 429.
HEY_CSV = """\
response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
0.0547,0.0002,0.0000,0.0004,0.0540,0.0001,200,0.0072
0.0560,0.0007,0.0000,0.0003,0.0547,0.0001,200,0.0066
0.0532,0.0000,0.0000,0.0000,0.0531,0.0001,500,0.0626
0.0539,0.0000,0.0000,0.0000,0.0538,0.0000,429,0.0619
0.0612,0.0000,0.0000,0.0001,0.0601,0.0010,200,1.2001
"""


def chain(starts_and_latencies: list[tuple[float, float]], status: int = 200) -> list[load.Sample]:
    return [load.Sample(lat, lat, status, start) for start, lat in starts_and_latencies]


def worker(start: float, latency: float, until: float) -> list[tuple[float, float]]:
    """One hey worker's back-to-back requests from ``start`` until it passes ``until``."""
    out, t = [], start
    while t < until:
        out.append((round(t, 4), latency))
        t += latency + 0.0002
    return out


# --- hey's CSV ---------------------------------------------------------------


def test_parse_csv_reads_every_column_we_use() -> None:
    samples = load.parse_csv(HEY_CSV)
    assert len(samples) == 5
    first = samples[0]
    assert first.latency_s == pytest.approx(0.0547)
    # TTFB from the start of the request: dial + write + wait for the first byte.
    assert first.ttfb_s == pytest.approx(0.0002 + 0.0004 + 0.0540)
    assert first.status == 200
    assert first.offset_s == pytest.approx(0.0072)
    assert [s.ok for s in samples] == [True, True, False, False, True]


def test_parse_csv_header_only_and_empty() -> None:
    header = HEY_CSV.splitlines()[0]
    assert load.parse_csv(header + "\n") == []
    assert load.parse_csv("") == []


def test_parse_csv_missing_status_is_an_error() -> None:
    text = HEY_CSV.splitlines()[0] + "\n0.05,0,0,0,0.05,0,,0.1\n0.05,0,0,0,0.05,0,0,0.2\n"
    samples = load.parse_csv(text)
    assert [s.status for s in samples] == [None, None]
    assert not any(s.ok for s in samples)


def test_parse_csv_rejects_other_output() -> None:
    with pytest.raises(ValueError, match="not hey's CSV"):
        load.parse_csv("Summary:\n  Total: 3.0 secs\n")


# --- percentiles and summaries --------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert load.percentile(values, 50) == pytest.approx(50.5)
    assert load.percentile(values, 99) == pytest.approx(99.01)
    assert load.percentile(values, 0) == 1.0
    assert load.percentile(values, 100) == 100.0
    assert load.percentile([3.0, 1.0, 2.0], 50) == 2.0  # order does not matter
    assert load.percentile([7.0], 99) == 7.0
    assert load.percentile([], 50) is None
    with pytest.raises(ValueError):
        load.percentile([1.0], 101)


def test_summary_counts_errors_and_rate_of_successes() -> None:
    samples = load.parse_csv(HEY_CSV)
    summary = load.summarize(samples, unrecorded=[(0.5, 0.9)], window_s=2.0)
    assert summary["requests"] == 6
    assert summary["ok"] == 3
    assert summary["errors"] == 3  # a 500, a 429 and one without any answer
    assert summary["no_response"] == 1
    assert summary["status"] == {"200": 3, "429": 1, "500": 1}
    assert summary["rps"] == 1.5
    # Percentiles over the three successes only: 54.7, 56.0, 61.2 ms.
    assert summary["latency_ms"]["p50"] == pytest.approx(56.0)
    assert summary["latency_ms"]["p99"] == pytest.approx(61.096, abs=0.01)
    assert summary["ttfb_ms"]["p50"] == pytest.approx(55.7)


def test_window_splits_by_start_offset() -> None:
    samples = load.parse_csv(HEY_CSV)
    result = load.LoadResult(
        concurrency=2, duration_s=3.0, samples=samples, unrecorded=[(2.0, 2.5)]
    )
    first = result.window(0, 1.0)
    after = result.window(1.0)
    assert (first["requests"], first["ok"], first["errors"]) == (4, 2, 2)
    assert (after["requests"], after["ok"], after["errors"]) == (2, 1, 1)
    assert after["window_s"] == 2.0
    assert after["rps"] == 0.5
    data = result.to_json()
    assert data["requests"] == 6 and data["no_response_spans_s"] == [[2.0, 2.5]]
    json.dumps(data)  # results.json must take it


def test_a_span_without_answers_counts_in_every_window_it_overlaps() -> None:
    # One worker failed from the start to the end; the other answered throughout.
    samples = chain(worker(0.003, 0.05, 3.0))
    result = load.LoadResult(2, 3.0, samples, load.unrecorded_failures(samples, 2, 3.0))
    assert result.unrecorded == [(0.0, 3.0)]
    assert result.window(0, 1.0)["errors"] == 1
    assert result.window(1.0)["errors"] == 1
    assert result.to_json()["errors"] == 1


# --- requests that hey's CSV leaves out ------------------------------------


def test_back_to_back_workers_lose_nothing() -> None:
    samples = chain(worker(0.003, 0.05, 3.0) + worker(0.004, 0.07, 3.0))
    assert load.unrecorded_failures(samples, concurrency=2, duration_s=3.0) == []


def test_a_request_without_answer_leaves_a_hole() -> None:
    # Worker 2 sent a request at 1.0 s that timed out after 0.8 s (hey drops it).
    w2 = worker(0.004, 0.05, 1.0) + worker(1.8, 0.05, 3.0)
    holes = load.unrecorded_failures(chain(worker(0.003, 0.05, 3.0) + w2), 2, 3.0)
    assert len(holes) == 1
    start, end = holes[0]
    assert 0.95 < start <= 1.01
    assert end == 1.8


def test_a_worker_that_stops_answering_is_counted_at_the_end() -> None:
    # Worker 2's connection broke at 2 s and every later request failed at once.
    samples = chain(worker(0.003, 0.05, 3.0) + worker(0.004, 0.05, 2.0))
    holes = load.unrecorded_failures(samples, concurrency=2, duration_s=3.0)
    assert len(holes) == 1
    start, end = holes[0]
    assert 1.9 < start < 2.1
    assert end == 3.0


def test_nothing_answered_at_all() -> None:
    assert load.unrecorded_failures([], concurrency=3, duration_s=5.0) == [(0.0, 5.0)] * 3


def test_slow_answers_longer_than_the_run_are_not_holes() -> None:
    samples = chain([(0.001, 7.5), (0.002, 7.4)])
    assert load.unrecorded_failures(samples, concurrency=2, duration_s=5.0) == []


# --- the hey command line and where it may go --------------------------------


def test_hey_command_is_bounded() -> None:
    argv = load.hey_command(
        "https://172.30.77.10/v1/chat/completions",
        concurrency=32,
        timeout_s=20,
        body_file=Path("/x/body.json"),
        headers={"Authorization": "Bearer k"},
        duration_s=30,
    )
    assert argv[0] == "hey" and argv[-1] == "https://172.30.77.10/v1/chat/completions"
    joined = " ".join(argv)
    for part in ("-c 32", "-t 20", "-z 30s", "-m POST", "-D /x/body.json", "-o csv"):
        assert part in joined
    assert argv[argv.index("-H") + 1] == "Authorization: Bearer k"
    warmup = load.hey_command(
        "http://127.0.0.1:1/", concurrency=4, timeout_s=2.5, body_file=Path("b"), headers={},
        requests=8,
    )  # fmt: skip
    assert "-n" in warmup and "-z" not in warmup and warmup[warmup.index("-t") + 1] == "3"
    with pytest.raises(ValueError):
        load.hey_command("http://127.0.0.1/", concurrency=1, timeout_s=1, body_file=Path("b"),
                         headers={})  # fmt: skip


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/v1", "http://localhost:4000/", "https://172.30.77.10/v1",
     "http://172.30.77.13:8080/_control"],
)  # fmt: skip
def test_allowed_urls(url: str) -> None:
    load.check_allowed_url(url)


@pytest.mark.parametrize(
    "url", ["https://api.openai.com/v1", "http://10.0.0.5/", "http://172.30.78.1/", "http://x/"]
)
def test_other_hosts_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        load.check_allowed_url(url)


# --- targets: config, env file, memory ----------------------------------------


def test_shipped_config_is_one_model_on_the_emulator() -> None:
    config = json.loads(targets.shipped_config("http://172.30.77.13:8080/v1"))
    (model,) = config["model_list"]
    assert model["model_name"] == "gpt-4o-mini"
    assert model["litellm_params"] == {
        "model": "openai/gpt-4o-mini",
        "api_base": "http://172.30.77.13:8080/v1",
        "api_key": "sk-bench-not-a-real-key",
    }
    # Nothing but the master key LiteLLM insists on: its defaults otherwise.
    assert config["general_settings"] == {"master_key": targets.SHIPPED_MASTER_KEY}
    assert set(config) == {"model_list", "general_settings"}


def test_parse_env_file() -> None:
    text = (
        "# Written by scripts/lab.py\n"
        "export GATEWAY_URL=https://127.0.0.1:14000\n"
        "GATEWAY_KEY='sk-abc=def'\n"
        'EMULATOR_URL="http://127.0.0.1:18080"\n'
        "\n"
        "not a line\n"
    )
    assert targets.parse_env_file(text) == {
        "GATEWAY_URL": "https://127.0.0.1:14000",
        "GATEWAY_KEY": "sk-abc=def",
        "EMULATOR_URL": "http://127.0.0.1:18080",
    }


def test_sum_rss_of_docker_top() -> None:
    assert targets.sum_rss_kib("RSS\n123456\n2048\n") == 125504
    assert targets.sum_rss_kib("RSS\n") == 0
    assert targets.sum_rss_kib("PID   RSS\n3842  1000\n4051  24\n") == 1024


def test_proc_tree_rss(tmp_path: Path) -> None:
    procs = {10: (1, 1000), 11: (10, 200), 12: (11, 30), 20: (1, 5000)}
    for pid, (ppid, rss) in procs.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "status").write_text(
            f"Name:\tx\nPPid:\t{ppid}\nVmRSS:\t   {rss} kB\n"
        )
    (tmp_path / "self").mkdir()
    assert targets.proc_tree_rss_kib(10, proc=tmp_path) == 1230
    assert targets.proc_tree_rss_kib(20, proc=tmp_path) == 5000


CPU_STAT = """\
usage_usec 81234567
user_usec 70000000
system_usec 11234567
nr_periods 0
"""


V1_CGROUP = """\
13:hugetlb:/docker/4f1e
4:memory:/docker/4f1e
2:cpuacct:/docker/4f1e
1:cpu:/docker/4f1e
0::/docker/4f1e
"""


def test_cgroup_counters_on_v2_and_v1_hosts() -> None:
    v2 = targets.cgroup_counters("0::/system.slice/docker-4f1e.scope\n")
    assert v2 == {
        "cpu": ("/sys/fs/cgroup/system.slice/docker-4f1e.scope/cpu.stat", "usage_usec"),
        "memory": ("/sys/fs/cgroup/system.slice/docker-4f1e.scope/memory.stat", "anon"),
    }
    assert targets.cpu_usec_of(v2, CPU_STAT) == 81234567
    # A v1 (hybrid) host, as the lab's: the v2 tree has no controllers there.
    v1 = targets.cgroup_counters(V1_CGROUP)
    assert v1 == {
        "cpu": ("/sys/fs/cgroup/cpuacct/docker/4f1e/cpuacct.usage", ""),
        "memory": ("/sys/fs/cgroup/memory/docker/4f1e/memory.stat", "total_rss"),
    }
    assert targets.cpu_usec_of(v1, "81234567890\n") == 81234567
    stat = "cache 4096\nrss 1024\ntotal_rss 419430400\n"
    assert targets.counter_value(stat, "total_rss") == 419430400
    assert targets.counter_value("file 4096\nanon 2048\n", "anon") == 2048
    with pytest.raises(ValueError, match="no anon"):
        targets.counter_value("file 1\n", "anon")
    with pytest.raises(ValueError, match="no cgroup"):
        targets.cgroup_counters("12:pids:/docker/4f1e\n")


def test_stat_cpu_ticks_reads_past_a_name_with_spaces() -> None:
    fields = ["S", "7", *["0"] * 9, "100", "20", "5", "1", "20"]
    assert targets.stat_cpu_ticks(f"42 (haproxy (worker) x) {' '.join(fields)}\n") == (7, 126)


def test_proc_tree_cpu_counts_the_tree_and_what_it_reaped(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    # pid: (ppid, utime, stime, cutime, cstime) in clock ticks; a name with spaces.
    procs = {10: (1, 100, 20, 5, 1), 11: (10, 30, 10, 0, 0), 20: (1, 999, 999, 0, 0)}
    for pid, (ppid, *times) in procs.items():
        (tmp_path / str(pid)).mkdir()
        fields = ["S", str(ppid), *["0"] * 9, *map(str, times), "20", "0"]
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (uvicorn worker) {' '.join(fields)}\n")
    (tmp_path / "self").mkdir()
    assert targets.proc_tree_cpu_usec(10, proc=tmp_path) == 166 * 1_000_000 // ticks


def test_cpu_per_request_is_the_difference_over_the_requests() -> None:
    from scripts.bench import cpu_per_request

    found = cpu_per_request(
        {"proxy": 1_000_000, "front": 500_000}, {"proxy": 31_000_000, "front": 2_000_000}, 6000
    )
    assert found == {
        "requests": 6000,
        "seconds": {"proxy": 30.0, "front": 1.5},
        "ms_per_request": {"proxy": 5.0, "front": 0.25},
    }
    assert cpu_per_request({}, {}, 10)["ms_per_request"] == {}
    assert cpu_per_request({"proxy": 0}, {"proxy": 5}, 0)["ms_per_request"] == {"proxy": None}


# --- the targets of issue 8 -------------------------------------------------


def _run(concurrency: int, p50: float, p99: float, **extra: object) -> dict:
    return {
        "concurrency": concurrency,
        "duration_s": 10,
        "requests": 100,
        "ok": 100,
        "errors": 0,
        "rps": 50.0,
        "latency_ms": {"p50": p50, "p90": p99, "p99": p99},
        "ttfb_ms": {"p50": p50, "p90": p99, "p99": p99},
        **extra,
    }


def _sustained(rps: float, errors: int = 0, seconds: float = 30) -> dict:
    return _run(32, 60, 90, rps=rps, errors=errors, duration_s=seconds)


def results_with(
    gateway_rps: float | None = 300.0,
    gateway_errors: int = 0,
    shipped_rps: float = 100.0,
    gateway_c1_p50: float | None = 56.0,
    shipped_c1_p50: float = 58.0,
    sustain_s: float = 30,
    failover_after_p50: float | None = 65.0,
    failover_after_errors: int = 0,
    rerun_s: float | None = 45.0,
) -> dict:
    latency_targets: dict = {
        "floor": {"plain": [_run(1, 50.0, 52.0)], "stream": [_run(1, 50.0, 52.0)]},
        "shipped": {
            "plain": [_run(1, shipped_c1_p50, 70.0)],
            "stream": [_run(1, 55.0, 60.0)],
            "sustained": _sustained(shipped_rps, seconds=sustain_s),
        },
    }
    if gateway_rps is not None:
        latency_targets["gateway"] = {
            "plain": [] if gateway_c1_p50 is None else [_run(1, gateway_c1_p50, 61.0)],
            "stream": [],
            "sustained": _sustained(gateway_rps, gateway_errors, sustain_s),
        }
    latency = {"upstream_latency_ms": 50, "targets": latency_targets, "skipped": {}}
    report.fill_added(latency)
    results: dict = {"latency": latency}
    if failover_after_p50 is not None:
        failover = {
            "model": "balanced",
            "concurrency": 8,
            "duration_s": 10,
            "preferred": "gemini",
            "fallback": "anthropic",
            "healthy": _run(8, 52.0, 60.0),
            "modes": {
                "down": {
                    "first_second": _run(8, 80.0, 400.0, errors=2),
                    "after": _run(8, failover_after_p50, 70.0, errors=failover_after_errors),
                }
            },
        }
        report.fill_failover_extra(failover)
        results["failover"] = failover
    else:
        results["failover"] = {"skipped": "no gateway in the local environment"}
    results["deploy"] = (
        {"skipped": "not wired"}
        if rerun_s is None
        else {
            "converge_fresh_s": 400.0,
            "idempotent_rerun_s": rerun_s,
            "idempotent_rerun_changed": 0,
        }
    )
    results["targets"] = report.evaluate(results)
    return results


def statuses(results: dict) -> list[str]:
    return [t["status"] for t in results["targets"]]


def test_added_latency_is_over_the_floor_at_the_same_concurrency() -> None:
    results = results_with()
    gateway_c1 = results["latency"]["targets"]["gateway"]["plain"][0]
    assert gateway_c1["added_ms"] == {"p50": 6.0, "p99": 9.0}
    floor_c1 = results["latency"]["targets"]["floor"]["plain"][0]
    assert floor_c1["added_ms"] == {"p50": 0.0, "p99": 0.0}
    extra = results["failover"]["modes"]["down"]["extra_ms"]
    assert extra["after"] == {"p50": 13.0, "p99": 10.0}
    assert extra["first_second"] == {"p50": 28.0, "p99": 340.0}


def test_all_targets_met() -> None:
    assert statuses(results_with()) == ["met"] * 4


def test_rate_target() -> None:
    assert statuses(results_with(gateway_rps=199.0))[0] == "missed"
    assert statuses(results_with(gateway_rps=200.0))[0] == "met"  # exactly 2x holds
    assert statuses(results_with(gateway_errors=1))[0] == "missed"
    assert statuses(results_with(gateway_rps=None))[0] == "not measured"
    # A quick run of 5 s is not the 30 s of the target, whatever its numbers.
    assert statuses(results_with(sustain_s=5))[0] == "not measured"
    assert statuses(results_with(gateway_rps=100.0, sustain_s=5))[0] == "not measured"


def test_added_p50_target() -> None:
    # 10 ms over the floor is the limit (floor p50 is 50 ms).
    assert statuses(results_with(gateway_c1_p50=60.0, shipped_c1_p50=70.0))[1] == "met"
    assert statuses(results_with(gateway_c1_p50=60.1, shipped_c1_p50=70.0))[1] == "missed"
    # Under 10 ms but more than shipped adds.
    assert statuses(results_with(gateway_c1_p50=57.0, shipped_c1_p50=56.0))[1] == "missed"
    assert statuses(results_with(gateway_rps=None))[1] == "not measured"
    assert statuses(results_with(gateway_c1_p50=None))[1] == "not measured"


def test_failover_target() -> None:
    assert statuses(results_with(failover_after_p50=72.0))[2] == "met"  # healthy 52 + 20
    assert statuses(results_with(failover_after_p50=72.5))[2] == "missed"
    assert statuses(results_with(failover_after_errors=1))[2] == "missed"
    assert statuses(results_with(failover_after_p50=None))[2] == "not measured"


def test_rerun_target() -> None:
    assert statuses(results_with(rerun_s=59.9))[3] == "met"
    assert statuses(results_with(rerun_s=60.0))[3] == "missed"
    assert statuses(results_with(rerun_s=None))[3] == "not measured"


def test_local_run_measures_no_target() -> None:
    results = results_with(gateway_rps=None, failover_after_p50=None, rerun_s=None)
    assert statuses(results) == ["not measured"] * 4


# --- Markdown ----------------------------------------------------------------


# --- the targets of issue 19 ------------------------------------------------


def round_two(
    gateway_cpu: float | None = 4.0,
    shipped_cpu: float | None = 5.0,
    gateway_kib: int | None = 580_000,
    shipped_kib: int | None = 400_000,
    **kwargs: float | None,
) -> list[str]:
    results = results_with(**kwargs)  # type: ignore[arg-type]
    latency = results["latency"]["targets"]
    for name, cpu, kib in (
        ("gateway", gateway_cpu, gateway_kib),
        ("shipped", shipped_cpu, shipped_kib),
    ):
        if name not in latency:
            continue
        latency[name]["memory_kib"] = kib
        if cpu is not None:
            latency[name]["sustained"]["cpu"] = {"ms_per_request": {"proxy": cpu}}
    return [t["status"] for t in report.evaluate_round_two(results)]


def test_round_two_targets_all_met() -> None:
    # Rate 3x, added p50 6 ms against shipped's 8 ms, CPU 0.8x, memory 1.45x.
    assert round_two() == ["met"] * 4


def test_round_two_cpu_target() -> None:
    assert round_two(gateway_cpu=5.0)[0] == "met"  # equal holds
    assert round_two(gateway_cpu=5.01)[0] == "missed"
    assert round_two(gateway_cpu=None)[0] == "not measured"
    assert round_two(shipped_cpu=None)[0] == "not measured"


def test_round_two_memory_target() -> None:
    assert round_two(gateway_kib=600_000)[1] == "met"  # exactly 1.5x
    assert round_two(gateway_kib=600_001)[1] == "missed"
    assert round_two(gateway_kib=None)[1] == "not measured"


def test_round_two_latency_and_rate_targets() -> None:
    # shipped adds 8 ms at c=1 (58 over a 50 ms floor): the gateway may add 9.
    assert round_two(gateway_c1_p50=59.0)[2] == "met"
    assert round_two(gateway_c1_p50=59.1)[2] == "missed"
    assert round_two(gateway_rps=150.0)[3] == "met"  # 1.5x holds, 2x is the stretch
    assert round_two(gateway_rps=149.0)[3] == "missed"
    assert round_two(gateway_rps=300.0, gateway_errors=1)[3] == "missed"
    assert round_two(gateway_rps=None) == ["not measured"] * 4


def test_markdown_has_the_numbers() -> None:
    results = results_with(gateway_rps=150.0)
    results["machine"] = {
        "cores": 2,
        "cpu_model": "Test CPU",
        "memory_kib": 25165824,
        "kernel": "6.1.0",
        "hey_version": "0.1.4-2",
        "litellm_version": "1.106.2",
        "date": "2026-01-01T00:00:00+00:00",
        "git_commit": "abc123",
    }
    results["latency"]["targets"]["shipped"]["memory_kib"] = 382520
    text = report.render_markdown(results, notes="HAProxy's TLS costs 2 ms.")
    assert "2 cores (Test CPU), 24.0 GiB" in text
    assert "hey 0.1.4-2, LiteLLM 1.106.2" in text
    # The rate target with its figures, missed.
    assert re.search(
        r"2x shipped's rate.*\| \*\*missed\*\* \| 150\.0 vs 100\.0 req/s = 1\.50x", text
    )
    assert "| gateway | 1 | 56.0 | 61.0 | 6.0 | 9.0 | 50.0 | 0 |" in text
    assert "| shipped | 32 | 30 | 100.0 | 0 | held | n/a | n/a |" in text
    assert "| shipped | 373.6 | n/a |" in text
    assert "| floor | no proxy | n/a |" in text
    assert "| down | after | 100 | 0 | 65.0 | 70.0 | 13.0 | 10.0 |" in text
    assert "| idempotent re-run of site.yml (changed=0) | 45.0 |" in text
    assert "HAProxy's TLS costs 2 ms." in text


def test_markdown_says_what_was_not_measured() -> None:
    results = results_with(gateway_rps=None, failover_after_p50=None, rerun_s=None)
    results["latency"]["skipped"] = {"gateway": "runs only in the lab"}
    text = report.render_markdown(results)
    assert "- gateway: not measured (runs only in the lab)" in text
    assert "Not measured: no gateway in the local environment." in text
    assert "Not measured: not wired." in text
    assert text.count("**not measured**") == 4  # issue 19's are not evaluated here


def test_markdown_shows_cpu_per_request_and_the_soak() -> None:
    results = results_with()
    sustained = results["latency"]["targets"]["gateway"]["sustained"]
    sustained["cpu"] = {"ms_per_request": {"proxy": 4.25, "front": 0.5}}
    results["soak"] = {
        "concurrency": 32,
        "targets": {
            "gateway": {
                "points": [
                    {"requests": 0, "memory_kib": 1024 * 1100},
                    {"requests": 1000, "memory_kib": 1024 * 1150},
                    {"requests": 20000, "memory_kib": 1024 * 1160, "anon_memory_kib": 1024 * 800},
                ],
                "errors": 0,
            },
            "shipped": {"skipped": "not here"},
        },
    }
    results["targets_round_two"] = report.evaluate_round_two(results)
    text = report.render_markdown(results)
    assert "## Targets (issue 19)" in text
    assert "| gateway | 32 | 30 | 300.0 | 0 | held | 4.25 | 0.50 |" in text
    assert "| gateway | 20000 | 1160.0 | 800.0 | 0 |" in text
    assert "| gateway | 1000 | 1150.0 | n/a |  |" in text
    assert "| shipped | not measured | not here |  |  |" in text


# --- the files that run it -------------------------------------------------


def test_bench_requirements_are_pinned_and_include_the_tests() -> None:
    """The bench's source asks for the tests' and matplotlib; its lock (hashes and all,
    tests/unit/project/test_pins.py checks the format) holds every test package."""
    source = [
        line.strip()
        for line in (REPO / "requirements-bench.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "-r requirements-test.in" in source
    assert any(line.startswith("matplotlib==") for line in source)
    lock = (REPO / "requirements-bench.txt").read_text()
    tests = (REPO / "requirements-test.txt").read_text()
    pins = re.compile(r"^([A-Za-z0-9_.\-]+==\S+)", re.MULTILINE)
    assert set(pins.findall(tests)) <= set(pins.findall(lock))
    assert re.search(r"^matplotlib==", lock, re.MULTILINE)


def test_make_bench_runs_the_script() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^bench:.*\n\t\$\(PYTHON\) scripts/bench\.py$", makefile, re.MULTILINE)


def test_local_stream_bodies_and_section(tmp_path: Path) -> None:
    from scripts.bench import write_body

    ollama = json.loads(write_body(tmp_path, "llama3.2:1b", stream=True, ollama=True).read_text())
    assert ollama["stream"] is True
    assert ollama["options"] == {"num_predict": 16}
    assert "max_tokens" not in ollama
    openai = json.loads(write_body(tmp_path, "llama3.2:1b", stream=True).read_text())
    assert openai["stream"] is True
    assert openai["max_tokens"] == 16
    results = results_with()
    results["latency"]["local_stream"] = {
        "model": "llama3.2:1b",
        "targets": {"ollama": _run(1, 20.0, 25.0), "gateway": _run(1, 31.0, 40.0)},
        "added_ttfb_ms": {"p50": 11.0, "p99": 15.0},
    }
    text = report.render_markdown(results)
    assert "| ollama | 100 | 0 | 20.0 | 25.0 |" in text
    assert "| added by the gateway |  |  | 11.0 | 15.0 |" in text
    results["latency"]["local_stream"] = {"skipped": "no Ollama host here"}
    assert "Not measured: no Ollama host here." in report.render_markdown(results)


def test_the_ollama_host_dying_has_its_table() -> None:
    results = results_with()
    results["failover"]["ollama_down"] = {
        "model": "cheap",
        "killed_at_s": 3.0,
        "healthy": _run(1, 12.0, 15.0),
        "first_second": _run(1, 70.0, 90.0, requests=9, errors=1),
        "after": _run(1, 60.0, 66.0),
    }
    text = report.render_markdown(results)
    assert "3.0 s into the run" in text
    assert "| host up | 100 | 0 | 12.0 | 15.0 |" in text
    assert "| first second after it died | 9 | 1 | 70.0 | 90.0 |" in text
    results["failover"]["ollama_down"] = {"skipped": "no Ollama host in the local environment"}
    assert "Not measured: no Ollama host in the local environment." in report.render_markdown(
        results
    )
