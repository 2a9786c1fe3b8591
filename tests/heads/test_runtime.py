"""Same command, same numbers (issue 22): precision and threads are explicit, recorded, never
chosen by a timing probe or by the machine's load."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from mer_heads import runtime
from mer_heads.experiments.fit import fit_run

from .synthetic_stores import FAST

CPU = torch.device("cpu")
SMALL = {k: v for k, v in FAST.items() if k != "precision"}


@pytest.fixture
def no_probe(monkeypatch):
    """Any timing of fp32 against bf16 (the extractor's autotune) fails the test."""
    from mer_features import autotune

    def timed(*args, **kwargs):
        raise AssertionError("a timing probe ran")

    monkeypatch.setattr(autotune, "measure", timed)
    monkeypatch.setattr(autotune, "choose_dtype", timed, raising=False)


@pytest.mark.slow
def test_the_default_precision_is_fp32_and_never_times(stores, tmp_path, no_probe):
    from mer_heads.config import HeadConfig

    assert HeadConfig().precision == "fp32" and HeadConfig().threads == 1
    result = fit_run([stores["audio"]], tmp_path / "run", **SMALL)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result.estimator.precision_ == "fp32"
    assert metrics["params"]["precision"] == "fp32" and metrics["params"]["threads"] == 1
    assert metrics["runtime"] == {"device": "cpu", "precision": "fp32", "threads": 1,
                                  "torch": torch.__version__}
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"| computed on | cpu, 1 CPU thread(s), torch {torch.__version__} |" in report
    assert "| precision used | fp32 |" in report


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_resolves_from_the_device_alone(monkeypatch, no_probe, native, expected):
    monkeypatch.setattr(runtime, "native_bf16", lambda device: native)
    assert runtime.resolve_precision("auto", CPU) == expected
    for explicit in ("fp32", "bf16"):
        assert runtime.resolve_precision(explicit, CPU) == explicit


@pytest.mark.slow
def test_auto_is_recorded_as_what_it_resolved_to(stores, tmp_path, monkeypatch, no_probe):
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    fit_run([stores["audio"]], tmp_path / "run", **{**SMALL, "precision": "auto"})
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["params"]["precision"] == "auto"
    assert metrics["precision"] == metrics["runtime"]["precision"] == "fp32"


def test_an_unknown_precision_is_refused():
    from mer_heads.errors import ParameterError

    with pytest.raises(ParameterError, match=r"precision must be one of fp32, bf16, auto"):
        runtime.resolve_precision("fp8", CPU)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_threads_must_be_a_positive_integer(bad):
    from mer_heads.config import HeadConfig
    from mer_heads.errors import ParameterError

    with pytest.raises(ParameterError, match=r"threads must be an integer >= 1") as info:
        HeadConfig(threads=bad)
    assert info.value.parameter == "threads"  # the CLI adds --threads


def test_a_session_sets_torch_and_blas_threads_and_restores_them():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    blas_before = [p["num_threads"] for p in threadpool_info()]
    outside = 2 if before != 2 else 3
    torch.set_num_threads(outside)
    try:
        with runtime.threads_session(1) as threads:
            assert threads == 1 and torch.get_num_threads() == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info())
        assert torch.get_num_threads() == outside
    finally:
        torch.set_num_threads(before)
    assert [p["num_threads"] for p in threadpool_info()] == blas_before


def test_a_fit_trains_with_its_threads_whatever_torch_was_set_to(stores, monkeypatch):
    """The thread count comes from the run's parameters, not from the process's state."""
    from mer_heads.data.dataset import load_dataset
    from mer_heads.heads import training
    from mer_heads.protocol import CrossValidatedHead

    seen = []
    real = training.train_stack

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_stack", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        data = load_dataset([stores["audio"]])
        CrossValidatedHead(**{**SMALL, "epochs": 1}).fit(data)
        CrossValidatedHead(**{**SMALL, "epochs": 1, "threads": 2}).fit(data)
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2]


BURNER = "import time\nend = time.time() + 120\nwhile time.time() < end:\n    pass\n"


@pytest.mark.slow
def test_the_same_fit_gives_the_same_bytes_under_load(stores, tmp_path, no_probe):
    """metrics.json holds no time, so the same command gives the same bytes, with and without
    a process burning the CPU beside it (a timing probe would have chosen differently)."""
    features = [stores["audio"], stores["text"]]
    options = {**SMALL, "model": "attention"}
    fit_run(features, tmp_path / "quiet", **options)
    burners = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(2)]
    try:
        fit_run(features, tmp_path / "busy", **options)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    quiet = (tmp_path / "quiet" / "metrics.json").read_bytes()
    assert quiet == (tmp_path / "busy" / "metrics.json").read_bytes()
    assert b'"seconds"' not in quiet


@pytest.mark.slow
def test_the_recorded_params_repeat_the_run(stores, tmp_path):
    """A run directory says everything that decides its numbers: fitting again with the params
    of its metrics.json gives the same bytes."""
    fit_run([stores["audio"]], tmp_path / "first", **{**SMALL, "seed": 3})
    first = json.loads((tmp_path / "first" / "metrics.json").read_text())
    params = {k: v for k, v in first["params"].items()}
    fit_run([stores["audio"]], tmp_path / "again", **params)
    assert ((tmp_path / "first" / "metrics.json").read_bytes()
            == (tmp_path / "again" / "metrics.json").read_bytes())


def test_few_epochs_take_more_smaller_steps():
    from mer_heads.heads.training import MIN_STEPS, STEPS_PER_EPOCH, auto_batch_size

    n = 2698                                            # a fold's training clips of MER 2023
    assert auto_batch_size(n) == auto_batch_size(n, 0, 100) == -(-n // STEPS_PER_EPOCH)
    small = auto_batch_size(n, 0, 30)
    assert 30 * -(-n // small) >= MIN_STEPS and small < auto_batch_size(n, 0, 100)
    assert auto_batch_size(n, 0, 1) == 32               # never below 32 clips
    assert auto_batch_size(100, 0, 30) == 32
    assert auto_batch_size(n, 1 << 26, 30) == 2         # the input-size cap still holds


def test_a_run_without_threads_in_its_params_loads_with_the_default(stores, tmp_path):
    """Runs written before --threads was a parameter read back with one thread."""
    from mer_heads.rundir import load_run

    fit_run([stores["audio"]], tmp_path / "run", model="logreg", folds=3, figures=False)
    info_path = tmp_path / "run" / "run.json"
    info = json.loads(info_path.read_text())
    del info["params"]["threads"]
    info_path.write_text(json.dumps(info))
    est, _ = load_run(tmp_path / "run")
    assert est.threads == 1 and est.get_params()["threads"] == 1
