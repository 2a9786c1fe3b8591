"""mer-heads semi-sweep: one supervised run shared by every value, each value equal to a plain
`fit --semi ... --hide-labels ...`."""

from __future__ import annotations

import pytest

from mer_heads import SemiSettings, fit_run, semi_sweep
from mer_heads.errors import ParameterError
from mer_heads.experiments import semi_sweep as sweep_module
from mer_heads.protocol import CrossValidatedHead

FAST = dict(model="logreg", folds=3)


@pytest.mark.slow
def test_each_value_equals_a_plain_semi_fit(stores, tmp_path, monkeypatch) -> None:
    fits = []
    original = CrossValidatedHead.fit

    def counted(self, *args, **kwargs):
        fits.append(kwargs.get("pseudo_rows") is None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CrossValidatedHead, "fit", counted)
    result = semi_sweep([stores["audio"]], tmp_path / "sw", strategy="threshold",
                        values="0.6,0.9", hide_labels=0.5, **FAST)
    # the supervised head once for every value, and its other training seeds (the noise)
    assert fits.count(True) == sweep_module.BASELINE_SEEDS
    monkeypatch.setattr(CrossValidatedHead, "fit", original)
    for row in result.rows:
        plain = fit_run([stores["audio"]], tmp_path / f"fit{row['value']}", semi=SemiSettings(
            strategy="threshold", threshold=row["value"], hide_labels=0.5), **FAST)
        last = plain.metrics["semi"]["rounds"][-1]
        assert row["cv_metric"] == pytest.approx(last["cv"]["metric"], abs=1e-12)
        assert row["added_clips"] == last["added_clips"]
        assert row["pseudo_accuracy"] == pytest.approx(last["pseudo_accuracy"]["overall"])
        assert row["delta_metric"] == pytest.approx(
            last["cv"]["metric"] - plain.metrics["semi"]["rounds"][0]["cv"]["metric"])
    low, high = result.rows
    assert low["added_clips"] >= high["added_clips"]  # a higher threshold adds fewer clips
    for name in ("semi_sweep.md", "semi_sweep.csv", "semi_sweep.json", "semi_sweep.png"):
        assert (tmp_path / "sw" / name).stat().st_size > 0


@pytest.mark.parametrize("kw, words", [
    (dict(strategy="none", values="0.5"), "The swept strategy must be one of"),
    (dict(strategy="threshold", values="0.5,x"), "comma-separated numbers"),
    (dict(strategy="threshold", values="0.5,0.5"), "lists a value twice"),
    (dict(strategy="threshold", values=""), "comma-separated numbers"),
    (dict(strategy="threshold", values="0,0.5"), "confidence threshold must be in (0, 1]"),
    (dict(strategy="class-quantile", values="1.5"), "class quantile must be in [0, 1]"),
    (dict(strategy="threshold", values="0.5", hide_labels=1.0), "labels to hide must be in"),
])
def test_bad_values_are_refused_before_any_work(stores, tmp_path, kw, words) -> None:
    with pytest.raises(ParameterError) as e:
        semi_sweep([stores["audio"]], tmp_path / "out", **FAST, **kw)
    assert words in str(e.value)
    assert not (tmp_path / "out").exists()


def test_values_parse() -> None:
    assert sweep_module.parse_values(" 0.5, 0.9 ") == [0.5, 0.9]
    assert sweep_module.parse_values([0.7]) == [0.7]
