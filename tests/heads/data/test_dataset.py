"""Loading and joining feature stores into a dataset, and the errors for bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ..synthetic_stores import MODALITIES, clip_labels, write_store
from mer_features import EMOTIONS
from mer_heads.data.dataset import _bound_frames, load_dataset, summarise
from mer_heads.errors import DataError, LabelError


def test_joins_stores_by_name_with_presence_and_labels(stores):
    data = load_dataset([stores["audio"], stores["text"], stores["video"]])
    names, y, valence = clip_labels(120)
    assert data.names == sorted(names)
    assert data.keys == ["audio", "text", "video"]
    assert [x.shape for x in data.features] == [(120, 12), (120, 10), (120, 8)]
    assert all(x.dtype == np.float32 for x in data.features)
    # every tenth clip has a failed video, the last clip has nothing usable
    assert data.present[:, 2].sum() == 120 - 12 - 1
    assert not data.present[-1].any()
    np.testing.assert_array_equal(data.features[2][~data.present[:, 2]], 0)
    order = np.argsort(names)
    np.testing.assert_array_equal(data.labels, y[order])
    np.testing.assert_allclose(data.valence, valence[order], rtol=1e-6)
    info = summarise(data)
    assert info["labelled"] == 120 and info["present"]["video"] == 107
    assert any("video: 13 of 120" in n for n in data.notes)


def test_key_value_specs_name_modalities_and_duplicates_are_refused(stores, tmp_path):
    data = load_dataset([f"speech={stores['audio']}", ("words", stores["text"])])
    assert data.keys == ["speech", "words"]
    other = tmp_path / "audio2.h5"
    other.write_bytes(Path(stores["audio"]).read_bytes())
    with pytest.raises(DataError, match=r"Two stores have the modality key 'audio'.*audio1="):
        load_dataset([stores["audio"], other])
    with pytest.raises(DataError, match=r"audio.h5' is given twice"):
        load_dataset([stores["audio"], f"speech={stores['audio']}"])


def test_stores_that_disagree_on_names_are_refused_unless_inner_join(tmp_path, stores):
    names, y, valence = clip_labels(120)
    other = write_store(tmp_path / "short.h5", "text", names[:100], y, valence, dim=10,
                        frame_dim=4, seed=3)
    with pytest.raises(DataError, match=r"disagree on clip names: 20 clip\(s\) of .*audio.h5' are "
                                        r"not in .*short.h5'.*--join inner"):
        load_dataset([stores["audio"], other])
    data = load_dataset([stores["audio"], other], join="inner")
    assert len(data) == 100


def test_nan_features_are_an_error_naming_the_clip(tmp_path):
    names, y, valence = clip_labels(30)
    path = write_store(tmp_path / "nan.h5", "audio", names, y, valence, dim=4, frame_dim=2,
                       seed=0, nan_in={"clip0007"})
    with pytest.raises(DataError, match=r"NaN or infinite features for 1 usable clip.*clip0007"):
        load_dataset([path])


def test_a_label_outside_the_six_classes_makes_the_datas_label_set(tmp_path):
    names, y, valence = clip_labels(30)
    path = write_store(tmp_path / "bad.h5", "audio", names, y, valence, dim=4, frame_dim=2,
                       seed=0, labels_override={"clip0003": "disgust"})
    data = load_dataset([path])  # the data's classes, sorted; the lone clip is warned about
    assert data.classes == ("angry", "disgust", "happy", "neutral", "sad", "surprise", "worried")
    assert data.labels[3] == data.classes.index("disgust")
    assert any(n.startswith("warning: class 'disgust' has 1 clip") for n in data.notes)
    # declared classes refuse it (a typo cannot become a class)
    with pytest.raises(LabelError, match=r"outside the classes --classes neutral,angry.*"
                                         r"'disgust' \(1 clip\)"):
        load_dataset([path], classes="mer2023")


def test_stores_with_different_labels_are_refused(tmp_path):
    names, y, valence = clip_labels(30)
    a = write_store(tmp_path / "a.h5", "audio", names, y, valence, dim=4, frame_dim=2, seed=0)
    b = write_store(tmp_path / "b.h5", "text", names, y, valence, dim=4, frame_dim=2, seed=1,
                    labels_override={"clip0002": "sad" if y[2] != 3 else "happy"})
    with pytest.raises(LabelError, match=r"disagree on the labels of 1 clip.*clip0002.*--manifest"):
        load_dataset([a, b])


def test_manifest_replaces_store_labels_and_is_validated(tmp_path, stores):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("name,discrete,valence,split\nclip0000,Happy,1.5,train\n"
                        "clip0001,,,test\nnot-in-stores,sad,-2,train\n")
    data = load_dataset([stores["audio"]], manifest=manifest)
    assert data.discrete[0] == "happy" and data.valence[0] == 1.5 and data.split[1] == "test"
    assert (data.labels >= 0).sum() == 1 and math.isnan(data.valence[5])
    assert any("not in the manifest" in n for n in data.notes)
    manifest.write_text("name,discrete\nclip0000,joy\nclip0000,sad\n")
    with pytest.raises(LabelError, match=r"(?s)1 problem\(s\).*line 3: "
                                         r"name 'clip0000' repeats line 2"):
        load_dataset([stores["audio"]], manifest=manifest)
    manifest.write_text("name,discrete\nclip0000,joy\nclip0001,sad\n")  # any label is read
    assert load_dataset([stores["audio"]], manifest=manifest).classes == ("joy", "sad")
    with pytest.raises(LabelError, match=r"outside the classes --classes.*'joy' \(1 clip\)"):
        load_dataset([stores["audio"]], manifest=manifest, classes="mer2023")


def test_frames_are_padded_masked_and_bounded(stores):
    data = load_dataset([stores["audio"], stores["video"]], input="frames", max_frames=16)
    x, mask = data.features[0], data.frame_mask[0]
    assert x.shape == (120, 16, MODALITIES["audio"][1]) and mask.shape == (120, 16)
    assert mask.any(axis=1)[data.present[:, 0]].all()
    np.testing.assert_array_equal(x[~mask], 0)
    assert not data.frame_mask[1][~data.present[:, 1]].any()


def test_bounding_frames_averages_equal_segments():
    frames = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    out = _bound_frames(frames, 4)
    np.testing.assert_allclose(out[:, 0], [0.5, 3.0, 5.5, 8.0])
    assert _bound_frames(frames[:3], 4).shape == (3, 2)


def test_layered_utterances_are_averaged_or_flattened(tmp_path):
    names, y, valence = clip_labels(20)
    path = write_store(tmp_path / "layers.h5", "audio", names, y, valence, dim=6, frame_dim=2,
                       seed=0, layers=3)
    assert load_dataset([path]).features[0].shape == (20, 6)
    assert load_dataset([path], layers="flatten").features[0].shape == (20, 18)


def test_missing_store_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DataError, match=r"Cannot read feature store .*nope.h5.*does not exist"):
        load_dataset([tmp_path / "nope.h5"])


def test_emotions_order_is_the_challenge_order():
    assert EMOTIONS == ("neutral", "angry", "happy", "sad", "worried", "surprise")
