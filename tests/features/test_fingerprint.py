"""One function builds every fingerprint field; fields added later keep old stores usable."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mer_features.decode.audio import AUDIO_DECODER
from mer_features.errors import FingerprintMismatchError
from mer_features.fingerprint import (ADDED_FIELDS, fingerprint, fingerprint_fields,
                                      known_fingerprints, same_features, with_added_fields)
from mer_features.pipeline import extract
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
    from mer_features.noise import parse_noise
    from mer_features.pipeline.stages import make_stage

    encoder = create_encoder("audio", "egemaps")
    stage = make_stage("audio", noise=parse_noise("snr=5,blur=2"), seed=7)
    fields = fingerprint_fields(encoder, stage, dtype="bf16", storage_dtype="float16")
    assert sorted(fields) == ["compute_dtype", "config", "encoder", "encoder_version", "modality",
                              "noise", "preprocessing", "schema_version", "storage_dtype",
                              "weights"]
    assert fields["preprocessing"] == {"sample_rate": 16000, "mono": True,
                                       "decoder": AUDIO_DECODER}
    assert fields["noise"] == {"spec": "snr=5,source=white,blur=2", "seed": 7}
    assert fields["compute_dtype"] == "fp32"  # openSMILE does not compute in bf16
    assert fields["config"] == {"feature_set": "eGeMAPSv02", "sample_rate": 16000}
    assert make_stage("text", noise=stage.noise).noise is None  # no key acts on text


@pytest.mark.slow
def test_a_store_written_before_the_decoder_joined_is_reused_and_restamped(audio_corpus: Path,
                                                                           tmp_path: Path):
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
    new = {"modality": "audio", "preprocessing": {"sample_rate": 16000, "decoder": AUDIO_DECODER}}
    assert same_features(old, new) and same_features(new, old)
    assert not same_features(old, {**new, "preprocessing": {"sample_rate": 16000,
                                                             "decoder": "other"}})
    text = {"modality": "text", "preprocessing": {"max_length": 128}}
    assert with_added_fields(text) == text and known_fingerprints(text) == {fingerprint(text)}
    assert known_fingerprints(new) == {fingerprint(new), fingerprint(old)}
