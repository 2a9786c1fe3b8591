"""The valence-per-class description's Markdown and figure (see
:mod:`mer_heads.experiments.describe`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mer_heads.reports.figure import figure


def _n(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _p(v: float | None) -> str:
    if v is None:
        return "-"
    return "< 1e-300" if v == 0 else (f"{v:.2e}" if v < 1e-3 else f"{v:.4f}")


def markdown_description(stats: dict[str, Any]) -> str:
    lines = [f"# Valence per discrete class ({stats['with_both']} clips with both labels, of "
             f"{stats['clips']}; {stats['source']})", "",
             f"Correlation ratio eta² = {stats['eta_squared']:.4f} (share of valence variance "
             f"explained by the class); one-way ANOVA F = {_n(stats['anova_f'], 2)}, "
             f"p = {_p(stats['anova_p'])}.", "",
             "| class | n | mean | std | min | Q1 | median | Q3 | max | point-biserial r | p |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c, s in stats["classes"].items():
        lines.append(f"| {c} | {s['count']} | {_n(s['mean'])} | {_n(s['std'])} | "
                     f"{_n(s['min'])} | {_n(s['q1'])} | {_n(s['median'])} | {_n(s['q3'])} | "
                     f"{_n(s['max'])} | {_n(s['point_biserial_r'])} | "
                     f"{_p(s['point_biserial_p'])} |")
    lines += ["", "Point-biserial r: Pearson's r between the class indicator and valence "
              "(two-sided p, n - 2 dof). std: ddof 1.", "",
              "## Where classes overlap (interquartile ranges)", ""]
    ranges = stats["iqr_overlap_ranges"]
    if ranges:
        lines += [f"- [{r['low']:.3f}, {r['high']:.3f}]: {', '.join(r['classes'])}"
                  for r in ranges]
    else:
        lines.append("- no two classes' interquartile ranges meet")
    lines += ["", "| classes | IQR intersection | width |", "|---|---|---|"]
    for pair in stats["iqr_overlap_pairs"]:
        span = ("none" if pair["low"] is None else f"[{pair['low']:.3f}, {pair['high']:.3f}]")
        lines.append(f"| {' / '.join(pair['classes'])} | {span} | {pair['width']:.3f} |")
    lines += [f"- {n}" for n in stats["notes"]]
    return "\n".join(lines) + "\n"


def describe_figure(discrete: np.ndarray, valence: np.ndarray, stats: dict[str, Any],
                    path: str | Path) -> Path:
    """A violin per class (valence), a box plot inside it, the class's n under its name."""
    classes = list(stats["classes"])
    both = (discrete != "") & np.isfinite(valence)
    data = [valence[both & (discrete == c)] for c in classes]
    with figure(path, figsize=(1.2 + 1.1 * len(classes), 4.2), dpi=120) as (fig, ax):
        positions = np.arange(1, len(classes) + 1)
        wide = [i for i, d in enumerate(data) if len(d) > 1 and np.ptp(d) > 0]
        if wide:
            parts = ax.violinplot([data[i] for i in wide], positions=positions[wide],
                                  showextrema=False, widths=0.8)
            for body in parts["bodies"]:
                body.set_alpha(0.35)
        ax.boxplot(data, positions=positions, widths=0.18, showfliers=False)
        ax.set_xticks(positions)
        ax.set_xticklabels([f"{c}\nn={stats['classes'][c]['count']}" for c in classes], fontsize=8)
        ax.set_ylabel("valence")
        ax.axhline(0, color="grey", lw=0.6, ls=":")
        ax.set_title(f"Valence per class: eta² = {stats['eta_squared']:.3f}", fontsize=10)
    return Path(path)


__all__ = ["describe_figure", "markdown_description"]
