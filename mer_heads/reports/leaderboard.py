"""The leaderboard's Markdown and figure (see :mod:`mer_heads.experiments.leaderboard`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mer_heads.reports.figure import basis, chance_line, figure


def _pm(row: dict[str, Any], key: str) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return "-" if mean is None else f"{mean:.4f} ± {std:.4f}"


def markdown_leaderboard(report: dict[str, Any]) -> str:
    """Tables per modality (rank, store, encoder, clips, F1, MSE, metric) and of the fusions."""
    params, seeds = report["params"], report["seeds"]
    folds = report["folds"]
    grouped = f", group folds by '{folds['groups']}'" if folds.get("groups") else ""
    lines = [f"# Encoder leaderboard: {params['model']} per store, {report['fusion']} fusion of "
             f"the top-K, {params['folds']} folds{grouped}, seeds {seeds[0]}..{seeds[-1]}", "",
             f"{report['joined_clips']} clips joined (--join {report['join']}; "
             f"{report['labelled_clips']} labelled) from {len(report['stores'])} stores; one fold "
             "assignment per seed, shared by every row. Mean ± std (ddof 0) over the "
             f"{len(seeds)} seed(s) of the pooled held-out scores; metric = F1 - 0.25 x MSE "
             "(F1 without valence). Ranked by the mean metric.", ""]
    header = ["| rank | store | encoder | clips | F1 | MSE | metric |",
              "|---|---|---|---|---|---|---|"]
    singles = [r for r in report["rows"] if r["section"] == "single"]
    for modality in dict.fromkeys(r["modality"] for r in singles):
        lines += [f"## {modality}", "", *header]
        for r in singles:
            if r["modality"] == modality:
                lines.append(f"| {r['rank']} | {r['name']} | {r['encoders']} | {r['clips']} | "
                             f"{_pm(r, 'f1')} | {_pm(r, 'mse')} | {_pm(r, 'metric')} |")
        lines.append("")
    fused = [r for r in report["rows"] if r["section"] == "fusion"]
    if fused:
        lines += [f"## top-K fusion ({report['fusion']})", "",
                  "| K | stores | clips | F1 | MSE | metric |", "|---|---|---|---|---|---|"]
        for r in fused:
            lines.append(f"| {r['rank']} | {r['name']} | {r['clips']} | {_pm(r, 'f1')} | "
                         f"{_pm(r, 'mse')} | {_pm(r, 'metric')} |")
        lines.append("")
    lines += ["Stores: " + "; ".join(f"{s['name']} = {s['path']} ({s['clips']} clips)"
                                     for s in report["stores"])]
    lines += [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _wrapped(label: str, width: int = 44) -> str:
    """A long row name on several lines of at most ``width`` characters where it can, broken
    after a ``+`` (between stores) or a ``:`` (never cut)."""
    lines, line = [], ""
    for part in re.findall(r"[^+:]*[+:]?", label):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "\n".join([*lines, line])


def leaderboard_figure(report: dict[str, Any], path: str | Path) -> Path:
    """One panel per modality (and one for the fusions): the mean metric of each row (F1
    without valence), best at the top, with the std over seeds as error bars. The panels share
    one x scale, so bars compare across panels; long names wrap instead of being cut; the title
    says how many clips, folds and seeds the bars rest on."""
    rows = report["rows"]
    metric = "metric" if all(r["metric_mean"] is not None for r in rows) else "f1"
    panels = [(m, [r for r in rows if r["section"] == "single" and r["modality"] == m])
              for m in dict.fromkeys(r["modality"] for r in rows if r["section"] == "single")]
    fused = [r for r in rows if r["section"] == "fusion"]
    if fused:
        panels.append((f"top-K fusion ({report['fusion']})", fused))
    labels = [[_wrapped(r["name"] if r["section"] == "single" else f"K={r['rank']}: {r['name']}")
               for r in panel] for _, panel in panels]
    height = [max(1, sum(label.count("\n") * 0.5 + 1 for label in panel_labels))
              for panel_labels in labels]
    params = report["params"]
    clips = max(r["clips"] for r in rows)
    with figure(path, nrows=len(panels), ncols=1, sharex=True,
                figsize=(7.5, 1.6 + 0.45 * sum(height) + 0.6 * len(panels)), dpi=120,
                squeeze=False, gridspec_kw={"height_ratios": height},
                savefig={"bbox_inches": "tight"}) as (fig, axes):
        for ax, (title, panel), names in zip(axes[:, 0], panels, labels):
            means = [r[f"{metric}_mean"] or 0.0 for r in panel]
            stds = [r[f"{metric}_std"] or 0.0 for r in panel]
            y = list(range(len(panel)))[::-1]
            ax.barh(y, means, xerr=stds, color="tab:blue" if panel[0]["section"] == "single"
                    else "tab:orange", capsize=3, height=0.6)
            ax.set_yticks(y)
            ax.set_yticklabels(names, fontsize=8)
            ax.set_title(title, fontsize=9)
            ax.grid(axis="x", alpha=0.3)
            ax.axvline(0, color="black", lw=0.6)
            if metric == "f1" and report.get("chance_f1") is not None:
                chance_line(ax, report["chance_f1"], vertical=True)
        if metric == "f1" and report.get("chance_f1") is not None:
            axes[0, 0].legend(fontsize=7, loc="lower right")
        no_valence = all(r["mse_mean"] is None for r in rows)
        axes[-1, 0].set_xlabel(("weighted F1 (no valence)" if no_valence or metric == "f1"
                                else "F1 - 0.25 MSE")
                               + f" (mean ± std over {len(report['seeds'])} seed(s))")
        fig.suptitle(f"{params['model']} per store, {report['fusion']} fusion of the top-K: "
                     f"{basis(clips, params['folds'], report['seeds'])}", fontsize=9)
    return Path(path)


__all__ = ["leaderboard_figure", "markdown_leaderboard"]
