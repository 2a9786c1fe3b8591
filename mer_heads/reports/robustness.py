"""The robustness sweep's outputs: CSV rows, Markdown tables and the F1-against-SNR figure
(see :mod:`mer_heads.experiments.robustness` for the protocol that produces the rows)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mer_heads.reports.figure import chance_line, figure, pyplot

if TYPE_CHECKING:
    from mer_heads.config import HeadConfig
    from mer_heads.experiments.conditions import Condition

CSV_COLUMNS = ("training", "condition", "snr_db", "corruption", "modalities", "clips", "lost",
               "imputed", "f1", "accuracy", "mse", "metric", "ua", "wa", "macro_f1")


def _clean_label(conds: list[Condition]) -> str:
    return next(c.label for c in conds if c.is_clean)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def markdown_tables(rows: list[dict[str, Any]], conds: list[Condition],
                    combos: list[tuple[str, ...]], head: HeadConfig, input: str,
                    protocol: str, has_valence: bool, notes: Sequence[str] = (), *,
                    trainings: Sequence[str] = ("clean",), folds: str = "",
                    augment: Sequence[Condition] = (), normalize_by: str | None = None,
                    headline: str = "f1", n_folds: str | None = None) -> str:
    """Tables with one row per condition and one column per modality set; with several
    ``trainings`` (clean and multi-condition heads), one row group per training."""
    cell = {(r.get("training", "clean"), r["condition"], r["modalities"]): r for r in rows}
    names = ["+".join(c) for c in combos]
    multi = len(trainings) > 1
    trained = ("trained on clean features" if not multi else
               "trained on clean features, and multi-condition (clean + corrupted copies)")
    lines = [f"# Robustness: {head.model} ({input} input) {trained}, "
             f"{n_folds or head.folds} folds x {head.seeds} seed(s), seed {head.seed}", "",
             ("Scores of the held-out predictions: each clip is predicted, from its corrupted "
              "copy, by the fold model that never saw it (the clean row equals the "
              "cross-validated scores)." if protocol == "held-out folds" else
              f"Scores of the fold ensemble on the {protocol}.")
             + (f" Folds: {folds}." if folds else "")
             + (f" Features z-scored per '{normalize_by}' group (--normalize-by)."
                if normalize_by else ""), ""]
    if multi:
        shown = "; ".join(f"{c.label} (" + ", ".join(
            f"{k}: `{p}`, seed {c.noise[k].get('seed')}" for k, p in c.stores.items()) + ")"
            for c in augment)
        lines += [f"Multi-condition heads: the folds' training clips plus their corrupted "
                  f"copies ({shown}); held-out clips are never augmented, and the folds are "
                  "the clean-trained heads'.", ""]
    metrics = [("f1", "Weighted F1")]
    if has_valence:
        metrics += [("mse", "Valence MSE"), ("metric", "F1 - 0.25 x MSE")]
    metrics += [("ua", "UA (unweighted average recall)"), ("wa", "WA (accuracy)"),
                ("macro_f1", "Macro F1")]
    targets = list(dict.fromkeys(k for r in rows for k in r if ":" in k))
    metrics += [(k, f"{k.split(':')[0].upper()} of {k.split(':')[1]}") for k in targets]
    metrics = ([m for m in metrics if m[0] == headline]
               + [m for m in metrics if m[0] != headline])
    first = "| training | condition | SNR (dB) | " if multi else "| condition | SNR (dB) | "
    for key, title in metrics:
        lines += [f"## {title}", "", first + " | ".join(names) + " |",
                  "|---|---|" + ("---|" if multi else "") + "---|" * len(names)]
        for training in trainings:
            for cond in conds:
                snr = "-" if cond.snr_db is None else f"{cond.snr_db:g}"
                values = [_num(cell[(training, cond.label, n)].get(key)) for n in names]
                lead = f"| {training} " if multi else ""
                lines.append(f"{lead}| {cond.label} | {snr} | " + " | ".join(values) + " |")
        lines.append("")
    clean = _clean_label(conds)
    clips = {n: cell[(trainings[0], clean, n)]["clips"] for n in names}
    lines += ["## Conditions", "",
              "| condition | corrupted stores (noise spec, seed) | clips that lost a modality |",
              "|---|---|---|"]
    for cond in conds:
        stores = "; ".join(f"{k}: `{p}` (`{cond.noise[k].get('spec')}`, seed "
                           f"{cond.noise[k].get('seed')})" for k, p in cond.stores.items())
        lost = max(cell[(trainings[0], cond.label, n)]["lost"] for n in names)
        lines.append(f"| {cond.label} | {stores or 'the clean --features'} | {lost} |")
    lines += ["", "Clips scored per modality set: "
              + ", ".join(f"{n} {c}" for n, c in clips.items())
              + ". A clip whose corrupted modality failed to extract is scored with that "
              "modality masked (or, with none left, the training prior)."]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def corruption_text(conds: Sequence[Condition]) -> str:
    """Which modality each condition corrupts, and how: ``"audio: white noise at 20, 10, 5,
    0 dB, pink noise at 10 dB; video: blur 4"``."""
    per_key: dict[str, dict[str, list[str]]] = {}
    for cond in conds:
        for key in cond.stores:
            kinds = per_key.setdefault(key, {})
            if cond.snr_db is not None and cond.source:
                kinds.setdefault(f"{cond.source} noise", []).append(f"{cond.snr_db:g}")
            else:
                spec = str((cond.noise.get(key) or {}).get("spec") or cond.label)
                kinds.setdefault(spec, [])
    parts = []
    for key, kinds in per_key.items():
        shown = [f"{kind} at {', '.join(dict.fromkeys(levels))} dB" if levels else kind
                 for kind, levels in kinds.items()]
        parts.append(f"{key}: {', '.join(shown)}")
    return "; ".join(parts) or "nothing corrupted"


def robustness_figure(rows: list[dict[str, Any]], conds: list[Condition],
                      combos: list[tuple[str, ...]], path: str | Path, title: str,
                      metric: str = "f1", *, trainings: Sequence[str] = ("clean",),
                      chance: float | None = None) -> Path:
    """The score against SNR, one line per modality set (line style per noise source);
    corruptions without an SNR (blur, scale, jpeg) in a second panel beside it; one row of
    panels per training (clean, multi-condition). The clean score of each modality set is a
    dashed horizontal line of its colour (clean input has no SNR, so it is not a point on the
    dB axis), and ``chance`` (the weighted F1 of guessing the class frequencies) a grey dotted
    one. ``title`` should say what was corrupted and what the figure rests on (clips, folds,
    seeds)."""
    clean = _clean_label(conds)
    names = ["+".join(c) for c in combos]
    snr_conds = [c for c in conds if c.snr_db is not None]
    other = [c for c in conds if c.snr_db is None and not c.is_clean]
    panels = [p for p in (("snr", snr_conds), ("other", other)) if p[1]] or [("other", [])]
    widths = [max(2, len(p[1]) + 1) if p[0] == "other" else 5 for p in panels]
    colors = pyplot().get_cmap("tab10")
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v"]
    ylabel = {"f1": "weighted F1", "metric": "F1 - 0.25 MSE", "ua": "UA", "wa": "WA",
              "macro_f1": "macro F1"}.get(metric, metric)
    # the legend goes beside the laid-out panels: the block lays them out itself
    with figure(path, nrows=len(trainings), ncols=len(panels),
                figsize=(4.2 + 2.6 * len(panels), 0.8 + 4.0 * len(trainings)), dpi=120,
                sharey=True, gridspec_kw={"width_ratios": widths}, squeeze=False, layout=False,
                savefig={"bbox_inches": "tight"}) as (fig, axes):
        for t, training in enumerate(trainings):
            cell = {(r["condition"], r["modalities"]): r[metric] for r in rows
                    if r.get("training", "clean") == training}
            _draw_row(axes[t], panels, cell, names, clean, colors, styles, markers,
                      f"trained {training}" if len(trainings) > 1 else "")
            for ax in axes[t]:
                if chance is not None and metric == "f1":
                    chance_line(ax, chance)
        for row in axes:
            row[0].set_ylabel(ylabel)
            row[0].set_ylim(0, 1.02)
        handles, labels = axes[0][0].get_legend_handles_labels()
        handles.append(pyplot().Line2D([], [], color="grey", ls=(0, (5, 3)), lw=1.2))
        labels.append(f"{clean} input (no noise), one per set")
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return Path(path)


def _draw_row(row_axes, panels, cell, names, clean, colors, styles, markers, label: str) -> None:
    """One row of the figure: the SNR panel and the other-corruptions panel of one training."""
    for ax, (kind, members) in zip(row_axes, panels):
        for j, name in enumerate(names):  # clean input: a level, not a point on the x axis
            ax.axhline(cell[(clean, name)], color=colors(j % 10), ls=(0, (5, 3)), lw=1.0,
                       alpha=0.8)
        if kind == "snr":
            snrs = sorted({c.snr_db for c in members})
            sources = list(dict.fromkeys(c.series for c in members))
            for j, name in enumerate(names):
                for s, source in enumerate(sources):
                    pts = sorted((c.snr_db, cell[(c.label, name)]) for c in members
                                 if c.series == source)
                    ax.plot([p[0] for p in pts], [p[1] for p in pts],
                            linestyle=styles[s % len(styles)], marker=markers[s % len(markers)],
                            color=colors(j % 10), markersize=5, label=name if s == 0 else None)
            ax.set_xticks(snrs, [f"{v:g}" for v in snrs])
            if len(snrs) == 1:
                ax.set_xlim(snrs[0] - 5, snrs[0] + 5)
            ax.set_xlabel("SNR of the added noise (dB)")
            if len(sources) > 1:
                for s, source in enumerate(sources):
                    ax.plot([], [], color="grey", linestyle=styles[s % len(styles)],
                            marker=markers[s % len(markers)],
                            label=source if "+" in source else f"{source} noise")
        else:
            labels = [c.label for c in members]
            for j, name in enumerate(names):
                ax.plot(range(len(labels)), [cell[(lab, name)] for lab in labels], marker="o",
                        color=colors(j % 10), markersize=5, linestyle="none",
                        label=name if ax is row_axes[0] else None)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
            ax.set_xlim(-0.5, max(len(labels), 1) - 0.5)
            ax.set_xlabel("corruption")
        ax.grid(True, alpha=0.3)
    if label:
        row_axes[0].set_title(label, fontsize=9, loc="left")


def interval_table(rows: list[dict[str, Any]], headline: str = "f1") -> str:
    """The 95% bootstrap interval of the headline score of every row (appended to the
    tables): ``0.612 [0.571, 0.650]``, with what was resampled."""
    from mer_heads.stats.runs import interval_text

    shown = [r for r in rows if r.get("bootstrap")]
    if not shown:
        return ""
    b = shown[0]["bootstrap"]
    unit = (f"whole '{b['groups']}' groups ({b['n_units']})" if b["unit"] == "group"
            else "clips")
    lines = ["", f"## 95% intervals of {headline}", "",
             f"{b['n']} bootstrap resamples of the scored {unit} of each row, seed {b['seed']} "
             "(the trained models held fixed; docs/statistics.md).", "",
             "| training | condition | modalities | " + headline + " [95% interval] |",
             "|---|---|---|---|"]
    for r in shown:
        low, high = r.get(f"{headline}_low"), r.get(f"{headline}_high")
        lines.append(f"| {r.get('training', 'clean')} | {r['condition']} | {r['modalities']} | "
                     f"{interval_text(r.get(headline), None if low is None else [low, high])} |")
    return "\n".join(lines) + "\n"
