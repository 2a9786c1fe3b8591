"""The cross-validation protocol: folds, standardisation, best epochs, errors, ensembles."""

from __future__ import annotations

import numpy as np
import pytest

from mer_features import EMOTIONS
from mer_heads.data.dataset import load_dataset
from mer_heads.errors import DataError, NotFittedError
from mer_heads.protocol import CrossValidatedHead
from .synthetic_stores import FAST, clip_labels, write_store


@pytest.fixture(scope="module")
def data(stores):
    return load_dataset([stores["audio"], stores["text"], stores["video"]])


@pytest.fixture(scope="module")
def fitted(data):
    return CrossValidatedHead("attention", **{**FAST, "epochs": 30, "lr": 3e-3}).fit(data)


def test_neural_head_learns_and_keeps_each_folds_best_epoch(fitted, data):
    est = fitted
    assert est.cv_scores_.f1 > 0.6 and est.cv_scores_.mse < 1.0
    assert est.has_valence_ and len(est.train_names_) == 119
    assert est.dropped_ == [data.names[-1]]
    assert est.best_epochs_.shape == (3,) and (est.best_epochs_ >= 1).all()
    assert (est.best_epochs_ <= 30).all()
    # each kept epoch is the best of that model's held-out curve: its score is the maximum
    for s in est.model_scores_:
        assert s.metric == pytest.approx(s.f1 - 0.25 * s.mse)
    assert est.curve_.shape == (30,)


def test_folds_are_stratified_and_statistics_come_from_training_folds(fitted, data):
    est = fitted
    rows = np.array([data.names.index(n) for n in est.train_names_])
    y = data.labels[rows]
    for k in range(3):
        counts = np.bincount(y[est.fold_ == k], minlength=6)
        assert (np.abs(counts - np.bincount(y, minlength=6) / 3) <= 1).all()
        train = rows[est.fold_ != k]
        use = train[data.present[train, 0]]
        np.testing.assert_allclose(est.standardizer_.mean[0][k], data.features[0][use].mean(0),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["concat", "fbp", "logreg",
                                   pytest.param("svm", marks=pytest.mark.slow)])
def test_other_models_learn(data, model):
    params = {**FAST, "epochs": 30, "lr": 3e-3}
    est = CrossValidatedHead(model, **params).fit(data)
    assert est.cv_scores_.f1 > 0.6, est.cv_scores_


@pytest.mark.slow
def test_frame_input_learns(stores):
    data = load_dataset([stores["audio"], stores["video"]], input="frames", max_frames=16)
    est = CrossValidatedHead("attention", **{**FAST, "epochs": 30, "lr": 3e-3}).fit(data)
    assert est.cv_scores_.f1 > 0.5, est.cv_scores_


def test_same_seed_same_result_and_other_seed_other_folds(data):
    a = CrossValidatedHead(**FAST).fit(data)
    b = CrossValidatedHead(**FAST).fit(data)
    np.testing.assert_array_equal(a.oof_proba_, b.oof_proba_)
    c = CrossValidatedHead(**{**FAST, "seed": 1}).fit(data)
    assert (a.fold_ != c.fold_).any()


def test_seeds_stack_more_models_per_fold(data):
    est = CrossValidatedHead(**{**FAST, "seeds": 3}).fit(data)
    assert est.model_folds_.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert est.model_seeds_.tolist() == [0, 1, 2] * 3
    assert len(est.model_scores_) == 9


def test_prediction_averages_folds_and_imputes_clips_without_modalities(fitted, data):
    proba, valence, imputed = fitted.predict_proba(data)
    assert proba.shape == (120, 6) and np.allclose(proba.sum(1), 1)
    assert imputed.tolist() == [False] * 119 + [True]
    np.testing.assert_allclose(proba[-1], fitted.prior_)
    assert valence[-1] == pytest.approx(fitted.mean_valence_)
    labels, _, _ = fitted.predict(data)
    assert labels[-1] == EMOTIONS[int(np.argmax(fitted.prior_))]


def test_classification_only_without_valence(tmp_path):
    names, y, valence = clip_labels(60)
    path = write_store(tmp_path / "a.h5", "audio", names, y, valence, dim=6, frame_dim=2, seed=0)
    data = load_dataset([path])
    data.valence[:] = np.nan
    est = CrossValidatedHead(**FAST).fit(data)
    assert not est.has_valence_ and est.cv_scores_.mse is None
    assert est.cv_scores_.metric == est.cv_scores_.f1
    _, valence_pred, _ = est.predict_proba(data)
    assert np.isnan(valence_pred).all()


def test_bad_input_errors(tmp_path, data):
    names, y, valence = clip_labels(30)
    unlabelled = write_store(tmp_path / "u.h5", "audio", names, y, valence, dim=4, frame_dim=2,
                             seed=0, with_labels=False)
    with pytest.raises(DataError, match=r"None of the 30 clips has a discrete label.*u.h5.*"
                                        r"--manifest"):
        CrossValidatedHead(**FAST).fit(load_dataset([unlabelled]))
    single = load_dataset([unlabelled])
    single.discrete[:] = "sad"
    with pytest.raises(DataError, match=r"All 30 labelled training clips have the class 'sad'"):
        CrossValidatedHead(**FAST).fit(single)
    with pytest.raises(DataError, match=r"cannot be split into 50 folds"):
        CrossValidatedHead(**{**FAST, "folds": 50}).fit(data.subset(np.arange(40)))
    with pytest.raises(DataError, match=r"model must be one of"):
        CrossValidatedHead("transformer").fit(data)
    with pytest.raises(DataError, match=r"epochs must be an integer >= 1"):
        CrossValidatedHead(epochs=0).fit(data)
    with pytest.raises(NotFittedError, match=r"not fitted"):
        CrossValidatedHead().predict(data)


@pytest.mark.slow
def test_bf16_precision_trains_to_a_similar_score(data, fitted):
    est = CrossValidatedHead("attention", **{**FAST, "epochs": 30, "lr": 3e-3,
                                             "precision": "bf16"}).fit(data)
    assert est.precision_ == "bf16"
    assert est.cv_scores_.f1 > fitted.cv_scores_.f1 - 0.1


def test_prediction_is_the_mean_of_the_fold_models(fitted, data):
    import torch

    from mer_heads.heads.stack import StackedHead
    from mer_heads.heads.training import DeviceData, predict_rows

    proba, valence, _ = fitted.predict_proba(data)
    tensors = DeviceData(data, fitted.standardizer_, torch.device("cpu"))
    singles, single_v = [], []
    for f, k in enumerate(fitted.model_folds_):
        one = StackedHead(1, data.dims, hidden=FAST["hidden"]).eval()
        one.load_state_dict({n: v[f:f + 1] for n, v in fitted.stack_.state_dict().items()})
        p, v = predict_rows(one, tensors, torch.tensor([k]), torch.arange(len(data))[None])
        singles.append(p[0].numpy())
        single_v.append(v[0, :, 0].numpy())  # outputs (F, V, T): valence is the first
    keep = data.present.any(axis=1)
    np.testing.assert_allclose(proba[keep], np.mean(singles, axis=0)[keep], atol=1e-5)
    np.testing.assert_allclose(valence[keep], np.mean(single_v, axis=0)[keep], atol=1e-4)


@pytest.mark.parametrize("model", ["attention", "logreg"])
def test_valence_predictions_stay_on_the_scale(data, model):
    """Features far outside the training range (as under heavy noise) cannot push valence past
    [-5, 5]: predictions are clipped to the MER 2023 scale."""
    import dataclasses

    est = CrossValidatedHead(model, **{**FAST, "epochs": 5}).fit(data)
    assert (np.abs(est.oof_valence_) <= 5).all()
    wild = dataclasses.replace(data, features=[x * 1e4 for x in data.features])
    _, valence, _ = est.predict_proba(wild)
    assert np.isfinite(valence).all() and (np.abs(valence) <= 5).all()
    assert np.abs(valence).max() == 5.0  # clipped, not merely small


def test_reused_gather_buffer_gives_the_same_inputs(fitted, data):
    """A training step's gather writes into a buffer kept between steps; its inputs equal a
    fresh gather's, and a later step of another size gets a buffer of its own size."""
    import torch

    from mer_heads.heads.training import DeviceData

    tensors = DeviceData(data, fitted.standardizer_, torch.device("cpu"))
    folds = torch.tensor([0, 2])
    gen = torch.Generator().manual_seed(1)
    for width in (7, 7, 5):
        rows = torch.randint(0, len(data), (2, width), generator=gen)
        fresh, present, _ = tensors.batch(folds, rows)
        reused, present_r, _ = tensors.batch(folds, rows, reuse=True)
        assert torch.equal(present, present_r)
        for a, b in zip(fresh, reused):
            assert b.shape == (2, width, a.shape[-1]) and torch.equal(a, b)
