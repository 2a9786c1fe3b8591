"""mer-heads leaderboard: each row is a plain cross-validation on shared folds, ranked per
modality, fused top-K, byte-identical outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mer_heads import fit_run, leaderboard
from mer_heads.errors import DataError, ParameterError
from mer_heads.experiments.leaderboard import display_names

from ..synthetic_stores import clip_labels, write_store

FAST = dict(model="logreg", folds=3, fusion="logreg")


@pytest.fixture(scope="module")
def weak_audio(tmp_path_factory) -> Path:
    """A second, weaker audio store of the session stores' 120 clips (the last one failed, as
    in those, so every store has the same usable clips and folds are those of a plain fit)."""
    names, y, valence = clip_labels(120)
    return write_store(tmp_path_factory.mktemp("lb") / "weak.h5", "audio", names, y, valence,
                       dim=6, frame_dim=2, seed=5, strength=0.4, failed={names[-1]})


@pytest.mark.slow
def test_rows_equal_plain_fits_on_the_same_folds(stores, weak_audio, tmp_path) -> None:
    result = leaderboard([f"audio={stores['audio']}", f"audio={weak_audio}",
                          f"text={stores['text']}"], tmp_path / "lb", seeds=2, top_n=2, **FAST)
    single = [r for r in result.rows if r["section"] == "single"]
    assert [(r["modality"], r["rank"]) for r in single] == [("audio", 1), ("audio", 2),
                                                             ("text", 1)]
    audio = next(r for r in single if r["name"] == "toy-audio:audio")
    assert audio["rank"] == 1 and audio["metric_mean"] > single[1]["metric_mean"]
    for s, seed_row in enumerate(audio["per_seed"]):
        plain = fit_run([stores["audio"]], tmp_path / f"fit{s}", model="logreg", folds=3,
                        seed=s).metrics["cv"]
        assert seed_row["seed"] == s
        for k in ("f1", "mse", "metric"):
            assert seed_row[k] == pytest.approx(plain[k], abs=1e-12)
    values = [p["metric"] for p in audio["per_seed"]]
    assert audio["metric_mean"] == pytest.approx(np.mean(values))
    assert audio["metric_std"] == pytest.approx(np.std(values))
    # K=1 fuses the best audio and the text store: a plain two-store fit
    fused = [r for r in result.rows if r["section"] == "fusion"]
    assert [r["rank"] for r in fused] == [1, 2]
    assert fused[0]["name"] == "toy-audio:audio+toy-text:text"
    assert fused[1]["name"] == "toy-audio:audio+toy-audio:weak+toy-text:text"
    plain = fit_run([stores["audio"], stores["text"]], tmp_path / "fused", model="logreg",
                    folds=3, seed=0).metrics["cv"]
    assert fused[0]["per_seed"][0]["metric"] == pytest.approx(plain["metric"], abs=1e-12)
    assert result.joined == 120
    assert result.png_path.stat().st_size > 0


@pytest.mark.slow
def test_outputs_are_byte_identical_for_the_same_inputs(stores, weak_audio, tmp_path) -> None:
    args = [f"audio={stores['audio']}", f"audio={weak_audio}"]
    a = leaderboard(args, tmp_path / "a", seeds=2, top_n=3, **FAST)
    b = leaderboard(args, tmp_path / "b", seeds=2, top_n=3, **FAST)
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # one modality with two stores: K=3 would repeat K=2, and is left out with a note
    assert [r["rank"] for r in a.rows if r["section"] == "fusion"] == [1, 2]
    assert any("top-3 fusion left out" in n for n in a.notes)
    assert "| 1 | toy-audio:audio ★ |" in a.markdown()


@pytest.mark.slow
def test_inner_join_reports_the_joined_clips(stores, tmp_path) -> None:
    names, y, valence = clip_labels(120)
    part = write_store(tmp_path / "part.h5", "audio", names[:90], y[:90], valence[:90], dim=6,
                       frame_dim=2, seed=3)
    with pytest.raises(DataError, match="disagree on clip names"):
        leaderboard([f"audio={stores['audio']}", f"audio={part}"], tmp_path / "x", **FAST)
    result = leaderboard([f"audio={stores['audio']}", f"audio={part}"], tmp_path / "lb",
                         join="inner", seeds=1, **FAST)
    assert result.joined == 90
    assert "90 clips joined (--join inner" in result.markdown()


def test_display_names_are_unique() -> None:
    assert display_names([("e5", "a/e5-en.h5"), ("e5", "b/e5-en.h5"), ("hf:/m/hubert/", "x.h5"),
                          ("e5", "c/e5-en.h5")]) == [
        "e5:e5-en", "e5:e5-en#2", "hf:hubert:x", "e5:e5-en#3"]


@pytest.mark.parametrize("kw, words", [
    (dict(seeds=0), "seeds must be an integer in [1, 100]"),
    (dict(top_n=0), "top_n must be an integer >= 1"),
    (dict(fusion="nope"), "model must be one of"),
    (dict(model="logreg", layers="learned"), "layers='learned' learns layer weights"),
])
def test_bad_arguments_are_refused_before_any_work(stores, tmp_path, kw, words) -> None:
    with pytest.raises(ParameterError, match=words.replace("[", r"\[").replace("]", r"\]")):
        leaderboard([f"audio={stores['audio']}"], tmp_path / "out", **{**FAST, **kw})
    assert not (tmp_path / "out").exists()


def test_a_store_under_the_wrong_modality_or_twice_is_refused(stores, tmp_path) -> None:
    with pytest.raises(DataError, match="holds audio features, not text"):
        leaderboard([f"text={stores['audio']}"], tmp_path / "o", **FAST)
    with pytest.raises(DataError, match="given twice"):
        leaderboard([f"audio={stores['audio']}", f"a2={stores['audio']}"], tmp_path / "o",
                    **FAST)
