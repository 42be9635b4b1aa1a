"""Metrics that are means of per-sample values: accuracies, regression errors, the losses as metrics."""

from __future__ import annotations

import math
from typing import Any

from .. import losses as losses_mod
from ..backend import metric_kernels
from ..losses import Loss
from .base import EPSILON, Array, Metric, _binary_losses


class SparseCategoricalAccuracy(Metric):
    name = "sparse_categorical_accuracy"
    sparse_targets = True

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.astype(xp.argmax(y_pred, axis=-1) == y_true, y_pred.dtype)

    def update(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        hits = metric_kernels.sparse_hits(xp, y_true, y_pred)  # CuPy: one launch instead of the four below
        if hits is not None:
            return hits
        # count hits, then cast the 0-d count: one pass fewer than summing a float per sample
        return xp.astype(xp.count_nonzero(xp.equal(xp.argmax(y_pred, axis=-1), y_true)), y_pred.dtype)


class CategoricalAccuracy(Metric):
    name = "categorical_accuracy"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.astype(xp.argmax(y_pred, axis=-1) == xp.argmax(y_true, axis=-1), y_pred.dtype)


class BinaryAccuracy(Metric):
    name = "binary_accuracy"

    def __init__(self, name: str | None = None, dtype: str | None = None, threshold: float = 0.5) -> None:
        super().__init__(name, dtype)
        self.threshold = float(threshold)

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        hit = (y_pred > self.threshold) == (y_true > 0.5)
        return xp.mean(xp.astype(hit, y_pred.dtype), axis=-1)


class MeanSquaredError(Metric):
    name = "mean_squared_error"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        d = y_pred - y_true
        return xp.mean(d * d, axis=-1)


class MeanAbsoluteError(Metric):
    name = "mean_absolute_error"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.mean(xp.abs(y_pred - y_true), axis=-1)


class MeanAbsolutePercentageError(Metric):
    """100 · mean(|y − ŷ| / max(|y|, ε)), as Keras computes it."""

    name = "mean_absolute_percentage_error"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return 100.0 * xp.mean(xp.abs(y_true - y_pred) / xp.maximum(xp.abs(y_true), 1e-7), axis=-1)


class MeanSquaredLogarithmicError(Metric):
    """mean((log(1 + max(y, 0)) − log(1 + max(ŷ, 0)))²) over the last axis."""

    name = "mean_squared_logarithmic_error"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        d = xp.log(xp.maximum(y_pred, 0.0) + 1.0) - xp.log(xp.maximum(y_true, 0.0) + 1.0)
        return xp.mean(d * d, axis=-1)


class RootMeanSquaredError(Metric):
    """sqrt of the mean squared error over every element seen (not a mean of per-sample roots)."""

    name = "root_mean_squared_error"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        d = y_pred - y_true
        return xp.mean(d * d, axis=-1)

    def result(self, state: Any = None, count: int | None = None) -> float:
        return math.sqrt(super().result(state, count))


class LogCoshError(Metric):
    """mean(log(cosh(ŷ − y))) over the last axis, computed as |d| + log1p(e^{−2|d|}) − log 2 (no overflow)."""

    name = "logcosh"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        a = xp.abs(y_pred - y_true)
        return xp.mean(a + xp.log1p(xp.exp(-2.0 * a)) - math.log(2.0), axis=-1)


class CosineSimilarity(Metric):
    """Σ ŷ·y / (‖ŷ‖ ‖y‖) per sample (along the last axis), averaged."""

    name = "cosine_similarity"

    def __init__(self, name: str | None = None, dtype: str | None = None, axis: int = -1) -> None:
        super().__init__(name, dtype)
        if axis != -1:
            raise ValueError(f"CosineSimilarity: only axis=-1 (the feature axis) is supported, received {axis}")

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        def unit(a: Array) -> Array:
            return a / xp.sqrt(xp.maximum(xp.sum(a * a, axis=-1, keepdims=True), 1e-12))

        return xp.sum(unit(y_true) * unit(y_pred), axis=-1)


class LossMetric(Metric):
    """The mean of a loss's per-sample values over the samples seen: Keras's loss-named metrics.

    Subclasses name the loss (`loss_class`); options (`from_logits`, `label_smoothing`) are the
    loss's. Targets are what the loss takes (one-hot or 0/1 rows; integer labels for the sparse one).
    """

    loss_class: type[Loss] = Loss
    sparse_targets = False

    def __init__(self, name: str | None = None, dtype: str | None = None, **options: Any) -> None:
        super().__init__(name, dtype)
        smoothing = float(options.pop("label_smoothing", 0.0))
        if not 0.0 <= smoothing <= 1.0:
            raise ValueError(f"{type(self).__name__}: label_smoothing must be in [0, 1], received {smoothing}")
        self.label_smoothing = smoothing
        options.pop("axis", None)  # the class axis is the last one, as xpnet's losses use
        self.loss = self.loss_class(**options)

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        if self.label_smoothing:
            k = 2 if isinstance(self.loss, _binary_losses()) else int(y_pred.shape[-1])
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / k
        return self.loss.call(xp, y_true, y_pred)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.loss.from_logits}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, loss={self.loss!r})"


class BinaryCrossentropy(LossMetric):
    """Binary cross-entropy, averaged: `BinaryCrossentropy(from_logits=False, label_smoothing=0)`."""

    name = "binary_crossentropy"
    loss_class = losses_mod.BinaryCrossentropy


class CategoricalCrossentropy(LossMetric):
    """Cross-entropy against one-hot (or soft) targets, averaged."""

    name = "categorical_crossentropy"
    loss_class = losses_mod.CategoricalCrossentropy


class SparseCategoricalCrossentropy(LossMetric):
    """Cross-entropy against integer class labels (n,), averaged."""

    name = "sparse_categorical_crossentropy"
    loss_class = losses_mod.SparseCategoricalCrossentropy
    sparse_targets = True


class Poisson(LossMetric):
    name = "poisson"
    loss_class = losses_mod.Poisson


class Hinge(LossMetric):
    name = "hinge"
    loss_class = losses_mod.Hinge


class SquaredHinge(Metric):
    """mean(max(0, 1 − y·ŷ)²), 0/1 labels mapped to −1/1 as for `Hinge`."""

    name = "squared_hinge"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        binary = xp.all((y_true == 0.0) | (y_true == 1.0))  # Keras maps 0/1 labels to −1/1, as Hinge does
        m = xp.maximum(1.0 - xp.where(binary, 2.0 * y_true - 1.0, y_true) * y_pred, 0.0)
        return xp.mean(m * m, axis=-1)


class CategoricalHinge(Metric):
    """max(0, 1 + max_{j≠true} ŷ_j − ŷ_true) with one-hot targets: Σ(1−y)ŷ's max vs Σ yŷ."""

    name = "categorical_hinge"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        pos = xp.sum(y_true * y_pred, axis=-1)
        neg = xp.max((1.0 - y_true) * y_pred, axis=-1)
        return xp.maximum(neg - pos + 1.0, 0.0)


class KLDivergence(Metric):
    """Σ y log(y / ŷ) per sample, both clipped to [ε, 1]."""

    name = "kl_divergence"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        t = xp.clip(y_true, EPSILON, 1.0)
        p = xp.clip(y_pred, EPSILON, 1.0)
        return xp.sum(t * xp.log(t / p), axis=-1)
