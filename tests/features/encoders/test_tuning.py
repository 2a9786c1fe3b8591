"""Choosing an encoder's compute path: injected timings for the logic, a tiny real model for the
probe itself and for what the pipeline records."""

import math
from pathlib import Path

import numpy as np
import pytest

from mer_features import autotune
from mer_features.encoders import create_encoder, tuning
from mer_features.errors import EncoderError, ParameterError
from mer_features.store import FeatureStore

MACHINE = {"cpu": "Test CPU", "cpu_flags": "00", "flags_shown": ["avx2"], "torch": "2.x",
           "threads": 2, "device": "cpu"}


def fake_probe(seconds: dict[str, float], cosine: dict[str, float] | None = None):
    calls = []

    def probe(path):
        calls.append(path)
        c = (cosine or {}).get(path, 1.0)
        return seconds[path], np.array([[c, math.sqrt(1 - c * c)]])

    probe.calls = calls
    return probe


AVX2_LIKE = {"stock-fp32": 1.0, "fast-fp32": 0.9, "stock-bf16": 30.0, "fast-bf16": 28.0}
AMX_LIKE = {"stock-fp32": 1.0, "fast-fp32": 0.9, "stock-bf16": 0.5, "fast-bf16": 0.3}


def choose(enc, dtype, seconds, tmp_path, **kw):
    probe = fake_probe(seconds, kw.pop("cosine", None))
    choice = tuning.choose_path(enc, "cpu", dtype, probe=probe, machine=MACHINE,
                                cache=tmp_path / "paths.json", **kw)
    return choice, probe.calls


def test_fp32_takes_the_fastest_fp32_path_and_never_probes_bf16(tiny_hubert: Path, tmp_path: Path):
    enc = create_encoder("audio", f"hf:{tiny_hubert}")
    choice, calls = choose(enc, "fp32", AMX_LIKE, tmp_path)
    assert (choice.impl, choice.dtype, choice.warning) == ("fast", "fp32", None)
    assert set(calls) == {"stock-fp32", "fast-fp32"}
    choice, _ = choose(enc, "fp32", {**AMX_LIKE, "stock-fp32": 0.5}, tmp_path / "b")
    assert (choice.impl, choice.dtype) == ("stock", "fp32")


def test_bf16_where_it_is_slow_warns_with_the_cost_and_stays_bf16(tiny_hubert: Path, tmp_path: Path):
    enc = create_encoder("audio", f"hf:{tiny_hubert}")
    choice, calls = choose(enc, "bf16", AVX2_LIKE, tmp_path)
    assert choice.dtype == "bf16" and choice.impl == "fast"
    assert "31.1x slower than fp32" in choice.warning
    assert "--dtype fp32" in choice.warning and "--dtype auto" in choice.warning
    assert set(calls) == set(AVX2_LIKE)
    choice, _ = choose(enc, "bf16", AMX_LIKE, tmp_path / "amx")
    assert (choice.impl, choice.dtype, choice.warning) == ("fast", "bf16", None)


def test_auto_takes_the_fastest_accurate_dtype(tiny_hubert: Path, tmp_path: Path):
    enc = create_encoder("audio", f"hf:{tiny_hubert}")
    assert choose(enc, "auto", AVX2_LIKE, tmp_path)[0].dtype == "fp32"
    choice, _ = choose(enc, "auto", AMX_LIKE, tmp_path / "amx")
    assert (choice.impl, choice.dtype) == ("fast", "bf16")
    # bf16 fast but not within cosine 0.999 of fp32: fp32
    choice, _ = choose(enc, "auto", AMX_LIKE, tmp_path / "far", cosine={"fast-bf16": 0.99,
                                                                        "stock-bf16": 0.995})
    assert (choice.impl, choice.dtype) == ("fast", "fp32")


def test_forced_implementation(tiny_hubert: Path, tmp_path: Path):
    enc = create_encoder("audio", f"hf:{tiny_hubert}")
    choice, calls = choose(enc, "fp32", AMX_LIKE, tmp_path, impl="stock")
    assert (choice.impl, choice.dtype, choice.measurement) == ("stock", "fp32", None)
    assert calls == []                                  # one candidate: nothing to measure
    choice, calls = choose(enc, "auto", AMX_LIKE, tmp_path, impl="stock")
    assert (choice.impl, choice.dtype) == ("stock", "bf16")
    assert set(calls) == {"stock-fp32", "stock-bf16"}
    with pytest.raises(EncoderError, match="compute path must be one of"):
        choose(enc, "fp32", AMX_LIKE, tmp_path, impl="quick")


def test_encoders_without_a_fast_path_or_dtype(tmp_path: Path, tiny_hubert: Path):
    egemaps = create_encoder("audio", "egemaps")
    choice = tuning.choose_path(egemaps, "cpu", "auto", machine=MACHINE, cache=False)
    assert (choice.impl, choice.dtype, choice.measurement) == ("stock", "fp32", None)
    enc = create_encoder("audio", f"hf:{tiny_hubert}")
    with pytest.raises(EncoderError, match="no 'fast' compute path on cuda"):
        tuning.candidates(enc, "cuda", ("fp32",), "fast")
    assert tuning.candidates(enc, "cuda", ("fp32", "bf16")) == ["stock-fp32", "stock-bf16"]


def test_shape_not_weights_keys_the_cache(tmp_path: Path, tiny_hubert: Path):
    from conftest import make_tiny_hf_audio

    other = make_tiny_hf_audio(tmp_path / "other", "hubert-group", seed=1)
    a = create_encoder("audio", f"hf:{tiny_hubert}")
    b = create_encoder("audio", f"hf:{other}")
    assert a.shape_fields() == b.shape_fields()
    c = create_encoder("audio", f"hf:{make_tiny_hf_audio(tmp_path / 'w', 'wav2vec2-layer')}")
    assert c.shape_fields() != a.shape_fields()
    first, calls = choose(a, "fp32", AMX_LIKE, tmp_path)
    second, again = choose(b, "fp32", AMX_LIKE, tmp_path)
    assert again == [] and second.measurement.cached


@pytest.mark.slow
def test_the_real_probe_runs_every_path_and_they_agree(tiny_hubert: Path, tmp_path: Path):
    enc = create_encoder("audio", f"hf:{tiny_hubert}")
    m = autotune.measure({"encoder": enc.shape_fields()}, ["stock-fp32", "fast-fp32", "stock-bf16"],
                         tuning.encoder_probe(enc, "cpu"), cache=False, max_runs=2)
    assert all(t.seconds is not None and t.seconds > 0 for t in m.trials.values())
    assert m.trials["fast-fp32"].cosine > 0.99999
    assert m.trials["stock-bf16"].cosine > 0.99


@pytest.mark.slow
def test_pipeline_records_what_auto_chose_and_resumes_in_it(tmp_path: Path, tiny_hubert: Path,
                                                           audio_corpus: Path, monkeypatch):
    from mer_features.pipeline import extract

    chosen = {"seconds": AMX_LIKE}

    def injected(enc, device):
        return fake_probe(chosen["seconds"])

    monkeypatch.setattr(tuning, "encoder_probe", injected)
    logs = []
    store = tmp_path / "auto.h5"
    common = dict(modality="audio", encoder=f"hf:{tiny_hubert}", device="cpu", progress=False,
                  log=logs.append)
    extract(audio_corpus, store, dtype="auto", **common)
    with FeatureStore(store) as s:
        assert s.fields["compute_dtype"] == "bf16"
    assert any("compute path for" in line and "fast-bf16" in line for line in logs)
    # elsewhere (another machine: bf16 slow) auto goes on in the store's own dtype
    chosen["seconds"] = AVX2_LIKE
    monkeypatch.setenv("MER_FEATURES_CACHE", str(tmp_path / "other-cache"))
    summary = extract(audio_corpus, store, dtype="auto", **common)
    assert summary.skipped == summary.total
    # a new store there is fp32; asking for bf16 warns with the cost
    extract(audio_corpus, tmp_path / "new.h5", dtype="auto", **common)
    with FeatureStore(tmp_path / "new.h5") as s:
        assert s.fields["compute_dtype"] == "fp32"
    logs.clear()
    extract(audio_corpus, tmp_path / "bf16.h5", dtype="bf16", **common)
    assert any(line.startswith("warning: bf16 runs 31.1x slower than fp32") for line in logs)
    with FeatureStore(tmp_path / "bf16.h5") as s:
        assert s.fields["compute_dtype"] == "bf16"


def test_text_encoders_offer_their_dtype_paths(tmp_path: Path):
    from features.encoders.test_text_encoders import make_tiny_text_model

    enc = create_encoder("text", f"hf:{make_tiny_text_model(tmp_path / 'bert')}")
    assert tuning.candidates(enc, "cpu", ("fp32", "bf16")) == ["stock-fp32", "stock-bf16"]
    choice, calls = choose(enc, "bf16", {"stock-fp32": 1.0, "stock-bf16": 20.0}, tmp_path)
    assert choice.dtype == "bf16" and "20.0x slower" in choice.warning
    items = tuning.probe_inputs(enc)
    assert all(item.text for item in items)


def test_compute_path_is_checked(tmp_path: Path, audio_corpus: Path):
    from mer_features.cli import main
    from mer_features.pipeline import extract

    with pytest.raises(SystemExit) as exit_:
        main(["extract", "--modality", "audio", "--manifest", str(audio_corpus), "--out",
              str(tmp_path / "x.h5"), "--compute-path", "quick", "--no-progress"])
    assert exit_.value.code == 2
    with pytest.raises(ParameterError, match="`compute_path` must be one of auto, fast, stock"):
        extract(audio_corpus, tmp_path / "y.h5", compute_path="quick", progress=False)
