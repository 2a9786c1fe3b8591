"""Typed settings: one place for every default, validation when made, JSON round trips, and
the estimator's scikit-learn contract built on them."""

from __future__ import annotations

import inspect
import json
from dataclasses import fields, replace

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from mer_heads.cli import build_parser
from mer_heads.config import DataConfig, HeadConfig, SemiSettings, parameter_flag, split_options
from mer_heads.data.dataset import load_dataset
from mer_heads.errors import MerHeadsError, NotFittedError, ParameterError
from mer_heads.experiments.fit import fit_run
from mer_heads.heads import known_heads
from mer_heads.protocol import CrossValidatedHead
from mer_heads.rundir import load_run

from .synthetic_stores import FAST


def test_estimator_signature_is_the_config():
    """CrossValidatedHead's keyword hyper-parameters are HeadConfig's fields, with its defaults."""
    signature = inspect.signature(CrossValidatedHead.__init__).parameters
    assert [n for n in signature if n != "self"] == [f.name for f in fields(HeadConfig)]
    assert CrossValidatedHead().get_params() == HeadConfig().to_json()
    est = CrossValidatedHead.from_config(HeadConfig(model="logreg", folds=3))
    assert est.get_params() == {**HeadConfig().to_json(), "model": "logreg", "folds": 3}
    assert est.config == HeadConfig(model="logreg", folds=3)
    assert clone(est).get_params() == est.get_params()


@pytest.mark.parametrize("change,words,flag", [
    ({"model": "transformer"}, "model must be one of attention, concat, fbp, logreg, svm; got "
                               "'transformer'.", "--model"),
    ({"folds": 1}, "folds must be an integer >= 2; got 1.", "--folds"),
    ({"epochs": 2.5}, "epochs must be an integer >= 1; got 2.5.", "--epochs"),
    ({"batch_size": True}, "batch_size must be an integer >= 1; got True.", "--batch-size"),
    ({"seed": 2**32 - 1, "seeds": 2}, "seed must be an integer in [0, 4294967293] (with "
                                      "seeds=2); got 4294967295.", "--seed"),
    ({"lr": float("nan")}, "lr must be a finite number > 0; got nan.", "--lr"),
    ({"C": 0}, "C must be a finite number > 0; got 0.", "-C"),
    ({"dropout": 1.0}, "dropout must be a number in [0, 1); got 1.0.", "--dropout"),
    ({"precision": "fp8"}, "precision must be one of fp32, bf16, auto", "--precision"),
    ({"threads": 0}, "threads must be an integer >= 1; got 0.", "--threads"),
    ({"device": "tpu"}, "device must be cpu, cuda, cuda:N or auto; got 'tpu'.", "--device"),
])
def test_a_config_out_of_range_cannot_be_made(change, words, flag):
    """The library names the parameter (and says nothing of command-line flags); the command
    line adds the parameter's flag."""
    with pytest.raises(ParameterError) as e:
        HeadConfig(**change)
    assert words in str(e.value) and "--" not in str(e.value)
    assert parameter_flag(e.value.parameter) == flag
    assert e.value.with_flag(flag) == str(e.value)[:-1] + f" ({flag})."
    with pytest.raises(ParameterError):  # the estimator refuses it at fit, as sklearn does
        CrossValidatedHead(**change).validate_params()


@pytest.mark.parametrize("make,parameter,flag", [
    (lambda: DataConfig(max_frames=0), "max_frames", "--max-frames"),
    (lambda: DataConfig(normalize_by=" actor"), "normalize_by", "--normalize-by"),
    (lambda: DataConfig(layers="learned", input="frames"), "layers", "--layers"),
    (lambda: SemiSettings("co-training"), "strategy", "--semi"),
    (lambda: SemiSettings("threshold", threshold=1.5), "threshold", "--semi-threshold"),
    (lambda: SemiSettings(hide_labels=1.0), "hide_labels", "--hide-labels"),
    (lambda: HeadConfig(model="logreg", modality_dropout=0.5), "modality_dropout",
     "--modality-dropout"),
])
def test_every_settings_error_names_its_parameter_and_maps_to_its_flag(make, parameter, flag):
    with pytest.raises(ParameterError) as e:
        make()
    assert e.value.parameter == parameter and "--" not in str(e.value)
    assert parameter_flag(parameter) == flag
    assert parameter_flag("train_split") == "--train-split"  # a function keyword: its flag


def test_configs_round_trip_through_json_and_refuse_unknown_fields():
    config = HeadConfig(model="fbp", lr=3e-3, batch_size=64, seeds=2)
    assert HeadConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert HeadConfig.from_json({"model": "svm"}) == HeadConfig(model="svm")
    with pytest.raises(ParameterError, match=r"Unknown HeadConfig field\(s\) learning_rate"):
        HeadConfig.from_json({"learning_rate": 0.1})
    data = DataConfig(input="frames", max_frames=16, manifest="m.csv")
    assert DataConfig.from_json(json.loads(json.dumps(data.to_json()))) == data
    with pytest.raises(ParameterError, match=r"max_frames must be an integer >= 1; got 0\."):
        DataConfig(max_frames=0)
    with pytest.raises(ParameterError, match=r"join must be one of exact, inner; got 'outer'"):
        replace(data, join="outer")
    assert SemiSettings("threshold", threshold=0.9).to_json() == {
        "strategy": "threshold", "rounds": 1, "threshold": 0.9, "quantile": 0.8,
        "teacher": "fold", "hide_labels": None}


def test_keyword_options_split_between_the_two_configs():
    head, loading = split_options({"model": "logreg"}, None, {"folds": 3, "input": "frames"})
    assert (head, loading) == (HeadConfig(model="logreg", folds=3), DataConfig(input="frames"))
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) epoch"):
        split_options(None, None, {"epoch": 3})


def test_command_line_options_are_generated_from_the_configs():
    fit = build_parser()._subparsers._group_actions[0].choices["fit"]
    by_dest = {a.dest: a for a in fit._actions}
    for cls in (HeadConfig, DataConfig, SemiSettings):
        for f in fields(cls):
            if f.metadata["flag"] is None:
                continue
            action = by_dest[f.name]
            assert action.option_strings == [f.metadata["flag"]]
            if f.metadata["default_text"] is None:
                shown = f"{f.default:g}" if isinstance(f.default, float) else str(f.default)
                assert action.help.endswith(f"(default {shown})"), (f.name, action.help)
    assert tuple(by_dest["model"].choices) == known_heads()
    assert "inverse regularisation of logreg/svm" in by_dest["C"].help
    args = build_parser().parse_args(["fit", "--features", "a.h5", "--out", "o", "-C", "2"])
    assert not hasattr(args, "folds") and args.C == 2.0  # absent options keep the config's


@pytest.mark.slow
def test_not_fitted_is_scikit_learns_error(stores, tmp_path):
    data = load_dataset([stores["audio"]])
    est = CrossValidatedHead(**FAST)
    for call in (est.predict_proba, est.predict, est.predict_fold_proba, est.predict_held_out):
        with pytest.raises(SklearnNotFittedError, match="not fitted"):
            call(data)
    assert issubclass(NotFittedError, MerHeadsError)
    assert est.fit(data) is est and not hasattr(CrossValidatedHead(), "keys_")
    fit_run([stores["audio"]], tmp_path / "run", model="logreg", folds=3)
    loaded, _ = load_run(tmp_path / "run")
    assert loaded.predict_proba(data)[0].shape == (len(data), 6)
    with pytest.raises(NotFittedError, match=r"loaded from a run directory, which keeps no "
                                             r"folds"):
        loaded.predict_held_out(data)
    assert np.isfinite(est.predict_held_out(data)[0]).all()
