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

On NumPy the same program records the step's backend calls and replays them as a flat list of
bound calls (training/replay.py), checked bit for bit against an eager step first. Either way the
first step of a fit is written down (training/listing.py): `print(model.step_program)`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import _cublas
from .capturable import JitRequest, capture_obstacle, replay_obstacle
from .listing import Recorder, listed, patched, recording
from .replay import NotReplayable, Replay, Tape, accumulate, rows, same_bits, state_of
from .threads import macs_per_sample

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

    def kept(_: str, f: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            r = f(*args, **kwargs)
            keep.append(r)
            return r

        return call

    with patched(ops, names, kept, _Keeping(ops.xp, keep)):
        yield


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


# Above this many multiply-adds per step, jit_compile="auto" runs the NumPy step eagerly: there the
# GEMMs dominate and the replay saved nothing measurable (B, 784-128-10 at batch 1000: 1e8, replay
# 0.87-1.05x eager over three runs), while its recording and bit-for-bit check cost about three
# eager steps per fit. A (batch 32: 8.5e6) and LeNet (batch 32: 1.3e7) replayed 1.1-1.3x faster.
REPLAY_MAX_MACS = 50_000_000


def _decide(model: Trainer, ops: Ops, request: JitRequest) -> tuple[bool, bool, str]:
    """(captures, replays, the reason in words) for the training step of `model` on `ops`."""
    on_numpy = getattr(ops, "name", "") == "numpy"
    obstacle = None if request is False else capture_obstacle(model, ops)
    if on_numpy and request is not False:
        obstacle = replay_obstacle(model, ops, request)
    if request is True and obstacle is not None:
        how = "recorded and replayed" if on_numpy else "captured"
        raise ValueError(f"compile(jit_compile=True): the training step cannot be {how}: {obstacle}")
    if request is False:
        return False, False, "jit_compile=False: every step runs eagerly"
    if obstacle is not None:
        return False, False, f"eager: {obstacle}"
    if on_numpy:
        reason = (
            "replayed: the step's NumPy calls recorded once (the second step), checked against an eager "
            "step, then run as a flat list on fixed buffers; sample-weighted steps (sample_weight, "
            "class_weight) run eagerly"
        )
        if request == "auto":
            reason += f', and with jit_compile="auto" steps of more than {REPLAY_MAX_MACS:.0e} multiply-adds'
        return False, True, reason
    return True, False, "captured: one CUDA graph per batch shape, after one eager warm-up step"


def _per_array(dtype: Any, count: int) -> list[Any]:
    return list(dtype) if isinstance(dtype, list) else [dtype] * count


def _as_given(v: Any, arrays: list[Any]) -> Any:
    """`arrays` in v's form: a list for a list, the one array for an array."""
    return arrays if isinstance(v, list) else arrays[0]


class StepProgram:
    """How `fit` runs the training step of one compiled model: captured (CuPy) or eager, and why.

    `run(xb, yb, global_batch, wb, running)` does one step on the batch already gathered into the
    fixed buffers and returns the new running sums [loss, *metric states] (device arrays).
    """

    def __init__(self, model: Trainer, step: TrainStep, request: JitRequest) -> None:
        assert model.ops is not None
        self.model, self.step, self.request = model, step, request
        self.ops: Ops = model.ops
        self.captures, self.replays, self.reason = _decide(model, self.ops, request)
        self._replay: Replay | None = None
        self.replayed = 0  # steps run from the list so far (a test reads it)
        self._work = macs_per_sample(model)  # multiply-adds per row: "auto" replays small steps only
        self.eager_why = ""  # why "auto" ran this fit's steps eagerly after all
        self._own_batches: dict[Any, tuple[Any, Any]] = {}  # train_on_batch's fixed buffers, per shape
        self._said = False
        # steady: the fit loop runs no batch hook this epoch, so nothing outside the step can change a setting
        # between steps; settled: the settings were found as recorded since the loop last let code run
        self.steady = self._settled = False
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
        rec = Recorder(self.model, xb, yb, wb)
        with recording(self.ops, rec):
            batch = self.step(xb, yb, global_batch, wb)
        self.listing = rec.lines
        return accumulate(running, batch)

    def explain(self) -> str:
        """One line: captured, replayed or eager, and why."""
        shapes = ", ".join(f"{k[0]} rows" for k in self._graphs)
        r = self._replay
        if r is not None and r.verified:
            shapes = f"{r.xb_rows} rows: {len(r.calls)} calls, {r.bound} on fixed buffers, {len(r.rerun)} re-run"
            return f"{self.reason}. The list: {shapes}"
        if self.replays and self.eager_why:
            return f"{self.reason}. Now: {self.eager_why}"
        return self.reason + (f" (graphs for {shapes})" if shapes else "")

    def __repr__(self) -> str:
        how = "captured" if self.captures else "replayed" if self.replays else "eager"
        return f"StepProgram({how}, graphs={len(self._graphs)})"

    def reset(self) -> None:
        """Drop the graphs and the NumPy list: a new fit gathers into new batch buffers."""
        self._replay = None
        self.eager_why = ""
        self.steady = self._settled = False
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
            key = (rows(xb), global_batch, wb is not None)
            out = self.record(xb, yb, global_batch, wb, running)
            if self.captures and wb is None:
                self._warm[key] = [(b.shape, b.dtype) for b in out]  # the running sums: the batch sums' shapes
            return out
        if self.replays and wb is None:
            return self._numpy_step(xb, yb, global_batch, running)
        if not self.captures or wb is not None:  # sample-weighted steps are not yet checked for capture
            # the loss kernel adds the running sums where it sums the batch's (`TrainStep.added_running`)
            batch = self.step(xb, yb, global_batch, wb, running or None)
            return batch if self.step.added_running else accumulate(running, batch)
        if self._graphs and self._settings() != self._captured_settings:
            # a callback changed a hyperparameter the graphs hold as a constant: record them again
            self._graphs.clear()
            self._warm.clear()
        key = (rows(xb), global_batch, wb is not None)
        g = self._graphs.get(key)
        if g is None:
            if key not in self._warm:
                batch = self.step(xb, yb, global_batch, wb)
                self._warm[key] = [(b.shape, b.dtype) for b in batch]
                return accumulate(running, batch)
            try:
                g = self._capture(xb, yb, global_batch, wb, self._warm[key])
            except NotImplementedError as e:  # CuPy's own cuBLAS wrappers, which refuse a capturing stream
                if self.request is True:
                    raise RuntimeError(f"jit_compile=True: the training step could not be captured: {e}") from e
                self.captures, self.reason = False, f"eager: the capture was refused ({e})"
                self.model.__dict__["_capture_refused"] = self.reason  # the plan then stops routing GEMMs
                self.say_once()
                return accumulate(running, self.step(xb, yb, global_batch, wb))
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

    def train_on_batch(self, xb: Any, yb: Any, global_batch: int, dtypes: tuple[Any, Any]) -> list[Array]:
        """`train_on_batch` on NumPy through the replay: the batch copied into this program's own fixed
        buffers (one pair, for the latest batch shape, so a loop of calls replays), then one step; its sums.

        xb, yb: checked host arrays (or lists of them, one per input and output); dtypes: the dtype x and
        y take on the device (for y None keeps the labels' own, a list has one per output), which the
        buffers have: the copy into them is the batch's upload.
        """
        plain = not isinstance(xb, list) and not isinstance(yb, list)  # one input, one output: no lists to walk
        if plain:
            given, want = [xb, yb], list(dtypes)
        else:
            given = [*listed(xb), *listed(yb)]
            want = [dtypes[0]] * len(listed(xb)) + _per_array(dtypes[1], len(listed(yb)))
        kinds = [a.dtype if d is None else np.dtype(d) for a, d in zip(given, want, strict=True)]
        key = tuple((a.shape, k) for a, k in zip(given, kinds, strict=True))
        held = self._own_batches.get(key)
        if held is None:
            # a new shape: the list (one at a time) is recorded anew on new buffers, so the old pair serves
            # nothing more; kept, a loop of ever new sizes would hold a copy of each
            self._own_batches.clear()
            copies = [np.array(a, dtype=k, order="C") for a, k in zip(given, kinds, strict=True)]
            nx = len(listed(xb))
            held = self._own_batches[key] = (
                (copies[0], copies[1]) if plain else (_as_given(xb, copies[:nx]), _as_given(yb, copies[nx:]))
            )
        else:
            buffers = [held[0], held[1]] if plain else [*listed(held[0]), *listed(held[1])]
            for dst, src in zip(buffers, given, strict=True):
                np.copyto(dst, src, casting="unsafe")  # as the upload's cast to the model's dtype
        r = self._replay
        if r is not None and (r.xb is not held[0] or r.yb is not held[1]):
            self._replay = None  # recorded on a fit's buffers or another shape's: record on these
        return self.run(held[0], held[1], global_batch, None, [])

    def _numpy_step(self, xb: Any, yb: Any, global_batch: int, running: list[Array]) -> list[Array]:
        """One step on NumPy: recorded (the first after the listing), checked (the next), then replayed;
        eager where the batch is not the recorded one's shape."""
        r = self._replay
        if r is not None and not self._settled and not r.current():  # a callback changed a setting: record anew
            r = self._replay = None
        if r is None and self.request == "auto" and rows(xb) * self._work > REPLAY_MAX_MACS:
            self.eager_why = (
                f"this fit's steps of {rows(xb)} rows ({rows(xb) * self._work:.1e} multiply-adds) run eagerly: "
                "their GEMMs dominate, the replay would save nothing"
            )
            return accumulate(running, self.step(xb, yb, global_batch, None))
        if r is None:
            tape = Tape()
            # η / batch for a batch size not seen yet is made outside the recording: memory the list reads
            self.step.factors(global_batch)
            self.prepare(global_batch)
            held = state_of(self.model, self.step)
            with recording(self.ops, tape):
                batch = self.step(xb, yb, global_batch, None)
            try:
                self._replay = Replay(self.ops, self.model, tape, held, xb, yb, global_batch, batch)
            except NotReplayable as e:
                self._give_up(str(e))
            return accumulate(running, batch)
        if not r.fits(xb, yb, global_batch):
            self._settled = False  # the eager step's Python code ran: look again before the next replay
            return accumulate(running, self.step(xb, yb, global_batch, None))
        if not r.verified:
            return self._check(r, xb, yb, global_batch, running)
        # the next step may skip the comparison of every setting while no hook runs between steps
        self._settled = self.steady
        self.replayed += 1
        # no `prepare`: r.current() found the optimizer's settings as recorded, so the rate and η / batch
        # the list reads are the ones written before it was recorded
        return r.run(running)

    def _check(self, r: Replay, xb: Any, yb: Any, global_batch: int, running: list[Array]) -> list[Array]:
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
        out = accumulate(running, self.step(xb, yb, global_batch, None))
        for a, b in zip([*state, *out], [*after, *replayed], strict=True):
            if np.asarray(a).shape != np.asarray(b).shape or not same_bits(a, b):
                self._give_up(f"a replayed step differed from the eager step (an array of shape {np.shape(a)})")
                return out
        r.verified = True
        r.show()
        return out

    def settle(self, steady: bool) -> None:
        """steady: until the next call, no code but the steps runs between steps (no batch hook, no user
        code), so the settings a replayed list holds need comparing only once; False compares every step."""
        self.steady, self._settled = steady, False  # settled only after the next comparison

    def _give_up(self, why: str) -> None:
        self.replays, self._replay = False, None
        self.reason = f"eager: {why}"
        if self.request is True:
            warnings.warn(f"jit_compile=True: the training step runs eagerly: {why}", UserWarning, stacklevel=4)

    def prepare(self, global_batch: int) -> None:
        """What the step's Python code writes to memory the list reads: a changed learning rate, η / batch, and
        the optimizer's slots a changed setting asks for (made before recording, not inside it)."""
        self.model.optimizer.add_missing_slots()  # type: ignore[union-attr]
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
