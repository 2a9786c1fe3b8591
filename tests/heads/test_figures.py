"""Figures say what they rest on (issue 22): the robustness figure names the corrupted modality
and noise, draws a chance line and keeps "clean" off the dB axis; the leaderboard's panels share
one x scale and no label is cut; titles say how many clips, folds and seeds.

The drawn matplotlib figure is inspected (captured as it is saved), not only the PNG's size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mer_heads import leaderboard, robustness
from mer_heads.experiments.conditions import Condition
from mer_heads.reports import figure as figure_module
from mer_heads.reports.figure import basis, chance_weighted_f1
from mer_heads.reports.leaderboard import leaderboard_figure
from mer_heads.reports.robustness import corruption_text, robustness_figure

from .synthetic_stores import clip_labels, write_noisy, write_store


@pytest.fixture
def drawn(monkeypatch) -> list[Any]:
    """The figures saved while the test runs (matplotlib Figure objects, still inspectable)."""
    saved: list[Any] = []
    original = figure_module.save_figure

    def keep(fig, path, **kw):
        saved.append(fig)
        return original(fig, path, **kw)

    monkeypatch.setattr(figure_module, "save_figure", keep)
    return saved


def _texts(fig) -> str:
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return title + "\n" + "\n".join(ax.get_title() for ax in fig.axes)


def _legend_labels(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()] + \
        [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def test_basis_and_chance() -> None:
    assert basis(60, 3, [0]) == "60 clips, 3 folds x 1 seed (0)"
    assert basis(120, 5, range(2, 5)) == "120 clips, 5 folds x 3 seeds (2..4)"
    assert basis(40, None, 2) == "40 clips, 2 seeds"
    assert basis(12) == "12 clips"
    assert chance_weighted_f1([10] * 6) == pytest.approx(1 / 6)
    assert chance_weighted_f1([90, 10]) == pytest.approx(0.82)  # 0.9² + 0.1²
    assert chance_weighted_f1([]) == 0.0


def _conditions() -> list[Condition]:
    def noisy(label, snr, source="white"):
        return Condition(label, {"audio": Path(f"/s/a{label}.h5")},
                         {"audio": {"spec": f"snr={snr},source={source}"}}, snr_db=snr,
                         source=source, series=source)
    return [Condition("clean"), noisy("20 dB", 20.0), noisy("5 dB", 5.0),
            noisy("pink 10 dB", 10.0, "pink"),
            Condition("blur 4", {"video": Path("/s/v.h5")}, {"video": {"spec": "blur=4"}})]


def test_corruption_text_names_modality_noise_and_levels() -> None:
    assert corruption_text(_conditions()) == \
        "audio: white noise at 20, 5 dB, pink noise at 10 dB; video: blur=4"
    assert corruption_text([Condition("clean")]) == "nothing corrupted"


def test_robustness_figure_keeps_clean_off_the_db_axis_and_draws_chance(tmp_path, drawn):
    conds = _conditions()
    combos = [("audio",), ("audio", "video")]
    score = {"clean": 0.8, "20 dB": 0.7, "5 dB": 0.5, "pink 10 dB": 0.6, "blur 4": 0.65}
    rows = [{"condition": c.label, "modalities": "+".join(m), "f1": score[c.label] - 0.1 * i}
            for c in conds for i, m in enumerate(combos)]
    path = robustness_figure(rows, conds, combos, tmp_path / "r.png", "TITLE", chance=0.2)
    assert path.stat().st_size > 1000
    (fig,) = drawn
    snr_ax, other_ax = fig.axes[:2]
    assert snr_ax.get_xlabel() == "SNR of the added noise (dB)"
    # the dB axis holds dB values only: clean is no tick and no point on it
    assert [t.get_text() for t in snr_ax.get_xticklabels()] == ["5", "10", "20"]
    xs = {x for line in snr_ax.get_lines() for x in np.atleast_1d(line.get_xdata())
          if line.get_linestyle() in ("-", "--") and len(line.get_xdata()) > 0}
    assert xs <= {5.0, 10.0, 20.0, 0.0, 1.0}  # 0/1: axhline's axes coordinates
    assert [t.get_text() for t in other_ax.get_xticklabels()] == ["blur 4"]
    for ax in (snr_ax, other_ax):
        levels = {round(float(line.get_ydata()[0]), 6) for line in ax.get_lines()
                  if list(line.get_xdata()) == [0, 1]}
        assert {0.8, 0.7, 0.2} <= levels  # the clean level of each set, and chance
        chance = [line for line in ax.get_lines() if line.get_label().startswith("chance")]
        assert len(chance) == 1 and list(chance[0].get_ydata()) == [0.2, 0.2]
    labels = _legend_labels(fig)
    assert "clean input (no noise), one per set" in labels
    assert any(label.startswith("chance") for label in labels)
    assert fig._suptitle.get_text() == "TITLE"


@pytest.mark.slow
def test_the_robustness_title_names_the_corruption_and_the_basis(tmp_path, drawn) -> None:
    names, y, valence = clip_labels(60, seed=3)
    audio = write_store(tmp_path / "audio.h5", "audio", names, y, valence, dim=12, frame_dim=5,
                        seed=31, strength=1.2)
    noisy = [write_noisy(audio, tmp_path / f"a{snr}.h5", snr) for snr in (10, 0)]
    robustness([audio], [[str(p)] for p in noisy], tmp_path / "out", model="logreg", folds=3,
               seeds=2, seed=4)
    (fig,) = drawn
    title = fig._suptitle.get_text()
    assert "audio: white noise at 10, 0 dB" in title
    assert "60 clips, 3 folds x 2 seeds (4..5)" in title
    assert "scored on held-out folds" in title
    chance = chance_weighted_f1(np.bincount(y))
    assert any(line.get_label().startswith("chance") and line.get_ydata()[0] == chance
               for line in fig.axes[0].get_lines())


def _lb_row(section, modality, name, rank, mean, clips=48) -> dict[str, Any]:
    return {"section": section, "modality": modality, "name": name, "rank": rank,
            "metric_mean": None, "metric_std": None, "f1_mean": mean, "f1_std": 0.02,
            "mse_mean": None, "clips": clips}


def test_leaderboard_panels_share_x_and_no_label_is_cut(tmp_path, drawn) -> None:
    long = "whisper-large-v3-turbo-ct2:audio:layer-24-of-32-mean-pooled"
    rows = [_lb_row("single", "audio", long, 1, 0.62), _lb_row("single", "audio", "egemaps", 2,
                                                                0.31),
            _lb_row("single", "text", "roberta:text", 1, 0.44),
            _lb_row("fusion", "", f"{long}+roberta:text+another-rather-long-store:video", 1,
                    0.71)]
    report = {"rows": rows, "fusion": "logreg", "seeds": [0, 1, 2],
              "params": {"model": "attention", "folds": 5}, "chance_f1": 0.19}
    leaderboard_figure(report, tmp_path / "lb.png")
    (fig,) = drawn
    axes = fig.axes
    assert len(axes) == 3
    assert len({ax.get_xlim() for ax in axes}) == 1
    assert all(axes[0].get_shared_x_axes().joined(axes[0], ax) for ax in axes[1:])
    shown = [t.get_text() for ax in axes for t in ax.get_yticklabels()]
    # every name whole (wrapped after a "+" or ":", never cut to "...")
    assert [s.replace("\n", "") for s in shown] == \
        [long, "egemaps", "roberta:text",
         f"K=1: {long}+roberta:text+another-rather-long-store:video"]
    assert not any("..." in s for s in shown)
    assert all(len(line) <= 44 for s in shown for line in s.split("\n"))
    assert "48 clips, 5 folds x 3 seeds (0..2)" in fig._suptitle.get_text()
    for ax in axes:
        assert any(line.get_label().startswith("chance") and list(line.get_xdata()) == [0.19,
                                                                                        0.19]
                   for line in ax.get_lines())


@pytest.mark.slow
def test_the_leaderboard_title_says_clips_folds_and_seeds(stores, tmp_path, drawn) -> None:
    leaderboard([f"audio={stores['audio']}", f"text={stores['text']}"], tmp_path / "lb",
                model="logreg", folds=3, fusion="logreg", seeds=2, top_n=1)
    (fig,) = drawn
    title = fig._suptitle.get_text()
    assert "119 clips, 3 folds x 2 seeds (0..1)" in title, title


@pytest.mark.slow
def test_the_confusion_and_reliability_titles_say_clips_folds_and_seeds(stores, tmp_path, drawn) -> None:
    from mer_heads import fit_run

    result = fit_run([stores["audio"]], tmp_path / "run", model="logreg", folds=3, seeds=2)
    confusion, reliability = drawn  # confusion.png, then reliability.png
    n = result.metrics["cv"]["n"]
    assert n == 119  # the session stores' 120 clips, one failed
    assert f"{n} clips, 3 folds x 2 seeds (0..1)" in _texts(confusion)
    assert f"{n} clips, 3 folds x 2 seeds (0..1)" in _texts(reliability)


@pytest.mark.slow
def test_the_semi_sweep_title_says_labelled_clips_pool_folds_and_seed(stores, tmp_path,
                                                                      drawn) -> None:
    from mer_heads import semi_sweep

    semi_sweep([stores["audio"]], tmp_path / "sw", strategy="threshold", values="0.8",
               hide_labels=0.5, model="logreg", folds=3, baseline_seeds=2)
    (fig,) = drawn
    title = fig._suptitle.get_text()
    report = json.loads((tmp_path / "sw" / "semi_sweep.json").read_text())
    assert report["pool"] > 0 and report["labelled"] > 0
    assert (f"{report['labelled']} labelled clips, 3 folds x 1 seed (0) + a pool of "
            f"{report['pool']}") in title, title
