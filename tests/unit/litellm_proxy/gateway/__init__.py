"""Unit tests of the gateway package (roles/litellm_proxy/files/gateway), one module per module."""
