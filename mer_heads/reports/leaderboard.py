"""The leaderboard's Markdown and figure (see :mod:`mer_heads.experiments.leaderboard`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mer_heads.folds import n_folds_shown
from mer_heads.reports.figure import basis, chance_line, figure


def _pm(row: dict[str, Any], key: str) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return "-" if mean is None else f"{mean:.4f} ± {std:.4f}"


def markdown_leaderboard(report: dict[str, Any]) -> str:
    """Tables per modality (rank, store, encoder, clips, F1, MSE, metric) and of the fusions."""
    params, seeds = report["params"], report["seeds"]
    folds = report["folds"]
    grouped = f", group folds by '{folds['groups']}'" if folds.get("groups") else ""
    if folds.get("kind") == "published":
        grouped = f" from the column '{folds['column']}' (the same for every seed)"
    lines = [f"# Encoder leaderboard: {params['model']} per store, {report['fusion']} fusion of "
             f"the top-K, {n_folds_shown(params['folds'], folds)} folds{grouped}, seeds {seeds[0]}..{seeds[-1]}", "",
             f"{report['joined_clips']} clips joined (--join {report['join']}; "
             f"{report['labelled_clips']} labelled) from {len(report['stores'])} stores; one fold "
             "assignment per seed, shared by every row. Mean ± std (ddof 0) over the "
             f"{len(seeds)} seed(s) of the pooled held-out scores; metric = F1 - 0.25 x MSE "
             "(F1 without valence). " + _ranked(report), ""]
    header = ["| rank | store | encoder | clips | F1 | MSE | metric |",
              "|---|---|---|---|---|---|---|"]
    singles = [r for r in report["rows"] if r["section"] == "single"]
    for modality in dict.fromkeys(r["modality"] for r in singles):
        lines += [f"## {modality}", "", *header]
        for r in singles:
            if r["modality"] == modality:
                lines.append(f"| {r['rank']} | {r['name']}{_mark(r)} | {r['encoders']} | {r['clips']} | "
                             f"{_pm(r, 'f1')} | {_pm(r, 'mse')} | {_pm(r, 'metric')} |")
        lines.append("")
    fused = [r for r in report["rows"] if r["section"] == "fusion"]
    if fused:
        lines += [f"## top-K fusion ({report['fusion']})", "",
                  "| K | stores | clips | F1 | MSE | metric |", "|---|---|---|---|---|---|"]
        for r in fused:
            lines.append(f"| {r['rank']} | {r['name']}{_mark(r)} | {r['clips']} | {_pm(r, 'f1')} | "
                         f"{_pm(r, 'mse')} | {_pm(r, 'metric')} |")
        lines.append("")
    lines += _statistics_table(report)
    lines += _ser_tables(report)
    lines += ["Stores: " + "; ".join(f"{s['name']} = {s['path']} ({s['clips']} clips)"
                                     for s in report["stores"])]
    lines += [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _mark(row: dict[str, Any]) -> str:
    """`` ★`` on the best row, `` ≈`` on a row not significantly worse than it (footnote)."""
    st = row.get("statistics")
    if not st:
        return ""
    if st["best"]:
        return " ★"
    mark = (st.get("vs_best") or {}).get("mark")
    return f" {mark}" if mark else ""


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _statistics_table(report: dict[str, Any]) -> list[str]:
    """Each row's 95% interval (first seed) and its paired test against the best row."""
    st = report.get("statistics")
    if not st:
        return []
    from mer_heads.stats.runs import interval_text

    unit = f"whole '{st['groups']}' groups" if st["unit"] == "group" else "clips"
    out = [f"★ the best row (ranking); {st['mark']} not significantly worse than it: the paired "
           f"permutation test of {st['metric']} against the best row on the clips both scored "
           f"(seed {st['seed']}'s held-out predictions, {st['n_permutations']} permutations of "
           f"{unit}) has a Holm-adjusted p >= {st['alpha']:g} over the {len(report['rows']) - 1}"
           " other rows. Not marked: significantly worse.", "",
           f"## Intervals and tests against the best ({st['metric']}, seed {st['seed']})", "",
           f"95% intervals: {st['n_resamples']} bootstrap resamples of {unit} of each row's "
           f"pooled held-out predictions of seed {st['seed']} (the trained models held fixed; the "
           "spread over seeds is the ± above). Difference: row minus the best, paired on the "
           "clips both scored, with its paired bootstrap interval; p: two-sided paired "
           "permutation test; Holm: adjusted over the rows (docs/statistics.md).", "",
           "| section | rank | name | clips | value [95% interval] | minus best [95% interval] "
           "| p | p (Holm) | |", "|---" * 9 + "|"]
    for r in report["rows"]:
        s = r.get("statistics") or {}
        v = s.get("vs_best") or {}
        delta = "-" if v.get("delta") is None else interval_text(v["delta"], v.get("ci"))
        out.append(f"| {r['section']} | {r['rank']} | {r['name']} | {s.get('clips', '-')} | "
                   f"{interval_text(s.get('value'), s.get('ci'))} | "
                   f"{'best' if s.get('best') else delta} | "
                   f"{_p(v.get('p_value'))} | {_p(v.get('p_adjusted'))} | "
                   f"{_mark(r).strip()} |")
    return out + [""]


def _ranked(report: dict[str, Any]) -> str:
    metric = report.get("metric", "mer")
    if metric == "mer":
        return "Ranked by the mean metric."
    from mer_heads.metrics import METRIC_NAMES

    return f"Ranked by the mean {METRIC_NAMES[metric]} (--metric {metric})."


def _fold_pm(row: dict[str, Any], key: str) -> str:
    mean, std = row.get(f"{key}_fold_mean"), row.get(f"{key}_fold_std")
    return "-" if mean is None else f"{mean:.4f} ± {std:.4f}"


def _ser_tables(report: dict[str, Any]) -> list[str]:
    """The speech-emotion metrics of every row: UA, WA and macro F1 of the pooled held-out
    predictions (mean ± std over seeds), their fold mean ± fold spread (std over folds; each
    the mean over seeds), and the CCC of each continuous target."""
    rows = report["rows"]
    targets = sorted({k[:-5] for r in rows for k in r if k.startswith("ccc:")
                      and k.endswith("_mean")})
    head = ("| section | rank | name | UA | WA | macro F1 | UA, fold mean ± spread | WA, fold "
            "mean ± spread | macro F1, fold mean ± spread |"
            + "".join(f" CCC {t[4:]} |" for t in targets))
    lines = ["## Speech-emotion metrics", "",
             f"UA, WA, macro F1: pooled held-out predictions, mean ± std over the "
             f"{len(report['seeds'])} seed(s); fold mean ± spread: the mean and std (ddof 0) "
             "over folds, each averaged over the seeds.", "", head,
             "|---" * (9 + len(targets)) + "|"]
    for r in rows:
        lines.append(f"| {r['section']} | {r['rank']} | {r['name']} | {_pm(r, 'ua')} | "
                     f"{_pm(r, 'wa')} | {_pm(r, 'macro_f1')} | {_fold_pm(r, 'ua')} | "
                     f"{_fold_pm(r, 'wa')} | {_fold_pm(r, 'macro_f1')} |"
                     + "".join(f" {_pm(r, t)} |" for t in targets))
    return lines + [""]
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
    ranked = report.get("metric", "mer")
    if ranked == "mer":
        metric = "metric" if all(r["metric_mean"] is not None for r in rows) else "f1"
    else:
        metric = ranked
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
        if ranked == "mer":
            label = ("weighted F1 (no valence)" if no_valence or metric == "f1"
                     else "F1 - 0.25 MSE")
        else:
            from mer_heads.metrics import METRIC_NAMES

            label = METRIC_NAMES[metric]
        axes[-1, 0].set_xlabel(label + f" (mean ± std over {len(report['seeds'])} seed(s))")
        fig.suptitle(f"{params['model']} per store, {report['fusion']} fusion of the top-K: "
                     f"{basis(clips, n_folds_shown(params['folds'], report.get('folds')), report['seeds'])}", fontsize=9)
    return Path(path)


__all__ = ["leaderboard_figure", "markdown_leaderboard"]
