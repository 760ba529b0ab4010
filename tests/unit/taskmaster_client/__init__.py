"""Unit tests of the taskmaster_client role's files."""
