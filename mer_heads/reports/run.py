"""What a run tells a person: the printed table, the Markdown report, the confusion PNG and
the learned layer weights' PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mer_features import EMOTIONS
from mer_heads.reports.figure import figure


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pm(mean: float | None, std: float | None) -> str:
    return "-" if mean is None else f"{mean:.4f} ± {std:.4f}"


def summary_table(metrics: dict[str, Any]) -> str:
    """The short table ``mer-heads fit`` prints."""
    cv, mean, std = metrics["cv"], metrics["mean"], metrics["std"]
    p = metrics["params"]
    folds = metrics.get("folds") or {}
    by = f" by {folds['groups']} ({folds['n_groups']} groups)" if folds.get("groups") else ""
    lines = [
        f"{metrics['model']} on {'+'.join(m['key'] for m in metrics['modalities'])} "
        f"({metrics['input']}): {metrics['clips']['train']} training clips, "
        f"{p['folds']} folds{by} x {p['seeds']} seed(s)",
        f"{'':24}{'F1':>8}{'acc':>8}{'MSE':>8}{'metric':>9}",
        f"{'CV, pooled held-out':24}{_num(cv['f1']):>8}{_num(cv['accuracy']):>8}"
        f"{_num(cv['mse']):>8}{_num(cv['metric']):>9}",
        f"{'fold models, mean':24}{_num(mean['f1']):>8}{_num(mean['accuracy']):>8}"
        f"{_num(mean['mse']):>8}{_num(mean['metric']):>9}",
        f"{'fold models, std':24}{_num(std['f1']):>8}{_num(std['accuracy']):>8}"
        f"{_num(std['mse']):>8}{_num(std['metric']):>9}",
    ]
    if metrics.get("test"):
        t = metrics["test"]
        lines.append(f"{'test split ' + str(metrics['test_split']):24}{_num(t['f1']):>8}"
                     f"{_num(t['accuracy']):>8}{_num(t['mse']):>8}{_num(t['metric']):>9}")
    if metrics.get("semi"):
        lines += ["", *semi_table(metrics["semi"])]
    return "\n".join(lines)


def _semi_title(semi: dict[str, Any]) -> str:
    s = semi["settings"]
    rule = {"threshold": f"confidence >= {s['threshold']:g}",
            "class-quantile": f"per-class {s['quantile']:g}-quantile of confidence",
            "weak-reinforce": f"confidence >= {s['threshold']:g}, under-represented classes",
            "none": "no pseudo-labels"}[s["strategy"]]
    pool = (f"{semi['pool']} clips with hidden labels ({s['hide_labels']:g} hidden)"
            if s.get("hide_labels") else f"{semi['pool']} unlabelled clips")
    return (f"semi-supervised: {s['strategy']} ({rule}), teacher {s['teacher']}, pool {pool}; "
            "round 0 is the supervised run")


def semi_table(semi: dict[str, Any]) -> list[str]:
    """The per-round lines ``mer-heads fit --semi`` prints: clips added per class (mean over
    folds), CV scores, change of the metric against round 0 and pseudo-label accuracy."""
    short = [e[:4] for e in EMOTIONS]
    lines = [_semi_title(semi),
             f"{'round':>5}" + "".join(f"{c:>7}" for c in short)
             + f"{'added':>8}{'F1':>8}{'MSE':>8}{'metric':>8}{'delta':>8}{'PL acc':>8}"]
    for r in semi["rounds"]:
        acc = (r.get("pseudo_accuracy") or {}).get("overall")
        lines.append(f"{r['round']:>5}" + "".join(f"{r['added'][e]:>7.0f}" for e in EMOTIONS)
                     + f"{r['added_total']:>8.0f}{_num(r['cv']['f1']):>8}"
                     f"{_num(r['cv']['mse']):>8}{_num(r['cv']['metric']):>8}"
                     f"{r['delta_metric']:>+8.4f}{_num(acc, 3):>8}")
    return lines


def semi_markdown(semi: dict[str, Any]) -> list[str]:
    """The report's semi-supervised section."""
    hidden = bool(semi["settings"].get("hide_labels"))
    out = ["## Semi-supervised rounds", "", _semi_title(semi) + ".", "",
           "Clips added per class are the mean over folds (each fold's pseudo-labels come from "
           f"its {'own models' if semi['settings']['teacher'] == 'fold' else 'fold ensemble'}); "
           "CV scores are on the same held-out folds as the supervised run.", "",
           "| round | " + " | ".join(EMOTIONS) + " | added | CV F1 | CV MSE | CV metric | "
           "vs supervised |" + (" pseudo-label accuracy | teacher accuracy |" if hidden else ""),
           "|---" * (len(EMOTIONS) + 6 + (2 if hidden else 0)) + "|"]
    for r in semi["rounds"]:
        row = (f"| {r['round']} | " + " | ".join(f"{r['added'][e]:.1f}" for e in EMOTIONS)
               + f" | {r['added_total']:.1f} | {_num(r['cv']['f1'])} | {_num(r['cv']['mse'])} | "
               f"{_num(r['cv']['metric'])} | {r['delta_metric']:+.4f} |")
        if hidden:
            acc = r.get("pseudo_accuracy") or {}
            row += f" {_num(acc.get('overall'))} | {_num(acc.get('teacher'))} |"
        out.append(row)
    if hidden:
        out += ["", "Pseudo-label accuracy per assigned class (pooled over folds):", "",
                "| round | " + " | ".join(EMOTIONS) + " |", "|---" * (len(EMOTIONS) + 1) + "|"]
        for r in semi["rounds"][1:]:
            per = r["pseudo_accuracy"]["per_class"]
            out.append(f"| {r['round']} | " + " | ".join(_num(per[e], 3) for e in EMOTIONS)
                       + " |")
    return out


def protocol_lines(metrics: dict[str, Any]) -> list[str]:
    """How the folds were drawn and what training added: group folds, per-group
    normalisation, corrupted copies, modality dropout."""
    p = metrics["params"]
    folds = metrics.get("folds") or {}
    lines = []
    if folds.get("groups"):
        held = "; ".join(f"fold {j}: {', '.join(g)}"
                         for j, g in enumerate(folds["held_out_groups"]))
        lines.append(f"folds: {p['folds']} stratified group folds by '{folds['groups']}' "
                     f"({folds['n_groups']} groups, each held out by one fold: scores are those "
                     f"of unseen groups); held out: {held}")
    else:
        lines.append(f"folds: {p['folds']} stratified folds over clips (no --groups)")
    if metrics.get("normalize_by"):
        lines.append(f"features z-scored within each '{metrics['normalize_by']}' group from the "
                     "group's own clips before the folds' standardisation (--normalize-by; "
                     "transductive: held-out groups use their own clips' statistics)")
    augment = metrics.get("augment")
    if augment:
        copies = "; ".join(
            f"{c['label']} (" + ", ".join(f"{k}: `{v['path']}`, seed {v['noise'].get('seed')}"
                                          for k, v in c["stores"].items()) + ")"
            for c in augment["copies"])
        lines.append(f"multi-condition training: each fold also trained on the corrupted copies "
                     f"of its training clips ({copies}; {min(augment['per_model'])}-"
                     f"{max(augment['per_model'])} copies per fold model), never of held-out "
                     f"clips; standardisation statistics from {augment['statistics']}")
    if p.get("modality_dropout"):
        lines.append(f"modality dropout {p['modality_dropout']:g}: each modality of a training "
                     "clip masked with this probability per step (never all of them; none at "
                     "evaluation)")
    return lines


def markdown_report(metrics: dict[str, Any], *, seconds: float | None = None,
                    confusion_png: str | None = "confusion.png") -> str:
    """The run's report as Markdown."""
    p = metrics["params"]
    cv, mean, std = metrics["cv"], metrics["mean"], metrics["std"]
    out = [f"# mer-heads run: {metrics['model']} on "
           f"{' + '.join(m['key'] for m in metrics['modalities'])}", ""]
    out += ["## Scores", "",
            "| | F1 (weighted) | accuracy | valence MSE | F1 - 0.25 MSE |",
            "|---|---|---|---|---|",
            f"| CV, pooled held-out predictions | {_num(cv['f1'])} | {_num(cv['accuracy'])} | "
            f"{_num(cv['mse'])} | {_num(cv['metric'])} |",
            f"| fold models ({len(metrics['models'])}), mean ± std | {_pm(mean['f1'], std['f1'])} "
            f"| {_pm(mean['accuracy'], std['accuracy'])} | {_pm(mean['mse'], std['mse'])} | "
            f"{_pm(mean['metric'], std['metric'])} |"]
    if metrics.get("test"):
        t = metrics["test"]
        out.append(f"| test split `{metrics['test_split']}` (fold ensemble) | {_num(t['f1'])} | "
                   f"{_num(t['accuracy'])} | {_num(t['mse'])} | {_num(t['metric'])} |")
    out += ["", "The held-out fold of each model both chose its epoch and scored it (the MER 2023 "
            "protocol), so CV scores lean optimistic; a test split does not.", ""]
    out += ["## Protocol", "", *(f"- {line}" for line in protocol_lines(metrics)), ""]
    out += ["## Fold models", "", "| fold | seed | best epoch | clips | F1 | accuracy | MSE | metric |",
            "|---|---|---|---|---|---|---|---|"]
    for m in metrics["models"]:
        out.append(f"| {m['fold']} | {m['seed']} | {m['best_epoch'] or '-'} | {m['n']} | "
                   f"{_num(m['f1'])} | {_num(m['accuracy'])} | {_num(m['mse'])} | "
                   f"{_num(m['metric'])} |")
    out += ["", "## Confusion (pooled held-out predictions; rows true, columns predicted)", ""]
    out.append("| | " + " | ".join(EMOTIONS) + " | F1 |")
    out.append("|---" * (len(EMOTIONS) + 2) + "|")
    for name, row in zip(EMOTIONS, metrics["confusion"]):
        out.append(f"| **{name}** | " + " | ".join(str(v) for v in row)
                   + f" | {_num(metrics['per_class_f1'][name])} |")
    if confusion_png:
        out += ["", f"![confusion matrix]({confusion_png})"]
    if metrics.get("semi"):
        out += ["", *semi_markdown(metrics["semi"])]
    if metrics.get("layer_weights"):
        out += ["", "## Learned layer weights (softmax per modality; mean ± std over the fold "
                "models)", ""]
        for key, w in metrics["layer_weights"].items():
            out.append(f"- {key}: " + ", ".join(f"L{i} {m:.3f} ± {sd:.3f}" for i, (m, sd)
                                                in enumerate(zip(w["mean"], w["std"]))))
        out += ["", "![layer weights](layer_weights.png)"]
    out += ["", "## Data", "", "| modality | store | fingerprint | width | clips usable |",
            "|---|---|---|---|---|"]
    for m in metrics["modalities"]:
        out.append(f"| {m['key']} | `{m['path']}` | `{m['fingerprint']}` | {m['dim']} | "
                   f"{m['present']} of {metrics['clips']['total']} |")
    c = metrics["clips"]
    out += ["", f"- clips in the stores: {c['total']}; labelled: {c['labelled']}; training: "
            f"{c['train']}; labelled but without any usable modality (left out): "
            f"{c['dropped_no_modality']}; test: "
            + (f"{c['test']} (split '{metrics['test_split']}', never trained on)"
               if metrics.get("test_split") else "none (no --test-split)")
            + ("; training clips by split: " + ", ".join(f"{s or '(none)'} {n}" for s, n in
                                                        c["splits"].items())
               if c.get("splits") else ""),
            "- classes in training: " + ", ".join(f"{k} {v}" for k, v in c["classes"].items()),
            f"- valence: {'learnt and scored' if metrics['has_valence'] else 'none (F1 only)'}",
            f"- input: {metrics['input']}; multi-layer utterance arrays: {metrics['layers']}"]
    for note in metrics.get("notes", []):
        out.append(f"- {note}")
    out += ["", "## Settings", "", "| parameter | value |", "|---|---|"]
    for k in sorted(p):
        out.append(f"| {k} | {p[k]} |")
    out.append(f"| precision used | {metrics['precision']} |")
    if metrics.get("runtime"):
        r = metrics["runtime"]
        out.append(f"| computed on | {r['device']}, {r['threads']} CPU thread(s), "
                   f"torch {r['torch']} |")
    if metrics.get("batch_size_used"):
        out.append(f"| batch size used | {metrics['batch_size_used']} |")
    if seconds is not None:
        out += ["", f"Fitted in {seconds:.1f} s."]
    curve = metrics.get("curve") or []
    if curve:
        marks = sorted({1, len(curve), *range(10, len(curve), 10)})
        out += ["", "## Held-out score by epoch (mean over fold models)", "",
                "| epoch | " + " | ".join(str(e) for e in marks) + " |",
                "|---" * (len(marks) + 1) + "|",
                "| score | " + " | ".join(_num(curve[e - 1]) for e in marks) + " |"]
    return "\n".join(out) + "\n"


def confusion_figure(confusion: np.ndarray, path: str | Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts, as a PNG (matplotlib Agg, no display)."""
    counts = np.asarray(confusion)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    with figure(path, figsize=(6.2, 5.2), dpi=120) as (fig, ax):
        image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=35, ha="right")
        ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=10)
        for i in range(len(EMOTIONS)):
            for j in range(len(EMOTIONS)):
                ax.text(j, i, f"{counts[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center",
                        fontsize=7, color="white" if rates[i, j] > 0.5 else "black")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return Path(path)


def layer_weights_figure(layer_weights: dict[str, Any], path: str | Path, title: str) -> Path:
    """One panel per modality of metrics.json's ``layer_weights``: the weight of each layer
    (mean ± std over the fold models), with the uniform weight 1/L as a dotted line."""
    keys = list(layer_weights)
    with figure(path, nrows=1, ncols=len(keys), figsize=(0.6 + 4.2 * len(keys), 3.4), dpi=120,
                squeeze=False) as (fig, axes):
        for ax, key in zip(axes[0], keys):
            entry = layer_weights[key]
            n = entry["layers"]
            ax.bar(range(n), entry["mean"], yerr=entry["std"], capsize=3, color="tab:blue")
            ax.axhline(1.0 / n, color="grey", ls=":", lw=1, label="uniform 1/L")
            ax.set_xticks(range(n))
            ax.set_xlabel("layer (0: the first hidden state the store kept)")
            ax.set_ylabel("softmax weight")
            ax.set_title(key, fontsize=9)
            ax.legend(fontsize=7)
        fig.suptitle(title, fontsize=10)
    return Path(path)
