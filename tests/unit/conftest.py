"""Unit tests run offline: LiteLLM must use the price map shipped in its package."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
