"""Shared fixtures: small generated media, tiny models, and the real data beside the checkout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# Helpers live in synthetic_media.py and real_data.py, and tests import them from there; the
# names stay importable from here only for branches written before (tests/test_imports.py).
from real_data import RUNNING, SHARED_DATA, shared_data  # noqa: F401
from synthetic_media import make_tiny_hf_audio, voiced, write_manifest  # noqa: F401


@pytest.fixture(autouse=True, scope="session")
def _private_hash_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tests never touch the user's file-hash cache (subprocesses inherit the variable)."""
    import os

    old = os.environ.get("MER_FEATURES_CACHE")
    os.environ["MER_FEATURES_CACHE"] = str(tmp_path_factory.mktemp("hash-cache"))
    yield
    if old is None:
        del os.environ["MER_FEATURES_CACHE"]
    else:
        os.environ["MER_FEATURES_CACHE"] = old


@pytest.fixture(autouse=True)
def _running_test(request: pytest.FixtureRequest):
    """Remembers the test being run, so that :func:`real_data.shared_data` can check its
    marker."""
    RUNNING.append(request.node)
    yield
    RUNNING.pop()


@pytest.fixture
def audio_corpus(tmp_path: Path) -> Path:
    """A manifest of 8 voiced wav clips (1-3 s, 16 or 22.05 kHz, one stereo) with labels."""
    emotions = ["neutral", "angry", "happy", "sad", "worried", "surprise", "happy", ""]
    rows = []
    (tmp_path / "clips").mkdir()
    for i, emotion in enumerate(emotions):
        rate = 16000 if i % 2 == 0 else 22050
        wave = voiced(1.0 + 0.25 * i, f0=110 + 20 * i, rate=rate, seed=i)
        if i == 3:
            wave = np.stack([wave, 0.5 * wave], axis=1)
        sf.write(tmp_path / "clips" / f"clip {i}.wav", wave, rate)
        rows.append({"name": f"c{i:02d}", "audio": f"clips/clip {i}.wav", "discrete": emotion,
                     "valence": (i - 4) * 0.5 if emotion else None,
                     "split": "train" if i < 6 else "test"})
    return write_manifest(tmp_path / "manifest.csv", rows)


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_hf_audio(tmp_path_factory.mktemp("tiny-hubert"), "hubert-group")


def pytest_xdist_make_scheduler(config, log):
    """`make test-quick` runs two pytest-xdist workers with ``--dist loadgroup``: each test
    file goes to one worker whole (its module fixtures are built once), and the files marked
    ``xdist_group("transformers")`` (they build Hugging Face models: importing transformers'
    modelling code costs a worker ~4 CPU s) all go to the same worker."""
    if config.getoption("dist", None) != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.rfind("@") > nodeid.rfind("]"):  # xdist's group suffix, "...@name"
                return nodeid.rsplit("@", 1)[-1]
            return nodeid.split("::", 1)[0]

    return FilesAndGroups(config, log)
