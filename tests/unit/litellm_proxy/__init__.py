"""Unit tests of the litellm_proxy role's files."""
