"""The real data beside the checkout (../shared/data): :func:`shared_data` gives a path under it
and skips the test when it is absent. Tests import it from here (never from conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

RUNNING: list[pytest.Item] = []
"""The test being run (conftest.py's autouse fixture pushes it), so that :func:`shared_data` can
check its marker."""


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data; skips the test when it is absent.

    A test reading it must be marked ``@pytest.mark.shared_data`` (``make test-quick`` leaves
    those out); an unmarked one fails here, so the marker cannot be forgotten.
    """
    if RUNNING and RUNNING[-1].get_closest_marker("shared_data") is None:
        pytest.fail(f"{RUNNING[-1].nodeid} reads ../shared/data: mark it "
                    "@pytest.mark.shared_data", pytrace=False)
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available at {path}")
    return path
