"""`Trainer`: compile, fit, evaluate and compute_gradients for any model that gives it its structure.

A model class composes it (`class Model(Trainer)`, which `Sequential` specializes, as Keras's `Model(Trainer, Layer)`)
and provides the structure `protocol.ModelStructure` lists: `layers`, `store` (the flat
`ParamStore`), `ops`, `dtype`, `seed`, `built`, `build(shape)`, `feature_shape`, the input and
target checks, and the per-output hooks (`output_layers`, `output_names`, `forward_outputs`,
`backward_outputs`, ...). With several inputs or outputs x and y are lists with one array per
input and per output, each output has its own loss, weight and metrics, and the history gets
Keras's per-output keys (`dense_1_loss`, `dense_1_accuracy`).

`fit` is the epoch and step loop; the data is prepared in `data` (validation split, weights,
residency, shuffling, sharding), a resumed run is loaded by `checkpoint.resume`, and the
callbacks are called through a `callbacks.CallbackList`.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import activations, argcheck
from .. import losses as losses_mod
from .. import metrics as metrics_mod
from .. import optimizers as opt_mod
from ..activations import NotDifferentiableError
from ..backend import Ops, get_backend
from ..backend.base import DeviceScalar
from ..layers import custom
from ..layers.base import Layer
from ..params import GradientSink
from ..variables import Variable
from . import checkpoint, data, distributed
from . import stream as stream_mod
from .callbacks import BatchLogs, Callback, CallbackList, History, Progress, format_logs, overrides, run_hooks
from .capturable import JitRequest, check_jit_compile
from .forward_program import forward_program
from .guard import exclusive
from .program import StepProgram
from .state import TrainState, step_counted
from .step import TrainStep, forward_sums, loss_and_grads
from .threads import blas_threads_for, macs_per_sample

if TYPE_CHECKING:
    from .protocol import ModelStructure

Array = Any
_DIST_READ_EVERY = 100  # steps between progress reads in a data-parallel run


if TYPE_CHECKING:  # the model's structure, for the type checker only
    _Model = ModelStructure
else:
    _Model = object


class Trainer(_Model):
    """The Keras training API over a model's structure; see the module docstring for what the model provides."""

    layers: list[Layer]
    ops: Ops | None
    dtype: str
    seed: int
    name: str

    def _init_trainer(self) -> None:
        self.optimizer: opt_mod.Optimizer | None = None
        self.loss: losses_mod.Loss | None = None
        self.compiled_losses: list[losses_mod.Loss] = []  # one per output; `loss` is the first
        self.loss_weights: list[float] = []
        self.metrics: list[metrics_mod.Metric] = []
        self.output_metrics: list[list[metrics_mod.Metric]] = []  # `metrics` split by output
        self._output_metric_ids: list[list[Any]] = []
        self.weighted_metrics: list[metrics_mod.WeightedMean] = []
        self._weighted_metric_ids: list[Any] = []
        self.stop_training = False
        self.history: History | None = None
        self.train_state = TrainState()
        self._metric_ids: list[Any] = []
        self._backend_request: str | Ops | None = None
        self._comm: distributed.Communicator = distributed.Communicator()
        self._step: TrainStep | None = None
        self._program: StepProgram | None = None
        self._jit_compile: JitRequest = "auto"
        self._trainable = True

    @property
    def trainable(self) -> bool:
        """Keras's model switch: setting it sets every layer's `trainable` (applied at the next compile)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for layer in self.layers:
            layer.trainable = bool(value)

    @property
    def weights(self) -> list[Variable]:
        """Every weight of every layer, in `get_weights` order (empty until built)."""
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list[Variable]:
        return [w for w in self.weights if w.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        return [w for w in self.weights if not w.trainable]

    @property
    def losses(self) -> list[float]:
        """Keras's `model.losses`: each regularized trainable weight's penalty (floats, read from the
        device; empty without regularizers or before the model is built). The compiled loss
        functions are `compiled_losses`."""
        if not self.built or self.ops is None:
            return []
        store, ops = self.store, self.ops
        xp = ops.xp
        with ops.activate():
            return [float(ops.to_numpy(reg.penalty(xp, s.layer.params[s.spec.name]))) for s, reg in store.regularized()]

    def compile(
        self,
        optimizer: str | opt_mod.Optimizer = "rmsprop",
        loss: str | losses_mod.Loss | Sequence[Any] | dict[str, Any] | None = None,
        metrics: Sequence[Any] | None = None,
        backend: str | Ops | None = None,
        distribute: bool | str | distributed.Communicator | None = "auto",
        loss_weights: Sequence[float] | dict[str, float] | None = None,
        weighted_metrics: Sequence[Any] | None = None,
        jit_compile: bool | str = "auto",
    ) -> None:
        """Choose optimizer, loss, metrics and (optionally) the backend: "auto", "numpy", "cupy", "cupy:N".

        jit_compile: "auto" captures the training step as a CUDA graph on CuPy when every layer,
        loss, metric and optimizer allows it (and says once why not otherwise); True requires the
        capture (a clear error where it cannot be); False runs every step eagerly. On NumPy, True
        records the step once and replays it as a flat list of bound calls; "auto" stays eager there.
        `model.step_program.explain()` says which and why.

        distribute: "auto" trains data-parallel over MPI when the script runs under `mpiexec -n N`
        (N > 1); True requires MPI; False always trains in this process alone.
        With several outputs, loss, loss_weights and metrics may be lists (one entry per output)
        or dicts keyed by output name; one loss applies to every output. A flat metric list with
        one entry per output gives each output its entry, as Keras 3 does; a flat list of another
        length applies to every output (where Keras refuses it).
        The loss minimized is Σ loss_weight × that output's loss.
        weighted_metrics: mean metrics that use fit/evaluate's sample_weight or class_weight
        (Σ wᵢvᵢ / Σ wᵢ); `metrics` ignore the weights, as in Keras. A name in both lists is
        reported as "weighted_<name>" for the weighted one. One-output models only, for now.
        """
        loss = self._default_loss(loss)
        names = self.output_names
        per_loss = _per_output(loss, names, "loss")
        per_weight = _loss_weights(loss_weights, names)
        per_metrics = _per_output_metrics(metrics, names)
        weighted_metrics = _weighted_metric_list(weighted_metrics, per_metrics, len(names))
        jit = check_jit_compile(jit_compile)
        new_losses, new_optimizer = [losses_mod.get(lo) for lo in per_loss], opt_mod.get(optimizer)
        ops = get_backend(backend) if backend is not None else None
        self._comm = distributed.get_communicator(distribute)
        self.loss, self.optimizer = new_losses[0], new_optimizer
        self.compiled_losses, self.loss_weights = new_losses, per_weight
        self._metric_ids = list(metrics) if isinstance(metrics, (list, tuple)) else per_metrics[0]
        self._output_metric_ids = per_metrics
        self._weighted_metric_ids = weighted_metrics
        self.metrics, self.output_metrics, self.weighted_metrics = [], [], []
        self._step, self._program, self._jit_compile = None, None, jit
        self.__dict__.pop("_capture_refused", None)  # a new compile may capture again
        if ops is not None:
            self._backend_request = ops
        if self.built:
            self._recompile_built(jit)

    def _default_loss(self, loss: Any) -> Any:
        """compile's loss, or the added losses alone when none is given and a custom layer may add one."""
        if loss is not None:
            return loss
        if not any(layer.keras_call for layer in self.layers):
            raise ValueError(
                "compile(loss=None): xpnet needs a loss to train and evaluate unless a custom layer calls "
                "add_loss. Pass loss='sparse_categorical_crossentropy' for integer labels, "
                "'categorical_crossentropy' for one-hot rows, 'binary_crossentropy' for 0/1 targets or 'mse' "
                "for regression; predict() needs no compile at all"
            )
        return losses_mod.AddedLossesOnly()  # custom layers may call add_loss: that is the loss then

    def _recompile_built(self, jit: JitRequest) -> None:
        """A built model's compile: move it to the requested backend, or rebuild the optimizer's slots."""
        assert self.ops is not None and self.optimizer is not None
        target = self._backend_request if isinstance(self._backend_request, Ops) else self.ops
        if target is not self.ops or self.store.stale():  # a changed `trainable` flag takes effect here
            self.install(target, self.store.host_params())
        else:
            self.optimizer.build(self.ops, self.store.params)
        self._resolve_metrics()
        if jit is True:  # refused now rather than at the first fit
            self._step_program()

    def _resolve_metrics(self) -> None:
        assert self.loss is not None
        ids = self._output_metric_ids or [list(self._metric_ids)]
        self.output_metrics = [
            [metrics_mod.get(m, loss, width) for m in ms]
            for ms, loss, width in zip(ids, self.compiled_losses or [self.loss], self.output_widths, strict=True)
        ]
        self.metrics = [m for ms in self.output_metrics for m in ms]
        plain = {m.name for m in self.metrics}
        self.weighted_metrics = []
        for m in self._weighted_metric_ids:
            weighted = metrics_mod.WeightedMean(metrics_mod.get(m, self.loss, self.output_widths[0]))
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
        """The history keys: "loss", then (several outputs) "<output>_loss" each, then "<output>_<metric>"."""
        if self.single_output:
            return ["loss"] + [m.name for m in (*self.metrics, *self.weighted_metrics)]
        names = self.output_names
        return (
            ["loss"]
            + [f"{n}_loss" for n in names]
            + [f"{n}_{m.name}" for n, ms in zip(names, self.output_metrics, strict=True) for m in ms]
        )

    @property
    def fused_loss(self) -> bool:
        """Whether the loss starts backprop from the last layer's pre-activation (softmax + cross-entropy)."""
        return self.fused_outputs[0]

    @property
    def fused_outputs(self) -> list[bool]:
        """Per output, whether its loss starts backprop from its layer's pre-activation (softmax + cross-entropy)."""
        assert self.loss is not None
        return [
            ok and _fuses(loss, layer)
            for loss, layer, ok in zip(
                self.compiled_losses or [self.loss], self.output_layers, self.fusable_outputs, strict=True
            )
        ]

    def prepare(self, x: Any, y: Any, what: str) -> tuple[Any, Any]:
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
        return x, self.check_targets(y, data.rows(x), what)

    def target_dtypes(self) -> Any:
        """The device dtype of the targets (None: integer labels stay as they are); a list for several outputs."""
        dts = [None if loss.sparse else self.dtype for loss in self.compiled_losses]
        return dts[0] if self.single_output else dts

    def upload(self, a: Any, targets: bool = False) -> Array:
        """A checked host array (or list of them) on the model's device (targets keep integer labels as they are)."""
        assert self.ops is not None and self.loss is not None
        return data.upload_all(self.ops, a, self.target_dtypes() if targets else self.dtype)

    @exclusive("fit")
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
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
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
        x may instead be an `xpnet.utils.PyDataset` or an iterator of (x, y[, sample_weight]) batches
        (y then None): its batches stream through fixed device buffers; steps_per_epoch bounds an
        epoch (an iterator without it runs until exhausted); with arrays, as in Keras, an epoch is then
        steps_per_epoch batches running on through the data. validation_data may be such a source too.
        """
        batch_size = check_batch_size(32 if batch_size is None else batch_size)
        epochs = argcheck.integer("fit", "epochs", epochs)
        initial_epoch = argcheck.integer("fit", "initial_epoch", initial_epoch)
        validation_split = argcheck.number("fit", "validation_split", validation_split, 0, 1, high_open=True)
        shuffle = argcheck.boolean("fit", "shuffle", shuffle)
        callback_list = _callback_list(callbacks)
        verbose = argcheck.verbosity("fit", verbose, ("auto", 0, 1, 2))
        if steps_per_epoch is not None and not stream_mod.is_stream(x) and y is not None:
            x = self._cycle(x, y, sample_weight, batch_size, shuffle, validation_split, resume_from)
            y = sample_weight = None
        source = self._stream_for_fit(x, y, steps_per_epoch, validation_split, sample_weight, resume_from)
        train = self._fit_data(x, y, source, sample_weight, class_weight, validation_split, validation_data)
        val_source = _validation_stream(validation_data, validation_steps)
        state, comm = self.train_state, self._comm
        steps = self._start_run(train, source, initial_epoch, batch_size)
        if resume_from is not None and self._resume(resume_from, steps, verbose, epochs):
            self.history = state.history  # a finished run: nothing to train, nothing to change
            return state.history
        self._share_weights()
        shown = None if steps == sys.maxsize else steps
        cbs = CallbackList([state.history, *callback_list], ("on_train_batch_begin", "on_train_batch_end"))
        cbs.bind(self, {"epochs": epochs, "steps": shown, "verbose": verbose, "batch_size": batch_size})
        progress = Progress(verbose if comm.is_root else 0, epochs, shown or 0)
        self.stop_training = False
        program = self._step_program()
        program.reset()  # this fit's batch buffers are new
        program.say_once()
        ops = self.ops
        assert ops is not None
        with ops.activate(), blas_threads_for(macs_per_sample(self), batch_size, comm.size), program.routing():
            batches: data.Batches | stream_mod.StreamBatches
            if source is None:
                batches, val = train.on_device(ops, batch_size, comm, self.dtype, self.target_dtypes())
            else:
                batches, val = stream_mod.StreamBatches(self, source, class_weight), train.val
            run = _FitRun(batches, cbs, progress, steps, shuffle, program, step_counted(self.leaf_layers))
            run.val, run.val_source, run.batch_size = val, val_source, batch_size
            try:  # on_train_begin inside: a failing callback must not keep a checkpoint folder locked
                cbs.every("on_train_begin", {}, own_logs=True)
                while state.epoch < epochs and self._fit_epoch(run):
                    pass
            finally:
                self._end_fit(run)
            cbs.every("on_train_end", run.logs, own_logs=True)
        self.history = state.history
        return state.history

    def _cycle(
        self, x: Any, y: Any, sample_weight: Any, batch_size: int, shuffle: bool, split: float, resume_from: Any
    ) -> Any:
        """Arrays as a stream for steps_per_epoch: Keras's epoch of steps_per_epoch batches, the arrays'
        batches running on across epochs."""
        for name, value in (("validation_split", split), ("resume_from", resume_from)):
            if value:  # the stream's own refusal would name a generator the caller never passed
                raise ValueError(f"fit: {name} cannot go with steps_per_epoch on arrays; leave one of them out")
        return stream_mod.cycle(x, y, sample_weight, batch_size, shuffle, self.seed)

    def _fit_epoch(self, run: _FitRun) -> bool:
        """Run epoch `train_state.epoch` with its callbacks; False when training stops."""
        state = self.train_state
        epoch = state.epoch
        run.cbs.every("on_epoch_begin", epoch, {}, own_logs=True)
        run.batches.shuffle(self.seed, state.epochs_trained, run.shuffle)
        if state.step == 0:  # a resumed epoch keeps its sums (stateful metrics restart, though)
            self.reset_metrics()
        run.progress.epoch_begin(epoch)
        seen = self._fit_steps(run)
        run.batches.end_epoch()
        if isinstance(run.batches, stream_mod.StreamBatches) and not state.running:  # the stream ran dry
            warnings.warn(
                "fit: the data ran out before this epoch's first batch; training stopped. "
                "Pass steps_per_epoch with a generator that repeats, or use a PyDataset",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        logs = run.logs = self._epoch_logs(run, epoch, seen)
        if not self.stop_training:
            run.progress.epoch_end(epoch, logs)
        run.cbs.every("on_epoch_end", epoch, logs)
        return not self.stop_training

    def _fit_steps(self, run: _FitRun) -> int:
        """This epoch's remaining steps; returns how many samples the running sums cover."""
        state, batches, cbs = self.train_state, run.batches, run.cbs
        hi = min(state.step * batches.global_batch, state.samples)
        for step in range(state.step, run.steps):
            try:
                lo, hi, a, b = batches.bounds(step)
            except StopIteration:  # a stream's epoch ended
                break
            cbs.batch("on_train_batch_begin", step)
            for layer in run.counted:
                layer.row_offset = a - lo
            xb, yb, wb = batches.gather(a, b)
            if self._program is not run.program:  # a callback compiled anew
                run.program = self._step_program()
            self._detach_kept_logs()
            state.running = run.program.run(xb, yb, hi - lo, wb, state.running)
            state.step = step + 1
            if cbs.wants("on_train_batch_end"):
                # the running values so far, as Keras's batch logs; read only if a callback looks
                read = functools.partial(self._read, self._snapshot(state.running), hi)
                cbs.batch("on_train_batch_end", step, self._logs_of(read, run.program.holds(state.running)))
            if self.stop_training or self._diverged(run, step, hi):  # a batch callback (TerminateOnNaN) may stop
                break
        return hi

    def _diverged(self, run: _FitRun, step: int, seen: int) -> bool:
        """Read the running loss when the progress bar is due (and update it); True when it is not finite."""
        progress = run.progress
        # the read is a collective under MPI: every rank must decide alike
        if not (progress.due() if self._comm.size == 1 else (step + 1) % _DIST_READ_EVERY == 0):
            return False
        logs = self._read(self.train_state.running, seen)
        if not math.isfinite(logs["loss"]):
            return True
        if progress.mode == 1:
            progress.update(step + 1, logs)
        return False

    def _epoch_logs(self, run: _FitRun, epoch: int, seen: int) -> dict[str, float]:
        """The epoch's loss and metrics, then validation's; a loss that is not finite stops training."""
        state, progress = self.train_state, run.progress
        logs = self._read(state.running, seen)
        if run.steps == sys.maxsize:  # a stream of unknown length: the epoch line counts what ran
            progress.steps = state.step
        state.end_epoch()
        if math.isfinite(logs["loss"]):
            logs.update(self._validate(run, epoch))
            return logs
        self.stop_training = True
        progress.close()
        warnings.warn(
            f"Epoch {epoch + 1}: the loss became {logs['loss']} (not finite); training stopped. "
            "Lower the learning rate, check the inputs are scaled, or use a stabler loss.",
            RuntimeWarning,
            stacklevel=4,
        )
        return logs

    def _validate(self, run: _FitRun, epoch: int) -> dict[str, float]:
        """The val_ logs of this epoch's end (empty without validation data)."""
        callbacks = run.cbs.callbacks
        if run.val_source is not None:
            vals = self._evaluate_stream(run.val_source, callbacks, ran_out_ok=True)
            if not vals:
                warnings.warn(
                    f"fit: validation_data ran out of batches; epoch {epoch + 1} has no val_ metrics. "
                    "Pass a PyDataset, or a generator that repeats with validation_steps",
                    RuntimeWarning,
                    stacklevel=5,
                )
        elif run.val is not None:
            vals = self._evaluate_arrays(run.val[0], run.val[1], run.batch_size, run.val[2], callbacks)
        else:
            return {}
        return {f"val_{k}": v for k, v in vals.items()}

    def _end_fit(self, run: _FitRun) -> None:
        """After the last epoch, or an error: the bar ends, gradients fill the buffer again, locks are freed."""
        run.progress.close()
        self.store.use_sink()  # after fit, backward fills the gradient buffer again
        run.cbs.release()  # on an error on_train_end is not called: a checkpoint folder is freed here
        for layer in run.counted:
            layer.row_offset = 0

    def _fit_data(
        self,
        x: Any,
        y: Any,
        source: stream_mod.Stream | None,
        sample_weight: Any,
        class_weight: Any,
        validation_split: float,
        validation_data: Any,
    ) -> data.FitData:
        """fit's checked host data, its weights made once, and the validation set split off or checked.

        For a stream, x is its first batch (a stream's weights come with its batches).
        """
        if source is not None:
            x, y = self.prepare(*stream_mod.split_batch(source.peek(), "fit")[:2], "fit")
            if y is None:
                raise ValueError("fit: each batch must hold targets, (x, y) or (x, y, sample_weight)")
        else:
            x, y = self.prepare(x, y, "fit")
        if y is None:
            raise ValueError("fit: y (the targets) is required")
        self._require_differentiable()
        w = None if source is not None else self.sample_weights_for(sample_weight, class_weight, y, "fit")
        train = data.FitData(x, y, w)
        if validation_data is not None and not stream_mod.is_stream(validation_data):
            train.val = self._validation_arrays(validation_data)
        elif validation_data is None and validation_split:
            train = data.split_validation(train, validation_split, split_weights=class_weight is None)
        return train

    def _validation_arrays(self, validation_data: Any) -> data.Validation:
        """fit's validation_data (x, y) or (x, y, sample_weight), checked."""
        if len(validation_data) not in (2, 3):
            raise ValueError(
                "validation_data must be a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight), "
                f"received {len(validation_data)} items"
            )
        what = "fit (validation_data)"
        vx, vy = self.prepare(validation_data[0], validation_data[1], what)
        vw = None
        if len(validation_data) == 3:
            assert vy is not None
            vw = self.sample_weights_for(validation_data[2], None, vy, what)
        return vx, vy, vw

    def _share_weights(self) -> None:
        """Check every rank runs the same model, then give every rank rank 0's weights (data-parallel runs)."""
        comm, opt, ops = self._comm, self.optimizer, self.ops
        assert opt is not None and ops is not None
        distributed.check_same_model(comm, self.store.layout(), self.seed, opt.get_config())
        if comm.size > 1:
            comm.bcast_from_root(ops, self.store.flat)

    def _resume(self, where: str | os.PathLike[str], steps: int, verbose: int | str, epochs: int | None = None) -> bool:
        """`checkpoint.resume` of this model: True when nothing is left to train."""
        return checkpoint.resume(self, where, steps, verbose, epochs)

    def _start_run(self, train: data.FitData, source: stream_mod.Stream | None, epoch: int, batch_size: int) -> int:
        """Set `train_state` for a new fit from `epoch`; returns the steps per epoch (sys.maxsize: a
        stream without a length runs until it is exhausted)."""
        state = self.train_state
        if source is None:
            state.start(epoch, data.rows(train.x), batch_size)
            return math.ceil(state.samples / (batch_size * self._comm.size))
        state.start(epoch, 0, data.rows(train.x))  # a stream's "batch size" is its first batch's
        return source.steps if source.steps is not None else sys.maxsize

    def _stream_for_fit(
        self, x: Any, y: Any, steps: int | None, validation_split: float, sample_weight: Any, resume_from: Any
    ) -> stream_mod.Stream | None:
        """fit's x as a Stream when it is a PyDataset or iterator (None for arrays), after the checks
        for one (each refusal says what to do instead)."""
        if not stream_mod.is_stream(x):
            return None
        kind = type(x).__name__
        if y is not None:
            raise ValueError(f"fit: y must be None when x is a {kind}: its batches hold the targets, (x, y[, w])")
        if validation_split:
            raise ValueError(f"fit: validation_split cannot split a {kind}; pass validation_data instead")
        if sample_weight is not None:
            raise ValueError(f"fit: sample_weight cannot go with a {kind}; yield (x, y, sample_weight) batches")
        if resume_from is not None:
            raise ValueError(f"fit: resume_from needs array data (a {kind} cannot be replayed to a step)")
        if self._comm.size > 1:
            raise ValueError(f"fit: a {kind} is not sharded over MPI ranks; pass arrays under mpiexec")
        return stream_mod.Stream(x, steps, "fit")

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

    def _evaluate_stream(
        self, source: stream_mod.Stream, callbacks: Sequence[Callback] = (), ran_out_ok: bool = False
    ) -> dict[str, float]:
        """Loss and metrics over a stream's batches (one pass), with the on_test_* hooks.

        ran_out_ok: an iterator that yielded batches in an earlier pass and none now gives {}
        (fit's validation goes on without it, as Keras's does) instead of an error.
        """
        if self._comm.size > 1:
            raise ValueError(f"{source.what}: a {type(source.source).__name__} is not sharded over MPI ranks")
        hooks = CallbackList(callbacks, ("on_test_batch_begin", "on_test_batch_end"))
        run_hooks(callbacks, "on_test_begin", {})
        self.reset_metrics()
        sums: list[Array] = []
        seen = 0
        for index, raw in enumerate(source.epoch()):
            x, y, w = stream_mod.split_batch(raw, source.what)
            x, y = self.prepare(x, y, source.what)
            if y is None:
                raise ValueError(f"{source.what}: each batch must hold targets, (x, y) or (x, y, sample_weight)")
            w = self.sample_weights_for(w, None, y, source.what)
            hooks.batch("on_test_batch_begin", index)
            wb = None if w is None else self.upload(w)
            batch = forward_sums(self, self.upload(x), self.upload(y, targets=True), self._one(), wb)
            sums = batch if not sums else [a + b for a, b in zip(sums, batch, strict=True)]
            seen += data.rows(x)
            if hooks.wants("on_test_batch_end"):
                read = functools.partial(self._read_evaluation, self._snapshot(sums), seen)
                hooks.batch("on_test_batch_end", index, BatchLogs(read))
        source.end_epoch()
        if not sums and ran_out_ok and source.yielded:  # an iterator spent by an earlier pass
            run_hooks(callbacks, "on_test_end", {})
            return {}
        if not sums:
            raise ValueError(f"{source.what}: the data yielded no batches")
        if self.store.regularized():
            sums[0] = sums[0] + self.store.penalty() * seen
        result = self._read(sums, seen)
        run_hooks(callbacks, "on_test_end", dict(result))
        return result

    def _read_evaluation(self, sums: list[Array], seen: int) -> dict[str, float]:
        """An evaluation's running values after `seen` samples, the weight penalty in the loss as in
        its final result (an on_test_batch_end read)."""
        if self.store.regularized():
            sums = [sums[0] + self.store.penalty() * seen, *sums[1:]]
        return self._read(sums, seen)

    def _predict_batches(self, x: Any, batch_size: int | None, callbacks: Sequence[Callback], steps: int | None) -> Any:
        """predict batch by batch, for a stream or for callbacks with on_predict_* hooks.

        Each batch runs through the model's own predict; on_predict_batch_end gets {"outputs": ...}
        (host arrays: predict's results come to the host anyway).
        """
        batches: Any
        source = stream_mod.Stream(x, steps, "predict") if stream_mod.is_stream(x) else None
        if source is not None:
            batches = (stream_mod.predict_inputs(b) for b in source.epoch())
        else:
            size = check_batch_size(32 if batch_size is None else batch_size)
            x = self.check_inputs(x, "predict", finite=False)
            n = data.rows(x)
            count = math.ceil(n / size) if steps is None else min(steps, math.ceil(n / size))
            batches = (data.select(x, lo, min(lo + size, n)) for lo in range(0, count * size, size))
        begin_hooks = [cb for cb in callbacks if overrides(cb, "on_predict_batch_begin")]
        end_hooks = [cb for cb in callbacks if overrides(cb, "on_predict_batch_end")]
        for cb in callbacks:
            cb.set_model(self)
        run_hooks(callbacks, "on_predict_begin", {})
        parts: list[Any] = []
        for index, xb in enumerate(batches):
            for cb in begin_hooks:
                cb.on_predict_batch_begin(index, {})
            out = self.predict(xb, batch_size=max(1, data.rows(self.check_inputs(xb, "predict", finite=False))))
            for cb in end_hooks:
                cb.on_predict_batch_end(index, {"outputs": out})
            parts.append(out)
        if source is not None:
            source.end_epoch()
        run_hooks(callbacks, "on_predict_end", {})
        if not parts:
            raise ValueError("predict: the data yielded no batches")
        if isinstance(parts[0], list):
            return [np.concatenate(p, axis=0) for p in zip(*parts, strict=True)]
        return np.concatenate(parts, axis=0)

    @property
    def step_program(self) -> StepProgram:
        """How fit runs the training step: captured as a CUDA graph or eager, and why (`explain()`)."""
        if self.optimizer is None or not self.built:
            raise RuntimeError("step_program: compile and build the model first (fit builds it from the data)")
        return self._step_program()

    def _step_program(self) -> StepProgram:
        step = self._train_step()
        program = self._program
        if program is None or program.step is not step:
            program = self._program = StepProgram(self, step, self._jit_compile)
        return program

    def _train_step(self) -> TrainStep:
        """The step for the current optimizer and communicator (made again if a callback compiled anew)."""
        self.hold_layers()  # a callback may have run a model that shares layers with this one
        step = self._step
        if step is None or step.optimizer is not self.optimizer or step.comm is not self._comm:
            step = self._step = TrainStep(self, self._comm)
        return step

    def sample_weights_for(self, sample_weight: Any, class_weight: Any, yy: Any, what: str) -> np.ndarray | None:
        """Checked host weights (n,) in the model's dtype for targets yy, or None; see `data.sample_weights`.

        With several outputs one (n,) sample_weight weighs every output's loss; class_weight is
        refused there, as Keras refuses it.
        """
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
        for layer in self.leaf_layers:
            act = layer.activation
            if act is not None and not act.differentiable:
                raise NotDifferentiableError(
                    f"layer {layer.name!r} uses the {act.name!r} activation, a step function with no useful "
                    "gradient, so fit() cannot backpropagate through it. Use 'sigmoid' or 'tanh' (smooth steps), "
                    "or train a perceptron with the perceptron learning rule."
                )
        if self.store.trainable_size == 0:
            raise ValueError(
                "fit: the model has no trainable parameters"
                + (" (every layer with weights has trainable=False)" if self.store.size else "")
            )

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

    def _read(self, sums: list[Array], count: int) -> dict[str, float]:
        """One device→host read of the running sums; returns the loss and metric values."""
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
        host = self._comm.allreduce_host(ops.to_numpy(concat(flat) if len(flat) > 1 else flat[0]))
        out, off = {"loss": float(host[0]) / count}, 1
        # several outputs: each output's loss sum comes before the metric states
        readers: list[metrics_mod.Metric | None] = [None] * (len(self.metrics_names) - 1 - len(every))
        for name, metric, s in zip(self.metrics_names[1:], [*readers, *every], flat[1:], strict=True):
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

    def _evaluate_arrays(
        self, X: Array, Y: Array, batch_size: int, W: Array | None = None, callbacks: Sequence[Callback] = ()
    ) -> dict[str, float]:
        """Loss and metrics over device data (X, Y) in batches; `callbacks` get the on_test_* hooks."""
        self.hold_layers()
        ops, loss = self.ops, self.loss
        assert ops is not None and loss is not None
        n = data.rows(X)
        one = self._one()
        first, last = distributed.shard(0, n, self._comm.rank, self._comm.size)  # each rank evaluates a share
        sums: list[Array] = []
        hooks = CallbackList(callbacks, ("on_test_batch_begin", "on_test_batch_end"))
        run_hooks(callbacks, "on_test_begin", {})
        self.reset_metrics()
        program = forward_program(self, "evaluate", True)
        for index, lo in enumerate(range(first, last, batch_size)):
            hi = min(lo + batch_size, last)
            hooks.batch("on_test_batch_begin", index)
            # no-ops when resident
            xb, yb = self.upload(data.select(X, lo, hi)), self.upload(data.select(Y, lo, hi), targets=True)
            wb = None if W is None else self.upload(W[lo:hi])
            fn = functools.partial(forward_sums, self, one=one, wb=wb)
            self._detach_kept_logs()
            sums = program.sums(fn, [xb, yb], sums, eager=wb is not None)  # a CUDA graph per batch shape
            if hooks.wants("on_test_batch_end"):
                read = functools.partial(self._read_evaluation, self._snapshot(sums), hi - first)
                hooks.batch("on_test_batch_end", index, self._logs_of(read, program.holds(sums)))
        if not sums:  # more ranks than samples: this rank contributes zeros of the right shapes
            first_row = self.upload(data.select(X, 0, 1)), self.upload(data.select(Y, 0, 1), True)
            w0 = None if W is None else self.upload(W[0:1])
            sums = [s * 0 for s in forward_sums(self, *first_row, one, w0)]
        if self.store.regularized():
            sums[0] = sums[0] + self.store.penalty() * (last - first)
        result = self._read(sums, n)
        run_hooks(callbacks, "on_test_end", dict(result))
        return result

    @exclusive("evaluate")
    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        return_dict: bool = False,
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> float | list[float] | dict[str, float]:
        """Loss (plus any weight penalty) and metrics over (x, y): a float, a list, or a dict.

        sample_weight: (n,) non-negative; the loss becomes Σ wᵢℓᵢ / n and `weighted_metrics` use it.
        x may be an `xpnet.utils.PyDataset` or an iterator of (x, y[, w]) batches (y None; `steps`
        bounds the pass). callbacks: their on_test_* hooks run (batch-end logs: the running values).
        """
        batch_size = check_batch_size(32 if batch_size is None else batch_size)
        cbs = list(callbacks or [])
        for cb in cbs:
            cb.set_model(self)
        if stream_mod.is_stream(x):
            if y is not None or sample_weight is not None:
                raise ValueError(f"evaluate: y and sample_weight must be None when x is a {type(x).__name__}")
            source = stream_mod.Stream(x, steps, "evaluate")
            self.prepare(*stream_mod.split_batch(source.peek(), "evaluate")[:2], "evaluate")
            ops = self.ops
            assert ops is not None
            with ops.activate():
                result = self._evaluate_stream(source, cbs)
            if verbose == "auto" or verbose:
                print(f"{format_logs(result)}", file=sys.stdout, flush=True)
            return _shape_result(result, return_dict)
        x, yy = self.prepare(x, y, "evaluate")
        if yy is None:
            raise ValueError("evaluate: y (the targets) is required")
        sw = self.sample_weights_for(sample_weight, None, yy, "evaluate")
        if steps is not None:  # Keras: evaluate only the first `steps` batches
            n_keep = min(data.rows(x), check_batch_size(steps) * batch_size)
            x, yy = data.select(x, 0, n_keep), data.select(yy, 0, n_keep)
            sw = None if sw is None else sw[:n_keep]
        ops = self.ops
        assert ops is not None
        with ops.activate():
            W = None if sw is None else self.upload(sw)
            result = self._evaluate_arrays(self.upload(x), self.upload(yy, targets=True), batch_size, W, cbs)
        steps = math.ceil(data.rows(x) / batch_size)
        if verbose == "auto":
            verbose = 1
        if verbose:
            print(f"{steps}/{steps} - {format_logs(result)}", file=sys.stdout, flush=True)
        return _shape_result(result, return_dict)

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
        self._require_differentiable()
        sw = self.sample_weights_for(sample_weight, class_weight, yy, "train_on_batch")
        ops = self.ops
        assert ops is not None
        n = data.rows(x)
        with ops.activate():
            wb = None if sw is None else self.upload(sw)
            program = self._step_program()
            if wb is None and program.replays:  # NumPy: through the recorded step, as fit's steps
                sums = program.train_on_batch(self.upload(x), self.upload(yy, targets=True), n * self._comm.size)
            else:
                sums = self._train_step()(self.upload(x), self.upload(yy, targets=True), n * self._comm.size, wb)
            self.store.use_sink()
            return _shape_result(self._read(sums, n * self._comm.size), return_dict)

    def test_on_batch(
        self, x: Any, y: Any, sample_weight: Any = None, return_dict: bool = False
    ) -> float | list[float] | dict[str, float]:
        """Loss and metrics on (x, y) as a single batch, in inference mode."""
        x = self.check_inputs(x, "test_on_batch")  # a list or dict of inputs: its rows, not len(x)
        return self.evaluate(
            x, y, batch_size=max(1, data.rows(x)), verbose=0, return_dict=return_dict, sample_weight=sample_weight
        )

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


@dataclass
class _FitRun:
    """What one fit's epochs share: batches (`data.Batches` or `stream.StreamBatches`), callbacks,
    progress bar, steps per epoch (sys.maxsize: until a stream runs out), validation data, and
    the last epoch's logs (on_train_end gets them)."""

    batches: data.Batches | stream_mod.StreamBatches
    cbs: CallbackList
    progress: Progress
    steps: int
    shuffle: bool
    program: StepProgram
    counted: list[Any]  # layers whose masks depend on the rows' place in the global batch
    val: data.Validation | None = None
    val_source: stream_mod.Stream | None = None
    batch_size: int = 0
    logs: dict[str, float] = field(default_factory=dict)


def _validation_stream(validation_data: Any, steps: int | None) -> stream_mod.Stream | None:
    """fit's validation_data as a Stream when it is a PyDataset or iterator, else None."""
    if validation_data is None or not stream_mod.is_stream(validation_data):
        return None
    return stream_mod.Stream(validation_data, steps, "fit (validation_data)")


def _fuses(loss: losses_mod.Loss, layer: Layer) -> bool:
    """Whether `loss` can start backprop from `layer`'s pre-activation (softmax + cross-entropy gives p − y)."""
    want = loss.fused_activation()
    act = custom.logits_activation(layer, want) if layer.keras_call else layer.activation
    # only layers that define the logits contract themselves (a custom layer may just have an activation)
    own = layer.keras_call or all(
        getattr(type(layer), m) is not getattr(Layer, m) for m in ("forward_preactivation", "backward_preactivation")
    )
    if want is None or act is None or act.name != want or not own:
        return False
    try:
        named = type(activations.get(want))
    except ValueError:  # a user's loss that fuses with an activation of the user's own: the name is the contract
        return True
    # the loss then computes the built-in activation itself (softmax of u), so it must be that very φ: a
    # subclass or a user's function with a φ of its own runs unfused, whatever its name
    return type(act).forward is named.forward


def _per_output(value: Any, names: list[str], what: str) -> list[Any]:
    """compile's loss or loss_weights as one entry per output: from a list, a dict by output name, or one value."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        missing = [n for n in names if n not in value]
        if unknown or missing:
            raise ValueError(
                f"compile: {what} keys must be the output names {names}; "
                + (f"unknown {unknown}" if unknown else f"missing {missing}")
            )
        return [value[n] for n in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"compile: {what} has {len(value)} entries but the model has {len(names)} outputs {names}")
        return list(value)
    return [value] * len(names)


def _loss_weights(loss_weights: Any, names: list[str]) -> list[float]:
    """compile's loss_weights as one finite float per output (1.0 each when not given)."""
    if loss_weights is None:
        return [1.0] * len(names)
    per_weight = _per_output(loss_weights, names, "loss_weights")
    for w in per_weight:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ValueError(f"loss_weights must be finite numbers, received {loss_weights!r}")
    return [float(w) for w in per_weight]


def _weighted_metric_list(weighted_metrics: Any, per_metrics: list[list[Any]], outputs: int) -> list[Any]:
    """compile's weighted_metrics as a list, after every metric identifier is checked."""
    if isinstance(weighted_metrics, (str, metrics_mod.Metric)) or callable(weighted_metrics):
        weighted_metrics = [weighted_metrics]
    for ms in per_metrics:  # everything is checked before anything changes
        for m in ms:
            metrics_mod.check_identifier(m)
    for m in weighted_metrics or []:
        metrics_mod.check_weighted_identifier(m)
    if weighted_metrics and outputs > 1:
        raise ValueError(
            f"weighted_metrics on a model with {outputs} outputs is not supported; "
            "use metrics per output (sample weights still weigh every output's loss)"
        )
    return list(weighted_metrics or [])


def _per_output_metrics(metrics: Any, names: list[str]) -> list[list[Any]]:
    """compile's metrics as one list per output: a dict, a list of lists, a flat list with one entry per
    output (Keras 3's reading), else the same list for every output."""
    if metrics is None:
        return [[] for _ in names]
    if isinstance(metrics, dict):
        return _metrics_by_name(metrics, names)
    if isinstance(metrics, (str, metrics_mod.Metric)) or callable(metrics):
        metrics = [metrics]
    metrics = list(metrics)
    if len(names) > 1 and metrics and all(isinstance(m, (list, tuple)) for m in metrics):
        if len(metrics) != len(names):
            raise ValueError(f"compile: metrics has {len(metrics)} lists but the model has {len(names)} outputs")
        return [list(m) for m in metrics]
    if len(names) > 1 and len(metrics) == len(names):  # Keras 3: a flat list with one entry per output
        return [[m] if m is not None else [] for m in metrics]
    return [list(metrics) for _ in names]


def _metrics_by_name(metrics: dict[str, Any], names: list[str]) -> list[list[Any]]:
    """compile's metrics dict {output name: metric or list} as one list per output."""
    unknown = sorted(set(metrics) - set(names))
    if unknown:
        raise ValueError(f"compile: metrics keys must be output names {names}; unknown {unknown}")
    picked = [metrics.get(n, []) for n in names]
    return [list(m) if isinstance(m, (list, tuple)) else [m] for m in picked]


def _shape_result(result: dict[str, float], return_dict: bool) -> float | list[float] | dict[str, float]:
    """Keras's return shapes: a dict, one float, or a list in metrics_names order."""
    if return_dict:
        return result
    values = list(result.values())
    return values[0] if len(values) == 1 else values


def _callback_list(callbacks: Any) -> list[Callback]:
    """fit's `callbacks` as a list; a lone callback or a non-callback item is refused by name."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        raise TypeError(
            f"fit: callbacks must be a list of callbacks, received one {type(callbacks).__name__}; "
            f"pass callbacks=[{type(callbacks).__name__}(...)]"
        )
    if isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"fit: callbacks must be a list of callbacks, received {callbacks!r}")
    items = list(callbacks)
    for i, cb in enumerate(items):
        if not isinstance(cb, Callback):
            raise TypeError(f"fit: callbacks[{i}] must be a Callback, received {cb!r}")
    return items


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be a positive integer, received {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, received {batch_size}")
    return int(batch_size)
