"""The registry of noise keys: one declaration per key drives parsing, the canonical form,
labels, sides, sweep levels and application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mer_features.noise import (GENERATED_SOURCES, NoiseKey, NoiseSpecError, canonical,
                                corrupt_frames, describe_noise, noise_keys, parse_level,
                                parse_noise, register_noise_key)
from mer_features.noise import spec as spec_module


def _describe_before_issue_14(spec: str, modality: str | None = None) -> dict[str, Any]:
    """mer_heads/robustness.py's describe_noise as it was before the registry (the contract)."""
    values = {}
    for part in spec.split(","):
        key, _, value = part.partition("=")
        if key.strip():
            values[key.strip()] = value.strip()
    if modality is not None:
        acting = {"audio": ("snr", "source"), "video": ("blur", "scale", "jpeg")}.get(modality, ())
        values = {k: v for k, v in values.items() if k in acting}
    parts, snr, source = [], None, None
    if "snr" in values:
        low, _, high = values["snr"].partition(":")
        try:
            lo, hi = float(low), float(high or low)
        except ValueError:
            return {"label": spec, "snr_db": None, "source": None}
        snr = (lo + hi) / 2
        source = values.get("source", "white")
        if source not in ("white", "pink", "babble"):
            source = Path(source).name or source
        text = f"{lo:g} dB" if lo == hi else f"{lo:g}-{hi:g} dB"
        parts.append(text if source == "white" else f"{text} {source}")
    for key in ("blur", "scale", "jpeg"):
        if key in values:
            parts.append(f"{key} {values[key]}")
    return {"label": " + ".join(parts) or spec, "snr_db": snr, "source": source}


SPECS = ["snr=10,source=white", "snr=10,source=pink", "snr=5:10,source=babble",
         "snr=0,source=/data/musan/speech", "snr=-5,source=/data/noise/", "blur=1|2|4",
         "scale=0.5", "jpeg=30", "snr=20,source=pink,blur=2,jpeg=40", "snr=x,source=pink",
         "snr=5:", "level=3", "", "snr=10", "blur=2,unknown=1", "snr=1e-3:2.5,source=white"]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("modality", [None, "audio", "video", "text"])
def test_describe_noise_keeps_its_contract(spec: str, modality: str | None):
    if (spec, modality) in {("blur=2,unknown=1", None), ("blur=2,unknown=1", "video"),
                            ("snr=5:", None), ("snr=5:", "audio")}:
        # One grammar (issue 25): a spec with an unknown key does not parse, so it is labelled
        # by its text, where the old lenient reader labelled the keys it knew.
        assert describe_noise(spec, modality) == {"label": spec, "snr_db": None, "source": None}
        return
    assert describe_noise(spec, modality) == _describe_before_issue_14(spec, modality)


def test_describe_noise_reads_what_parse_noise_reads():
    """describe_noise has no grammar of its own: what parse_noise refuses is labelled by its
    text, and equal specs written differently get one label."""
    assert describe_noise("jpeg=30, blur=2 ,snr=5:10") == describe_noise(
        "snr=5:10,source=white,blur=2,jpeg=30")
    assert describe_noise("snr=5:10,snr=3")["label"] == "snr=5:10,snr=3"  # refused: twice
    assert describe_noise("snr=0,source=/no/such/folder")["label"] == "0 dB folder"  # not checked
    assert parse_noise("snr=5,blur=2").restricted("audio") == parse_noise("snr=5")
    assert parse_noise("snr=5,blur=2").restricted("video") == parse_noise("blur=2")
    assert parse_noise("blur=2").restricted("audio") is None


def test_describe_noise_labels():
    assert describe_noise("snr=10,source=pink") == {"label": "10 dB pink", "snr_db": 10.0,
                                                    "source": "pink"}
    assert describe_noise("snr=5:10,source=/a/musan,blur=1|2|4")["label"] == \
        "5-10 dB musan + blur 1|2|4"
    assert describe_noise("snr=5:10,source=/a/musan,blur=1|2|4", "video")["label"] == "blur 1|2|4"


def test_the_registry_orders_and_sides():
    assert [(k.name, k.side) for k in noise_keys()] == [
        ("snr", "audio"), ("source", "audio"), ("blur", "video"), ("scale", "video"),
        ("jpeg", "video")]
    assert GENERATED_SOURCES == ("white", "pink", "babble")
    spec = parse_noise("jpeg=30, blur=2 ,snr=5:10")
    assert canonical(spec) == "snr=5:10,source=white,blur=2,jpeg=30"
    with pytest.raises(NoiseSpecError, match="already registered"):
        register_noise_key(NoiseKey("blur", "video", "x", "blur=2", parse=int))


@pytest.mark.parametrize("level, spec, tag", [
    ("20", "snr=20,source=white", "snr20"),
    ("5", "snr=5,source=white", "snr05"),
    ("0", "snr=0,source=white", "snr00"),
    ("-5", "snr=-5,source=white", "snr-5"),
    ("2.5", "snr=2.5,source=white", "snr2.5"),
    ("10:pink", "snr=10,source=pink", "snr10-pink"),
    ("10:white", "snr=10,source=white", "snr10-white"),
    ("blur4", "blur=4", "blur4"),
    ("jpeg=30", "jpeg=30", "jpeg_30"),
    ("scale=0.5", "scale=0.5", "scale_0.5"),
    ("snr=5:10,source=babble", "snr=5:10,source=babble", "snr_5_10_source_babble"),
    ("5:10", "snr=5:10,source=white", "snr05-10"),
    ("5:10:pink", "snr=5:10,source=pink", "snr05-10-pink"),
    ("0:20:babble", "snr=0:20,source=babble", "snr00-20-babble"),
])
def test_levels_give_the_makefiles_store_names(level: str, spec: str, tag: str):
    parsed = parse_level(level)
    assert canonical(parsed.spec) == spec and parsed.tag == tag
    assert parsed.store("f/demo-audio") == Path(f"f/demo-audio-{tag}.h5")


def test_levels_with_another_default_source_and_folders(tmp_path: Path):
    import soundfile as sf

    folder = tmp_path / "musan"
    folder.mkdir()
    sf.write(folder / "n.wav", np.full(16000, 0.1, np.float32), 16000)
    assert parse_level("20", {"source": "pink"}).tag == "snr20-pink"
    level = parse_level("20", {"source": f"{folder}/"})
    assert level.tag == "snr20-musan" and canonical(level.spec) == f"snr=20,source={folder}"
    assert parse_level(f"10:{folder}").tag == "snr10-musan"
    assert parse_level("clean").is_clean and parse_level("clean").store("p") == Path("p.h5")


@pytest.mark.parametrize("level, match", [("loud", "is not one of: clean, an SNR"),
                                          ("blur3", "bad value '3' for 'blur'"),
                                          ("10:/no/such/folder", "neither white, pink, babble"),
                                          ("snr=inf", "bad value 'inf'"),
                                          ("10:5", "LOW <= HIGH")])
def test_bad_levels_are_clear_errors(level: str, match: str):
    with pytest.raises(NoiseSpecError, match=match):
        parse_level(level)


def test_a_new_noise_key_is_one_declaration(monkeypatch):
    """A key registered in one place parses, has a canonical form, a label, a sweep
    shorthand and is applied to frames with the clip's random stream."""
    keys = dict(spec_module._KEYS)
    monkeypatch.setattr(spec_module, "_KEYS", keys)

    def invert(frames: np.ndarray, amount: float, rng: np.random.Generator):
        return (255 - frames) if amount > 0 else frames, amount

    register_noise_key(NoiseKey(
        name="invert", side="video", rule="invert takes a number", example="invert=1",
        parse=float, text=lambda v: f"{v:g}",
        describe=lambda values, result: f"inverted {values['invert']}",
        level=lambda text, options: ("invert=1", "inverted") if text == "inverted" else None,
        apply=invert))
    spec = parse_noise("invert=1.0,blur=1")
    assert canonical(spec) == "blur=1,invert=1" and spec.has_video and not spec.has_audio
    assert describe_noise(canonical(spec)) == {"label": "blur 1 + inverted 1", "snr_db": None,
                                               "source": None}
    assert parse_level("inverted").tag == "inverted"
    frames = np.zeros((1, 4, 4, 3), np.uint8)
    out, info = corrupt_frames("clip", frames, spec, seed=0)
    assert (out == 255).all() and info == {"blur": 1, "invert": 1.0}
    with pytest.raises(NoiseSpecError, match="invert takes a number"):
        parse_noise("invert=much")
