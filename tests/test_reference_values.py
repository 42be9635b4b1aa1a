"""Numbers that once differed from Keras / scikit-learn (issue 15), pinned to the reference's value.

Reference values come from the formulas in Keras's and scikit-learn's source, computed by hand
in the comments; no reference library is needed at test time.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

from xpnet import evaluation as ev
from xpnet import losses
from xpnet.metrics import AUC


# ---------------------------------------------------------------------------- losses (every backend)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_divides_probabilities_by_their_row_sum(ops: Any, dtype: str) -> None:
    # Keras: p / Σp = [1/3, 1/2, 1/6] -> −log(1/2) = 0.6931 (xpnet read p as is: −log .3 = 1.204)
    p = ops.asarray(np.array([[0.2, 0.3, 0.1], [0.5, 0.25, 0.25]], dtype=dtype))
    expected = [math.log(2.0), -math.log(0.25)]  # the second row already sums to 1
    for loss, y in (
        (losses.CategoricalCrossentropy(), np.array([[0, 1, 0], [0, 0, 1]], dtype=dtype)),
        (losses.SparseCategoricalCrossentropy(), np.array([1, 2], dtype=np.int32)),
    ):
        value = loss.call(ops.xp, ops.asarray(y), p)
        grad = loss.grad(ops.xp, ops.asarray(y), p)
        assert value.dtype == p.dtype and grad.dtype == p.dtype
        np.testing.assert_allclose(ops.to_numpy(value), expected, rtol=1e-6)
        # ∂ℓ/∂p_i = −y_i / p_i + Σy / Σp: row 0 [1/.6, −1/.3 + 1/.6, 1/.6]
        np.testing.assert_allclose(ops.to_numpy(grad)[0], [5 / 3, -5 / 3, 5 / 3], rtol=1e-6)
    assert losses.CategoricalCrossentropy()([[0, 1, 0]], [[0.2, 0.3, 0.1]]) == pytest.approx(0.693147, abs=1e-6)


def test_fused_softmax_cross_entropy_is_unchanged() -> None:
    # the fused path starts from logits: −log softmax(u)[1] for u = log [.2, .3, .1] is again log 2
    u = np.log(np.array([[0.2, 0.3, 0.1]]))
    value, _ = losses.CategoricalCrossentropy().call_and_grad_from_preactivation(np, np.array([[0.0, 1.0, 0.0]]), u)
    np.testing.assert_allclose(value, [math.log(2.0)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clipped_cross_entropy_gradient_is_zero(ops: Any, dtype: str) -> None:
    bce = losses.BinaryCrossentropy()
    y = ops.asarray(np.array([[1.0, 0.0, 1.0]], dtype=dtype))
    p = ops.asarray(np.array([[0.0, 1.0, 0.5]], dtype=dtype))
    g = bce.grad(ops.xp, y, p)
    assert g.dtype == p.dtype
    np.testing.assert_allclose(ops.to_numpy(g), [[0.0, 0.0, -2.0 / 3.0]], rtol=1e-6)  # (p − y) / (p(1 − p)) / 3
    cce = losses.CategoricalCrossentropy()
    g = cce.grad(ops.xp, ops.asarray(np.array([[1.0, 0.0]], dtype=dtype)), ops.asarray(np.array([[0.0, 1.0]], dtype)))
    np.testing.assert_array_equal(ops.to_numpy(g), [[0.0, 0.0]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hinge_maps_zero_to_minus_one_only_for_binary_labels(ops: Any, dtype: str) -> None:
    loss = losses.Hinge()
    p = ops.asarray(np.full((1, 3), 0.5, dtype=dtype))
    # Keras: labels −1/0/1 are used as they are: (0.5 + 1 + 1.5) / 3 = 1.0 (xpnet read 0 as −1: 1.167)
    signed = loss.call(ops.xp, ops.asarray(np.array([[1, 0, -1]], dtype=dtype)), p)
    # all labels 0 or 1: mapped to −1/1: (0.5 + 1.5 + 0.5) / 3
    binary = loss.call(ops.xp, ops.asarray(np.array([[1, 0, 1]], dtype=dtype)), p)
    assert signed.dtype == p.dtype
    np.testing.assert_allclose(ops.to_numpy(signed), [1.0], rtol=1e-6)
    np.testing.assert_allclose(ops.to_numpy(binary), [2.5 / 3], rtol=1e-6)
    g = loss.grad(ops.xp, ops.asarray(np.array([[1, 0, -1]], dtype=dtype)), p)
    np.testing.assert_allclose(ops.to_numpy(g), [[-1 / 3, 0.0, 1 / 3]], rtol=1e-6)


# ---------------------------------------------------------------------------- precision / recall / F1
def test_zero_division_nan_leaves_nan_classes_out_of_the_averages() -> None:
    # scikit-learn's _nanaverage. Class 1 is never predicted: precision [.5, nan, 1], support [1, 1, 2]
    y_true, y_pred = [0, 1, 2, 2], [0, 0, 2, 2]
    p = ev.precision(y_true, y_pred, average="macro", zero_division=np.nan)
    assert p == pytest.approx(0.75)  # mean(.5, 1)
    p = ev.precision(y_true, y_pred, average="weighted", zero_division=np.nan)
    assert p == pytest.approx((0.5 * 1 + 1.0 * 2) / 3)
    # class 2 is predicted but never true (support 0): recall 0/0 = nan; recall [.5, 1, nan]
    y_true, y_pred = [0, 0, 1], [0, 2, 1]
    p, r, f = ev.precision_recall_f1(y_true, y_pred, average="weighted", zero_division=np.nan)
    assert (p, r, f) == pytest.approx((1.0, 2 / 3, (2 * 2 / 3 + 1) / 3))
    p, r, f = ev.precision_recall_f1(y_true, y_pred, average="macro", zero_division=np.nan)
    assert (p, r, f) == pytest.approx((2 / 3, 0.75, (2 / 3 + 1 + 0) / 3))
    report = ev.classification_report([0, 1, 2, 2], [0, 0, 2, 2], zero_division=np.nan, digits=4)
    assert "macro avg     0.7500" in report


def test_averages_are_nan_only_when_every_class_is_nan() -> None:
    # counts (streamed metrics): nothing predicted, so every precision is 0/0
    for average in ("macro", "weighted"):
        p, r, f = ev.scores_from_counts([0, 0], [0, 0], [1, 2], average, zero_division=np.nan)
        assert math.isnan(p) and r == 0.0 and f == 0.0
    # a class predicted but never true, alone: recall 0/0 and support 0 (weights sum to 0: plain mean)
    p, r, f = ev.scores_from_counts([0], [1], [0], "weighted", zero_division=np.nan)
    assert p == 0.0 and math.isnan(r) and f == 0.0


# ---------------------------------------------------------------------------- AUC thresholds
@pytest.mark.parametrize("num_thresholds", [200, 3, 1000])
def test_auc_thresholds_are_correctly_rounded(ops: Any, num_thresholds: int) -> None:
    # Keras: float32((i) / (T − 1)) from a float64 division; i * float32(1 / 199) was one ulp off
    # for 26 of the 200 thresholds
    metric = AUC(num_thresholds)
    got = ops.to_numpy(metric._device_thresholds(ops.xp, ops.asarray(np.zeros((1, 1), np.float32))))
    expected = (np.arange(num_thresholds) / (num_thresholds - 1)).astype(np.float32)
    expected[0], expected[-1] = np.float32(-1e-7), np.float32(1 + 1e-7)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------- ROC on one class
def test_roc_curve_of_one_class_warns_and_gives_nan() -> None:
    with pytest.warns(ev.UndefinedMetricWarning, match="no negative samples"):
        fpr, tpr, thr = ev.roc_curve([1, 1, 1], [0.2, 0.5, 0.9])
    assert fpr.shape == tpr.shape == thr.shape == (4,)
    assert np.isnan(fpr).all()
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 1])
    with pytest.warns(ev.UndefinedMetricWarning, match="no positive samples"):
        fpr, tpr, _ = ev.roc_curve([0, 0], [0.2, 0.5])
    assert np.isnan(tpr).all() and not np.isnan(fpr).any()


def test_roc_auc_of_one_class_warns_and_gives_nan() -> None:
    with pytest.warns(ev.UndefinedMetricWarning, match="only one class"):
        assert math.isnan(ev.roc_auc([0, 0], [0.2, 0.5]))
    with pytest.warns(ev.UndefinedMetricWarning, match="only one class"):
        assert math.isnan(ev.roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    # an indicator column without positives: NaN for that class; the macro mean is NaN, the
    # weighted mean gives it weight 0 (scikit-learn's _average_binary_score)
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    s = np.array([[0.9, 0.1, 0.2], [0.2, 0.8, 0.1], [0.7, 0.4, 0.3], [0.1, 0.6, 0.4]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        per = ev.roc_auc(y, s, average=None)
        macro = ev.roc_auc(y, s)
        weighted = ev.roc_auc(y, s, average="weighted")
    assert any(issubclass(w.category, ev.UndefinedMetricWarning) for w in caught)
    np.testing.assert_array_equal(per[:2], [1.0, 1.0])
    assert math.isnan(per[2]) and math.isnan(macro)
    assert weighted == 1.0
