"""evaluate and predict replaying a captured forward pass: on CuPy, one CUDA graph per batch shape.

    first batch of a shape: eager (the warm-up: every kernel is built, every buffer sized)
    second: the batch is copied into fixed input buffers, the forward captured, then launched
    later batches: copied in, launched

Under the same `compile(jit_compile=...)` switch as the training step, and with the same
checks (`program.capture_obstacle`, less the optimizer's): "auto" captures where it can, True
raises where it cannot, False never captures. A graph replays raw addresses, so the inputs are
copied into buffers made before the capture, every array the capture creates is kept for the
graph's life (`program._retaining`), and evaluation's running sums are accumulated inside the
graph into accumulators of its own. GEMMs go through the direct cuBLAS binding while a program
captures, for the eager warm-up and short batches too, so all batches compute alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from ..backend import _cublas
from .capturable import JitRequest, capture_decision, model_obstacle, width_obstacle
from .program import REPLAY_MAX_MACS, load_sums, record
from .replay import ForwardReplay, NotReplayable, same_bits
from .threads import macs_per_sample

if TYPE_CHECKING:
    from ..backend import Ops

Array = Any


def forward_obstacle(model: Any, ops: Ops, with_loss: bool) -> str | None:
    """Why the model's inference forward (with its loss and metric sums when `with_loss`) cannot be
    captured as a CUDA graph, or None when it can."""
    if getattr(ops, "name", "") != "cupy":
        return f"the {ops.describe()} backend runs the forward pass eagerly (CUDA graphs are a CuPy feature)"
    if len(getattr(model, "inputs", None) or [None]) != 1:
        return "a model with several inputs is not yet checked for capture"
    return model_obstacle(model, with_loss) or (width_obstacle(model, ops) if with_loss else None)


def _replay_obstacle(model: Any, with_loss: bool) -> str | None:
    """Why the model's inference forward is not replayed on NumPy (the classes checked for capture), or None."""
    if len(getattr(model, "inputs", None) or [None]) != 1:
        return "a model with several inputs is not yet checked for replay"
    return model_obstacle(model, with_loss)


_UNSEEN: Any = object()


def _rows(key: Any) -> int:
    """The batch rows of a key of input shapes."""
    return int(key[0][0][0]) if key and key[0][0] else 0


# graphs (on NumPy: lists) kept per program: each holds its buffers for the model's life, so a caller cycling through
# many batch shapes (predict_on_batch in a loop) runs the shapes past these eagerly
MAX_GRAPHS = 8


class _Graph:
    """One captured forward: the graph, its fixed inputs and outputs, and every buffer it touches."""

    def __init__(self, graph: Any, inputs: list[Array], outputs: list[Array], keep: list[Any]) -> None:
        self.graph, self.inputs, self.outputs, self.keep = graph, inputs, outputs, keep


class ForwardProgram:
    """How evaluate or predict runs the forward pass of one model: captured per batch shape, or eagerly.

    `outputs(fn, inputs)`: fn(*inputs) → list of arrays (predict's outputs); captured, the arrays
    are the graph's own, overwritten by the next launch: copy them out before it.
    `sums(fn, inputs, running)`: running + fn(*inputs), elementwise over lists of device sums
    (evaluate); captured, the addition is inside the graph and the result is its accumulators.
    """

    def __init__(self, model: Any, ops: Ops, request: JitRequest, with_loss: bool) -> None:
        self.ops, self.request, self.model = ops, request, model
        self._graphs: dict[Any, _Graph] = {}
        self._warm: set[Any] = set()
        self.launches = 0  # graph launches so far (a test reads it)
        self._lists: dict[Any, ForwardReplay | None] = {}  # NumPy: per input shapes, its list (None: eager)
        self.replayed = 0  # NumPy batches run from a list (a test reads it)
        self._busy = threading.Lock()
        if getattr(ops, "name", "") == "numpy":
            obstacle = None if request is False else _replay_obstacle(model, with_loss)
            self.captures, self.replays = False, request is not False and obstacle is None
            self.reason = (
                "jit_compile=False: every batch runs eagerly"
                if request is False
                else f"eager: {obstacle}"
                if obstacle is not None
                else "replayed: per batch shape, recorded once, checked against an eager batch, then a flat list"
            )
            return
        self.replays = False
        obstacle = None if request is False else forward_obstacle(model, ops, with_loss)
        self.captures, self.reason = capture_decision(request, obstacle, "the forward pass", "batch")

    def explain(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        how = "captured" if self.captures else "replayed" if self.replays else "eager"
        return f"ForwardProgram({how}, graphs={len(self._graphs)})"

    def routing(self) -> Any:
        """The GEMM route of every batch of this pass (the graph's own, when it captures)."""
        return _cublas.routed(self.ops) if self.captures else nullcontext()

    def outputs(self, fn: Callable[..., list[Array]], inputs: Sequence[Array]) -> list[Array]:
        if self.replays:
            return self._replayed(fn, list(inputs))
        with self.routing():
            g = self._graph(fn, inputs, None)
            if g is None:
                return fn(*inputs)
        self._launch(g, inputs)
        return list(g.outputs)

    def sums(
        self, fn: Callable[..., list[Array]], inputs: Sequence[Array], running: list[Array], eager: bool = False
    ) -> list[Array]:
        """eager: run this batch eagerly (sample-weighted evaluation is not yet checked for capture)."""
        if self.replays and not eager:
            batch = self._replayed(fn, list(inputs))  # copies: the list's buffers are the next run's
            return batch if not running else [u + v for u, v in zip(running, batch, strict=True)]
        with self.routing():
            g = None if eager else self._graph(fn, inputs, running)
            if g is None:
                batch = fn(*inputs)
                return batch if not running else [u + v for u, v in zip(running, batch, strict=True)]
        if len(running) != len(g.outputs) or any(r is not a for r, a in zip(running, g.outputs, strict=True)):
            # a new pass, or the sums so far held elsewhere (the warm-up, another batch shape's graph)
            load_sums(g.outputs, running)
        self._launch(g, inputs)
        return list(g.outputs)

    def holds(self, sums: list[Array]) -> bool:
        """Whether `sums` are a graph's own accumulators (the next launch adds into them)."""
        return bool(sums) and any(
            len(sums) == len(g.outputs) and all(s is a for s, a in zip(sums, g.outputs, strict=True))
            for g in self._graphs.values()
        )

    def _launch(self, g: _Graph, inputs: Sequence[Array]) -> None:
        cp = self.ops.xp
        for buf, a in zip(g.inputs, inputs, strict=True):
            if a is not buf:
                buf[...] = a
        g.graph.launch(cp.cuda.get_current_stream())
        self.launches += 1

    def _replayed(self, fn: Callable[..., list[Array]], inputs: list[Array]) -> list[Array]:
        """One NumPy batch: recorded (the first of its shape), checked (the second), then replayed; eager
        while another thread runs this program (the lists' buffers are one per shape). The outputs are
        copied out of the list's buffers before another thread may run the list again."""
        if not self._busy.acquire(blocking=False):
            return fn(*inputs)
        try:
            return [a.copy() for a in self._batch(fn, inputs)]
        finally:
            self._busy.release()

    def _past_the_limit(self, key: Any) -> bool:
        """Under "auto", whether batches of these shapes run eagerly for their size (then noted as eager)."""
        rows = _rows(key)
        if self.request != "auto" or rows * macs_per_sample(self.model) <= REPLAY_MAX_MACS:
            return False
        # as for training steps: past this size the GEMMs dominate, and the list's bound GEMMs ran
        # slower than NumPy's own (model A's predict at 10,000 rows: 280k against 346k images/s, 2 threads)
        self._lists[key] = None
        self.reason = f"eager for batches of {rows} rows: past the replay's {REPLAY_MAX_MACS:.0e} multiply-adds"
        return True

    def _batch(self, fn: Callable[..., list[Array]], inputs: list[Array]) -> list[Array]:
        key = tuple((tuple(a.shape), str(a.dtype)) for a in inputs)
        r = self._lists.get(key, _UNSEEN)
        if isinstance(r, ForwardReplay) and not r.current():  # a layer setting the list holds changed
            r = _UNSEEN
        if r is None or (r is _UNSEEN and len(self._lists) >= MAX_GRAPHS):
            return fn(*inputs)
        if r is _UNSEEN and self._past_the_limit(key):
            return fn(*inputs)
        if not isinstance(r, ForwardReplay):
            try:
                r = self._lists[key] = ForwardReplay(self.ops, self.model, fn, inputs)
            except NotReplayable as e:
                self._lists[key] = None
                self.reason = f"eager for batches of {_rows(key)} rows: {e}"
                return fn(*inputs)
            if r.list.rerun and self.request == "auto":
                # a re-run call computes as the eager one does and then copies: with nothing bound
                # that skips work, the list would only add copies (LeNet's predict: 0.5-1.0x eager)
                self._lists[key] = None
                self.reason = (
                    f"eager for batches of {_rows(key)} rows: {len(r.list.rerun)} of its calls would be re-run "
                    f"({', '.join(sorted(set(r.list.rerun)))}), so a replay would only add copies"
                )
            return r.first
        if r.verified:
            self.replayed += 1
            return r.run(inputs)
        try:
            got: list[Array] | None = [a.copy() for a in r.run(inputs)]
        except Exception:  # a re-run call that no longer takes its recorded arguments: eager
            got = None
        want = fn(*inputs)
        if got is not None and len(got) == len(want) and all(same_bits(a, b) for a, b in zip(got, want, strict=True)):
            r.verified = True
        else:
            self._lists[key] = None
            self.reason = "eager: a replayed forward pass differed from the eager one"
        return want

    def _graph(self, fn: Callable[..., list[Array]], inputs: Sequence[Array], running: list[Array] | None) -> Any:
        """The graph for these inputs' shapes: None for an eager batch (not capturing, or the warm-up)."""
        if not self.captures:
            return None
        key = (tuple((tuple(a.shape), str(a.dtype)) for a in inputs), running is not None)
        g = self._graphs.get(key)
        if g is None:
            if key not in self._warm or len(self._graphs) >= MAX_GRAPHS:
                self._warm.add(key)
                return None
            try:
                g = self._graphs[key] = self._capture(fn, inputs, running is not None)
            except NotImplementedError as e:  # CuPy's own cuBLAS wrappers, which refuse a capturing stream
                if self.request is True:
                    raise RuntimeError(f"jit_compile=True: the forward pass could not be captured: {e}") from e
                self.captures, self.reason = False, f"eager: the capture was refused ({e})"
                return None
        return g

    def _capture(self, fn: Callable[..., list[Array]], inputs: Sequence[Array], accumulate: bool) -> _Graph:
        ops = self.ops
        cp = ops.xp
        bufs = [cp.empty_like(a) for a in inputs]
        for buf, a in zip(bufs, inputs, strict=True):
            buf[...] = a
        keep: list[Any] = list(bufs)
        acc: list[Array] = []
        if accumulate:  # shaped as the warm-up's sums, made before capture
            with ops.activate():
                acc = [cp.zeros_like(s) for s in fn(*bufs)]
        graph, stream, out = record(ops, lambda: fn(*bufs), acc, keep)
        keep.append(stream)
        return _Graph(graph, bufs, acc if accumulate else list(out), keep)


class _Kept(dict[str, tuple[list[Any], Any, ForwardProgram]]):
    """A model's forward programs by kind. A copy of the model (copy.deepcopy, pickle) starts without
    them: their graphs hold device addresses and a cuBLAS handle, which no copy may share."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Kept:
        return _Kept()

    def __copy__(self) -> _Kept:
        return _Kept()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Kept, ())


def forward_program(model: Any, kind: str, with_loss: bool) -> ForwardProgram:
    """The model's program for `kind` ("evaluate" or "predict"), kept while its backend, layers, weights'
    buffer, compiled loss (and loss weights), metrics, weighted metrics and `jit_compile` stay."""
    ops = model.ops
    request: JitRequest = model.__dict__.get("_jit_compile", "auto")
    # the plan too: a new plan (a replaced activation, another route) runs other forms of the layers
    plan = model.__dict__.get("_exec_plan")
    # loss_weights: compile makes the list anew, so a recompile reusing the loss object still drops the graphs
    losses = [*getattr(model, "compiled_losses", []), getattr(model, "loss_weights", None)]
    parts = [ops, model.store.params, plan, *model.layers, *losses, *model.metrics, *model.weighted_metrics]
    kept: _Kept = model.__dict__.setdefault("_forward_programs", _Kept())
    hit = kept.get(kind)
    same = hit is not None and len(hit[0]) == len(parts) and all(a is b for a, b in zip(hit[0], parts, strict=True))
    if hit is None or not same or hit[1] != request:
        hit = kept[kind] = (parts, request, ForwardProgram(model, ops, request, with_loss))
    return hit[2]
