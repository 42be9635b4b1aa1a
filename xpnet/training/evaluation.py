"""`evaluate`, `test_on_batch` and predict's batch loop for callbacks and streams: forward passes
only, their loss and metric sums accumulated on the device and read once.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import data, distributed
from . import stream as stream_mod
from .callbacks import BatchLogs, Callback, CallbackList, format_logs, overrides, run_hooks
from .compiling import Array
from .forward_program import forward_program
from .guard import exclusive
from .on_batch import BatchRunner, _shape_result, check_batch_size
from .step import forward_sums


class Evaluator(BatchRunner):
    """`BatchRunner` plus evaluation over arrays or a stream, and predict batch by batch."""

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

    def test_on_batch(
        self, x: Any, y: Any, sample_weight: Any = None, return_dict: bool = False
    ) -> float | list[float] | dict[str, float]:
        """Loss and metrics on (x, y) as a single batch, in inference mode."""
        x = self.check_inputs(x, "test_on_batch")  # a list or dict of inputs: its rows, not len(x)
        return self.evaluate(
            x, y, batch_size=max(1, data.rows(x)), verbose=0, return_dict=return_dict, sample_weight=sample_weight
        )

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
