"""Metrics as device-side running states read back only when a value is shown.

The common case is a mean of per-sample values: `call(xp, y_true, y_pred) -> (n,)`, and the
state is their running sum. Metrics that are not means (precision, recall, AUC, ...) override
`update` to return any fixed-size state array that adds up over batches (e.g. confusion
counts) and `result` to turn the summed state into the value on the host.

`Precision`, `Recall`, `F1Score` and `AUC` are such metrics: their states are confusion
counts (per class, or per score threshold) computed on the device with array-API calls only,
and their values match :mod:`xpnet.evaluation` on `model.predict` output (AUC up to the
binning of scores into `num_thresholds` bins).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import losses as losses_mod
from .backend import metric_kernels
from .backend.base import arange_like
from .losses import Loss
from .teaching.evaluation import scores_from_counts

EPSILON = 1e-7

Array = Any


class MetricVariable:
    """One state variable of a Keras-style metric (`Metric.add_variable`): an array updated in place.

    It lives on the host until the metric is used in a compiled model, then on the model's device;
    `assign`/`assign_add`/`assign_sub` write into the same memory, so a training step updates it
    without a host read. Arithmetic (`v + x`, `v / w`) works on `.value`.
    """

    def __init__(self, value: Array, name: str) -> None:
        self._value, self.name = value, name
        self._ops: Any = None

    @property
    def value(self) -> Array:
        return self._value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._value.shape)

    @property
    def dtype(self) -> str:
        return str(np.dtype(getattr(self._value.dtype, "name", self._value.dtype)))

    def _coerce(self, value: Any) -> Any:
        if isinstance(value, MetricVariable):
            return value.value
        if self._ops is not None and isinstance(value, np.ndarray):
            return self._ops.asarray(value)  # a host array meets a device variable (reset_state: not per step)
        return value

    def assign(self, value: Any) -> MetricVariable:
        self._value[...] = self._coerce(value)
        return self

    def assign_add(self, value: Any) -> MetricVariable:
        self._value[...] = self._value + self._coerce(value)
        return self

    def assign_sub(self, value: Any) -> MetricVariable:
        self._value[...] = self._value - self._coerce(value)
        return self

    def numpy(self) -> np.ndarray:
        """A host copy (a device→host read on a GPU)."""
        return self._ops.to_numpy(self._value) if self._ops is not None else np.array(self._value)

    def to_device(self, ops: Any) -> None:
        """Move to `ops`'s device (once, when a compiled model adopts the metric)."""
        if self._ops is not ops:
            self._value = ops.asarray(self.numpy())
            self._ops = ops

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __float__(self) -> float:
        return float(self.numpy())

    def __add__(self, o: Any) -> Array:
        return self._value + self._coerce(o)

    def __radd__(self, o: Any) -> Array:
        return self._coerce(o) + self._value

    def __sub__(self, o: Any) -> Array:
        return self._value - self._coerce(o)

    def __rsub__(self, o: Any) -> Array:
        return self._coerce(o) - self._value

    def __mul__(self, o: Any) -> Array:
        return self._value * self._coerce(o)

    def __rmul__(self, o: Any) -> Array:
        return self._coerce(o) * self._value

    def __truediv__(self, o: Any) -> Array:
        return self._value / self._coerce(o)

    def __rtruediv__(self, o: Any) -> Array:
        return self._coerce(o) / self._value

    def __neg__(self) -> Array:
        return -self._value

    def __getitem__(self, index: Any) -> Array:
        return self._value[index]

    def __repr__(self) -> str:
        return f"<MetricVariable name={self.name!r} shape={self.shape} dtype={self.dtype}>"


class Metric:
    """Base of every metric. Two ways to write one:

    - xpnet's way (the built-ins): `call(xp, y_true, y_pred) -> (n,)` per-sample values whose mean
      is the metric (or `update`/`result(state, count)` for summed states such as confusion counts);
      the trainer sums them on the device.
    - Keras's way: `__init__(name=..., dtype=...)` creating state with `add_variable`, then
      `update_state(y_true, y_pred, sample_weight=None)` written with array operations and
      methods (they run on the model's device: NumPy or CuPy arrays), `result()` and optionally
      `reset_state()`. Such a metric works in `compile(metrics=[...])`; fit resets it each epoch
      and evaluate at its start, and its `result()` is read with the loss, never per step.

    Every metric can also be used alone, as in Keras: `m.update_state(y_true, y_pred)`, then
    `m.result()` (a Python float for the built-ins) and `m.reset_state()`.
    """

    name = "metric"

    def __init__(self, name: str | None = None, dtype: str | None = None) -> None:
        if name is not None:
            self.name = name
        if dtype is not None and np.dtype(dtype).kind != "f":
            raise ValueError(f"{type(self).__name__}: dtype must be a float type, received {dtype!r}")
        self.dtype = dtype

    # xpnet's way
    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        raise NotImplementedError(
            f"{type(self).__name__} must define update_state(y_true, y_pred, sample_weight=None) and result() "
            "(Keras's way), or call(xp, y_true, y_pred) returning per-sample values"
        )

    def update(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        """This batch's contribution to the running state (a 0-d or 1-d device array; states add)."""
        return xp.sum(self.call(xp, y_true, y_pred))

    def result(self, state: Any = None, count: int | None = None) -> float:
        """The metric from the summed host state over `count` samples; without arguments, the value
        accumulated by `update_state` (Keras's standalone use)."""
        if state is None:
            return self._standalone_result()
        assert count is not None
        return float(state) / count

    # Keras's way
    @property
    def stateful(self) -> bool:
        """Whether this is a Keras-style metric with its own `update_state` (state in its variables)."""
        return type(self).update_state is not Metric.update_state

    @property
    def variables(self) -> list[MetricVariable]:
        return list(self.__dict__.get("_metric_variables", []))

    def add_variable(
        self,
        shape: Any = (),
        initializer: Any = "zeros",
        dtype: str | None = None,
        aggregation: str = "sum",
        name: str | None = None,
    ) -> MetricVariable:
        """A state variable (host zeros/ones/a constant until a model places it on its device)."""
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
        dt = np.dtype(dtype or self.__dict__.get("dtype") or "float32")
        if initializer in ("zeros", None):
            value = np.zeros(shape, dt)
        elif initializer == "ones":
            value = np.ones(shape, dt)
        elif isinstance(initializer, (int, float)):
            value = np.full(shape, initializer, dt)
        elif callable(initializer):
            value = np.asarray(initializer(shape, dt), dt)
        else:
            raise ValueError(
                f"add_variable: initializer must be 'zeros', 'ones', a number or a function (shape, dtype), "
                f"received {initializer!r}"
            )
        var = MetricVariable(value, name or f"variable_{len(self.variables)}")
        self.__dict__.setdefault("_metric_variables", []).append(var)
        self.__dict__.setdefault("_metric_initial", []).append(value.copy())
        return var

    add_weight = add_variable

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate a batch of host arrays (the built-ins' standalone use; Keras's sample weighting)."""
        dtype = np.dtype(self.__dict__.get("dtype") or "float32")
        yp = np.asarray(y_pred, dtype=dtype)
        yt = np.asarray(y_true)
        if getattr(self, "sparse_targets", False):  # integer labels (n,) or (n, 1), as Keras squeezes them
            yt = yt.reshape(-1).astype(np.int64)
        else:
            yt = yt.astype(dtype)
            if yp.ndim == 1:  # Keras reads 1-d inputs as n samples of one value
                yp, yt = yp[:, None], yt.reshape(-1, 1)
        if type(self).update is Metric.update:  # a mean of per-sample values: Σ w v / Σ w
            v = np.asarray(self.call(np, yt, yp), dtype=np.float64).reshape(-1)
            w = (
                np.ones_like(v)
                if sample_weight is None
                else np.broadcast_to(np.asarray(sample_weight, dtype=np.float64).reshape(-1), v.shape)
            )
            acc = np.array([np.sum(w * v), np.sum(w)])
            count = 0
        else:
            if sample_weight is not None:
                raise ValueError(f"{self.name}: sample_weight is supported only by mean metrics")
            acc, count = np.asarray(self.update(np, yt, yp), dtype=np.float64), int(yp.shape[0])
        prev = self.__dict__.get("_standalone")
        self._standalone = (acc, count) if prev is None else (prev[0] + acc, prev[1] + count)

    def _standalone_result(self) -> float:
        got = self.__dict__.get("_standalone")
        if type(self).update is Metric.update:
            if got is None or got[0][1] == 0:
                return 0.0
            return float(got[0][0] / got[0][1])
        if got is None:
            return 0.0
        return self.result(got[0] if got[0].size > 1 else got[0].reshape(()), got[1])

    def reset_state(self) -> None:
        """Forget what `update_state` accumulated (variables back to their initial values)."""
        self.__dict__.pop("_standalone", None)
        for var, initial in zip(self.variables, self.__dict__.get("_metric_initial", []), strict=True):
            var.assign(initial)

    def reset_states(self) -> None:  # Keras 2's name
        self.reset_state()

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """update_state, then the result so far (Keras's `metric(y_true, y_pred)`)."""
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def place(self, ops: Any) -> None:
        """Move a Keras-style metric's variables to `ops`'s device (done by compile/fit)."""
        for var in self.variables:
            var.to_device(ops)

    def device_result(self, xp: Any, dtype: Any) -> Array:
        """A stateful metric's `result()` as a (1,) device array, to join the one read of the loss."""
        value = self.result()
        if isinstance(value, MetricVariable):
            value = value.value
        return xp.reshape(xp.astype(xp.asarray(value), dtype), (1,))

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments this metric was made with (its public settings the constructor takes)."""
        import inspect

        from .io.config import plain_settings

        params = inspect.signature(type(self).__init__).parameters
        anything = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        settings = {k: v for k, v in plain_settings(self).items() if anything or k in params}
        out = {**settings, "name": self.name}
        if anything or "dtype" in params:
            out["dtype"] = self.__dict__.get("dtype")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


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


class FunctionMetric(Metric):
    """Wraps a user function fn(y_true, y_pred) -> (n,) per-sample values."""

    def __init__(self, fn: Callable[[Array, Array], Array], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or str(getattr(fn, "__name__", "metric"))

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return self.fn(y_true, y_pred)


class SparseAsDense(Metric):
    """Lets a dense metric (mse, ...) read sparse integer targets by one-hot encoding them."""

    def __init__(self, inner: Metric) -> None:
        self.inner, self.name = inner, inner.name

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        classes = arange_like(xp, y_pred.shape[-1], y_true.dtype, y_true)
        onehot = xp.astype(xp.reshape(y_true, (-1, 1)) == classes, y_pred.dtype)
        return self.inner.call(xp, onehot, y_pred)


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


_REGISTRY: dict[str, type[Metric]] = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "precision": Precision,
    "recall": Recall,
    "f1_score": F1Score,
    "auc": AUC,
    "msle": MeanSquaredLogarithmicError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "root_mean_squared_error": RootMeanSquaredError,
    "logcosh": LogCoshError,
    "log_cosh_error": LogCoshError,
    "cosine_similarity": CosineSimilarity,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "poisson": Poisson,
    "hinge": Hinge,
    "squared_hinge": SquaredHinge,
    "categorical_hinge": CategoricalHinge,
    "kld": KLDivergence,
    "kl_divergence": KLDivergence,
}


class WeightedMean(Metric):
    """A mean metric under sample weights, as Keras's `weighted_metrics`: Σ wᵢvᵢ / Σ wᵢ.

    The state is [Σ wᵢvᵢ, Σ wᵢ] (w = 1 when fit/evaluate get no weights); the value is 0 when the
    weights sum to 0, as Keras's divide_no_nan. Metrics whose state is not a mean (precision,
    recall, F1, AUC count confusions) are refused.
    """

    def __init__(self, inner: Metric) -> None:
        if inner.stateful:
            raise ValueError(
                f"weighted_metrics: {inner.name!r} keeps its own state (update_state); xpnet weights only its "
                "mean metrics (accuracy, mse, mae, ...): pass it in metrics=[...]"
            )
        if isinstance(inner, _ConfusionCounts):
            raise ValueError(
                f"weighted_metrics: {inner.name!r} is not a mean of per-sample values, and xpnet weights only "
                "those (accuracy, mse, mae, ...); pass it in metrics=[...] instead"
            )
        self.inner, self.name = inner, inner.name

    def update(self, xp: Any, y_true: Array, y_pred: Array, sample_weight: Array | None = None) -> Array:  # type: ignore[override]
        v = self.inner.call(xp, y_true, y_pred)
        w = xp.ones_like(v) if sample_weight is None else xp.astype(sample_weight, v.dtype)
        return xp.stack([xp.sum(w * v), xp.sum(w)])

    def result(self, state: Any = None, count: int | None = None) -> float:
        if state is None:
            return self._standalone_result()
        return float(state[0]) / float(state[1]) if float(state[1]) != 0.0 else 0.0

    def __repr__(self) -> str:
        return f"WeightedMean({self.inner!r})"


def check_identifier(identifier: Any) -> None:
    """Raise at compile time for a metric that `get` could never resolve (a misspelt name, a wrong type)."""
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in ("accuracy", "acc") and key not in _REGISTRY:
            raise ValueError(f"Unknown metric {identifier!r}; known: ['accuracy', {', '.join(map(repr, _REGISTRY))}]")
    elif isinstance(identifier, type) and issubclass(identifier, Metric):
        raise TypeError(f"metrics: received the class {identifier.__name__}; pass an instance, {identifier.__name__}()")
    elif not (isinstance(identifier, Metric) or callable(identifier)):
        raise TypeError(f"metrics must be names, Metric instances or functions; received {identifier!r}")


def check_weighted_identifier(identifier: Any) -> None:
    """Raise at compile time for a weighted metric that is not a mean (its state counts confusions)."""
    check_identifier(identifier)
    counts = isinstance(identifier, _ConfusionCounts) or (
        isinstance(identifier, str) and issubclass(_REGISTRY.get(identifier.lower(), Metric), _ConfusionCounts)
    )
    if counts:
        name = identifier if isinstance(identifier, str) else identifier.name
        raise ValueError(
            f"weighted_metrics: {name!r} is not a mean of per-sample values, and xpnet weights only "
            "those (accuracy, mse, mae, ...); pass it in metrics=[...] instead"
        )


def get(identifier: str | Metric | Callable[..., Array], loss: Loss, n_outputs: int) -> Metric:
    """Resolve a metric; 'accuracy' picks the variant matching the loss, as Keras does.

    'precision', 'recall', 'f1_score' and 'auc' (and such instances) likewise learn from the
    loss and the output width whether the model is binary (threshold) or multi-class (argmax).
    """
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        raise TypeError(f"metrics: received the class {identifier.__name__}; pass an instance, {identifier.__name__}()")
    if isinstance(identifier, Metric):
        metric = identifier
    elif isinstance(identifier, str):
        key = identifier.lower()
        if key in ("accuracy", "acc"):
            if loss.sparse:
                metric = SparseCategoricalAccuracy()
            elif n_outputs == 1 or isinstance(loss, _binary_losses()):
                metric = BinaryAccuracy(threshold=0.0 if loss.from_logits else 0.5)
            else:
                metric = CategoricalAccuracy()
        elif key in _REGISTRY:
            metric = _REGISTRY[key]()
        else:
            raise ValueError(f"Unknown metric {identifier!r}; known: ['accuracy', {', '.join(map(repr, _REGISTRY))}]")
        metric.name = identifier
    elif callable(identifier):
        metric = FunctionMetric(identifier)
    else:
        raise TypeError(f"metrics must be names, Metric instances or functions; received {identifier!r}")
    if isinstance(metric, _ConfusionCounts):
        metric.configure(loss, n_outputs)
    elif loss.sparse and not (
        isinstance(metric, (SparseCategoricalAccuracy, FunctionMetric))
        or getattr(metric, "sparse_targets", False)
        or metric.stateful  # a Keras-style metric reads the targets as the model gets them, as in Keras
    ):
        metric = SparseAsDense(metric)
    return metric


def _binary_losses() -> tuple[type[Loss], ...]:
    from .losses import BinaryCrossentropy, Hinge

    return (BinaryCrossentropy, Hinge)
