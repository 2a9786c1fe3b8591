"""Modalities as registered stages: a new one is one class, and the registry, the command line,
the fingerprint and extraction take it without another change."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mer_features.cli import build_parser, main
from mer_features.encoders import base as encoders_base
from mer_features.encoders.base import Encoded, Encoder, OutputSpec
from mer_features.errors import MerFeaturesError, ParameterError
from mer_features.modalities import base as modalities_base
from mer_features.modalities import (AudioStage, Stage, TextStage, VideoStage, get_stage,
                                     known_modalities, register_stage)
from mer_features.options import option
from mer_features.store import FeatureStore


def test_the_three_modalities_declare_what_differs():
    assert known_modalities() == ("audio", "text", "video")
    assert [get_stage(m) for m in known_modalities()] == [AudioStage, TextStage, VideoStage]
    assert [(s.noise_side, s.default_encoder) for s in (AudioStage, TextStage, VideoStage)] == [
        ("audio", "whisper"), (None, "e5"), ("video", "fer")]
    assert AudioStage.default_batch_size("cpu", "fp32") == 1
    assert AudioStage.default_batch_size("cpu", "bf16") == 8
    assert AudioStage.default_batch_size("cuda:0", "bf16") == 32
    assert TextStage.default_batch_size("cpu", "bf16") == 64
    assert VideoStage.default_batch_size("cuda", "fp32") == 16
    neural = type("Neural", (), {"runs_in_workers": False})()
    light = type("Light", (), {"runs_in_workers": True})()
    assert AudioStage(device="cpu").default_workers(neural) == 0
    assert AudioStage(device="cpu").default_workers(light) >= 1
    assert AudioStage(device="cuda").default_workers(neural) >= 1


def test_a_second_modality_of_one_name_or_a_shared_option_is_refused(monkeypatch):
    monkeypatch.setattr(modalities_base, "_REGISTRY", dict(modalities_base._REGISTRY))

    class Again(Stage):
        name = "audio"
        default_encoder = "egemaps"

    with pytest.raises(MerFeaturesError, match="'audio' is already registered"):
        register_stage(Again)

    @dataclasses.dataclass(frozen=True)
    class Clash:
        fps: float = option(1.0, "--fps")

    class Other(Stage):
        name = "other"
        Options = Clash
        default_encoder = "x"

    with pytest.raises(MerFeaturesError, match="declares option\\(s\\) fps, which modality "
                       "'video' declares too"):
        register_stage(Other)


# --- a fourth modality, in one class (and its encoder) ---------------------------------------


@dataclasses.dataclass(frozen=True)
class PulseOptions:
    pulse_column: str = option("pulse", "--pulse-column", "pulse: the manifest column of beats")

    def __post_init__(self) -> None:
        if not self.pulse_column:
            raise ParameterError("`pulse_column` must name a manifest column.", "pulse_column")


class PulseStage(Stage):
    """Heart beats per minute, space-separated in a manifest column."""

    name = "pulse"
    Options = PulseOptions
    default_encoder = "beats"
    batch_sizes = {"cpu": 2, "gpu": 8}
    uses_workers = False
    uses_media = False

    def columns(self) -> tuple[str, ...]:
        return (self.options.pulse_column,)

    def fingerprint_fields(self) -> dict[str, Any]:
        return {"pulse_column": self.options.pulse_column}

    def input_hashes(self, clips):
        from mer_features.fingerprint import text_hash

        return [text_hash(c.extra.get(self.options.pulse_column, "")) for c in clips]

    def decode(self, clip, encoder):
        return np.array([float(v) for v in clip.extra[self.options.pulse_column].split()],
                        np.float32)


class Beats(Encoder):
    name = "beats"
    modality = "pulse"
    version = "1"

    @dataclasses.dataclass(frozen=True)
    class Config:
        scale: float = 1.0

    def weights_identity(self) -> dict[str, Any]:
        return {"package": "none"}

    def output_spec(self) -> OutputSpec:
        return OutputSpec((2,), 1, None)

    def preprocessing(self) -> dict[str, Any]:
        return {}

    def encode_batch(self, items):
        return [Encoded(np.array([x.mean(), x.std()], np.float32) * self.config.scale,
                        x[:, None], np.arange(len(x), dtype=np.float32)) for x in items]


@pytest.fixture
def pulse(monkeypatch):
    monkeypatch.setattr(modalities_base, "_REGISTRY", dict(modalities_base._REGISTRY))
    monkeypatch.setattr(encoders_base, "_REGISTRY", dict(encoders_base._REGISTRY))
    register_stage(PulseStage)
    encoders_base.register_encoder(Beats)
    return PulseStage


def test_a_fourth_modality_is_one_registered_stage(pulse, tmp_path: Path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("name,pulse,beats,discrete\na,60 62 64,70,happy\nb,80 90,75,sad\n")
    help_text = build_parser()._subparsers._group_actions[0].choices["extract"].format_help()
    assert "{audio,text,video,pulse}" in help_text and "--pulse-column" in help_text
    assert "pulse 2 on a CPU, 8 on a GPU" in " ".join(help_text.split())
    out = tmp_path / "p.h5"
    assert main(["extract", "--modality", "pulse", "--manifest", str(manifest), "--out", str(out),
                 "--no-progress"]) == 0
    with FeatureStore(out) as store:
        assert store.modality == "pulse" and store.encoder == "beats"
        np.testing.assert_allclose(store.utterances(), [[62, np.std([60, 62, 64])], [85, 5]],
                                   rtol=1e-6)
        assert store.fields["preprocessing"] == {"pulse_column": "pulse"}
        assert store.fields["noise"] is None
    other = tmp_path / "q.h5"
    assert main(["extract", "--modality", "pulse", "--manifest", str(manifest), "--out",
                 str(other), "--pulse-column", "beats", "--noise", "snr=5", "--no-progress"]) == 0
    with FeatureStore(other) as store:
        assert store.utterances()[:, 0].tolist() == [70, 75]
        assert store.fields["noise"] is None  # no noise key has the pulse side
    assert main(["extract", "--modality", "text", "--manifest", str(manifest), "--out",
                 str(tmp_path / "x.h5"), "--pulse-column", "", "--text-column", "beats"]) == 2
    assert "--pulse-column must name a manifest column" in capsys.readouterr().err


def test_options_of_another_modality_are_checked_then_ignored(pulse, tmp_path: Path):
    from mer_features.pipeline import extract_options

    options = extract_options(manifest="m.csv", modality="text", pulse_column="beats")
    assert options.modality_options.text_column == "text"
