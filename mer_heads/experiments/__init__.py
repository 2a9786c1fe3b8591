"""What a user runs: each module is one library function behind one ``mer-heads`` command.

* :mod:`~mer_heads.experiments.fit`: ``fit_run`` (``mer-heads fit``) and ``predict_run``
  (``mer-heads predict``);
* :mod:`~mer_heads.experiments.ablation`: ``ablate``, every modality combination;
* :mod:`~mer_heads.experiments.robustness`: ``robustness``, trained clean and scored on
  corrupted copies (:mod:`~mer_heads.experiments.conditions` checks and labels them);
* :mod:`~mer_heads.experiments.semi`: ``fit_semi``, pseudo-labelling rounds (``fit --semi``).

Each takes the head's settings as one :class:`~mer_heads.config.HeadConfig` and the loading's
as one :class:`~mer_heads.config.DataConfig` (or their fields by keyword), checks everything
before any work, and writes through :mod:`mer_heads.outputs`.
"""
