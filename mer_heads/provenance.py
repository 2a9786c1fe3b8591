"""Honest scores: which clips a run trained on, and a warning wherever they are scored.

A fold ensemble predicts the clips it trained on almost perfectly (F1 1.0 on the demo), so a
score of those clips says how well the run fits its training data, not how it does on new
clips. ``run.json`` lists the clips the run trained on (``train_clips``: the labelled training
clips; ``pseudo_clips``: pool clips a semi-supervised run trained on with pseudo-labels).

* ``mer-heads predict`` (:func:`~mer_heads.experiments.fit.predict_run`) writes, beside its
  prediction file ``P.csv``, ``P.run.json``: the run it came from and which predicted clips
  the run trained on, and says how many on stderr.
* ``mer-heads evaluate`` (:func:`~mer_heads.metrics.evaluate_files`) reads that file (or the
  run given with ``--run``) and, when scored clips are among the run's training clips, warns
  on stderr and in its JSON (:func:`training_warning`).

Held-out scores come from ``fit --train-split train --test-split test`` (the test clips are
never trained on; ``evaluate --split test`` scores them), or from the run's cross-validated
scores (``metrics.json``, ``oof_predictions.csv``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mer_heads.errors import LabelError, listed
from mer_heads.outputs import dump_json, remove_outputs

SUFFIX = ".run.json"
"""``preds.csv`` -> ``preds.run.json``: where predict says which run made a prediction file."""


def sidecar(prediction: str | Path) -> Path:
    """The provenance file of the prediction file ``prediction``."""
    return Path(prediction).with_suffix(SUFFIX)


def training_clips(info: dict[str, Any]) -> set[str] | None:
    """The clips a run trained on, from its run.json (None for a run written before runs
    recorded them)."""
    if "train_clips" not in info:
        return None
    return set(info["train_clips"]) | set(info.get("pseudo_clips") or ())


def write_provenance(prediction: Path, run: str | Path, info: dict[str, Any],
                     names: Sequence[str]) -> list[str]:
    """Write ``prediction``'s provenance file (the run, and which of the predicted ``names``
    it trained on); returns the note for the user (none when no predicted clip is a training
    clip)."""
    trained = training_clips(info)
    known = trained is not None
    overlap = [n for n in names if known and n in trained]
    notes: list[str] = []
    if not known:
        notes.append(f"the run '{run}' predates the list of training clips in run.json: "
                     "`mer-heads evaluate` cannot warn when training clips are scored; fit it "
                     "again to have the list")
    elif overlap:
        notes.append(f"{len(overlap)} of the {len(names)} predicted clips are clips the run "
                     f"trained on ({listed(overlap)}): their predictions say how well the run "
                     "fits its training data, not how it does on new clips; "
                     f"`mer-heads evaluate` warns when it scores them (list: '{sidecar(prediction)}')")
    body = {"run": str(run), "predicted": len(names), "training_clips_known": known,
            "training_clips_predicted": overlap, "notes": notes}
    dump_json(body, sidecar(prediction))
    return notes


def remove_provenance(prediction: Path) -> None:
    remove_outputs(prediction.parent, [sidecar(prediction).name])


def read_provenance(prediction: str | Path) -> dict[str, Any] | None:
    """What predict wrote beside ``prediction`` (None when there is nothing, or it cannot be
    read: a file written by hand has no provenance)."""
    path = sidecar(prediction)
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def run_training_clips(run: str | Path) -> set[str]:
    """The training clips of the run directory ``run`` (``evaluate --run``)."""
    path = Path(run) / "run.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LabelError(f"--run '{run}': cannot read '{path}' ({e}); give the --out of a "
                         "finished `mer-heads fit`.") from e
    trained = training_clips(info) if isinstance(info, dict) else None
    if trained is None:
        raise LabelError(f"--run '{run}': its run.json has no list of training clips (a run "
                         "fitted before it was recorded); fit it again.")
    return trained


def training_warning(scored: Iterable[str], prediction: str | Path,
                     run: str | Path | None = None) -> tuple[list[str], int | None]:
    """(warnings, number of scored clips the run trained on) for the clips ``scored`` from the
    prediction file ``prediction``: the run is ``run`` when given, else the one its provenance
    file names. None when no run is known."""
    if run is not None:
        trained, source = run_training_clips(run), f"run '{run}'"
    else:
        body = read_provenance(prediction)
        if body is None or not body.get("training_clips_known"):
            return [], None
        trained, source = set(body.get("training_clips_predicted") or ()), \
            f"run '{body.get('run')}'"
    scored = list(scored)
    overlap = [n for n in scored if n in trained]
    if not overlap:
        return [], 0
    return [f"warning: {len(overlap)} of the {len(scored)} scored clips are clips the "
            f"{source} trained on ({listed(overlap)}): these scores say how well it fits its "
            "training data, not how it does on new clips. Score held-out clips (fit "
            "--train-split train --test-split test, then evaluate --split test) or read the "
            "run's cross-validated scores (metrics.json)"], len(overlap)


__all__ = ["SUFFIX", "read_provenance", "remove_provenance", "run_training_clips", "sidecar",
           "training_clips", "training_warning", "write_provenance"]
