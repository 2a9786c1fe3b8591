"""A run directory: everything ``predict`` needs to reproduce a fitted run, and nothing pickled
that could break silently (no lambdas, no whole torch modules).

::

    RUN_DIR/run.json           hyper-parameters, modalities (key, store path, fingerprint,
                               width) in order, input kind, classes, prior, mean valence,
                               fold and seed of each model
    RUN_DIR/standardizer.npz   per-fold mean and scale of each modality
    RUN_DIR/models/heads.pt    state dict of the stacked neural heads (torch.save), or
    RUN_DIR/models/sklearn.joblib   the scikit-learn (classifier, regressor) pairs (joblib)
    RUN_DIR/metrics.json       scores (written by mer_heads.experiment)
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mer_features import EMOTIONS
from mer_heads.data import ModalityInfo
from mer_heads.errors import FingerprintMismatchError, RunError
from mer_heads.protocol import CrossValidatedHead
from mer_heads.sklearn_models import SKLEARN_MODELS
from mer_heads.standardize import Standardizer

FORMAT = 1
RUN_FILE = "run.json"


def dump_json(obj: Any, path: Path) -> None:
    """Deterministic JSON (sorted keys, floats rounded to 6 decimals), written atomically."""
    text = json.dumps(_rounded(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Rows (dicts keyed by column) as CSV: floats with 6 decimals, None as an empty cell."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in rows:
            w.writerow(["" if row[c] is None else (f"{row[c]:.6f}" if isinstance(row[c], float)
                                                   else row[c]) for c in columns])


def _rounded(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _rounded(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if not np.isfinite(value):
            return None
        value = round(value, 6)
        return 0.0 if value == 0 else value  # no "-0.0"
    return obj


def save_run(est: CrossValidatedHead, run_dir: str | Path, modalities: list[ModalityInfo], *,
             layers: str, max_frames: int, extra: dict[str, Any] | None = None) -> Path:
    """Write the fitted ``est`` and its provenance into ``run_dir`` (created if needed)."""
    run_dir = Path(run_dir)
    (run_dir / "models").mkdir(parents=True, exist_ok=True)
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
        **(extra or {}),
    }
    np.savez(run_dir / "standardizer.npz", **est.standardizer_.to_arrays(est.keys_))
    if est.model in SKLEARN_MODELS:
        import joblib

        joblib.dump(est.estimators_, run_dir / "models" / "sklearn.joblib")
    else:
        import torch

        torch.save(est.stack_.state_dict(), run_dir / "models" / "heads.pt")
    dump_json(info, run_dir / RUN_FILE)
    return run_dir


def load_run(run_dir: str | Path) -> tuple[CrossValidatedHead, dict[str, Any]]:
    """The fitted estimator of ``run_dir`` and its run.json."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise RunError(f"'{run_dir}' is not a run directory (no {RUN_FILE}); give the --out of "
                       "a finished `mer-heads fit`.")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunError(f"'{path}' cannot be read ({e}); the run is damaged, fit it again.") from e
    if info.get("format") != FORMAT:
        raise RunError(f"Run '{run_dir}' has format {info.get('format')}; this mer_heads reads "
                       f"format {FORMAT}. Fit it again with this version.")
    est = CrossValidatedHead(**info["params"])
    keys = [m["key"] for m in info["modalities"]]
    try:
        with np.load(run_dir / "standardizer.npz") as arrays:
            est.standardizer_ = Standardizer.from_arrays(dict(arrays), keys)
        est.keys_ = keys
        est.dims_ = [int(m["dim"]) for m in info["modalities"]]
        est.input_ = info["input"]
        est.has_valence_ = bool(info["has_valence"])
        est.prior_ = np.asarray(info["prior"], np.float64)
        est.mean_valence_ = (float("nan") if info["mean_valence"] is None
                             else float(info["mean_valence"]))
        est.model_folds_ = np.asarray(info["model_folds"], np.int64)
        est.model_seeds_ = np.asarray(info["model_seeds"], np.int64)
        est.precision_ = info["precision"]
        if est.model in SKLEARN_MODELS:
            import joblib

            est.estimators_ = joblib.load(run_dir / "models" / "sklearn.joblib")
        else:
            import torch

            from mer_heads.models import StackedHead

            est.stack_ = StackedHead(len(est.model_folds_), est.dims_, model=est.model,
                                     input=est.input_, hidden=est.hidden, dropout=est.dropout)
            state = torch.load(run_dir / "models" / "heads.pt", map_location="cpu",
                               weights_only=True)
            est.stack_.load_state_dict(state)
            est.stack_.eval()
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise RunError(f"Run '{run_dir}' is incomplete or damaged ({type(e).__name__}: {e}); "
                       "fit it again.") from e
    return est, info


def check_fingerprints(info: dict[str, Any], modalities: list[ModalityInfo]) -> None:
    """Refuse stores whose modalities, order or fingerprints differ from the run's."""
    expected = [(m["key"], m["fingerprint"], m["path"]) for m in info["modalities"]]
    got = [(m.key, m.fingerprint, m.path) for m in modalities]
    if [k for k, _, _ in expected] != [k for k, _, _ in got]:
        raise FingerprintMismatchError(
            f"The run was trained on modalities {[k for k, _, _ in expected]} (in that order); "
            f"got {[k for k, _, _ in got]}. Pass one --features per modality, in the same order "
            "(and with the same key=, if the run used one).")
    bad = [(e, g) for e, g in zip(expected, got) if e[1] != g[1]]
    if bad:
        lines = "; ".join(f"{e[0]}: '{g[2]}' has fingerprint {g[1]}, the run was trained on "
                          f"'{e[2]}' with {e[1]}" for e, g in bad)
        raise FingerprintMismatchError(
            f"The stores were made with another feature configuration than the run's ({lines}). "
            "Extract the clips to predict with the same encoder and options as the training "
            "stores, or fit a run on these features.")
