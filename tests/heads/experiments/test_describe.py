"""mer-heads describe: valence per class, checked against numpy and scipy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mer_features import EMOTIONS
from mer_heads import describe, describe_labels
from mer_heads.errors import DataError, ParameterError
from mer_heads.experiments.describe import overlap_ranges

from ..synthetic_stores import clip_labels, write_store


def _labels() -> tuple[np.ndarray, np.ndarray]:
    _, y, valence = clip_labels(150, seed=3)
    return np.array([EMOTIONS[c] for c in y], dtype=object), valence


def test_statistics_equal_numpy_and_scipy() -> None:
    discrete, valence = _labels()
    out = describe_labels(discrete, valence)
    groups = [valence[discrete == e] for e in EMOTIONS]
    f, p = stats.f_oneway(*groups)
    dfb, dfw = len(groups) - 1, len(valence) - len(groups)
    assert out["eta_squared"] == pytest.approx(f * dfb / (f * dfb + dfw), rel=1e-10)
    assert out["anova_f"] == pytest.approx(f, rel=1e-10)
    assert out["anova_p"] == pytest.approx(p, rel=1e-6, abs=1e-300)
    for e, x in zip(EMOTIONS, groups):
        row = out["classes"][e]
        assert row["count"] == len(x)
        assert row["mean"] == pytest.approx(x.mean())
        assert row["std"] == pytest.approx(x.std(ddof=1))
        q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
        assert (row["q1"], row["median"], row["q3"]) == pytest.approx((q1, med, q3))
        r, pr = stats.pointbiserialr((discrete == e).astype(int), valence)
        assert row["point_biserial_r"] == pytest.approx(r, rel=1e-10)
        assert row["point_biserial_p"] == pytest.approx(pr, rel=1e-6, abs=1e-300)


def test_overlaps_of_interquartile_ranges() -> None:
    ranges = overlap_ranges({"a": (0.0, 2.0), "b": (1.0, 3.0), "c": (5.0, 6.0), "d": (1.5, 4.0)})
    assert ranges == [{"low": 1.0, "high": 1.5, "classes": ["a", "b"]},
                      {"low": 1.5, "high": 2.0, "classes": ["a", "b", "d"]},
                      {"low": 2.0, "high": 3.0, "classes": ["b", "d"]}]
    discrete = np.array(["happy"] * 4 + ["sad"] * 4, dtype=object)
    valence = np.array([1.0, 2.0, 3.0, 4.0, -4.0, -3.0, 1.5, 2.0])
    out = describe_labels(discrete, valence)
    (pair,) = out["iqr_overlap_pairs"]
    # numpy quartiles: happy [1.75, 3.25], sad [-3.25, 1.625]: disjoint
    assert pair == {"classes": ["happy", "sad"], "low": None, "high": None, "width": 0.0}
    assert out["iqr_overlap_ranges"] == []


@pytest.mark.slow
def test_writes_every_output_from_stores_and_label_files(tmp_path: Path) -> None:
    names, y, valence = clip_labels(60, seed=1)
    store = write_store(tmp_path / "a.h5", "audio", names, y, valence, dim=4, frame_dim=2, seed=0)
    a = describe(tmp_path / "a", features=[str(store)])
    labels = tmp_path / "labels.csv"
    labels.write_text("name,discrete,valence\n" + "".join(
        f"{n},{EMOTIONS[c]},{v}\n" for n, c, v in zip(names, y, valence)), encoding="utf-8")
    b = describe(tmp_path / "b", labels=labels)
    ja = json.loads((tmp_path / "a" / "describe.json").read_text())
    jb = json.loads((tmp_path / "b" / "describe.json").read_text())
    assert ja["classes"].keys() == jb["classes"].keys()
    for e in ja["classes"]:
        assert ja["classes"][e] == pytest.approx(jb["classes"][e], abs=1e-5)
    assert ja["eta_squared"] == pytest.approx(jb["eta_squared"], abs=1e-5)
    assert a.png_path.stat().st_size > 0 and b.csv_path.read_text().startswith("class,count,")
    assert "eta² =" in a.markdown()


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="exactly one source"):
        describe(tmp_path / "o")
    with pytest.raises(ParameterError, match="exactly one source"):
        describe(tmp_path / "o", manifest="m.csv", labels="l.csv")
    names, y, valence = clip_labels(30)
    store = write_store(tmp_path / "nv.h5", "audio", names, y, valence, dim=4, frame_dim=2,
                        seed=0, with_valence=False)
    with pytest.raises(DataError, match="has both a discrete class and a valence"):
        describe(tmp_path / "o", features=[str(store)])
    assert not (tmp_path / "o").exists()
