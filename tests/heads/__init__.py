"""Tests of mer_heads (a package, so its conftest and helpers do not shadow tests/conftest.py)."""
