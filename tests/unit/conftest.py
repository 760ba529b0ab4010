"""Unit tests run offline: LiteLLM must use the price map shipped in its package.

A test that needs a Docker engine and the lab's images (promtool in the
stand-in Prometheus image, the throwaway Postgres) is marked `engine`,
whether it says so itself or asks for one of the fixtures that start them;
`scripts/test.py unit` runs the others first, anywhere, in seconds.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ENGINE_FIXTURES = {"prometheus_image", "postgres", "db", "litellm_image", "litellm_image_config"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)
