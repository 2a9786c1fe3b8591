"""The one atomic-write helper (:mod:`mer_features.files`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mer_features.files import (atomic_open, atomic_path, parse_temporary, temporary_path,
                                write_bytes, write_text)


def test_a_completed_block_replaces_the_file_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name == f".out.csv.tmp-{os.getpid()}"
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing visible before the block ends
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_block_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path, error):
    target = tmp_path / "store.h5"
    target.write_bytes(b"complete")
    with pytest.raises(type(error)):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise error
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.h5"]


def test_open_files_text_and_bytes(tmp_path: Path):
    with atomic_open(tmp_path / "a.txt") as f:
        f.write("caf\u00e9\r\nline\n")  # UTF-8, newlines as written
    assert (tmp_path / "a.txt").read_bytes() == "caf\u00e9\r\nline\n".encode()
    with atomic_open(tmp_path / "b.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert write_text(tmp_path / "c.txt", "x") == tmp_path / "c.txt"
    assert write_bytes(tmp_path / "d.bin", b"y").read_bytes() == b"y"
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "e", "a"):
            pass


def test_writing_over_a_folder_fails_and_leaves_nothing(tmp_path: Path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError):
        write_text(tmp_path / "taken", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_temporary_names_are_recognised():
    tmp = temporary_path(Path("/x/part-1.h5"))
    assert parse_temporary(tmp.name) == ("part-1.h5", os.getpid())
    assert parse_temporary(".manifest.csv.tmp-42") == ("manifest.csv", 42)
    for other in ("manifest.csv", ".hidden", ".x.tmp-", "x.tmp-12", ".x.tmp-12a"):
        assert parse_temporary(other) is None
