"""Metrics whose state is confusion counts summed on the device: precision, recall, F1 and AUC.

Their values match :mod:`xpnet.evaluation` on `model.predict` output (AUC up to the binning of
scores into `num_thresholds` bins).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend.values import arange_like
from ..losses import Loss
from ..teaching.evaluation import scores_from_counts
from .base import EPSILON, Array, Metric, _binary_losses


def _concat_counts(xp: Any, parts: list[Array]) -> Array:
    """Stack equally shaped count arrays into one flat (m,) state."""
    return xp.reshape(xp.stack(parts), (-1,))


class _ConfusionCounts(Metric):
    """Base of the metrics whose state is confusion counts summed on the device.

    They read sparse integer labels (n,) themselves (no one-hot wrapper) and learn from
    `configure(loss, n_outputs)` whether the model is binary (sigmoid: threshold the scores)
    or multi-class (softmax: argmax, per-class counts); `get` calls it at compile time.
    Counts are held in the output dtype: exact up to 2**24 samples in float32.
    """

    def __init__(self) -> None:
        self._multiclass: bool | None = None
        self._from_logits = False

    def configure(self, loss: Loss, n_outputs: int) -> None:
        self._multiclass = bool(loss.sparse or (n_outputs > 1 and not isinstance(loss, _binary_losses())))
        self._from_logits = bool(loss.from_logits)

    def _is_multiclass(self, y_pred: Array) -> bool:
        if self._multiclass is None:  # used outside a model: guess from the output width
            return int(y_pred.shape[-1]) > 1
        return self._multiclass

    @staticmethod
    def _onehot(xp: Any, labels: Array, k: int, dtype: Any, like: Array) -> Array:
        """(n,) integer labels -> (n, k) 0/1 in `dtype`."""
        classes = arange_like(xp, k, labels.dtype, like)
        return xp.astype(xp.reshape(labels, (-1, 1)) == classes, dtype)

    def _true_onehot(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        """Targets as (n, k) 0/1: sparse labels one-hot encoded, dense targets by their argmax."""
        k = int(y_pred.shape[-1])
        labels = y_true if y_true.ndim == 1 else xp.argmax(y_true, axis=-1)
        return self._onehot(xp, labels, k, y_pred.dtype, y_pred)


class _PrecisionRecallF1(_ConfusionCounts):
    """State: tp, fp, fn, each summed over the samples (binary: 3 numbers; multi-class: 3k)."""

    score = 0  # 0 precision, 1 recall, 2 f1 (the order of evaluation.scores_from_counts)
    default_name = "metric"

    def __init__(self, threshold: float | None = None, average: str = "macro", name: str | None = None) -> None:
        super().__init__()
        if average not in ("macro", "micro", "weighted"):
            raise ValueError(f"average must be 'macro', 'micro' or 'weighted'; received {average!r}")
        self.threshold = None if threshold is None else float(threshold)
        self.average = average
        self.name = name or self.default_name

    def _threshold(self) -> float:
        if self.threshold is not None:
            return self.threshold
        return 0.0 if self._from_logits else 0.5

    def update(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        dtype = y_pred.dtype
        if self._is_multiclass(y_pred):
            # argmax is the same for logits and probabilities
            pred = self._onehot(xp, xp.argmax(y_pred, axis=-1), int(y_pred.shape[-1]), dtype, y_pred)
            true = self._true_onehot(xp, y_true, y_pred)
            axis: Any = 0
        else:  # binary (or multi-label sigmoid): every output element is one yes/no decision
            pred = xp.astype(y_pred > self._threshold(), dtype)
            true = xp.astype(xp.reshape(y_true, pred.shape) > 0.5, dtype)
            axis = None
        tp = xp.sum(true * pred, axis=axis)
        fp = xp.sum(pred, axis=axis) - tp
        fn = xp.sum(true, axis=axis) - tp
        return _concat_counts(xp, [tp, fp, fn])

    def result(self, state: Any = None, count: int | None = None) -> float:
        if state is None:
            return self._standalone_result()
        tp, fp, fn = np.asarray(state, dtype=np.float64).reshape(3, -1)
        average = "binary" if tp.shape[0] == 1 else self.average
        return float(scores_from_counts(tp, fp, fn, average)[self.score])  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, threshold={self.threshold}, average={self.average!r})"


class Precision(_PrecisionRecallF1):
    """tp / (tp + fp), streamed: `metrics=["precision"]` or `Precision(threshold, average)`.

    1-output sigmoid models (binary): a sample is predicted positive when its output exceeds
    `threshold` (default 0.5; 0.0 with from_logits losses), a target is positive when > 0.5.
    Softmax models (k outputs, sparse (n,) or one-hot (n, k) targets): the predicted class is
    the argmax; per-class tp/fp/fn are counted and averaged: "macro" (mean over the classes that
    occur in the targets or predictions, as scikit-learn), "micro" (pooled = accuracy) or
    "weighted" (by support). A ratio with a zero denominator counts as 0.
    """

    score = 0
    default_name = "precision"


class Recall(_PrecisionRecallF1):
    """tp / (tp + fn), streamed; options as `Precision`."""

    score = 1
    default_name = "recall"


class F1Score(_PrecisionRecallF1):
    """2 tp / (2 tp + fp + fn) (the harmonic mean of precision and recall), streamed; options as `Precision`."""

    score = 2
    default_name = "f1_score"


class AUC(_ConfusionCounts):
    """Area under the ROC curve from score histograms, as Keras computes it.

    Scores (clipped to [0, 1]; sigmoid/softmax applied first for from_logits losses) are
    compared with `num_thresholds` fixed thresholds: -ε, 1/(T-1), 2/(T-1), ..., (T-2)/(T-1), 1+ε.
    The state holds, per class and threshold, the positives and the negatives scoring above
    it (2·k·T counts; k = 1 for a 1-output sigmoid model). `result` turns them into
    (fpr, tpr) points and integrates by the trapezoidal rule. Samples that fall in the same
    bin count as tied, so the value differs from the exact AUC (`evaluation.roc_auc`) by at
    most the share of positive/negative pairs sharing a bin (usually < 1e-2 with T = 200).
    Multi-class softmax models: one-vs-rest per class, then the mean over the classes that
    have both positives and negatives ("macro"). NaN while no class has both.
    Each update compares a (k, n, T) block and counts it with one batched matmul: memory grows
    with batch size × classes × T (8 MB for a batch of 1000, 10 classes, T = 200 in float32).
    """

    def __init__(self, num_thresholds: int = 200, name: str | None = None) -> None:
        super().__init__()
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int) or num_thresholds < 3:
            raise ValueError(f"num_thresholds must be an integer > 2, received {num_thresholds!r}")
        self.num_thresholds = num_thresholds
        self.name = name or "auc"

    def thresholds(self) -> np.ndarray:
        """The T thresholds (host float64), for plots and checks."""
        t = np.arange(self.num_thresholds, dtype=np.float64) / (self.num_thresholds - 1)
        t[0], t[-1] = -EPSILON, 1.0 + EPSILON
        return t

    def _device_thresholds(self, xp: Any, like: Array) -> Array:
        n = self.num_thresholds
        i = arange_like(xp, n, like.dtype, like)
        ends = xp.astype(i == 0, like.dtype) * (-EPSILON) + xp.astype(i == n - 1, like.dtype) * EPSILON
        # i / (T−1) is one correctly rounded division, Keras's float32(i / (T−1)); multiplying by a
        # rounded 1/(T−1) instead lands one ulp off for some i (26 of 200 in float32)
        return i / float(n - 1) + ends

    def update(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        dtype = y_pred.dtype
        if self._is_multiclass(y_pred):
            scores = y_pred
            if self._from_logits:
                e = xp.exp(y_pred - xp.max(y_pred, axis=-1, keepdims=True))
                scores = e / xp.sum(e, axis=-1, keepdims=True)
            true = self._true_onehot(xp, y_true, y_pred)
        else:
            scores = 0.5 * xp.tanh(0.5 * y_pred) + 0.5 if self._from_logits else y_pred
            true = xp.astype(xp.reshape(y_true, y_pred.shape) > 0.5, dtype)
        n, k = int(scores.shape[0]), int(scores.shape[-1])
        # class-major layout, so that one batched matmul counts positives and negatives at once
        scores_t = xp.clip(xp.reshape(xp.reshape(scores, (n, k)).T, (k, n, 1)), 0.0, 1.0)
        above = xp.astype(scores_t > self._device_thresholds(xp, y_pred), dtype)  # (k, n, T)
        true_t = xp.reshape(true, (n, k)).T  # (k, n)
        weights = xp.stack([true_t, 1.0 - true_t], axis=1)  # (k, 2, n): positive, negative
        return xp.reshape(weights @ above, (-1,))  # (k, 2, T): tp, fp per class and threshold

    def result(self, state: Any = None, count: int | None = None) -> float:
        if state is None:
            return self._standalone_result()
        counts = np.asarray(state, dtype=np.float64).reshape(-1, 2, self.num_thresholds)
        tp, fp = counts[:, 0], counts[:, 1]  # (k, T); threshold -ε counts every sample
        pos, neg = tp[:, :1], fp[:, :1]
        valid = (pos[:, 0] > 0) & (neg[:, 0] > 0)
        if not valid.any():
            return float("nan")
        tpr = tp[valid] / pos[valid]
        fpr = fp[valid] / neg[valid]
        areas = np.sum((fpr[:, :-1] - fpr[:, 1:]) * (tpr[:, :-1] + tpr[:, 1:]) / 2.0, axis=1)
        return float(areas.mean())

    def __repr__(self) -> str:
        return f"AUC(name={self.name!r}, num_thresholds={self.num_thresholds})"
