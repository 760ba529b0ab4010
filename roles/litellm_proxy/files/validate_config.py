"""Check a LiteLLM config the way the proxy itself loads it, before it replaces the running one.

Run inside the proxy's own image (same LiteLLM release), with no network:

    python3 validate_config.py /app/config.yaml

Loads the file with the proxy's own config loader (which also imports the
callbacks it names), then checks that the router kept every deployment: LiteLLM
drops a deployment it cannot parse with no more than a log line, and a proxy
that starts without its models is worse than one that refuses to start.
Secrets are never needed: every `os.environ/NAME` reference gets a placeholder.
Exit 0 when valid; otherwise 1 and one line saying why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from pathlib import Path

import yaml

PLACEHOLDER = "sk-validation-placeholder-00000000000000000000"


async def load(path: Path) -> list[str]:
    from litellm.proxy.proxy_server import ProxyConfig

    router, _model_list, _general = await ProxyConfig().load_config(
        router=None, config_file_path=str(path)
    )
    if router is None:
        return []
    return [d["model_name"] for d in router.get_model_list() or []]


def main(argv: list[str]) -> int:
    path = Path(argv[1])
    text = path.read_text()
    for name in set(re.findall(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)", text)):
        os.environ.setdefault(name, PLACEHOLDER)
    wanted = [d["model_name"] for d in (yaml.safe_load(text) or {}).get("model_list") or []]
    # LiteLLM logs to stderr as it loads; only the verdict goes to stdout.
    logging.disable(logging.WARNING)
    try:
        loaded = asyncio.run(load(path))
    except Exception as error:  # every failure becomes one readable line
        print(f"invalid LiteLLM config: {type(error).__name__}: {error}")
        return 1
    missing = sorted(set(wanted) - set(loaded)) or (
        ["(some deployments)"] if len(loaded) < len(wanted) else []
    )
    if missing:
        print(
            "invalid LiteLLM config: the router dropped deployment(s) of "
            f"{', '.join(missing)}; see the proxy log for the field it rejected"
        )
        return 1
    print(f"valid LiteLLM config: {len(loaded)} deployments")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
