"""The public Python API: ``from mer_features import ...``, light to import."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import mer_features


def test_every_public_name_resolves_and_is_documented():
    for name in mer_features.__all__:
        value = getattr(mer_features, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"mer_features.{name} has no docstring"
    assert set(mer_features.__all__) <= set(dir(mer_features))
    from mer_features.pipeline import extract
    from mer_features.store import FeatureStore

    assert mer_features.extract is extract and mer_features.FeatureStore is FeatureStore


def test_unknown_names_are_attribute_errors():
    try:
        mer_features.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("expected an AttributeError")


def test_importing_the_package_loads_nothing_heavy():
    code = ("import sys, mer_features; from mer_features import EMOTIONS, __version__; "
            "print(sorted(m for m in ('numpy', 'h5py', 'torch', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_private_name_is_exported():
    """No module lists a private name (such as an ``_atomic_write``) in its ``__all__``."""
    root = Path(mer_features.__file__).parent
    for module in pkgutil.walk_packages([str(root)], "mer_features."):
        loaded = importlib.import_module(module.name)
        private = [n for n in getattr(loaded, "__all__", []) if n.startswith("_")
                   and n != "__version__"]
        assert not private, f"{module.name}.__all__ exports {private}"


@pytest.mark.slow
def test_a_public_round_trip(audio_corpus: Path, tmp_path: Path):
    """The names a user needs for the main job, used as the module docstring shows."""
    from mer_features import FeatureStore, extract, read_manifest

    manifest = read_manifest(audio_corpus)
    summary = extract(manifest, tmp_path / "a.h5", modality="audio", workers=0, progress=False)
    assert summary.done == len(manifest) == 8
    with FeatureStore(summary.store) as store:
        assert store.utterances().shape == (8, 768)  # the default audio encoder: whisper
