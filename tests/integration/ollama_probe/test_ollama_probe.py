"""The ollama_probe role on the gateway: a timer that probes every Ollama host's
API and leaves the result in the node exporter's textfile folder.

Real: systemd and the probe on the lab's gateway host. Stand-in: the Ollama
server on the ollama host (tests/emulator/provider_emulator.py).
"""

from __future__ import annotations

from pathlib import Path

import testinfra
import yaml

REPO = Path(__file__).resolve().parents[3]
DEFAULTS = yaml.safe_load((REPO / "roles/ollama_probe/defaults/main.yml").read_text())


def test_the_ollama_probe_runs_on_its_timer_on_the_gateway(
    hosts: dict[str, testinfra.host.Host],
) -> None:
    gateway = hosts["gateway"]
    assert gateway.service("ollama-probe.timer").is_running
    assert gateway.service("ollama-probe.timer").is_enabled
    probe = gateway.file(f"{DEFAULTS['ollama_probe_textfile_dir']}/ollama_probe.prom")
    assert 'gateway_ollama_up{ollama="llmlab-ollama"' in probe.content_string
    assert 'url="http://172.30.77.11:11434/api/version"} 1' in probe.content_string


def test_the_probe_is_sandboxed_and_writes_only_the_textfile_folder(
    hosts: dict[str, testinfra.host.Host],
) -> None:
    shown = (
        hosts["gateway"]
        .run(
            "systemctl show ollama-probe.service -p NoNewPrivileges -p ProtectSystem "
            "-p PrivateDevices -p ReadWritePaths"
        )
        .stdout
    )
    assert "NoNewPrivileges=yes" in shown
    assert "ProtectSystem=strict" in shown
    assert "PrivateDevices=yes" in shown
    assert f"ReadWritePaths={DEFAULTS['ollama_probe_textfile_dir']}" in shown
