"""roc_auc's UndefinedMetricWarning points at the caller's line, for one-vs-rest columns too (found by review)."""

from __future__ import annotations

import warnings

import numpy as np

from xpnet import evaluation as ev


def test_undefined_column_auc_warns_at_the_callers_line() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 20)
    indicator = np.eye(3)[labels]  # column 2 holds no positive
    scores = rng.random((20, 3))
    for average in (None, "macro", "weighted", "micro"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ev.roc_auc(indicator, scores, average=average)
        sites = {(w.filename, w.category) for w in caught}
        if average == "micro":  # pooled pairs hold both classes: no warning
            assert not sites
        else:
            assert sites == {(__file__, ev.UndefinedMetricWarning)}
