"""Modality ablation: every unimodal, bimodal, ... combination under one protocol.

All combinations share one fold assignment, drawn once over the labelled clips that have at
least one usable modality; a combination leaves out the clips that have none of *its*
modalities (counted in the table). Each combination is one cross-validated run (folds x seeds
trained as one stack); the table gives mean and std over its fold models, like Table 2 of the
MER 2023 paper, and the pooled held-out scores.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_heads.data import MAX_FRAMES, load_dataset
from mer_heads.errors import DataError
from mer_heads.experiment import check_params
from mer_heads.protocol import CrossValidatedHead, shared_folds
from mer_heads.rundir import dump_json, prepare_out_dir, remove_if_empty, write_csv, write_text

COLUMNS = ("modalities", "n_modalities", "clips", "left_out", "f1_mean", "f1_std", "mse_mean",
           "mse_std", "metric_mean", "metric_std", "cv_f1", "cv_mse", "cv_metric")


@dataclass
class AblationResult:
    rows: list[dict[str, Any]]
    csv_path: Path
    markdown_path: Path
    seconds: float

    def markdown(self) -> str:
        return self.markdown_path.read_text(encoding="utf-8")


def combinations(keys: Sequence[str]) -> list[tuple[str, ...]]:
    """All non-empty subsets of ``keys``, smallest first, in the order given."""
    return [c for r in range(1, len(keys) + 1) for c in itertools.combinations(keys, r)]


def ablate(features: Sequence[str | Path | tuple[str, str | Path]], out: str | Path, *,
           manifest: str | Path | None = None, input: str = "utterance", join: str = "exact",
           layers: str = "mean", max_frames: int = MAX_FRAMES, train_split: str | None = None,
           overwrite: bool = False, **params: Any) -> AblationResult:
    """Cross-validate ``params['model']`` on every modality combination; write
    ``out/ablation.csv``, ``out/ablation.md`` and ``out/ablation.json``. Parameters and ``out``
    are checked before any work; an earlier ablation in ``out`` is only replaced with
    ``overwrite``."""
    start = time.perf_counter()
    check_params(params, input=input, join=join, layers=layers, max_frames=max_frames)
    out = Path(out)
    created = prepare_out_dir(out, marker="ablation.json", overwrite=overwrite, what="ablation")
    try:
        return _ablate(features, out, start, manifest=manifest, input=input, join=join,
                       layers=layers, max_frames=max_frames, train_split=train_split, **params)
    except BaseException:
        if created:
            remove_if_empty(out)
        raise


def _ablate(features, out: Path, start: float, *, manifest, input, join, layers, max_frames,
            train_split, **params) -> AblationResult:
    data = load_dataset(features, input=input, manifest=manifest, join=join, layers=layers,
                        max_frames=max_frames)
    if len(data.keys) < 2:
        raise DataError("An ablation needs at least two modalities; pass --features KEY=STORE "
                        "once per modality.")
    if train_split is not None:
        if train_split not in set(data.split):
            raise DataError(f"No clip has split '{train_split}' (--train-split); the splits "
                            f"present are {', '.join(map(repr, sorted(set(data.split))))}.")
        data = data.subset(data.split == train_split)
    fold_of = shared_folds(data, params, "nothing to ablate. Check the stores' labels (or pass "
                                         "--manifest).")
    rows, details = [], []
    for combo in combinations(data.keys):
        sub = data.select_modalities(combo)
        est = CrossValidatedHead(**params).fit(sub, fold_of=fold_of)
        scores = est.model_scores_
        row: dict[str, Any] = {"modalities": "+".join(combo), "n_modalities": len(combo),
                               "clips": len(est.train_names_), "left_out": len(est.dropped_)}
        for key in ("f1", "mse", "metric"):
            values = [getattr(s, key) for s in scores]
            ok = all(v is not None for v in values)
            row[f"{key}_mean"] = float(np.mean(values)) if ok else None
            row[f"{key}_std"] = float(np.std(values)) if ok else None
        row["cv_f1"], row["cv_mse"], row["cv_metric"] = (est.cv_scores_.f1, est.cv_scores_.mse,
                                                        est.cv_scores_.metric)
        rows.append(row)
        details.append({**row, "models": [s.to_json() for s in scores],
                        "best_epochs": est.best_epochs_.tolist()})
    csv_path, md_path = out / "ablation.csv", out / "ablation.md"
    write_csv(csv_path, COLUMNS, rows)
    example = CrossValidatedHead(**params)
    dump_json({"params": example.get_params(), "input": input, "layers": layers,
               "modalities": [m.to_json() for m in data.modalities], "rows": details},
              out / "ablation.json")
    write_text(md_path, markdown_table(rows, example.get_params(), input))
    return AblationResult(rows, csv_path, md_path, time.perf_counter() - start)


def markdown_table(rows: list[dict[str, Any]], params: dict[str, Any], input: str) -> str:
    def pm(row: dict[str, Any], key: str) -> str:
        mean, std = row[f"{key}_mean"], row[f"{key}_std"]
        return "-" if mean is None else f"{mean:.4f} ± {std:.4f}"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    lines = [f"# Modality ablation: {params['model']} ({input} input), {params['folds']} folds x "
             f"{params['seeds']} seed(s), seed {params['seed']}", "",
             "Mean ± std over the fold models (folds x seeds); CV columns pool the held-out "
             "predictions of all folds. Metric = F1 - 0.25 x MSE.", "",
             "| modalities | clips | F1 | MSE | metric | CV F1 | CV MSE | CV metric |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        clips = f"{row['clips']}" + (f" (-{row['left_out']})" if row["left_out"] else "")
        lines.append(f"| {row['modalities']} | {clips} | {pm(row, 'f1')} | {pm(row, 'mse')} | "
                     f"{pm(row, 'metric')} | {num(row['cv_f1'])} | {num(row['cv_mse'])} | "
                     f"{num(row['cv_metric'])} |")
    lines += ["", "(-k): labelled clips left out because none of the combination's modalities is "
              "usable for them."]
    return "\n".join(lines) + "\n"
