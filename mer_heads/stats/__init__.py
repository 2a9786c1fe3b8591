"""Statistics of scored predictions: bootstrap intervals, paired comparisons of systems, and
calibration (docs/statistics.md).

* :func:`bootstrap_metrics` — percentile (or BCa) bootstrap intervals of every metric of
  :func:`mer_heads.metrics.all_metrics`, over clips or over groups (speakers), optionally
  within strata (folds);
* :func:`compare_systems` / :func:`compare_pair` with :class:`Predictions` — paired
  differences, their paired-bootstrap intervals, paired permutation p-values, Holm (or
  Benjamini-Hochberg) adjusted p-values; :func:`adjust_p_values`;
* calibration — :func:`expected_calibration_error`, :func:`brier_score`,
  :func:`calibration_metrics`, :func:`reliability`, :func:`reliability_figure`,
  :func:`fit_temperature`, :func:`apply_temperature`.

Every metric is computed from sums over clips (:mod:`mer_heads.stats.sufficient`), so B
resamples cost one matrix product; numpy only at import (scipy and matplotlib load in the
functions that need them).
"""

from mer_heads.stats.bootstrap import (CONFIDENCE, N_RESAMPLES, Predictions,
                                       bootstrap_metrics)
from mer_heads.stats.calibration import (N_BINS, apply_temperature, brier_score,
                                         calibration_metrics, expected_calibration_error,
                                         fit_temperature, reliability, reliability_figure)
from mer_heads.stats.compare import N_PERMUTATIONS, compare_pair, compare_systems
from mer_heads.stats.multiple import adjust_p_values

__all__ = ["CONFIDENCE", "N_BINS", "N_PERMUTATIONS", "N_RESAMPLES", "Predictions",
           "adjust_p_values", "apply_temperature", "bootstrap_metrics", "brier_score",
           "calibration_metrics", "compare_pair", "compare_systems",
           "expected_calibration_error", "fit_temperature", "reliability",
           "reliability_figure"]
