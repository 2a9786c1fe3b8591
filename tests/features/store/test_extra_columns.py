"""/clips/extra: the manifest's other columns (e.g. RAVDESS's actor) kept per clip, written and
refreshed like the labels, checksummed, merged, and absent from older stores without harm."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np

from mer_features.store import ClipRecord, FeatureStore, StoreHeader, StoreWriter, merge_stores
from mer_features.store.verify import verify_store


def header() -> StoreHeader:
    return StoreHeader(modality="audio", encoder="toy", encoder_version="1",
                       fields={"encoder": "toy", "config": {"k": 1}, "weights": {"w": "x"}},
                       utterance_shape=(3,), frame_dim=2, frame_rate=10.0)


def record(name: str) -> ClipRecord:
    return ClipRecord(name=name, utterance=np.full(3, len(name), np.float32),
                      frames=np.zeros((2, 2), np.float32),
                      frame_times=np.arange(2, dtype=np.float32), input_hash=f"h-{name}")


LABELS = {"a": ("happy", 1.0, "train", {"actor": "actor01", "gender": "male"}),
          "b": ("sad", math.nan, "train", {"actor": "actor02"}),
          "c": ("", math.nan, "test", {})}


def write(path: Path, labels=LABELS, names=("a", "b", "c")) -> StoreWriter:
    with StoreWriter(path, header()) as w:
        w.set_labels(labels)
        for name in names:
            if not w.is_done(name, f"h-{name}"):
                w.add(record(name))
    return w


def test_extra_columns_round_trip(tmp_path: Path):
    path = tmp_path / "s.h5"
    write(path)
    with FeatureStore(path) as s:
        extra = s.extra_columns()
        assert list(extra) == ["actor", "gender"]
        assert list(extra["actor"]) == ["actor01", "actor02", ""]
        assert list(extra["gender"]) == ["male", "", ""]
        assert s.record("a").extra == {"actor": "actor01", "gender": "male"}
        assert s.record("c").extra == {}
        assert s.summary()["extra_columns"] == ["actor", "gender"]
    assert verify_store(path)["ok"]


def test_extra_columns_refreshed_like_labels_without_re_extraction(tmp_path: Path):
    path = tmp_path / "s.h5"
    write(path)
    changed = {**LABELS, "b": ("sad", math.nan, "train", {"actor": "actor07"})}
    w = write(path, changed)
    assert w.parts_written == 0  # nothing extracted again: only the labels were rewritten
    with FeatureStore(path) as s:
        assert list(s.extra_columns()["actor"]) == ["actor01", "actor07", ""]
    # Labels given without extra columns keep the stored ones.
    write(path, {n: v[:3] for n, v in changed.items()})
    with FeatureStore(path) as s:
        assert list(s.extra_columns()["actor"]) == ["actor01", "actor07", ""]
        assert s.record("a").discrete == "happy"


def test_a_store_written_before_extra_columns_opens_and_gains_them(tmp_path: Path):
    path = tmp_path / "s.h5"
    write(path)
    # Remove /clips/extra and its CRC column, as a store of the previous release holds them.
    with h5py.File(path, "a") as f:
        del f["clips/extra"]
        crc = f["clips/checksum"]
        columns = json.loads(crc.attrs["columns"])
        keep = [i for i, c in enumerate(columns) if c != "clips/extra"]
        table = crc[()][:, keep]
        del f["clips/checksum"]
        ds = f.create_dataset("clips/checksum", data=table, chunks=True, fletcher32=True)
        ds.attrs["columns"] = json.dumps([columns[i] for i in keep])
    with FeatureStore(path) as s:
        assert s.extra_columns() == {}
        assert list(s.column("extra")) == ["", "", ""]
        assert s.record("a").extra == {} and s.record("a").discrete == "happy"
    assert verify_store(path)["ok"]
    w = write(path)  # the same manifest again: the extra columns are added, nothing re-extracted
    assert w.parts_written == 0
    with FeatureStore(path) as s:
        assert list(s.extra_columns()["actor"]) == ["actor01", "actor02", ""]
    assert verify_store(path)["ok"]


def test_merged_shards_keep_extra_columns(tmp_path: Path):
    write(tmp_path / "s0.h5", names=("a",), labels={"a": LABELS["a"]})
    write(tmp_path / "s1.h5", names=("b", "c"), labels={k: LABELS[k] for k in "bc"})
    merge_stores(tmp_path / "m.h5", [tmp_path / "s0.h5", tmp_path / "s1.h5"])
    with FeatureStore(tmp_path / "m.h5") as s:
        assert list(s.extra_columns()["actor"]) == ["actor01", "actor02", ""]
    assert verify_store(tmp_path / "m.h5")["ok"]


def test_a_damaged_extra_cell_is_found_by_its_checksum(tmp_path: Path):
    path = tmp_path / "s.h5"
    write(path)
    with h5py.File(path, "a") as f:
        f["clips/extra"][1] = '{"actor": "actor99"}'  # rewritten through HDF5: only the CRC sees it
    report = verify_store(path)
    assert not report["ok"] and report["damaged"] == ["b"]


def test_extraction_copies_and_refreshes_the_manifests_other_columns(tmp_path: Path):
    import csv

    import soundfile as sf
    from synthetic_media import voiced

    from mer_features.pipeline import extract

    (tmp_path / "clips").mkdir()
    for i in range(2):
        sf.write(tmp_path / "clips" / f"c{i}.wav", voiced(0.6, seed=i), 16000)

    def manifest(speakers: list[str]) -> Path:
        path = tmp_path / "manifest.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["name", "audio", "discrete", "speaker", "notes"])
            for i, speaker in enumerate(speakers):
                w.writerow([f"c{i}", f"clips/c{i}.wav", "happy", speaker, "a, \"quoted\" note"])
        return path

    out = tmp_path / "a.h5"
    extract(manifest(["spk1", "spk2"]), out, modality="audio", encoder="egemaps", workers=0,
            progress=False)
    with FeatureStore(out) as s:
        assert list(s.extra_columns()["speaker"]) == ["spk1", "spk2"]
        assert s.record("c0").extra == {"notes": 'a, "quoted" note', "speaker": "spk1"}
    summary = extract(manifest(["spk1", "spk9"]), out, modality="audio", encoder="egemaps",
                      workers=0, progress=False)
    assert summary.skipped == 2 and summary.done == 0  # no encoder work
    with FeatureStore(out) as s:
        assert list(s.extra_columns()["speaker"]) == ["spk1", "spk9"]
