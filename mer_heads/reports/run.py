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
    n_folds = p["folds"]
    if folds.get("kind") == "published":
        n_folds = f"{folds['n_folds']} published"
        by += f" from '{folds['column']}'"
    lines = [
        f"{metrics['model']} on {'+'.join(m['key'] for m in metrics['modalities'])} "
        f"({metrics['input']}): {metrics['clips']['train']} training clips, "
        f"{n_folds} folds{by} x {p['seeds']} seed(s)",
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
    lines += ser_table(metrics)
    lines += interval_lines(metrics)
    if metrics.get("semi"):
        lines += ["", *semi_table(metrics["semi"])]
    return "\n".join(lines)


def _classes(metrics: dict[str, Any]) -> list[str]:
    return list(metrics.get("classes") or EMOTIONS)


def ser_table(metrics: dict[str, Any]) -> list[str]:
    """The printed speech-emotion metrics: UA, WA, macro F1 pooled and fold mean ± std, the
    CCC of each target, the label set with its training clips (the label set only when it is
    not MER 2023's)."""
    scores = metrics.get("scores")
    if not scores:
        return []
    pooled, mean, std = scores["pooled"], scores["mean"], scores["std"]
    keys = ("ua", "wa", "macro_f1", *(f"ccc:{t}" for t in pooled["targets"]))
    names = {"ua": "UA", "wa": "WA", "macro_f1": "macro F1"}
    lines = ["", f"{'':24}" + "".join(f"{names.get(k, k.replace('ccc:', 'CCC ')):>14}"
                                      for k in keys),
             f"{'pooled held-out':24}" + "".join(f"{_num(_scalar(pooled, k)):>14}"
                                                 for k in keys),
             f"{'fold mean ± std':24}" + "".join(
                 f"{_num(mean.get(k), 3) + ' ± ' + _num(std.get(k), 3):>14}"
                 for k in keys)]
    classes = _classes(metrics)
    if classes != list(EMOTIONS):
        counts = metrics["clips"]["classes"]
        lines.append(f"classes ({len(classes)}): "
                     + ", ".join(f"{c} {counts.get(c, 0)}" for c in classes))
    m = scores.get("metric") or {}
    if m.get("name") and m["name"] != "mer":
        from mer_heads.metrics import METRIC_NAMES

        lines.append(f"--metric {m['name']} ({METRIC_NAMES[m['name']]}) picked each fold model's "
                     "epoch and ranks")
    return lines


def _scalar(pooled: dict[str, Any], key: str) -> float | None:
    if key.startswith("ccc:"):
        return (pooled["targets"].get(key[4:]) or {}).get("ccc")
    return pooled.get(key)


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
    classes = list(semi["rounds"][0]["added"])
    short = [e[:4] for e in classes]
    lines = [_semi_title(semi),
             f"{'round':>5}" + "".join(f"{c:>7}" for c in short)
             + f"{'added':>8}{'F1':>8}{'MSE':>8}{'metric':>8}{'delta':>8}{'PL acc':>8}"]
    for r in semi["rounds"]:
        acc = (r.get("pseudo_accuracy") or {}).get("overall")
        lines.append(f"{r['round']:>5}" + "".join(f"{r['added'][e]:>7.0f}" for e in classes)
                     + f"{r['added_total']:>8.0f}{_num(r['cv']['f1']):>8}"
                     f"{_num(r['cv']['mse']):>8}{_num(r['cv']['metric']):>8}"
                     f"{r['delta_metric']:>+8.4f}{_num(acc, 3):>8}")
    return lines


def semi_markdown(semi: dict[str, Any]) -> list[str]:
    """The report's semi-supervised section."""
    hidden = bool(semi["settings"].get("hide_labels"))
    classes = list(semi["rounds"][0]["added"])
    out = ["## Semi-supervised rounds", "", _semi_title(semi) + ".", "",
           "Clips added per class are the mean over folds (each fold's pseudo-labels come from "
           f"its {'own models' if semi['settings']['teacher'] == 'fold' else 'fold ensemble'}); "
           "CV scores are on the same held-out folds as the supervised run.", "",
           "| round | " + " | ".join(classes) + " | added | CV F1 | CV MSE | CV metric | "
           "vs supervised |" + (" pseudo-label accuracy | teacher accuracy |" if hidden else ""),
           "|---" * (len(classes) + 6 + (2 if hidden else 0)) + "|"]
    for r in semi["rounds"]:
        row = (f"| {r['round']} | " + " | ".join(f"{r['added'][e]:.1f}" for e in classes)
               + f" | {r['added_total']:.1f} | {_num(r['cv']['f1'])} | {_num(r['cv']['mse'])} | "
               f"{_num(r['cv']['metric'])} | {r['delta_metric']:+.4f} |")
        if hidden:
            acc = r.get("pseudo_accuracy") or {}
            row += f" {_num(acc.get('overall'))} | {_num(acc.get('teacher'))} |"
        out.append(row)
    if hidden:
        out += ["", "Pseudo-label accuracy per assigned class (pooled over folds):", "",
                "| round | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
        for r in semi["rounds"][1:]:
            per = r["pseudo_accuracy"]["per_class"]
            out.append(f"| {r['round']} | " + " | ".join(_num(per[e], 3) for e in classes)
                       + " |")
    return out


def protocol_lines(metrics: dict[str, Any]) -> list[str]:
    """How the folds were drawn and what training added: group folds, per-group
    normalisation, corrupted copies, modality dropout."""
    p = metrics["params"]
    folds = metrics.get("folds") or {}
    lines = []
    if folds.get("kind") == "published":
        held = ""
        if folds.get("groups"):
            held = "; held out: " + "; ".join(
                f"fold {name}: {', '.join(g)}"
                for name, g in zip(folds["folds"], folds["held_out_groups"]))
        lines.append(f"folds: {folds['n_folds']} published folds from the manifest column "
                     f"'{folds['column']}' ({', '.join(folds['folds'])}: each clip held out by "
                     f"the fold it names; --folds-from){held}")
    elif folds.get("groups"):
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
                    figures: bool = True) -> str:
    """The run's report as Markdown; ``figures``: it links the run's PNGs (confusion.png,
    reliability.png, layer_weights.png), which `fit --no-figures` does not write."""
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
    classes = _classes(metrics)
    out.append("| | " + " | ".join(classes) + " | F1 |")
    out.append("|---" * (len(classes) + 2) + "|")
    for name, row in zip(classes, metrics["confusion"]):
        out.append(f"| **{name}** | " + " | ".join(str(v) for v in row)
                   + f" | {_num(metrics['per_class_f1'][name])} |")
    if figures:
        out += ["", "![confusion matrix](confusion.png)"]
    out += ser_markdown(metrics)
    out += statistics_markdown(metrics, reliability_png="reliability.png" if figures else None)
    if metrics.get("semi"):
        out += ["", *semi_markdown(metrics["semi"])]
    if metrics.get("layer_weights"):
        out += ["", "## Learned layer weights (softmax per modality; mean ± std over the fold "
                "models)", ""]
        for key, w in metrics["layer_weights"].items():
            out.append(f"- {key}: " + ", ".join(f"L{i} {m:.3f} ± {sd:.3f}" for i, (m, sd)
                                                in enumerate(zip(w["mean"], w["std"]))))
        if figures:
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


def ser_markdown(metrics: dict[str, Any]) -> list[str]:
    """The report's speech-emotion section: UA, WA, macro and weighted F1 (pooled, and fold
    mean ± std), per-class recall, precision and F1, the CCC and MSE of each target."""
    scores = metrics.get("scores")
    if not scores:
        return []
    pooled, mean, std = scores["pooled"], scores["mean"], scores["std"]
    m = scores.get("metric") or {}
    from mer_heads.metrics import METRIC_NAMES

    out = ["", "## Speech-emotion metrics", "",
           f"Pooled: every held-out prediction together (the primary figure); fold mean ± std: "
           f"each metric within each of the {scores['n_folds']} folds, then the mean and std "
           "(ddof 0) over folds (docs/statistics.md).", "",
           "| | UA | WA | macro F1 | weighted F1 |", "|---|---|---|---|---|",
           "| pooled held-out predictions | " + " | ".join(
               _num(pooled.get(k)) for k in ("ua", "wa", "macro_f1", "f1")) + " |",
           "| fold mean ± std | " + " | ".join(
               _pm(mean.get(k), std.get(k)) for k in ("ua", "wa", "macro_f1", "f1")) + " |"]
    if m.get("name"):
        out += ["", f"--metric {m['name']} ({METRIC_NAMES[m['name']]}) picked each fold "
                "model's epoch and is the run's headline: pooled "
                f"{_num(m.get('pooled'))}, fold mean {_pm(m.get('fold_mean'), m.get('fold_std'))}."]
    out += ["", "| class | clips | recall | precision | F1 |", "|---|---|---|---|---|"]
    for name, c in pooled["per_class"].items():
        out.append(f"| {name} | {c['support']} | {_num(c['recall'])} | {_num(c['precision'])} "
                   f"| {_num(c['f1'])} |")
    if pooled["targets"]:
        out += ["", "| target | clips | MSE | CCC | CCC, fold mean ± std |", "|---|---|---|---|---|"]
        for t, v in pooled["targets"].items():
            out.append(f"| {t} | {v['n']} | {_num(v['mse'])} | {_num(v['ccc'])} | "
                       f"{_pm(mean.get(f'ccc:{t}'), std.get(f'ccc:{t}'))} |")
    return out


INTERVAL_ROWS = (("f1", "F1 (weighted)"), ("wa", "WA (accuracy)"), ("ua", "UA"),
                 ("macro_f1", "macro F1"), ("mer", "F1 - 0.25 MSE"))
"""The headline metrics whose intervals the report and the printed table show (those the run
has), then the MSE and CCC of each target and the calibration metrics."""


def _interval_keys(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    ci = metrics.get("ci") or {}
    keys = [(k, name) for k, name in INTERVAL_ROWS if k in ci]
    for k in ci:
        kind, _, target = k.partition(":")
        if kind in ("mse", "ccc"):
            keys.append((k, f"{kind.upper()} {target}"))
    return keys + [(k, k.upper() if k != "brier" else "Brier") for k in ("ece", "brier", "nll")
                   if k in ci]


def _point(metrics: dict[str, Any], key: str) -> float | None:
    if key in ("ece", "brier", "nll"):
        return metrics.get(key)
    pooled = (metrics.get("scores") or {}).get("pooled") or {}
    if key.startswith(("mse:", "ccc:")):
        kind, _, target = key.partition(":")
        return (pooled.get("targets", {}).get(target) or {}).get(kind)
    return pooled.get(key)


def _unit_text(b: dict[str, Any]) -> str:
    unit = (f"{b['n_units']} '{b['groups']}' groups (whole groups resampled)"
            if b["unit"] == "group" else f"{b['n_units']} clips")
    strata = f", within each '{b['strata']}' fold" if b.get("strata") else ""
    return f"{b['n']} bootstrap resamples of {unit}{strata}, seed {b['seed']}"


def interval_lines(metrics: dict[str, Any]) -> list[str]:
    """The printed 95% intervals of the headline metrics and the calibration, if any."""
    from mer_heads.stats.runs import interval_text

    b, ci = metrics.get("bootstrap"), metrics.get("ci") or {}
    if not b:
        return []
    shown = [(k, n) for k, n in _interval_keys(metrics) if k not in ("nll",)]
    return ["", f"95% intervals ({_unit_text(b)}):",
            "  " + "; ".join(f"{name} {interval_text(_point(metrics, k), ci.get(k))}"
                             for k, name in shown)]


def statistics_markdown(metrics: dict[str, Any], *, reliability_png: str | None = None
                        ) -> list[str]:
    """The report's intervals and calibration: every headline metric of the pooled held-out
    predictions with its 95% bootstrap interval, ECE/Brier/NLL (before and after the
    temperatures with --calibrate temperature) and the reliability diagram."""
    from mer_heads.stats.runs import interval_text

    b, ci = metrics.get("bootstrap"), metrics.get("ci") or {}
    if not b:
        return []
    out = ["", "## Intervals and calibration", "",
           f"95% intervals from {_unit_text(b)} of the pooled held-out predictions "
           f"({b['method']} bootstrap; the trained models held fixed: they do not include the "
           "spread over training seeds; docs/statistics.md).", "",
           "| metric | pooled held-out [95% interval] |", "|---|---|"]
    for k, name in _interval_keys(metrics):
        out.append(f"| {name} | {interval_text(_point(metrics, k), ci.get(k))} |")
    if metrics.get("test_ci"):
        t, tci, tb = metrics["test"], metrics["test_ci"], metrics["test_bootstrap"]
        unit = (f"{tb['n_units']} '{tb['groups']}' groups" if tb["unit"] == "group"
                else "clips")
        out += ["", f"test split `{metrics['test_split']}` ({t['n']} clips; {tb['n']} resamples "
                f"of {unit}): " + "; ".join(
                    f"{name} {interval_text(t.get(key), tci.get(k))}"
                    for k, key, name in (("f1", "f1", "F1"), ("wa", "accuracy", "WA"),
                                         ("ua", "ua", "UA"), ("mer", "metric",
                                                              "F1 - 0.25 MSE"))
                    if k in tci)
                + f"; ECE {_num(metrics['test_calibration']['ece'])}"]
    cal = metrics.get("calibration")
    out += ["", "Calibration of the held-out probabilities: ECE (15 equal-width bins of the "
            "top-class probability), Brier (multi-class, in [0, 2]), NLL."]
    if cal:
        temps = ", ".join(f"{t:.3f}" for t in cal["temperatures"])
        out += ["", f"--calibrate {cal['method']}: one temperature per fold ({temps}), fitted on "
                f"{cal['fitted_on']}.", "", "| | ECE | Brier | NLL |", "|---|---|---|---|"]
        for when in ("before", "after"):
            c = cal[when]
            out.append(f"| {when} | {_num(c['ece'])} | {_num(c['brier'])} | {_num(c['nll'])} |")
    if reliability_png:
        out += ["", f"![reliability diagram]({reliability_png})"]
    return out


def confusion_figure(confusion: np.ndarray, path: str | Path, title: str,
                     classes: Any = EMOTIONS) -> Path:
    """Row-normalised confusion matrix with counts, as a PNG (matplotlib Agg, no display);
    ``classes`` name its rows and columns."""
    counts = np.asarray(confusion)
    classes = list(classes)
    k = len(classes)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = (6.2, 5.2) if k <= 6 else (6.2 + 0.5 * (k - 6), 5.2 + 0.45 * (k - 6))
    with figure(path, figsize=size, dpi=120) as (fig, ax):
        image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(k), classes, rotation=35, ha="right")
        ax.set_yticks(range(k), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=10)
        for i in range(k):
            for j in range(k):
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
