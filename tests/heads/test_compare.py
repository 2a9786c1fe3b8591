"""Issue 26: ``mer-heads compare`` on synthetic runs; its deltas, intervals and p-values checked
against plain computations (scikit-learn metrics, one resample and one permutation at a time,
with the documented seed scheme of mer_heads/stats/resample.py)."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from mer_heads.cli import main
from mer_heads.config import CompareSettings
from mer_heads.stats import N_PERMUTATIONS, N_RESAMPLES

from .synthetic_stores import MODALITIES, clip_labels, write_store

N = 120
ACTORS = [f"actor{(i * 7) % 12:02d}" for i in range(N)]  # 12 actors, 10 clips each
FIT = ["--model", "logreg", "--folds", "4", "--groups", "actor", "--no-figures"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Three runs on the same 120 clips of 12 actors (audio, text, audio+text; logreg, 4 group
    folds), and the stores' manifest."""
    d = tmp_path_factory.mktemp("compare")
    names, y, valence = clip_labels(N, 3)
    stores = {}
    for j, (key, (dim, frame_dim)) in enumerate(list(MODALITIES.items())[:2]):
        stores[key] = write_store(d / f"{key}.h5", key, names, y, valence, dim=dim,
                                  frame_dim=frame_dim, seed=30 + j, strength=0.6,
                                  extra={"actor": ACTORS})
    out = {}
    for name, features in (("audio", ["audio"]), ("text", ["text"]),
                           ("fusion", ["audio", "text"])):
        args = [a for k in features for a in ("--features", str(stores[k]))]
        assert main(["fit", *args, "--out", str(d / name), *FIT]) == 0
        out[name] = d / name
    with open(d / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "discrete", "actor"])
        w.writerows([n, "", a] for n, a in zip(names, ACTORS))
    out["manifest"] = d / "manifest.csv"
    return out


def oof(run: Path) -> list[dict[str, str]]:
    path = run / "oof_predictions.csv" if run.is_dir() else run
    return list(csv.DictReader(open(path, encoding="utf-8")))


def write_oof(rows: list[dict[str, str]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def copy_run(run: Path, to: Path, edit) -> Path:
    """A copy of ``run`` whose held-out predictions ``edit`` changed (rows -> rows)."""
    shutil.copytree(run, to)
    write_oof(edit(oof(run)), to / "oof_predictions.csv")
    return to


def compare(*args) -> int:
    return main(["compare", *[str(a) for a in args]])


# ---------------------------------------------------------------------------------------------
# Independent computations


def plain_metrics(rows: list[dict[str, str]], idx: np.ndarray) -> dict[str, float]:
    """UA, weighted F1 and valence MSE of the clips ``idx`` (with repeats) by scikit-learn and
    numpy, one call each."""
    true = [rows[i]["discrete"] for i in idx]
    pred = [rows[i]["pred_discrete"] for i in idx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a resample may predict a class it does not hold
        ua = balanced_accuracy_score(true, pred)
    f1 = f1_score(true, pred, average="weighted", labels=sorted(set(true)), zero_division=0)
    t = np.array([float(rows[i]["valence"]) for i in idx])
    p = np.array([float(rows[i]["pred_valence"]) for i in idx])
    return {"ua": ua, "f1": f1, "mse:valence": float(np.mean((t - p) ** 2))}


def units_of(rows: list[dict[str, str]], groups: dict[str, str] | None
             ) -> list[np.ndarray]:
    """The clips of each unit: each clip alone, or each group (in sorted order of its name)."""
    if groups is None:
        return [np.array([i]) for i in range(len(rows))]
    of = np.array([groups[r["name"]] for r in rows])
    return [np.flatnonzero(of == g) for g in sorted(set(of))]


def plain_bootstrap(a, b, units, seed: int, n: int) -> dict[str, tuple[float, float]]:
    """Percentile interval of delta = b - a over ``n`` resamples of units drawn as
    numpy.random.default_rng(seed).integers(0, G, (n, G)) (mer_heads/stats/resample.py)."""
    drawn = np.random.default_rng(seed).integers(0, len(units), (n, len(units)))
    deltas = {k: [] for k in ("ua", "f1", "mse:valence")}
    for row in drawn:
        idx = np.concatenate([units[u] for u in row])
        ma, mb = plain_metrics(a, idx), plain_metrics(b, idx)
        for k in deltas:
            deltas[k].append(mb[k] - ma[k])
    return {k: tuple(np.quantile(v, [0.025, 0.975])) for k, v in deltas.items()}


def plain_permutation(a, b, units, seed: int, n: int) -> dict[str, float]:
    """Two-sided p of delta: in each permutation every unit's predictions are swapped where
    its bit of numpy.random.default_rng([seed, 1]) bytes is 1 (resample.py)."""
    everything = np.arange(len(a))
    ma, mb = plain_metrics(a, everything), plain_metrics(b, everything)
    observed = {k: mb[k] - ma[k] for k in ma}
    width = 4 * -(-len(units) // 32)
    drawn = np.random.default_rng([seed, 1]).integers(0, 256, (n, width), dtype=np.uint8)
    flips = np.unpackbits(drawn, axis=1, count=len(units), bitorder="little")
    extreme = {k: 0 for k in observed}
    for flip in flips:
        swapped = np.zeros(len(a), bool)
        for u, f in zip(units, flip):
            swapped[u] = bool(f)
        pa = [b[i] if s else a[i] for i, s in enumerate(swapped)]
        pb = [a[i] if s else b[i] for i, s in enumerate(swapped)]
        qa, qb = plain_metrics(pa, everything), plain_metrics(pb, everything)
        for k, d in observed.items():
            extreme[k] += abs(qb[k] - qa[k]) >= abs(d) - 1e-9 * max(1.0, abs(d))
    return {k: (1 + extreme[k]) / (1 + n) for k in observed}


# ---------------------------------------------------------------------------------------------
# End to end


@pytest.mark.slow  # the module's runs fixture fits three runs
@pytest.mark.parametrize("groups", ["recorded", "none"])
def test_two_runs_match_a_plain_bootstrap_and_permutation_loop(runs, tmp_path, capsys, groups):
    out = tmp_path / "cmp"
    extra = ["--groups", "none"] if groups == "none" else []
    assert compare(runs["audio"], runs["fusion"], "--out", out, "--resamples", 120,
                   "--permutations", 150, "--seed", 7, *extra) == 0
    printed = capsys.readouterr().out
    assert "# Paired comparison of 2 runs: audio, fusion" in printed
    assert {p.name for p in out.iterdir()} >= {"compare.md", "compare.json", "compare.csv",
                                                "compare.png"}
    stats = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in stats["runs"]] == ["audio", "fusion"]
    assert (stats["n_resamples"], stats["n_permutations"], stats["seed"]) == (120, 150, 7)
    assert stats["clips"]["n"] == N and stats["delta"] == "b - a"
    if groups == "recorded":  # the runs' folds were grouped by actor: actors are resampled
        assert stats["groups"]["column"] == "actor" and stats["groups"]["n_groups"] == 12
        assert (stats["unit"], stats["n_units"]) == ("group", 12)
        assert "12 groups of 'actor'" in printed
    else:
        assert stats["groups"] is None and (stats["unit"], stats["n_units"]) == ("clip", N)
    a, b = oof(runs["audio"]), oof(runs["fusion"])
    assert [r["name"] for r in a] == [r["name"] for r in b]
    actor = dict(zip([f"clip{i:04d}" for i in range(N)], ACTORS))
    units = units_of(a, actor if groups == "recorded" else None)
    ci = plain_bootstrap(a, b, units, seed=7, n=120)
    p = plain_permutation(a, b, units, seed=7, n=150)
    everything = np.arange(N)
    ma, mb = plain_metrics(a, everything), plain_metrics(b, everything)
    for name in ("ua", "f1", "mse:valence"):
        m = stats["metrics"][name]
        assert set(m) >= {"a", "b", "delta", "ci", "p_value"} and "p_adjusted" not in m
        assert m["a"] == pytest.approx(ma[name], abs=2e-6)
        assert m["b"] == pytest.approx(mb[name], abs=2e-6)
        assert m["delta"] == pytest.approx(mb[name] - ma[name], abs=2e-6)
        assert m["ci"] == pytest.approx(list(ci[name]), abs=2e-5), name
        assert m["p_value"] == pytest.approx(p[name], abs=2e-6), name
    # the values are those each run's metrics.json reports
    pooled = json.loads((runs["audio"] / "metrics.json").read_text())["scores"]["pooled"]
    assert stats["metrics"]["ua"]["a"] == pytest.approx(pooled["ua"], abs=2e-6)
    # compare.csv has the same numbers, one row per metric
    rows = {r["metric"]: r for r in csv.DictReader(open(out / "compare.csv"))}
    assert float(rows["ua"]["ci_low"]) == pytest.approx(stats["metrics"]["ua"]["ci"][0], abs=1e-6)
    assert float(rows["f1"]["p_value"]) == pytest.approx(stats["metrics"]["f1"]["p_value"],
                                                         abs=1e-6)


@pytest.mark.slow  # the module's runs fixture fits three runs
def test_the_same_command_gives_the_same_bytes_and_the_seed_matters(runs, tmp_path):
    for name, extra in (("g", []), ("g2", []), ("s1", ["--seed", "1"])):
        assert compare(runs["audio"], runs["text"], "--out", tmp_path / name,
                       "--permutations", 200, *extra) == 0
    g, s1 = (json.loads((tmp_path / n / "compare.json").read_text()) for n in ("g", "s1"))
    assert (g["n_resamples"], g["n_permutations"]) == (N_RESAMPLES, 200)
    assert g["metrics"]["ua"]["delta"] == s1["metrics"]["ua"]["delta"]
    assert g["metrics"]["ua"]["ci"] != s1["metrics"]["ua"]["ci"]
    # the same command gives the same bytes
    assert ((tmp_path / "g" / "compare.json").read_bytes()
            == (tmp_path / "g2" / "compare.json").read_bytes())


@pytest.mark.slow  # the module's runs fixture fits three runs
def test_three_runs_each_against_the_first_with_holm(runs, tmp_path, capsys):
    out = tmp_path / "three"
    assert compare(runs["audio"], runs["text"], runs["fusion"], "--out", out,
                   "--resamples", 100, "--permutations", 300, "--metric", "ua") == 0
    printed = capsys.readouterr().out
    assert "p (Holm)" in printed and "## Headline: UA" in printed
    stats = json.loads((out / "compare.json").read_text())
    assert [(c["a"], c["b"]) for c in stats["comparisons"]] == [("audio", "text"),
                                                                 ("audio", "fusion")]
    assert stats["correction"] == "holm" and stats["metric"] == "ua" and "metrics" not in stats
    for metric in ("ua", "f1", "mse:valence", "ece"):
        p = np.array([c["metrics"][metric]["p_value"] for c in stats["comparisons"]])
        lo, hi = np.argsort(p)
        holm = np.empty(2)
        holm[lo] = min(1.0, 2 * p[lo])
        holm[hi] = max(holm[lo], min(1.0, p[hi]))
        got = [c["metrics"][metric]["p_adjusted"] for c in stats["comparisons"]]
        assert got == pytest.approx(holm, abs=2e-6)
    # a pair gets the same raw numbers as when it is compared alone
    assert compare(runs["audio"], runs["fusion"], "--out", tmp_path / "two",
                   "--resamples", 100, "--permutations", 300) == 0
    two = json.loads((tmp_path / "two" / "compare.json").read_text())["metrics"]["ua"]
    three = stats["comparisons"][1]["metrics"]["ua"]
    assert {k: three[k] for k in ("delta", "ci", "p_value")} == {
        k: two[k] for k in ("delta", "ci", "p_value")}
    # every pair
    assert compare(runs["audio"], runs["text"], runs["fusion"], "--out", tmp_path / "all",
                   "--resamples", 50, "--permutations", 50, "--pairs", "all") == 0
    every = json.loads((tmp_path / "all" / "compare.json").read_text())
    assert [(c["a"], c["b"]) for c in every["comparisons"]] == [
        ("audio", "text"), ("audio", "fusion"), ("text", "fusion")]


# ---------------------------------------------------------------------------------------------
# Refusals and --common-clips


@pytest.mark.slow  # the module's runs fixture fits three runs
def test_runs_on_different_clips_are_refused_unless_common_clips(runs, tmp_path, capsys):
    fewer = copy_run(runs["fusion"], tmp_path / "fewer", lambda rows: rows[12:])
    out = tmp_path / "cmp"
    assert compare(runs["audio"], fewer, "--out", out) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert ("Runs 'audio' (120 clips) and 'fewer' (108 clips) are not on the same clips: 12 of "
            "'audio' are not in 'fewer' and 0 of 'fewer' are not in 'audio'") in err
    assert "--common-clips" in err and not out.exists()
    assert compare(runs["audio"], fewer, "--out", out, "--common-clips", "--resamples", 50,
                   "--permutations", 50) == 0
    stats = json.loads((out / "compare.json").read_text())
    assert stats["clips"]["n"] == 108 and stats["clips"]["more"] == {"audio": 12, "fewer": 0}
    assert "108 clips in common; audio had 12 more, fewer had 0 more" in (
        out / "compare.md").read_text()
    # the intersection's values are those of the 108 clips
    a = oof(runs["audio"])[12:]
    assert stats["metrics"]["ua"]["a"] == pytest.approx(
        plain_metrics(a, np.arange(108))["ua"], abs=2e-6)


@pytest.mark.slow  # the module's runs fixture fits three runs
def test_runs_with_different_folds_or_labels_are_refused(runs, tmp_path, capsys):
    def move(rows):  # two clips of different folds change places: another partition
        i = next(k for k, r in enumerate(rows) if r["fold"] != rows[0]["fold"])
        rows[0]["fold"], rows[i]["fold"] = rows[i]["fold"], rows[0]["fold"]
        return rows

    def relabel(rows):
        rows[3]["discrete"] = "happy" if rows[3]["discrete"] != "happy" else "sad"
        return rows

    def rename(rows):  # the same partition under other fold names is the same folds
        for r in rows:
            r["fold"] = f"f{r['fold']}"
        return rows

    moved = copy_run(runs["text"], tmp_path / "moved", move)
    assert compare(runs["audio"], moved, "--out", tmp_path / "x") == 1
    err = capsys.readouterr().err
    assert "held out the clips in different folds" in err and "--seed" in err
    relabelled = copy_run(runs["text"], tmp_path / "relabelled", relabel)
    assert compare(runs["audio"], relabelled, "--out", tmp_path / "x") == 1
    assert "scored against different labels on 1 clip(s): 'clip0003'" in capsys.readouterr().err
    renamed = copy_run(runs["text"], tmp_path / "renamed", rename)
    assert compare(runs["audio"], renamed, "--out", tmp_path / "y", "--resamples", 20,
                   "--permutations", 20) == 0


@pytest.mark.slow  # the module's runs fixture fits three runs
def test_bad_command_lines_exit_2_and_bad_inputs_exit_1(runs, tmp_path, capsys):
    for args in ([runs["audio"]], [runs["audio"], runs["text"], "--resamples", 0],
                 [runs["audio"], runs["text"], "--permutations", "-3"],
                 [runs["audio"], runs["text"], "--pairs", "some"]):
        with pytest.raises(SystemExit) as e:
            compare(*args, "--out", tmp_path / "x")
        assert e.value.code == 2
    assert "compare needs at least two runs" in capsys.readouterr().err
    for args, message in (
            ([runs["audio"], tmp_path / "nowhere"], "does not exist"),
            ([runs["audio"], runs["audio"]], "given twice"),
            ([runs["audio"], runs["manifest"]], "is not a file of held-out predictions"),
            ([runs["audio"], runs["audio"].parent], "is not a run directory"),
            ([runs["audio"], runs["text"], "--groups", "speaker"],
             "no source has the column 'speaker'")):
        assert compare(*args, "--out", tmp_path / "x") == 1, message
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert compare(runs["audio"], runs["text"], "--out", runs["text"]) == 1
    assert "is one of the runs" in capsys.readouterr().err
    out = tmp_path / "done"
    assert compare(runs["audio"], runs["text"], "--out", out, "--resamples", 10,
                   "--permutations", 10) == 0
    assert compare(runs["audio"], runs["text"], "--out", out) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert compare(runs["audio"], runs["text"], "--out", out, "--resamples", 10,
                   "--permutations", 10, "--overwrite") == 0


@pytest.mark.slow  # the module's runs fixture fits three runs
def test_prediction_csvs_with_groups_from_a_manifest(runs, tmp_path):
    a, b = (runs[k] / "oof_predictions.csv" for k in ("audio", "text"))
    assert compare(a, b, "--out", tmp_path / "clips", "--resamples", 50,
                   "--permutations", 50) == 0
    clips = json.loads((tmp_path / "clips" / "compare.json").read_text())
    assert clips["unit"] == "clip" and clips["groups"] is None  # a CSV records no groups
    assert [r["name"] for r in clips["runs"]] == ["audio", "text"]
    assert compare(a, b, "--out", tmp_path / "g", "--groups", "actor", "--manifest",
                   runs["manifest"], "--resamples", 50, "--permutations", 50) == 0
    g = json.loads((tmp_path / "g" / "compare.json").read_text())
    assert g["n_units"] == 12 and g["groups"]["source"].startswith("manifest")
    full = json.loads((tmp_path / "clips" / "compare.json").read_text())
    assert g["metrics"]["ua"]["delta"] == full["metrics"]["ua"]["delta"]


@pytest.mark.slow  # the module's runs fixture fits three runs
def test_a_run_against_its_copy_differs_by_nothing(runs, tmp_path, capsys):
    twin = tmp_path / "twin"
    shutil.copytree(runs["audio"], twin)
    assert compare(runs["audio"], twin, "--out", tmp_path / "c", "--resamples", 50,
                   "--permutations", 99) == 0
    stats = json.loads((tmp_path / "c" / "compare.json").read_text())
    for name, m in stats["metrics"].items():
        if m["delta"] is not None:
            assert m["delta"] == 0 and m["ci"] == [0, 0] and m["p_value"] == 1, name
    # a manifest that nothing reads is refused, not ignored
    a, b = (runs[k] / "oof_predictions.csv" for k in ("audio", "text"))
    assert compare(a, b, "--out", tmp_path / "m", "--manifest", runs["manifest"]) == 1
    assert "add --groups COL or drop --manifest" in capsys.readouterr().err


def test_classes_in_another_order_are_the_same_predictions(runs, tmp_path, capsys):
    reordered = tmp_path / "reordered"
    shutil.copytree(runs["audio"], reordered)
    info = json.loads((reordered / "run.json").read_text())
    info["classes"] = info["classes"][::-1]
    (reordered / "run.json").write_text(json.dumps(info))
    rows = oof(runs["audio"])
    order = [k for k in rows[0] if not k.startswith("p_")] + [
        k for k in rows[0] if k.startswith("p_")][::-1]
    write_oof([{k: r[k] for k in order} for r in rows], reordered / "oof_predictions.csv")
    assert compare(runs["audio"], reordered, "--out", tmp_path / "c", "--resamples", 20,
                   "--permutations", 20) == 0
    stats = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert "ece" in stats["metrics"]
    assert all(m["delta"] in (0, None) for m in stats["metrics"].values())
    # a damaged cell is one line naming the file, the row and the column
    damaged = copy_run(runs["text"], tmp_path / "damaged",
                       lambda rows: [{**r, "p_sad": "x" if i == 4 else r["p_sad"]}
                                     for i, r in enumerate(rows)])
    assert compare(runs["audio"], damaged, "--out", tmp_path / "d") == 1
    err = capsys.readouterr().err.strip()
    assert "row 6: column 'p_sad' holds 'x', not a finite number" in err
    assert len(err.splitlines()) == 1


def test_settings_defaults_are_the_library_defaults():
    s = CompareSettings()
    assert (s.resamples, s.permutations, s.seed, s.correction) == (N_RESAMPLES, N_PERMUTATIONS,
                                                                    0, "holm")
