"""The training step recorded once and replayed: on CuPy, one CUDA graph per batch shape.

    first step at a batch shape: eager (the warm-up: every kernel is built, every buffer sized)
    second step: captured on a non-blocking stream (gather stays outside; forward, loss,
        backward, update and the running metric sums inside), then launched
    later steps: the batch is gathered into the fixed buffers, the graph is launched

`StepProgram` decides once per compiled model whether the step is captured and says why
(`explain()`): `compile(jit_compile=...)` asks, the backend, the data-parallel communicator and
the layers, losses, metrics and optimizer answer. A graph replays raw device addresses, so
every array the captured step creates is held by the program for the graph's life (`_Keeping`
retains the results of every backend call and array-namespace function made during the
capture), and every number that changes between steps is read from device memory (the
optimizer's t and learning rate, the dropout counters, the SGD factor). The host's own counters
(the optimizer's `iterations`) are advanced beside each launch. GEMMs inside the capture go
through the direct cuBLAS binding (`backend._cublas`), eager steps of the same fit too, so the
warm-up and the short last batch compute exactly as the graph does.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import _cublas, metric_kernels
from .capturable import JitRequest, capture_obstacle, replay_obstacle

if TYPE_CHECKING:
    from ..backend import Ops
    from .protocol import TrainableModel as Trainer
    from .step import TrainStep

Array = Any


def record(ops: Ops, run: Callable[[], list[Array]], sums: list[Array], keep: list[Any]) -> tuple[Any, Any, Any]:
    """Capture `run()` on a new non-blocking stream, adding its results into `sums` (when given) inside the
    graph; every array the capture makes goes into `keep`. Returns (graph, stream, run's results)."""
    cp = ops.xp
    stream = cp.cuda.Stream(non_blocking=True)
    with ops.activate(), stream:
        # relaxed: the memory pool may still grow (cudaMalloc) while the step is recorded
        stream.begin_capture(cp.cuda.runtime.streamCaptureModeRelaxed)
        try:
            with _retaining(ops, keep):
                out = run()
                for acc, b in zip(sums, out if sums else [], strict=True):
                    cp.add(acc, b, out=acc)
        except BaseException:
            with suppress(Exception):  # the capture is already invalid; the first error is the one to report
                stream.end_capture()
            raise
        graph = stream.end_capture()
    keep.append(out)
    return graph, stream, out


def load_sums(accumulators: list[Array], running: list[Array]) -> None:
    """Make a graph's accumulators hold `running` (outside the graph: zero where nothing ran yet)."""
    for acc, r in zip(accumulators, running or [None] * len(accumulators), strict=True):
        if r is None:
            acc.fill(0)
        else:
            acc[...] = r


class _Keeping:
    """The array namespace during capture: each array a function returns is kept for the graph's life."""

    def __init__(self, xp: Any, keep: list[Any]) -> None:
        self._xp, self._keep = xp, keep

    def __getattr__(self, name: str) -> Any:
        v = getattr(self._xp, name)
        if not callable(v) or isinstance(v, type) or inspect.ismodule(v):
            return v
        keep = self._keep

        def call(*args: Any, **kwargs: Any) -> Any:
            r = v(*args, **kwargs)
            keep.append(r)
            return r

        return call


@contextmanager
def _retaining(ops: Ops, keep: list[Any]) -> Iterator[None]:
    """Inside: every result of an `ops` method or of `ops.xp` is appended to `keep`."""
    names = [n for n, _ in inspect.getmembers(type(ops), inspect.isfunction) if not n.startswith("__")]
    saved_xp = ops.__dict__.get("xp")
    for name in names:
        bound = getattr(ops, name)

        def call(*args: Any, _f: Any = bound, **kwargs: Any) -> Any:
            r = _f(*args, **kwargs)
            keep.append(r)
            return r

        ops.__dict__[name] = call
    ops.__dict__["xp"] = _Keeping(ops.xp, keep)
    try:
        yield
    finally:
        for name in names:
            ops.__dict__.pop(name, None)
        if saved_xp is None:
            ops.__dict__.pop("xp", None)
        else:
            ops.__dict__["xp"] = saved_xp


class _Recorder:
    """Writes down the top-level backend calls of one step: `name  outputs ← inputs`, with shapes and dtypes.

    Arrays are named by their memory: the model's weights and gradients by layer and weight
    (`dense.kernel`, `∇dense.kernel`), the batch buffers `x`, `y`, `w`, the rest `t1`, `t2`, … in
    the order the step makes them.
    """

    def __init__(self, model: Trainer, xb: Any, yb: Any, wb: Any) -> None:
        self.lines: list[str] = []
        self.fixed: dict[Any, str] = {}  # memory that outlives the step
        self.temps: dict[Any, str] = {}  # the latest temporary at each address (freed memory is reused)
        self.count = 0
        self.depth = 0
        self.inputs: set[Any] = set()
        store, opt = model.store, model.optimizer
        named = [(store.params, "params"), (store.grads, "grads")]
        if opt is not None:
            named += [(a, f"{opt.name}.{k}") for k, a in opt.slots.items()]
        for layer in model.leaf_layers:
            named += [(a, f"{layer.name}.{k}") for k, a in layer.params.items()]
            named += [(a, f"∇{layer.name}.{k}") for k, a in layer.grads.items()]
        for label, v in (("x", xb), ("y", yb), ("w", wb)):
            named += [(a, label if not isinstance(v, list) else f"{label}{k}") for k, a in enumerate(_listed(v))]
        for a, name in named:
            if _is_array(a):
                self.fixed.setdefault(_where(a), name)
                if a.ndim == 2:  # its transpose, as backprop reads weights
                    self.fixed.setdefault(_where(a.T), name + "ᵀ")

    def describe(self, v: Any, new: bool = False) -> str:
        if isinstance(v, (list, tuple)):
            return ", ".join(self.describe(u, new) for u in v)
        if _is_array(v):
            key = _where(v)
            name = self.fixed.get(key)
            if name is None and new and key in self.inputs:  # written into an argument's memory
                name = self.temps.get(key)
            if name is None and new:
                self.count += 1
                name = self.temps[key] = f"t{self.count}"
            elif name is None:
                name = self.temps.get(key, "")
            return f"{name}[{','.join(map(str, v.shape))}] {_short(v.dtype)}"
        if isinstance(v, float):
            return f"{v:g}"
        if isinstance(v, (int, bool, str)) or v is None:
            return repr(v)
        return str(getattr(v, "name", type(v).__name__))

    def call(self, name: str, f: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            top = self.depth == 0
            if top:  # the arguments' names before the call, which may write into them
                ins = ", ".join(
                    [self.describe(a) for a in args] + [f"{k}={self.describe(v)}" for k, v in kwargs.items()]
                )
                self.inputs = {_where(a) for a in [*args, *kwargs.values()] if _is_array(a)}
            self.depth += 1
            try:
                r = f(*args, **kwargs)
            finally:
                self.depth -= 1
            if top:
                outs = self.describe(r, new=True) if r is not None else "(in place)"
                self.lines.append(f"{name:<22} {outs}  ←  {ins}")
            return r

        return run


def _is_array(v: Any) -> bool:
    # an array class (np.ndarray passed as an argument) has these names too, as descriptors
    return not isinstance(v, type) and hasattr(v, "shape") and hasattr(v, "dtype") and hasattr(v, "ndim")


def _listed(v: Any) -> list[Any]:
    return [a for a in (v if isinstance(v, list) else [v]) if a is not None]


def _where(a: Any) -> Any:
    """An array's memory as a key: its address, shape and dtype (views made anew each step match)."""
    data = getattr(a, "data", None)
    ptr = getattr(data, "ptr", None)
    if ptr is None:
        iface = getattr(a, "__array_interface__", None)
        ptr = iface["data"][0] if iface else id(a)
    return (int(ptr), tuple(a.shape), str(a.dtype))


def _short(dtype: Any) -> str:
    name = str(dtype).split(".")[-1]
    return {"float32": "f32", "float64": "f64", "int64": "i64", "int32": "i32", "uint32": "u32"}.get(name, name)


@contextmanager
def _recording(ops: Ops, rec: _Recorder | _Tape) -> Iterator[None]:
    """Inside: every top-level `ops` method and `ops.xp` function call is written down by `rec`."""
    names = [n for n, _ in inspect.getmembers(type(ops), inspect.isfunction) if not n.startswith("_")]
    names = [n for n in names if n not in ("activate", "describe", "info", "to_numpy", "is_native")]
    saved_xp = ops.__dict__.get("xp")
    xp = ops.xp
    for name in names:
        ops.__dict__[name] = rec.call(name, getattr(ops, name))

    class _Listed:
        def __getattr__(self, attr: str) -> Any:
            v = getattr(xp, attr)
            if not callable(v) or isinstance(v, type) or inspect.ismodule(v):
                return v
            return rec.call(attr, v)

    ops.__dict__["xp"] = _Listed()
    try:
        yield
    finally:
        for name in names:
            ops.__dict__.pop(name, None)
        if saved_xp is None:
            ops.__dict__.pop("xp", None)
        else:
            ops.__dict__["xp"] = saved_xp


class _Graph:
    """One captured step: the graph, its stream, and every buffer it touches beyond the model's own."""

    def __init__(
        self, graph: Any, stream: Any, keep: list[Any], sums: list[Array], nodes: int | None, current: Any
    ) -> None:
        self.graph, self.stream, self.keep, self.sums, self.nodes = graph, stream, keep, sums, nodes
        self.current = current

    def launch(self) -> None:
        # on the stream the eager work uses, not the capture's own: the gather before it and the reads
        # of the sums after it are then ordered with it
        self.graph.launch(self.current())


class StepProgram:
    """How `fit` runs the training step of one compiled model: captured (CuPy) or eager, and why.

    `run(xb, yb, global_batch, wb, running)` does one step on the batch already gathered into the
    fixed buffers and returns the new running sums [loss, *metric states] (device arrays).
    """

    def __init__(self, model: Trainer, step: TrainStep, request: JitRequest) -> None:
        assert model.ops is not None
        self.model, self.step, self.request = model, step, request
        self.ops: Ops = model.ops
        on_numpy = getattr(self.ops, "name", "") == "numpy"
        obstacle = None if request is False else capture_obstacle(model, self.ops)
        if on_numpy and request is not False:
            obstacle = replay_obstacle(model, self.ops, request)
        if request is True and obstacle is not None:
            how = "recorded and replayed" if on_numpy else "captured"
            raise ValueError(f"compile(jit_compile=True): the training step cannot be {how}: {obstacle}")
        self.captures = request is not False and obstacle is None and not on_numpy
        self.replays = request is not False and obstacle is None and on_numpy
        if request is False:
            self.reason = "jit_compile=False: every step runs eagerly"
        elif obstacle is not None:
            self.reason = f"eager: {obstacle}"
        elif self.replays:
            self.reason = (
                "replayed: the step's NumPy calls recorded once (the second step), checked against an eager "
                "step, then run as a flat list on fixed buffers; sample-weighted steps (sample_weight, "
                "class_weight) run eagerly"
            )
        else:
            self.reason = "captured: one CUDA graph per batch shape, after one eager warm-up step"
        self._replay: _Replay | None = None
        self.replayed = 0  # steps run from the list so far (a test reads it)
        self._said = False
        if self.captures:
            with self.routing():  # plain SGD may then update inside the weight-gradient GEMM
                step.sink = step.choose_sink()
        self._warm: dict[tuple[Any, ...], list[tuple[Any, Any]]] = {}  # shapes and dtypes of the warm-up's sums
        self._graphs: dict[tuple[Any, ...], _Graph] = {}
        self.launches = 0  # graph launches so far (a test reads it)
        self._captured_settings: dict[str, Any] = {}
        self.listing: list[str] = []  # one step's backend calls, written down by the first step of a fit
        self._listed = False

    def __str__(self) -> str:
        head = f"StepProgram: {self.explain()}"
        if not self.listing:
            return head + "\n  (no step recorded yet: fit() writes down its first step)"
        return "\n".join([head, *(f"  {line}" for line in self.listing)])

    def record(self, xb: Any, yb: Any, global_batch: int, wb: Array | None, running: list[Array]) -> list[Array]:
        """One eager step, written down call by call into `listing` (what `print(program)` shows)."""
        rec = _Recorder(self.model, xb, yb, wb)
        with _recording(self.ops, rec):
            batch = self.step(xb, yb, global_batch, wb)
        self.listing = rec.lines
        return _accumulate(running, batch)

    def explain(self) -> str:
        """One line: captured, replayed or eager, and why."""
        shapes = ", ".join(f"{k[0]} rows" for k in self._graphs)
        r = self._replay
        if r is not None and r.verified:
            shapes = f"{r.xb_rows} rows: {len(r.calls)} calls, {r.bound} on fixed buffers, {len(r.rerun)} re-run"
            return f"{self.reason}. The list: {shapes}"
        return self.reason + (f" (graphs for {shapes})" if shapes else "")

    def __repr__(self) -> str:
        how = "captured" if self.captures else "replayed" if self.replays else "eager"
        return f"StepProgram({how}, graphs={len(self._graphs)})"

    def reset(self) -> None:
        """Drop the graphs and the NumPy list: a new fit gathers into new batch buffers."""
        self._replay = None
        self._graphs.clear()
        self._warm.clear()
        self._listed = False
        if not self.captures:  # a refused capture's routed sink must not outlive the fit that routed GEMMs
            self.step.sink = self.step.choose_sink()

    def say_once(self) -> None:
        """With jit_compile="auto" on CuPy, say once why the step is not captured."""
        if self._said or self.captures or self.request is False or getattr(self.ops, "name", "") != "cupy":
            return
        self._said = True
        warnings.warn(f"the training step is not captured as a CUDA graph: {self.reason}", UserWarning, stacklevel=3)

    def routing(self) -> Any:
        """The GEMM route every step of this fit uses (the graph's own, when it captures)."""
        return _cublas.routed(self.ops) if self.captures else nullcontext()

    def run(self, xb: Any, yb: Any, global_batch: int, wb: Array | None, running: list[Array]) -> list[Array]:
        if not self._listed:  # the first step of a fit runs eagerly anyway (the graph's warm-up)
            self._listed = True
            key = (_rows(xb), global_batch, wb is not None)
            out = self.record(xb, yb, global_batch, wb, running)
            if self.captures and wb is None:
                self._warm[key] = [(b.shape, b.dtype) for b in out]  # the running sums: the batch sums' shapes
            return out
        if self.replays and wb is None:
            return self._numpy_step(xb, yb, global_batch, running)
        if not self.captures or wb is not None:  # sample-weighted steps are not yet checked for capture
            return _accumulate(running, self.step(xb, yb, global_batch, wb))
        if self._graphs and self._settings() != self._captured_settings:
            # a callback changed a hyperparameter the graphs hold as a constant: record them again
            self._graphs.clear()
            self._warm.clear()
        key = (_rows(xb), global_batch, wb is not None)
        g = self._graphs.get(key)
        if g is None:
            if key not in self._warm:
                batch = self.step(xb, yb, global_batch, wb)
                self._warm[key] = [(b.shape, b.dtype) for b in batch]
                return _accumulate(running, batch)
            try:
                g = self._capture(xb, yb, global_batch, wb, self._warm[key])
            except NotImplementedError as e:  # CuPy's own cuBLAS wrappers, which refuse a capturing stream
                if self.request is True:
                    raise RuntimeError(f"jit_compile=True: the training step could not be captured: {e}") from e
                self.captures, self.reason = False, f"eager: the capture was refused ({e})"
                self.model.__dict__["_capture_refused"] = self.reason  # the plan then stops routing GEMMs
                self.say_once()
                return _accumulate(running, self.step(xb, yb, global_batch, wb))
            self._graphs[key] = g
            self._captured_settings = self._settings()
            # the capture ran the step's host code once (the optimizer's host count moved): launch, nothing more
            self._load(g, running)
            g.launch()
            self.launches += 1
            return g.sums
        self._load(g, running)
        self._before_launch(global_batch)
        g.launch()
        self.launches += 1
        return g.sums

    def _numpy_step(self, xb: Any, yb: Any, global_batch: int, running: list[Array]) -> list[Array]:
        """One step on NumPy: recorded (the first after the listing), checked (the next), then replayed;
        eager where the batch is not the recorded one's shape."""
        r = self._replay
        if r is not None and not r.current():  # a callback changed a setting the list holds: record anew
            r = self._replay = None
        if r is None:
            tape = _Tape()
            held = list({id(a): a for a in map(_root, _state(self.model, self.step))}.values())
            with _recording(self.ops, tape):
                batch = self.step(xb, yb, global_batch, None)
            try:
                self._replay = _Replay(self, tape, held, xb, yb, global_batch, batch)
            except _NotReplayable as e:
                self._give_up(str(e))
            return _accumulate(running, batch)
        if not r.fits(xb, yb, global_batch):
            return _accumulate(running, self.step(xb, yb, global_batch, None))
        if not r.verified:
            return self._check(r, xb, yb, global_batch, running)
        self.replayed += 1
        return r.run(running)

    def _check(self, r: _Replay, xb: Any, yb: Any, global_batch: int, running: list[Array]) -> list[Array]:
        """Replay one step, then run it eagerly from the same state; keep the list only if both agree bit for bit."""
        state = r.held
        opt = self.model.optimizer
        assert opt is not None
        self.prepare(global_batch)  # its writes (and their host mirrors) before the snapshot, for both runs
        before, count = [a.copy() for a in state], opt.iterations
        replayed = r.run(running)
        after = [a.copy() for a in state]
        for a, b in zip(state, before, strict=True):
            a[...] = b
        opt.iterations = count
        out = _accumulate(running, self.step(xb, yb, global_batch, None))
        for a, b in zip([*state, *out], [*after, *replayed], strict=True):
            if np.asarray(a).shape != np.asarray(b).shape or not _same_bits(a, b):
                self._give_up(f"a replayed step differed from the eager step (an array of shape {np.shape(a)})")
                return out
        r.verified = True
        return out

    def _give_up(self, why: str) -> None:
        self.replays, self._replay = False, None
        self.reason = f"eager: {why}"
        if self.request is True:
            warnings.warn(f"jit_compile=True: the training step runs eagerly: {why}", UserWarning, stacklevel=4)

    def prepare(self, global_batch: int) -> None:
        """What the step's Python code writes to memory the list reads: a changed learning rate, η / batch."""
        self._sync_rate()
        self.step.refresh_factors(global_batch)

    def holds(self, running: list[Array]) -> bool:
        """Whether `running` is a graph's own accumulators (the next launch adds into them)."""
        return bool(running) and any(running is g.sums for g in self._graphs.values())

    def _load(self, g: _Graph, running: list[Array]) -> None:
        """Make the graph's accumulators hold `running` (outside the graph: zero at an epoch's start)."""
        if running is not g.sums:
            load_sums(g.sums, running)

    def _settings(self) -> dict[str, Any]:
        """The optimizer's settings a graph bakes in: all but a constant learning rate (read from the device)."""
        opt = self.model.optimizer
        assert opt is not None
        config = opt.get_config()
        if opt.schedule is None:
            config.pop("learning_rate", None)
        return config

    def _before_launch(self, global_batch: int) -> None:
        opt = self.model.optimizer
        assert opt is not None
        # what the step's Python code does on the host, which a launch skips: the host's mirror of
        # the device count (the graph advances t), and a constant rate a callback may have changed
        opt.count_replayed_update()
        self._sync_rate()
        self.step.refresh_factors(global_batch)

    def _sync_rate(self) -> None:
        """Write a changed constant learning rate to the device now, outside any capture: written inside
        one, the write would become part of the graph and put the old rate back at every launch."""
        opt = self.model.optimizer
        assert opt is not None
        if opt.schedule is None:
            opt.lr()
            opt.lr(dtype64=True)

    def _capture(self, xb: Any, yb: Any, global_batch: int, wb: Array | None, shapes: list[tuple[Any, Any]]) -> _Graph:
        ops = self.ops
        cp = ops.xp
        keep: list[Any] = [xb, yb, wb]
        # the accumulators exist before capture, shaped as the warm-up step's sums
        sums = [cp.zeros(shape, dtype=dt) for shape, dt in shapes]
        self._sync_rate()
        self.step.refresh_factors(global_batch)
        graph, stream, _ = record(ops, lambda: self.step(xb, yb, global_batch, wb), sums, keep)
        nodes = len(graph.nodes) if hasattr(graph, "nodes") else None
        return _Graph(graph, stream, keep, sums, nodes, cp.cuda.get_current_stream)


def _rows(x: Any) -> int:
    return int((x[0] if isinstance(x, list) else x).shape[0])


def _accumulate(running: list[Array], batch: list[Array]) -> list[Array]:
    if not running:
        return batch
    # on a device, one launch for all the sums
    fused = None if isinstance(running[0], np.ndarray) else metric_kernels.add_sums(running, batch)
    return fused if fused is not None else [u + v for u, v in zip(running, batch, strict=True)]


class _Tape:
    """Keeps the top-level backend calls of one step as (name, function, args, kwargs, result), to replay."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, tuple[Any, ...], dict[str, Any], Any]] = []
        self.depth = 0

    def call(self, name: str, f: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            self.depth += 1
            try:
                r = f(*args, **kwargs)
            finally:
                self.depth -= 1
            if self.depth == 0:
                self.calls.append((name, f, args, dict(kwargs), r))
            return r

        return run


def _root(a: Any) -> Any:
    """The array that owns a view's memory."""
    while isinstance(getattr(a, "base", None), type(a)):
        a = a.base
    return a


def _state(model: Trainer, step: TrainStep) -> list[Any]:
    """Every array the step's objects hold between steps: weights, gradients, moving statistics,
    optimizer slots and counters, layer counters and per-step values (DeviceScalar), cached tensors."""
    from ..backend.base import DeviceScalar

    owners: list[Any] = [model.store, model.optimizer, step, *model.leaf_layers]
    found: dict[int, Any] = {}
    for owner in owners:
        values = list(vars(owner).values())
        for v in list(values):
            if isinstance(v, dict):
                values += list(v.values())
        for v in values:
            a = v.array if isinstance(v, DeviceScalar) else v
            # a NumPy scalar (a setting a callback wrote, np.float32(1e-3)) is immutable, no memory to restore
            if _is_array(a) and not isinstance(a, (type, np.generic)):
                found.setdefault(id(a), a)
    return list(found.values())


class _Replay:
    """One training step as a flat list of bound calls on the buffers of the step it was recorded from.

    `calls` run in order: NumPy functions with `out=` their recorded result, the backend's fused
    step operations bound to scratch (backend/fused_cpu.py), and any other backend call re-run
    as recorded with its result copied into the recorded buffer. Before them the host counters
    the step's Python code moves (the optimizer's t); after them the dropout counters.
    """

    def __init__(
        self, program: StepProgram, tape: _Tape, held: list[Any], xb: Any, yb: Any, global_batch: int, batch: list[Any]
    ) -> None:
        """held: the memory the step's objects held before the recorded step (weights, counters, ...)."""
        from ..backend import fused_cpu
        from ..layers.dropout import Dropout

        model = program.model
        self.program, self.xb, self.yb, self.global_batch = program, xb, yb, global_batch
        self.xb_rows = _rows(xb)
        self.verified = False
        self.bound = 0  # calls bound to fixed buffers
        self.rerun: list[str] = []  # the calls re-run as recorded, their results copied
        self.held = held
        known = {id(a) for a in held} | {id(_root(a)) for a in [*_listed(xb), *_listed(yb)]}
        swap: dict[int, Any] = {}  # a NumPy scalar result → the 0-d buffer that holds it on replay
        cells: dict[int, list[Any]] = {}  # a result that is no array (a convolution's context) → its latest
        self.keep: list[Any] = []
        self.calls: list[Any] = []
        for name, f, args, kwargs, result in tape.calls:
            args = tuple(swap.get(id(a), a) if isinstance(a, np.generic) else a for a in args)
            kwargs = {k: swap.get(id(v), v) if isinstance(v, np.generic) else v for k, v in kwargs.items()}
            for a in [*args, *kwargs.values()]:
                for v in a if isinstance(a, (list, tuple)) else [a]:
                    # a NumPy scalar left here is a constant, like a float: a setting (_settings_of) or literal
                    if _is_array(v) and not isinstance(v, (type, np.generic)) and id(_root(v)) not in known:
                        raise _NotReplayable(f"{name} reads an array made outside the backend's calls")
            if isinstance(result, np.generic):
                scalar = result
                result = np.asarray(scalar).copy()
                swap[id(scalar)] = result
                self.keep.append(scalar)  # its id stays its own while the list is made
            for r in result if isinstance(result, tuple) else [result]:
                if isinstance(r, np.ndarray):
                    known.add(id(_root(r)))
            passed = [cells.get(id(a)) for a in args]
            outs = result if isinstance(result, tuple) else (result,)
            made = [(k, [r]) for k, r in enumerate(outs) if _is_object(r)]  # a context: each replay makes its own
            for _, cell in made:
                cells[id(cell[0])] = cell
            run = None
            if not made and not any(passed):
                binder = fused_cpu.BINDERS.get(name) if getattr(f, "__self__", None) is program.ops else None
                run = (
                    binder(program.ops, args, kwargs, result) if binder else fused_cpu.bind_xp(f, args, kwargs, result)
                )
            if run is None:
                run = _rerun(f, args, kwargs, result, passed, made)
                self.rerun.append(name)
            else:
                self.bound += 1
            self.keep += [args, kwargs, result]
            self.calls.append(run)
        self.batch = [swap.get(id(b), b) if isinstance(b, np.generic) else b for b in batch]
        if any(not isinstance(b, np.ndarray) or id(_root(b)) not in known for b in self.batch):
            raise _NotReplayable("the step's sums are not all results of its backend calls")
        self.sums = [np.empty_like(b) for b in self.batch]
        opt = model.optimizer
        assert opt is not None
        self.before = [lambda: setattr(opt, "iterations", opt.iterations + 1)]
        # Dropout.forward's `self._counter += 1`, Python outside the backend's calls
        dropouts = [d for d in model.leaf_layers if isinstance(d, Dropout) and d.rate != 0.0]
        self.after = [_advance(d._counter) for d in dropouts]  # noqa: SLF001
        self.settings = _settings_of(model)

    def current(self) -> bool:
        """False when a setting the list holds as a constant changed (a callback, a new `trainable`)."""
        return all(owner.__dict__.get(key, _MISSING) is value for owner, key, value in self.settings)

    def fits(self, xb: Any, yb: Any, global_batch: int) -> bool:
        """Whether this batch lies in the recorded buffers, at the recorded shape (not the last partial batch)."""
        if global_batch != self.global_batch:
            return False
        for new, old in ((xb, self.xb), (yb, self.yb)):
            for a, b in zip(_listed(new), _listed(old), strict=True):
                if a.shape != b.shape or a.base is not b.base or a.strides != b.strides:
                    return False
        return True

    def run(self, running: list[Array]) -> list[Array]:
        """One step: the host counters, the list, the running sums [loss, *metric states] in place."""
        self.program.prepare(self.global_batch)
        for f in self.before:
            f()
        for f in self.calls:
            f()
        for f in self.after:
            f()
        # the sums go back as fresh 0-d copies: a batch callback may read a step's logs after later steps
        sums, copy = self.sums, np.copy
        for acc, r, b in zip(sums, running or self.batch, self.batch, strict=True):
            if running:
                np.add(r, b, out=acc)
            else:
                np.copyto(acc, r)
        return [copy(acc) for acc in sums]


class _NotReplayable(Exception):
    pass


_MISSING = object()
_PER_STEP = frozenset({"_iterations", "row_offset", "_steps"})  # attributes the step or the loop moves


def _settings_of(model: Trainer) -> list[tuple[Any, str, Any]]:
    """(owner, attribute, value) of every plain setting of the optimizer and the layers, and of each
    layer's activation object: a recorded list holds them as constants, so a change (learning_rate,
    trainable, rate, a replaced activation) means record anew."""
    from ..activations import Activation

    plain = (bool, int, float, str, np.generic, Activation)
    out = []
    for owner in [model.optimizer, *model.leaf_layers]:
        for key, value in vars(owner).items():
            if key not in _PER_STEP and (value is None or isinstance(value, plain)):
                out.append((owner, key, value))
    return out


def _advance(counter: Array) -> Any:
    add = np.add
    one = np.ones((), dtype=counter.dtype)
    return lambda: add(counter, one, out=counter)


def _is_object(v: Any) -> bool:
    return v is not None and not isinstance(v, (np.ndarray, np.generic, bool, int, float, str, tuple, list))


def _rerun(
    f: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    result: Any,
    passed: list[list[Any] | None],
    made: list[tuple[int, list[Any]]],
) -> Any:
    """A recorded call no binder knows: run it as recorded, copy the arrays it returns into the recorded
    results. passed: per argument, the cell holding the current value of an object an earlier call made
    (None: the recorded argument); made: (position in the result, cell) of the objects this call makes."""
    copyto = np.copyto
    single = not isinstance(result, tuple)
    pairs = [(k, r) for k, r in enumerate((result,) if single else result) if isinstance(r, np.ndarray)]
    live = any(passed)

    def run() -> None:
        got = (
            f(*[a if c is None else c[0] for a, c in zip(args, passed, strict=True)], **kwargs)
            if live
            else f(*args, **kwargs)
        )
        outs = (got,) if single else got
        for k, r in pairs:
            if outs[k] is not r:
                copyto(r, outs[k])
        for k, cell in made:
            cell[0] = outs[k]

    return run


def _same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()
