"""Bootstrap intervals and paired tests at corpus size, against a per-resample loop.

10,000 clips of 8 classes with probabilities and valence; every metric of
mer_heads.metrics.all_metrics (UA, WA, macro and weighted F1, per-class recall and F1, MSE and
CCC, the MER metric, ECE, Brier, NLL: 26 scalar metrics). Times (wall clock, and CPU seconds of this process: on a machine shared
with other jobs the wall clock grows with the load), side by side in one run:
``bootstrap_metrics`` with 1000 resamples over clips and over 100 speakers, the same resamples
computed one at a time with ``all_metrics`` (timed on --loop resamples and scaled to 1000),
and ``compare_pair`` with 1000 resamples and 10,000 permutations.
Usage: python benchmarks/bench_stats.py [--clips N] [--resamples B] [--loop L] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def data(n: int, k: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y]
    proba = np.exp(2 * z) / np.exp(2 * z).sum(1, keepdims=True)
    tv = rng.uniform(-3, 3, n)
    return {"y": y, "proba": proba, "tv": tv, "pv": tv + rng.normal(size=n),
            "groups": rng.integers(0, 100, n)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--permutations", type=int, default=10_000)
    parser.add_argument("--loop", type=int, default=50, help="resamples timed one at a time")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()

    from machine import describe, line

    from mer_heads.metrics import all_metrics, scalar_metrics
    from mer_heads.stats import Predictions, bootstrap_metrics, compare_pair

    info = describe()
    print(line(info))
    d = data(args.clips, 8)
    kwargs = dict(classes=8, proba=d["proba"], true_targets={"valence": d["tv"]},
                  pred_targets={"valence": d["pv"]})
    bootstrap_metrics(d["y"], **kwargs, n_resamples=10)  # imports and first-call costs

    t0, c0 = time.perf_counter(), time.process_time()
    clips = bootstrap_metrics(d["y"], **kwargs, n_resamples=args.resamples, seed=0)
    t_clips, c_clips = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    bootstrap_metrics(d["y"], **kwargs, groups=d["groups"], n_resamples=args.resamples, seed=0)
    t_groups = time.perf_counter() - t0

    rng = np.random.default_rng(0)  # the same resamples, one all_metrics call each
    t0 = time.perf_counter()
    for i in rng.integers(0, args.clips, (args.loop, args.clips)):
        scalar_metrics(all_metrics(d["y"][i], classes=8, proba=d["proba"][i],
                                   true_targets={"valence": d["tv"][i]},
                                   pred_targets={"valence": d["pv"][i]}))
    t_loop = (time.perf_counter() - t0) / args.loop * args.resamples

    other = data(args.clips, 8, seed=1)
    t0, c0 = time.perf_counter(), time.process_time()
    compare_pair(d["y"], Predictions(proba=d["proba"], targets={"valence": d["pv"]}),
                 Predictions(proba=other["proba"], targets={"valence": other["pv"]}),
                 classes=8, true_targets={"valence": d["tv"]}, n_resamples=args.resamples,
                 n_permutations=args.permutations, seed=0)
    t_compare, c_compare = time.perf_counter() - t0, time.process_time() - c0

    summary = {"machine": info, "clips": args.clips, "classes": 8,
               "metrics": len(clips["metrics"]), "resamples": args.resamples,
               "permutations": args.permutations,
               "sizes": f"{args.clips} / {args.resamples} / {args.permutations}",
               "bootstrap_clips_s": round(t_clips, 3), "bootstrap_clips_cpu_s": round(c_clips, 3), "bootstrap_groups_s": round(t_groups, 3),
               "loop_all_metrics_s": round(t_loop, 2),
               "speedup_vs_loop": round(t_loop / t_clips, 1),
               "compare_pair_s": round(t_compare, 3), "compare_pair_cpu_s": round(c_compare, 3)}
    for key, value in summary.items():
        if key != "machine":
            print(f"{key}: {value}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_stats.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
