"""How the pseudo-label threshold changes semi-supervised results (open question 2 of the MER
2023 paper): one strategy of :mod:`mer_heads.experiments.semi` over a list of values.

The supervised head is cross-validated once; every value then runs the strategy's rounds from
it (the same teacher and the same folds: the pool clips only join training parts, so the
held-out folds, and the clips scored, are the supervised run's for every value). The value is
the confidence threshold T of ``threshold`` and ``weak-reinforce`` or the quantile Q of
``class-quantile``. Per value (its last round): the clips added per class (mean over the fold
models' teachers), the distinct pool clips used, with ``hide_labels`` (a simulation: a
stratified, seeded fraction of the labels is hidden before the folds are drawn and the hidden
clips are the pool) the accuracy of the pseudo-labels assigned (pooled over folds) and of the
teacher over the whole pool, and the CV scores with their change against the supervised run.

How large a change the folds can tell from noise: a round that adds clips re-draws the
training randomness of its fold models (minibatch order, dropout), and on small folds that
alone moves the CV metric. So the supervised head is also fitted with ``baseline_seeds - 1``
further training seeds (``seed + 1``, ...) on the same folds, and the report gives the mean and
standard deviation (ddof 1) of its CV scores over those seeds; a value whose CV metric lies
within the mean ± :data:`NOISE_BAND` standard deviations is marked ``within noise``: its folds
cannot tell its change from a change of seed.

Writes ``semi_sweep.md`` (printed), ``.csv`` (one row per value), ``.json`` (byte-identical for
the same inputs and seed; every round of every value) and ``semi_sweep.png`` (clips added and
pseudo-label accuracy, and the change of the CV metric, against the value).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mer_features import EMOTIONS
from mer_heads.config import DataConfig, HeadConfig, SemiSettings, split_options
from mer_heads.data.dataset import MultimodalData, load_dataset, split_rows
from mer_heads.data.labels import parse_number
from mer_heads.errors import DataError, ParameterError
from mer_heads.experiments.semi import fit_semi, hide_training_labels
from mer_heads.heads import get_head
from mer_heads.heads.layers import check_learned
from mer_heads.outputs import dump_json, output_folder, write_csv, write_text
from mer_heads.progress import tracking, unit
from mer_heads.protocol import CrossValidatedHead
from mer_heads.reports.result import ReportResult

SWEPT = ("threshold", "class-quantile", "weak-reinforce")
def csv_columns(classes: Sequence[str] = EMOTIONS) -> tuple[str, ...]:
    """The CSV's columns for a run over ``classes``: one ``added_<class>`` per class."""
    return ("value", "added_clips", "added_total", *(f"added_{e}" for e in classes),
            "pseudo_accuracy", "teacher_accuracy", "cv_f1", "cv_mse", "cv_metric",
            "delta_f1", "delta_mse", "delta_metric", "within_noise", "cv_ua", "cv_wa",
            "cv_macro_f1", "delta_ua", "delta_wa", "delta_macro_f1")


CSV_COLUMNS = csv_columns()
"""The CSV's columns on MER 2023's classes."""
BASELINE_SEEDS = 5
"""Training seeds of the supervised baseline whose spread the sweep reports (the first is the
supervised run every value starts from)."""
NOISE_BAND = 2.0
"""A value is within noise when its CV metric is within this many standard deviations of the
baseline's mean over its training seeds."""


@dataclass(kw_only=True)
class SemiSweepResult(ReportResult):
    """``rows``: one dict per value, as in the CSV; ``supervised``: the supervised CV scores."""

    stem = "semi_sweep"

    rows: list[dict[str, Any]]
    supervised: dict[str, Any]


def parse_values(text: str | Sequence[float]) -> list[float]:
    """``"0.5,0.6,0.7"`` (or a sequence of numbers) -> [0.5, 0.6, 0.7]; refuses an empty list,
    a word that is not a number and repeated values."""
    if isinstance(text, str):
        words = [w.strip() for w in text.split(",")]
        values = []
        for w in words:
            try:
                values.append(parse_number(w, finite=False))  # not 0_5, as float() would
            except ValueError:
                raise ParameterError(f"values must be comma-separated numbers, e.g. "
                                     f"0.5,0.7,0.9; got {w!r} in {text!r}.", "values") from None
    else:
        values = [v for v in text]
    if not values:
        raise ParameterError("values needs at least one value, e.g. 0.5,0.7,0.9.", "values")
    if len(set(values)) < len(values):
        raise ParameterError(f"values lists a value twice ({values}); give each once.", "values")
    return values


def _settings(strategy: str, value: float, **kw: Any) -> SemiSettings:
    if strategy == "class-quantile":
        return SemiSettings(strategy=strategy, quantile=value, **kw)
    return SemiSettings(strategy=strategy, threshold=value, **kw)


def semi_sweep(features: Sequence[str | Path | tuple[str, str | Path]], out: str | Path,
               head: HeadConfig | None = None, loading: DataConfig | None = None, *,
               strategy: str, values: str | Sequence[float], hide_labels: float | None = None,
               rounds: int = 1, teacher: str = "fold", train_split: str | None = None,
               baseline_seeds: int = BASELINE_SEEDS, overwrite: bool = False,
               progress: bool | None = None, **options: Any) -> SemiSweepResult:
    """Run ``strategy`` for every value of ``values`` from one supervised head; write
    ``out/semi_sweep.{md,csv,json,png}`` (see the module docstring).

    Parameters
    ----------
    features, head, loading, options, train_split : as for
        :func:`~mer_heads.experiments.fit.fit_run`.
    strategy : ``threshold``, ``class-quantile`` or ``weak-reinforce``.
    values : thresholds in (0, 1] (quantiles in [0, 1] for ``class-quantile``), as a list or
        ``"0.5,0.6,0.7"``.
    hide_labels : the simulation: hide this fraction of the labels, in (0, 1) (``--hide-labels``);
        None: the pool is the stores' unlabelled clips.
    rounds, teacher : as ``--semi-rounds`` and ``--semi-teacher``.
    baseline_seeds : training seeds of the supervised baseline (>= 1; 1: no spread), on its
        folds: the noise a value's change is compared with.
    progress : False: nothing on stderr while it works (:mod:`mer_heads.progress`).
    """
    start = time.perf_counter()
    head, loading = split_options(head, loading, options)
    if strategy not in SWEPT:
        raise ParameterError(f"The swept strategy must be one of {', '.join(SWEPT)}; got "
                             f"{strategy!r}.", "strategy")
    values = parse_values(values)
    if isinstance(baseline_seeds, bool) or not isinstance(baseline_seeds, (int, np.integer)) \
            or not 1 <= baseline_seeds <= 100:
        raise ParameterError(f"baseline_seeds must be an integer in [1, 100]; got "
                             f"{baseline_seeds!r}.", "baseline_seeds")
    if head.seed + baseline_seeds - 1 + head.seeds > 2**32 - 1:
        raise ParameterError(f"seed must leave room for {baseline_seeds} baseline seeds; got "
                             f"{head.seed}.", "seed")
    settings = [_settings(strategy, v, rounds=rounds, teacher=teacher, hide_labels=hide_labels)
                for v in values]  # each value checked here, before any work
    get_head(head.model).check_runtime(head)
    check_learned(head.model, loading.layers)
    with output_folder(out, marker=f"{SemiSweepResult.stem}.json", overwrite=overwrite,
                       what="semi-supervised sweep") as out, \
            tracking("mer-heads semi-sweep", baseline_seeds + len(values) * rounds, progress):
        return _sweep(features, out, start, head, loading, strategy, values, settings,
                      train_split, baseline_seeds)


def _sweep(features, out: Path, start: float, head: HeadConfig, loading: DataConfig,
           strategy: str, values: list[float], settings: list[SemiSettings],
           train_split: str | None, baseline_seeds: int) -> SemiSweepResult:
    data = load_dataset(features, loading)
    train_mask, _ = split_rows(data, train_split, None)
    if not (data.labels[train_mask] >= 0).any():
        raise DataError("None of the training clips has a discrete label; labels come from "
                        "the manifest at extraction or from --manifest PATH.")
    hide = settings[0].hide_labels
    hidden = None
    if hide is not None:
        data, hidden = hide_training_labels(data, train_mask, hide, head.seed, folds=head.folds,
                                            groups=head.groups, folds_from=head.folds_from,
                                            targets=head.targets)
    train = data.subset(train_mask)
    labelled = np.flatnonzero(train.labels >= 0)
    with unit("supervised"):
        supervised = CrossValidatedHead.from_config(head).fit(train.subset(labelled))
    base = supervised.cv_scores_.to_json()
    baseline = _baseline(train.subset(labelled), head, supervised, baseline_seeds)
    rows, details, notes = [], [], set(supervised.notes_)
    for value, s in zip(values, settings):
        result = fit_semi(train, s, head, hidden=hidden, supervised=supervised)
        notes.update(result.estimator.notes_)
        last = result.rounds[-1]
        accuracy = last.get("pseudo_accuracy") or {}
        row: dict[str, Any] = {"value": float(value), "added_clips": last["added_clips"],
                               "added_total": last["added_total"],
                               **{f"added_{e}": last["added"][e] for e in data.classes},
                               "pseudo_accuracy": accuracy.get("overall"),
                               "teacher_accuracy": accuracy.get("teacher")}
        for k in ("f1", "mse", "metric", "ua", "wa", "macro_f1"):
            row[f"cv_{k}"] = last["cv"][k]
            row[f"delta_{k}"] = (None if last["cv"][k] is None or base[k] is None
                                 else last["cv"][k] - base[k])
        row["within_noise"] = _within(baseline, last["cv"])
        rows.append(row)
        details.append({"value": float(value), "rounds": result.rounds[1:],
                        "pseudo_accuracy_per_class": accuracy.get("per_class")})
    notes_list = sorted(notes)
    report = {"strategy": strategy, "values": [float(v) for v in values],
              "settings": {k: v for k, v in settings[0].to_json().items()
                           if k not in ("threshold", "quantile")},
              "params": head.to_json(), "input": loading.input, "layers": loading.layers,
              "train_split": train_split, "pool": len(hidden.names) if hidden else
              int(((train.labels < 0) & train.present.any(axis=1)).sum()),
              "labelled": len(labelled), "folds": supervised.fold_plan_.to_json(),
              "supervised": base, "baseline": baseline, "rows": rows, "details": details,
              "notes": notes_list, "classes": list(data.classes)}
    from mer_heads.reports.semi_sweep import markdown_sweep, sweep_figure

    result = SemiSweepResult(out=out, rows=rows, supervised=base, notes=notes_list)
    write_csv(result.csv_path, csv_columns(data.classes), rows)
    dump_json(report, result.json_path)
    write_text(result.markdown_path, markdown_sweep(report))
    sweep_figure(report, result.png_path)
    result.seconds = time.perf_counter() - start
    return result


def _baseline(labelled: MultimodalData, head: HeadConfig, supervised: CrossValidatedHead,
              n_seeds: int) -> dict[str, Any]:
    """The supervised head's CV scores over ``n_seeds`` training seeds (``head.seed`` is
    ``supervised``) on ``supervised``'s folds: their values, mean and std (ddof 1), and the
    band a value's CV metric must leave to be told from noise."""
    fold_of = np.zeros(len(labelled), np.int64)
    fold_of[labelled.rows_of(supervised.train_names_)] = supervised.fold_
    runs = [supervised.cv_scores_]
    for i in range(1, n_seeds):
        with unit(f"supervised baseline, training seed {head.seed + i}"):
            est = CrossValidatedHead.from_config(replace(head, seed=head.seed + i)).fit(
                labelled, fold_of=fold_of)
        runs.append(est.cv_scores_)
    out: dict[str, Any] = {"seeds": [head.seed + i for i in range(n_seeds)],
                           "folds": "the supervised run's", "band": NOISE_BAND}
    for key in ("f1", "mse", "metric"):
        values = [getattr(s, key) for s in runs]
        ok = all(v is not None for v in values)
        out[key] = values if ok else None
        out[f"{key}_mean"] = float(np.mean(values)) if ok else None
        out[f"{key}_std"] = float(np.std(values, ddof=1)) if ok and n_seeds > 1 else None
    return out


def _within(baseline: dict[str, Any], cv: dict[str, Any]) -> bool | None:
    """Whether the CV metric (F1 without valence) ``cv`` is within the baseline's noise band;
    None with a single baseline seed."""
    key = "metric" if baseline.get("metric_std") is not None else "f1"
    mean, std = baseline.get(f"{key}_mean"), baseline.get(f"{key}_std")
    if std is None or cv.get(key) is None:
        return None
    return bool(abs(cv[key] - mean) <= NOISE_BAND * std)


__all__ = ["BASELINE_SEEDS", "CSV_COLUMNS", "NOISE_BAND", "SWEPT", "SemiSweepResult", "csv_columns",
           "parse_values", "semi_sweep"]
