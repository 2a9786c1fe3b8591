"""Loading utterance vectors from a MER-SEMI-sized store against one .npy file per clip.

Generates a store of 73k clips (1024-d utterance vectors, ~85 frames per clip, float16) with
the toolkit's own writer, and the same utterance vectors as one .npy file per clip (the
baseline tools' layout), then times reading all utterance vectors both ways in one run.
Usage: python benchmarks/bench_store.py [--clips N] [--frames F] [--dim D] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def drop_page_cache() -> bool:
    """Ask the kernel to forget cached file pages (needs root; harmless when refused)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=73000)
    parser.add_argument("--frames", type=int, default=85)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()

    from mer_features.store import ClipRecord, FeatureStore, StoreHeader
    from mer_features.store.hdf5 import write_store_file

    work = args.out / "store-bench"
    shutil.rmtree(work, ignore_errors=True)
    (work / "npy").mkdir(parents=True)
    header = StoreHeader(modality="audio", encoder="synthetic", encoder_version="1",
                         fields={"bench": True}, utterance_shape=(args.dim,), frame_dim=args.dim,
                         frame_rate=50.0, storage_dtype="float16")
    rng = np.random.default_rng(0)
    frames_template = rng.standard_normal((args.frames + 20, args.dim)).astype(np.float16)

    def records():
        for i in range(args.clips):
            n = args.frames - 10 + i % 21  # 75-95 frames, ~85 on average
            utterance = rng.standard_normal(args.dim).astype(np.float32)
            np.save(work / "npy" / f"clip{i:06d}.npy", utterance)
            yield ClipRecord(name=f"clip{i:06d}", utterance=utterance,
                             frames=frames_template[:n], frame_times=np.arange(n, dtype=np.float32) / 50,
                             input_hash="x", duration=n / 50)

    t = time.perf_counter()
    write_store_file(work / "store.h5", header, args.clips, records())
    write_s = time.perf_counter() - t
    size_gb = (work / "store.h5").stat().st_size / 1e9

    results = {}
    for cache in ("cold", "warm"):
        if cache == "cold" and not drop_page_cache():
            continue
        t = time.perf_counter()
        with FeatureStore(work / "store.h5") as store:
            X = store.utterances()
        store_s = time.perf_counter() - t
        if cache == "cold":
            drop_page_cache()
        t = time.perf_counter()
        names = sorted(os.listdir(work / "npy"))
        Y = np.stack([np.load(work / "npy" / name) for name in names])
        npy_s = time.perf_counter() - t
        np.testing.assert_allclose(X, Y.astype(np.float16).astype(np.float32))
        results[cache] = {"store_s": round(store_s, 3), "npy_s": round(npy_s, 3),
                          "speedup": round(npy_s / store_s, 1)}
    if not args.keep:
        shutil.rmtree(work)
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "clips": args.clips, "frames_per_clip": args.frames, "dim": args.dim,
        "store_gb": round(size_gb, 2), "write_s": round(write_s, 1), **results,
    }
    print(f"store of {args.clips} clips ({args.dim}-d utterances, ~{args.frames} frames each, "
          f"float16): {size_gb:.1f} GB, written in {write_s:.0f} s")
    for cache, r in results.items():
        print(f"  {cache} cache: all utterance vectors from the store {r['store_s']:.2f} s, from "
              f"{args.clips} .npy files {r['npy_s']:.2f} s -> {r['speedup']:.0f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_store.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
