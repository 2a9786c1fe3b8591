"""Text stores as head inputs: two stores of the text modality fused under their own keys
(Chinese and English transcripts, ``--features text_zh=... --features text_en=...``), and a
store of utterance vectors only (e5) refused for frame input with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mer_features import EMOTIONS
from mer_features.store import ClipRecord, StoreWriter
from mer_heads.cli import main
from mer_heads.data.dataset import load_dataset
from mer_heads.errors import DataError
from mer_heads.experiments.fit import fit_run, predict_run

from ..synthetic_stores import FAST, clip_labels, header, write_store


@pytest.fixture(scope="module")
def two_languages(tmp_path_factory) -> dict[str, Path]:
    """Two text stores of the same 90 clips (as if Chinese and English transcripts): each
    carries half of the class signal, so together they know more than either alone."""
    folder = tmp_path_factory.mktemp("two-languages")
    names, y, valence = clip_labels(90, seed=4)
    return {"zh": write_store(folder / "zh.h5", "text", names, y, valence, dim=6, frame_dim=3,
                              seed=1, strength=0.8),
            "en": write_store(folder / "en.h5", "text", names, y, valence, dim=6, frame_dim=3,
                              seed=2, strength=0.8)}


def utterance_only_store(path: Path, n: int = 30) -> Path:
    """A text store as e5 writes it: every clip ok, an utterance vector each, no frames."""
    names, y, valence = clip_labels(n, seed=5)
    rng = np.random.default_rng(0)
    with StoreWriter(path, header("text", 8, 8)) as w:
        w.set_labels({nm: (EMOTIONS[c], float(v), "train") for nm, c, v in zip(names, y, valence)})
        for name in names:
            w.add(ClipRecord(name=name, utterance=rng.standard_normal(8).astype(np.float32),
                             frames=np.zeros((0, 8), np.float32),
                             frame_times=np.zeros(0, np.float32), input_hash=name))
    return path


def test_two_text_stores_load_under_their_keys(two_languages):
    data = load_dataset([f"text_zh={two_languages['zh']}", f"text_en={two_languages['en']}"])
    assert data.keys == ["text_zh", "text_en"]
    assert [x.shape for x in data.features] == [(90, 6), (90, 6)]
    assert not np.array_equal(data.features[0], data.features[1])
    assert [m.store_modality for m in data.modalities] == ["text", "text"]
    # two text stores without keys collide on the key 'text': the error says what to do
    with pytest.raises(DataError, match=r"Two stores have the modality key 'text'.*text1="):
        load_dataset([two_languages["zh"], two_languages["en"]])
    # a modality name is still checked against the store it names
    with pytest.raises(DataError, match=r"the store holds text features, not audio"):
        load_dataset([f"audio={two_languages['zh']}", f"text_en={two_languages['en']}"])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["logreg", "attention"])
def test_one_head_fuses_both_languages_and_predicts(two_languages, tmp_path, model):
    features = [f"text_zh={two_languages['zh']}", f"text_en={two_languages['en']}"]
    result = fit_run(features, tmp_path / "run", model=model, **FAST)
    keys = [m["key"] for m in result.metrics["modalities"]]
    assert keys == ["text_zh", "text_en"]
    assert result.metrics["clips"]["train"] == 90
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [m["key"] for m in run["modalities"]] == ["text_zh", "text_en"]
    # predict takes the same keys (and the run's own stores by default)
    out = predict_run(tmp_path / "run", tmp_path / "p.csv", features)
    assert out.n == 90
    alone = fit_run(features[:1], tmp_path / "zh-alone", model=model, **FAST)
    assert result.metrics["cv"]["metric"] > alone.metrics["cv"]["metric"] - 0.05


@pytest.mark.slow
def test_cli_fit_takes_two_text_keys(two_languages, tmp_path):
    code = main(["fit", "--features", f"text_zh={two_languages['zh']}", "--features",
                 f"text_en={two_languages['en']}", "--model", "logreg", "--folds", "3",
                 "--out", str(tmp_path / "run")])
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [m["key"] for m in metrics["modalities"]] == ["text_zh", "text_en"]


def test_utterance_only_store_is_refused_for_frame_input(tmp_path, capsys):
    store = utterance_only_store(tmp_path / "e5.h5")
    assert load_dataset([store]).features[0].shape == (30, 8)  # utterance input: fine
    with pytest.raises(DataError, match=r"holds utterance vectors only.*--input utterance"):
        load_dataset([store], input="frames")
    code = main(["fit", "--features", str(store), "--input", "frames", "--model", "attention",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert "utterance vectors only" in err and "--input utterance" in err
    assert not (tmp_path / "run" / "run.json").exists()
