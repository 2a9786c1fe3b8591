"""Typed settings of a run: the head's hyper-parameters, how stores become a dataset, and
semi-supervision.

Each is a frozen dataclass that validates itself when made, so an object that exists is a valid
one: a value out of range raises :class:`~mer_heads.errors.ParameterError` naming the parameter,
the rule and the value, before any store is opened (the command line adds the parameter's flag:
:func:`parameter_flag`). Every default lives here, once: the command line builds its options
from these fields (flag, help, choices) and the estimator's signature takes its defaults from
:class:`HeadConfig`.

``to_json``/``from_json`` give the dict written into ``run.json`` and ``metrics.json``
(``params``), and read it back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from mer_heads.errors import ParameterError
from mer_heads.runtime import (DEFAULT_PRECISION, DEFAULT_THREADS, DEVICE_PATTERN, PRECISIONS,
                              PREDICT_CHUNK)

INPUTS = ("utterance", "frames")
JOINS = ("exact", "inner")
LAYER_POOLING = ("mean", "flatten", "learned")
MAX_FRAMES = 64
STRATEGIES = ("none", "threshold", "class-quantile", "weak-reinforce")
TEACHERS = ("fold", "ensemble")
METRICS = ("auto", "mer", "f1", "ua", "wa", "macro_f1")
"""What ``--metric`` may name (:func:`mer_heads.metrics.resolve_metric`): the score that ranks
(leaderboards, ablation and robustness headlines) and that picks the epoch each fold model
keeps. ``auto`` is ``mer`` (F1 - 0.25 x valence MSE, F1 without valence) on MER 2023's classes
and ``ua`` on any other label set."""
CALIBRATIONS = ("none", "temperature")
"""What ``--calibrate`` may name (:mod:`mer_heads.stats.runs`)."""
MAX_SEED = 2**32 - 1
"""Seeds reach numpy's legacy RandomState (StratifiedKFold), which takes [0, 2**32 - 1]."""


def option(default: Any, flag: str | None, help: str = "", *, choices: Any = None,
           metavar: str | None = None, default_text: str | None = None,
           switch: Any = None) -> Any:
    """A dataclass field with what the command line needs to offer it: its ``flag``, ``help``
    (``{heads}`` is replaced by the heads that read it), ``choices`` (a tuple, or a function
    returning one) and how to show the default (``default_text``; by default the value, ""
    for none). ``switch``: the flag takes no value and sets the field to this value
    (``False`` for ``--no-progress``)."""
    return field(default=default, metadata={"flag": flag, "help": help, "choices": choices,
                                            "metavar": metavar, "default_text": default_text,
                                            "switch": switch})


def flag(cls: type, name: str) -> str:
    """The command-line flag of field ``name`` of the settings class ``cls``."""
    return next(f.metadata["flag"] for f in fields(cls) if f.name == name)


def _integer(value: Any) -> bool:
    import numpy as np

    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _finite(value: Any) -> bool:
    import numpy as np

    return (not isinstance(value, bool) and isinstance(value, (int, float, np.number))
            and math.isfinite(value))


def parameter_flag(name: str) -> str:
    """The command-line flag of the library parameter ``name``, for the command line to add to
    a :class:`~mer_heads.errors.ParameterError`: the flag of the settings field of that name
    (``folds`` -> ``--folds``, ``C`` -> ``-C``, ``strategy`` -> ``--semi``), else ``--`` and
    the name with dashes (``train_split`` -> ``--train-split``)."""
    if name == "runs":  # compare's positional RUN arguments
        return "RUN"
    for cls in (HeadConfig, DataConfig, SemiSettings):
        if any(f.name == name for f in fields(cls)) and flag(cls, name):
            return flag(cls, name)
    return "--" + name.replace("_", "-")


def _bad(name: str, rule: str, value: Any) -> ParameterError:
    return ParameterError(f"{name} must be {rule}; got {value!r}.", name)


def _check_column(name: str, value: Any) -> None:
    """A manifest column name (or None): a non-empty string without control characters."""
    if value is None:
        return
    if (not isinstance(value, str) or not value.strip() or value != value.strip()
            or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in value)):
        raise _bad(name, "the name of a manifest column (e.g. actor)", value)


_FOLDS_DEFAULT = 5
LABEL_COLUMNS = ("name", "discrete", "split", "video", "audio", "text")
"""Manifest columns that are not continuous targets."""


def _targets(value: Any) -> tuple[str, ...]:
    """``targets`` as a tuple of column names: a tuple/list, or ``"valence,arousal"`` (the
    command line); ``"none"`` or an empty sequence for none."""
    if isinstance(value, str):
        value = () if value.strip().lower() == "none" else value.split(",")
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
        raise _bad("targets", "numeric manifest columns separated by commas (e.g. "
                   "valence,arousal,dominance) or none", value)
    names = tuple(v.strip() for v in value)
    for name in names:
        _check_column("targets", name)
        if name in LABEL_COLUMNS:
            raise _bad("targets", f"numeric columns; '{name}' is not one", ",".join(names))
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _bad("targets", "distinct columns", ",".join(names))
    return names


def _known_heads() -> tuple[str, ...]:
    from mer_heads.heads import known_heads

    return known_heads()


def _model_help() -> str:
    from mer_heads.heads import get_head, known_heads

    return ", ".join(f"{n} ({get_head(n).help})" if get_head(n).help else n
                     for n in known_heads())


@dataclass(frozen=True)
class HeadConfig:
    """Hyper-parameters of :class:`~mer_heads.protocol.CrossValidatedHead` (see its docstring
    for what each does). ``HeadConfig(model="logreg", folds=3)``; ``replace(config, seed=1)``.
    """

    model: str = option("attention", "--model", choices=_known_heads)
    folds: int = option(_FOLDS_DEFAULT, "--folds", "stratified folds K, >= 2")
    groups: str | None = option(
        None, "--groups", "a manifest column whose groups never straddle folds (stratified "
        "group folds, e.g. actor or speaker: speaker-independent scores)", metavar="COL",
        default_text="none: clips stratified by class only")
    folds_from: str | None = option(
        None, "--folds-from", "a manifest column holding each clip's held-out fold (a "
        "published protocol, e.g. EmoBox's 'fold'): one fold per value, instead of drawn folds "
        "(--folds is not used; with --groups the fold plan names the groups each fold holds "
        "out)", metavar="COL", default_text="none: folds drawn with --seed")
    epochs: int = option(100, "--epochs", "training epochs of {heads}; the best one per fold is "
                         "kept")
    seed: int = option(0, "--seed", "seed of the folds and of all training randomness")
    seeds: int = option(1, "--seeds", "models per fold (an ensemble)")
    hidden: int = option(128, "--hidden", "hidden width H of {heads}")
    dropout: float = option(0.3, "--dropout", "dropout probability of {heads}, in [0, 1)")
    lr: float = option(1e-3, "--lr", "Adam's step size, > 0")
    weight_decay: float = option(1e-5, "--weight-decay", "Adam's L2 weight decay, >= 0")
    batch_size: int | None = option(
        None, "--batch-size", "clips per step per model",
        default_text="a fold's training clips / 4, within 32-1024")
    valence_weight: float = option(1.0, "--valence-weight", "weight of the valence MSE in the "
                                   "training loss, >= 0")
    modality_dropout: float = option(
        0.0, "--modality-dropout", "{heads}: mask each modality of a training clip with this "
        "probability per step (never all of a clip's modalities; none at evaluation), in [0, 1)",
        metavar="P")
    C: float = option(1.0, "-C", "inverse regularisation of {heads}, > 0")
    targets: tuple[str, ...] = option(
        ("valence",), "--targets", "continuous targets learnt beside the classes, numeric "
        "manifest columns separated by commas (each in the multi-task loss, scored by MSE and "
        "CCC); none for the classes alone", metavar="COL,COL", default_text="valence")
    metric: str = option(
        "auto", "--metric", "the score that ranks (leaderboard, ablation and robustness "
        "headlines) and picks the epoch each fold model keeps: mer (F1 - 0.25 x valence MSE, F1 "
        "without valence), f1 (weighted), ua, wa, macro_f1; auto: mer on MER 2023's classes, ua "
        "on any other label set", choices=METRICS)
    calibrate: str = option(
        "none", "--calibrate", "temperature: calibrate the class probabilities with one "
        "temperature per fold, fitted on the fold models' predictions of their own training "
        "clips (never a held-out clip), applied to held-out and predicted probabilities "
        "(changes confidence, never the class); metrics.json gives ECE/Brier/NLL before and "
        "after; none: the probabilities as trained", choices=CALIBRATIONS)
    precision: str = option(
        DEFAULT_PRECISION, "--precision", "precision of the matrix products of {heads}: fp32; "
        "bf16 (bfloat16 products, fp32 weights and sums: fast with AMX/AVX512-BF16 or a GPU, "
        "emulated and slow elsewhere); auto: bf16 where the device computes it natively, else "
        "fp32, decided from the device alone (never timed). Recorded in metrics.json",
        choices=PRECISIONS)
    device: str = option("cpu", "--device", "cpu, cuda, cuda:N or auto; the device of {heads}")
    threads: int = option(
        DEFAULT_THREADS, "--threads", "CPU threads of every head (torch, and the BLAS of "
        "numpy/scikit-learn): a fixed number, never the machine's core count, so a result does "
        "not depend on the machine or its load; more can be faster on a quiet machine and may "
        "change the last digits (docs/heads.md). Recorded in metrics.json")

    def __post_init__(self) -> None:
        known = _known_heads()
        if self.model not in known:
            raise _bad("model", f"one of {', '.join(known)}", self.model)
        if self.precision not in PRECISIONS:
            raise _bad("precision", f"one of {', '.join(PRECISIONS)}",
                       self.precision)
        for name, low in (("folds", 2), ("epochs", 1), ("seeds", 1), ("hidden", 1),
                          ("batch_size", 1), ("seed", 0), ("threads", 1)):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if not _integer(value) or value < low:
                raise _bad(name, f"an integer >= {low}", value)
        if self.seed + self.seeds > MAX_SEED:
            raise _bad("seed", f"an integer in [0, {MAX_SEED - self.seeds}] (with "
                       f"seeds={self.seeds})", self.seed)
        for name, rule, ok in (("lr", "a finite number > 0", lambda v: v > 0),
                               ("weight_decay", "a finite number >= 0", lambda v: v >= 0),
                               ("valence_weight", "a finite number >= 0", lambda v: v >= 0),
                               ("C", "a finite number > 0", lambda v: v > 0),
                               ("dropout", "a number in [0, 1)", lambda v: 0 <= v < 1)):
            value = getattr(self, name)
            if not _finite(value) or not ok(value):
                raise _bad(name, rule, value)
        if not isinstance(self.device, str) or not DEVICE_PATTERN.fullmatch(self.device):
            raise _bad("device", "cpu, cuda, cuda:N or auto", self.device)
        _check_column("groups", self.groups)
        _check_column("folds_from", self.folds_from)
        if self.folds_from is not None and self.folds != _FOLDS_DEFAULT:
            raise ParameterError(
                f"folds_from takes the folds from the column '{self.folds_from}' (one per "
                f"value); folds={self.folds} would draw others. Give one of the two.", "folds")
        if self.metric not in METRICS:
            raise _bad("metric", f"one of {', '.join(METRICS)}", self.metric)
        if self.calibrate not in CALIBRATIONS:
            raise _bad("calibrate", f"one of {', '.join(CALIBRATIONS)}", self.calibrate)
        object.__setattr__(self, "targets", _targets(self.targets))
        if not _finite(self.modality_dropout) or not 0 <= self.modality_dropout < 1:
            raise _bad("modality_dropout", "a number in [0, 1)",
                       self.modality_dropout)
        if self.modality_dropout > 0:
            from mer_heads.heads import get_head, heads_using

            if "modality_dropout" not in get_head(self.model).params:
                raise ParameterError(
                    f"modality_dropout masks modalities inside the neural heads "
                    f"({', '.join(heads_using('modality_dropout'))}); the {self.model} head "
                    "has no such step. Leave it at 0 or choose one of those heads.",
                    "modality_dropout")

    def to_json(self) -> dict[str, Any]:
        """The hyper-parameters by name (as ``CrossValidatedHead.get_params()`` gives them)."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> HeadConfig:
        """The config of a ``to_json`` dict; unknown names are refused, missing ones default."""
        return _from_mapping(cls, obj)

    @classmethod
    def coerce(cls, value: HeadConfig | Mapping[str, Any] | None) -> HeadConfig:
        """``value`` as a HeadConfig: itself, the config of a dict of hyper-parameters, or the
        defaults for None."""
        if value is None:
            return cls()
        return value if isinstance(value, cls) else cls.from_json(value)


@dataclass(frozen=True)
class DataConfig:
    """How feature stores become one dataset (see :func:`mer_heads.data.load_dataset`)."""

    manifest: str | Path | None = option(None, "--manifest", "take labels and splits from this "
                                         "CSV instead of the stores",
                                         default_text="the labels the stores copied at "
                                         "extraction")
    input: str = option("utterance", "--input", "utterance vectors, or frame matrices with a "
                        "temporal head", choices=INPUTS)
    join: str = option("exact", "--join", "exact: stores must hold the same clips; inner: use "
                       "the common ones", choices=JOINS)
    layers: str = option("mean", "--layers", "utterance arrays of shape (layers, dim): average "
                         "the layers, flatten them, or learn a softmax-weighted sum per "
                         "modality inside the neural heads (learned)", choices=LAYER_POOLING)
    max_frames: int = option(MAX_FRAMES, "--max-frames", "frame input: at most this many frames "
                             "per clip (segment means)")
    normalize_by: str | None = option(
        None, "--normalize-by", "z-score each modality's features within each group of this "
        "manifest column (e.g. actor: per-speaker normalisation), from the group's own clips, "
        "no labels; transductive: held-out and new speakers use their own clips' statistics",
        metavar="COL", default_text="none")
    classes: tuple[str, ...] | None = option(
        None, "--classes", "the label set, in this order, separated by commas (mer2023: MER "
        "2023's six); a label outside it is refused", metavar="A,B,C",
        default_text="the labels' own: MER 2023's six when every label is one of them, else the "
        "stores' recorded order or sorted by name")
    label_map: str | Path | None = option(
        None, "--label-map", "a JSON or CSV file renaming, merging or dropping classes before "
        "training (the importers' format, docs/corpora.md#label-maps); dropped classes' clips "
        "are left out", metavar="FILE", default_text="none")

    def __post_init__(self) -> None:
        for name, allowed in (("input", INPUTS), ("join", JOINS), ("layers", LAYER_POOLING)):
            value = getattr(self, name)
            if value not in allowed:
                raise _bad(name, f"one of {', '.join(allowed)}", value)
        if not _integer(self.max_frames) or self.max_frames < 1:
            raise _bad("max_frames", "an integer >= 1", self.max_frames)
        if self.layers == "learned" and self.input != "utterance":
            raise ParameterError("layers='learned' weighs the layers of utterance arrays of "
                                 "shape (layers, dim); frame matrices have no layers. Use "
                                 "input='utterance', or the layers 'mean' or 'flatten'.",
                                 "layers")
        _check_column("normalize_by", self.normalize_by)
        from mer_features.corpora.classes import parse_classes
        from mer_features.errors import ParameterError as FeaturesParameterError

        try:
            object.__setattr__(self, "classes", parse_classes(self.classes))
        except FeaturesParameterError as e:
            raise ParameterError(str(e).replace("`classes`", "classes"), "classes") from None
        if self.label_map is not None and not isinstance(self.label_map, (str, Path)):
            raise _bad("label_map", "the path of a .json or .csv label map", self.label_map)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["manifest"] = None if self.manifest is None else str(self.manifest)
        out["label_map"] = None if self.label_map is None else str(self.label_map)
        out["classes"] = None if self.classes is None else list(self.classes)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DataConfig:
        return _from_mapping(cls, obj)


@dataclass(frozen=True)
class SemiSettings:
    """How to pseudo-label (see :mod:`mer_heads.experiments.semi`). ``hide_labels`` in (0, 1)
    or None; ``chunk`` clips of the pool are predicted at a time."""

    strategy: str = option("none", "--semi", "none, threshold (confidence >= T), "
                           "class-quantile (per predicted class, confidence >= its "
                           "Q-quantile), weak-reinforce (threshold, only classes below the "
                           "mean training frequency)", metavar="STRATEGY")
    rounds: int = option(1, "--semi-rounds", "pseudo-label and retrain R times", metavar="R")
    threshold: float = option(0.8, "--semi-threshold", "confidence threshold in (0, 1]",
                              metavar="T")
    quantile: float = option(0.8, "--semi-quantile", "class-quantile: quantile in [0, 1]",
                             metavar="Q")
    teacher: str = option("fold", "--semi-teacher", "fold: each fold's own models label its "
                          "pool (no held-out label leaks); ensemble: the mean of all fold "
                          "models", metavar="fold|ensemble")
    hide_labels: float | None = option(
        None, "--hide-labels", "simulation: hide this fraction of the labels (stratified, "
        "seeded), use those clips as the pool and report the pseudo-labels' accuracy",
        metavar="FRACTION", default_text="none")
    chunk: int = option(PREDICT_CHUNK, None)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ParameterError(f"The semi-supervised strategy must be one of "
                                 f"{', '.join(STRATEGIES)}; got '{self.strategy}'.", "strategy")
        if self.teacher not in TEACHERS:
            raise ParameterError(f"The pseudo-label teacher must be one of {', '.join(TEACHERS)};"
                                 f" got '{self.teacher}'.", "teacher")
        if not _integer(self.rounds) or self.rounds < 1:
            raise ParameterError(f"The number of pseudo-labelling rounds must be an integer >= 1;"
                                 f" got {self.rounds!r}.", "rounds")
        if not _finite(self.threshold) or not 0.0 < self.threshold <= 1.0:
            raise ParameterError(f"The confidence threshold must be in (0, 1], e.g. 0.8; got "
                                 f"{self.threshold!r}.", "threshold")
        if not _finite(self.quantile) or not 0.0 <= self.quantile <= 1.0:
            raise ParameterError(f"The class quantile must be in [0, 1], e.g. 0.8 to add the top "
                                 f"20% of each class; got {self.quantile!r}.", "quantile")
        if self.hide_labels is not None and (not _finite(self.hide_labels)
                                             or not 0.0 < self.hide_labels < 1.0):
            raise ParameterError(f"The fraction of labels to hide must be in (0, 1), e.g. 0.7; "
                                 f"got {self.hide_labels!r}.", "hide_labels")
        if not _integer(self.chunk) or self.chunk < 1:
            raise ParameterError(f"chunk must be an integer >= 1; got {self.chunk!r}.", "chunk")

    def check(self) -> SemiSettings:
        """The settings (valid: they were checked when made)."""
        return self

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("chunk")  # how much memory, not what is computed
        return out


PAIRS = ("first", "all")
"""Which pairs ``mer-heads compare`` tests: each run against the first, or every pair."""
CORRECTIONS = ("holm", "bh", "none")
"""Multiple-comparison corrections (:data:`mer_heads.stats.multiple.CORRECTIONS`)."""


@dataclass(frozen=True)
class CompareSettings:
    """How ``mer-heads compare`` tests runs against each other
    (:func:`mer_heads.experiments.compare.compare_runs`, docs/statistics.md)."""

    seed: int = option(0, "--seed", "seed of the paired-bootstrap resamples "
                       "(numpy.random.default_rng(seed)) and of the permutations "
                       "(default_rng([seed, 1])); recorded")
    resamples: int = option(1000, "--resamples", "paired-bootstrap resamples B behind each "
                            "interval", metavar="B")
    permutations: int = option(10_000, "--permutations", "permutations N of the paired test "
                               "(p is at least 1/(N+1))", metavar="N")
    groups: str | None = option(
        None, "--groups", "resample and permute whole groups of this column (speakers, "
        "actors), read from --manifest, the run's manifest or its stores; none: single clips",
        metavar="COL", default_text="the column the runs' folds were grouped by (fit --groups), "
        "else clips")
    manifest: str | None = option(
        None, "--manifest", "a CSV with name and the --groups column", metavar="CSV",
        default_text="the first run's manifest, else its stores")
    metric: str = option("auto", "--metric", "the headline metric (the other metrics are shown "
                         "too): mer, f1, ua, wa, macro_f1; auto: mer on MER 2023's classes, "
                         "ua on any other label set", choices=METRICS)
    pairs: str = option("first", "--pairs", "with more than two runs, first: each run against "
                        "the first one; all: every pair", choices=PAIRS)
    correction: str = option("holm", "--correction", "with more than two runs, the adjusted "
                             "p-values across the comparisons, per metric: holm "
                             "(Holm-Bonferroni), bh (Benjamini-Hochberg) or none",
                             choices=CORRECTIONS)
    common_clips: bool = option(False, "--common-clips", "compare on the clips every run has "
                                "(their count is reported) instead of refusing runs whose clips "
                                "differ", default_text="")

    def __post_init__(self) -> None:
        for name, low in (("seed", 0), ("resamples", 1), ("permutations", 1)):
            value = getattr(self, name)
            if not _integer(value) or value < low:
                raise _bad(name, f"an integer >= {low}", value)
        if self.seed > MAX_SEED:
            raise _bad("seed", f"an integer in [0, {MAX_SEED}]", self.seed)
        if self.groups is not None and self.groups.strip().lower() == "none":
            object.__setattr__(self, "groups", "none")
        else:
            _check_column("groups", self.groups)
        if self.manifest is not None and (not isinstance(self.manifest, (str, Path))
                                          or not str(self.manifest)):
            raise _bad("manifest", "the path of a CSV", self.manifest)
        for name, allowed in (("metric", METRICS), ("pairs", PAIRS),
                              ("correction", CORRECTIONS)):
            if getattr(self, name) not in allowed:
                raise _bad(name, f"one of {', '.join(allowed)}", getattr(self, name))
        if not isinstance(self.common_clips, bool):
            raise _bad("common_clips", "True or False", self.common_clips)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["manifest"] = None if self.manifest is None else str(self.manifest)
        return out


@dataclass(frozen=True)
class ConsoleConfig:
    """What a long command shows while it works (:mod:`mer_heads.progress`). Nothing here
    changes a result, so none of it is recorded in metrics.json or a report."""

    progress: bool | None = option(
        None, "--no-progress", "no progress on stderr (without it: a line rewritten in place "
        "on a terminal; in a log, a line with fits done, elapsed time and ETA at most every "
        "30 s)", switch=False, default_text="")

    def __post_init__(self) -> None:
        if self.progress is not None and not isinstance(self.progress, bool):
            raise _bad("progress", "True, False or None", self.progress)


T = TypeVar("T")


def _from_mapping(cls: type[T], obj: Mapping[str, Any]) -> T:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(obj) - names)
    if unknown:
        raise ParameterError(f"Unknown {cls.__name__} field(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(names))}.")
    return cls(**obj)


def split_options(head: HeadConfig | Mapping[str, Any] | None, loading: DataConfig | None,
                  options: Mapping[str, Any]) -> tuple[HeadConfig, DataConfig]:
    """``head`` and ``loading`` with the keyword ``options`` applied, each option a field of
    :class:`DataConfig` or :class:`HeadConfig` (how the library functions take
    ``fit_run(..., model="logreg", input="frames")``). An unknown name is a ``TypeError``,
    as for any keyword argument."""
    data_names = {f.name for f in fields(DataConfig)}
    head_names = {f.name for f in fields(HeadConfig)}
    unknown = sorted(set(options) - data_names - head_names)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}: options are the "
                        "fields of HeadConfig and DataConfig")
    loading = replace(loading or DataConfig(),
                      **{k: v for k, v in options.items() if k in data_names})
    head = HeadConfig.coerce(head)
    head = replace(head, **{k: v for k, v in options.items() if k in head_names})
    return head, loading


def cli_help(f: Any, heads_using: Callable[[str], tuple[str, ...]] | None = None) -> str:
    """The help of the option of field ``f``: its phrase and its default."""
    meta = f.metadata
    text = meta["help"] or (_model_help() if f.name == "model" else "")
    if "{heads}" in text and heads_using is not None:
        text = text.replace("{heads}", "/".join(heads_using(f.name)))
    default = meta["default_text"]
    if default is None:
        default = f"{f.default:g}" if isinstance(f.default, float) else str(f.default)
    return f"{text} (default {default})" if default else text


__all__ = ["CompareSettings", "ConsoleConfig", "DataConfig", "HeadConfig", "INPUTS", "JOINS", "LAYER_POOLING", "MAX_FRAMES", "METRICS",
           "MAX_SEED", "STRATEGIES", "SemiSettings", "TEACHERS", "cli_help", "flag", "option",
           "parameter_flag", "split_options"]
