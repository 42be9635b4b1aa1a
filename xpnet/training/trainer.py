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
callbacks are called through a `callbacks.CallbackList`. The rest of the API sits in the classes
`Trainer` extends, one file each: `compiling.Compiled` (compile, metrics, the step and its
program), `on_batch.BatchRunner` (the per-call data checks, `train_on_batch`, `compute_gradients`,
the read of the running sums) and `evaluation.Evaluator` (`evaluate`, `test_on_batch`).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import argcheck
from . import checkpoint, data, distributed
from . import stream as stream_mod
from .callbacks import Callback, CallbackList, History, Progress
from .evaluation import Evaluator
from .guard import exclusive
from .on_batch import check_batch_size
from .program import StepProgram
from .state import step_counted
from .threads import blas_threads_for, macs_per_sample

__all__ = ["Trainer", "check_batch_size"]

_DIST_READ_EVERY = 100  # steps between progress reads in a data-parallel run


class Trainer(Evaluator):
    """The Keras training API over a model's structure; see the module docstring for what the model provides."""

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
        begins, ends = cbs.wants("on_train_batch_begin"), cbs.wants("on_train_batch_end")
        # without batch hooks (and no generator of the caller's to draw from) no code of the caller's runs
        # between steps: the program may then compare its settings once, and no batch logs are kept to detach
        steady = not (begins or ends) and isinstance(batches, data.Batches)
        watch = self._comm.size > 1 or run.progress.mode == 1  # else the loss is read at the epoch's end only
        bounds, gather, counted = batches.bounds, batches.gather, run.counted
        if steady:
            self._detach_kept_logs()
        run.program.settle(steady)
        try:
            for step in range(state.step, run.steps):
                try:
                    lo, hi, a, b = bounds(step)
                except StopIteration:  # a stream's epoch ended
                    break
                if begins:
                    cbs.batch("on_train_batch_begin", step)
                for layer in counted:
                    layer.row_offset = a - lo
                xb, yb, wb = gather(a, b)
                if self._program is not run.program:  # a callback compiled anew
                    run.program.settle(False)
                    run.program = self._step_program()
                    run.program.settle(steady)
                if not steady:
                    self._detach_kept_logs()
                state.running = run.program.run(xb, yb, hi - lo, wb, state.running)
                state.step = step + 1
                if ends:
                    # the running values so far, as Keras's batch logs; read only if a callback looks
                    read = functools.partial(self._read, self._snapshot(state.running), hi)
                    cbs.batch("on_train_batch_end", step, self._logs_of(read, run.program.holds(state.running)))
                # a batch callback (TerminateOnNaN) may stop
                if self.stop_training or (watch and self._diverged(run, step, hi)):
                    break
        finally:
            run.program.settle(False)
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
