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


def import_hooks(path: Path, config: dict) -> None:
    """Import every callback and auth function the config names, as the proxy will:
    its config loader only logs a callback that fails to import, and the proxy then
    dies at start."""
    from litellm.proxy.types_utils.utils import get_instance_fn

    names = [
        c
        for c in (config.get("litellm_settings") or {}).get("callbacks") or []
        if isinstance(c, str) and "." in c
    ]
    custom_auth = (config.get("general_settings") or {}).get("custom_auth")
    if custom_auth:
        names.append(custom_auth)
    for name in names:
        try:
            get_instance_fn(value=name, config_file_path=str(path))
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            raise RuntimeError(f"{name} cannot be loaded: {reason}") from error


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
    config = yaml.safe_load(text) or {}
    wanted = [d["model_name"] for d in config.get("model_list") or []]
    # LiteLLM logs to stderr as it loads; only the verdict goes to stdout.
    logging.disable(logging.WARNING)
    try:
        import_hooks(path, config)
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
