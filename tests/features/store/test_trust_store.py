"""Adversarial table for the store and the signal path (issue 13, "Trust").

Each case is one hostile input or fault, run through the real CLI (``mer_features.cli.main``)
or the store API, and asserts its exact outcome: a one-line error naming the problem and what
to do (and the exit code), a per-clip failure recorded with its stage and reason, or a correct
result compared against a reference. Cases use tiny generated audio and a toy encoder
registered for the test (eGeMAPS where the encoder matters), so the table runs in seconds.
Run: ``.venv/bin/python -m pytest -q tests/features/store/test_trust_store.py``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf

from synthetic_media import voiced, write_manifest
from mer_features.cli import main
from mer_features.encoders.base import Encoded, Encoder, OutputSpec, register_encoder
from mer_features.errors import StoreError
from mer_features.store import ClipRecord, FeatureStore, StoreHeader, StoreWriter, parts_dir
from mer_features.store import verify_store

TESTS = Path(__file__).resolve().parents[2]  # tests/: conftest and the features package

# --------------------------------------------------------------------------------------------
# A toy audio encoder: features are statistics of the waveform, so an edited clip changes
# them; options make one clip overflow float16 or delete the store's parts folder mid-run.


@dataclass(frozen=True)
class ToyConfig:
    sample_rate: int = 16000
    loud_clip: str = ""
    loud_value: float = 1e5
    frame_dim: int = 3
    n_frames: int = 8
    delete_at: str = ""
    delete_path: str = ""


class ToyEncoder(Encoder):
    name = "trust-toy"
    modality = "audio"
    version = "1"
    Config = ToyConfig

    def weights_identity(self) -> dict:
        return {"toy": True}

    def output_spec(self) -> OutputSpec:
        return OutputSpec((4,), self.config.frame_dim, 100.0)

    def preprocessing(self) -> dict:
        return {"sample_rate": self.config.sample_rate}

    def encode_batch(self, items):
        out = []
        for item in items:
            w = item.waveform.astype(np.float64)
            utt = np.array([w.mean(), w.std(), w.max(), w.min()], np.float32)
            if item.name == self.config.loud_clip:
                utt[1] = self.config.loud_value
            if item.name == self.config.delete_at:
                shutil.rmtree(self.config.delete_path, ignore_errors=True)
            n, d = self.config.n_frames, self.config.frame_dim
            frames = (utt[1] + np.arange(n * d, dtype=np.float32).reshape(n, d)).astype(np.float32)
            out.append(Encoded(utt, frames, np.arange(n, dtype=np.float32) / 100))
        return out


def register_toy() -> None:
    from mer_features.encoders import base

    if ("audio", ToyEncoder.name) not in base._REGISTRY:
        register_encoder(ToyEncoder)


@pytest.fixture
def toy():
    from mer_features.encoders import base

    register_toy()
    yield
    base._REGISTRY.pop(("audio", ToyEncoder.name), None)


# --------------------------------------------------------------------------------------------
# The trial: a tmp folder with a 3-clip corpus, and helpers


class Trial:
    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
        self.tmp = tmp
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        clips = tmp / "clips"
        clips.mkdir()
        rows = []
        for i, emotion in enumerate(["happy", "sad", "angry"]):
            sf.write(clips / f"c{i:02d}.wav", voiced(0.5, 120 + 30 * i, seed=i), 16000,
                     subtype="PCM_16")
            rows.append({"name": f"c{i:02d}", "audio": f"clips/c{i:02d}.wav", "discrete": emotion,
                         "valence": i - 1.0, "split": "train"})
        self.rows = rows
        self.manifest = write_manifest(tmp / "manifest.csv", rows)
        self.out = tmp / "store.h5"

    def manifest_of(self, rows: list[dict], name: str) -> Path:
        return write_manifest(self.tmp / name, rows)

    def cli(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def extract(self, *extra: str, manifest: Path | None = None, out: Path | None = None,
                encoder: str = "trust-toy") -> tuple[int, str, str]:
        return self.cli("extract", "--modality", "audio", "--manifest",
                        str(manifest or self.manifest), "--out", str(out or self.out),
                        "--encoder", encoder, "--device", "cpu", "--workers", "0",
                        "--no-progress", *extra)


def one_error_line(err: str, *words: str) -> str:
    """The run printed exactly one line, ``error: ...``, holding every word (besides the
    ``labels: ...`` line an extraction starts with: the manifest's classes and counts)."""
    lines = [line for line in err.strip().splitlines()
             if line.strip() and not line.startswith("labels: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def flip_cell(path: Path, dataset: str, row: int, byte: int = 1) -> None:
    """Flip one byte of ``dataset``'s row ``row`` in the file, past HDF5 (bit rot)."""
    with h5py.File(path) as f:
        ds = f[dataset]
        start = row // ds.chunks[0] * ds.chunks[0]
        info = ds.id.get_chunk_info_by_coord((start,) + (0,) * (ds.ndim - 1))
        row_bytes = ds.dtype.itemsize * int(np.prod(ds.shape[1:]))
        at = info.byte_offset + (row - start) * row_bytes + byte
    with open(path, "r+b") as fh:
        fh.seek(at)
        value = fh.read(1)[0]
        fh.seek(at)
        fh.write(bytes([value ^ 0x7F]))


def flip_text(path: Path, text: str, at: int = 2) -> None:
    """Flip a byte of the only occurrence of ``text`` in the file (a string in HDF5's heap)."""
    data = bytearray(path.read_bytes())
    i = data.find(text.encode())
    assert i >= 0 and data.find(text.encode(), i + 1) < 0, text
    data[i + at] ^= 0x01
    path.write_bytes(bytes(data))


def stored(path: Path) -> dict[str, tuple]:
    with FeatureStore(path) as s:
        return {n: (st, s.record(n).stage, s.record(n).reason) for n, st in zip(s.names, s.status)}


def mount_tmpfs(folder: Path, options: str) -> Callable[[], None]:
    """Mount a tmpfs on ``folder`` (root only); skips the test when mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    return lambda: subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def header(storage: str = "float32") -> StoreHeader:
    return StoreHeader(modality="audio", encoder="toy", encoder_version="1", fields={"k": 1},
                       utterance_shape=(4,), frame_dim=3, frame_rate=10.0, storage_dtype=storage)


def record(name: str, n_frames: int = 5, value: float = 0.29) -> ClipRecord:
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    utt = np.full(4, value, np.float32)
    return ClipRecord(name=name, utterance=utt,
                      frames=rng.standard_normal((n_frames, 3)).astype(np.float32),
                      frame_times=np.arange(n_frames, dtype=np.float32) / 10, input_hash=f"h-{name}")


def write_records(path: Path, names: list[str], **kw) -> None:
    with StoreWriter(path, header(), **kw) as w:
        for name in names:
            w.add(record(name))


# --------------------------------------------------------------------------------------------
# Signals


def egemaps_of(waveform: np.ndarray) -> np.ndarray:
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02)
    return smile.process_signal(waveform, 16000).to_numpy().reshape(-1)


def relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / (np.abs(b) + 1e-3)


def egemaps_store(t: Trial, path: Path, name: str = "loud") -> tuple[np.ndarray, dict]:
    manifest = t.manifest_of([{"name": name, "audio": str(path)}], "loud.csv")
    code, _, err = t.extract(manifest=manifest, out=t.tmp / "loud.h5", encoder="egemaps")
    assert code == 0, err
    with FeatureStore(t.tmp / "loud.h5") as s:
        rec = s.record(name)
    assert rec.status == "ok"
    return rec.utterance, rec.info


def case_signal_int16_48k_clipped_overshoots(t: Trial) -> None:
    """A clipped 48 kHz int16 recording overshoots full scale once resampled: saturated."""
    import soxr

    wave = np.clip(voiced(1.0, 140, rate=48000, seed=1, amplitude=3.0), -1, 32767 / 32768)
    sf.write(t.tmp / "clipped.wav", wave, 48000, subtype="PCM_16")
    source = sf.read(t.tmp / "clipped.wav", dtype="float32")[0]
    resampled = soxr.resample(source, 48000, 16000, quality="HQ")
    assert np.abs(resampled).max() > 1.0  # the overshoot the rule must handle
    utterance, info = egemaps_store(t, t.tmp / "clipped.wav")
    assert info["level"]["action"] == "saturated" and info["level"]["samples"] > 0
    assert info["level"]["peak"] == pytest.approx(np.abs(resampled).max(), rel=1e-5)
    reference = egemaps_of(np.clip(resampled, -1, 32767 / 32768))
    np.testing.assert_allclose(utterance, reference, rtol=1e-4, atol=1e-4)
    wrapped = egemaps_of(resampled)  # what openSMILE made of it before: garbage
    assert (relative(wrapped, reference) > 0.1).sum() > 20


def case_signal_float_wav_peak_30(t: Trial) -> None:
    """A float WAV peaking at 30 holds real signal above full scale: scaled by 1/peak."""
    wave = voiced(1.0, 160, rate=16000, seed=2, amplitude=0.5)
    wave = (wave * (30.0 / np.abs(wave).max())).astype(np.float32)
    sf.write(t.tmp / "float.wav", wave, 16000, subtype="FLOAT")
    utterance, info = egemaps_store(t, t.tmp / "float.wav")
    assert info["level"]["action"] == "scaled"
    assert info["level"]["gain"] == pytest.approx(1 / 30, rel=1e-5)
    # the scaled peak is exactly 1.0, which openSMILE's own int16 cast would wrap as well
    reference = egemaps_of(np.clip(wave / np.float32(30.0), -1, 32767 / 32768))
    np.testing.assert_allclose(utterance, reference, rtol=1e-3, atol=1e-3)
    assert (relative(egemaps_of(wave), reference) > 0.1).sum() > 20


def case_signal_in_range_untouched(t: Trial) -> None:
    """A clip within full scale is decoded exactly as before and records no level."""
    from mer_features.decode.audio import decode_audio

    decoded = decode_audio(t.tmp / "clips" / "c01.wav", 16000)
    assert decoded.info == {}
    np.testing.assert_array_equal(decoded.waveform,
                                  sf.read(t.tmp / "clips" / "c01.wav", dtype="float32")[0])


def case_signal_encoder_guard(t: Trial) -> None:
    """Samples above full scale given to openSMILE directly are saturated, never wrapped."""
    from mer_features.encoders import create_encoder
    from mer_features.decode.inputs import AudioInput

    wave = voiced(1.0, 150, seed=3, amplitude=4.0)
    enc = create_encoder("audio", "egemaps")
    (out,) = enc.encode_batch([AudioInput("x", wave, 16000)])
    np.testing.assert_allclose(out.utterance, egemaps_of(np.clip(wave, -1, 32767 / 32768)),
                               rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# float16


def case_float16_compare_refused_upfront(t: Trial) -> None:
    code, _, err = t.extract("--storage-dtype", "float16", encoder="compare")
    last = err.strip().splitlines()[-1]  # a bad combination of arguments: usage, exit 2
    assert last.startswith("mer-features extract: error: ") and "Traceback" not in err
    assert all(w in last for w in ("compare", "float16", "set --storage-dtype to float32"))
    assert code == 2 and not t.out.exists()


def case_float16_overflow_recorded_failed(t: Trial) -> None:
    code, out, err = t.extract("--storage-dtype", "float16", "-o", "loud_clip=c01")
    assert code == 3, err
    assert "2 extracted" in out and "1 failed" in out
    status, stage, reason = stored(t.out)["c01"]
    assert (status, stage) == ("failed", "store")
    assert "features reach 1000" in reason and "65504" in reason
    assert "storage dtype float32" in reason
    with FeatureStore(t.out) as s:
        assert np.isfinite(s.utterances()).all()
    assert verify_store(t.out)["ok"]


def case_float16_writer_api(t: Trial) -> None:
    with StoreWriter(t.out, header("float16")) as w:
        w.add(record("big", value=1e6))
        w.add(record("fine", value=0.5))
    with FeatureStore(t.out) as s:
        assert list(s.status) == ["failed", "ok"]
        assert s.record("big").stage == "store" and "1e+06" in s.record("big").reason
        assert np.isfinite(s.utterances()).all()


# --------------------------------------------------------------------------------------------
# Store scope, symlinks, the hash cache


def case_scope_removed_rows_refused(t: Trial) -> None:
    assert t.extract()[0] == 0
    before = t.out.read_bytes()
    code, _, err = t.extract(manifest=t.manifest_of(t.rows[:2], "two.csv"))
    one_error_line(err, "holds 1 clip(s)", "'c02'", "two.csv", "--prune", "another --out")
    assert code == 1 and t.out.read_bytes() == before


def case_scope_prune_drops_and_says_so(t: Trial) -> None:
    assert t.extract()[0] == 0
    code, out, err = t.extract("--prune", manifest=t.manifest_of(t.rows[:2], "two.csv"))
    assert code == 0, err
    assert "1 dropped" in out and "2 already stored" in out
    with FeatureStore(t.out) as s:
        assert s.names == ["c00", "c01"]
    assert verify_store(t.out)["ok"]


def case_scope_other_corpus_refused(t: Trial) -> None:
    assert t.extract()[0] == 0
    other = [{**r, "name": "x" + r["name"]} for r in t.rows]
    code, _, err = t.extract(manifest=t.manifest_of(other, "other.csv"))
    one_error_line(err, "holds 3 clip(s)", "'c00', 'c01', 'c02'", "--prune")
    assert code == 1


def case_scope_shard_keeps_to_its_shard(t: Trial) -> None:
    from mer_features.pipeline.distributed import shard_of

    shards = {r["name"]: shard_of(r["name"], 2) for r in t.rows}
    assert set(shards.values()) == {0, 1}
    assert t.extract("--shard", "0/2")[0] == 0
    code, _, err = t.extract("--shard", "1/2")
    one_error_line(err, "(shard 1/2)", "--prune")
    assert code == 1
    with FeatureStore(t.out) as s:
        assert s.names == sorted(n for n, k in shards.items() if k == 0)


def case_scope_labels_refreshed(t: Trial) -> None:
    assert t.extract()[0] == 0
    relabelled = [{**r, "discrete": "neutral"} for r in t.rows]
    code, out, _ = t.extract(manifest=t.manifest_of(relabelled, "relabelled.csv"))
    assert code == 0 and "3 already stored" in out
    with FeatureStore(t.out) as s:
        assert list(s.labels()["discrete"]) == ["neutral"] * 3


def case_symlink_out_written_through(t: Trial) -> None:
    real = t.tmp / "real" / "store.h5"
    real.parent.mkdir()
    link = t.tmp / "link.h5"
    link.symlink_to(real)
    assert t.extract(manifest=t.manifest_of(t.rows[:2], "two.csv"), out=link)[0] == 0
    assert t.extract(out=link)[0] == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    with FeatureStore(real) as s:
        assert s.names == ["c00", "c01", "c02"]
    assert not list(t.tmp.glob(".link.h5*")) and not parts_dir(link).exists()


def case_hash_cache_in_place_edit_same_size_and_mtime(t: Trial) -> None:
    clip = t.tmp / "clips" / "c01.wav"
    assert t.extract()[0] == 0
    with FeatureStore(t.out) as s:
        before = s.utterances(["c01"])[0]
    st = os.stat(clip)
    time.sleep(0.05)  # the edit lands in a later clock tick than the hashing
    data = bytearray(clip.read_bytes())
    data[-4000:] = bytes(4000)  # silence the end, same size
    with open(clip, "r+b") as f:
        f.write(data)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
    after_stat = os.stat(clip)
    assert (after_stat.st_size, after_stat.st_mtime_ns, after_stat.st_ino) == \
        (st.st_size, st.st_mtime_ns, st.st_ino)
    code, out, _ = t.extract()
    assert code == 0 and "1 extracted" in out and "2 already stored" in out
    with FeatureStore(t.out) as s:
        assert not np.allclose(s.utterances(["c01"])[0], before)


# --------------------------------------------------------------------------------------------
# Bit flips and verify


def case_flip_utterance_verify_reader_heads(t: Trial) -> None:
    write_records(t.out, ["a", "b", "c", "d"])
    flip_cell(t.out, "utterance", 2, byte=3)  # 0.29 becomes another float
    code, out, _ = t.cli("verify", str(t.out))
    assert code == 1 and "clip 'c': checksum mismatch in /utterance" in out
    assert verify_store(t.out)["damaged"] == ["c"]
    with FeatureStore(t.out) as s, pytest.raises(StoreError) as e:
        s.utterances()
    message = str(e.value)
    assert "\n" not in message
    for word in (str(t.out), "/utterance", "'c'", "mer-features verify", "re-run"):
        assert word in message
    from mer_heads.data import load_dataset
    from mer_heads.errors import MerHeadsError

    with pytest.raises(MerHeadsError, match=r"fails its checksum in 1 clip\(s\) \('c'\)"):
        load_dataset([t.out])


def case_flip_frames(t: Trial) -> None:
    write_records(t.out, ["a", "b", "c"])
    flip_cell(t.out, "frames/data", 7)  # rows 5-9 are clip b's
    report = verify_store(t.out)
    assert report["damaged"] == ["b"] and "checksum mismatch in /frames/data" in report["problems"][0]
    with FeatureStore(t.out) as s, pytest.raises(StoreError, match=r"/frames/data .*'b'"):
        s.frames("b")


def case_flip_string_cell(t: Trial) -> None:
    with StoreWriter(t.out, header()) as w:
        for name in ["a", "b", "c"]:
            rec = record(name)
            rec.input_hash = f"HASH-OF-{name.upper()}-INPUT"
            w.add(rec)
    flip_text(t.out, "HASH-OF-B-INPUT", at=5)
    report = verify_store(t.out)
    assert report["damaged"] == ["b"] and "/clips/input_hash" in report["problems"][0]
    with FeatureStore(t.out) as s:
        with pytest.raises(StoreError, match=r"/clips/input_hash .*'b'"):
            s.column("input_hash")
        assert s.record("c").input_hash == "HASH-OF-C-INPUT"  # other rows stay readable


def case_flip_name(t: Trial) -> None:
    with StoreWriter(t.out, header()) as w:
        for name in ["alpha", "bravo", "charlie"]:
            w.add(ClipRecord(name=name, input_hash="x"))
    flip_text(t.out, "bravo", at=1)
    with pytest.raises(StoreError, match=r"/clips/name fails its checksum .*row 1"):
        FeatureStore(t.out)
    report = verify_store(t.out)
    assert not report["ok"] and "row 1 (its name is damaged)" in report["problems"][0]
    with StoreWriter(t.out, header()) as w:  # a re-run leaves the damaged row out
        assert set(w.done) == {"alpha", "charlie"} and w.damaged == ["row 1"]
    with FeatureStore(t.out) as s:
        assert s.names == ["alpha", "charlie"]


def case_flip_rerun_reextracts(t: Trial) -> None:
    assert t.extract()[0] == 0
    with FeatureStore(t.out) as s:
        good = s.utterances()
    flip_cell(t.out, "utterance", 1, byte=2)
    code, out, err = t.extract()
    assert code == 0, err
    assert "warning: 1 clip(s)" in err and "c01" in err and "extracted again" in err
    assert "1 extracted" in out and "2 already stored" in out
    assert verify_store(t.out)["ok"]
    with FeatureStore(t.out) as s:
        np.testing.assert_array_equal(s.utterances(), good)


def case_flip_in_chunk_sum_only(t: Trial) -> None:
    """A flip in fletcher32's own sum: data intact, chunk unreadable; a re-run rewrites it."""
    write_records(t.out, ["a", "b"])
    with h5py.File(t.out) as f:
        info = f["utterance"].id.get_chunk_info(0)
    with open(t.out, "r+b") as fh:
        fh.seek(info.byte_offset + info.size - 2)
        value = fh.read(1)[0]
        fh.seek(info.byte_offset + info.size - 2)
        fh.write(bytes([value ^ 0x10]))
    report = verify_store(t.out)
    assert not report["ok"] and report["damaged"] == []
    assert "every clip's data matches its CRC" in report["problems"][0]
    StoreWriter(t.out, header()).close()
    assert verify_store(t.out)["ok"]
    with FeatureStore(t.out) as s:
        np.testing.assert_allclose(s.utterances(), 0.29)


def case_verify_names_every_damaged_clip(t: Trial) -> None:
    write_records(t.out, [f"k{i}" for i in range(6)])
    flip_cell(t.out, "utterance", 1)
    flip_cell(t.out, "frames/time", 22)  # clip k4's frame times (rows 20-24)
    code, out, _ = t.cli("verify", str(t.out))
    assert code == 1
    assert "clip 'k1': checksum mismatch in /utterance" in out
    assert "clip 'k4': checksum mismatch in /frames/time" in out
    assert "2 damaged clip(s)" in out


def case_verify_counts_problems_not_its_advice(t: Trial) -> None:
    write_records(t.out, ["a", "b", "c"])
    flip_cell(t.out, "utterance", 1)
    code, out, _ = t.cli("verify", str(t.out))
    assert code == 1 and f"{t.out}: 1 problem(s)" in out  # one damaged clip: one problem
    assert out.strip().splitlines()[-1].strip().startswith("1 damaged clip(s): re-run")
    report = verify_store(t.out)
    assert report["problem_count"] == len(report["problems"]) == 1
    assert "re-run the same extraction" in report["advice"]


def case_info_names_damaged_clips_and_exits_1(t: Trial) -> None:
    """info used to exit 0 and show nothing on a store with a flipped bit in one clip."""
    write_records(t.out, ["a", "b", "c"])
    code, out, err = t.cli("info", str(t.out))
    assert code == 0 and err == "" and "checked        all cells: no damage" in out
    flip_cell(t.out, "frames/data", 7)  # clip b's frames, which info itself never reads
    code, out, err = t.cli("info", str(t.out))
    assert code == 1 and "checked        all cells: 1 damaged clip(s)" in out
    one_error_line(err, f"store '{t.out}' is damaged: 1 clip(s) fail their checksums (b)",
                   "re-run the same extraction", "mer-features verify")
    code, out, err = t.cli("info", "--json", str(t.out))
    assert code == 1 and json.loads(out)["damaged"] == ["b"]


def case_info_and_summary_count_level_rule_clips(t: Trial) -> None:
    """Clips the level rule changed are counted where users look: the summary line and info."""
    loud = voiced(0.5, 150, seed=9, amplitude=0.9)
    loud = np.clip(loud * 3, -1, 1).astype(np.float32)  # a clipped 16-bit recording ...
    sf.write(t.tmp / "clips" / "loud.wav", loud, 48000, subtype="PCM_16")  # ... resampled
    rows = [*t.rows, {"name": "loud", "audio": "clips/loud.wav"}]
    code, out, _ = t.extract(manifest=t.manifest_of(rows, "loud.csv"))
    assert code == 0 and ", 1 saturated by the level rule - " in out, out
    code, out, _ = t.cli("info", str(t.out))
    assert code == 0 and "1 clip(s) saturated by the level rule (clips/info 'level')" in out


def case_format1_store_read_and_upgraded(t: Trial) -> None:
    """A store written before checksums opens, reads, and gains them on the next write."""
    write_records(t.out, ["a", "b"])
    old = t.tmp / "old.h5"
    with h5py.File(t.out) as src, h5py.File(old, "w") as dst:
        for key, value in src.attrs.items():
            if key != "format_version":
                dst.attrs[key] = value

        def copy(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Group):
                dst.require_group(name)
            elif name != "clips/checksum":
                data = obj[()]
                if obj.dtype.kind == "S":  # schema 1 wrote names as variable-length strings
                    data = np.array([v.decode() for v in data.tolist()], dtype=object)
                    dst.create_dataset(name, data=data, dtype=h5py.string_dtype("utf-8"))
                else:
                    dst.create_dataset(name, data=data, dtype=obj.dtype)

        src.visititems(copy)
    with FeatureStore(old) as s:
        assert not s.checksummed and s.names == ["a", "b"]
        np.testing.assert_allclose(s.utterances(), 0.29)
    report = verify_store(old)
    assert report["ok"] and "no checksums" in report["notes"][0]
    with StoreWriter(old, header()) as w:
        assert set(w.done) == {"a", "b"}  # no re-extraction
    with FeatureStore(old) as s:
        assert s.checksummed and s.fingerprint == header().fingerprint
    flip_cell(old, "utterance", 0)
    assert verify_store(old)["damaged"] == ["a"]


def case_merge_refuses_a_damaged_shard(t: Trial) -> None:
    write_records(t.tmp / "s0.h5", ["a", "b"])
    write_records(t.tmp / "s1.h5", ["c", "d"])
    flip_cell(t.tmp / "s1.h5", "utterance", 1)
    code, _, err = t.cli("merge", "--out", str(t.out), str(t.tmp / "s0.h5"), str(t.tmp / "s1.h5"))
    one_error_line(err, "s1.h5", "is damaged", "'d'", "Re-run that shard's extraction")
    assert code == 1 and not t.out.exists()


# --------------------------------------------------------------------------------------------
# Parts deleted, disk full, unwritable outputs


def case_parts_deleted_by_api(t: Trial) -> None:
    w = StoreWriter(t.out, header(), part_clips=1)
    for name in ["a", "b", "c"]:
        w.add(record(name))
    shutil.rmtree(parts_dir(t.out))
    w.add(record("d"))
    with pytest.raises(StoreError, match=r"3 clip\(s\) written to .*gone \('a', 'b', 'c'\).*"
                                         r"holds 1 clip\(s\); re-run"):
        w.close()
    with FeatureStore(t.out) as s:
        assert s.names == ["d"]
    assert verify_store(t.out)["ok"]


def case_parts_deleted_during_a_run(t: Trial) -> None:
    code, out, err = t.extract("--commit-every", "1", "-o", "delete_at=c02",
                               "-o", f"delete_path={parts_dir(t.out)}")
    one_error_line(err, "2 clip(s)", "gone ('c00', 'c01')", "holds 1 clip(s)", "re-run")
    assert code == 1 and out == ""
    with FeatureStore(t.out) as s:
        assert s.names == ["c02"]
    assert verify_store(t.out)["ok"]
    code, out, _ = t.extract("--commit-every", "1", "-o", "delete_at=c02",
                             "-o", f"delete_path={parts_dir(t.out)}")
    assert code == 0 and "2 extracted" in out  # the lost clips come back


def case_disk_full_injected_at_merge(t: Trial) -> None:
    from mer_features.store import hdf5 as writer_module

    write_records(t.out, ["a", "b"])
    before = t.out.read_bytes()
    w = StoreWriter(t.out, header(), part_clips=1)
    w.add(record("c"))
    real_fill = writer_module._fill

    def full(f, header, n, rows, path):
        if path.name.startswith(".store.h5.tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fill(f, header, n, rows, path)

    t.monkeypatch.setattr(writer_module, "_fill", full)
    with pytest.raises(StoreError) as e:
        w.close()
    message = str(e.value)
    for word in ("No space left on the disk holding", "merging 1 part file(s)", "unchanged",
                 "3 clip(s) kept", "re-run"):
        assert word in message
    assert t.out.read_bytes() == before and len(list(parts_dir(t.out).glob("part-*.h5"))) == 1
    assert not list(t.tmp.glob(".store.h5.tmp*"))
    t.monkeypatch.setattr(writer_module, "_fill", real_fill)
    StoreWriter(t.out, header()).close()
    with FeatureStore(t.out) as s:
        assert s.names == ["a", "b", "c"]


def case_disk_full_injected_at_part(t: Trial) -> None:
    from mer_features.store import hdf5 as writer_module

    real_fill = writer_module._fill

    def full(f, header, n, rows, path):
        if path.name.startswith(".part-") and "-000001" in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fill(f, header, n, rows, path)

    t.monkeypatch.setattr(writer_module, "_fill", full)
    w = StoreWriter(t.out, header(), part_clips=1)
    w.add(record("a"))
    with pytest.raises(StoreError, match=r"No space left .*part file of 1 clip\(s\)\. Kept: 1 "
                                         r"clip\(s\) .*1 part file\(s\); the 1 clip\(s\) not yet"):
        w.add(record("b"))
    w.abort()  # what the pipeline does: no second attempt, no second error
    assert not list(parts_dir(t.out).glob(".part-*"))
    t.monkeypatch.setattr(writer_module, "_fill", real_fill)
    StoreWriter(t.out, header()).close()
    with FeatureStore(t.out) as s:
        assert s.names == ["a"]


def case_disk_full_real_tmpfs(t: Trial) -> None:
    """A real full disk (a 320 KB tmpfs), in a child process: one line, exit 1, no segfault;
    the store stays whole, and once there is room a re-run completes it."""
    disk = t.tmp / "disk"
    unmount = mount_tmpfs(disk, "size=320k")
    try:
        out = disk / "store.h5"
        argv = ["extract", "--modality", "audio", "--manifest", str(t.manifest), "--out",
                str(out), "--encoder", "trust-toy", "--device", "cpu", "--workers", "0",
                "--no-progress", "--commit-every", "1", "-o", "frame_dim=64", "-o",
                "n_frames=400"]
        script = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); "
                  "import features.store.test_trust_store as t; "
                  f"t.register_toy(); from mer_features.cli import main; sys.exit(main({argv!r}))")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert done.returncode == 1, (done.returncode, done.stderr)
        one_error_line(done.stderr, "No space left on the disk holding", str(disk), "Kept:",
                       "re-run")
        assert not list(disk.rglob(".*tmp*")) and not list(disk.rglob(".part-*"))
        kept = len(list(parts_dir(out).glob("part-*.h5")))
        assert f"Kept: {kept} clip(s)" in done.stderr
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        assert main(argv) == 0
        with FeatureStore(out) as s:
            assert s.names == ["c00", "c01", "c02"]
    finally:
        unmount()


def case_out_is_a_directory(t: Trial) -> None:
    folder = t.tmp / "features"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        code, _, err = t.extract(*extra, out=folder)
        one_error_line(err, f"--out '{folder}' is a directory", "features.h5")
        assert code == 1
    assert (folder / "keep.txt").read_text() == "mine"


def case_out_folder_read_only(t: Trial) -> None:
    folder = t.tmp / "ro"
    if os.geteuid() == 0:
        unmount = mount_tmpfs(folder, "ro,size=64k")
    else:
        folder.mkdir()
        folder.chmod(0o555)
        unmount = lambda: folder.chmod(0o755)  # noqa: E731
    try:
        code, _, err = t.extract(out=folder / "store.h5")
        one_error_line(err, f"Cannot write in '{folder}'", "writable folder")
        assert code == 1
    finally:
        unmount()


def case_out_under_a_file(t: Trial) -> None:
    (t.tmp / "afile").write_text("x")
    code, _, err = t.extract(out=t.tmp / "afile" / "store.h5")
    one_error_line(err, "lies under", "afile", "which is a file, not a folder")
    assert code == 1


CASES: list[Callable[[Trial], None]] = [
    case_signal_int16_48k_clipped_overshoots,
    case_signal_float_wav_peak_30,
    case_signal_in_range_untouched,
    case_signal_encoder_guard,
    case_float16_compare_refused_upfront,
    case_float16_overflow_recorded_failed,
    case_float16_writer_api,
    case_scope_removed_rows_refused,
    case_scope_prune_drops_and_says_so,
    case_scope_other_corpus_refused,
    case_scope_shard_keeps_to_its_shard,
    case_scope_labels_refreshed,
    case_symlink_out_written_through,
    case_hash_cache_in_place_edit_same_size_and_mtime,
    case_flip_utterance_verify_reader_heads,
    case_flip_frames,
    case_flip_string_cell,
    case_flip_name,
    case_flip_rerun_reextracts,
    case_flip_in_chunk_sum_only,
    case_verify_names_every_damaged_clip,
    case_verify_counts_problems_not_its_advice,
    case_info_names_damaged_clips_and_exits_1,
    case_info_and_summary_count_level_rule_clips,
    case_format1_store_read_and_upgraded,
    case_merge_refuses_a_damaged_shard,
    case_parts_deleted_by_api,
    case_parts_deleted_during_a_run,
    case_disk_full_injected_at_merge,
    case_disk_full_injected_at_part,
    case_disk_full_real_tmpfs,
    case_out_is_a_directory,
    case_out_folder_read_only,
    case_out_under_a_file,
]


SLOW_CASES = {"case_disk_full_real_tmpfs"}  # a child process on a real tmpfs: about a second


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow)
                                  if c.__name__ in SLOW_CASES else c for c in CASES],
                         ids=[c.__name__[5:] for c in CASES])
def test_trust_store(case, tmp_path: Path, capsys: pytest.CaptureFixture,
                     monkeypatch: pytest.MonkeyPatch, toy) -> None:
    case(Trial(tmp_path, capsys, monkeypatch))


# --------------------------------------------------------------------------------------------
# Real data

RAVDESS_OVERSHOOT = ["Actor_04/03-01-05-02-02-01-04.flac", "Actor_05/03-01-05-02-02-01-05.flac",
                     "Actor_07/03-01-05-02-02-01-07.flac", "Actor_08/03-01-05-02-01-02-08.flac",
                     "Actor_09/03-01-05-02-01-01-09.flac"]
"""The RAVDESS clips (loud angry takes) whose 48 kHz 16-bit samples overshoot full scale once
resampled to 16 kHz; found by decoding all 720 (test_ravdess_overshoot_is_exactly_these)."""


@pytest.mark.shared_data
def test_ravdess_overshooting_clips_are_saturated(tmp_path: Path) -> None:
    import soxr

    from real_data import shared_data
    from mer_features.pipeline import extract

    root = shared_data("ravdess")
    rows = [{"name": Path(f).stem, "audio": str(root / f)} for f in RAVDESS_OVERSHOOT]
    rows.append({"name": "in-range", "audio": str(root / "Actor_01/03-01-01-01-01-01-01.flac")})
    summary = extract(write_manifest(tmp_path / "m.csv", rows), tmp_path / "r.h5",
                      encoder="egemaps", workers=0, progress=False, device="cpu")
    assert summary.done == 6 and summary.failed == 0
    with FeatureStore(tmp_path / "r.h5") as s:
        assert "level" not in s.record("in-range").info
        for f in RAVDESS_OVERSHOOT:
            rec = s.record(Path(f).stem)
            level = rec.info["level"]
            assert level["action"] == "saturated" and level["samples"] >= 1 and level["peak"] > 1
            source = sf.read(root / f, dtype="float32")[0]
            resampled = soxr.resample(source, 48000, 16000, quality="HQ")
            reference = egemaps_of(np.clip(resampled, -1, 32767 / 32768))
            np.testing.assert_allclose(rec.utterance, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.shared_data
@pytest.mark.slow
def test_ravdess_overshoot_is_exactly_these() -> None:
    from real_data import shared_data
    from mer_features.decode.audio import decode_audio

    root = shared_data("ravdess")
    over = sorted(str(p.relative_to(root)) for p in root.glob("Actor_*/*.flac")
                  if "level" in decode_audio(p, 16000).info)
    assert over == sorted(RAVDESS_OVERSHOOT)
