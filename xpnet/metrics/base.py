"""The metric protocol: a running state on the device (`Metric.update`, summed over batches), read back
only when a value is shown (`Metric.result`); and Keras's stateful metric objects (`MetricVariable`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..losses import Loss

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

        from ..io.config import plain_settings

        params = inspect.signature(type(self).__init__).parameters
        anything = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        settings = {k: v for k, v in plain_settings(self).items() if anything or k in params}
        out = {**settings, "name": self.name}
        if anything or "dtype" in params:
            out["dtype"] = self.__dict__.get("dtype")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _binary_losses() -> tuple[type[Loss], ...]:
    from ..losses import BinaryCrossentropy, Hinge

    return (BinaryCrossentropy, Hinge)
