"""--layers learned: softmax layer weights per modality inside the neural heads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mer_features import EMOTIONS
from mer_features.store import ClipRecord, StoreWriter
from mer_heads import fit_run, predict_run
from mer_heads.errors import ParameterError

from synthetic_media import make_tiny_hf_audio, voiced, write_manifest
from ..synthetic_stores import clip_labels, header


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


FAST = dict(folds=3, hidden=16, precision="fp32")


def layered_store(path: Path, informative: int, layers: int = 4, dim: int = 6) -> Path:
    """Utterances of shape (layers, dim) where only layer ``informative`` depends on the class;
    the others are louder noise."""
    names, y, valence = clip_labels(150)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((len(EMOTIONS), dim)) * 2
    with StoreWriter(path, header("audio", dim, 2, utterance_shape=(layers, dim))) as w:
        w.set_labels({n: (EMOTIONS[c], float(v), "train", {})
                      for n, c, v in zip(names, y, valence)})
        for n, c in zip(names, y):
            u = 2 * rng.standard_normal((layers, dim))
            u[informative] = centres[c] + 0.5 * rng.standard_normal(dim)
            w.add(ClipRecord(name=n, utterance=u.astype(np.float32),
                             frames=rng.standard_normal((3, 2)).astype(np.float32),
                             frame_times=np.arange(3, dtype=np.float32), input_hash=n,
                             duration=0.3))
    return path


@pytest.mark.slow
def test_weights_are_a_softmax_that_finds_the_informative_layer(tmp_path) -> None:
    store = layered_store(tmp_path / "l.h5", informative=2)
    result = fit_run([str(store)], tmp_path / "run", layers="learned", epochs=30, **FAST)
    entry = result.metrics["layer_weights"]["audio"]
    per_model = np.array(entry["per_model"])
    assert per_model.shape == (3, 4)
    assert np.allclose(per_model.sum(1), 1.0, atol=1e-5) and (per_model > 0).all()
    assert np.argmax(entry["mean"]) == 2 and entry["mean"][2] > 0.5  # uniform would be 0.25
    assert np.allclose(entry["mean"], per_model.mean(0), atol=1e-5)
    assert (tmp_path / "run" / "layer_weights.png").stat().st_size > 0
    assert "Learned layer weights" in (tmp_path / "run" / "report.md").read_text()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["layers"] == "learned" and run["layer_counts"] == [4]
    # predict rebuilds the weighted stack: the fold ensemble's predictions of the training
    # clips are those of the fitted estimator
    out = predict_run(tmp_path / "run", tmp_path / "p.csv")
    assert out.n == 150
    proba, _, _ = result.estimator.predict_proba(_load(store))
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == [EMOTIONS[i] for i in proba.argmax(1)]


def _load(store: Path):
    from mer_heads import load_dataset

    return load_dataset([str(store)], layers="learned")


def test_scikit_learn_heads_refuse_learned_layers(tmp_path) -> None:
    store = layered_store(tmp_path / "l.h5", informative=0, layers=2)
    with pytest.raises(ParameterError, match="layers='learned' learns layer weights inside the "
                                             "neural heads"):
        fit_run([str(store)], tmp_path / "run", model="logreg", layers="learned", folds=3)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ParameterError, match="frame matrices have no layers"):
        fit_run([str(store)], tmp_path / "run", layers="learned", input="frames", folds=3)


@pytest.mark.slow
def test_learned_layers_on_a_tiny_hubert_store(tmp_path) -> None:
    """A real architecture (HubertConfig, 3 layers) saved with save_pretrained, extracted with
    `mer-features extract --layer all`: utterances (4, 32) (the CNN output and 3 layers)."""
    model = make_tiny_hf_audio(tmp_path / "hubert")
    (tmp_path / "clips").mkdir()
    rows = []
    for i in range(12):
        emotion = ("neutral", "angry")[i % 2]
        sf.write(tmp_path / "clips" / f"c{i}.wav",
                 voiced(1.0, f0=110 if emotion == "neutral" else 220, seed=i), 16000)
        rows.append({"name": f"c{i:02d}", "audio": f"clips/c{i}.wav", "discrete": emotion,
                     "valence": -1.0 if emotion == "angry" else 0.5, "split": "train"})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    store = tmp_path / "hubert.h5"
    done = subprocess.run(
        [sys.executable, "-m", "mer_features.cli", "extract", "--modality", "audio",
         "--manifest", str(manifest), "--encoder", f"hf:{model}", "--layer", "all", "--out",
         str(store), "--no-progress", "--device", "cpu"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = fit_run([str(store)], tmp_path / "run", layers="learned", epochs=5, folds=2,
                     hidden=8, precision="fp32")
    entry = result.metrics["layer_weights"]["audio"]
    assert entry["layers"] >= 2
    assert np.allclose(np.array(entry["per_model"]).sum(1), 1.0, atol=1e-5)
    assert predict_run(tmp_path / "run", tmp_path / "p.csv").n == 12
