"""The semi-supervised sweep's Markdown and figure (see
:mod:`mer_heads.experiments.semi_sweep`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mer_features import EMOTIONS
from mer_heads.folds import n_folds_shown
from mer_heads.reports.figure import basis, figure


def _n(v: float | None, digits: int = 4, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _value_name(strategy: str) -> str:
    return "quantile Q" if strategy == "class-quantile" else "threshold T"


def _noise_key(baseline: dict[str, Any] | None) -> str | None:
    """The score whose spread marks the rows: the metric, F1 without valence; None without
    a spread (one baseline seed)."""
    if not baseline:
        return None
    for key in ("metric", "f1"):
        if baseline.get(f"{key}_std") is not None:
            return key
    return None


def noise_lines(report: dict[str, Any]) -> list[str]:
    """What the baseline's spread over training seeds says about the rows."""
    baseline = report.get("baseline")
    key = _noise_key(baseline)
    if key is None:
        return ["One training seed of the supervised head (--baseline-seeds 1): no spread to "
                "tell a change from noise.", ""]
    seeds = baseline["seeds"]
    mean, std = baseline[f"{key}_mean"], baseline[f"{key}_std"]
    band = baseline["band"]
    name = "metric" if key == "metric" else "F1"
    scores = ", ".join(f"{v:.4f}" for v in baseline[key])
    return [f"Noise: the supervised head fitted with {len(seeds)} training seeds "
            f"({seeds[0]}..{seeds[-1]}) on the same folds gives CV {name} {mean:.4f} ± "
            f"{std:.4f} (std, ddof 1; {scores}). A pseudo-labelling round re-draws its models' "
            f"training randomness, so a value whose CV {name} lies within {band:g} std of that "
            f"mean ({mean - band * std:.4f} to {mean + band * std:.4f}) is marked `noise`: "
            "these folds cannot tell its change from a change of seed.", ""]


def markdown_sweep(report: dict[str, Any]) -> str:
    s, base = report["settings"], report["supervised"]
    classes = report.get("classes") or EMOTIONS
    sim = s.get("hide_labels")
    pool = (f"{report['pool']} clips whose labels were hidden (--hide-labels {sim:g})" if sim
            else f"{report['pool']} unlabelled clips")
    lines = [f"# Semi-supervised sweep: {report['strategy']} over {_value_name(report['strategy'])}"
             f" ({report['params']['model']}, {n_folds_shown(report['params']['folds'], report.get('folds'))} folds, seed "
             f"{report['params']['seed']}, {s['rounds']} round(s), teacher {s['teacher']})", "",
             f"{report['labelled']} labelled training clips; pool: {pool}. Supervised CV: F1 "
             f"{_n(base['f1'])}, MSE {_n(base['mse'])}, metric {_n(base['metric'])} (computed "
             "once; every value starts from it, on the same folds). Added: pseudo-labelled clips "
             "per fold (mean over folds); clips: distinct pool clips any fold used. Last round.",
             "", *noise_lines(report),
             "| value | clips | added | " + " | ".join(classes) + " | pseudo acc. | teacher acc. "
             "| CV F1 | CV MSE | CV metric | Δ metric | vs noise |",
             "|" + "---|" * (10 + len(classes))]
    for r in report["rows"]:
        lines.append(f"| {r['value']:g} | {r['added_clips']} | {r['added_total']:.1f} | "
                     + " | ".join(f"{r[f'added_{e}']:.1f}" for e in classes)
                     + f" | {_n(r['pseudo_accuracy'], 3)} | {_n(r['teacher_accuracy'], 3)} | "
                     f"{_n(r['cv_f1'])} | {_n(r['cv_mse'])} | {_n(r['cv_metric'])} | "
                     f"{_n(r['delta_metric'], sign=True)} | "
                     + {True: "noise", False: "beyond noise", None: "-"}[r.get("within_noise")]
                     + " |")
    lines += ["", f"Speech-emotion metrics of the same runs (supervised: UA {_n(base.get('ua'))}, "
              f"WA {_n(base.get('wa'))}, macro F1 {_n(base.get('macro_f1'))}):", "",
              "| value | CV UA | CV WA | CV macro F1 | Δ UA | Δ WA | Δ macro F1 |",
              "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['value']:g} | {_n(r.get('cv_ua'))} | {_n(r.get('cv_wa'))} | "
                     f"{_n(r.get('cv_macro_f1'))} | {_n(r.get('delta_ua'), sign=True)} | "
                     f"{_n(r.get('delta_wa'), sign=True)} | "
                     f"{_n(r.get('delta_macro_f1'), sign=True)} |")
    lines += [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def sweep_figure(report: dict[str, Any], path: str | Path) -> Path:
    """Left: clips added (and pseudo-label accuracy, right axis, in a simulation) against the
    value; right: the change of the CV metric (and F1) against the supervised run."""
    rows = sorted(report["rows"], key=lambda r: r["value"])
    x = [r["value"] for r in rows]
    acc = [(v, r["pseudo_accuracy"]) for v, r in zip(x, rows) if r["pseudo_accuracy"] is not None]
    with figure(path, nrows=1, ncols=2, figsize=(10, 3.8), dpi=120) as (fig, (left, right)):
        left.plot(x, [r["added_total"] for r in rows], "o-", color="tab:blue",
                  label="added per fold")
        left.set_ylabel("pseudo-labelled clips per fold", color="tab:blue")
        if acc:
            twin = left.twinx()
            twin.plot([a for a, _ in acc], [b for _, b in acc], "s--", color="tab:red")
            twin.set_ylabel("pseudo-label accuracy", color="tab:red")
            twin.set_ylim(0, 1.02)
        for key, style in (("delta_metric", "o-"), ("delta_f1", "s--")):
            pts = [(v, r[key]) for v, r in zip(x, rows) if r[key] is not None]
            if pts:
                right.plot([a for a, _ in pts], [b for _, b in pts], style,
                           label={"delta_metric": "Δ CV metric", "delta_f1": "Δ CV F1"}[key])
        right.axhline(0, color="grey", lw=0.8, ls=":")
        baseline = report.get("baseline")
        key = _noise_key(baseline)
        if key is not None:
            # the band of the baseline's spread, as a change against the seed every value
            # starts from
            offset = baseline[f"{key}_mean"] - baseline[key][0]
            half = baseline["band"] * baseline[f"{key}_std"]
            right.axhspan(offset - half, offset + half, color="grey", alpha=0.2,
                          label=f"supervised, {len(baseline['seeds'])} training seeds: "
                          f"mean ± {baseline['band']:g} std ({'metric' if key == 'metric' else 'F1'})")
        right.set_ylabel("change against supervised")
        right.legend(fontsize=8)
        for ax in (left, right):
            ax.set_xlabel(_value_name(report["strategy"]))
            ax.grid(alpha=0.3)
        params = report["params"]
        fig.suptitle(f"{params['model']}, {report['strategy']}: pseudo-labels against the "
                     f"{_value_name(report['strategy']).split()[0]}; "
                     + basis(report["labelled"], n_folds_shown(params["folds"], report.get("folds")),
                             [params["seed"]],
                             what="labelled clips")
                     + f" + a pool of {report['pool']}", fontsize=10)
    return Path(path)


__all__ = ["markdown_sweep", "sweep_figure"]
