"""A run directory: everything ``predict`` needs to reproduce a fitted run, and nothing pickled
that could break silently (no lambdas, no whole torch modules).

::

    RUN_DIR/run.json           hyper-parameters, modalities (key, store path, fingerprint,
                               width) in order, input kind, classes, prior, mean valence,
                               fold and seed of each model, the column features are
                               normalised by (``normalize_by``, predict does the same) (written
                               last: a folder without it is not a run)
    RUN_DIR/standardizer.npz   per-fold mean and scale of each modality
    RUN_DIR/models/heads.pt    state dict of the stacked neural heads (torch.save), or
    RUN_DIR/models/sklearn.joblib   the scikit-learn (classifier, regressor) pairs (joblib)
    RUN_DIR/metrics.json       scores (written by :mod:`mer_heads.experiments.fit`)

The models file is the head family's (:mod:`mer_heads.heads`); every file is written through
:mod:`mer_heads.outputs`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mer_features import EMOTIONS
from mer_heads.config import HeadConfig
from mer_heads.data.standardize import Standardizer
from mer_heads.errors import FingerprintMismatchError, OutputError, RunError
from mer_heads.heads import NeuralHead, SklearnHead, get_head
from mer_heads.outputs import dump_json, os_reason, save_npz
from mer_heads.protocol import CrossValidatedHead

if TYPE_CHECKING:
    from mer_heads.data.dataset import ModalityInfo

FORMAT = 1
RUN_FILE = "run.json"
RUN_OUTPUTS = (RUN_FILE, "metrics.json", "report.md", "confusion.png", "layer_weights.png",
               "standardizer.npz",
               NeuralHead.model_file, SklearnHead.model_file, "oof_predictions.csv",
               "test_predictions.csv")
"""Every file ``mer-heads fit`` may write into a run folder (run.json first: see fit_run)."""


def save_run(est: CrossValidatedHead, run_dir: str | Path, modalities: list[ModalityInfo], *,
             layers: str, max_frames: int, extra: dict[str, Any] | None = None) -> Path:
    """Write the fitted ``est`` and its provenance into ``run_dir`` (created if needed)."""
    run_dir = Path(run_dir)
    try:
        (run_dir / "models").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"Cannot create '{run_dir / 'models'}': {os_reason(e)}.") from e
    info = {
        "format": FORMAT,
        "model": est.model,
        "params": est.get_params(),
        "modalities": [m.to_json() for m in modalities],
        "input": est.input_,
        "layers": layers,
        "max_frames": max_frames,
        "classes": list(EMOTIONS),
        "has_valence": est.has_valence_,
        "prior": est.prior_,
        "mean_valence": est.mean_valence_ if est.has_valence_ else None,
        "model_folds": est.model_folds_,
        "model_seeds": est.model_seeds_,
        "precision": est.precision_,
        "normalize_by": est.normalized_by_,
        "layer_counts": est.layers_,
        **(extra or {}),
    }
    save_npz(run_dir / "standardizer.npz", est.standardizer_.to_arrays(est.keys_))
    get_head(est.model).save(est, run_dir)
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
        est = _load_estimator(run_dir, info)
    except RunError:
        raise
    except Exception as e:  # a damaged file can fail in any of numpy, joblib, torch or here
        raise RunError(f"Run '{run_dir}' is incomplete or damaged ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''}); fit it again.") from e
    return est, info


def _load_estimator(run_dir: Path, info: dict[str, Any]) -> CrossValidatedHead:
    est = CrossValidatedHead.from_config(HeadConfig.from_json(info["params"]))
    keys = [m["key"] for m in info["modalities"]]
    with np.load(run_dir / "standardizer.npz") as arrays:
        est.standardizer_ = Standardizer.from_arrays(dict(arrays), keys)
    est.keys_ = keys
    est.dims_ = [int(m["dim"]) for m in info["modalities"]]
    est.input_ = info["input"]
    est.layers_ = [int(n) for n in info.get("layer_counts") or [1] * len(keys)]
    est.has_valence_ = bool(info["has_valence"])
    est.prior_ = np.asarray(info["prior"], np.float64)
    est.mean_valence_ = (float("nan") if info["mean_valence"] is None
                         else float(info["mean_valence"]))
    est.model_folds_ = np.asarray(info["model_folds"], np.int64)
    est.model_seeds_ = np.asarray(info["model_seeds"], np.int64)
    est.precision_ = info["precision"]
    est.normalized_by_ = info.get("normalize_by")  # runs before --normalize-by: none
    n_models = len(est.model_folds_)
    for key, dim, mean, scale in zip(keys, est.dims_, est.standardizer_.mean,
                                     est.standardizer_.scale):
        if mean.shape != (est.folds, dim) or scale.shape != (est.folds, dim):
            raise ValueError(f"standardizer.npz holds {key} statistics of shape {mean.shape}; "
                             f"run.json says ({est.folds}, {dim})")
    if (est.prior_.shape != (len(EMOTIONS),) or n_models != est.folds * est.seeds
            or len(est.model_seeds_) != n_models):
        raise ValueError("run.json's prior, folds or models do not agree")
    get_head(est.model).load(est, run_dir)
    return est


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
