"""Names of a certificate as the community.crypto modules want them."""

from __future__ import annotations

import ipaddress
from typing import Any


def local_tls_san(name: str) -> str:
    """A subject alternative name: ``IP:...`` for an address, else ``DNS:...``."""
    text = str(name).strip()
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return f"DNS:{text}"
    return f"IP:{text.strip('[]')}"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"local_tls_san": local_tls_san}
