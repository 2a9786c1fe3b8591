"""A run directory: everything ``predict`` needs to reproduce a fitted run, and nothing pickled
that could break silently (no lambdas, no whole torch modules).

::

    RUN_DIR/run.json           hyper-parameters, modalities (key, store path, fingerprint,
                               width) in order, input kind, classes (the label set, in the
                               order of the probabilities), prior, mean valence, targets and
                               their means (when not valence alone), the fold
                               temperatures (``--calibrate temperature``),
                               fold and seed of each model, the column features are
                               normalised by (``normalize_by``, predict does the same), the
                               clips it trained on (``train_clips``, ``pseudo_clips``:
                               :mod:`mer_heads.provenance`) (written last: a folder without it
                               is not a run)
    RUN_DIR/standardizer.npz   per-fold mean and scale of each modality
    RUN_DIR/models/heads.pt    state dict of the stacked neural heads (torch.save), or
    RUN_DIR/models/sklearn.joblib   the scikit-learn (classifier, regressor) pairs (joblib)
    RUN_DIR/metrics.json       scores (written by :mod:`mer_heads.experiments.fit`)

A fitted head's state (:class:`~mer_heads.state.FittedState`) is written here and read back
here, in one place: the run's JSON fields and standardizer.npz by this module, the models file
through its head family's ``write_models``/``read_models`` (the bytes, not where they go);
every file is written through :mod:`mer_heads.outputs`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mer_features import EMOTIONS
from mer_heads.config import HeadConfig
from mer_heads.data.standardize import Standardizer
from mer_heads.errors import FingerprintMismatchError, OutputError, RunError
from mer_heads.heads import NeuralHead, SklearnHead, get_head
from mer_heads.outputs import atomic_write, dump_json, os_reason, save_npz
from mer_heads.protocol import CrossValidatedHead
from mer_heads.state import FittedState

if TYPE_CHECKING:
    from mer_heads.data.dataset import ModalityInfo

FORMAT = 1
RUN_FILE = "run.json"
RUN_OUTPUTS = (RUN_FILE, "metrics.json", "report.md", "confusion.png", "reliability.png",
               "layer_weights.png",
               "standardizer.npz",
               NeuralHead.model_file, SklearnHead.model_file, "oof_predictions.csv",
               "test_predictions.csv")
"""Every file ``mer-heads fit`` may write into a run folder (run.json first: see fit_run)."""


def save_run(est: CrossValidatedHead, run_dir: str | Path, modalities: list[ModalityInfo], *,
             layers: str, max_frames: int, extra: dict[str, Any] | None = None) -> Path:
    """Write the fitted ``est`` (its :class:`~mer_heads.state.FittedState`) and its
    provenance into ``run_dir`` (created if needed)."""
    run_dir = Path(run_dir)
    state, head = est.state_, get_head(est.model)
    try:
        (run_dir / "models").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"Cannot create '{run_dir / 'models'}': {os_reason(e)}.") from e
    info = {
        "format": FORMAT,
        "model": est.model,
        "params": est.get_params(),
        "modalities": [m.to_json() for m in modalities],
        "input": state.input,
        "layers": layers,
        "max_frames": max_frames,
        "classes": list(state.classes),
        "has_valence": state.has_valence,
        "prior": state.prior,
        "mean_valence": state.mean_valence if state.has_valence else None,
        "model_folds": state.model_folds,
        "model_seeds": state.model_seeds,
        "precision": state.precision,
        "normalize_by": state.normalized_by,
        "layer_counts": state.layers,
        # the clips it learnt from: predict and evaluate warn when they are scored
        "train_clips": list(getattr(est, "train_names_", [])),
        **(extra or {}),
    }
    if tuple(state.targets) != ("valence",):  # runs of valence alone read as they always did
        info["targets"] = list(state.targets)
        info["target_means"] = [None if not np.isfinite(v) else float(v)
                                for v in state.target_means]
    if state.temperatures is not None:  # --calibrate temperature
        info["temperatures"] = [float(t) for t in state.temperatures]
    save_npz(run_dir / "standardizer.npz", state.standardizer.to_arrays(state.keys))
    with atomic_write(run_dir / head.model_file, "wb") as f:
        head.write_models(state.models, f)
    dump_json(info, run_dir / RUN_FILE)  # last: a folder without run.json is not a run
    return run_dir


def load_run(run_dir: str | Path) -> tuple[CrossValidatedHead, dict[str, Any]]:
    """The fitted estimator of ``run_dir`` and its run.json. Anything missing, unreadable or
    inconsistent in the folder raises one :class:`RunError`."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not run_dir.is_dir():
        raise RunError(f"--run '{run_dir}' is not a folder; give the --out of a finished "
                       "`mer-heads fit`.")
    if not path.is_file():
        raise RunError(f"'{run_dir}' is not a run directory (no {RUN_FILE}); give the --out of "
                       "a finished `mer-heads fit`.")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunError(f"'{path}' cannot be read ({e}); the run is damaged, fit it again.") from e
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        got = info.get("format") if isinstance(info, dict) else None
        raise RunError(f"Run '{run_dir}' has format {got}; this mer_heads reads format {FORMAT}. "
                       "Fit it again with this version.")
    try:
        config = HeadConfig.from_json(info["params"])
        est = CrossValidatedHead.from_state(config, read_state(run_dir, info, config))
    except RunError:
        raise
    except Exception as e:  # a damaged file can fail in any of numpy, joblib, torch or here
        raise RunError(f"Run '{run_dir}' is incomplete or damaged ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''}); fit it again.") from e
    return est, info


def read_state(run_dir: Path, info: dict[str, Any], config: HeadConfig) -> FittedState:
    """The :class:`~mer_heads.state.FittedState` that :func:`save_run` wrote into ``run_dir``
    (``info``: its run.json), checked against the hyper-parameters ``config``."""
    keys = [m["key"] for m in info["modalities"]]
    with np.load(run_dir / "standardizer.npz") as arrays:
        standardizer = Standardizer.from_arrays(dict(arrays), keys)
    targets = tuple(info.get("targets", ["valence"]))  # runs before --targets: valence
    means = info.get("target_means")
    state = FittedState(
        keys=keys, dims=[int(m["dim"]) for m in info["modalities"]], input=info["input"],
        layers=[int(n) for n in info.get("layer_counts") or [1] * len(keys)],
        normalized_by=info.get("normalize_by"),  # runs before --normalize-by: none
        has_valence=bool(info["has_valence"]), prior=np.asarray(info["prior"], np.float64),
        mean_valence=(float("nan") if info["mean_valence"] is None
                      else float(info["mean_valence"])),
        model_folds=np.asarray(info["model_folds"], np.int64),
        model_seeds=np.asarray(info["model_seeds"], np.int64),
        standardizer=standardizer, precision=info["precision"],
        classes=tuple(info.get("classes") or EMOTIONS),  # runs before label sets: MER's six
        targets=targets,
        temperatures=(None if info.get("temperatures") is None
                      else np.asarray(info["temperatures"], np.float64)),
        target_means=None if means is None else np.array(
            [np.nan if v is None else float(v) for v in means], np.float64))
    k = state.n_folds
    for key, dim, mean, scale in zip(keys, state.dims, standardizer.mean, standardizer.scale):
        if mean.shape != (k, dim) or scale.shape != (k, dim):
            raise ValueError(f"standardizer.npz holds {key} statistics of shape {mean.shape}; "
                             f"run.json says ({k}, {dim})")
    if (state.prior.shape != (len(state.classes),) or state.n_models != k * config.seeds
            or len(state.model_seeds) != state.n_models
            or len(state.target_means) != len(state.targets)
            or (state.temperatures is not None and (state.temperatures.shape != (k,) or not (
                np.isfinite(state.temperatures).all() and (state.temperatures > 0).all())))
            or (config.folds_from is None and k != config.folds)):
        raise ValueError("run.json's prior, folds, models or targets do not agree")
    head = get_head(config.model)
    with open(run_dir / head.model_file, "rb") as f:
        return replace(state, models=head.read_models(f, config, state))


def check_fingerprints(info: dict[str, Any], modalities: list[ModalityInfo]) -> None:
    """Refuse stores whose modalities, order or fingerprints differ from the run's."""
    expected = [(m["key"], m["fingerprint"], m["path"]) for m in info["modalities"]]
    got = [(m.key, m.fingerprint, m.path) for m in modalities]
    known = [m.known_fingerprints | {m.fingerprint} for m in modalities]
    if [k for k, _, _ in expected] != [k for k, _, _ in got]:
        raise FingerprintMismatchError(
            f"The run was trained on modalities {[k for k, _, _ in expected]} (in that order); "
            f"got {[k for k, _, _ in got]}. Pass one --features per modality, in the same order "
            "(and with the same key=, if the run used one).")
    bad = [(e, g) for e, g, k in zip(expected, got, known) if e[1] not in k]
    if bad:
        lines = "; ".join(f"{e[0]}: '{g[2]}' has fingerprint {g[1]}, the run was trained on "
                          f"'{e[2]}' with {e[1]}" for e, g in bad)
        raise FingerprintMismatchError(
            f"The stores were made with another feature configuration than the run's ({lines}). "
            "Extract the clips to predict with the same encoder and options as the training "
            "stores, or fit a run on these features.")
