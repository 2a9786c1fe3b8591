"""Semi-supervised heads at MER-SEMI size: time and peak memory of one pseudo-labelling round.

Generates MER-SEMI-sized data in memory (3,373 labelled clips with MER 2023's class balance and
valence, 73,000 unlabelled clips from the same distribution; three 1024-d modalities, the signal
model of bench_heads.py), then runs ``fit_semi`` with the ``threshold`` strategy (T = 0.8), one
round and 20 epochs: the supervised 5-fold fit, the fold models' predictions over the whole
pool (streamed in chunks), and the 5-fold fit on labelled + pseudo-labelled clips. Also times the
streamed pool prediction alone. Prints wall times, clips added and peak RSS
(``resource.getrusage``) against the size of the generated arrays; writes
benchmarks/out/bench_semi.json.

Usage: python benchmarks/bench_semi.py [--quick] [--pool N] [--epochs E] [--dtype float32|float16]
       [--threads T] [--precision auto|fp32|bf16]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_heads import CLASS_COUNTS, STRENGTH, VALENCE  # noqa: E402

GEN_CHUNK = 8192


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB on Linux


def semi_sized_data(n_labelled: int, n_pool: int, dim: int = 1024, seed: int = 0,
                    dtype: str = "float32"):
    """A MultimodalData of labelled + unlabelled clips, written chunk by chunk into the final
    arrays so that generating it does not raise the peak memory above the data itself."""
    from mer_features import EMOTIONS
    from mer_heads.data import ModalityInfo, MultimodalData

    rng = np.random.default_rng(seed)
    n = n_labelled + n_pool
    p = np.array([CLASS_COUNTS[e] for e in EMOTIONS], float)
    y = rng.choice(len(EMOTIONS), size=n, p=p / p.sum())
    means = np.array([VALENCE[e][0] for e in EMOTIONS])
    stds = np.array([VALENCE[e][1] for e in EMOTIONS])
    valence = np.clip(means[y] + stds[y] * rng.standard_normal(n), -5, 5)
    features, infos = [], []
    for key, strength in STRENGTH.items():
        basis = np.linalg.qr(rng.standard_normal((dim, 16)))[0].T.astype(np.float32)
        centres = (rng.standard_normal((len(EMOTIONS), 16)) * strength).astype(np.float32)
        direction = (rng.standard_normal(16) * strength * 0.3).astype(np.float32)
        mix = (rng.standard_normal((64, dim)) * 0.1).astype(np.float32)
        offset = (rng.standard_normal(dim) * 3).astype(np.float32)
        x = np.empty((n, dim), dtype)
        for start in range(0, n, GEN_CHUNK):
            stop = min(start + GEN_CHUNK, n)
            m = stop - start
            z = (centres[y[start:stop]] + np.outer(valence[start:stop], direction)
                 + rng.standard_normal((m, 16), np.float32))
            x[start:stop] = (z @ basis + rng.standard_normal((m, 64), np.float32) @ mix
                             + rng.standard_normal((m, dim), np.float32) * 0.3 + offset)
        features.append(x)
        infos.append(ModalityInfo(key, f"<generated {key}>", "generated", key, "generated",
                                  (dim,), dim))
    discrete = np.array([EMOTIONS[c] for c in y], dtype=object)
    discrete[n_labelled:] = ""
    valence[n_labelled:] = np.nan
    return MultimodalData(names=[f"c{i:06d}" for i in range(n)], modalities=infos,
                          features=features, present=np.ones((n, 3), bool), discrete=discrete,
                          valence=valence, split=np.full(n, "train", dtype=object)), y


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labelled", type=int, default=3373)
    parser.add_argument("--pool", type=int, default=73000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=20,
                        help="enough for the fold models to pass T = 0.8 on many pool clips")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                        help="dtype of the generated arrays (stores load as float32)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (0: torch default). Default 1: on a machine shared "
                        "with other jobs, two threads ran this 10x slower (barrier waits)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--quick", action="store_true", help="10,000 pool clips, 10 epochs")
    parser.add_argument("--out", default=str(OUT / "bench_semi.json"))
    args = parser.parse_args()
    if args.quick:
        args.pool, args.epochs = min(args.pool, 10000), min(args.epochs, 10)

    import torch

    from mer_features import EMOTIONS
    from mer_heads.experiments.semi import SemiSettings, fit_semi

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data, truth = semi_sized_data(args.labelled, args.pool, args.dim, dtype=args.dtype)
    generated = time.perf_counter() - start
    data_gb = sum(x.nbytes for x in data.features) / 2**30
    rss_data = peak_rss_gb()
    print(f"{args.labelled} labelled + {args.pool} unlabelled clips, 3 x {args.dim}-d "
          f"{args.dtype} ({data_gb:.2f} GB, generated in {generated:.1f} s); peak RSS so far "
          f"{rss_data:.2f} GB; threshold {args.threshold}, 1 round, 5 folds x {args.epochs} "
          f"epochs, {torch.get_num_threads()} torch thread(s)", flush=True)

    params = dict(folds=5, epochs=args.epochs, precision=args.precision, seed=0,
                  threads=torch.get_num_threads())  # each fit sets its own threads
    settings = SemiSettings("threshold", rounds=1, threshold=args.threshold)
    start = time.perf_counter()
    result = fit_semi(data, settings, params)
    seconds = time.perf_counter() - start
    rss_fit = peak_rss_gb()
    est = result.estimator
    r0, r1 = result.rounds
    labels = result.selected[0]
    pool_truth = truth[args.labelled:]
    assigned = labels >= 0
    accuracy = float((labels == pool_truth[None])[assigned].mean()) if assigned.any() else None
    print(f"fit_semi (supervised fit, pool prediction, fit with pseudo-labels): {seconds:.1f} s; "
          f"added {r1['added_total']:.0f} clips per fold (" + ", ".join(
              f"{e} {r1['added'][e]:.0f}" for e in EMOTIONS) + f"), pseudo-label accuracy "
          f"{accuracy if accuracy is None else round(accuracy, 3)}; CV metric "
          f"{r0['cv']['metric']:.4f} -> {r1['cv']['metric']:.4f}", flush=True)

    pool_rows = np.arange(args.labelled, len(data))
    start = time.perf_counter()
    proba = est.predict_fold_proba(data, rows=pool_rows)
    predict_s = time.perf_counter() - start
    rss_end = peak_rss_gb()
    print(f"streamed pool prediction alone ({len(pool_rows)} clips x 5 fold models): "
          f"{predict_s:.1f} s", flush=True)
    print(f"peak RSS {rss_end:.2f} GB (after generating the data {rss_data:.2f} GB; the "
          f"semi-supervised fit added {rss_fit - rss_data:.2f} GB)", flush=True)

    results = {
        "labelled": args.labelled, "pool": args.pool, "dim": args.dim, "dtype": args.dtype,
        "epochs": args.epochs, "threshold": args.threshold, "folds": 5, "rounds": 1,
        "threads": torch.get_num_threads(), "precision": est.precision_,
        "machine": platform.machine(), "torch": torch.__version__,
        "data_gb": data_gb, "generate_s": generated, "fit_semi_s": seconds,
        "pool_predict_s": predict_s, "pool_predict_shape": list(proba.shape),
        "added_per_fold": r1["added_total"], "added_clips": r1["added_clips"],
        "added": r1["added"], "pseudo_label_accuracy": accuracy,
        "cv_metric_supervised": r0["cv"]["metric"], "cv_metric_round1": r1["cv"]["metric"],
        "peak_rss_after_data_gb": rss_data, "peak_rss_after_fit_gb": rss_fit,
        "peak_rss_gb": rss_end, "fit_added_rss_gb": rss_fit - rss_data,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
