"""The official scores, the per-model F1 used to pick epochs, and `evaluate` on files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from mer_heads.errors import LabelError
from mer_heads.metrics import evaluate_files, score
from mer_heads.heads.training import weighted_f1


def test_stacked_weighted_f1_equals_sklearn():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(5, 60))
        true = rng.integers(0, 6 if trial % 2 else 3, size=(4, n))
        pred = rng.integers(0, 6, size=(4, n))
        valid = rng.random((4, n)) < 0.8
        valid[:, 0] = True
        got = weighted_f1(torch.from_numpy(pred), torch.from_numpy(true), torch.from_numpy(valid), 6)
        for f in range(4):
            want = f1_score(true[f][valid[f]], pred[f][valid[f]], labels=list(range(6)),
                            average="weighted", zero_division=0)
            assert got[f].item() == pytest.approx(want, abs=1e-12)


def test_score_combines_f1_and_mse_or_gives_f1_alone():
    true = np.array(["happy", "sad", "sad", "neutral"], dtype=object)
    pred = np.array(["happy", "sad", "neutral", "neutral"], dtype=object)
    s = score(true, pred, np.array([1.0, -2.0, np.nan, 0.0]), np.array([2.0, -2.0, 5.0, 0.0]))
    f1 = f1_score(true, pred, average="weighted")
    assert s.f1 == pytest.approx(f1) and s.accuracy == 0.75
    assert s.mse == pytest.approx(1 / 3) and s.n_valence == 3
    assert s.metric == pytest.approx(f1 - 0.25 / 3)
    alone = score(true, pred)
    assert alone.mse is None and alone.metric == alone.f1


def test_evaluate_files(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("name,discrete,valence\na,happy,2\nb,sad,-2\nc,angry,-3\nd,,\n")
    pred = tmp_path / "pred.csv"
    pred.write_text("name,discrete,valence\na,happy,1\nb,sad,-2\nc,sad,-3\nd,neutral,0\n"
                    "e,happy,1\n")
    s, notes = evaluate_files(pred, labels)
    assert s.n == 3 and s.mse == pytest.approx(1 / 3) and s.metric == pytest.approx(s.f1 - 1 / 12)
    assert any("not scored" in n for n in notes)
    pred.write_text("name,discrete,valence\na,happy,\nb,sad,\nc,sad,\n")
    s, notes = evaluate_files(pred, labels)
    assert s.mse is None and any("F1 alone" in n for n in notes)
    pred.write_text("name,discrete,valence\na,happy,1\n")
    with pytest.raises(LabelError, match=r"lacks 2 of the 3 labelled clips \(b, c\)"):
        evaluate_files(pred, labels)
    pred.write_text("name,discrete,valence\na,happy,1\nb,sad,1\nc,sad,\n")
    with pytest.raises(LabelError, match=r"no valence for 1 clip.*\(c\)"):
        evaluate_files(pred, labels)
    pred.write_text("name,discrete,valence\na,joy,1\nb,sad,1\nc,sad,1\n")
    with pytest.raises(LabelError, match=r"line 2: discrete label 'joy'"):
        evaluate_files(pred, labels)
