"""Losses ℓ(y, ŷ) per sample, with their gradient ∂ℓ/∂ŷ, written against the array API.

The model reports mean over the batch and divides the gradient by the batch size.
Shapes: y_pred (n, k) float; y_true (n, k) float, or (n,) int class indices for sparse losses.
Cross-entropies fuse with their output activation (softmax / sigmoid) or take logits
(`from_logits=True`): value and gradient then come from the pre-activation u, which is
exact for huge logits and gives ∂ℓ/∂u = p − y directly. `fused(ops, …)` runs that path by the
backend's method named after the math where it has one (`ops.softmax_crossentropy`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend.values import arange_like
from .tape import Tape, Tensor, recording

if TYPE_CHECKING:
    from .backend.base import Ops

Array = Any
EPSILON = 1e-7


class Loss:
    """Subclass and implement `call` (per-sample value) and `grad` (∂ℓ_i/∂ŷ_i) for a custom loss.

    Or, as in Keras, implement only `call(self, y_true, y_pred)` with `xpnet.ops`: the tape then
    gives the gradient (see `FunctionLoss`).
    """

    name = "loss"
    sparse = False
    from_logits = False

    def __init__(
        self, name: str | None = None, reduction: str | None = "sum_over_batch_size", dtype: Any = None
    ) -> None:
        """name: shown in reprs and saved (Keras's `name=`); the history key stays "loss", as in Keras.
        reduction: xpnet reduces a batch by its mean ("sum_over_batch_size", Keras's default)."""
        if reduction not in ("sum_over_batch_size", "auto", None):
            raise ValueError(
                f"{type(self).__name__}: xpnet supports only reduction='sum_over_batch_size' (the batch mean), "
                f"received {reduction!r}"
            )
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"{type(self).__name__}: name must be a non-empty string, received {name!r}")
            self.name = name  # on the instance only: fast paths key on the class's name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)

        # a backend's fused form computes the formula it was written beside: a subclass with its own (in its
        # body or from a mixin) runs that
        def same(name: str, beside: str) -> bool:
            """Whether cls resolves `name` as the class that `beside` comes from does."""
            return getattr(cls, name) is getattr(next(k for k in cls.__mro__ if beside in k.__dict__), name)

        if not same("call_and_grad_from_preactivation", "fused"):
            cls.fused = Loss.fused  # type: ignore[method-assign]
        # its own call is its formula: the fused path (its parent's pre-activation formula) would not run it
        if not same("call", "fused_activation") and same("call_and_grad_from_preactivation", "fused_activation"):
            cls.fused_activation = Loss.fused_activation  # type: ignore[method-assign]
        own = cls.__dict__.get("call")
        # Keras's call(self, y_true, y_pred) without a grad: differentiate it with the tape
        if own is not None and "grad" not in cls.__dict__ and len(inspect.signature(own).parameters) == 3:
            cls.keras_call = own  # type: ignore[attr-defined]
            cls.call = _keras_call_value  # type: ignore[method-assign]
            cls.grad = _keras_call_grad  # type: ignore[method-assign]
            if "prepare_targets" not in cls.__dict__:
                cls.prepare_targets = _targets_as_given  # type: ignore[method-assign]

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        """-> (n,) per-sample loss."""
        raise NotImplementedError

    def grad(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        """-> (n, k) gradient of each sample's loss with respect to its prediction."""
        raise NotImplementedError

    # --- the stable path from pre-activations ---
    def fused_activation(self) -> str | None:
        """Name of the output activation this loss can absorb ('linear' when from_logits)."""
        return None

    def call_and_grad_from_preactivation(self, xp: Any, y_true: Array, u: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def fused(self, ops: Ops, act: Any, y_true: Array, u: Array, scale: Any) -> tuple[Array, Array, Array]:
        """The loss from the pre-activation u: (n, k) of its fused output activation `act`, on `ops`.

        -> (per-sample loss (n,), scale · ∂ℓ/∂u (n, k), the model output act(u) (n, k)); scale is a
        float or a 0-d device value. The backend's own method for this loss where it has one.
        """
        return ops.preactivation_loss(self, act, y_true, u, scale)

    def prepare_targets(self, y: np.ndarray, n_outputs: int) -> np.ndarray:
        """Check host targets against the model's output width; return them in the loss's layout."""
        if y.ndim == 1 and n_outputs == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != n_outputs:
            raise ValueError(
                f"{self.name}: targets of shape {y.shape} do not match the model output (None, {n_outputs}); "
                f"expected y of shape ({y.shape[0]}, {n_outputs})"
            )
        return y

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        """Mean loss of host arrays, for quick checks: loss(y_true, y_pred)."""
        yp = np.asarray(y_pred, dtype=np.float64)
        yt = self.prepare_targets(np.asarray(y_true), yp.shape[-1])
        return float(np.mean(self.call(np, yt, yp)))

    def __repr__(self) -> str:
        named = self.__dict__.get("name")
        return f"{type(self).__name__}(name={named!r})" if named else f"{type(self).__name__}()"


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        d = y_pred - y_true
        return xp.mean(d * d, axis=-1)

    def grad(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return (2.0 / y_pred.shape[-1]) * (y_pred - y_true)


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.mean(xp.abs(y_pred - y_true), axis=-1)

    def grad(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.sign(y_pred - y_true) * (1.0 / y_pred.shape[-1])


class Poisson(Loss):
    name = "poisson"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.mean(y_pred - y_true * xp.log(y_pred + EPSILON), axis=-1)

    def grad(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return (1.0 - y_true / (y_pred + EPSILON)) * (1.0 / y_pred.shape[-1])


class Hinge(Loss):
    """mean(max(0, 1 − y·ŷ)) for labels −1/1; 0/1 labels are mapped to −1/1 first.

    As in Keras, the mapping 2y − 1 applies only when every label of the call (the batch) is 0
    or 1; labels that already use −1 are taken as they are, so a 0 among them is a zero label
    (loss term max(0, 1) = 1, no gradient), not −1.
    """

    name = "hinge"

    @staticmethod
    def _signed(xp: Any, y: Array) -> Array:
        binary = xp.all((y == 0.0) | (y == 1.0))  # a 0-d device value: no host round trip
        return xp.where(binary, 2.0 * y - 1.0, y)

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.mean(xp.maximum(1.0 - self._signed(xp, y_true) * y_pred, 0.0), axis=-1)

    def grad(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        y = self._signed(xp, y_true)
        active = xp.astype(1.0 - y * y_pred > 0.0, y_pred.dtype)
        return -y * active * (1.0 / y_pred.shape[-1])


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.from_logits = bool(from_logits)

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        if self.from_logits:
            return self.call_and_grad_from_preactivation(xp, y_true, y_pred)[0]
        p = xp.clip(y_pred, EPSILON, 1.0 - EPSILON)
        return -xp.mean(y_true * xp.log(p) + (1.0 - y_true) * xp.log(1.0 - p), axis=-1)

    def grad(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        if self.from_logits:
            return self.call_and_grad_from_preactivation(xp, y_true, y_pred)[1]
        p = xp.clip(y_pred, EPSILON, 1.0 - EPSILON)
        # the derivative of the clipped loss: 0 where the clip cut p (as Keras's autodiff gives)
        inside = xp.astype(p == y_pred, y_pred.dtype)
        return inside * (p - y_true) / (p * (1.0 - p)) * (1.0 / y_pred.shape[-1])

    def fused_activation(self) -> str | None:
        return "linear" if self.from_logits else "sigmoid"

    def call_and_grad_from_preactivation(self, xp: Any, y_true: Array, u: Array) -> tuple[Array, Array]:
        # log(1+e^u) - u*y written so that no exponent is positive
        value = xp.mean(xp.maximum(u, 0.0) - u * y_true + xp.log1p(xp.exp(-xp.abs(u))), axis=-1)
        p = 0.5 * xp.tanh(0.5 * u) + 0.5
        return value, (p - y_true) * (1.0 / u.shape[-1])

    def prepare_targets(self, y: np.ndarray, n_outputs: int) -> np.ndarray:
        y = super().prepare_targets(y, n_outputs)
        if y.size and (y.min() < 0 or y.max() > 1):
            raise ValueError(
                f"binary_crossentropy needs targets in [0, 1]; received values from {y.min()} to {y.max()}"
            )
        return y

    def __repr__(self) -> str:
        named = self.__dict__.get("name")
        return f"{type(self).__name__}(from_logits={self.from_logits}" + (f", name={named!r})" if named else ")")


def _log_softmax(xp: Any, u: Array) -> tuple[Array, Array]:
    """-> (log p, p), shifted by the row max so huge logits stay finite."""
    z = u - xp.max(u, axis=-1, keepdims=True)
    e = xp.exp(z)
    s = xp.sum(e, axis=-1, keepdims=True)
    return z - xp.log(s), e / s


class CategoricalCrossentropy(Loss):
    """−Σ y log p with one-hot (or soft) targets y: (n, k).

    Probabilities (from_logits=False) are divided by their row sum and then clipped to
    [ε, 1 − ε], as Keras does, so rows that do not sum to 1 are read as distributions.
    The fused softmax path (`call_and_grad_from_preactivation`) starts from logits instead.
    """

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.from_logits = bool(from_logits)

    def _onehot(self, xp: Any, y_true: Array, k: int, dtype: Any) -> Array:
        return y_true

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        y = self._onehot(xp, y_true, y_pred.shape[-1], y_pred.dtype)
        if self.from_logits:
            logp, _ = _log_softmax(xp, y_pred)
        else:
            logp = xp.log(xp.clip(y_pred / xp.sum(y_pred, axis=-1, keepdims=True), EPSILON, 1.0 - EPSILON))
        return -xp.sum(y * logp, axis=-1)

    def grad(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        if self.from_logits:
            return self.call_and_grad_from_preactivation(xp, y_true, y_pred)[1]
        y = self._onehot(xp, y_true, y_pred.shape[-1], y_pred.dtype)
        s = xp.sum(y_pred, axis=-1, keepdims=True)
        q = y_pred / s
        c = xp.clip(q, EPSILON, 1.0 - EPSILON)
        g = -y / c * xp.astype(c == q, q.dtype)  # ∂ℓ/∂q, 0 where the clip cut q
        # back through q = p / s: ∂ℓ/∂p_i = (g_i − Σ_j g_j q_j) / s
        return (g - xp.sum(g * q, axis=-1, keepdims=True)) / s

    def fused_activation(self) -> str | None:
        return "linear" if self.from_logits else "softmax"

    def call_and_grad_from_preactivation(self, xp: Any, y_true: Array, u: Array) -> tuple[Array, Array]:
        y = self._onehot(xp, y_true, u.shape[-1], u.dtype)
        logp, p = _log_softmax(xp, u)
        return -xp.sum(y * logp, axis=-1), p - y

    def fused(self, ops: Ops, act: Any, y_true: Array, u: Array, scale: Any) -> tuple[Array, Array, Array]:
        return ops.softmax_crossentropy(self, act, y_true, u, scale)

    def prepare_targets(self, y: np.ndarray, n_outputs: int) -> np.ndarray:
        if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and n_outputs > 1):
            raise ValueError(
                f"categorical_crossentropy expects one-hot targets of shape (n, {n_outputs}) but received "
                f"shape {y.shape}, which looks like integer class labels: use "
                "loss='sparse_categorical_crossentropy', or one-hot encode the labels"
            )
        return super().prepare_targets(y, n_outputs)

    def __repr__(self) -> str:
        named = self.__dict__.get("name")
        return f"{type(self).__name__}(from_logits={self.from_logits}" + (f", name={named!r})" if named else ")")


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """−log p[y] with integer targets y: (n,) in [0, k)."""

    name = "sparse_categorical_crossentropy"
    sparse = True

    def _onehot(self, xp: Any, y_true: Array, k: int, dtype: Any) -> Array:
        classes = arange_like(xp, k, y_true.dtype, y_true)
        return xp.astype(xp.reshape(y_true, (-1, 1)) == classes, dtype)

    def fused(self, ops: Ops, act: Any, y_true: Array, u: Array, scale: Any) -> tuple[Array, Array, Array]:
        return ops.sparse_softmax_crossentropy(self, act, y_true, u, scale)

    def prepare_targets(self, y: np.ndarray, n_outputs: int) -> np.ndarray:
        return prepare_sparse_labels(y, n_outputs, self.name)


def prepare_sparse_labels(y: np.ndarray, n_classes: int, what: str) -> np.ndarray:
    """Integer labels (n,) or (n, 1) in [0, n_classes) -> int32 (n,); clear errors otherwise."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = " (this looks one-hot: use loss='categorical_crossentropy')" if y.ndim == 2 else ""
        raise ValueError(f"{what} expects integer class labels of shape (n,), received shape {y.shape}{hint}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"{what} expects integer class labels; received non-integer values of dtype {y.dtype}")
    elif y.dtype.kind not in "iub":
        raise TypeError(f"{what} expects integer class labels; received dtype {y.dtype}")
    if y.size:
        lo, hi = y.min(), y.max()
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"{what}: labels must lie in [0, {n_classes}) for a model with {n_classes} outputs; "
                f"received labels from {lo} to {hi}"
            )
    return y.astype(np.int32)


def _values(xp: Any, fn: Callable[[Any, Any], Any], y_true: Array, y_pred: Array, tape: Tape | None) -> Any:
    with recording(tape):
        leaf = Tensor(y_pred) if tape is not None else y_pred
        return leaf, fn(y_true, leaf)


def _per_sample(xp: Any, v: Array, n: int) -> Array:
    """A loss function's value as (n,) per-sample losses: Keras averages over every element, so a (n, ...)
    result is averaged over its trailing axes and a scalar counts for each sample."""
    v = v.data if isinstance(v, Tensor) else v
    if v.ndim == 0:
        return xp.broadcast_to(v, (n,))
    if v.ndim > 1:
        v = xp.mean(xp.reshape(v, (v.shape[0], -1)), axis=1)
    return v


def _tape_grad(xp: Any, fn: Callable[[Any, Any], Any], y_true: Array, y_pred: Array) -> Array:
    """n·∂(mean of fn's values)/∂y_pred: the rows the step scales by 1/batch, as for built-in losses."""
    tape = Tape(xp)
    leaf, v = _values(xp, fn, y_true, y_pred, tape)
    if not isinstance(v, Tensor):
        return xp.zeros_like(y_pred)
    n = int(y_pred.shape[0])
    size = int(np.prod(v.shape)) if v.shape else 1
    (g,) = tape.backward([(v, n / size)], [leaf])
    return xp.zeros_like(y_pred) if g is None else g


def _targets_as_given(self: Loss, y: np.ndarray, n_outputs: int) -> np.ndarray:
    """A loss written with ops reads y_true as the user gave it (Keras checks no shape: integer labels (n,)
    for a (n, k) output are the function's business); (n,) for a one-unit output becomes (n, 1), as Keras
    expands it to y_pred's rank."""
    if y.ndim == 1 and n_outputs == 1:
        y = y.reshape(-1, 1)
    if y.ndim == 0:
        raise ValueError(f"{self.name}: targets must have one row per sample, received a scalar")
    return y


def _keras_call_value(self: Loss, xp: Any, y_true: Array, y_pred: Array) -> Array:
    _, v = _values(xp, lambda a, b: type(self).keras_call(self, a, b), y_true, y_pred, None)  # type: ignore[attr-defined]
    return _per_sample(xp, v, int(y_pred.shape[0]))


def _keras_call_grad(self: Loss, xp: Any, y_true: Array, y_pred: Array) -> Array:
    return _tape_grad(xp, lambda a, b: type(self).keras_call(self, a, b), y_true, y_pred)  # type: ignore[attr-defined]


class FunctionLoss(Loss):
    """A loss written as a function `fn(y_true, y_pred)` with `xpnet.ops` (Keras's custom loss).

    fn returns per-sample values (n,), per-element values (n, ...) or a scalar; the loss is
    their mean, as Keras's "sum_over_batch_size" reduction. Its gradient comes from the tape.
    """

    def __init__(self, fn: Callable[[Any, Any], Any], name: str | None = None) -> None:
        super().__init__(name=name or getattr(fn, "__name__", "custom_loss"))
        self.fn = fn
        self.keras_name = getattr(fn, "__name__", self.name)

    prepare_targets = _targets_as_given

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        _, v = _values(xp, self.fn, y_true, y_pred, None)
        return _per_sample(xp, v, int(y_pred.shape[0]))

    def grad(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return _tape_grad(xp, self.fn, y_true, y_pred)

    def __repr__(self) -> str:
        return f"FunctionLoss({self.name!r})"


class AddedLossesOnly(Loss):
    """compile() without a loss: zero, so only the values layers pass to `add_loss` are minimized; y is ignored."""

    name = "loss"

    def call(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.zeros((y_pred.shape[0],), dtype=y_pred.dtype)

    def grad(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return xp.zeros_like(y_pred)

    def prepare_targets(self, y: np.ndarray, n_outputs: int) -> np.ndarray:
        return y


_REGISTRY: dict[str, type[Loss]] = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "poisson": Poisson,
    "hinge": Hinge,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}


def get(identifier: str | Loss | Callable[[Any, Any], Any]) -> Loss:
    """Resolve a name ("mse"), a Loss, or a function fn(y_true, y_pred) written with xpnet.ops."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and not isinstance(identifier, str):
        return FunctionLoss(identifier)
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]()
    raise ValueError(
        f"Unknown loss {identifier!r}; known: {sorted(_REGISTRY)}, or a Loss subclass with call() and grad()"
    )
