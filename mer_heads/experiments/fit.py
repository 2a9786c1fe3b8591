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
from mer_heads.errors import DataError, listed
from mer_heads.experiments.conditions import Condition, StoreArg, load_augment
from mer_heads.experiments.semi import fit_semi, hide_training_labels
from mer_heads.heads import get_head
from mer_heads.heads.layers import check_learned, weights_json
from mer_heads.metrics import Scores, confusion, score
from mer_heads.outputs import (check_out_file, dump_json, output_folder, remove_outputs,
                               write_rows, write_text)
from mer_heads.progress import tracking
from mer_heads.provenance import write_provenance
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
            overwrite: bool = False, progress: bool | None = None,
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
    shows nothing on stderr while it works (:mod:`mer_heads.progress`).
    """
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
                        overwrite=overwrite)


def _fit_run(features, out: Path, start: float, head: HeadConfig, loading: DataConfig, *,
             train_split, test_split, semi, augment, overwrite) -> FitResult:
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
                                            folds=head.folds, groups=head.groups)
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
        names, proba, valence, imputed = _predict(est, test_data)
        test_predictions = (names, proba, valence)
        labelled = test_data.labels >= 0
        metrics["test_split"] = test_split
        if labelled.any():
            metrics["test"] = score(
                test_data.labels[labelled], proba[labelled].argmax(1),
                test_data.valence[labelled] if est.has_valence_ else None,
                valence[labelled]).to_json()
        if imputed.any():
            metrics["notes"].append(f"{int(imputed.sum())} test clip(s) had no usable modality; "
                                    "predicted the training prior and mean valence")
    # Everything is computed: only now is an earlier run replaced (run.json first, so a
    # failure from here on leaves a folder that is not a run rather than a mix of two runs).
    if overwrite:
        remove_outputs(out, RUN_OUTPUTS)
    if test_predictions is not None:
        write_submission(out / "test_predictions.csv", *test_predictions)
    dump_json(metrics, out / "metrics.json")
    _write_oof(out / "oof_predictions.csv", est, train_data)
    seconds = time.perf_counter() - start
    confusion_figure(np.array(metrics["confusion"]), out / "confusion.png",
                     f"{est.model}, {'+'.join(est.keys_)}: CV F1 {metrics['cv']['f1']:.3f}\n"
                     + basis(metrics["cv"]["n"], est.folds, range(est.seed, est.seed + est.seeds)))
    if metrics.get("layer_weights"):
        layer_weights_figure(metrics["layer_weights"], out / "layer_weights.png",
                             f"{est.model}: learned layer weights over {len(est.model_folds_)} "
                             "fold models")
    write_text(out / "report.md", markdown_report(metrics, seconds=seconds))
    save_run(est, out, data.modalities, layers=loading.layers, max_frames=loading.max_frames,
             extra={"train_split": train_split, "test_split": test_split,
                    "manifest": loading.to_json()["manifest"], "join": loading.join,
                    "semi": None if semi is None else semi.to_json(),
                    "pseudo_clips": [] if semi_result is None else semi_result.used_clips(),
                    "augment": metrics["augment"]})
    return FitResult(est, metrics, out, seconds)


def build_metrics(est: CrossValidatedHead, data: MultimodalData, train_data: MultimodalData,
                  train_mask: np.ndarray, test_mask: np.ndarray) -> dict[str, Any]:
    """metrics.json's content. Nothing here may depend on time, paths of the output or
    anything but the data and the seed: the file must be byte-identical across re-runs."""
    labels = train_data.labels
    y = labels[train_data.rows_of(est.train_names_)]
    pred = est.oof_proba_.argmax(1)
    scores = est.model_scores_
    fields = ("f1", "accuracy", "mse", "metric")

    def stat(fn, key):
        values = [getattr(s, key) for s in scores]
        return None if any(v is None for v in values) else float(fn(values))

    from sklearn.metrics import f1_score

    per_class = f1_score(y, pred, labels=list(range(len(EMOTIONS))), average=None, zero_division=0)
    counts = np.bincount(y, minlength=len(EMOTIONS))
    return {
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
        "confusion": confusion(y, pred),
        "per_class_f1": {e: float(v) for e, v in zip(EMOTIONS, per_class)},
        "classes": list(EMOTIONS),
        "clips": {"total": len(data), "labelled": int((data.labels >= 0).sum()),
                  "train": len(est.train_names_), "dropped_no_modality": len(est.dropped_),
                  "test": int(test_mask.sum()),
                  "splits": _split_counts(train_data, est.train_names_),
                  "classes": {e: int(c) for e, c in zip(EMOTIONS, counts)}},
        "modalities": [{**m.to_json(), "present": int(data.present[:, i].sum())}
                       for i, m in enumerate(data.modalities)],
        "curve": [float(v) for v in est.curve_],
        "folds": est.fold_plan_.to_json(),
        "normalize_by": est.normalized_by_,
        "notes": list(est.notes_),
    }


def _split_counts(train_data: MultimodalData, names: list[str]) -> dict[str, int]:
    """The labelled clips trained on, counted by their split (the manifest's column)."""
    splits = train_data.split[train_data.rows_of(names)]
    return {str(s): int((splits == s).sum()) for s in sorted(set(splits.tolist()))}


def split_notes(splits: dict[str, int], train_split: str | None, test_split: str | None
                ) -> list[str]:
    """A warning when the run trained on the labelled clips of several splits because none was
    chosen: scoring the clips of a split such as 'test' later would score training clips."""
    named = {s: n for s, n in splits.items() if s}
    if train_split is not None or test_split is not None or len(named) < 2:
        return []
    counts = ", ".join(f"{s} {n}" for s, n in named.items())
    other = next((s for s in named if s != "train"), sorted(named)[-1])
    first = "train" if "train" in named else next(s for s in named if s != other)
    return [f"warning: the run trained on the labelled clips of every split ({counts}): no "
            f"--train-split or --test-split was given, so its predictions of the '{other}' "
            f"clips are predictions of training clips; to hold them out, fit with "
            f"--train-split {first} --test-split {other}"]


def augment_json(est: CrossValidatedHead, conds: list[Condition]) -> dict[str, Any] | None:
    """metrics.json's ``augment``: the corrupted training copies (stores, noise specs and
    seeds) and the copies each fold model trained on; None without ``--augment``."""
    if not conds:
        return None
    return {"copies": [c.to_json() for c in conds],
            "statistics": "each fold's training clips and their copies",
            "per_model": [int(v) for v in est.n_augmented_]}


def _write_oof(path: Path, est: CrossValidatedHead, train_data: MultimodalData) -> None:
    rows = train_data.rows_of(est.train_names_)
    write_rows(path, ["name", "fold", "discrete", "valence", "pred_discrete", "pred_valence",
                      *(f"p_{e}" for e in EMOTIONS)],
               ([est.train_names_[i], int(est.fold_[i]), train_data.discrete[row],
                 _fmt(train_data.valence[row]), EMOTIONS[int(est.oof_proba_[i].argmax())],
                 _fmt(est.oof_valence_[i]) if est.has_valence_ else "",
                 *(f"{p:.6f}" for p in est.oof_proba_[i])] for i, row in enumerate(rows)))


def _fmt(v: float) -> str:
    return "" if not math.isfinite(v) else f"{v:.6f}"


def _predict(est: CrossValidatedHead, data: MultimodalData
             ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    proba, valence, imputed = est.predict_proba(data)
    return data.names, proba, valence, imputed


def write_submission(path: str | Path, names: list[str], proba: np.ndarray,
                     valence: np.ndarray) -> Path:
    """The MER 2023 submission format: ``name,discrete,valence`` (valence empty when none)."""
    path = Path(path)
    return write_rows(path, ["name", "discrete", "valence"],
                      ([name, EMOTIONS[int(np.argmax(p))], _fmt(float(v))]
                       for name, p, v in zip(names, proba, valence)))


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
    names, proba, valence, imputed = _predict(est, data)
    path = write_submission(out, names, proba, valence)
    result = PredictResult(path, len(names), [n for n, i in zip(names, imputed) if i],
                           notes=list(data.notes))  # e.g. a --normalize-by group of one clip
    result.notes += write_provenance(path, run, info, names)  # clips the run trained on
    if result.imputed:
        prior = EMOTIONS[int(np.argmax(est.prior_))]
        result.notes.append(
            f"{len(result.imputed)} clip(s) have no usable modality and were given the training "
            f"prior class '{prior}' and mean valence ({listed(result.imputed)}); listed in "
            f"'{path.with_suffix('.imputed.txt')}'")
        write_text(path.with_suffix(".imputed.txt"), "\n".join(result.imputed) + "\n")
    else:
        # A list left by an earlier prediction to the same file would describe other clips.
        remove_outputs(path.parent, [path.with_suffix(".imputed.txt").name])
    if not est.has_valence_:
        result.notes.append("the run learnt no valence: the valence column is empty")
    return result


__all__ = ["FitResult", "PredictResult", "Scores", "build_metrics", "fit_run", "predict_run",
           "write_submission"]
