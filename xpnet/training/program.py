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

from ..backend import _cublas

if TYPE_CHECKING:
    from ..backend import Ops
    from .step import TrainStep
    from .trainer import Trainer

Array = Any
JitRequest = bool | str


def check_jit_compile(value: Any) -> JitRequest:
    """compile's `jit_compile`: "auto", True or False, else a clear error."""
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f'jit_compile must be "auto", True or False, received {value!r}')


# What a captured step may contain: the classes whose step code the stand-in's capture checks
# (tests/test_program.py) found free of host reads and of temporaries a graph would lose. A class
# joins the list with such a test; a subclass is not on it (it may override anything).
CAPTURABLE_LAYERS = frozenset(
    {"Dense", "Dropout", "Activation", "BatchNormalization", "Conv2D", "MaxPooling2D", "Flatten", "Add"}
)
CAPTURABLE_ACTIVATIONS = frozenset({"relu", "sigmoid", "tanh", "softmax", "linear"})
CAPTURABLE_LOSSES = frozenset({"SparseCategoricalCrossentropy", "CategoricalCrossentropy"})
CAPTURABLE_METRICS = frozenset({"SparseCategoricalAccuracy"})
CAPTURABLE_OPTIMIZERS = frozenset({"SGD", "Adam", "RMSprop"})


def _own(obj: Any, names: frozenset[str]) -> bool:
    cls = type(obj)
    return cls.__name__ in names and cls.__module__.startswith("xpnet.")


def capture_obstacle(model: Trainer, ops: Ops) -> str | None:
    """Why the model's training step cannot be captured as a CUDA graph, or None when it can."""
    if getattr(ops, "name", "") != "cupy":
        return f"the {ops.describe()} backend runs the step eagerly (CUDA graphs are a CuPy feature)"
    if model.comm.size > 1:
        return f"data-parallel training over {model.comm.size} ranks exchanges gradients between steps"
    problem = model_obstacle(model, with_loss=True)
    if problem is not None:
        return problem
    opt = model.optimizer
    if opt is None or not _own(opt, CAPTURABLE_OPTIMIZERS):
        return f"the optimizer {type(opt).__name__} is not among those checked for capture"
    if opt.schedule is not None:
        return "a learning-rate schedule is not yet checked for capture"
    return None


def model_obstacle(model: Trainer, with_loss: bool) -> str | None:
    """Why the model's layers (and with_loss: its losses, metrics and penalties) keep a step from capture."""
    if not model.single_output:
        return "a model with several outputs is not yet checked for capture"
    from ..backend.base import builtin_name

    for layer in model.layers:
        if not _own(layer, CAPTURABLE_LAYERS):
            return f"layer {layer.name!r} ({type(layer).__name__}) is not among the layers checked for capture"
        act = layer.activation
        if act is not None and builtin_name(act) not in CAPTURABLE_ACTIVATIONS:
            return f"layer {layer.name!r} uses the activation {act.name!r}, not among those checked for capture"
    if not with_loss:
        return None
    for loss, fused in zip(model.compiled_losses, model.fused_outputs, strict=True):
        if not _own(loss, CAPTURABLE_LOSSES) or not fused:
            return f"the loss {loss.name!r} (on a softmax output only: {fused}) is not checked for capture"
    for m in [*model.metrics, *model.weighted_metrics]:
        if not _own(m, CAPTURABLE_METRICS):
            return f"the metric {m.name!r} is not among those checked for capture"
    if model.store.regularized():
        return "weight penalties (regularizers) are not yet checked for capture"
    return None


def capture_decision(request: JitRequest, obstacle: str | None, what: str, unit: str) -> tuple[bool, str]:
    """(captures, the reason in words) for `what` ("the training step"), run once per `unit` ("step").

    jit_compile=True with an obstacle raises a ValueError naming it."""
    if request is True and obstacle is not None:
        raise ValueError(f"compile(jit_compile=True): {what} cannot be captured: {obstacle}")
    if request is False:
        return False, f"jit_compile=False: every {unit} runs eagerly"
    if obstacle is not None:
        return False, f"eager: {obstacle}"
    return True, f"captured: one CUDA graph per batch shape, after one eager warm-up {unit}"


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
def _recording(ops: Ops, rec: _Recorder) -> Iterator[None]:
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
        obstacle = None if request is False else capture_obstacle(model, self.ops)
        self.captures, self.reason = capture_decision(request, obstacle, "the training step", "step")
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
        """One line: captured or eager, and why."""
        shapes = ", ".join(f"{k[0]} rows" for k in self._graphs)
        return self.reason + (f" (graphs for {shapes})" if shapes else "")

    def __repr__(self) -> str:
        return f"StepProgram({'captured' if self.captures else 'eager'}, graphs={len(self._graphs)})"

    def reset(self) -> None:
        """Drop the graphs: a new fit gathers into new batch buffers."""
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
    return batch if not running else [u + v for u, v in zip(running, batch, strict=True)]
