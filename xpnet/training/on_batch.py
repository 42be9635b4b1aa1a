"""One batch at a time: the checks every call makes on its data (`prepare`, `sample_weights_for`),
the upload to the model's device, `train_on_batch` and `compute_gradients`, and the one
device→host read of the running loss and metric sums (`_read`) that fit and evaluate share too.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import numpy as np

from .. import metrics as metrics_mod
from ..backend.base import DeviceScalar
from ..params import GradientSink
from . import data
from .callbacks import BatchLogs
from .compiling import Array, Compiled
from .guard import exclusive
from .state import step_counted
from .step import loss_and_grads, require_trainable


class BatchRunner(Compiled):
    """`Compiled` plus the per-call data checks, `train_on_batch`, `compute_gradients` and the sums' read."""

    def prepare(self, x: Any, y: Any, what: str) -> tuple[Any, Any]:
        """Check (x, y) for `what` on a compiled model, building it from x's shape if needed.

        Once built, a one-input, one-output model's arrays go through its `data.BatchCheck` (the
        same checks, with what they read of the model read once); dicts and other models ask the
        model's `check_inputs` and `check_targets` each time.
        """
        if self.loss is None or self.optimizer is None:
            raise RuntimeError(f"You must compile the model before {what}(): model.compile(optimizer, loss, metrics)")
        check = self._batch_check
        if check is None or check.loss is not self.loss or isinstance(x, dict) or isinstance(y, dict):
            return self._prepare_any(x, y, what)
        if (not self.metrics and self._metric_ids) or (not self.weighted_metrics and self._weighted_metric_ids):
            self._resolve_metrics()
        return check(x, y, what)

    def _prepare_any(self, x: Any, y: Any, what: str) -> tuple[Any, Any]:
        """`prepare` through the model's own checks (any inputs and outputs); makes the batch check once built."""
        x = self.check_inputs(x, what)
        if not self.built:
            self.build(x.shape[1:])
            self._resolve_metrics()
        elif (not self.metrics and self._metric_ids) or (not self.weighted_metrics and self._weighted_metric_ids):
            self._resolve_metrics()
        self._batch_check = self._make_batch_check()
        if y is None:
            return x, None
        return x, self.check_targets(y, data.rows(x), what)

    def _make_batch_check(self) -> data.BatchCheck | None:
        """The batch check of a built one-input, one-output model with a flat output, else None."""
        shape = self.feature_shape
        if not self.single_output or shape is None or self.ops is None or self.loss is None:
            return None
        try:
            out = tuple(self.output_shape[1:])
        except AttributeError:  # an output shape not known yet: the model's own checks, each time
            return None
        if len(out) > 1:  # check_targets refuses it, each time, with its own message
            return None
        return data.BatchCheck(self.ops, tuple(shape), self.loss, self.output_widths[0], self.dtype)

    def target_dtypes(self) -> Any:
        """The device dtype of the targets (None: integer labels stay as they are); a list for several outputs."""
        dts = [None if loss.sparse else self.dtype for loss in self.compiled_losses]
        return dts[0] if self.single_output else dts

    def upload(self, a: Any, targets: bool = False) -> Array:
        """A checked host array (or list of them) on the model's device (targets keep integer labels as they are)."""
        assert self.ops is not None and self.loss is not None
        return data.upload_all(self.ops, a, self.target_dtypes() if targets else self.dtype)

    def sample_weights_for(self, sample_weight: Any, class_weight: Any, yy: Any, what: str) -> np.ndarray | None:
        """Checked host weights (n,) in the model's dtype for targets yy, or None; see `data.sample_weights`.

        With several outputs one (n,) sample_weight weighs every output's loss; class_weight is
        refused there, as Keras refuses it.
        """
        if sample_weight is None and class_weight is None:  # unweighted: nothing to check
            return None
        if not self.single_output:
            if class_weight is not None:
                raise ValueError(f"{what}: class_weight is only supported for models with one output")
            if isinstance(sample_weight, dict) or (
                isinstance(sample_weight, (list, tuple)) and any(np.ndim(w) > 0 for w in sample_weight)
            ):
                raise ValueError(
                    f"{what}: sample_weight must be one (n,) array, which weighs every output's loss; "
                    "per-output sample weights (a list or dict of arrays) are not supported"
                )
            yy = yy[0]
        return data.sample_weights(sample_weight, class_weight, yy, what, self.output_widths[0], self.dtype)

    def _require_differentiable(self) -> None:
        """Refuse to train a model with a step activation or without trainable parameters."""
        require_trainable(self.store)

    @exclusive("train_on_batch")
    def train_on_batch(
        self,
        x: Any,
        y: Any,
        sample_weight: Any = None,
        class_weight: dict[int, float] | None = None,
        return_dict: bool = False,
    ) -> float | list[float] | dict[str, float]:
        """One update on (x, y) as a single batch; the loss and metrics of that batch (before the update)."""
        x, yy = self.prepare(x, y, "train_on_batch")
        if yy is None:
            raise ValueError("train_on_batch: y (the targets) is required")
        ops = self.ops
        assert ops is not None
        count = data.rows(x) * self._comm.size
        with ops.activate():
            program = self._step_program()
            step = program.step  # its first call refuses a model it cannot train (`require_trainable`)
            sw = self.sample_weights_for(sample_weight, class_weight, yy, "train_on_batch")
            replayed = sw is None and program.replays
            if replayed:
                # NumPy, through the recorded step as fit's steps: the program copies the batch into its own
                # fixed host buffers in the model's dtypes (that copy is the upload), and its sums are host
                # arrays (nothing to download)
                sums = program.train_on_batch(x, yy, count, (self.dtype, self.target_dtypes()))
            else:
                wb = None if sw is None else self.upload(sw)
                sums = step(self.upload(x), self.upload(yy, targets=True), count, wb)
            store = step.store
            if store.sink is not store.default_sink:  # a replayed step leaves it as it was
                store.use_sink()  # backward fills the gradient buffer again (compute_gradients, trace)
            return _shape_result(self._read(sums, count, on_host=replayed), return_dict)

    @exclusive("compute_gradients")
    def compute_gradients(self, x: Any, y: Any) -> tuple[float, list[np.ndarray]]:
        """Loss over (x, y) as one batch, and its gradient for every trainable weight (`trainable_weights`' order).

        The training-mode forward pass is used (dropout active), without updating anything:
        for gradient checks and for looking inside backpropagation.
        """
        x, yy = self.prepare(x, y, "compute_gradients")
        ops = self.ops
        assert ops is not None
        with ops.activate():
            value = self.loss_at(self.upload(x), self.upload(yy, targets=True))
            flat = self.store.host_grads()
        return value, self.store.split_grads(flat)

    def loss_at(self, X: Array, Y: Array) -> float:
        """The mean loss (+ penalty) of device batch (X, Y) in training mode, leaving its gradient in `store.grads`.

        Weights, moving statistics, optimizer and dropout counters do not move, so repeated calls
        see the same masks and the same state.
        """
        ops = self.ops
        assert ops is not None
        store = self.store
        counters = [(layer, layer.iterations) for layer in step_counted(self.leaf_layers)]
        running_sink = store.sink
        store.use_sink(GradientSink(ops))
        moving = store.save_moving()
        try:
            n = data.rows(X)
            loss_sum, _, _ = loss_and_grads(self, X, Y, ops.cast(ops.asarray(np.float64(1.0 / n)), self.dtype))
            return float(ops.to_numpy(loss_sum)) / n
        finally:  # a look at the gradients must not move the masks a later fit() draws, nor BN's statistics
            store.use_sink(running_sink)
            store.restore_moving(moving)
            for layer, steps in counters:
                layer.iterations = steps

    def _read(self, sums: list[Array], count: int, on_host: bool = False) -> dict[str, float]:
        """One device→host read of the running sums; returns the loss and metric values.

        on_host: the sums are host NumPy arrays already (a replayed step's), read as they are.
        """
        ops = self.ops
        assert ops is not None
        xp = ops.xp
        flat = [xp.reshape(s, (-1,)) for s in sums]
        every: list[metrics_mod.Metric] = [*self.metrics, *self.weighted_metrics]
        first = len(flat) - len(every)
        for k, m in enumerate(every):
            if m.stateful and flat[first + k].shape[0] == 0:  # its state lives in its variables: its
                flat[first + k] = m.device_result(xp, flat[0].dtype)  # result joins this one read
        concat = getattr(xp, "concat", None) or xp.concatenate  # CuPy before 14 lacks the array-API name
        joined = concat(flat) if len(flat) > 1 else flat[0]
        host = joined if on_host else ops.to_numpy(joined)
        if self._comm.size > 1:
            host = self._comm.allreduce_host(host)
        out, off = {"loss": float(host[0]) / count}, 1
        # several outputs: each output's loss sum comes before the metric states
        names = self.metrics_names
        readers: list[metrics_mod.Metric | None] = [None] * (len(names) - 1 - len(every))
        for name, metric, s in zip(names[1:], [*readers, *every], flat[1:], strict=True):
            size = int(s.shape[0])
            state = host[off : off + size]
            if metric is None:
                out[name] = float(state[0]) / count
            elif metric.stateful:
                out[name] = float(state[0])
            else:
                out[name] = metric.result(state[0] if size == 1 else state, count)
            off += size
        return out

    def _one(self) -> Array:
        """A device 1 in the model's dtype (the inference loss factor), made once per backend."""
        ops = self.ops
        assert ops is not None
        ones: dict[tuple[int, str], DeviceScalar] = self.__dict__.setdefault("_ones", {})
        one = ones.get((id(ops), self.dtype))
        if one is None:
            one = ones[(id(ops), self.dtype)] = DeviceScalar(ops, 1.0, self.dtype)
        return one.array

    def reset_metrics(self) -> None:
        """Clear the state of stateful (Keras-style `update_state`) metrics, as Keras's `reset_metrics`
        (their variables move to the model's device the first time)."""
        for m in (*self.metrics, *self.weighted_metrics):
            if m.stateful:
                if self.ops is not None:
                    m.place(self.ops)
                m.reset_state()

    def _snapshot(self, sums: list[Array]) -> list[Array]:
        """sums with each stateful metric's result now (on the device, no read), for batch logs that
        are read later: its variables move on with the next batch, the sums do not (but see `_logs_of`)."""
        every: list[metrics_mod.Metric] = [*self.metrics, *self.weighted_metrics]
        if not any(m.stateful for m in every):
            return sums
        assert self.ops is not None
        xp, first = self.ops.xp, len(sums) - len(every)
        out = list(sums)
        for k, m in enumerate(every):
            if m.stateful:
                out[first + k] = m.device_result(xp, sums[0].dtype)
        return out

    def _logs_of(self, read: functools.partial[dict[str, float]], in_graph: bool) -> BatchLogs:
        """A batch's logs. in_graph: the sums `read` reads are a captured graph's accumulators, which its
        next launch adds into: if a callback still holds the logs unread then, they get copies first."""
        logs = BatchLogs(read)
        self.__dict__["_kept_logs"] = weakref.ref(logs) if in_graph else None
        return logs

    def _detach_kept_logs(self) -> None:
        """Before a graph launch: the last in-graph batch logs a callback kept unread now read copies."""
        ref = self.__dict__.pop("_kept_logs", None)
        logs = ref() if ref is not None else None
        if logs is not None:
            logs.detach()


def _shape_result(result: dict[str, float], return_dict: bool) -> float | list[float] | dict[str, float]:
    """Keras's return shapes: a dict, one float, or a list in metrics_names order."""
    if return_dict:
        return result
    values = list(result.values())
    return values[0] if len(values) == 1 else values


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be a positive integer, received {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, received {batch_size}")
    return int(batch_size)
