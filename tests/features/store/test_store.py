import math
import multiprocessing
from pathlib import Path

import h5py
import numpy as np
import pytest

from mer_features.errors import FingerprintMismatchError, StoreError, StoreLockedError
from mer_features.store import (ClipRecord, FeatureStore, StoreHeader, StoreWriter, pending_parts,
                                parts_dir)


def header(storage: str = "float32", **fields) -> StoreHeader:
    return StoreHeader(modality="audio", encoder="toy", encoder_version="1",
                       fields={"encoder": "toy", "config": {"k": 1}, "weights": {"w": "x"}, **fields},
                       utterance_shape=(4,), frame_dim=3, frame_rate=10.0, storage_dtype=storage)


def record(name: str, n_frames: int = 5, seed: int = 0) -> ClipRecord:
    rng = np.random.default_rng(seed)
    return ClipRecord(name=name, utterance=rng.standard_normal(4).astype(np.float32),
                      frames=rng.standard_normal((n_frames, 3)).astype(np.float32),
                      frame_times=np.arange(n_frames, dtype=np.float32) / 10, input_hash=f"h-{name}",
                      duration=n_frames / 10, info={"seed": seed})


def write(path: Path, records, **kw) -> None:
    with StoreWriter(path, kw.pop("head", header()), **kw) as w:
        for r in records:
            w.add(r)


def test_round_trip_sorted_by_name_with_labels_and_failures(tmp_path: Path):
    path = tmp_path / "s.h5"
    recs = [record("b", 4, 1), record("a", 0, 2), record("c", 7, 3)]
    with StoreWriter(path, header()) as w:
        w.set_labels({"a": ("happy", 2.5, "train"), "c": ("", math.nan, "test")})
        for r in recs:
            w.add(r)
        w.add(ClipRecord(name="d", status="failed", stage="decode", reason="broken", input_hash="h"))
    with FeatureStore(path) as s:
        assert s.names == ["a", "b", "c", "d"]
        u = s.utterances()
        assert u.shape == (4, 4) and u.dtype == np.float32
        np.testing.assert_array_equal(u[1], recs[0].utterance)
        np.testing.assert_array_equal(u[3], 0)
        times, frames = s.frames("c")
        np.testing.assert_array_equal(frames, recs[2].frames)
        np.testing.assert_array_equal(times, recs[2].frame_times)
        assert s.frames("a")[1].shape == (0, 3)
        np.testing.assert_array_equal(s.utterances(["c", "a"]), np.stack([recs[2].utterance, recs[1].utterance]))
        labels = s.labels()
        assert list(labels["discrete"]) == ["happy", "", "", ""]
        assert labels["valence"][0] == 2.5 and np.isnan(labels["valence"][2])
        assert s.failures() == [("d", "failed", "decode", "broken")]
        assert s.record("b").info == {"seed": 1}
        info = s.summary()
        assert info["status"]["ok"] == 3 and info["frames_total"] == 11
    assert not parts_dir(path).exists()


def test_float16_storage_halves_and_reads_back_as_float32(tmp_path: Path):
    write(tmp_path / "a.h5", [record(f"c{i}", 50, i) for i in range(20)], head=header("float32"))
    write(tmp_path / "b.h5", [record(f"c{i}", 50, i) for i in range(20)], head=header("float16"))
    with FeatureStore(tmp_path / "a.h5") as a, FeatureStore(tmp_path / "b.h5") as b:
        assert b.utterances().dtype == np.float32
        np.testing.assert_allclose(a.utterances(), b.utterances(), atol=2e-3)
        assert h5py.File(tmp_path / "b.h5")["frames/data"].dtype == np.float16


def test_other_configuration_is_refused_then_overwritten(tmp_path: Path):
    path = tmp_path / "s.h5"
    write(path, [record("a")])
    other = header(config={"k": 2})
    with pytest.raises(FingerprintMismatchError, match=r"config.k: 1 -> 2.*`overwrite`"):
        StoreWriter(path, other)
    write(path, [record("z")], head=other, overwrite=True)
    with FeatureStore(path) as s:
        assert s.names == ["z"] and s.config == {"k": 2}


def test_second_writer_is_refused_and_lock_dies_with_its_process(tmp_path: Path):
    path = tmp_path / "s.h5"
    w = StoreWriter(path, header())
    with pytest.raises(StoreLockedError, match="being written by another process"):
        StoreWriter(path, header())
    w.close()
    StoreWriter(path, header()).close()

    # A lock held by a killed process is released by the kernel: no stale lock.
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(path, ready))
    proc.start()
    ready.wait(10)
    with pytest.raises(StoreLockedError):
        StoreWriter(path, header())
    proc.kill()
    proc.join()
    StoreWriter(path, header()).close()


def _hold_lock(path: Path, ready) -> None:
    import time

    StoreWriter(path, header())
    ready.set()
    time.sleep(60)


def test_parts_survive_an_abort_and_merge_once(tmp_path: Path):
    path = tmp_path / "s.h5"
    write(path, [record("a", seed=1)])
    w = StoreWriter(path, header(), part_clips=2)
    for i in range(5):
        w.add(record(f"n{i}", seed=i))
    w.abort()  # as if killed: the buffered clip is flushed, parts stay
    assert len(pending_parts(path)) == 3
    with FeatureStore(path) as s:
        assert s.names == ["a"] and s.summary()["pending_parts"] == 3
    w = StoreWriter(path, header())
    assert w.is_done("n4", "h-n4") and not w.is_done("n4", "other-hash")
    w.close()
    assert pending_parts(path) == []
    with FeatureStore(path) as s:
        assert s.names == ["a", "n0", "n1", "n2", "n3", "n4"]
        np.testing.assert_array_equal(s.utterances(["n3"])[0], record("n3", seed=3).utterance)


def test_merging_a_part_twice_gives_the_same_store(tmp_path: Path):
    path = tmp_path / "s.h5"
    w = StoreWriter(path, header(), part_clips=1)
    w.add(record("a", seed=1))
    w.add(record("b", seed=2))
    w.abort()
    parts = pending_parts(path)
    copies = [p.read_bytes() for p in parts]
    StoreWriter(path, header()).close()
    first = FeatureStore(path)
    expected = first.utterances()
    first.close()
    for p, data in zip(parts, copies):  # a kill between the rename and the part deletion
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
    StoreWriter(path, header()).close()
    with FeatureStore(path) as s:
        assert s.names == ["a", "b"]
        np.testing.assert_array_equal(s.utterances(), expected)


def test_labels_are_updated_on_a_rerun_without_new_clips(tmp_path: Path):
    path = tmp_path / "s.h5"
    write(path, [record("a")])
    with StoreWriter(path, header()) as w:
        w.set_labels({"a": ("sad", -2.0, "train")})
    with FeatureStore(path) as s:
        assert s.labels()["discrete"][0] == "sad"


def test_damaged_and_foreign_files_are_refused(tmp_path: Path):
    path = tmp_path / "s.h5"
    write(path, [record(f"c{i}", 100, i) for i in range(50)])
    data = path.read_bytes()
    truncated = tmp_path / "t.h5"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(StoreError, match="cannot be opened|damaged"):
        FeatureStore(truncated)
    with pytest.raises(StoreError):
        StoreWriter(truncated, header())
    assert truncated.stat().st_size == len(data) // 3  # never silently overwritten

    foreign = tmp_path / "f.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not a mer_features store"):
        FeatureStore(foreign)
    old = tmp_path / "o.h5"
    old.write_bytes(data)
    with h5py.File(old, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema version 99"):
        FeatureStore(old)
    with pytest.raises(StoreError, match="does not exist"):
        FeatureStore(tmp_path / "none.h5")


def test_record_shapes_are_checked(tmp_path: Path):
    with StoreWriter(tmp_path / "s.h5", header()) as w:
        bad = record("x")
        bad.utterance = np.zeros(5, np.float32)
        with pytest.raises(StoreError, match=r"utterance has shape \(5,\)"):
            w.add(bad)


def test_file_hash_cache_reuses_and_notices_edits(tmp_path: Path):
    from mer_features.fingerprint import file_hash, file_hashes

    files = [tmp_path / f"{i}.bin" for i in range(3)]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 1000)
    cache = tmp_path / "cache.sqlite"
    first = file_hashes(files + [tmp_path / "missing"], cache=cache)
    assert first[:3] == [file_hash(f) for f in files] and first[3].startswith("unreadable:")
    files[1].write_bytes(b"changed")
    second = file_hashes(files, cache=cache)
    assert second[0] == first[0] and second[1] == file_hash(files[1]) != first[1]
    # a cache that cannot be opened only costs time
    assert file_hashes(files, cache=tmp_path / "0.bin" / "sub" / "c.sqlite") == second


def test_file_hash_cache_notices_an_edit_that_keeps_size_mtime_and_inode(tmp_path: Path):
    import os
    import time

    from mer_features.fingerprint import file_hash, file_hashes

    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"a" * 4096)
    cache = tmp_path / "cache.sqlite"
    first = file_hashes([clip], cache=cache)[0]
    st = os.stat(clip)
    time.sleep(0.05)  # a later clock tick than the hashing
    with open(clip, "r+b") as f:  # in place: same inode, same size
        f.write(b"b" * 4096)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime back
    now = os.stat(clip)
    assert (now.st_size, now.st_mtime_ns, now.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert file_hashes([clip], cache=cache)[0] == file_hash(clip) != first


def test_per_frame_extras_round_trip_through_parts(tmp_path: Path):
    head = StoreHeader(modality="video", encoder="toy", encoder_version="1", fields={"k": 1},
                       utterance_shape=(4,), frame_dim=3, frame_rate=None,
                       frame_extras=(("box", (4,), "f4"), ("has_face", (), "bool")))
    path = tmp_path / "v.h5"
    w = StoreWriter(path, head, part_clips=1)
    for i, n in enumerate((3, 0, 5)):
        rec = record(f"c{i}", n, i)
        rec.frame_extras = {"box": np.full((n, 4), i, np.float32), "has_face": np.arange(n) % 2 == 0}
        w.add(rec)
    bad = record("bad", 2)
    with pytest.raises(StoreError, match="per-frame 'box' must have shape"):
        w.add(bad)
    w.close()
    with FeatureStore(path) as s:
        assert s.frame_extra_names == ["box", "has_face"]
        np.testing.assert_array_equal(s.frame_extra("c2", "box"), np.full((5, 4), 2))
        assert s.frame_extra("c2", "has_face").tolist() == [True, False, True, False, True]
        assert s.frame_extra("c1", "box").shape == (0, 4)
        assert s.record("c0").frame_extras["box"].shape == (3, 4)
        with pytest.raises(StoreError, match="no per-frame 'x'"):
            s.frame_extra("c0", "x")


def test_verify_reports_damage(tmp_path: Path, capsys):
    from mer_features.cli import main
    from mer_features.store import verify_store

    path = tmp_path / "s.h5"
    write(path, [record(f"c{i}", 3 + i, i) for i in range(5)])
    assert verify_store(path)["ok"]
    assert main(["verify", str(path)]) == 0
    with h5py.File(path, "a") as f:
        f["utterance"][1, 0] = np.nan
        f["frames/data"][4, 1] = np.inf
        f["frames/length"][2] = 99
    report = verify_store(path)
    assert not report["ok"]
    text = "\n".join(report["problems"])
    assert "clip 'c1': non-finite utterance values" in text
    assert "frame offsets and lengths do not tile" in text
    assert "non-finite frame values in clip(s) c1" in text
    assert main(["verify", str(path)]) == 1
    truncated = tmp_path / "t.h5"
    truncated.write_bytes(path.read_bytes()[:2000])
    assert "cannot be opened" in verify_store(truncated)["problems"][0]
