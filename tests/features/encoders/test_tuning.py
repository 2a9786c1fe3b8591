"""The compute path of an extraction: a fixed rule of the device and the encoder, never a timing;
what the store's fingerprint records of it; stores written when a probe chose it."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf

from mer_features import autotune
from mer_features.encoders import create_encoder, tuning
from mer_features.errors import FingerprintMismatchError, ParameterError
from mer_features.fingerprint import fingerprint
from mer_features.pipeline import extract
from mer_features.store import FeatureStore
from synthetic_media import voiced, write_manifest


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


AMX = ["avx2", "avx512f", "amx_bf16", "amx_tile"]
AVX2 = ["avx2", "fma"]


@pytest.fixture
def no_timing(monkeypatch):
    """Any timing probe fails the test."""

    def timed(*args, **kwargs):
        raise AssertionError("a timing probe ran")

    monkeypatch.setattr(autotune, "measure", timed)


@pytest.fixture
def cpu_flags(monkeypatch):
    """Set the CPU flags the rules read: ``cpu_flags(AMX)``."""

    def use(flags):
        monkeypatch.setattr(autotune, "cpu_model_and_flags", lambda: ("Test CPU", list(flags)))

    use(AVX2)
    return use


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three short voiced clips at 16 kHz."""
    folder = tmp_path_factory.mktemp("paths")
    rows = []
    for i in range(3):
        path = folder / f"{i}.wav"
        sf.write(path, voiced(0.6 + 0.2 * i, f0=120 + 30 * i, seed=i), 16000)
        rows.append({"name": f"c{i}", "audio": str(path)})
    return write_manifest(folder / "manifest.csv", rows)


def run(corpus, tiny_hubert, out, **options):
    options = {"encoder": f"hf:{tiny_hubert}", "device": "cpu", "workers": 0,
               "progress": False, "log": lambda message: None, **options}
    return extract(corpus, out, **options)


def stored(path):
    with FeatureStore(path) as store:
        return store.fields, store.utterances()


class TwoPaths:
    """An encoder as the rules see it: a fast path on a CPU, the stock modules everywhere."""

    uses_dtype = True

    def impls(self, device):
        return ("fast", "stock") if device == "cpu" else ("stock",)

    def describe(self):
        return "two-paths"


class NoDtype(TwoPaths):
    uses_dtype = False


def test_the_rule_reads_the_device_and_the_encoder(cpu_flags, no_timing):
    enc = TwoPaths()
    assert tuning.choose_path(enc, "cpu", "fp32") == tuning.PathChoice("fast", "fp32")
    assert tuning.choose_path(enc, "cpu", "auto").name == "fast-fp32"  # AVX2: bf16 emulated
    cpu_flags(AMX)
    assert tuning.choose_path(enc, "cpu", "auto") == tuning.PathChoice("fast", "bf16")
    assert tuning.choose_path(enc, "cpu", "fp32", impl="stock").name == "stock-fp32"
    assert tuning.choose_path(enc, "cuda", "fp32").impl == "stock"  # the only one on a GPU
    with pytest.raises(ParameterError, match="has no 'fast' compute path on cuda") as e:
        tuning.choose_path(enc, "cuda", "fp32", impl="fast")
    assert e.value.parameter == "compute_path"
    # an encoder whose numbers do not depend on the dtype: auto is fp32, its one implementation;
    # a dtype asked for is passed on (the encoder records fp32 or refuses it), with no warning
    assert tuning.choose_path(NoDtype(), "cpu", "auto", impl="stock").name == "fast-fp32"
    assert tuning.choose_path(NoDtype(), "cpu", "bf16") == tuning.PathChoice("fast", "bf16")


def test_auto_on_a_gpu_follows_its_bf16_support(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for supported, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
        assert tuning.resolve_dtype(TwoPaths(), "cuda:0", "auto") == expected


def test_bf16_on_a_cpu_without_bf16_instructions_warns_from_its_flags(cpu_flags, no_timing):
    choice = tuning.choose_path(TwoPaths(), "cpu", "bf16")
    assert choice.name == "fast-bf16"
    assert "bf16 on this CPU (Test CPU) is emulated" in choice.warning
    assert "`dtype` to fp32" in choice.warning
    cpu_flags(AMX)
    assert tuning.choose_path(TwoPaths(), "cpu", "bf16").warning is None


def test_the_whisper_encoder_keeps_its_compute_type_whatever_auto_says(cpu_flags):
    cpu_flags(AMX)
    enc = create_encoder("audio", "whisper")
    choice = tuning.choose_path(enc, "cpu", "auto")
    assert choice.dtype == "fp32" and enc.compute_dtype(choice.dtype) == "int8"


def test_the_fingerprint_records_the_path_only_where_it_changes_the_numbers():
    enc = TwoPaths()
    assert tuning.identity_path(enc, "cpu", "fast", "fp32") is None
    assert tuning.identity_path(enc, "cpu", "stock", "bf16") == "stock"
    assert tuning.identity_path(enc, "cuda", "stock", "bf16") is None  # one implementation
    assert tuning.identity_path(create_encoder("audio", "egemaps"), "cpu", "stock", "bf16") is None


@pytest.mark.slow
def test_extraction_never_times_and_repeats_bit_for_bit(corpus, tiny_hubert, tmp_path,
                                                        cpu_flags, no_timing):
    """The default twice, and every dtype: no probe runs; the same command, the same arrays."""
    for dtype in ("fp32", "auto", "bf16"):
        a, b = tmp_path / f"{dtype}-a.h5", tmp_path / f"{dtype}-b.h5"
        run(corpus, tiny_hubert, a, dtype=dtype)
        run(corpus, tiny_hubert, b, dtype=dtype)
        assert a.read_bytes() == b.read_bytes(), dtype
    assert stored(tmp_path / "auto-a.h5")[0]["compute_dtype"] == "fp32"  # AVX2 flags


@pytest.mark.slow
def test_fp32_paths_share_a_store_and_bf16_paths_do_not(corpus, tiny_hubert, tmp_path):
    fast, stock = tmp_path / "fast.h5", tmp_path / "stock.h5"
    run(corpus, tiny_hubert, fast, compute_path="fast")
    run(corpus, tiny_hubert, stock, compute_path="stock")
    (fast_fields, fast_u), (stock_fields, stock_u) = stored(fast), stored(stock)
    assert fast_fields == stock_fields and "compute_path" not in fast_fields
    assert np.abs(fast_u - stock_u).max() <= 1e-5  # as close as batching keeps them
    assert run(corpus, tiny_hubert, fast, compute_path="stock").skipped == 3

    bf16 = tmp_path / "bf16.h5"
    run(corpus, tiny_hubert, bf16, dtype="bf16")
    fields, bf16_u = stored(bf16)
    assert (fields["compute_dtype"], fields["compute_path"]) == ("bf16", "fast")
    run(corpus, tiny_hubert, tmp_path / "bf16-stock.h5", dtype="bf16", compute_path="stock")
    assert np.abs(stored(tmp_path / "bf16-stock.h5")[1] - bf16_u).max() > 1e-3
    with pytest.raises(FingerprintMismatchError, match='compute_path: "fast" -> "stock"'):
        run(corpus, tiny_hubert, bf16, dtype="bf16", compute_path="stock")


def _as_written_before(path: Path) -> None:
    """Make a store look written before bf16 stores recorded their compute path."""
    with h5py.File(path, "r+") as f:
        fields = json.loads(f.attrs["fingerprint_fields"])
        del fields["compute_path"]
        f.attrs["fingerprint_fields"] = json.dumps(fields, sort_keys=True)
        f.attrs["fingerprint"] = fingerprint(fields)


@pytest.mark.slow
def test_a_bf16_store_from_before_goes_on_only_in_the_path_that_made_it(corpus, tiny_hubert,
                                                                        tmp_path, capsys):
    old = tmp_path / "old.h5"
    run(corpus, tiny_hubert, old, dtype="bf16", compute_path="stock")
    _as_written_before(old)
    with pytest.raises(FingerprintMismatchError) as e:  # the rule's path is fast
        run(corpus, tiny_hubert, old, dtype="bf16")
    assert "before a store recorded its compute path" in str(e.value)
    assert "Set `compute_path` to stock" in str(e.value)
    from mer_features.cli import main

    assert main(["extract", "--modality", "audio", "--manifest", str(corpus), "--out", str(old),
                 "--encoder", f"hf:{tiny_hubert}", "--device", "cpu", "--dtype", "bf16",
                 "--workers", "0", "--no-progress"]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "Set --compute-path to stock" in line and "pass --overwrite" in line, line
    summary = run(corpus, tiny_hubert, old, dtype="bf16", compute_path="stock")
    assert summary.skipped == 3
    assert "compute_path" not in stored(old)[0]  # continued as it was

    made_fast = tmp_path / "fast.h5"
    run(corpus, tiny_hubert, made_fast, dtype="auto", compute_path="fast")  # fp32 here
    run(corpus, tiny_hubert, made_fast, dtype="bf16", overwrite=True)
    _as_written_before(made_fast)
    assert run(corpus, tiny_hubert, made_fast, dtype="auto").skipped == 3  # its own dtype
    # an fp32 store never recorded a path: any path goes on with it
    fp32 = tmp_path / "fp32.h5"
    run(corpus, tiny_hubert, fp32, compute_path="stock")
    assert run(corpus, tiny_hubert, fp32).skipped == 3


def test_compute_path_is_checked(tmp_path, corpus):
    from mer_features.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["extract", "--modality", "audio", "--manifest", str(corpus), "--out",
              str(tmp_path / "x.h5"), "--compute-path", "quick", "--no-progress"])
    assert exit_.value.code == 2
    with pytest.raises(ParameterError, match="`compute_path` must be one of auto, fast, stock"):
        extract(corpus, tmp_path / "y.h5", compute_path="quick", progress=False)
