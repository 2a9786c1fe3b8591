"""The robustness sweep (``mer-features sweep``): a store per noise level and the sweep file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from synthetic_media import voiced, write_manifest
from mer_features.cli import main
from mer_features.pipeline.sweep import sweep
from mer_features.store import FeatureStore


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """4 short voiced clips; the last one is a broken file when ``broken`` is asked for."""
    (tmp_path / "corpus").mkdir()
    rows = []
    for i in range(4):
        sf.write(tmp_path / "corpus" / f"{i}.wav", voiced(0.6 + 0.1 * i, f0=120 + 15 * i, seed=i),
                 16000)
        rows.append({"name": f"c{i}", "audio": f"{i}.wav", "discrete": "happy"})
    return write_manifest(tmp_path / "corpus" / "manifest.csv", rows)


def _sweep(manifest: Path, prefix: Path, levels: str, *extra: str) -> list[str]:
    return ["sweep", "--modality", "audio", "--manifest", str(manifest), "--levels", levels,
            "--prefix", str(prefix), "--seed", "3", "--workers", "0", "--no-progress",
            "--encoder", "egemaps", *extra]


@pytest.mark.slow
def test_every_level_gets_its_store_and_the_sweep_file_names_them(corpus: Path, tmp_path: Path,
                                                                   capsys):
    prefix = tmp_path / "out" / "demo-audio"
    assert main(_sweep(corpus, prefix, "clean 20 10:pink")) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"{prefix}.h5"  # the clean store, for the Makefile
    assert "== 10:pink -> " in captured.err
    document = json.loads((tmp_path / "out" / "demo-audio.sweep.json").read_text())
    assert document == {
        "format": 1, "modality": "audio", "manifest": "../corpus/manifest.csv",
        "encoder": "egemaps", "seed": 3, "clean": "demo-audio.h5",
        "conditions": [
            {"level": "20", "spec": "snr=20,source=white", "label": "20 dB",
             "store": "demo-audio-snr20.h5"},
            {"level": "10:pink", "spec": "snr=10,source=pink", "label": "10 dB pink",
             "store": "demo-audio-snr10-pink.h5"}]}
    with FeatureStore(f"{prefix}.h5") as clean:
        assert clean.fields["noise"] is None
        utterances = clean.utterances()
    for condition in document["conditions"]:
        with FeatureStore(prefix.parent / condition["store"]) as store:
            assert store.fields["noise"] == {"spec": condition["spec"], "seed": 3}
            assert store.names == ["c0", "c1", "c2", "c3"] and set(store.status) == {"ok"}
            assert (store.utterances() != utterances).any()

    # A second sweep reuses every complete store.
    result = sweep(corpus, "clean 20 10:pink", prefix=prefix, seed=3, workers=0, progress=False,
                   encoder="egemaps", log=lambda message: None)
    assert [s.skipped for s in result.summaries.values()] == [4, 4, 4]
    assert [s.done for s in result.summaries.values()] == [0, 0, 0]


@pytest.mark.slow
def test_a_level_with_failed_clips_does_not_stop_the_sweep(corpus: Path, tmp_path: Path, capsys):
    (corpus.parent / "3.wav").write_bytes(b"not audio")
    prefix = tmp_path / "broken"
    assert main(_sweep(corpus, prefix, "20 clean 5")) == 3
    captured = capsys.readouterr()
    assert "level(s) 20, clean, 5" in captured.err and captured.out.strip() == f"{prefix}.h5"
    for store in ("broken-snr20.h5", "broken.h5", "broken-snr05.h5"):
        with FeatureStore(tmp_path / store) as s:
            assert list(s.status) == ["ok", "ok", "ok", "failed"]
    document = json.loads((tmp_path / "broken.sweep.json").read_text())
    assert [c["level"] for c in document["conditions"]] == ["20", "5"]


@pytest.mark.parametrize("levels, words", [
    ("20 10", "must include 'clean'"),
    ("clean 20 20.0", "write the same store"),
    ("clean blur4", "'blur4' (blur=4) does not corrupt audio"),
    ("clean loud", "Level 'loud' is not one of"),
    ("", "No levels given"),
])
def test_bad_levels_are_refused_before_any_work(corpus: Path, tmp_path: Path, capsys, levels,
                                                words):
    assert main(_sweep(corpus, tmp_path / "s", levels)) == 2  # a bad argument
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("usage: mer-features sweep")
    assert err[-1].startswith("mer-features sweep: error: ") and words in err[-1]
    assert "--levels" in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


@pytest.mark.slow
def test_the_default_prefix_is_the_default_store_of_extract(corpus: Path, tmp_path: Path, capsys,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--modality", "audio", "--manifest", str(corpus), "--levels",
                 "clean 0", "--workers", "0", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == "features/corpus-audio-whisper.h5"
    document = json.loads(Path("features/corpus-audio-whisper.sweep.json").read_text())
    assert document["clean"] == "corpus-audio-whisper.h5"
    assert document["conditions"][0]["store"] == "corpus-audio-whisper-snr00.h5"
