"""SIGKILL a real extraction at random moments; the store must always open, and resuming must
end with exactly the store an uninterrupted run writes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from store_checks import assert_same_store
from synthetic_media import voiced_corpus as make_corpus
from mer_features.store import FeatureStore, pending_parts

@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path: Path):
    """20 runs killed at random moments (part writes every 2 clips, so many kills land in a
    write); after each, what is on disk opens; every completed cycle equals the reference."""
    manifest = make_corpus(tmp_path, n=80)

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "mer_features.cli", "extract", "--modality", "audio",
                "--manifest", str(manifest), "--out", str(out), "--workers", "0",
                "--encoder", "egemaps", "--commit-every", "2", "--no-progress"]

    reference = tmp_path / "reference.h5"
    started = time.monotonic()
    subprocess.run(command(reference), check=True, capture_output=True)
    duration = time.monotonic() - started

    store = tmp_path / "killed.h5"
    rng = np.random.default_rng(2024)
    kills = completed = 0
    for trial in range(20):
        proc = subprocess.Popen(command(store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the first second is mostly interpreter start-up; resumed runs have less left to do
        deadline = time.monotonic() + rng.uniform(0.3, 0.75) * duration
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        if store.exists():  # whatever moment the kill hit, what is on disk opens
            with FeatureStore(store) as s:
                assert np.isfinite(s.utterances()).all()
        for part in pending_parts(store):
            FeatureStore(part).close()
        if proc.returncode == 0:  # a cycle completed: it must equal the reference; start again
            assert pending_parts(store) == []
            assert_same_store(store, reference)
            completed += 1
            store.unlink()
    assert kills >= 10, f"only {kills} of 20 runs were killed mid-way (a full run takes {duration:.1f} s)"
    final = subprocess.run(command(store), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert pending_parts(store) == []
    assert_same_store(store, reference)
