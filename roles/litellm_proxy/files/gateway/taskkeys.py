"""Task keys: an application's calls bound to one task, checked without a database.

A task key is ``sk-task-<payload>.<signature>``. The payload is the unpadded
base64url of the JSON ``{"exp": <unix seconds>, "task": <id>}``; the signature
is the unpadded base64url of HMAC-SHA256 over ``sk-task-<payload>`` with the
application's *signing key*, HMAC-SHA256(application key, ``llm-gateway task
key v1``). The key names no application: the gateway finds it by the
signature, checking it against each application's signing key (a handful of
HMACs, each compared in constant time), so a workstation needs nothing but
its application key to mint one.

Why signed with the application key and not with a secret of its own: a task
key can do less than the key of its application (the same aliases, counted in
the same per-minute window, and one task), and whoever holds the application
key may already tag its calls with any task. So the holder of an application
key mints the task keys of that application (taskcost does, on the
workstation), the workstation holds no secret that mints keys for anybody
else, and issuing one writes nothing anywhere. A task key ends at its expiry,
which the gateway holds to at most ``GATEWAY_TASK_KEY_MAX_TTL`` seconds ahead;
rotating the application key (playbooks/rotate.yml) ends all of its task keys
at once. There is no list of revoked keys to keep in step across gateways.

taskcost (roles/taskmaster_client/files/taskcost.py) runs on workstations on
its own and mints with a copy of :func:`mint`; a unit test proves the two agree.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import NamedTuple

from gateway.tasks import TASK_ID

PREFIX = "sk-task-"
CONTEXT = b"llm-gateway task key v1"
# Far more than a payload with a 64-character task id needs; a longer "key"
# is refused before any decoding.
MAX_LENGTH = 512


class TaskKey(NamedTuple):
    """What a task key claims: its task and when it ends."""

    task: str
    expires: int


class TaskKeyError(ValueError):
    """A task key that must be refused; the message says why, without the key."""


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signing_key(app_key: str) -> bytes:
    """The key task keys of an application are signed with (not the application key itself)."""
    return hmac.new(app_key.encode(), CONTEXT, hashlib.sha256).digest()


def _signature(key: bytes, signed: str) -> bytes:
    return hmac.new(key, signed.encode(), hashlib.sha256).digest()


def mint(app_key: str, task: str, expires: int) -> str:
    """The task key for ``task`` of the application whose key is ``app_key``, until ``expires``."""
    claim = {"exp": int(expires), "task": task}
    signed = PREFIX + _encode(json.dumps(claim, separators=(",", ":"), sort_keys=True).encode())
    return f"{signed}.{_encode(_signature(signing_key(app_key), signed))}"


def read(presented: str) -> tuple[TaskKey, str, bytes]:
    """The claim of a task key, the part that was signed and its signature; not yet checked."""
    if not presented.startswith(PREFIX) or len(presented) > MAX_LENGTH or presented.count(".") != 1:
        raise TaskKeyError("malformed task key")
    signed, signature = presented.split(".")
    try:
        claim = json.loads(_decode(signed[len(PREFIX) :]))
        raw_signature = _decode(signature)
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise TaskKeyError("malformed task key") from error
    if not isinstance(claim, dict):
        raise TaskKeyError("malformed task key")
    task, expires = claim.get("task"), claim.get("exp")
    if (
        not isinstance(task, str)
        or not TASK_ID.match(task)
        or not isinstance(expires, int)
        or isinstance(expires, bool)
    ):
        raise TaskKeyError("malformed task key")
    return TaskKey(task, expires), signed, raw_signature


def check(
    presented: str, signing_keys: Mapping[str, bytes], now: float, max_ttl: float
) -> tuple[str, TaskKey]:
    """(the application whose signing key signed it, its claim) if it is current.

    Every application's signature is computed and compared, in constant time,
    whichever matches; TaskKeyError says why a key is refused."""
    claim, signed, signature = read(presented)
    signer = None
    for app, key in signing_keys.items():
        if hmac.compare_digest(signature, _signature(key, signed)):
            signer = app
    if signer is None:
        raise TaskKeyError("invalid task key")
    if claim.expires <= now:
        raise TaskKeyError(f"task key for task {claim.task} has expired")
    if claim.expires > now + max_ttl:
        raise TaskKeyError(
            f"task key for task {claim.task} lives longer than this gateway allows "
            f"({max_ttl / 3600:g} h); get a shorter one"
        )
    return signer, claim


def within(task: str, tagged: str) -> bool:
    """Whether a call tagged ``tagged`` belongs to ``task``: the task itself or a subtask."""
    return tagged == task or tagged.startswith(task + ".")
