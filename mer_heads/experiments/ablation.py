"""Modality ablation: every unimodal, bimodal, ... combination under one protocol.

All combinations share one fold assignment, drawn once over the labelled clips that have at
least one usable modality; a combination leaves out the clips that have none of *its*
modalities (counted in the table). Each combination is one cross-validated run (folds x seeds
trained as one stack); the table gives mean and std over its fold models, like Table 2 of the
MER 2023 paper, and the pooled held-out scores.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_heads.config import DataConfig, HeadConfig, split_options
from mer_heads.data.dataset import load_dataset, modality_sets
from mer_heads.errors import DataError
from mer_heads.folds import n_folds_shown, shared_folds
from mer_heads.heads import get_head
from mer_heads.metrics import resolve_metric
from mer_heads.outputs import dump_json, output_folder, write_csv, write_text
from mer_heads.progress import plan as plan_fits
from mer_heads.progress import tracking, unit
from mer_heads.protocol import CrossValidatedHead
from mer_heads.reports.ablation import markdown_table
from mer_heads.reports.result import ReportResult

COLUMNS = ("modalities", "n_modalities", "clips", "left_out", "f1_mean", "f1_std", "mse_mean",
           "mse_std", "metric_mean", "metric_std", "cv_f1", "cv_mse", "cv_metric", "ua_mean",
           "ua_std", "wa_mean", "wa_std", "macro_f1_mean", "macro_f1_std", "cv_ua", "cv_wa",
           "cv_macro_f1")
SCORES = ("f1", "mse", "metric", "ua", "wa", "macro_f1")


@dataclass(kw_only=True)
class AblationResult(ReportResult):
    """``rows``: one dict per modality combination, as in the CSV."""

    stem = "ablation"
    has_figure = False

    rows: list[dict[str, Any]]


def ablate(features: Sequence[str | Path | tuple[str, str | Path]], out: str | Path,
           head: HeadConfig | None = None, loading: DataConfig | None = None, *,
           train_split: str | None = None, overwrite: bool = False,
           progress: bool | None = None, **options: Any) -> AblationResult:
    """Cross-validate the head on every modality combination; write ``out/ablation.csv``,
    ``out/ablation.md`` and ``out/ablation.json``. ``head``, ``loading`` and ``options`` are as
    for :func:`~mer_heads.experiments.fit.fit_run`. Everything is checked before any work; an
    earlier ablation in ``out`` is only replaced with ``overwrite``; ``progress=False`` shows
    nothing on stderr while it works (:mod:`mer_heads.progress`)."""
    start = time.perf_counter()
    head, loading = split_options(head, loading, options)
    get_head(head.model).check_runtime(head)
    with output_folder(out, marker=f"{AblationResult.stem}.json", overwrite=overwrite,
                       what="ablation") as out, tracking("mer-heads ablate", 0, progress):
        return _ablate(features, out, start, head, loading, train_split)


def published_column(data, head: HeadConfig) -> np.ndarray | None:
    """The values of the ``--folds-from`` column of ``data`` (None without it)."""
    return None if head.folds_from is None else data.column(head.folds_from, "--folds-from")


def best_row(rows: list[dict[str, Any]], metric: str) -> str | None:
    """The modalities of the row with the best pooled (CV) ``metric`` (a resolved
    ``--metric``), ties to the first; None when no row has it."""
    key = "cv_metric" if metric == "mer" else f"cv_{metric}"
    scored = [r for r in rows if r.get(key) is not None]
    return max(scored, key=lambda r: r[key])["modalities"] if scored else None


def _ablate(features, out: Path, start: float, head: HeadConfig, loading: DataConfig,
            train_split: str | None) -> AblationResult:
    data = load_dataset(features, loading)
    if len(data.keys) < 2:
        raise DataError("An ablation needs at least two modalities; pass --features KEY=STORE "
                        "once per modality.")
    if train_split is not None:
        if train_split not in set(data.split):
            raise DataError(f"No clip has split '{train_split}' (--train-split); the splits "
                            f"present are {', '.join(map(repr, sorted(set(data.split))))}.")
        data = data.subset(data.split == train_split)
    fold_of = shared_folds(data.labels, data.present.any(axis=1), head.folds, head.seed,
                           groups=data.groups(head.groups), column=head.groups, names=data.names,
                           nothing="nothing to ablate. Check the stores' labels (or pass "
                           "--manifest).", classes=data.classes,
                           published=published_column(data, head), source=head.folds_from)
    rows, details, notes = [], [], set()
    plan = None
    plan_fits(len(modality_sets(data.keys)))
    for combo in modality_sets(data.keys):
        sub = data.select_modalities(combo)
        with unit("+".join(combo)):
            est = CrossValidatedHead.from_config(head).fit(sub, fold_of=fold_of)
        notes.update(est.notes_)
        plan = est.fold_plan_
        scores = est.model_scores_
        row: dict[str, Any] = {"modalities": "+".join(combo), "n_modalities": len(combo),
                               "clips": len(est.train_names_), "left_out": len(est.dropped_)}
        for key in SCORES:
            values = [getattr(s, key) for s in scores]
            ok = all(v is not None for v in values)
            row[f"{key}_mean"] = float(np.mean(values)) if ok else None
            row[f"{key}_std"] = float(np.std(values)) if ok else None
        for key in SCORES:
            row[f"cv_{key}"] = getattr(est.cv_scores_, key)
        rows.append(row)
        details.append({**row, "models": [s.to_json() for s in scores],
                        "best_epochs": est.best_epochs_.tolist()})
    result = AblationResult(out=out, rows=rows, notes=sorted(notes))
    metric = resolve_metric(head.metric, data.classes)
    write_csv(result.csv_path, COLUMNS, rows)
    dump_json({"params": head.to_json(), "input": loading.input, "layers": loading.layers,
               "normalize_by": loading.normalize_by, "folds": plan.to_json(),
               "modalities": [m.to_json() for m in data.modalities], "rows": details,
               "notes": result.notes, "classes": list(data.classes), "metric": metric,
               "best": best_row(rows, metric)}, result.json_path)
    write_text(result.markdown_path, markdown_table(rows, head, loading.input, result.notes,
                                                    folds=plan.describe(head.folds),
                                                    metric=metric,
                                                    n_folds=n_folds_shown(head.folds,
                                                                          plan.to_json())))
    result.seconds = time.perf_counter() - start
    return result


__all__ = ["AblationResult", "ablate", "best_row", "published_column"]
