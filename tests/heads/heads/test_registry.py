"""The head registry: names, families, errors, and adding a head as one new class."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from mer_heads.cli import build_parser
from mer_heads.data.dataset import load_dataset
from mer_heads.errors import ParameterError
from mer_heads.experiments.fit import fit_run, predict_run
from mer_heads.heads import (BUILT_IN, NEURAL, SKLEARN, NeuralHead, SklearnHead, get_head,
                             heads_using, known_heads, register_head, registry)
from mer_heads.protocol import CrossValidatedHead

from ..synthetic_stores import FAST


@pytest.fixture
def own_registry(monkeypatch):
    """Heads registered by a test vanish after it."""
    monkeypatch.setattr(registry, "_HEADS", dict(registry._HEADS))


def registering_modules() -> list[str]:
    """The modules of mer_heads/heads/ that register a head (read from their source)."""
    folder = Path(registry.__file__).parent
    return sorted(p.stem for p in folder.glob("*.py")
                  if re.search(r"^@register_head\b", p.read_text(encoding="utf-8"), re.M))


def test_built_in_heads_and_their_families():
    """Every module of the package that registers a head is in BUILT_IN (else its head would
    exist only once something imports it) and registers one head named like the module, in
    --model's order; each belongs to the family it subclasses and reads that family's
    hyper-parameters."""
    assert registering_modules() == sorted(BUILT_IN)
    assert known_heads() == BUILT_IN
    for name in BUILT_IN:
        head = get_head(name)
        assert type(head).__module__ == f"mer_heads.heads.{name}"
        family = NeuralHead if head.family == NEURAL else SklearnHead
        assert isinstance(head, family) and head.params == family.params
        assert head.inputs == family.inputs and head.model_file == family.model_file
    neural = tuple(n for n in BUILT_IN if isinstance(get_head(n), NeuralHead))
    sklearn = tuple(n for n in BUILT_IN if isinstance(get_head(n), SklearnHead))
    assert known_heads(NEURAL) == neural and known_heads(SKLEARN) == sklearn
    assert neural and sklearn and set(neural + sklearn) == set(BUILT_IN)
    assert heads_using("C") == sklearn and heads_using("hidden") == neural
    assert SklearnHead.inputs == ("utterance",) and "frames" in NeuralHead.inputs


def test_unknown_and_duplicate_heads_are_refused(own_registry):
    with pytest.raises(ParameterError, match=rf"model must be one of {', '.join(BUILT_IN)}; got "
                                             r"'transformer'\.") as e:
        get_head("transformer")
    assert e.value.parameter == "model"

    class Again(SklearnHead):
        name = "logreg"

    with pytest.raises(ValueError, match=r"'logreg' is already registered.*LogRegHead"):
        register_head(Again)

    class NotAHead:
        name = "plain"

    with pytest.raises(ValueError, match=r"NotAHead is not a head"):
        register_head(NotAHead)

    class Shouting(SklearnHead):
        name = "Loud Head"

    with pytest.raises(ValueError, match=r"must be a lower-case word"):
        register_head(Shouting)
    assert known_heads() == BUILT_IN


@pytest.mark.slow
def test_a_new_neural_head_is_one_class(own_registry, stores, tmp_path):
    """A fusion defined in a few lines trains, predicts, round-trips through a run directory and
    appears in the command line, with no other file touched."""

    @register_head
    class MeanHead(NeuralHead):
        name = "mean"
        help = "mean of the present modalities"

        def build(self, stack, widths):
            pass  # no layers of its own

        def fuse(self, stack, hidden, present):
            import torch

            total = torch.stack(hidden).sum(0)
            return total / present.sum(-1, keepdim=True).clamp(min=1).to(total.dtype)

    assert "mean" in known_heads(NEURAL)
    choices = build_parser()._subparsers._group_actions[0].choices["fit"]
    action = next(a for a in choices._actions if "--model" in a.option_strings)
    assert "mean" in action.choices and "mean (mean of the present modalities)" in action.help
    run = fit_run([stores["audio"], stores["text"]], tmp_path / "run", model="mean",
                  figures=False, **{**FAST, "epochs": 20, "lr": 3e-3})
    assert run.metrics["cv"]["f1"] > 0.6
    out = predict_run(tmp_path / "run", tmp_path / "p.csv")
    proba, _, _ = run.estimator.predict_proba(load_dataset([stores["audio"], stores["text"]]))
    rows = list(csv.DictReader(open(out.path)))
    assert [r["discrete"] for r in rows][:119] == \
        [["neutral", "angry", "happy", "sad", "worried", "surprise"][i]
         for i in proba.argmax(1)][:119]


def test_a_new_sklearn_head_is_one_class(own_registry, stores):
    @register_head
    class DiscriminantHead(SklearnHead):
        name = "lda"

        def classifier(self, seed, C):
            from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

            return LinearDiscriminantAnalysis()

        def regressor(self, C):
            from sklearn.linear_model import Ridge

            return Ridge(alpha=1.0 / C)

    data = load_dataset([stores["audio"], stores["text"]])
    est = CrossValidatedHead("lda", folds=3).fit(data)
    assert est.cv_scores_.f1 > 0.6 and len(est.estimators_) == 3
    folds = est.predict_fold_proba(data, rows=np.arange(10))
    np.testing.assert_allclose(folds.mean(0), est.predict_proba(data.subset(np.arange(10)))[0],
                               atol=1e-12)
    with pytest.raises(ParameterError, match=r"The scikit-learn model 'lda' takes "
                                             r"utterance vectors; load the data with "
                                             r"input='utterance'"):
        CrossValidatedHead("lda").fit(load_dataset([stores["audio"]], input="frames"))
