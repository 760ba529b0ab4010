"""Drive one target with `hey` and summarize what it measured.

hey (Debian package ``hey``) is a closed-loop load generator: each of its ``-c``
workers sends a request, reads the whole response, and sends the next one, until
``-z`` has passed. With ``-o csv`` it prints one line per request that got an
HTTP response::

    response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset

Times are in seconds; ``offset`` is when the request started, counted from the
start of the run. Time to first byte here is DNS+dialup + Request-write +
Response-delay: from the start of the request to the first byte of the answer
(Response-delay alone starts once the request is written).

hey leaves out of the CSV every request that got no HTTP response at all (a
refused or reset connection, its own ``-t`` timeout). Such a request still holds
its worker, so it leaves a hole in that worker's back-to-back chain of requests;
`unrecorded_failures` finds those holes, and they count as errors.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import math
import os
import shutil
import subprocess
import sys
from bisect import bisect_right, insort
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The lab's own network (molecule/default/molecule.yml); the benchmark talks to
# nothing else but 127.0.0.1.
LAB_NETWORK = ipaddress.ip_network("172.30.77.0/24")
# A worker that sat idle this long between two recorded requests, or stopped
# this long before the end of the run, had a request that got no HTTP answer.
# hey's own pause between two requests of a worker is well under a millisecond.
UNRECORDED_GAP_S = 0.2
# Offsets and times in the CSV are rounded to 0.1 ms.
_ROUNDING_S = 0.001
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True, slots=True)
class Sample:
    """One request that got an HTTP response."""

    latency_s: float
    ttfb_s: float
    status: int | None
    offset_s: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def parse_csv(text: str) -> list[Sample]:
    """Parse hey's ``-o csv`` output; a row with no usable status keeps ``status=None``."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    expected = {"response-time", "DNS+dialup", "Request-write", "Response-delay", "offset"}
    missing = expected - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"not hey's CSV output: columns {sorted(missing)} missing")
    samples = []
    for row in reader:
        status_text = (row.get("status-code") or "").strip()
        status = int(status_text) if status_text.isdigit() and int(status_text) > 0 else None
        samples.append(
            Sample(
                latency_s=float(row["response-time"]),
                ttfb_s=float(row["DNS+dialup"])
                + float(row["Request-write"])
                + float(row["Response-delay"]),
                status=status,
                offset_s=float(row["offset"]),
            )
        )
    return samples


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100), interpolated linearly between ranks; None if empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile out of range: {q}")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def unrecorded_failures(
    samples: Sequence[Sample], concurrency: int, duration_s: float, gap_s: float = UNRECORDED_GAP_S
) -> list[tuple[float, float]]:
    """Spans (start, end) in which some worker's requests got no HTTP response.

    Rebuilds the workers' chains: each recorded request, in order of start, takes
    the worker that became free most recently before it. A worker that waited more
    than ``gap_s`` for its next recorded request, or whose last recorded request
    ended more than ``gap_s`` before the end of the run (every worker is busy until
    hey stops it at ``duration_s``), spent that span in requests hey did not
    record. Each span counts as one failed request, however many it held: a lower
    bound.
    """
    free_at = [0.0] * concurrency  # sorted: when each worker became free
    holes: list[tuple[float, float]] = []
    for sample in sorted(samples, key=lambda s: s.offset_s):
        index = bisect_right(free_at, sample.offset_s + _ROUNDING_S) - 1
        # No free worker cannot happen with `concurrency` workers; take the earliest.
        since = free_at.pop(max(index, 0))
        if sample.offset_s - since > gap_s:
            holes.append((since, sample.offset_s))
        insort(free_at, sample.offset_s + sample.latency_s)
    holes.extend((since, duration_s) for since in free_at if since < duration_s - gap_s)
    return sorted(holes)


def _percentiles_ms(values: Sequence[float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for q in PERCENTILES:
        value = percentile(values, q)
        out[f"p{q}"] = None if value is None else round(value * 1000, 2)
    return out


def summarize(
    samples: Sequence[Sample], unrecorded: Sequence[tuple[float, float]], window_s: float
) -> dict[str, Any]:
    """Counts, rate of successful requests per second, and latency/TTFB percentiles in ms.

    Percentiles are over the successful requests only (an error answered at once
    would otherwise look fast).
    """
    good = [s for s in samples if s.ok]
    statuses = Counter("none" if s.status is None else str(s.status) for s in samples)
    return {
        "requests": len(samples) + len(unrecorded),
        "ok": len(good),
        "errors": len(samples) - len(good) + len(unrecorded),
        "no_response": len(unrecorded),
        "status": dict(sorted(statuses.items())),
        "window_s": window_s,
        "rps": round(len(good) / window_s, 2) if window_s > 0 else None,
        "latency_ms": _percentiles_ms([s.latency_s for s in good]),
        "ttfb_ms": _percentiles_ms([s.ttfb_s for s in good]),
    }


@dataclass
class LoadResult:
    """What one hey run measured; `samples` keep the offsets for splitting by time."""

    concurrency: int
    duration_s: float
    samples: list[Sample] = field(repr=False)
    unrecorded: list[tuple[float, float]] = field(default_factory=list)

    def window(self, start_s: float = 0.0, end_s: float | None = None) -> dict[str, Any]:
        """Summary of the requests that started in [start_s, end_s) (end: the run's end).

        A span without answers counts in every window it overlaps.
        """
        end = self.duration_s if end_s is None else end_s
        inside = [s for s in self.samples if start_s <= s.offset_s < end]
        holes = [(a, b) for a, b in self.unrecorded if a < end and b > start_s]
        return summarize(inside, holes, max(end - start_s, 0.0))

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "duration_s": self.duration_s,
            **summarize(self.samples, self.unrecorded, self.duration_s),
            "no_response_spans_s": [[round(a, 3), round(b, 3)] for a, b in self.unrecorded],
        }


def check_allowed_url(url: str) -> None:
    """Refuse any address but loopback and the lab's own network."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"benchmark URLs must use an IP address, not {host!r}") from None
    if not (address.is_loopback or address in LAB_NETWORK):
        raise ValueError(f"{url}: the benchmark only talks to 127.0.0.1 and {LAB_NETWORK}")


def hey_command(
    url: str,
    *,
    concurrency: int,
    timeout_s: float,
    body_file: Path,
    headers: Mapping[str, str],
    duration_s: float | None = None,
    requests: int | None = None,
    hey: str = "hey",
) -> list[str]:
    """The hey command line: bounded by a duration (-z) or a request count (-n), and -t."""
    if (duration_s is None) == (requests is None):
        raise ValueError("give exactly one of duration_s and requests")
    argv = [hey, "-c", str(concurrency), "-t", str(max(1, math.ceil(timeout_s)))]
    if duration_s is not None:
        argv += ["-z", f"{duration_s:g}s"]
    else:
        argv += ["-n", str(max(requests or 0, concurrency))]
    argv += ["-m", "POST", "-T", "application/json", "-D", str(body_file), "-o", "csv"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    return [*argv, url]


def run_hey(
    url: str,
    *,
    concurrency: int,
    timeout_s: float,
    body_file: Path,
    headers: Mapping[str, str],
    duration_s: float | None = None,
    requests: int | None = None,
) -> LoadResult:
    """Run hey once against ``url`` and return what it measured."""
    check_allowed_url(url)
    argv = hey_command(
        url,
        concurrency=concurrency,
        timeout_s=timeout_s,
        body_file=body_file,
        headers=headers,
        duration_s=duration_s,
        requests=requests,
        hey=ensure_hey(),
    )
    if duration_s is not None:
        hard_limit = duration_s + timeout_s + 30
    else:
        hard_limit = math.ceil((requests or 0) / concurrency) * timeout_s + 30
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=hard_limit, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"hey ran past its hard limit of {hard_limit:.0f}s: {url}") from None
    if done.returncode != 0:
        raise RuntimeError(f"hey failed ({done.returncode}) against {url}: {done.stderr.strip()}")
    samples = parse_csv(done.stdout)
    if duration_s is None:
        return LoadResult(concurrency, 0.0, samples)
    holes = unrecorded_failures(samples, concurrency, duration_s)
    return LoadResult(concurrency, duration_s, samples, holes)


def ensure_hey() -> str:
    """Path of hey, installing Debian's package first if it is missing."""
    found = shutil.which("hey")
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise SystemExit("the benchmark needs `hey`: install it with your package manager")
    print("[bench] installing Debian package: hey", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "hey"], check=True, env=env
    )
    found = shutil.which("hey")
    if not found:
        raise SystemExit("apt-get installed hey, but it is not on PATH")
    return found


def hey_version() -> str:
    probe = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "hey"], capture_output=True, text=True, check=False
    )
    return probe.stdout.strip() if probe.returncode == 0 else "unknown"
