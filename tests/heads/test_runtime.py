"""--precision auto: measured on the run's own stack (injected timings for the logic)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mer_heads import runtime

MACHINE = {"cpu": "Test CPU", "cpu_flags": "00", "flags_shown": [], "torch": "2.x",
           "threads": 2, "device": "cpu"}
SHAPE = runtime.StackShape(n_models=5, dims=(64, 32), batch=700)
CPU = torch.device("cpu")


def fake(seconds, cosine=1.0):
    calls = []

    def probe(path):
        calls.append(path)
        c = cosine if path == "stack-bf16" else 1.0
        return seconds[path], np.array([[c, math.sqrt(1 - c * c)]])

    probe.calls = calls
    return probe


@pytest.mark.parametrize("seconds, cosine, expected", [
    ({"stack-fp32": 1.0, "stack-bf16": 0.4}, 1.0, "bf16"),      # AMX-like: bf16 pays
    ({"stack-fp32": 1.0, "stack-bf16": 12.0}, 1.0, "fp32"),     # emulated bf16
    ({"stack-fp32": 1.0, "stack-bf16": 0.4}, 0.99, "fp32"),     # fast but not accurate
])
def test_auto_takes_the_measured_faster_accurate_precision(tmp_path: Path, seconds, cosine, expected):
    probe = fake(seconds, cosine)
    got = runtime.resolve_precision("auto", CPU, SHAPE, probe=probe, cache=tmp_path / "c.json")
    assert got == expected and probe.calls[0] == "stack-fp32"


def test_explicit_precision_is_never_measured(tmp_path: Path):
    probe = fake({"stack-fp32": 1.0, "stack-bf16": 0.1})
    for p in ("fp32", "bf16"):
        assert runtime.resolve_precision(p, CPU, SHAPE, probe=probe, cache=False) == p
    assert probe.calls == []


def test_measured_once_per_shape(tmp_path: Path):
    cache = tmp_path / "c.json"
    probe = fake({"stack-fp32": 1.0, "stack-bf16": 0.4})
    runtime.measure_precision(CPU, SHAPE, probe=probe, cache=cache, machine=MACHINE)
    n = len(probe.calls)
    # more models or clips than the probe's own size: the same probe, from the cache
    bigger = runtime.StackShape(n_models=50, dims=(64, 32), batch=1000)
    assert runtime.measure_precision(CPU, bigger, probe=probe, cache=cache, machine=MACHINE).cached
    assert len(probe.calls) == n
    other = runtime.StackShape(n_models=5, dims=(64, 64), batch=700)
    assert not runtime.measure_precision(CPU, other, probe=probe, cache=cache,
                                         machine=MACHINE).cached


@pytest.mark.parametrize("frames", [(), (6, 4)])
def test_the_real_probe_trains_both_precisions(frames):
    shape = runtime.StackShape(n_models=2, dims=(16, 8), hidden=8, batch=12, frames=frames)
    probe = runtime.precision_probe(shape, CPU)
    t32, out32 = probe("stack-fp32")
    t16, out16 = probe("stack-bf16")
    assert t32 > 0 and t16 > 0
    assert out32.shape == out16.shape == (2, 12 * 7)
    from mer_features.autotune import min_cosine

    assert min_cosine(out32, out16) > 0.99


def test_a_fit_measures_its_own_stack(stores, monkeypatch):
    from mer_heads.data.dataset import load_dataset
    from mer_heads.heads import neural
    from mer_heads.protocol import CrossValidatedHead

    from .synthetic_stores import FAST

    seen = []
    real = runtime.resolve_precision

    def spy(precision, device, shape=None, **kw):
        seen.append(shape)
        return real(precision, device, shape, probe=fake({"stack-fp32": 1.0, "stack-bf16": 0.5}),
                    cache=False)

    monkeypatch.setattr(neural, "resolve_precision", spy)
    data = load_dataset([stores["audio"], stores["text"]])
    est = CrossValidatedHead("attention", **{**FAST, "epochs": 2, "precision": "auto"}).fit(data)
    assert est.precision_ == "bf16"
    (shape,) = seen
    assert shape.n_models == 3 and shape.dims == tuple(data.dims)
    assert shape.batch == est.batch_size_ and shape.frames == ()


def test_few_epochs_take_more_smaller_steps():
    from mer_heads.heads.training import MIN_STEPS, STEPS_PER_EPOCH, auto_batch_size

    n = 2698                                            # a fold's training clips of MER 2023
    assert auto_batch_size(n) == auto_batch_size(n, 0, 100) == -(-n // STEPS_PER_EPOCH)
    small = auto_batch_size(n, 0, 30)
    assert 30 * -(-n // small) >= MIN_STEPS and small < auto_batch_size(n, 0, 100)
    assert auto_batch_size(n, 0, 1) == 32               # never below 32 clips
    assert auto_batch_size(100, 0, 30) == 32
    assert auto_batch_size(n, 1 << 26, 30) == 2         # the input-size cap still holds


def test_a_probe_that_cannot_run_leaves_fp32(tmp_path: Path):
    def broken(path):
        raise RuntimeError("out of memory")

    assert runtime.resolve_precision("auto", CPU, SHAPE, probe=broken, cache=False) == "fp32"
    slow_bf16 = fake({"stock-fp32": 1.0, "stock-bf16": 0.95})   # within the margin: fp32
    assert runtime.resolve_precision("auto", CPU, SHAPE, probe=slow_bf16, cache=False) == "fp32"
