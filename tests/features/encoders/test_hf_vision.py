"""hf: video encoders on tiny checkpoints of the real architectures (save_pretrained -> load)."""

from pathlib import Path

import numpy as np
import pytest

import mer_features.encoders.hf_vision  # noqa: F401  (registration)
from mer_features.encoders import create_encoder
from mer_features.decode.inputs import FaceInput
from mer_features.errors import ClipError, EncoderError


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             image_size=32, patch_size=8)


def tiny(folder: Path, kind: str) -> Path:
    import torch
    from transformers import (CLIPVisionConfig, CLIPVisionModel, Dinov2Config, Dinov2Model,
                              VideoMAEConfig, VideoMAEModel, ViTConfig, ViTImageProcessor,
                              ViTMAEConfig, ViTMAEModel, ViTModel)

    torch.manual_seed(0)
    model = {
        "vit": lambda: ViTModel(ViTConfig(**SMALL), add_pooling_layer=False),
        "clip": lambda: CLIPVisionModel(CLIPVisionConfig(**SMALL)),
        "dinov2": lambda: Dinov2Model(Dinov2Config(**SMALL)),
        "vit_mae": lambda: ViTMAEModel(ViTMAEConfig(**SMALL)),
        "videomae": lambda: VideoMAEModel(VideoMAEConfig(**SMALL, num_frames=4, tubelet_size=2)),
    }[kind]()
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3,
                      image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def track(name: str, n: int, seed: int, no_face=()) -> FaceInput:
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 255, (n, 48, 48, 3), dtype=np.uint8)
    mask = np.ones(n, bool)
    mask[list(no_face)] = False
    faces[~mask] = 0
    return FaceInput(name=name, faces=faces, mask=mask, times=np.arange(n, dtype=np.float32) / 4,
                     boxes=np.zeros((n, 4), np.float32), probs=mask.astype(np.float32))


@pytest.mark.parametrize("kind", ["vit", "clip", "dinov2", "vit_mae"])
def test_image_models_per_face_frame(tmp_path: Path, kind: str):
    enc = create_encoder("video", f"hf:{tiny(tmp_path / kind, kind)}")
    assert enc.config.pool == ("mean" if kind == "vit_mae" else "cls")
    items = [track("a", 5, 0, no_face=(1, 3)), track("b", 3, 1), track("c", 2, 2, no_face=(0, 1))]
    a, b, c = enc.encode_batch(items)
    assert isinstance(c, ClipError) and c.stage == "faces"
    spec = enc.output_spec()
    assert a.frames.shape == (5, spec.frame_dim) and a.utterance.shape == spec.utterance_shape
    assert np.all(a.frames[[1, 3]] == 0) and np.all(np.abs(a.frames[[0, 2, 4]]).sum(1) > 0)
    np.testing.assert_allclose(a.utterance, a.frames[[0, 2, 4]].mean(0), atol=1e-5)
    assert a.info["face_fraction"] == pytest.approx(0.6)
    # batched across clips equals one clip at a time
    (alone,) = enc.encode_batch([items[1]])
    np.testing.assert_allclose(alone.frames, b.frames, atol=1e-4)


def test_layer_all_and_bf16(tmp_path: Path):
    folder = tiny(tmp_path / "vit", "vit")
    item = [track("a", 4, 0)]
    (last,) = create_encoder("video", f"hf:{folder}").encode_batch(item)
    (every,) = create_encoder("video", f"hf:{folder}", {"layer": "all"}).encode_batch(item)
    assert every.utterance.shape == (3, 32)
    np.testing.assert_allclose(every.utterance[-1], last.utterance, atol=1e-5)
    enc = create_encoder("video", f"hf:{folder}")
    enc.load("cpu", "bf16")
    (half,) = enc.encode_batch(item)
    cos = half.utterance @ last.utterance / np.linalg.norm(half.utterance) / np.linalg.norm(last.utterance)
    assert cos > 0.99


def test_videomae_windows(tmp_path: Path):
    enc = create_encoder("video", f"hf:{tiny(tmp_path / 'vm', 'videomae')}")
    assert enc.config.pool == "mean" and enc.num_frames == 4
    short, long_ = enc.encode_batch([track("s", 3, 0), track("l", 10, 1, no_face=(0,))])
    assert short.frames.shape == (1, 32)  # one window, frames repeated to fill it
    assert long_.frames.shape == (3, 32)  # 9 face frames -> 3 windows of 4
    centres = long_.info["source_frames"]
    assert len(centres) == 3 and all(1 <= c <= 9 for c in centres)
    np.testing.assert_allclose(long_.frame_times, np.arange(10)[centres] / 4)
    np.testing.assert_allclose(long_.utterance, long_.frames.mean(0), atol=1e-5)


def test_unsupported_model_type(tmp_path: Path, tiny_hubert: Path):
    with pytest.raises(EncoderError, match="'hubert' model; the hf video encoder takes"):
        create_encoder("video", f"hf:{tiny_hubert}")
