#!/usr/bin/env python3
"""Bring the lab up and leave it running, or take it down.

python3 scripts/lab.py up     # converge the default scenario, write .lab/env
python3 scripts/lab.py down   # destroy it, remove .lab/env
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.bootstrap import reexec_in_venv  # noqa: E402


def destroy_env() -> dict[str, str]:
    """Molecule validates the scenario before it destroys it, so every image the
    platforms name needs a value, although destroying uses none of them."""
    scenario = (REPO / "molecule/default/molecule.yml").read_text()
    names = sorted(set(re.findall(r"\$\{(LAB_\w+_IMAGE)\}", scenario)))
    return dict.fromkeys(names, "unused-by-destroy")


def stopped_lab_hosts() -> list[str]:
    """The lab's containers that exist but have stopped (the machine restarted):
    Molecule counts them as created and would converge hosts that are off."""
    scenario = (REPO / "molecule/default/molecule.yml").read_text()
    platforms = set(re.findall(r"^  - name: (\S+)$", scenario, re.M))
    listed = subprocess.run(
        ["docker", "ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return sorted(platforms & set(listed.stdout.split()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "converge", "verify"])
    args = parser.parse_args()
    reexec_in_venv(REPO / "requirements-test.txt")
    from tests.lab import lab

    bin_dir = Path(sys.executable).parent
    if args.action == "down":
        code = lab.molecule(bin_dir, "destroy", destroy_env())
        (lab.LAB_DIR / "env").unlink(missing_ok=True)
        return code
    env = lab.prepare()
    stopped = stopped_lab_hosts()
    if stopped and args.action in ("up", "converge"):
        print(f"lab hosts stopped since they were made ({', '.join(stopped)}): making them anew")
        if lab.molecule(bin_dir, "destroy", destroy_env()) != 0:
            return 1
    env_file = lab.write_env(bin_dir, env)
    code = lab.molecule(bin_dir, "verify" if args.action == "verify" else "converge", env)
    if code == 0:
        print(f"lab is up; `source {env_file}` for GATEWAY_URL, GATEWAY_KEY, ...")
    return code


if __name__ == "__main__":
    sys.exit(main())
