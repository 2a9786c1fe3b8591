"""The library functions behind ``mer-heads fit`` and ``mer-heads predict``.

``fit_run`` loads the stores, picks the training (and test) clips, cross-validates a head,
and writes the run directory: ``run.json``, the models, ``metrics.json`` (byte-identical for the
same seed and data), ``report.md``, ``confusion.png``, ``oof_predictions.csv`` and, with a test
split, ``test_predictions.csv``. ``predict_run`` writes a MER 2023 submission from a run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mer_features import EMOTIONS
from mer_heads.config import DataConfig, HeadConfig, SemiSettings, split_options
from mer_heads.data.dataset import (STORE_MODALITIES, MultimodalData, load_dataset,
                                    parse_store_arg, split_rows)
from mer_heads.errors import DataError, ParameterError, listed
from mer_heads.experiments.conditions import Condition, StoreArg, load_augment
from mer_heads.experiments.semi import fit_semi, hide_training_labels
from mer_heads.heads import get_head
from mer_heads.heads.layers import check_learned, weights_json
from mer_heads.metrics import Scores, confusion
from mer_heads.outputs import (check_out_file, dump_json, output_folder, remove_outputs,
                               write_rows, write_text)
from mer_heads.progress import tracking
from mer_heads.provenance import write_provenance
from mer_heads.folds import n_folds_shown
from mer_heads.protocol import CrossValidatedHead
from mer_heads.reports.figure import basis
from mer_heads.reports.run import (confusion_figure, layer_weights_figure, markdown_report,
                                   summary_table)
from mer_heads.rundir import RUN_FILE, RUN_OUTPUTS, check_fingerprints, load_run, save_run
from mer_heads.runtime import record



@dataclass
class FitResult:
    estimator: CrossValidatedHead
    metrics: dict[str, Any]
    run_dir: Path
    seconds: float

    def table(self) -> str:
        return summary_table(self.metrics)


@dataclass
class PredictResult:
    path: Path
    n: int
    imputed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fit_run(features: Sequence[str | Path | tuple[str, str | Path]], out: str | Path,
            head: HeadConfig | None = None, loading: DataConfig | None = None, *,
            train_split: str | None = None, test_split: str | None = None,
            semi: SemiSettings | None = None, augment: Sequence[StoreArg] = (),
            overwrite: bool = False, progress: bool | None = None, figures: bool = True,
            **options: Any) -> FitResult:
    """Cross-validate a head on ``features`` and write the run directory ``out``.

    ``head`` : the hyper-parameters (:class:`~mer_heads.config.HeadConfig`; default: its
    defaults); ``loading`` : how the stores are loaded (:class:`~mer_heads.config.DataConfig`);
    ``options`` : fields of either by keyword, applied over them (``model="logreg"``,
    ``folds=3``, ``input="frames"``, ``manifest=...``). ``semi`` adds pseudo-labelled
    unlabelled training clips (:mod:`mer_heads.experiments.semi`); the run keeps the last
    round's head, and metrics.json a ``semi`` section with every round. ``augment``: corrupted
    copies of the stores (``"audio=noisy.h5"``, one per copy; multi-condition training, see
    :meth:`CrossValidatedHead.fit <mer_heads.protocol.CrossValidatedHead.fit>`), each checked
    against the clean store of its modality. Everything is checked before any work: the
    parameters, and that ``out`` can be written and holds no earlier run (unless
    ``overwrite``: its files are replaced once the new run is fitted). ``progress``: False
    shows nothing on stderr while it works (:mod:`mer_heads.progress`). ``figures``: False
    writes no PNG (confusion, reliability, layer weights; report.md then links none), for
    scripts fitting many heads: drawing them takes ~0.8 CPU s a run; nothing else changes.
    """
    if not isinstance(figures, bool):
        raise ParameterError(f"figures must be True or False; got {figures!r}.", "figures")
    start = time.perf_counter()
    head, loading = split_options(head, loading, options)
    get_head(head.model).check_runtime(head)  # a GPU asked for and not there
    check_learned(head.model, loading.layers)
    if semi is not None:
        semi = semi.check()
    fits = 1 + (semi.rounds if semi is not None and semi.strategy != "none" else 0)
    with output_folder(out, marker=RUN_FILE, overwrite=overwrite, what="run") as out, \
            tracking("mer-heads fit", fits, progress):
        return _fit_run(features, out, start, head, loading, train_split=train_split,
                        test_split=test_split, semi=semi, augment=list(augment),
                        overwrite=overwrite, figures=figures)


def _fit_run(features, out: Path, start: float, head: HeadConfig, loading: DataConfig, *,
             train_split, test_split, semi, augment, overwrite, figures) -> FitResult:
    data = load_dataset(features, loading)
    augment_conds, copies = load_augment(augment, data, loading)
    train_mask, test_mask = split_rows(data, train_split, test_split)
    where = f" of --train-split '{train_split}'" if train_split is not None else ""
    if not (data.labels[train_mask] >= 0).any():
        raise DataError(
            f"None of the {int(train_mask.sum())} training clips{where} has a discrete label; "
            "labels come from the manifest at extraction (re-run it with a labelled manifest: "
            "only labels are refreshed) or from --manifest PATH.")
    hidden = None
    if semi is not None and semi.hide_labels is not None:
        data, hidden = hide_training_labels(data, train_mask, semi.hide_labels, head.seed,
                                            folds=head.folds, groups=head.groups,
                                            folds_from=head.folds_from, targets=head.targets)
    train_data = data.subset(train_mask)
    train_copies = [c.subset(train_mask) for c in copies]
    semi_result = None
    if semi is None:
        est = CrossValidatedHead.from_config(head).fit(train_data, augment=train_copies)
    else:
        semi_result = fit_semi(train_data, semi, head, hidden=hidden, augment=train_copies)
        est = semi_result.estimator
    metrics = build_metrics(est, data, train_data, train_mask, test_mask)
    metrics["notes"] += split_notes(metrics["clips"]["splits"], train_split, test_split)
    metrics["layers"] = loading.layers
    if loading.layers == "learned":
        metrics["layer_weights"] = weights_json(est.keys_, est.layer_weights_)
    metrics["augment"] = augment_json(est, augment_conds)
    if semi_result is not None:
        metrics["semi"] = semi_result.to_json()
    test_rows = np.flatnonzero(test_mask)
    test_predictions = None
    if len(test_rows):
        test_data = data.subset(test_rows)
        proba, outputs, imputed = est.predict_outputs(test_data)
        test_predictions = (test_data.names, proba, outputs)
        labelled = np.flatnonzero(test_data.labels >= 0)
        metrics["test_split"] = test_split
        if len(labelled):
            metrics["test"] = est.score_predictions(test_data, labelled, proba[labelled],
                                                    outputs[labelled]).to_json()
            metrics.update(split_statistics(est, test_data, labelled, proba[labelled],
                                           outputs[labelled]))
        if imputed.any():
            metrics["notes"].append(f"{int(imputed.sum())} test clip(s) had no usable modality; "
                                    "predicted the training prior and mean valence")
    # Everything is computed: only now is an earlier run replaced (run.json first, so a
    # failure from here on leaves a folder that is not a run rather than a mix of two runs).
    if overwrite:
        remove_outputs(out, RUN_OUTPUTS)
    if test_predictions is not None:
        write_predictions(out / "test_predictions.csv", *test_predictions, est.classes_,
                          est.targets_)
    dump_json(metrics, out / "metrics.json")
    _write_oof(out / "oof_predictions.csv", est, train_data)
    seconds = time.perf_counter() - start
    if figures:
        _draw_figures(est, metrics, train_data, out)
    write_text(out / "report.md", markdown_report(metrics, seconds=seconds, figures=figures))
    save_run(est, out, data.modalities, layers=loading.layers, max_frames=loading.max_frames,
             extra={"train_split": train_split, "test_split": test_split,
                    "manifest": loading.to_json()["manifest"], "join": loading.join,
                    "semi": None if semi is None else semi.to_json(),
                    "pseudo_clips": [] if semi_result is None else semi_result.used_clips(),
                    "augment": metrics["augment"],
                    **({"label_map": str(loading.label_map)} if loading.label_map else {})})
    return FitResult(est, metrics, out, seconds)


def _draw_figures(est: CrossValidatedHead, metrics: dict[str, Any], train_data: MultimodalData,
                  out: Path) -> None:
    """The run's PNGs: confusion.png, reliability.png and, with learned layer weights,
    layer_weights.png. The first two rest on the same pooled held-out predictions, and their
    titles say so in the same words."""
    rests_on = basis(metrics["cv"]["n"], n_folds_shown(est.folds, est.fold_plan_.to_json()),
                     range(est.seed, est.seed + est.seeds))
    confusion_figure(np.array(metrics["confusion"]), out / "confusion.png",
                     f"{est.model}, {'+'.join(est.keys_)}: CV F1 {metrics['cv']['f1']:.3f}\n"
                     + rests_on, classes=est.classes_)
    reliability_png(est, train_data, out / "reliability.png", rests_on)
    if metrics.get("layer_weights"):
        layer_weights_figure(metrics["layer_weights"], out / "layer_weights.png",
                             f"{est.model}: learned layer weights over {len(est.model_folds_)} "
                             "fold models")


def build_metrics(est: CrossValidatedHead, data: MultimodalData, train_data: MultimodalData,
                  train_mask: np.ndarray, test_mask: np.ndarray) -> dict[str, Any]:
    """metrics.json's content. Nothing here may depend on time, paths of the output or
    anything but the data and the seed: the file must be byte-identical across re-runs."""
    labels = train_data.labels
    rows = train_data.rows_of(est.train_names_)
    y = labels[rows]
    pred = est.oof_proba_.argmax(1)
    scores = est.model_scores_
    classes = tuple(est.classes_)
    fields = ("f1", "accuracy", "mse", "metric", "ua", "wa", "macro_f1")

    def stat(fn, key):
        values = [getattr(s, key) for s in scores]
        return None if any(v is None for v in values) else float(fn(values))

    from sklearn.metrics import f1_score

    per_class = f1_score(y, pred, labels=list(range(len(classes))), average=None,
                         zero_division=0)
    counts = np.bincount(y, minlength=len(classes))
    return {**run_statistics(est, train_data, rows),
        "model": est.model,
        "params": est.get_params(),
        "precision": est.precision_,
        "runtime": record(est.device_, est.precision_, est.threads),
        "batch_size_used": int(est.batch_size_),
        "input": est.input_,
        "has_valence": est.has_valence_,
        "cv": est.cv_scores_.to_json(),
        "mean": {k: stat(np.mean, k) for k in fields},
        "std": {k: stat(np.std, k) for k in fields},
        "models": [{"fold": int(f), "seed": int(s), "best_epoch": int(e), **sc.to_json()}
                   for f, s, e, sc in zip(est.model_folds_, est.model_seeds_, est.best_epochs_,
                                          scores)],
        "confusion": confusion(y, pred, len(classes)),
        "per_class_f1": {e: float(v) for e, v in zip(classes, per_class)},
        "classes": list(classes),
        "targets": list(est.targets_),
        "clips": {"total": len(data), "labelled": int((data.labels >= 0).sum()),
                  "train": len(est.train_names_), "dropped_no_modality": len(est.dropped_),
                  "test": int(test_mask.sum()),
                  "splits": _split_counts(train_data, est.train_names_),
                  "classes": {e: int(c) for e, c in zip(classes, counts)}},
        "modalities": [{**m.to_json(), "present": int(data.present[:, i].sum())}
                       for i, m in enumerate(data.modalities)],
        "curve": [float(v) for v in est.curve_],
        "folds": est.fold_plan_.to_json(),
        "normalize_by": est.normalized_by_,
        "scores": fold_scores(est, train_data, rows),
        "notes": list(est.notes_),
    }


def fold_scores(est: CrossValidatedHead, train_data: MultimodalData, rows: np.ndarray
                ) -> dict[str, Any]:
    """metrics.json's ``scores``: every metric of the held-out predictions
    (:func:`~mer_heads.metrics.metrics_by_fold`), pooled over all of them (``pooled``: UA, WA,
    macro and weighted F1, per-class recall, precision and F1, confusion, MSE and CCC per
    target, the MER metric) and per fold (``folds``: the scalar metrics of each), with the
    mean and std (ddof 0) over folds; ``metric``: the ``--metric`` that ranks and picks
    epochs, resolved, with its pooled value and fold mean and std."""
    from mer_heads.metrics import metrics_by_fold, resolve_metric, scalar_metrics
    from mer_heads.stats.runs import target_pairs

    names = est.fold_plan_.fold_names or [str(k) for k in range(est.n_folds_)]
    true, pred = target_pairs(est, train_data, rows, est.oof_targets_)
    result = metrics_by_fold(
        train_data.labels[rows], est.oof_proba_.argmax(1),
        folds=np.array([names[f] for f in est.fold_], dtype=object), classes=est.classes_,
        true_targets=true, pred_targets=pred)
    metric = resolve_metric(est.metric, est.classes_)
    key = scalar_name(metric, result["pooled"])
    return {"metric": {"name": metric, "key": key, "pooled": result["pooled"].get(key),
                       "fold_mean": result["mean"].get(key), "fold_std": result["std"].get(key)},
            "pooled": result["pooled"], "mean": result["mean"], "std": result["std"],
            "n_folds": result["n_folds"], "n_folds_defined": result["n_folds_defined"],
            "folds": {f: scalar_metrics(m) for f, m in result["folds"].items()}}


CALIBRATED_ON = {
    "temperature": "the held-out predictions of the other folds' clips (never a clip the fold "
                   "holds out)",
    "temperature-train": "the fold models' predictions of their own training clips (never a "
                         "clip the fold holds out)"}
"""metrics.json's ``calibration.fitted_on`` per ``--calibrate`` method."""


def run_statistics(est: CrossValidatedHead, train_data: MultimodalData, rows: np.ndarray
                   ) -> dict[str, Any]:
    """metrics.json's statistics of the pooled held-out predictions (added keys; the others
    are unchanged): ``bootstrap`` (what was resampled) and ``ci`` (95% interval per scalar
    metric; :func:`mer_heads.stats.runs.run_intervals`: groups with ``--groups``, published
    folds as strata with ``--folds-from`` alone, the run's seed), ``ece``, ``brier``, ``nll``
    of the held-out probabilities, and with ``--calibrate temperature`` ``calibration``: the
    fold temperatures and the calibration before and after them."""
    from mer_heads.stats.runs import calibration_json, run_intervals, target_pairs

    y = train_data.labels[rows]
    true, pred = target_pairs(est, train_data, rows, est.oof_targets_)
    groups = train_data.groups(est.groups)
    strata = None
    if est.folds_from is not None and groups is None:
        strata = est.fold_
    out = run_intervals(
        y, est.oof_proba_.argmax(1), classes=est.classes_, proba=est.oof_proba_,
        true_targets=true, pred_targets=pred,
        groups=None if groups is None else groups[rows], groups_column=est.groups,
        strata=strata, strata_column=est.folds_from, seed=est.seed)
    out.update(calibration_json(y, est.oof_proba_))
    temperatures = getattr(est, "temperatures_", None)
    if temperatures is not None:
        out["calibration"] = {"method": est.calibrate,
                              "fitted_on": CALIBRATED_ON[est.calibrate],
                              "temperatures": [float(t) for t in temperatures],
                              "before": calibration_json(y, est.oof_proba_uncalibrated_),
                              "after": calibration_json(y, est.oof_proba_)}
    return out


def split_statistics(est: CrossValidatedHead, test_data: MultimodalData, rows: np.ndarray,
                    proba: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """metrics.json's ``test_ci`` and ``test_bootstrap`` (the test split's 95% intervals, as
    ``ci``/``bootstrap`` of the held-out predictions: groups with ``--groups``, the run's
    seed) and ``test_calibration`` (ECE, Brier, NLL of the fold ensemble's probabilities,
    calibrated with --calibrate)."""
    from mer_heads.stats.runs import calibration_json, run_intervals, target_pairs

    true, pred = target_pairs(est, test_data, rows, outputs)
    groups = test_data.groups(est.groups)
    y = test_data.labels[rows]
    r = run_intervals(y, proba.argmax(1), classes=est.classes_, proba=proba,
                      true_targets=true, pred_targets=pred,
                      groups=None if groups is None else groups[rows], groups_column=est.groups,
                      seed=est.seed)
    return {"test_ci": r["ci"], "test_bootstrap": r["bootstrap"],
            "test_calibration": calibration_json(y, proba)}


def reliability_png(est: CrossValidatedHead, train_data: MultimodalData, path: Path,
                    rests_on: str) -> Path:
    """The reliability diagram of the held-out probabilities (and, with ``--calibrate
    temperature``, of those before calibration), beside the confusion figure; ``rests_on``:
    the clips, folds and seeds it rests on (:func:`~mer_heads.reports.figure.basis`)."""
    from mer_heads.stats.calibration import reliability, reliability_figure

    y = train_data.labels[train_data.rows_of(est.train_names_)]
    diagrams = {"held-out": reliability(y, est.oof_proba_)}
    if getattr(est, "temperatures_", None) is not None:
        diagrams = {"before temperature": reliability(y, est.oof_proba_uncalibrated_),
                    "after temperature": diagrams["held-out"]}
    return reliability_figure(diagrams, path, title=f"{est.model}, {'+'.join(est.keys_)}: "
                              f"reliability of the pooled held-out predictions\n{rests_on}")


def scalar_name(metric: str, pooled: dict[str, Any]) -> str:
    """The :func:`~mer_heads.metrics.scalar_metrics` name of a resolved ``--metric``: ``mer``
    is F1 alone when nothing scored valence."""
    if metric == "mer":
        return "mer" if "mer" in pooled else "f1"
    return metric


def _split_counts(train_data: MultimodalData, names: list[str]) -> dict[str, int]:
    """The labelled clips trained on, counted by their split (the manifest's column)."""
    splits = train_data.split[train_data.rows_of(names)]
    return {str(s): int((splits == s).sum()) for s in sorted(set(splits.tolist()))}


def split_notes(splits: dict[str, int], train_split: str | None, test_split: str | None
                ) -> list[str]:
    """A warning when the run trained on the labelled clips of a held-out-looking split (test,
    dev, val, eval ...) beside others because no split was chosen: scoring those clips later
    would score training clips. Splits that are not held-out sets by name (RAVDESS's split is
    the actor) say nothing."""
    named = {s: n for s, n in splits.items() if s}
    if train_split is not None or test_split is not None or len(named) < 2:
        return []
    held = [s for s in named if _held_out_name(s)]
    if not held:
        return []
    counts = ", ".join(f"{s} {n}" for s, n in named.items())
    other = held[0]
    first = "train" if "train" in named else next(s for s in named if s != other)
    return [f"warning: the run trained on the labelled clips of every split ({counts}): no "
            f"--train-split or --test-split was given, so its predictions of the '{other}' "
            f"clips are predictions of training clips; to hold them out, fit with "
            f"--train-split {first} --test-split {other}"]


HELD_OUT_SPLITS = ("test", "dev", "val", "valid", "validation", "eval", "evaluation", "heldout",
                   "held-out", "held_out")


def _held_out_name(split: str) -> bool:
    """Whether a split's name says it is held out: one of :data:`HELD_OUT_SPLITS`, or one of
    them followed by a number or a separator (``test1``, ``test_a``, ``dev-2``)."""
    low = split.strip().lower()
    return any(low == n or (low.startswith(n) and not low[len(n)].isalpha())
               for n in HELD_OUT_SPLITS)


def augment_json(est: CrossValidatedHead, conds: list[Condition]) -> dict[str, Any] | None:
    """metrics.json's ``augment``: the corrupted training copies (stores, noise specs and
    seeds) and the copies each fold model trained on; None without ``--augment``."""
    if not conds:
        return None
    return {"copies": [c.to_json() for c in conds],
            "statistics": "each fold's training clips and their copies",
            "per_model": [int(v) for v in est.n_augmented_]}


def _write_oof(path: Path, est: CrossValidatedHead, train_data: MultimodalData) -> None:
    """Every training clip's held-out prediction: its fold (its published name with
    ``--folds-from``), label, valence and their predictions, the other targets' values and
    predictions (``T`` and ``pred_T``) and one probability column per class."""
    rows = train_data.rows_of(est.train_names_)
    classes = est.classes_
    names = est.fold_plan_.fold_names
    others = [(j, t) for j, t in enumerate(est.targets_) if t != "valence"]
    values = {t: train_data.target(t) for _, t in others}
    write_rows(path, ["name", "fold", "discrete", "valence", "pred_discrete", "pred_valence",
                      *(c for _, t in others for c in (t, f"pred_{t}")),
                      *(f"p_{e}" for e in classes)],
               ([est.train_names_[i], names[est.fold_[i]] if names else int(est.fold_[i]),
                 train_data.discrete[row], _fmt(train_data.valence[row]),
                 classes[int(est.oof_proba_[i].argmax())],
                 _fmt(est.oof_valence_[i]) if est.has_valence_ else "",
                 *(v for j, t in others for v in (_fmt(values[t][row]),
                                                  _fmt(est.oof_targets_[i, j]))),
                 *(f"{p:.6f}" for p in est.oof_proba_[i])] for i, row in enumerate(rows)))


def _fmt(v: float) -> str:
    return "" if not math.isfinite(v) else f"{v:.6f}"


def write_submission(path: str | Path, names: list[str], proba: np.ndarray,
                     valence: np.ndarray) -> Path:
    """The MER 2023 submission format: ``name,discrete,valence`` (valence empty when none)."""
    path = Path(path)
    return write_rows(path, ["name", "discrete", "valence"],
                      ([name, EMOTIONS[int(np.argmax(p))], _fmt(float(v))]
                       for name, p, v in zip(names, proba, valence)))


def is_mer_format(classes: Sequence[str], targets: Sequence[str]) -> bool:
    """Whether predictions over ``classes`` and ``targets`` are written in the MER 2023
    submission format: MER 2023's six classes and valence (or no target)."""
    return tuple(classes) == tuple(EMOTIONS) and tuple(targets) in (("valence",), ())


def write_predictions(path: str | Path, names: list[str], proba: np.ndarray,
                      outputs: np.ndarray, classes: Sequence[str], targets: Sequence[str]
                      ) -> Path:
    """Predictions of ``names``: the MER 2023 submission format (:func:`write_submission`)
    for MER 2023's classes and valence; otherwise ``name,discrete``, one column per target
    (six decimals, empty when not learnt) and one probability column ``p_<class>`` per class
    (six decimals), in the run's order."""
    if is_mer_format(classes, targets):
        valence = outputs[:, 0] if len(targets) else np.full(len(names), np.nan)
        return write_submission(path, names, proba, valence)
    return write_rows(Path(path), ["name", "discrete", *targets, *(f"p_{c}" for c in classes)],
                      ([name, classes[int(np.argmax(p))],
                        *(_fmt(float(v)) for v in o[:len(targets)]), *(f"{q:.6f}" for q in p)]
                       for name, p, o in zip(names, proba, outputs)))


def predict_run(run: str | Path, out: str | Path,
                features: Sequence[str | Path | tuple[str, str | Path]] | None = None, *,
                join: str = "exact", manifest: str | Path | None = None) -> PredictResult:
    """Write ``out`` (``name,discrete,valence``) for every clip of ``features`` (default: the
    run's own stores) from the fold ensemble of ``run``. Stores must have the fingerprints the
    run was trained on. A run fitted with ``--normalize-by COL`` normalises the clips within
    their own COL groups, read from the stores or from ``manifest``. Beside ``out`` it writes
    ``OUT.run.json``: the run, and which predicted clips the run trained on
    (:mod:`mer_heads.provenance`; ``evaluate`` warns when it scores them)."""
    run_files = [Path(run) / name for name in RUN_OUTPUTS]
    check_out_file(out, inputs=[*run_files, *(parse_store_arg(f)[1] for f in features or ()),
                                *([Path(manifest)] if manifest is not None else [])])
    est, info = load_run(run)
    stored = [(m["key"], m["path"]) for m in info["modalities"]]
    if not features:
        specs: list = stored
    else:
        specs = []
        run_keys = [k for k, _ in stored]
        for i, spec in enumerate(features):
            key, path = parse_store_arg(spec)
            # A bare path takes the run's key at the same position, so a run fitted with
            # key=path arguments can be given plain paths in the same order. A key that names
            # a modality stays the store's own, so a store given out of order is named as such.
            if key is None and i < len(run_keys) and run_keys[i] not in STORE_MODALITIES:
                key = run_keys[i]
            specs.append((key, path) if key else path)
    check_out_file(out, inputs=[parse_store_arg(s)[1] for s in specs])
    data = load_dataset(specs, input=info["input"], join=join, layers=info["layers"],
                        max_frames=info["max_frames"], manifest=manifest,
                        normalize_by=info.get("normalize_by"))
    check_fingerprints(info, data.modalities)
    proba, outputs, imputed = est.predict_outputs(data)
    names = data.names
    path = write_predictions(out, names, proba, outputs, est.classes_, est.targets_)
    result = PredictResult(path, len(names), [n for n, i in zip(names, imputed) if i],
                           notes=list(data.notes))  # e.g. a --normalize-by group of one clip
    result.notes += write_provenance(path, run, info, names)  # clips the run trained on
    if result.imputed:
        prior = est.classes_[int(np.argmax(est.prior_))]
        result.notes.append(
            f"{len(result.imputed)} clip(s) have no usable modality and were given the training "
            f"prior class '{prior}' and mean valence ({listed(result.imputed)}); listed in "
            f"'{path.with_suffix('.imputed.txt')}'")
        write_text(path.with_suffix(".imputed.txt"), "\n".join(result.imputed) + "\n")
    else:
        # A list left by an earlier prediction to the same file would describe other clips.
        remove_outputs(path.parent, [path.with_suffix(".imputed.txt").name])
    if not est.has_valence_ and "valence" in est.targets_:
        result.notes.append("the run learnt no valence: the valence column is empty")
    return result


__all__ = ["FitResult", "PredictResult", "Scores", "build_metrics", "fit_run", "fold_scores",
           "is_mer_format", "predict_run", "run_statistics", "split_statistics",
           "write_predictions", "write_submission"]
