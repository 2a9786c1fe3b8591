"""The paired comparison's Markdown and figure (see :mod:`mer_heads.experiments.compare`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mer_heads.metrics import METRIC_NAMES, higher_is_better
from mer_heads.reports.figure import figure

MAIN = ("ua", "wa", "macro_f1", "f1", "mer", "mse", "ccc", "ece", "brier", "nll")
"""The metrics the Markdown tables and the figure show (mse and ccc: of every target)."""
NAMES = {**METRIC_NAMES, "mse": "MSE", "ccc": "CCC", "ece": "ECE", "brier": "Brier",
         "nll": "NLL", "recall": "recall"}
CORRECTION_NAMES = {"holm": "Holm", "bh": "BH", "none": "unadjusted"}


def metric_label(name: str) -> str:
    """``ua`` -> ``UA``, ``mse:valence`` -> ``MSE valence``, ``f1:happy`` -> ``F1 happy``."""
    kind, _, what = name.partition(":")
    if not what:
        return NAMES.get(kind, kind)
    return f"{'F1' if kind == 'f1' else NAMES.get(kind, kind)} {what}"


def main_metrics(metrics: dict[str, Any]) -> list[str]:
    """The names of ``metrics`` that the tables and the figure show, in their order."""
    return [m for m in metrics if m.partition(":")[0] in MAIN
            and not (m.startswith("f1:") or m.startswith("recall:"))]


def _n(v: float | None, digits: int = 3, sign: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _p(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1e}" if v < 1e-3 else f"{v:.4f}"


def _ci(ci: list[float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def design_text(stats: dict[str, Any]) -> str:
    """How the intervals and p-values were made, in one sentence."""
    g = stats["groups"]
    unit = (f"{stats['n_units']} groups of '{g['column']}' (from the {g['source']})" if g
            else f"{stats['n_units']} clips")
    return (f"{stats['confidence']:.0%} {stats['method']} paired-bootstrap intervals over "
            f"{unit}, {stats['n_resamples']} resamples; two-sided paired permutation p-values, "
            f"{stats['n_permutations']} permutations (each "
            f"{'group' if g else 'clip'}'s two predictions swapped at random); seed "
            f"{stats['seed']}.")


def markdown_comparison(stats: dict[str, Any]) -> str:
    runs = [r["name"] for r in stats["runs"]]
    comparisons = stats["comparisons"]
    several = len(comparisons) > 1
    correction = CORRECTION_NAMES.get(stats["correction"] or "none", stats["correction"])
    lines = [f"# Paired comparison of {len(runs)} runs: {', '.join(runs)}", "",
             f"- delta = {stats['delta']}: the second run of a pair minus the first (positive: b "
             "scores higher, which is better except for MSE, ECE, Brier and NLL).",
             f"- clips: {stats['clips']['text']}.",
             f"- {design_text(stats)}"]
    if several:
        how = ("each run against the first" if stats["pairs"] == "first" else "every pair")
        lines.append(f"- {len(comparisons)} comparisons ({how}); p ({correction}): the "
                     f"p-values adjusted across them, per metric.")
    lines += ["", f"## Headline: {metric_label(stats['metric'])}", ""]
    head = "| b vs a | a | b | delta | 95% CI | p |" + (f" p ({correction}) |" if several
                                                           else "")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for c in comparisons:
        m = c["metrics"].get(stats["metric"])
        if m is None:
            continue
        row = (f"| {c['b']} vs {c['a']} | {_n(m['a'])} | {_n(m['b'])} | "
               f"{_n(m['delta'], sign=True)} | {_ci(m['ci'])} | {_p(m['p_value'])} |")
        lines.append(row + (f" {_p(m.get('p_adjusted'))} |" if several else ""))
    for c in comparisons:
        a, b = c["a"], c["b"]
        lines += ["", f"## {b} vs {a}", ""]
        head = (f"| metric | {a} | {b} | delta | 95% CI | p |"
                + (f" p ({correction}) |" if several else ""))
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for name in main_metrics(c["metrics"]):
            m = c["metrics"][name]
            better = "" if higher_is_better(name) else " (lower is better)"
            row = (f"| {metric_label(name)}{better} | {_n(m['a'])} | {_n(m['b'])} | "
                   f"{_n(m['delta'], sign=True)} | {_ci(m['ci'])} | {_p(m['p_value'])} |")
            lines.append(row + (f" {_p(m.get('p_adjusted'))} |" if several else ""))
    lines += ["", "Per-class recall and F1: compare.json and compare.csv. An interval says how "
              "much the difference moves over evaluation sets like this one (the models held "
              "fixed); p is the chance of a difference at least this large if the two runs' "
              "predictions were exchangeable on every unit (docs/statistics.md)."]
    lines += [f"- {n}" for n in stats["notes"]]
    return "\n".join(lines) + "\n"


def compare_figure(stats: dict[str, Any], path: str | Path) -> Path:
    """One panel per main metric: each comparison's delta with its interval, and zero."""
    comparisons = stats["comparisons"]
    names = main_metrics(comparisons[0]["metrics"])
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    height = 0.9 + 0.35 * len(comparisons)
    with figure(path, nrows=rows, ncols=cols, squeeze=False,
                figsize=(3.2 * cols, 0.6 + height * rows), dpi=110) as (fig, axes):
        labels = [f"{c['b']} - {c['a']}" for c in comparisons]
        for k, ax in enumerate(axes.flat):
            if k >= len(names):
                ax.axis("off")
                continue
            name = names[k]
            for i, c in enumerate(comparisons):
                m = c["metrics"].get(name) or {}
                d, ci = m.get("delta"), m.get("ci")
                if d is None:
                    continue
                xerr = None if ci is None else [[max(d - ci[0], 0)], [max(ci[1] - d, 0)]]
                ax.errorbar([d], [i], xerr=xerr, fmt="o", color=f"C{i % 10}", capsize=3)
            ax.axvline(0, color="grey", lw=0.8, ls=":")
            ax.set_yticks(range(len(comparisons)))
            ax.set_yticklabels(labels if k % cols == 0 else [], fontsize=7)
            ax.set_ylim(-0.6, len(comparisons) - 0.4)
            ax.invert_yaxis()
            title = metric_label(name) + ("" if higher_is_better(name) else " (lower better)")
            ax.set_title(title, fontsize=9,
                         fontweight="bold" if name == stats["metric"] else "normal")
            ax.tick_params(axis="x", labelsize=7)
        unit = f"{stats['n_units']} {'groups' if stats['groups'] else 'clips'}"
        fig.suptitle(f"delta = b - a with {stats['confidence']:.0%} paired-bootstrap intervals "
                     f"({unit}, {stats['n_resamples']} resamples)", fontsize=9)
    return Path(path)


__all__ = ["compare_figure", "design_text", "main_metrics", "markdown_comparison",
           "metric_label"]
