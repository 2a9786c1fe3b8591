"""ExtractOptions: every option once, every bound checked there, messages naming parameters."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from synthetic_media import write_manifest
from mer_features.errors import MerFeaturesError, ParameterError
from mer_features.modalities import NoOptions, TextOptions, VideoOptions
from mer_features.noise import NoiseSpecError, parse_noise
from mer_features.pipeline import ExtractOptions, extract_options, plan_extraction
from mer_features.pipeline.distributed import Shard


def test_defaults_are_valid_and_normalised():
    options = ExtractOptions(manifest="m.csv", noise="snr=5", shard="1/4", layer="all")
    assert options.modality == "audio" and options.seed == 0 and options.batch_seconds == 160.0
    assert options.noise == parse_noise("snr=5") and options.shard == Shard(1, 4)
    assert options.encoder_options == {"layer": "all"}
    assert ExtractOptions(manifest="m.csv", modality="video").modality_options == VideoOptions()
    assert ExtractOptions(manifest="m.csv", modality="text").modality_options == TextOptions()


@pytest.mark.parametrize("name, value, words", [
    ("modality", "smell", "`modality` must be one of audio, text, video; got 'smell'"),
    ("manifest", None, "`manifest` must be the path of a manifest CSV"),
    ("seed", -1, "`seed` must be an integer >= 0; got -1"),
    ("seed", 1.5, "`seed` must be an integer >= 0"),
    ("seed", True, "`seed` must be an integer >= 0"),
    ("batch_size", 0, "`batch_size` must be an integer >= 1"),
    ("workers", 257, "`workers` must be an integer from 0 to 256; got 257"),
    ("workers", -1, "`workers` must be an integer from 0 to 256"),
    ("commit_every", 0, "`commit_every` must be an integer >= 1"),
    ("batch_seconds", float("nan"), "`batch_seconds` must be a number > 0"),
    ("batch_seconds", 0, "`batch_seconds` must be a number > 0"),
    ("dtype", "fp8", "`dtype` must be one of fp32, bf16, fp16, auto"),
    ("storage_dtype", "int8", "`storage_dtype` must be one of float32, float16"),
    ("compute_path", "gpu", "`compute_path` must be one of auto, fast, stock"),
    ("device", "tpu", "`device` must be auto, cpu, cuda or cuda:N"),
    ("layer", "first", "`layer` must be one of last, mean-last-4, all"),
    ("overwrite", "yes", "`overwrite` must be True or False"),
    ("shard", "3/2", "Shard 3/2 does not exist: `shard` must be I/N"),
    ("shard", "x", "`shard` must look like I/N"),
    ("encoder", "wav2vec9", "Unknown audio encoder 'wav2vec9'. Known audio encoders"),
    ("encoder", "egemaps:x", "takes no ':' argument"),
    ("encoder_options", ["a"], "`encoder_options` must map option names to values"),
    ("modality_options", VideoOptions(), "`modality_options` of the audio modality must be a "
                                         "NoOptions; got VideoOptions"),
])
def test_every_bound_is_checked_once_in_the_options(name, value, words):
    with pytest.raises(ParameterError) as caught:
        ExtractOptions(**{"manifest": "m.csv", name: value})
    assert words in str(caught.value) and caught.value.parameter == name
    assert "--" not in str(caught.value)  # Python callers are told parameters, not flags


@pytest.mark.parametrize("name, value, words", [
    ("fps", 0, "`fps` must be a number in (0, 60]; got 0"),
    ("fps", float("nan"), "`fps` must be a number in (0, 60]"),
    ("max_frames", 0, "`max_frames` must be an integer >= 1"),
    ("face_size", 1025, "`face_size` must be an integer from 16 to 1024; got 1025"),
    ("face_size", 15, "`face_size` must be an integer from 16 to 1024"),
    ("margin", 11, "`margin` must be a number in [0, 10]"),
    ("min_face_size", 8, "`min_face_size` must be an integer >= 12"),
])
def test_a_modality_checks_its_own_options(name, value, words):
    with pytest.raises(ParameterError, match=words.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        VideoOptions(**{name: value})


def test_noise_and_layer_errors():
    with pytest.raises(NoiseSpecError) as caught:
        ExtractOptions(manifest="m.csv", noise="snr=x")
    assert isinstance(caught.value, ParameterError) and caught.value.parameter == "noise"
    with pytest.raises(ParameterError, match="`layer` is 'all' but `encoder_options` sets"):
        ExtractOptions(manifest="m.csv", layer="all", encoder_options={"layer": "last"})
    assert ExtractOptions(manifest="m.csv", encoder_options={"chunk-seconds": "20"}
                          ).encoder_options == {"chunk_seconds": "20"}


def test_keywords_reach_the_modality_options():
    options = extract_options(manifest="m.csv", modality="video", fps=2, max_frames=8)
    assert options.modality_options == VideoOptions(fps=2, max_frames=8)
    options = extract_options(manifest="m.csv", modality="video",
                              video=VideoOptions(fps=1.0), max_frames=8)
    assert options.modality_options == VideoOptions(fps=1.0, max_frames=8)
    options = extract_options(manifest="m.csv", modality="text", text_column="english")
    assert options.modality_options.text_column == "english"
    # another modality's options are checked, then left out: one call serves every modality
    assert extract_options(manifest="m.csv", fps=2, text_column="x",
                           video=VideoOptions()).modality_options == NoOptions()
    with pytest.raises(ParameterError, match="`fps` must be a number in") as caught:
        extract_options(manifest="m.csv", fps=0)
    assert caught.value.parameter == "fps"
    with pytest.raises(ParameterError, match="`video` must be a VideoOptions; got TextOptions"):
        extract_options(manifest="m.csv", modality="text", video=TextOptions())
    with pytest.raises(TypeError, match="unexpected keyword argument 'fsp'"):
        extract_options(manifest="m.csv", fsp=2)


def test_options_are_frozen_and_replace_revalidates():
    options = ExtractOptions(manifest="m.csv")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.seed = 3  # type: ignore[misc]
    with pytest.raises(ParameterError, match="`seed`"):
        dataclasses.replace(options, seed=-2)


@pytest.mark.slow
def test_the_plan_decides_without_touching_the_store(audio_corpus: Path, tmp_path: Path):
    out = tmp_path / "a.h5"
    plan = plan_extraction(ExtractOptions(manifest=audio_corpus, out=out, noise="snr=5,blur=2",
                                          device="cpu", encoder="egemaps"))
    assert not out.exists()
    assert plan.encoder.describe() == "egemaps" and plan.device == "cpu"
    assert plan.batch_size == 1 and plan.workers >= 1  # openSMILE runs in the workers
    assert len(plan.usable) == 8 and plan.missing == [] and not plan.legacy
    assert plan.header.fields["noise"] == {"spec": "snr=5,source=white", "seed": 0}
    assert plan.stage.noise == parse_noise("snr=5")
    (tmp_path / "v.mp4").write_bytes(b"not decoded while planning")
    manifest = write_manifest(tmp_path / "v.csv", [{"name": "v", "video": "v.mp4"}])
    video = plan_extraction(ExtractOptions(manifest=manifest, out=out, modality="video",
                                           device="cpu", workers=0, noise="snr=5,blur=2"))
    assert video.batch_size == 4 and video.stage.track_in_workers is False
    assert video.header.fields["noise"] == {"spec": "blur=2", "seed": 0}
    assert video.header.fields["preprocessing"]["fps"] == 4.0 and not out.exists()


def test_options_an_encoder_refuses_are_parameter_errors(audio_corpus: Path, tmp_path: Path):
    with pytest.raises(ParameterError, match="has no option\\(s\\) nope") as caught:
        plan_extraction(ExtractOptions(manifest=audio_corpus, out=tmp_path / "x.h5",
                                       encoder_options={"nope": "1"}))
    assert caught.value.parameter == "encoder_options"
    assert issubclass(ParameterError, MerFeaturesError) and issubclass(ParameterError, ValueError)
