"""scripts/lab.py: `down` must pass Molecule's validation of the scenario."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from scripts.lab import destroy_env

REPO = Path(__file__).resolve().parents[3]


def test_lab_down_gives_every_platform_an_image() -> None:
    """Molecule refuses to destroy a scenario whose platform has no image
    ("None is not of type 'string'"): every one must have a value in the
    environment `lab.py down` runs it with."""
    env = destroy_env()
    text = (REPO / "molecule/default/molecule.yml").read_text()
    expanded = re.sub(r"\$\{(\w+)(?::-[^}]*)?\}", lambda m: env.get(m.group(1), ""), text)
    platforms = yaml.safe_load(expanded)["platforms"]
    assert len(platforms) >= 5
    assert all(p["image"] == "unused-by-destroy" for p in platforms), platforms
