"""`Trainer`: compile, fit, evaluate and compute_gradients for any model that gives it its structure.

A model class composes it (`class Sequential(Trainer)`, as Keras's `Model(Trainer, Layer)`)
and provides: `layers`, `store` (the flat `ParamStore`), `ops`, `dtype`, `seed`, `built`,
`build(shape)`, `feature_shape`, `output_shape`, and the traversals `forward(x, training)`,
`forward_logits(x, training)` and `backward(grad, from_logits)`.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import checkpoint, distributed
from .. import losses as losses_mod
from .. import metrics as metrics_mod
from .. import optimizers as opt_mod
from ..activations import NotDifferentiableError
from ..backend import Ops, get_backend
from ..backend.base import DeviceScalar
from ..callbacks import Callback, History, Progress, format_logs
from ..layers.base import Layer
from ..layers.dropout import Dropout
from ..params import GradientSink, ParamStore
from ..threads import blas_threads_for, macs_per_sample
from . import data
from .state import TrainState
from .step import TrainStep, forward_sums, loss_and_grads

Array = Any
_DIST_READ_EVERY = 100  # steps between progress reads in a data-parallel run


class Trainer:
    """The Keras training API over a model's structure; see the module docstring for what the model provides."""

    layers: list[Layer]
    ops: Ops | None
    dtype: str
    seed: int
    name: str

    def _init_trainer(self) -> None:
        self.optimizer: opt_mod.Optimizer | None = None
        self.loss: losses_mod.Loss | None = None
        self.metrics: list[metrics_mod.Metric] = []
        self.weighted_metrics: list[metrics_mod.WeightedMean] = []
        self._weighted_metric_ids: list[Any] = []
        self.stop_training = False
        self.history: History | None = None
        self.train_state = TrainState()
        self._metric_ids: list[Any] = []
        self._backend_request: str | Ops | None = None
        self._comm: distributed.Communicator = distributed.Communicator()
        self._step: TrainStep | None = None

    # structure the model provides
    @property
    def built(self) -> bool:
        raise NotImplementedError

    @property
    def store(self) -> ParamStore:
        raise NotImplementedError

    @property
    def feature_shape(self) -> tuple[int, ...] | None:
        raise NotImplementedError

    @property
    def output_shape(self) -> tuple[int | None, ...]:
        raise NotImplementedError

    def build(self, input_shape: Any = None, backend: str | Ops | None = None) -> None:
        raise NotImplementedError

    def install(self, ops: Ops, host_params: np.ndarray) -> None:
        raise NotImplementedError

    def get_weights(self) -> list[np.ndarray]:
        raise NotImplementedError

    def set_weights(self, weights: Sequence[Any]) -> None:
        raise NotImplementedError

    def save(self, filepath: str | os.PathLike[str]) -> None:
        raise NotImplementedError

    def save_weights(self, filepath: str | os.PathLike[str]) -> None:
        raise NotImplementedError

    def forward(self, x: Array, training: bool = False) -> Array:
        raise NotImplementedError

    def forward_logits(self, x: Array, training: bool = False) -> Array:
        raise NotImplementedError

    def backward(self, grad: Array, from_logits: bool) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ compile
    def compile(
        self,
        optimizer: str | opt_mod.Optimizer = "rmsprop",
        loss: str | losses_mod.Loss | None = None,
        metrics: Sequence[Any] | None = None,
        backend: str | Ops | None = None,
        distribute: bool | str | distributed.Communicator | None = "auto",
        weighted_metrics: Sequence[Any] | None = None,
    ) -> None:
        """Choose optimizer, loss, metrics and (optionally) the backend: "auto", "numpy", "cupy", "cupy:N".

        distribute: "auto" trains data-parallel over MPI when the script runs under `mpiexec -n N`
        (N > 1); True requires MPI; False always trains in this process alone.
        weighted_metrics: mean metrics that use fit/evaluate's sample_weight or class_weight
        (Σ wᵢvᵢ / Σ wᵢ); `metrics` ignore the weights, as in Keras. A name in both lists is
        reported as "weighted_<name>" for the weighted one.
        """
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        if isinstance(metrics, (str, metrics_mod.Metric)) or callable(metrics):
            metrics = [metrics]
        if isinstance(weighted_metrics, (str, metrics_mod.Metric)) or callable(weighted_metrics):
            weighted_metrics = [weighted_metrics]
        for m in metrics or []:  # everything is checked before anything changes
            metrics_mod.check_identifier(m)
        for m in weighted_metrics or []:
            metrics_mod.check_weighted_identifier(m)
        new_loss, new_optimizer = losses_mod.get(loss), opt_mod.get(optimizer)
        ops = get_backend(backend) if backend is not None else None
        self._comm = distributed.get_communicator(distribute)
        self.loss, self.optimizer = new_loss, new_optimizer
        self._metric_ids = list(metrics or [])
        self._weighted_metric_ids = list(weighted_metrics or [])
        self.metrics, self.weighted_metrics = [], []
        self._step = None
        if ops is not None:
            self._backend_request = ops
        if self.built:
            assert self.ops is not None
            target = self._backend_request if isinstance(self._backend_request, Ops) else self.ops
            if target is not self.ops:
                self.install(target, self.store.host_params())
            else:
                self.optimizer.build(self.ops, self.store.params)
            self._resolve_metrics()

    def _resolve_metrics(self) -> None:
        assert self.loss is not None
        width = self.output_shape[-1] or 1
        self.metrics = [metrics_mod.get(m, self.loss, width) for m in self._metric_ids]
        plain = {m.name for m in self.metrics}
        self.weighted_metrics = []
        for m in self._weighted_metric_ids:
            weighted = metrics_mod.WeightedMean(metrics_mod.get(m, self.loss, width))
            if weighted.name in plain:  # Keras's name for a metric asked for both ways
                weighted.name = f"weighted_{weighted.name}"
            self.weighted_metrics.append(weighted)
        names = self.metrics_names
        if len(set(names)) != len(names):
            raise ValueError(f"metric names must be unique, received {names}")

    @property
    def comm(self) -> distributed.Communicator:
        """The data-parallel communicator (rank, size); a one-process stand-in without MPI."""
        return self._comm

    @property
    def metric_ids(self) -> list[Any]:
        """The metrics as given to compile (names, Metric instances or functions)."""
        return list(self._metric_ids)

    @property
    def weighted_metric_ids(self) -> list[Any]:
        """The weighted_metrics as given to compile."""
        return list(self._weighted_metric_ids)

    @property
    def metrics_names(self) -> list[str]:
        return ["loss"] + [m.name for m in (*self.metrics, *self.weighted_metrics)]

    @property
    def fused_loss(self) -> bool:
        """Whether the loss starts backprop from the last layer's pre-activation (softmax + cross-entropy)."""
        assert self.loss is not None
        want = self.loss.fused_activation()
        last = self.layers[-1]
        act = last.activation
        # only layers that define the logits contract themselves (a custom layer may just have an activation)
        own = all(
            getattr(type(last), m) is not getattr(Layer, m) for m in ("forward_preactivation", "backward_preactivation")
        )
        return want is not None and act is not None and act.name == want and own

    # ------------------------------------------------------------------ data at the boundary
    def check_inputs(self, x: Any, what: str, finite: bool = True) -> Any:
        """x as a checked host NumPy array (or this backend's own array), or a clear error."""
        return data.check_x(x, what, self.ops, self.feature_shape, finite)

    def prepare(self, x: Any, y: Any, what: str) -> tuple[Any, np.ndarray | None]:
        """Check (x, y) for `what` on a compiled model, building it from x's shape if needed."""
        if self.loss is None or self.optimizer is None:
            raise RuntimeError(f"You must compile the model before {what}(): model.compile(optimizer, loss, metrics)")
        x = self.check_inputs(x, what)
        if not self.built:
            self.build(x.shape[1:])
            self._resolve_metrics()
        elif (not self.metrics and self._metric_ids) or (not self.weighted_metrics and self._weighted_metric_ids):
            self._resolve_metrics()
        if y is None:
            return x, None
        return x, data.check_y(y, x.shape[0], what, self.loss, self.output_shape[-1] or 1, self.dtype)

    def upload(self, a: Any, targets: bool = False) -> Array:
        """A checked host array on the model's device (targets keep integer labels as they are)."""
        assert self.ops is not None and self.loss is not None
        return data.upload(self.ops, a, None if targets and self.loss.sparse else self.dtype)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int | str = "auto",
        callbacks: Sequence[Callback] | None = None,
        validation_split: float = 0.0,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        initial_epoch: int = 0,
        resume_from: str | os.PathLike[str] | None = None,
        class_weight: dict[int, float] | None = None,
        sample_weight: Any = None,
    ) -> History:
        """Train for `epochs` epochs of mini-batch gradient descent; returns a History.

        x: (n, *input_shape) numbers; y: (n,) int labels for sparse losses, else (n, outputs).
        resume_from: a checkpoint folder (or file) written by `xpnet.checkpoint.Checkpoint`;
        training continues from its epoch and step with identical results. An empty folder
        starts from the beginning.
        Under `mpiexec -n N`, `batch_size` is per rank: each step uses N × batch_size samples.
        class_weight / sample_weight (one of them): Keras's weighted loss, Σ wᵢℓᵢ / batch size per
        batch, with wᵢ = class_weight[class of sample i] or sample_weight[i] ((n,) non-negative).
        validation_split also splits sample_weight; validation_data may be (x, y, sample_weight).
        """
        batch_size = check_batch_size(32 if batch_size is None else batch_size)
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, received {epochs!r}")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), received {validation_split}")
        x, yy = self.prepare(x, y, "fit")
        if yy is None:
            raise ValueError("fit: y (the targets) is required")
        self._require_differentiable()
        # class weights are made after the validation split (training data only); both at once is refused here
        sw = self._sample_weights(sample_weight, class_weight if sample_weight is not None else None, yy, "fit")
        vx = vy = vw = None
        if validation_data is not None:
            if len(validation_data) not in (2, 3):
                raise ValueError(
                    "validation_data must be a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight), "
                    f"received {len(validation_data)} items"
                )
            vx, vy = self.prepare(validation_data[0], validation_data[1], "fit (validation_data)")
            if len(validation_data) == 3:
                assert vy is not None
                vw = self._sample_weights(validation_data[2], None, vy, "fit (validation_data)")
        elif validation_split:
            split = int(x.shape[0] * (1.0 - validation_split))
            if split == 0 or split == x.shape[0]:
                raise ValueError(f"validation_split={validation_split} leaves an empty training or validation set")
            x, vx, yy, vy = x[:split], x[split:], yy[:split], yy[split:]
            if sw is not None:  # Keras splits the sample weights with the data; class weights are for training only
                sw, vw = sw[:split], sw[split:]
        if class_weight is not None:
            sw = self._sample_weights(sample_weight, class_weight, yy, "fit")

        ops, comm, opt, loss = self.ops, self._comm, self.optimizer, self.loss
        assert ops is not None and opt is not None and loss is not None
        state = self.train_state
        state.samples, state.batch_size = int(x.shape[0]), batch_size
        state.epoch, state.step, state.running, state.history = initial_epoch, 0, [], History()
        steps = math.ceil(state.samples / (batch_size * comm.size))
        if resume_from is not None:
            self._resume(resume_from, steps, verbose)
            if state.epoch >= epochs:  # a finished run: nothing to train, nothing to change
                if comm.is_root and verbose:
                    done = f"{state.epoch} of {epochs} epochs"
                    print(f"The run in {resume_from} is complete ({done}); nothing to resume.")
                self.history = state.history
                return state.history
        distributed.check_same_model(comm, self.store.layout(), self.seed, opt.get_config())
        if comm.size > 1:
            comm.bcast_from_root(ops, self.store.params)
        history = state.history
        cbs: list[Callback] = [history, *(callbacks or [])]

        def overrides(cb: Callback, hook: str) -> bool:
            return getattr(type(cb), hook) is not getattr(Callback, hook) or hook in vars(cb)

        begin_hooks = [cb for cb in cbs if overrides(cb, "on_train_batch_begin")]
        batch_hooks = [cb for cb in cbs if overrides(cb, "on_train_batch_end")]
        for cb in cbs:
            cb.set_model(self)
            cb.set_params({"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size})
        progress = Progress(verbose if comm.is_root else 0, epochs, steps)
        self.stop_training = False
        dropouts = [layer for layer in self.layers if isinstance(layer, Dropout)]
        with ops.activate(), blas_threads_for(macs_per_sample(self), batch_size, comm.size):
            y_dtype = None if loss.sparse else self.dtype
            size = sum(
                data.nbytes(a, dt)
                for a, dt in ((x, self.dtype), (yy, None), (vx, self.dtype), (vy, None), (sw, None), (vw, None))
            )
            resident = ops.fits_on_device(size)  # else each batch is uploaded as it is used
            batches = data.Batches(ops, x, yy, batch_size, comm, self.dtype, y_dtype, resident, sw)
            val: tuple[Any, Any, Any] | None = None
            if vx is not None:
                val = (
                    (self.upload(vx), self.upload(vy, targets=True), None if vw is None else self.upload(vw))
                    if resident
                    else (vx, vy, vw)
                )
            for cb in cbs:
                cb.on_train_begin()
            try:
                while state.epoch < epochs:
                    epoch = state.epoch
                    for cb in cbs:
                        cb.on_epoch_begin(epoch)
                    batches.shuffle(self.seed, state.epochs_trained, shuffle)
                    progress.epoch_begin(epoch)
                    hi = min(state.step * batches.global_batch, state.samples)
                    for step in range(state.step, steps):
                        for cb in begin_hooks:
                            cb.on_train_batch_begin(step)
                        lo, hi, a, b = batches.bounds(step)
                        for d in dropouts:
                            d.row_offset = a - lo
                        xb, yb, wb = batches.gather(a, b)
                        batch = self._train_step()(xb, yb, hi - lo, wb)
                        state.running = (
                            batch if not state.running else [u + v for u, v in zip(state.running, batch, strict=True)]
                        )
                        state.step = step + 1
                        for cb in batch_hooks:
                            cb.on_train_batch_end(step)
                        if self.stop_training:  # a batch callback (TerminateOnNaN) asked to stop
                            break
                        # the read is a collective under MPI: every rank must decide alike
                        if progress.due() if comm.size == 1 else (step + 1) % _DIST_READ_EVERY == 0:
                            logs = self._read(state.running, hi)
                            if not math.isfinite(logs["loss"]):
                                break
                            if progress.mode == 1:
                                progress.update(step + 1, logs)
                    logs = self._read(state.running, hi)
                    state.end_epoch()
                    if not math.isfinite(logs["loss"]):
                        self.stop_training = True
                        progress.close()
                        warnings.warn(
                            f"Epoch {epoch + 1}: the loss became {logs['loss']} (not finite); training stopped. "
                            "Lower the learning rate, check the inputs are scaled, or use a stabler loss.",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                    elif val is not None:
                        vals = self._evaluate_arrays(val[0], val[1], batch_size, val[2])
                        logs.update({f"val_{k}": v for k, v in vals.items()})
                    if not self.stop_training:
                        progress.epoch_end(epoch, logs)
                    for cb in cbs:
                        cb.on_epoch_end(epoch, logs)
                    if self.stop_training:
                        break
            finally:
                progress.close()
                self.store.use_sink()  # after fit, backward fills the gradient buffer again
                for d in dropouts:
                    d.row_offset = 0
            for cb in cbs:
                cb.on_train_end()
        self.history = history
        return history

    def _train_step(self) -> TrainStep:
        """The step for the current optimizer and communicator (made again if a callback compiled anew)."""
        step = self._step
        if step is None or step.optimizer is not self.optimizer or step.comm is not self._comm:
            step = self._step = TrainStep(self, self._comm)
        return step

    def _sample_weights(self, sample_weight: Any, class_weight: Any, yy: np.ndarray, what: str) -> np.ndarray | None:
        """Checked host weights (n,) in the model's dtype for targets yy, or None; see `data.sample_weights`."""
        return data.sample_weights(sample_weight, class_weight, yy, what, self.output_shape[-1] or 1, self.dtype)

    def _require_differentiable(self) -> None:
        for layer in self.layers:
            act = layer.activation
            if act is not None and not act.differentiable:
                raise NotDifferentiableError(
                    f"layer {layer.name!r} uses the {act.name!r} activation, a step function with no useful "
                    "gradient, so fit() cannot backpropagate through it. Use 'sigmoid' or 'tanh' (smooth steps), "
                    "or train a perceptron with the perceptron learning rule."
                )
        if self.store.size == 0:
            raise ValueError("fit: the model has no trainable parameters")

    def _resume(self, where: str | os.PathLike[str], steps: int, verbose: int | str) -> None:
        state, comm = self.train_state, self._comm
        found = checkpoint.load_latest(where)
        if found is None:
            if comm.is_root and verbose:
                print(f"No checkpoint in {where}: starting from the beginning.")
            return
        path, header, arrays = found
        checkpoint.restore(self, header, arrays)
        if comm.is_root and verbose:
            print(f"Resuming from {path} (epoch {state.epoch + 1}, step {state.step}/{steps})")

    def _read(self, sums: list[Array], count: int) -> dict[str, float]:
        """One device→host read of the running sums; returns the loss and metric values."""
        ops = self.ops
        assert ops is not None
        xp = ops.xp
        flat = [xp.reshape(s, (-1,)) for s in sums]
        concat = getattr(xp, "concat", None) or xp.concatenate  # CuPy before 14 lacks the array-API name
        host = self._comm.allreduce_host(ops.to_numpy(concat(flat) if len(flat) > 1 else flat[0]))
        out, off = {"loss": float(host[0]) / count}, 1
        every: list[metrics_mod.Metric] = [*self.metrics, *self.weighted_metrics]
        for name, metric, s in zip(self.metrics_names[1:], every, flat[1:], strict=True):
            size = int(s.shape[0])
            state = host[off : off + size]
            out[name] = metric.result(state[0] if size == 1 else state, count)
            off += size
        return out

    # ------------------------------------------------------------------ evaluation
    def _evaluate_arrays(self, X: Array, Y: Array, batch_size: int, W: Array | None = None) -> dict[str, float]:
        ops, loss = self.ops, self.loss
        assert ops is not None and loss is not None
        n = X.shape[0]
        ones: dict[tuple[int, str], DeviceScalar] = self.__dict__.setdefault("_ones", {})
        one = ones.get((id(ops), self.dtype))
        if one is None:
            one = ones[(id(ops), self.dtype)] = DeviceScalar(ops, 1.0, self.dtype)
        first, last = distributed.shard(0, n, self._comm.rank, self._comm.size)  # each rank evaluates a share
        sums: list[Array] = []
        for lo in range(first, last, batch_size):
            hi = min(lo + batch_size, last)
            xb, yb = self.upload(X[lo:hi, ...]), self.upload(Y[lo:hi, ...], targets=True)  # no-ops when resident
            wb = None if W is None else self.upload(W[lo:hi])
            batch = forward_sums(self, xb, yb, one.array, wb)
            sums = batch if not sums else [a + b for a, b in zip(sums, batch, strict=True)]
        if not sums:  # more ranks than samples: this rank contributes zeros of the right shapes
            w0 = None if W is None else self.upload(W[0:1])
            sums = [
                s * 0
                for s in forward_sums(self, self.upload(X[0:1, ...]), self.upload(Y[0:1, ...], True), one.array, w0)
            ]
        if self.store.regularized():
            sums[0] = sums[0] + self.store.penalty() * (last - first)
        return self._read(sums, n)

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        return_dict: bool = False,
        sample_weight: Any = None,
    ) -> float | list[float] | dict[str, float]:
        """Loss (plus any weight penalty) and metrics over (x, y): a float, a list, or a dict.

        sample_weight: (n,) non-negative; the loss becomes Σ wᵢℓᵢ / n and `weighted_metrics` use it.
        """
        batch_size = check_batch_size(32 if batch_size is None else batch_size)
        x, yy = self.prepare(x, y, "evaluate")
        if yy is None:
            raise ValueError("evaluate: y (the targets) is required")
        sw = self._sample_weights(sample_weight, None, yy, "evaluate")
        ops = self.ops
        assert ops is not None
        with ops.activate():
            W = None if sw is None else self.upload(sw)
            result = self._evaluate_arrays(self.upload(x), self.upload(yy, targets=True), batch_size, W)
        steps = math.ceil(x.shape[0] / batch_size)
        if verbose == "auto":
            verbose = 1
        if verbose:
            print(f"{steps}/{steps} - {format_logs(result)}", file=sys.stdout, flush=True)
        return _shape_result(result, return_dict)

    # ------------------------------------------------------------------ one batch
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
        self._require_differentiable()
        sw = self._sample_weights(sample_weight, class_weight, yy, "train_on_batch")
        ops = self.ops
        assert ops is not None
        n = int(x.shape[0])
        with ops.activate():
            wb = None if sw is None else self.upload(sw)
            sums = self._train_step()(self.upload(x), self.upload(yy, targets=True), n * self._comm.size, wb)
            self.store.use_sink()
            return _shape_result(self._read(sums, n * self._comm.size), return_dict)

    def test_on_batch(
        self, x: Any, y: Any, sample_weight: Any = None, return_dict: bool = False
    ) -> float | list[float] | dict[str, float]:
        """Loss and metrics on (x, y) as a single batch, in inference mode."""
        return self.evaluate(
            x, y, batch_size=max(1, len(x)), verbose=0, return_dict=return_dict, sample_weight=sample_weight
        )

    # ------------------------------------------------------------------ gradients
    def compute_gradients(self, x: Any, y: Any) -> tuple[float, list[np.ndarray]]:
        """Loss over (x, y) as one batch, and its gradient for every weight (same order as get_weights).

        The training-mode forward pass is used (dropout active), without updating anything:
        for gradient checks and for looking inside backpropagation.
        """
        x, yy = self.prepare(x, y, "compute_gradients")
        ops = self.ops
        assert ops is not None
        with ops.activate():
            value = self.loss_at(self.upload(x), self.upload(yy, targets=True))
            flat = self.store.host_grads()
        return value, self.store.split(flat)

    def loss_at(self, X: Array, Y: Array) -> float:
        """The mean loss (+ penalty) of device batch (X, Y) in training mode, leaving its gradient in `store.grads`.

        Weights, optimizer and dropout counters do not move, so repeated calls see the same masks.
        """
        ops = self.ops
        assert ops is not None
        store = self.store
        dropouts = [(d, d.iterations) for d in self.layers if isinstance(d, Dropout)]
        running_sink = store.sink
        store.use_sink(GradientSink(ops))
        try:
            n = int(X.shape[0])
            loss_sum, _ = loss_and_grads(self, X, Y, ops.cast(ops.asarray(np.float64(1.0 / n)), self.dtype))
            return float(ops.to_numpy(loss_sum)) / n
        finally:  # a look at the gradients must not move the masks a later fit() draws
            store.use_sink(running_sink)
            for d, steps in dropouts:
                d.iterations = steps


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
