"""A run directory: everything ``predict`` needs to reproduce a fitted run, and nothing pickled
that could break silently (no lambdas, no whole torch modules); and the one way mer_heads
writes any file.

::

    RUN_DIR/run.json           hyper-parameters, modalities (key, store path, fingerprint,
                               width) in order, input kind, classes, prior, mean valence,
                               fold and seed of each model (written last: a folder without it
                               is not a run)
    RUN_DIR/standardizer.npz   per-fold mean and scale of each modality
    RUN_DIR/models/heads.pt    state dict of the stacked neural heads (torch.save), or
    RUN_DIR/models/sklearn.joblib   the scikit-learn (classifier, regressor) pairs (joblib)
    RUN_DIR/metrics.json       scores (written by mer_heads.experiment)

Every file goes through :func:`atomic_write`: written under a temporary name in its folder and
renamed into place when complete, the temporary file removed on any failure, and an ``OSError``
(read-only folder, disk full, a folder in the way) raised as one :class:`OutputError` naming
the file. Output folders are checked by :func:`prepare_out_dir` before any work starts.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from mer_features import EMOTIONS
from mer_heads.data import ModalityInfo
from mer_heads.errors import FingerprintMismatchError, OutputError, RunError
from mer_heads.protocol import CrossValidatedHead
from mer_heads.sklearn_models import SKLEARN_MODELS
from mer_heads.standardize import Standardizer

FORMAT = 1
RUN_FILE = "run.json"
RUN_OUTPUTS = (RUN_FILE, "metrics.json", "report.md", "confusion.png", "standardizer.npz",
               "models/heads.pt", "models/sklearn.joblib", "oof_predictions.csv",
               "test_predictions.csv")
"""Every file ``mer-heads fit`` may write into a run folder (run.json first: see fit_run)."""


def _why(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """An open file (text: UTF-8, newlines as written; or ``mode="wb"``) that replaces ``path``
    only when the block completes. On any failure the temporary file is removed and ``path``
    is untouched; an ``OSError`` becomes an :class:`OutputError` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        try:
            with open(tmp, mode, **kwargs) as f:
                yield f
            if path.is_dir():
                raise IsADirectoryError(21, "it is a folder", str(path))
            os.replace(tmp, path)
        except OSError as e:
            raise OutputError(f"Cannot write '{path}': {_why(e)}. Check that the folder exists, "
                              "is writable and has free space, and that no folder has the "
                              "file's name.") from e
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError:  # pragma: no cover - nothing more can be done about it
            pass


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


def dump_json(obj: Any, path: Path) -> None:
    """Deterministic JSON (sorted keys, floats rounded to 6 decimals), written atomically."""
    write_text(path, json.dumps(_rounded(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_rows(path: str | Path, header: Sequence[str], rows: Any) -> Path:
    """A CSV of ``header`` and the (already formatted) ``rows``, written atomically."""
    with atomic_write(path) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return Path(path)


def write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Rows (dicts keyed by column) as CSV: floats with 6 decimals, None as an empty cell."""
    write_rows(path, columns, (
        ["" if row[c] is None else (f"{row[c]:.6f}" if isinstance(row[c], float) else row[c])
         for c in columns] for row in rows))


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """A matplotlib figure as PNG (no software tag, so the bytes depend only on the data);
    ``kwargs`` go to ``savefig``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None}, **kwargs)
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())
    return Path(path)


def prepare_out_dir(out: str | Path, *, marker: str, overwrite: bool, what: str) -> bool:
    """Check, before any work, that the output folder ``out`` can take a result: it is not a
    file, it can be created and written, and it does not hold an earlier result (its
    ``marker`` file) unless ``overwrite``. Returns whether the folder was created here (the
    caller removes it again if the command fails before writing into it)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out '{out}' is an existing file; the {what} is a folder. Give "
                          "the path of a new or existing folder.")
    if (out / marker).exists() and not overwrite:
        raise OutputError(f"--out '{out}' already holds a {what} ({out / marker}); pass "
                          "--overwrite to replace it, or give another --out.")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        if created:
            remove_if_empty(out)
        raise OutputError(f"Cannot write into --out '{out}': {_why(e)}. Give a folder you can "
                          "write to.") from e
    return created


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` (and an empty ``models/`` in it) if nothing else is there."""
    try:
        models = folder / "models"
        if models.is_dir() and not any(models.iterdir()):
            models.rmdir()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass


def remove_outputs(out: Path, names: Sequence[str]) -> None:
    """Remove the files ``names`` of an earlier result in ``out`` (``--overwrite``)."""
    for name in names:
        path = out / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        except OSError as e:
            raise OutputError(f"Cannot remove '{path}' of the earlier result in --out: "
                              f"{_why(e)}.") from e


def check_out_file(path: str | Path, *, inputs: Sequence[str | Path] = (), flag: str = "--out"
                   ) -> Path:
    """Check, before any work, that the file ``path`` can be written: not a folder, not one of
    ``inputs``, its folder creatable and writable. Returns ``path``."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} '{path}' is a folder; give the path of a file to write, "
                          f"e.g. '{path / 'predictions.csv'}'.")
    if path.exists():
        for item in inputs:
            try:
                if Path(item).exists() and path.samefile(item):
                    raise OutputError(f"{flag} '{path}' is one of the command's inputs; it would "
                                      "be overwritten. Give another path.")
            except OSError:
                continue
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"Cannot write {flag} '{path}': {_why(e)} (folder '{folder}'). Give a "
                          "path in a folder you can write to.") from e
    return path


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
    try:
        (run_dir / "models").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"Cannot create '{run_dir / 'models'}': {_why(e)}.") from e
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
    save_npz(run_dir / "standardizer.npz", est.standardizer_.to_arrays(est.keys_))
    if est.model in SKLEARN_MODELS:
        import joblib

        with atomic_write(run_dir / "models" / "sklearn.joblib", "wb") as f:
            joblib.dump(est.estimators_, f)
    else:
        import torch

        with atomic_write(run_dir / "models" / "heads.pt", "wb") as f:
            torch.save(est.stack_.state_dict(), f)
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
    est = CrossValidatedHead(**info["params"])
    keys = [m["key"] for m in info["modalities"]]
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
    n_models = len(est.model_folds_)
    for key, dim, mean, scale in zip(keys, est.dims_, est.standardizer_.mean,
                                     est.standardizer_.scale):
        if mean.shape != (est.folds, dim) or scale.shape != (est.folds, dim):
            raise ValueError(f"standardizer.npz holds {key} statistics of shape {mean.shape}; "
                             f"run.json says ({est.folds}, {dim})")
    if (est.prior_.shape != (len(EMOTIONS),) or n_models != est.folds * est.seeds
            or len(est.model_seeds_) != n_models):
        raise ValueError("run.json's prior, folds or models do not agree")
    if est.model in SKLEARN_MODELS:
        import joblib

        est.estimators_ = joblib.load(run_dir / "models" / "sklearn.joblib")
        if not isinstance(est.estimators_, list) or len(est.estimators_) != n_models:
            raise ValueError(f"models/sklearn.joblib does not hold the run's {n_models} models")
    else:
        import torch

        from mer_heads.models import StackedHead

        est.stack_ = StackedHead(n_models, est.dims_, model=est.model, input=est.input_,
                                 hidden=est.hidden, dropout=est.dropout)
        state = torch.load(run_dir / "models" / "heads.pt", map_location="cpu",
                           weights_only=True)
        est.stack_.load_state_dict(state)
        est.stack_.eval()
    return est


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
