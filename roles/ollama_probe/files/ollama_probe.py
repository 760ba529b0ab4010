#!/usr/bin/python3
"""Probe every Ollama host's API from this gateway, for Prometheus.

Run by ollama-probe.timer on each gateway host. Writes the result into the node
exporter's textfile folder (atomically), so the node exporter that Prometheus
already scrapes serves it:

    gateway_ollama_up{ollama="gpu-box",url="http://192.168.1.20:11434/api/version"} 1

The probe runs on the gateways, not on the monitoring host: it measures what
the gateway's routing sees, and the Ollama hosts' firewall stays closed to
everyone but the gateways.

usage: ollama_probe.py OUTPUT_FILE NAME=URL [NAME=URL ...]
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

TIMEOUT_S = 3.0


def probe(url: str) -> tuple[int, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:  # noqa: S310 - http(s) URLs from the inventory
            ok = 200 <= answer.status < 300
    except OSError:
        ok = False
    return int(ok), time.monotonic() - started


def render(targets: list[tuple[str, str]]) -> str:
    lines = [
        "# HELP gateway_ollama_up Whether this gateway reaches the Ollama host's API (1 or 0).",
        "# TYPE gateway_ollama_up gauge",
    ]
    durations = [
        "# HELP gateway_ollama_probe_seconds How long the last probe of the Ollama API took.",
        "# TYPE gateway_ollama_probe_seconds gauge",
    ]
    for name, url in targets:
        up, seconds = probe(url)
        labels = f'ollama="{name}",url="{url}"'
        lines.append(f"gateway_ollama_up{{{labels}}} {up}")
        durations.append(f"gateway_ollama_probe_seconds{{{labels}}} {seconds:.3f}")
    return "\n".join(lines + durations) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    output = Path(argv[1])
    targets = [tuple(arg.split("=", 1)) for arg in argv[2:]]
    partial = output.with_suffix(".prom.partial")
    partial.write_text(render([(n, u) for n, u in targets]))
    partial.replace(output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
