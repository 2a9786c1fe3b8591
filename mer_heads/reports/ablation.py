"""The ablation's Markdown table (see :mod:`mer_heads.experiments.ablation`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mer_heads.config import HeadConfig


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _pm(row: dict[str, Any], key: str) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return "-" if mean is None else f"{mean:.4f} ± {std:.4f}"


def markdown_table(rows: list[dict[str, Any]], head: HeadConfig, input: str,
                   notes: Sequence[str] = (), *, folds: str = "", metric: str = "mer",
                   n_folds: str | None = None) -> str:
    """One row per modality combination: mean ± std over the fold models and the CV scores."""
    lines = [f"# Modality ablation: {head.model} ({input} input), {n_folds or head.folds} folds x "
             f"{head.seeds} seed(s), seed {head.seed}", "",
             "Mean ± std over the fold models (folds x seeds); CV columns pool the held-out "
             "predictions of all folds. Metric = F1 - 0.25 x MSE."
             + (f" Folds: {folds}, shared by every combination." if folds else ""), "",
             "| modalities | clips | F1 | MSE | metric | CV F1 | CV MSE | CV metric |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        clips = f"{row['clips']}" + (f" (-{row['left_out']})" if row["left_out"] else "")
        lines.append(f"| {row['modalities']} | {clips} | {_pm(row, 'f1')} | {_pm(row, 'mse')} | "
                     f"{_pm(row, 'metric')} | {_num(row['cv_f1'])} | {_num(row['cv_mse'])} | "
                     f"{_num(row['cv_metric'])} |")
    lines += ["", "(-k): labelled clips left out because none of the combination's modalities is "
              "usable for them."]
    lines += ["", "Speech-emotion metrics of the same runs (mean ± std over the fold models; CV: "
              "pooled held-out predictions):", "",
              "| modalities | UA | WA | macro F1 | CV UA | CV WA | CV macro F1 |",
              "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['modalities']} | {_pm(row, 'ua')} | {_pm(row, 'wa')} | "
                     f"{_pm(row, 'macro_f1')} | {_num(row.get('cv_ua'))} | "
                     f"{_num(row.get('cv_wa'))} | {_num(row.get('cv_macro_f1'))} |")
    from mer_heads.experiments.ablation import best_row
    from mer_heads.metrics import METRIC_NAMES

    best = best_row(rows, metric)
    if best is not None:
        lines += ["", f"Headline (--metric {metric}, {METRIC_NAMES[metric]}, CV): best "
                  f"combination {best}."]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
