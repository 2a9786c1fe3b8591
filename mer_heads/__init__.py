"""mer_heads: fusion and multi-task heads on cached features, with the MER 2023 protocol.

Reads feature stores written by :mod:`mer_features` (through :mod:`mer_features.store` only),
cross-validates small heads on them, and writes runs, submissions, reports and ablations.
Importing this package is cheap: torch and scikit-learn load with the modules that use them.
"""

__version__ = "0.1.0"

from mer_features import EMOTIONS  # noqa: E402  (the six classes, in the challenge's order)

__all__ = ["EMOTIONS", "__version__"]
