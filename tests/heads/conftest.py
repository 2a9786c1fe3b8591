"""Fixtures of the mer_heads tests (helpers live in synthetic_stores.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .synthetic_stores import make_stores


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three read-only stores (audio, text, video) of 120 labelled clips shared by the tests."""
    return make_stores(tmp_path_factory.mktemp("heads-stores"))
