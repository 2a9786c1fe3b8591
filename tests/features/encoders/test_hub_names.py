"""hf:org/name and hf:org/name@revision, resolved in a local cache laid out like the hub's
(models--org--name/{refs/<branch>, snapshots/<commit>/ -> blobs}), with no network."""

import os
import shutil
from pathlib import Path

import pytest

from features.encoders.tiny_models import make_tiny_whisper
from mer_features.encoders import create_encoder
from mer_features.encoders.hf_common import download_patterns, resolve_model_dir
from mer_features.errors import EncoderError


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLDER = "fedcba9876543210fedcba9876543210fedcba98"


def fill_cache(cache: Path, repo: str, checkpoint: Path, commit: str, refs: tuple[str, ...]) -> Path:
    """The hub's cache layout: files in blobs/ named by content, linked from the snapshot."""
    import hashlib

    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True)
    for f in checkpoint.iterdir():
        blob = root / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blob)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (root / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (root / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, tiny_hubert: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-home" / "hub"
    fill_cache(cache, "org/tiny-hubert", tiny_hubert, COMMIT, ("main",))
    fill_cache(cache, "org/tiny-hubert", tiny_hubert, OLDER, ("v1",))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_name_from_the_cache_offline(hub_cache: Path):
    enc = create_encoder("audio", "hf:org/tiny-hubert")
    identity = enc.weights_identity()
    assert identity["source"] == "hub" and identity["repo"] == "org/tiny-hubert"
    assert identity["revision"] == COMMIT and "requested" not in identity
    assert "model.safetensors" in identity["files"]
    assert enc._dir == hub_cache / "models--org--tiny-hubert" / "snapshots" / COMMIT


def test_revisions_branch_tag_or_commit(hub_cache: Path):
    folder, origin = resolve_model_dir("org/tiny-hubert@v1")
    assert folder.name == OLDER and origin["revision"] == OLDER and origin["requested"] == "v1"
    folder, origin = resolve_model_dir(f"org/tiny-hubert@{COMMIT}")
    assert folder.name == COMMIT and origin["revision"] == COMMIT and "requested" not in origin
    a = create_encoder("audio", "hf:org/tiny-hubert@v1").weights_identity()
    b = create_encoder("audio", "hf:org/tiny-hubert").weights_identity()
    assert a["revision"] != b["revision"]


def test_hub_cache_variable_wins_over_hf_home(hub_cache: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    with pytest.raises(EncoderError, match="neither in the Hugging Face cache"):
        resolve_model_dir("org/tiny-hubert")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    assert resolve_model_dir("org/tiny-hubert")[0].name == COMMIT


def test_model_neither_cached_nor_reachable_is_one_line(hub_cache: Path):
    with pytest.raises(EncoderError) as e:
        create_encoder("audio", "hf:org/not-there")
    message = str(e.value)
    assert "\n" not in message
    assert "'org/not-there' is neither in the Hugging Face cache" in message
    assert str(hub_cache) in message and "HF_HUB_OFFLINE is set" in message
    assert "hf download org/not-there" in message
    with pytest.raises(EncoderError, match="org/tiny-hubert@v9.*hf download org/tiny-hubert --revision v9"):
        resolve_model_dir("org/tiny-hubert@v9")


@pytest.mark.slow  # sleeps through the hub client's retries: ~24 s a call
def test_unreachable_hub_falls_back_to_the_cache(hub_cache: Path, monkeypatch: pytest.MonkeyPatch):
    """Without HF_HUB_OFFLINE the hub is asked first; a hub that cannot be reached (here a
    closed local port) leaves the cache, or a one-line error that says what the hub answered."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    folder, origin = resolve_model_dir("org/tiny-hubert")
    assert folder.name == COMMIT and origin["revision"] == COMMIT
    with pytest.raises(EncoderError, match="nor reachable \\(the hub answered") as e:
        resolve_model_dir("org/other")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec", ["org/na me", "org/x@", "a/b/c", "./relative", "~/nothing-here"])
def test_what_is_neither_a_folder_nor_a_hub_id(spec: str, hub_cache: Path):
    with pytest.raises(EncoderError, match="is not a folder"):
        resolve_model_dir(spec)


def test_download_patterns_prefer_safetensors():
    both = download_patterns(["config.json", "model.safetensors", "pytorch_model.bin"])
    assert "*.safetensors" in both and "*.bin" not in both
    legacy = download_patterns(["config.json", "pytorch_model.bin"])
    assert "*.bin" in legacy and "*.py" in legacy


def test_hub_whisper_dispatches_like_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    checkpoint = make_tiny_whisper(tmp_path / "w")
    cache = tmp_path / "hub"
    fill_cache(cache, "openai-like/whisper-tiny", checkpoint, COMMIT, ("main",))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = create_encoder("audio", "hf:openai-like/whisper-tiny", {"input": "padded"})
    assert type(enc).__name__ == "HFWhisperEncoder"
    assert enc.weights_identity()["revision"] == COMMIT
