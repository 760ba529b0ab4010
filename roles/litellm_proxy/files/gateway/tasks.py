"""The task-id grammar: which task a model call served.

The task comes from a ``task:<id>`` request tag (the ``x-litellm-tags`` header,
or ``tags`` / ``metadata.tags`` in the body; LiteLLM does not forward tags
upstream). An id is a letter or digit, then up to 63 letters, digits, dots,
underscores or hyphens. Subtask ids (``12.3``) are kept as they are; budgets
and metrics roll them up into their parent (``12``). ``*`` names every task,
in budgets only. Untagged calls count under ``none`` in the metrics.

taskcost (roles/taskmaster_client/files/taskcost.py) runs on workstations on
its own and keeps a copy of ``TASK_ID``; a unit test proves the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

TASK_TAG = "task:"
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NO_TASK = "none"


def task_root(task: str) -> str:
    """`12.3` -> `12`: the top-level task a subtask belongs to."""
    return task.split(".", 1)[0]


def task_from_tags(tags: Iterable[Any] | None) -> str | None:
    """The id in the first well-formed `task:<id>` tag, if any."""
    for tag in tags or ():
        if isinstance(tag, str) and tag.strip().startswith(TASK_TAG):
            candidate = tag.strip()[len(TASK_TAG) :].strip()
            if TASK_ID.match(candidate):
                return candidate
    return None


def valid_task(task: str) -> bool:
    return bool(TASK_ID.match(task)) or task == "*"
