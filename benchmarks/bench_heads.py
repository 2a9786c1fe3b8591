"""Heads: the batched fold trainer against the baseline per-fold DataLoader loop.

Both train the same ``attention`` head (per-modality MLP encoders 1024 -> 256 -> 128, attention
fusion, emotion and valence heads; Adam, lr 1e-3, L2 1e-5, dropout 0.3) on the same five
stratified folds of generated MER-2023-sized data (3,373 clips, three 1024-d modalities, the
MER 2023 class balance, valence with the class means and spreads of MER 2023's labels, a
class- and valence-dependent signal in a 16-d subspace of each modality under noise), side by
side in one process:

* baseline, the MER 2023 procedure: for each fold in turn, a DataLoader with batches of 32,
  100 epochs, an evaluation of the held-out fold after every epoch (DataLoader, batch 32), the
  best epoch's predictions kept;
* mer_heads: all folds as one stacked model (``CrossValidatedHead``), on whole tensors;
* mer_heads with 10 seeds per fold (50 models in one stack);
* a floor for that 50-model stack on this machine: its first-layer matrix products and Adam
  updates alone, timed at the real shapes (``seeds_floor``), against one seed's whole run.

Prints both times, the ratio, both CV scores (pooled held-out F1, MSE, F1 - 0.25 MSE) and the
10-seed / 1-seed time ratio and the floor's ratio; writes benchmarks/out/bench_heads.json.

Usage: python benchmarks/bench_heads.py [--clips N] [--epochs E] [--threads T]
       [--precision auto|fp32|bf16] [--skip-baseline] [--skip-seeds]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"

# MER 2023 train/val labels: clips per class and valence mean/std per class.
CLASS_COUNTS = {"neutral": 871, "angry": 822, "happy": 689, "sad": 383, "worried": 462,
                "surprise": 146}
VALENCE = {"neutral": (-0.08, 0.68), "angry": (-2.50, 0.95), "happy": (1.77, 0.74),
           "sad": (-2.37, 1.03), "worried": (-1.01, 0.80), "surprise": (-0.41, 1.29)}
STRENGTH = {"audio": 0.35, "text": 0.5, "video": 0.25}


def mer_sized_data(n: int, dim: int = 1024, seed: int = 0):
    """A MultimodalData of n clips with three dim-d modalities of differing strength."""
    from mer_features import EMOTIONS
    from mer_heads.data import ModalityInfo, MultimodalData

    rng = np.random.default_rng(seed)
    p = np.array([CLASS_COUNTS[e] for e in EMOTIONS], float)
    y = rng.choice(len(EMOTIONS), size=n, p=p / p.sum())
    valence = np.clip([rng.normal(*VALENCE[EMOTIONS[c]]) for c in y], -5, 5)
    features, infos = [], []
    for key, strength in STRENGTH.items():
        basis = np.linalg.qr(rng.standard_normal((dim, 16)))[0].T               # (16, dim)
        centres = rng.standard_normal((len(EMOTIONS), 16)) * strength
        direction = rng.standard_normal(16) * strength * 0.3
        z = centres[y] + np.outer(valence, direction) + rng.standard_normal((n, 16))
        x = (z @ basis + rng.standard_normal((n, 64)) @ rng.standard_normal((64, dim)) * 0.1
             + rng.standard_normal((n, dim)) * 0.3 + rng.standard_normal(dim) * 3)
        features.append(x.astype(np.float32))
        infos.append(ModalityInfo(key, f"<generated {key}>", "generated", key, "generated",
                                  (dim,), dim))
    return MultimodalData(names=[f"c{i:05d}" for i in range(n)], modalities=infos,
                          features=features, present=np.ones((n, 3), bool),
                          discrete=np.array([EMOTIONS[c] for c in y], dtype=object),
                          valence=valence, split=np.full(n, "train", dtype=object))


def baseline_cv(data, fold: np.ndarray, *, epochs: int, hidden: int = 128, dropout: float = 0.3,
                lr: float = 1e-3, weight_decay: float = 1e-5, batch_size: int = 32, seed: int = 0):
    """The per-fold loop of the MER 2023 baseline; returns pooled held-out predictions."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from mer_heads.metrics import VALENCE_WEIGHT
    from mer_heads.data.standardize import fit_standardizer

    class Attention(nn.Module):
        """The same head as mer_heads' ``attention``, written the usual way (one model)."""

        def __init__(self, dims: list[int]):
            super().__init__()

            def mlp(d_in: int) -> nn.Sequential:
                return nn.Sequential(nn.Linear(d_in, 2 * hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout))

            self.encoders = nn.ModuleList(mlp(d) for d in dims)
            self.attention = nn.Sequential(mlp(hidden * len(dims)), nn.Linear(hidden, len(dims)))
            self.emotion = nn.Linear(hidden, 6)
            self.valence = nn.Linear(hidden, 1)

        def forward(self, *xs):
            hidden_ = [enc(x) for enc, x in zip(self.encoders, xs)]
            weights = torch.softmax(self.attention(torch.cat(hidden_, dim=1)), dim=1)
            fused = (torch.stack(hidden_, dim=1) * weights[..., None]).sum(1)
            return self.emotion(fused), self.valence(fused).squeeze(1)

    from sklearn.metrics import f1_score

    torch.manual_seed(seed)
    labels = data.labels
    k = int(fold.max()) + 1
    masks = np.stack([fold != j for j in range(k)])
    stats = fit_standardizer(data, masks)
    proba = np.zeros((len(data), 6))
    valence = np.zeros(len(data))
    for j in range(k):
        xs = [torch.from_numpy(x) for x in stats.transform(data, j)]
        y = torch.from_numpy(labels)
        v = torch.from_numpy(data.valence.astype(np.float32))
        tr, va = np.flatnonzero(fold != j), np.flatnonzero(fold == j)
        train = DataLoader(TensorDataset(*(x[tr] for x in xs), y[tr], v[tr]),
                           batch_size=batch_size, shuffle=True)
        held = DataLoader(TensorDataset(*(x[va] for x in xs)), batch_size=batch_size)
        model = Attention(data.dims)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        best = -np.inf
        for _ in range(epochs):
            model.train()
            for *batch_x, batch_y, batch_v in train:
                logits, pred_v = model(*batch_x)
                loss = (nn.functional.cross_entropy(logits, batch_y)
                        + nn.functional.mse_loss(pred_v, batch_v))
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                outs = [model(*batch_x) for batch_x in held]
            p = torch.cat([torch.softmax(o[0], 1) for o in outs]).numpy()
            pv = torch.cat([o[1] for o in outs]).numpy()
            f1 = f1_score(labels[va], p.argmax(1), average="weighted")
            metric = f1 - VALENCE_WEIGHT * float(np.mean((pv - data.valence[va]) ** 2))
            if metric > best:
                best, proba[va], valence[va] = metric, p, pv
    return proba, valence


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=3373)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=None,
                        help="mer_heads clips per step per model (default: the library's)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-seeds", action="store_true")
    parser.add_argument("--out", default=str(OUT / "bench_heads.json"))
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(ROOT))
    from mer_heads.metrics import score
    from mer_heads.folds import stratified_folds
    from mer_heads.protocol import CrossValidatedHead

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import machine

    info = machine.describe()
    print(machine.line(info), flush=True)
    data = mer_sized_data(args.clips, args.dim)
    fold, _ = stratified_folds(data.labels, 5, 0)
    results: dict = {"clips": args.clips, "dim": args.dim, "epochs": args.epochs, "folds": 5,
                     "threads": torch.get_num_threads(), "machine": info,
                     "torch": torch.__version__}
    print(f"{args.clips} clips, 3 x {args.dim}-d, 5 folds x {args.epochs} epochs, "
          f"{torch.get_num_threads()} torch thread(s)", flush=True)

    def cv(proba, valence):
        s = score(data.labels, proba.argmax(1), data.valence, valence)
        return {"f1": s.f1, "mse": s.mse, "metric": s.metric}

    params = dict(folds=5, epochs=args.epochs, precision=args.precision,
                  threads=torch.get_num_threads())  # each fit sets its own threads
    if args.batch_size:
        params["batch_size"] = args.batch_size
    start = time.perf_counter()
    est = CrossValidatedHead("attention", **params).fit(data, fold_of=fold)
    ours = time.perf_counter() - start
    results["mer_heads"] = {"seconds": ours, "precision": est.precision_,
                            "batch_size": est.batch_size_,
                            **cv(_full(est.oof_proba_, est, data), _full_v(est, data))}
    print(f"mer_heads, 5 folds as one stack ({est.precision_}, batch {est.batch_size_}): "
          f"{ours:.1f} s, CV {_fmt(results['mer_heads'])}", flush=True)

    if not args.skip_baseline:
        start = time.perf_counter()
        proba, valence = baseline_cv(data, fold, epochs=args.epochs)
        base = time.perf_counter() - start
        results["baseline"] = {"seconds": base, **cv(proba, valence)}
        results["speedup"] = base / ours
        print(f"baseline, per-fold DataLoader loop (batch 32, fp32): {base:.1f} s, CV "
              f"{_fmt(results['baseline'])}", flush=True)
        results["metric_gain"] = results["mer_heads"]["metric"] - results["baseline"]["metric"]
        print(f"speed-up {results['speedup']:.1f}x; CV metric {results['mer_heads']['metric']:.4f}"
              f" vs {results['baseline']['metric']:.4f}", flush=True)

    # What no implementation of the batched trainer can go below on this machine: its
    # first-layer products and Adam updates alone, at the run's shapes.
    sizes = np.bincount(fold)
    n_train = int(len(fold) - sizes.min())
    floor = seeds_floor(5, data.dims, hidden=128, batch=est.batch_size_,
                        steps=-(-n_train // est.batch_size_), held_out=int(sizes.max()),
                        epochs=args.epochs, precision=est.precision_)
    results["floor"] = floor
    results["floor_vs_ours"] = floor["seconds"] / ours
    line = (f"floor of the 5-model stack on this machine (first-layer products and Adam alone, "
            f"{est.precision_}): {floor['seconds']:.1f} s = {floor['seconds'] / ours:.2f}x our run")
    if "baseline" in results:
        results["floor_speedup_bound"] = results["baseline"]["seconds"] / floor["seconds"]
        line += (f"; no batched trainer can beat the baseline by more than "
                 f"{results['floor_speedup_bound']:.1f}x here")
    print(line, flush=True)

    if not args.skip_seeds:
        start = time.perf_counter()
        est10 = CrossValidatedHead("attention", seeds=10, **params).fit(data, fold_of=fold)
        ten = time.perf_counter() - start
        results["mer_heads_10_seeds"] = {"seconds": ten, **cv(_full(est10.oof_proba_, est10, data),
                                                                _full_v(est10, data))}
        results["seeds_time_ratio"] = ten / ours
        print(f"mer_heads, 10 seeds x 5 folds in one stack: {ten:.1f} s ({ten / ours:.1f}x one "
              f"seed), CV {_fmt(results['mer_heads_10_seeds'])}", flush=True)
        sizes = np.bincount(fold)
        n_train = int(len(fold) - sizes.min())                  # the largest training part
        floor = seeds_floor(50, data.dims, hidden=128, batch=est10.batch_size_,
                            steps=-(-n_train // est10.batch_size_),
                            held_out=int(sizes.max()), epochs=args.epochs,
                            precision=est10.precision_)
        results["seeds_floor"] = floor
        results["seeds_floor_ratio"] = floor["seconds"] / ours
        print(f"floor for the 50-model stack on this machine (first-layer products and Adam "
              f"alone): {floor['seconds']:.1f} s = {floor['seconds'] / ours:.1f}x one seed's "
              f"whole run", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(out)
    return 0


def seeds_floor(n_models: int, dims: list[int], *, hidden: int, batch: int, steps: int,
                held_out: int, epochs: int, precision: str) -> dict:
    """A lower bound on the time of training an ``n_models`` stack on this machine.

    Times, at the stack's real shapes, only the work no implementation of this training can
    skip: each step's first-layer products (forward and weight gradient, per modality) and one
    fused Adam update of the whole stack's weights, plus each epoch's first-layer products on
    the held-out clips, scaled to the run's steps and epochs. Everything else a real step does
    (other layers, activations, dropout, gathers) is left out, so a real run is slower.
    """
    import torch

    from mer_heads.heads.stack import StackedHead

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    gen = torch.Generator().manual_seed(0)
    width = 2 * hidden

    def best_of(fn, repeats: int = 3) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    def products(rows: int, with_grad: bool) -> float:
        total = 0.0
        for d in dims:
            x = torch.randn(n_models, rows, d, generator=gen).to(dtype)
            w = torch.randn(n_models, d, width, generator=gen).to(dtype)
            b = torch.zeros(n_models, 1, width, dtype=dtype)
            total += best_of(lambda: torch.baddbmm(b, x, w))
            if with_grad:
                g = torch.randn(n_models, rows, width, generator=gen).to(dtype)
                total += best_of(lambda: torch.bmm(x.transpose(1, 2), g))
        return total

    head = StackedHead(n_models, dims, hidden=hidden)
    head.reset_parameters(gen)
    for param in head.parameters():
        param.grad = torch.randn(param.shape, generator=gen)
    adam = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-5, fused=True)
    step = products(batch, True) + best_of(adam.step)
    held = products(held_out, False)
    return {"seconds": epochs * (steps * step + held), "step_seconds": step,
            "held_out_seconds": held, "parameters": sum(p.numel() for p in head.parameters())}


def _full(oof: np.ndarray, est, data) -> np.ndarray:
    """Held-out probabilities in data order (every clip is a training clip here)."""
    where = {n: i for i, n in enumerate(est.train_names_)}
    return oof[[where[n] for n in data.names]]


def _full_v(est, data) -> np.ndarray:
    where = {n: i for i, n in enumerate(est.train_names_)}
    return est.oof_valence_[[where[n] for n in data.names]]


def _fmt(r: dict) -> str:
    return f"F1 {r['f1']:.4f}, MSE {r['mse']:.4f}, metric {r['metric']:.4f}"


if __name__ == "__main__":
    sys.exit(main())
