"""Shards, merging, and a real torchrun launch on CPU."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mer_features.cli import main
from mer_features.pipeline.distributed import Shard, parse_shard, shard_of
from mer_features.errors import FingerprintMismatchError, MerFeaturesError, StoreError
from mer_features.pipeline import extract
from mer_features.store import FeatureStore, merge_stores
from store_checks import assert_same_store
from synthetic_media import voiced_corpus as make_corpus


def test_shards_are_stable_and_cover_every_clip():
    names = [f"clip{i}" for i in range(1000)]
    shards = [shard_of(n, 4) for n in names]
    assert set(shards) == {0, 1, 2, 3} and min(np.bincount(shards)) > 200
    # adding clips never moves the others
    assert [shard_of(n, 4) for n in names[:10]] == shards[:10]
    assert parse_shard("1/4") == Shard(1, 4)
    with pytest.raises(MerFeaturesError, match="I/N"):
        parse_shard("x")
    with pytest.raises(MerFeaturesError, match="does not exist"):
        parse_shard("4/4")


@pytest.mark.slow
def test_merged_shards_equal_the_single_process_store(tmp_path: Path):
    manifest = make_corpus(tmp_path, n=24)
    single = tmp_path / "single.h5"
    extract(manifest, single, encoder="egemaps", workers=0, progress=False)
    shards = []
    for i in range(3):
        shards.append(tmp_path / f"s{i}.h5")
        assert main(["extract", "--modality", "audio", "--manifest", str(manifest), "--out",
                     str(shards[-1]), "--shard", f"{i}/3", "--workers", "0", "--no-progress",
                     "--encoder", "egemaps"]) == 0
    sizes = [len(FeatureStore(s)) for s in shards]
    assert sum(sizes) == 24 and min(sizes) > 0
    assert main(["merge", "--out", str(tmp_path / "merged.h5"), *map(str, shards)]) == 0
    assert_same_store(tmp_path / "merged.h5", single)
    with pytest.raises(StoreError, match="shards must not overlap"):
        merge_stores(tmp_path / "twice.h5", [shards[0], shards[0]])
    with pytest.raises(StoreError, match="exists; pass `overwrite`"):
        merge_stores(tmp_path / "merged.h5", shards)
    other = tmp_path / "other.h5"
    extract(manifest, other, encoder="egemaps", workers=0, progress=False,
            storage_dtype="float16", shard=Shard(0, 3))
    with pytest.raises(FingerprintMismatchError, match="storage_dtype"):
        merge_stores(tmp_path / "mixed.h5", [shards[1], other])


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path: Path):
    manifest = make_corpus(tmp_path, n=16)
    single = tmp_path / "single.h5"
    extract(manifest, single, encoder="egemaps", workers=0, progress=False)
    out = tmp_path / "dist.h5"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(torchrun), "--nproc-per-node", "2", "--master-port", "29517", "-m", "mer_features.cli",
         "extract", "--modality", "audio", "--manifest", str(manifest), "--out", str(out),
         "--encoder", "egemaps", "--workers", "0", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(tmp_path.glob("dist.shard-*"))
    assert_same_store(out, single)
