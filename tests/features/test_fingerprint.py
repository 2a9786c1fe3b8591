"""One function builds every fingerprint field (from the encoder's and the modality's
declarations); fields added later, and the noise keys of the other side that stores of
mer_features 0.1.0 recorded, keep old stores usable."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mer_features.decode.audio import AUDIO_DECODER
from mer_features.errors import FingerprintMismatchError
from mer_features.fingerprint import (ADDED_FIELDS, fingerprint, known_fingerprints,
                                      same_features, with_added_fields)
from mer_features.pipeline import execute, extract, extract_options, plan_extraction
from mer_features.pipeline.plan import legacy_identity, store_identity
from mer_features.store import FeatureStore


def _restamp(store: Path, edit) -> str:
    """Rewrite a store's fingerprint fields in place (as an older mer_features wrote them)."""
    with h5py.File(store, "r+") as f:
        fields = json.loads(f.attrs["fingerprint_fields"])
        edit(fields)
        f.attrs["fingerprint_fields"] = json.dumps(fields, sort_keys=True)
        f.attrs["fingerprint"] = fingerprint(fields)
    return fingerprint(fields)


def test_one_function_builds_every_field():
    from mer_features.encoders import create_encoder
    from mer_features.modalities import AudioStage, TextStage
    from mer_features.noise import parse_noise

    encoder = create_encoder("audio", "egemaps")
    spec = parse_noise("snr=5,blur=2")
    stage = AudioStage(noise=spec.restricted(AudioStage.noise_side), seed=7)
    fields = store_identity(encoder, stage, dtype="bf16", storage_dtype="float16")
    assert sorted(fields) == ["compute_dtype", "config", "encoder", "encoder_version", "modality",
                              "noise", "preprocessing", "schema_version", "storage_dtype",
                              "weights"]
    assert fields["preprocessing"] == {"sample_rate": 16000, "mono": True,
                                       "decoder": AUDIO_DECODER}
    assert fields["noise"] == {"spec": "snr=5,source=white", "seed": 7}  # blur acts on video
    assert fields["compute_dtype"] == "fp32"  # openSMILE does not compute in bf16
    assert fields["config"] == {"feature_set": "eGeMAPSv02", "sample_rate": 16000}
    assert spec.restricted(TextStage.noise_side) is None  # no key acts on text
    # what mer_features 0.1.0 recorded for the same store: the whole spec
    assert legacy_identity(fields, spec)["noise"] == {"spec": "snr=5,source=white,blur=2",
                                                      "seed": 7}
    assert legacy_identity(fields, parse_noise("snr=5")) is None


def test_fingerprint_imports_neither_decoders_nor_noise_nor_the_store():
    import subprocess
    import sys

    code = ("import sys, mer_features.fingerprint; print(sorted(m for m in sys.modules if "
            "m.startswith(('mer_features.decode', 'mer_features.noise', 'mer_features.store'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _legacy_extract(manifest: Path, out: Path, noise: str, **options) -> None:
    """Extract as mer_features 0.1.0 did with a spec that has keys of both sides: the store
    records the whole spec and the draws depend on all of it."""
    plan = plan_extraction(extract_options(manifest=manifest, out=out, noise=noise, workers=0,
                                           progress=False, **options))
    options = plan.options
    plan.stage.noise = options.noise
    fields = legacy_identity(plan.header.fields, options.noise)
    plan.header = dataclasses.replace(plan.header, fields=fields)
    execute(plan, log=lambda message: None)


@pytest.mark.slow
def test_a_key_of_the_other_side_changes_neither_the_fingerprint_nor_the_draws(
        audio_corpus: Path, tmp_path: Path):
    both, audio_only = tmp_path / "both.h5", tmp_path / "audio.h5"
    extract(audio_corpus, both, noise="snr=5,blur=2", seed=3, workers=0, progress=False)
    extract(audio_corpus, audio_only, noise="snr=5", seed=3, workers=0, progress=False)
    with FeatureStore(both) as a, FeatureStore(audio_only) as b:
        assert a.fingerprint == b.fingerprint
        assert a.fields["noise"] == {"spec": "snr=5,source=white", "seed": 3}
        np.testing.assert_array_equal(a.utterances(), b.utterances())
        assert [a.record(n, with_arrays=False).info["noise"] for n in a.names] == \
            [b.record(n, with_arrays=False).info["noise"] for n in b.names]


@pytest.mark.slow
def test_a_store_with_the_old_fingerprint_is_continued_with_its_own_draws(audio_corpus: Path,
                                                                           tmp_path: Path):
    """A store written by mer_features 0.1.0 with ``snr=5,blur=2`` keeps its fingerprint and
    its draws when a run appends to it: the clips added equal those of a whole old run."""
    whole, resumed = tmp_path / "whole.h5", tmp_path / "resumed.h5"
    _legacy_extract(audio_corpus, whole, "snr=5,blur=2", seed=3)
    lines = audio_corpus.read_text().splitlines()
    half = audio_corpus.with_name("half.csv")
    half.write_text("\n".join(lines[:5]) + "\n")
    _legacy_extract(half, resumed, "snr=5,blur=2", seed=3)
    with FeatureStore(resumed) as store:
        old_fingerprint = store.fingerprint
        assert len(store) == 4 and store.fields["noise"]["spec"] == "snr=5,source=white,blur=2"

    summary = extract(audio_corpus, resumed, noise="snr=5,blur=2", seed=3, workers=0,
                      progress=False)
    assert (summary.skipped, summary.done) == (4, 4)
    with FeatureStore(resumed) as a, FeatureStore(whole) as b:
        assert a.fingerprint == old_fingerprint == b.fingerprint  # not re-stamped
        assert a.names == b.names
        np.testing.assert_array_equal(a.utterances(), b.utterances())
    # The same spec without its video key is other draws: refused, not mixed in.
    with pytest.raises(FingerprintMismatchError, match="noise.spec"):
        extract(audio_corpus, resumed, noise="snr=5", seed=3, workers=0, progress=False)
    # A new store of the same spec draws from its audio keys only.
    new = tmp_path / "new.h5"
    extract(audio_corpus, new, noise="snr=5,blur=2", seed=3, workers=0, progress=False)
    with FeatureStore(new) as a, FeatureStore(whole) as b:
        assert a.fingerprint != b.fingerprint
        assert not np.array_equal(a.utterances(), b.utterances())


@pytest.mark.slow
def test_a_store_written_before_the_decoder_joined_is_reused_and_restamped(audio_corpus: Path,
                                                                           tmp_path: Path,
                                                                           monkeypatch):
    # as when the decoder joined the fingerprint, its value then being the one ADDED_FIELDS fills
    monkeypatch.setattr("mer_features.decode.audio.AUDIO_DECODER", ADDED_FIELDS[0][2])
    out = tmp_path / "a.h5"
    extract(audio_corpus, out, encoder="egemaps", workers=0, progress=False)
    with FeatureStore(out) as store:
        current, utterances = store.fingerprint, store.utterances()
    old = _restamp(out, lambda fields: fields["preprocessing"].pop("decoder"))
    assert old != current

    summary = extract(audio_corpus, out, encoder="egemaps", workers=0, progress=False)
    assert (summary.done, summary.skipped) == (0, 8)  # nothing extracted again
    with FeatureStore(out) as store:
        assert store.fingerprint == current  # re-stamped with the full fields
        np.testing.assert_array_equal(store.utterances(), utterances)
        assert known_fingerprints(store.fields) == {current, old}

    # Another decoder is another configuration, with or without the re-stamp.
    _restamp(out, lambda fields: fields["preprocessing"].update(decoder="ffmpeg-5|resampy"))
    with pytest.raises(FingerprintMismatchError, match="preprocessing.decoder"):
        extract(audio_corpus, out, encoder="egemaps", workers=0, progress=False)


def test_added_fields_fill_only_what_is_missing():
    assert ADDED_FIELDS[0][:2] == ("audio", ("preprocessing", "decoder"))
    old = {"modality": "audio", "preprocessing": {"sample_rate": 16000}}
    assert with_added_fields(old) == {"modality": "audio", "preprocessing": {
        "sample_rate": 16000, "decoder": "soundfile+soxr_hq|decord"}}
    assert old == {"modality": "audio", "preprocessing": {"sample_rate": 16000}}  # a copy
    new = {"modality": "audio", "preprocessing": {"sample_rate": 16000,
                                                  "decoder": "soundfile+soxr_hq|decord"}}
    assert same_features(old, new) and same_features(new, old)
    # the decoder has changed since (DC offsets removed): stores without the field differ
    current = {**new, "preprocessing": {"sample_rate": 16000, "decoder": AUDIO_DECODER}}
    assert not same_features(old, current)
    assert not same_features(old, {**new, "preprocessing": {"sample_rate": 16000,
                                                             "decoder": "other"}})
    text = {"modality": "text", "preprocessing": {"max_length": 128}}
    assert with_added_fields(text) == text and known_fingerprints(text) == {fingerprint(text)}
    assert known_fingerprints(new) == {fingerprint(new), fingerprint(old)}
