"""Tests import helpers from helper modules (tests/synthetic_media.py, tests/real_data.py,
tests/store_checks.py, tests/heads/synthetic_stores.py ...), never from a conftest.py or from
another test module: fixtures stay in conftest, and a test module is collected, not imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUSPECT = re.compile(r"^[ \t]*(from|import)\b[^\n]*\b(conftest|test_)", re.M)
"""A line that may import a conftest or a test module: only files with one are parsed."""


def forbidden_imports(path: Path) -> list[str]:
    """``line: statement`` for every import in ``path`` of a conftest or of a test module."""
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    text = path.read_text(encoding="utf-8")
    if not SUSPECT.search(text):
        return []
    bad = []
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.ImportFrom):
            modules = [node.module or ""] + [f"{node.module or ''}.{a.name}".lstrip(".")
                                              for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        last = [m.split(".")[-1] for m in modules if m]
        if any(part == "conftest" or part.startswith("test_") for part in last):
            bad.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return bad


def test_no_test_imports_from_conftest_or_another_test_module():
    files = [p for p in (ROOT / "tests").rglob("*.py") if p.name != "conftest.py"]
    files += sorted((ROOT / "benchmarks").glob("*.py"))
    bad = [line for path in sorted(files) for line in forbidden_imports(path)]
    assert not bad, ("import these from a helper module (tests/synthetic_media.py, "
                     "tests/real_data.py, tests/store_checks.py, tests/heads/synthetic_stores.py), "
                     "not from conftest or a test module:\n" + "\n".join(bad))


def test_the_check_sees_each_form(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("from conftest import voiced\nimport conftest\nfrom .test_video import ffmpeg\n"
                      "from ..store.test_kill_resume import make_corpus\n"
                      "from tests.conftest import shared_data\nfrom synthetic_media import voiced\n"
                      "from real_data import shared_data\nimport numpy as np\n")
    assert [line.split(": ", 1)[0] for line in forbidden_imports(sample)] == [
        f"test_sample.py:{n}" for n in (1, 2, 3, 4, 5)]
