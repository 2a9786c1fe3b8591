"""Issue 16: group-aware folds (--groups), the speaker warning, per-group normalisation
(--normalize-by), multi-condition training (--augment) and modality dropout."""

from __future__ import annotations

import csv
import shutil
import subprocess
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mer_features import EMOTIONS
from mer_features.store import FeatureStore
from mer_heads.cli import main
from mer_heads.config import HeadConfig
from mer_heads.data.dataset import MultimodalData, load_dataset
from mer_heads.errors import DataError, ParameterError, RunError
from mer_heads.experiments.fit import fit_run, predict_run
from mer_heads.folds import shared_folds
from mer_heads.heads.training import drop_modalities
from mer_heads.protocol import CrossValidatedHead

from .synthetic_stores import FAST, MODALITIES, clip_labels, write_noisy, write_store

N = 120
ACTORS = [f"actor{(i * 7) % 12:02d}" for i in range(N)]  # 12 actors, 10 clips each


@pytest.fixture(scope="module")
def grouped(tmp_path_factory) -> dict[str, Path]:
    """Audio, text and video stores of N clips whose manifest had ``actor`` and ``gender``
    columns; one clip's video failed; corrupted audio twins for conditions and augmentation."""
    d = tmp_path_factory.mktemp("grouped")
    names, y, valence = clip_labels(N, 3)
    extra = {"actor": ACTORS, "gender": ["male" if i % 2 else "female" for i in range(N)]}
    paths = {}
    for j, (key, (dim, frame_dim)) in enumerate(MODALITIES.items()):
        paths[key] = write_store(d / f"{key}.h5", key, names, y, valence, dim=dim,
                                 frame_dim=frame_dim, seed=30 + j, extra=extra,
                                 failed={names[5]} if key == "video" else set())
    paths["test5"] = write_noisy(paths["audio"], d / "audio-snr05.h5", 5, seed=0)
    paths["train"] = write_noisy(paths["audio"], d / "audio-train.h5", 7.5, seed=1,
                                 spec="snr=5:10,source=white")
    paths["train_pink"] = write_noisy(paths["audio"], d / "audio-train-pink.h5", 7.5, seed=1,
                                      spec="snr=5:10,source=pink")
    return paths


def actor_of(store: Path) -> dict[str, str]:
    with FeatureStore(store) as s:
        return dict(zip(s.names, s.extra_columns()["actor"]))


def assert_one_fold_per_group(names, folds, actor: dict[str, str]) -> None:
    fold_of: dict[str, int] = {}
    for name, fold in zip(names, folds):
        assert fold_of.setdefault(actor[name], int(fold)) == int(fold), actor[name]
    assert len(set(fold_of.values())) > 1


def assert_disjoint(held_out_groups: list[list[str]], n_groups: int) -> None:
    flat = [g for fold in held_out_groups for g in fold]
    assert len(flat) == len(set(flat)) == n_groups


# --------------------------------------------------------------------------------------------
# Group folds never split a group, in every command


@pytest.mark.slow
def test_fit_group_folds_keep_each_actor_in_one_fold(grouped, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "--features", str(grouped["audio"]), "--out", str(out), "--model",
                 "logreg", "--folds", "4", "--groups", "actor"]) == 0
    err = capsys.readouterr().err
    assert "speaker-like" not in err
    rows = list(csv.DictReader(open(out / "oof_predictions.csv", encoding="utf-8")))
    assert_one_fold_per_group([r["name"] for r in rows], [r["fold"] for r in rows],
                              actor_of(grouped["audio"]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"]["groups"] == "actor"
    assert metrics["folds"]["kind"] == "stratified-group" and metrics["folds"]["n_groups"] == 12
    assert_disjoint(metrics["folds"]["held_out_groups"], 12)
    report = (out / "report.md").read_text()
    assert "4 stratified group folds by 'actor' (12 groups" in report


@pytest.mark.slow
def test_ablate_and_robustness_share_group_folds(grouped, tmp_path, capsys):
    features = ["--features", str(grouped["audio"]), "--features", str(grouped["text"])]
    assert main(["ablate", *features, "--out", str(tmp_path / "a"), "--model", "logreg",
                 "--folds", "3", "--groups", "actor"]) == 0
    ablation = json.loads((tmp_path / "a" / "ablation.json").read_text())
    assert ablation["folds"]["groups"] == "actor"
    assert_disjoint(ablation["folds"]["held_out_groups"], 12)
    assert main(["robustness", *features, "--condition", f"audio={grouped['test5']}",
                 "--out", str(tmp_path / "r"), "--model", "logreg", "--folds", "3",
                 "--groups", "actor", "--sets", "minimal"]) == 0
    report = json.loads((tmp_path / "r" / "robustness.json").read_text())
    assert report["folds"]["kind"] == "stratified-group"
    assert_disjoint(report["folds"]["held_out_groups"], 12)
    assert "speaker-like" not in capsys.readouterr().err
    # the shared assignment itself, drawn once for every modality set
    data = load_dataset([grouped["audio"], grouped["text"]])
    fold_of = shared_folds(data.labels, data.present.any(axis=1), 3, 0,
                           groups=data.groups("actor"), column="actor", names=data.names)
    assert_one_fold_per_group(data.names, fold_of, actor_of(grouped["audio"]))


@pytest.mark.slow
def test_a_given_assignment_that_splits_a_group_is_refused(grouped):
    data = load_dataset([grouped["audio"]])
    fold_of = np.arange(len(data)) // 40  # every block of 40 clips holds all 12 actors
    with pytest.raises(DataError, match="puts clips of one 'actor' group in several folds"):
        CrossValidatedHead("logreg", folds=3, groups="actor").fit(data, fold_of=fold_of)


@pytest.mark.parametrize("hide", [None, 0.5])
def test_semi_pool_clips_never_train_the_fold_holding_out_their_group(grouped, hide,
                                                                      monkeypatch):
    import mer_heads.experiments.semi as semi

    data = load_dataset([grouped["audio"]])
    hidden = None
    if hide is None:  # a fixed unlabelled pool: every fifth clip
        discrete = data.discrete.copy()
        discrete[::5] = ""
        data = MultimodalData(**{**data.__dict__, "discrete": discrete})
    else:
        data, hidden = semi.hide_labels(data, np.ones(len(data), bool), hide, 0)
    # Every pool clip is selected with its teacher's top class, so only the group rule removes
    # any.
    monkeypatch.setattr(semi, "select", lambda settings, proba, counts: proba.argmax(1))
    result = semi.fit_semi(data, semi.SemiSettings("threshold", rounds=2),
                           {"model": "logreg", "folds": 3, "groups": "actor"}, hidden=hidden)
    actor = actor_of(grouped["audio"])
    est = result.estimator
    held = {k: {actor[n] for n, f in zip(est.train_names_, est.fold_) if f == k}
            for k in range(3)}
    assert_one_fold_per_group(est.train_names_, est.fold_, actor)
    for labels in result.selected:
        for k in range(3):
            used = {actor[n] for n, c in zip(result.pool, labels[k]) if c >= 0}
            assert used and not used & held[k]
    assert any((labels < 0).any() for labels in result.selected)


def test_folds_above_the_number_of_groups_is_one_clean_error(grouped, tmp_path):
    data = load_dataset([grouped["audio"]])
    with pytest.raises(DataError, match=r"--folds 13 needs at least 13 groups of --groups actor"
                                        r".* have 12 .*lower --folds to 12"):
        CrossValidatedHead("logreg", folds=13, groups="actor").fit(data)


# --------------------------------------------------------------------------------------------
# The speaker warning


@pytest.mark.parametrize("command", [
    "fit",
    # two and three cross-validations more than fit (over 1 s): in `make test`
    pytest.param("ablate", marks=pytest.mark.slow),
    pytest.param("robustness", marks=pytest.mark.slow)])
def test_folds_that_ignore_a_speaker_column_warn_in_notes_and_on_stderr(grouped, tmp_path,
                                                                       capsys, command):
    features = ["--features", str(grouped["audio"]), "--features", str(grouped["text"])]
    argv = {"fit": ["fit", *features[:2]], "ablate": ["ablate", *features],
            "robustness": ["robustness", *features[:2], "--condition",
                           f"audio={grouped['test5']}"]}[command]
    out = tmp_path / command
    figures = ["--no-figures"] if command == "fit" else []
    assert main([*argv, "--out", str(out), "--model", "logreg", "--folds", "3", *figures]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("warning: ")]
    assert len(warnings) == 1, argv
    assert "speaker-like column 'actor' (12 values)" in warnings[0]
    assert "--groups actor" in warnings[0]
    if command != "robustness":
        report = json.loads((out / {"fit": "metrics.json", "ablate": "ablation.json"}[command])
                            .read_text())
        assert any("speaker-like column 'actor'" in n for n in report["notes"])


def test_no_warning_without_a_speaker_like_column(tmp_path):
    names, y, valence = clip_labels(60, 1)
    store = write_store(tmp_path / "a.h5", "audio", names, y, valence, dim=6, frame_dim=2,
                        seed=1, extra={"gender": ["m", "f"] * 30,
                                       "speaker_id": [f"s{i}" for i in range(60)]})
    est = CrossValidatedHead("logreg", folds=3).fit(load_dataset([store]))
    assert not any("speaker-like" in n for n in est.notes_)  # speaker_id never repeats


# --------------------------------------------------------------------------------------------
# Per-group normalisation


def _direct_normalisation(x: np.ndarray, present: np.ndarray, groups: list[str],
                          mask: np.ndarray | None = None) -> np.ndarray:
    out = np.zeros(x.shape, np.float64)
    for g in sorted(set(groups)):
        rows = np.array([i for i, v in enumerate(groups) if v == g and present[i]])
        block = x[rows].astype(np.float64)
        values = block if mask is None else block[mask[rows]]
        mean, std = values.mean(0), values.std(0)
        z = (block - mean) / np.where(std < 1e-6, 1.0, std)
        out[rows] = z if mask is None else z * mask[rows][..., None]
    return out


@pytest.mark.parametrize("input", ["utterance", pytest.param("frames", marks=pytest.mark.slow)])
def test_normalisation_equals_a_direct_numpy_computation(grouped, input):
    raw = load_dataset([grouped["audio"], grouped["video"]], input=input)
    data = load_dataset([grouped["audio"], grouped["video"]], input=input, normalize_by="actor")
    assert data.normalized_by == "actor" and raw.normalized_by is None
    for m in range(2):
        mask = None if raw.frame_mask is None else raw.frame_mask[m]
        want = _direct_normalisation(raw.features[m], raw.present[:, m], ACTORS, mask)
        np.testing.assert_allclose(data.features[m], want, rtol=1e-5, atol=1e-5)
    assert not data.features[1][~data.present[:, 1]].any()  # the failed video stays zero
    assert any("z-scored within each of the 12 'actor' groups" in n for n in data.notes)


@pytest.mark.slow
def test_normalisation_composes_with_fold_standardisation_and_predict(grouped, tmp_path):
    run = fit_run([grouped["audio"]], tmp_path / "run", model="logreg", folds=3,
                  groups="actor", normalize_by="actor")
    est = run.estimator
    data = load_dataset([grouped["audio"]], normalize_by="actor")
    rows = data.rows_of(est.train_names_)
    for k in range(3):  # fold statistics are those of the normalised training clips
        np.testing.assert_allclose(est.standardizer_.mean[0][k],
                                   data.features[0][rows[est.fold_ != k]].mean(0), atol=1e-5)
    assert run.metrics["normalize_by"] == "actor"
    # predict: new clips (two actors' only) are normalised by their own groups, from their
    # own clips, as the run says, and nothing else
    subset = [n for n, a in zip(data.names, ACTORS) if a in ("actor00", "actor05")]
    names, y, valence = clip_labels(N, 3)
    pick = [names.index(n) for n in subset]
    new = write_store(tmp_path / "new.h5", "audio", subset, y[pick], valence[pick], dim=12,
                      frame_dim=5, seed=30, extra={"actor": [ACTORS[i] for i in pick]})
    predict_run(run.run_dir, tmp_path / "p.csv", [new])
    got = {r["name"]: r["discrete"] for r in csv.DictReader(open(tmp_path / "p.csv"))}
    raw = load_dataset([new])
    direct = _direct_normalisation(raw.features[0], raw.present[:, 0],
                                   list(raw.extra["actor"]))
    manual = MultimodalData(**{**raw.__dict__, "features": [direct.astype(np.float32)],
                               "normalized_by": "actor"})
    want = est.predict(manual)[0]
    assert [got[n] for n in raw.names] == list(want)
    with pytest.raises(RunError, match="normalised by 'actor'"):
        est.predict(raw)  # the same clips not normalised: refused, not silently wrong
    # stores without the column, the column from --manifest instead
    bare = write_store(tmp_path / "bare.h5", "audio", subset, y[pick], valence[pick], dim=12,
                       frame_dim=5, seed=30)
    with pytest.raises(DataError, match="--normalize-by actor: the clips have no column"):
        predict_run(run.run_dir, tmp_path / "q.csv", [bare])
    manifest = tmp_path / "m.csv"
    manifest.write_text("name,discrete,actor\n" + "".join(
        f"{n},,{ACTORS[i]}\n" for n, i in zip(subset, pick)))
    predict_run(run.run_dir, tmp_path / "q.csv", [bare], manifest=manifest)
    assert (tmp_path / "q.csv").read_text() == (tmp_path / "p.csv").read_text()


# --------------------------------------------------------------------------------------------
# Multi-condition training


def _memorising_data(n_classes: int = 6, per_class: int = 10, dim: int = 150):
    """Features with no class signal; a copy whose clips are the clean clips themselves (a
    "corruption" that changes nothing): a head that saw a held-out clip's copy in training
    would recognise the clip, one that did not is at chance."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), per_class)
    n = len(y)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    from mer_heads.data.dataset import ModalityInfo

    info = ModalityInfo("audio", "a.h5", "f", "audio", "toy", (dim,), dim)
    data = MultimodalData(
        names=[f"c{i:03d}" for i in range(n)], modalities=[info], features=[x],
        present=np.ones((n, 1), bool), discrete=np.array([EMOTIONS[c] for c in y], object),
        valence=np.full(n, np.nan), split=np.full(n, "train", object))
    copy = MultimodalData(**{**data.__dict__, "features": [x + 0.01 * rng.standard_normal(
        x.shape).astype(np.float32)]})
    return data, copy


def test_augmentation_never_touches_held_out_clips(monkeypatch):
    from sklearn.linear_model import LogisticRegression

    from mer_heads.heads.sklearn import SklearnHead

    data, copy = _memorising_data()
    seen = {}
    real = SklearnHead.fit

    def spy(self, config, state, stacked, train_rows, val_rows, fold_labels):
        seen["train"], seen["val"], seen["n"] = train_rows, val_rows, len(stacked)
        return real(self, config, state, stacked, train_rows, val_rows, fold_labels)

    monkeypatch.setattr(SklearnHead, "fit", spy)
    est = CrossValidatedHead("logreg", folds=3, C=100.0).fit(data, augment=[copy])
    n = len(data)
    assert seen["n"] == 2 * n
    for rows, val in zip(seen["train"], seen["val"]):
        copies = rows[rows >= n] - n
        assert set(copies) == set(rows[rows < n])   # each training clip's copy, and
        assert not set(copies) & set(val)           # never a held-out clip's
    assert est.n_augmented_.tolist() == [len(r) // 2 for r in seen["train"]]
    # The case is built so that leaking would show: a model trained with the held-out clips'
    # copies recognises them (near-perfect), the protocol's stays at chance.
    fold0 = np.flatnonzero(est.fold_ == 0)
    train0 = np.flatnonzero(est.fold_ != 0)
    leaky = LogisticRegression(C=100.0, max_iter=2000).fit(
        np.concatenate([data.features[0][train0], copy.features[0]]),
        np.concatenate([data.labels[train0], data.labels]))
    assert (leaky.predict(data.features[0][fold0]) == data.labels[fold0]).mean() > 0.9
    assert est.cv_scores_.f1 < 0.45


@pytest.mark.slow
def test_augmented_fit_learns_from_copies_and_statistics_include_them(grouped, tmp_path):
    data = load_dataset([grouped["audio"]])
    clean = CrossValidatedHead("logreg", folds=3, groups="actor").fit(data)
    run = fit_run([grouped["audio"]], tmp_path / "run", model="logreg", folds=3,
                  groups="actor", augment=[f"audio={grouped['train']}",
                                           f"audio={grouped['train_pink']}"])
    est = run.estimator
    assert (est.fold_ == clean.fold_).all()   # the same folds as without copies
    per_fold = np.bincount(est.fold_, minlength=3)
    assert est.n_augmented_.tolist() == [2 * (len(est.fold_) - per_fold[k]) for k in range(3)]
    augment = run.metrics["augment"]
    assert [c["label"] for c in augment["copies"]] == ["5-10 dB", "5-10 dB pink"]
    assert augment["copies"][0]["stores"]["audio"]["noise"]["seed"] == 1
    copies = [load_dataset([grouped[k]]) for k in ("train", "train_pink")]
    rows = data.rows_of(est.train_names_)
    train0 = rows[est.fold_ != 0]
    pooled = np.concatenate([data.features[0][train0]]
                            + [c.features[0][train0] for c in copies])
    np.testing.assert_allclose(est.standardizer_.mean[0][0], pooled.mean(0), rtol=1e-4,
                               atol=1e-4)


def test_augment_and_condition_with_the_same_draws_are_refused(grouped, tmp_path):
    from mer_heads.experiments.robustness import robustness

    with pytest.raises(DataError, match="has the noise draws of condition '5 dB'"):
        robustness([grouped["audio"]], [["audio=" + str(grouped["test5"])]], tmp_path / "r",
                   augment=[f"audio={grouped['test5']}"], model="logreg", folds=3)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_robustness_compares_clean_and_multi_condition_heads(grouped, tmp_path):
    from mer_heads.experiments.robustness import robustness

    features = [grouped["audio"], grouped["text"]]
    result = robustness(features, [["audio=" + str(grouped["test5"])]], tmp_path / "r",
                        augment=[f"audio={grouped['train']}"], model="logreg", folds=3,
                        groups="actor")
    by = {(r["training"], r["condition"], r["modalities"]): r for r in result.rows}
    assert {k[0] for k in by} == {"clean", "multi-condition"}
    # text is never corrupted: its multi-condition head is the clean one
    assert by[("clean", "5 dB", "text")]["f1"] == by[("multi-condition", "5 dB", "text")]["f1"]
    report = json.loads((tmp_path / "r" / "robustness.json").read_text())
    assert report["trainings"] == ["clean", "multi-condition"]
    assert report["multi-condition"]["augment"][0]["label"] == "5-10 dB"
    md = result.markdown()
    assert "| multi-condition | 5 dB | 5 |" in md and "| clean | clean | - |" in md
    assert "no --augment store corrupts text" in md
    # the clean-trained rows are what they are without --augment
    alone = robustness(features, [["audio=" + str(grouped["test5"])]], tmp_path / "r1",
                       model="logreg", folds=3, groups="actor")
    assert [r["f1"] for r in alone.rows] == [r["f1"] for r in result.rows
                                             if r["training"] == "clean"]


# --------------------------------------------------------------------------------------------
# Modality dropout


def test_modality_dropout_masks_never_drop_all_and_are_seeded():
    gen = torch.Generator().manual_seed(0)
    present = torch.ones((20, 1000, 3), dtype=torch.bool)
    present[:, :100, 1:] = False         # clips with one modality: it is never dropped
    present[:, 100:200, :] = False       # clips with none: stay with none
    kept = drop_modalities(present, 0.5, gen)
    assert not (kept & ~present).any()
    assert (kept[:, :100, 0]).all()
    assert not kept[:, 100:200].any()
    full = kept[:, 200:]
    assert full.any(-1).all()
    # three modalities at p: each dropped with p, all three (p^3) rescued by keeping one
    assert float((~full).float().mean()) == pytest.approx(0.5 - 0.125 / 3, abs=0.01)
    again = drop_modalities(present, 0.5, torch.Generator().manual_seed(0))
    other = drop_modalities(present, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(kept, again) and not torch.equal(kept, other)


@pytest.mark.slow
def test_modality_dropout_trains_through_the_presence_mask_only(grouped, monkeypatch):
    from mer_heads.heads.stack import StackedHead

    data = load_dataset([grouped["audio"], grouped["text"], grouped["video"]])
    masks = {"train": [], "eval": []}
    real = StackedHead.forward

    def spy(self, inputs, present, frame_masks=None):
        masks["train" if self.training else "eval"].append(present.clone())
        return real(self, inputs, present, frame_masks)

    monkeypatch.setattr(StackedHead, "forward", spy)
    params = {**FAST, "epochs": 3}
    est = CrossValidatedHead("attention", **params, modality_dropout=0.4).fit(data)
    train = torch.cat([m.reshape(-1, 3) for m in masks["train"]])
    assert 0.25 < 1 - float(train.float().mean()) < 0.5  # modalities were masked in training
    assert train.any(-1).all()                           # never all of a clip's
    evaluated = torch.cat([m.reshape(-1, 3) for m in masks["eval"]])
    truth = torch.from_numpy(data.present)
    assert set(map(tuple, evaluated.int().tolist())) <= set(map(tuple, truth.int().tolist()))
    # seeded: the same run again is identical; without dropout it differs
    monkeypatch.setattr(StackedHead, "forward", real)
    twin = CrossValidatedHead("attention", **params, modality_dropout=0.4).fit(data)
    plain = CrossValidatedHead("attention", **params).fit(data)
    np.testing.assert_array_equal(est.oof_proba_, twin.oof_proba_)
    assert not np.array_equal(est.oof_proba_, plain.oof_proba_)
    proba, _, _ = est.predict_held_out(data)  # evaluation masks nothing: oof reproduced
    np.testing.assert_array_equal(proba, est.oof_proba_)


@pytest.mark.slow
def test_modality_dropout_is_recorded_and_refused_for_sklearn_heads(grouped, tmp_path):
    run = fit_run([grouped["audio"], grouped["text"]], tmp_path / "run", model="attention",
                  modality_dropout=0.25, **FAST)
    assert run.metrics["params"]["modality_dropout"] == 0.25
    assert "modality dropout 0.25" in (tmp_path / "run" / "report.md").read_text()
    with pytest.raises(ParameterError, match="modality_dropout masks modalities inside the "
                                             "neural heads"):
        HeadConfig(model="logreg", modality_dropout=0.25)


# --------------------------------------------------------------------------------------------


@pytest.mark.slow  # two neural fits with every option (test_fit checks the plain case quickly)
def test_metrics_are_byte_identical_with_every_new_option(grouped, tmp_path):
    options = dict(model="attention", groups="actor", normalize_by="actor",
                   modality_dropout=0.3, augment=[f"audio={grouped['train']}"], **FAST)
    features = [grouped["audio"], grouped["text"]]
    a = fit_run(features, tmp_path / "a", **options).run_dir / "metrics.json"
    b = fit_run(features, tmp_path / "b", **options).run_dir / "metrics.json"
    assert a.read_bytes() == b.read_bytes()
    metrics = json.loads(a.read_text())
    assert metrics["folds"]["groups"] == "actor" and metrics["normalize_by"] == "actor"
    assert metrics["augment"]["per_model"] and metrics["params"]["modality_dropout"] == 0.3


def test_manifest_supplies_the_group_column(tmp_path):
    names, y, valence = clip_labels(60, 2)
    store = write_store(tmp_path / "a.h5", "audio", names, y, valence, dim=6, frame_dim=2,
                        seed=2)
    manifest = tmp_path / "m.csv"
    manifest.write_text("name,discrete,valence,speaker\n" + "".join(
        f"{n},{EMOTIONS[c]},{v},spk{i % 6}\n" for i, (n, c, v) in enumerate(zip(names, y,
                                                                                valence))))
    with pytest.raises(DataError, match="--groups speaker: the clips have no column 'speaker'"):
        CrossValidatedHead("logreg", folds=3, groups="speaker").fit(load_dataset([store]))
    data = load_dataset([store], manifest=manifest)
    assert list(data.extra["speaker"][:3]) == ["spk0", "spk1", "spk2"]
    est = CrossValidatedHead("logreg", folds=3, groups="speaker").fit(data)
    assert_one_fold_per_group(est.train_names_, est.fold_,
                              dict(zip(names, [f"spk{i % 6}" for i in range(60)])))


def test_stores_disagreeing_on_a_column_are_refused_only_where_it_is_used(tmp_path):
    names, y, valence = clip_labels(60, 2)
    a = write_store(tmp_path / "a.h5", "audio", names, y, valence, dim=6, frame_dim=2, seed=2,
                    extra={"actor": [f"a{i % 6}" for i in range(60)]})
    t = write_store(tmp_path / "t.h5", "text", names, y, valence, dim=5, frame_dim=2, seed=3,
                    extra={"actor": [f"a{(i + 1) % 6}" for i in range(60)]})
    data = load_dataset([a, t])
    assert "actor" not in data.extra
    CrossValidatedHead("logreg", folds=3).fit(data)  # the column is not used: no error
    from mer_heads.errors import LabelError

    with pytest.raises(LabelError, match=r"--groups actor: the stores .* disagree on the "
                                         r"'actor' column of 60 clip\(s\)"):
        CrossValidatedHead("logreg", folds=3, groups="actor").fit(data)
    manifest = tmp_path / "m.csv"
    manifest.write_text("name,discrete,actor\n" + "".join(
        f"{n},{EMOTIONS[c]},a{i % 6}\n" for i, (n, c) in enumerate(zip(names, y))))
    data = load_dataset([a, t], manifest=manifest)
    CrossValidatedHead("logreg", folds=3, groups="actor").fit(data)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_robustness_refuses_training_copies_with_the_test_noise_seed(tmp_path):
    """`make robustness TRAIN_LEVELS=...` stops before any work when TRAIN_SEED equals
    NOISE_SEED (the copies would hold the test conditions' draws); without training levels
    the seeds may agree (the run goes on, here to the missing manifest's error)."""
    root = Path(__file__).resolve().parents[2]
    base = ["make", "-s", "-o", "setup", "-C", str(root), "robustness",
            f"MANIFEST={tmp_path / 'none.csv'}", "NOISE_SEED=3", "TRAIN_SEED=3"]
    refused = subprocess.run([*base, "TRAIN_LEVELS=5:10 5:10:pink"], capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode != 0
    assert "error: TRAIN_SEED (3) equals NOISE_SEED" in refused.stderr
    assert "e.g. TRAIN_SEED=4" in refused.stderr
    assert not (tmp_path / "none.csv").exists()
    clean_only = subprocess.run([*base, "TRAIN_LEVELS=clean"], capture_output=True, text=True,
                                timeout=60)
    assert "TRAIN_SEED" not in clean_only.stderr
    assert "none.csv' does not exist" in clean_only.stderr
