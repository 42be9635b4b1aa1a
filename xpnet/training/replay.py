"""The training step on NumPy recorded once and replayed: a flat list of bound calls on fixed buffers.

    tape:    one eager step with every top-level backend call kept (function, arguments, result)
    bind:    each call turned into a function of no arguments writing into the recorded result's
             memory (backend/fused_cpu.py), or, for a call no binder knows, re-run as recorded
             with its result copied into that memory
    check:   the first replay is compared bit for bit with an eager step from the same state
             (training/program.py), and only then trusted

The list holds every setting the step read as a constant (`settings_of`): a callback that
changes one makes the program record anew. The host counters the step's Python code moves
(the optimizer's t, the dropout counters) move beside each replay.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import metric_kernels
from .listing import is_array, listed, recording

if TYPE_CHECKING:
    from ..backend import Ops
    from .protocol import TrainableModel as Trainer
    from .step import TrainStep

Array = Any


class NotReplayable(Exception):
    """A recorded step that cannot be bound: it reads memory made outside the backend's calls."""


class Tape:
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


def rows(x: Any) -> int:
    return int((x[0] if isinstance(x, list) else x).shape[0])


def accumulate(running: list[Array], batch: list[Array]) -> list[Array]:
    if not running:
        return batch
    # on a device, one launch for all the sums
    fused = None if isinstance(running[0], np.ndarray) else metric_kernels.add_sums(running, batch)
    return fused if fused is not None else [u + v for u, v in zip(running, batch, strict=True)]


def root(a: Any) -> Any:
    """The array that owns a view's memory."""
    while isinstance(getattr(a, "base", None), type(a)):
        a = a.base
    return a


def state_of(model: Trainer, step: TrainStep | None, *more: Any) -> list[Any]:
    """Every array the step's objects (and `more` objects) hold between steps, each view's owner once: weights,
    gradients, moving statistics, optimizer slots and counters, layer counters and per-step values (DeviceScalar)."""
    from ..backend.base import DeviceScalar

    owners: list[Any] = [model.store, model.optimizer, step, *model.leaf_layers, *more]
    found: dict[int, Any] = {}
    for owner in owners:
        if owner is None:
            continue
        values = list(vars(owner).values())
        for v in list(values):
            if isinstance(v, dict):
                values += list(v.values())
        for v in values:
            a = v.array if isinstance(v, DeviceScalar) else v
            # a NumPy scalar (a setting a callback wrote, np.float32(1e-3)) is immutable, no memory to restore
            if is_array(a) and not isinstance(a, (type, np.generic)):
                found.setdefault(id(a), a)
    return list({id(r): r for r in map(root, found.values())}.values())


class CallList:
    """The calls of a tape bound to their recorded buffers, in order.

    known: ids of the arrays (owners of views) the calls may read besides each other's results: the
    model's state and the batch buffers. `bound` counts the calls on fixed buffers, `rerun` names the rest.
    """

    def __init__(self, ops: Ops, tape: Tape, known: set[int]) -> None:
        self.ops, self.known = ops, known
        self.bound = 0
        self.rerun: list[str] = []
        self.swap: dict[int, Any] = {}  # a NumPy scalar result → the 0-d buffer that holds it on replay
        self.cells: dict[int, list[Any]] = {}  # a result that is no array (a convolution's context) → its latest
        self.keep: list[Any] = []
        self.calls: list[Callable[[], object]] = [self._bind(*call) for call in tape.calls]
        # what `run` runs: a call bound as several C-level calls (`fused_cpu.Steps`) enters as those calls
        self.flat = _opened(self.calls)

    def _bind(self, name: str, f: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Any:
        args = tuple(self.swapped(a) for a in args)
        kwargs = {k: self.swapped(v) for k, v in kwargs.items()}
        self._check_reads(name, [*args, *kwargs.values()])
        result = self._hold(result)
        passed = [self.cells.get(id(a)) for a in args]
        # a call that makes a context object (a convolution's patches) may still be bound: its binder then
        # writes the recorded context's arrays in place; one that reads a context a re-run call makes may not
        run = None if any(passed) else self._bound(name, f, args, kwargs, result)
        if run is None:
            outs = result if isinstance(result, tuple) else (result,)
            made = [(k, [r]) for k, r in enumerate(outs) if _is_object(r)]  # a context: each re-run makes its own
            for _, cell in made:
                self.cells[id(cell[0])] = cell
            run = _rerun(f, args, kwargs, result, passed, made)
            self.rerun.append(name)
        else:
            self.bound += 1
        self.keep += [args, kwargs, result]
        return run

    def _bound(self, name: str, f: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Any:
        from ..backend import fused_conv, fused_cpu

        own = getattr(f, "__self__", None) is self.ops
        binder = (fused_cpu.BINDERS.get(name) or fused_conv.BINDERS.get(name)) if own else None
        return binder(self.ops, args, kwargs, result) if binder else fused_cpu.bind_xp(f, args, kwargs, result)

    def swapped(self, v: Any) -> Any:
        """A recorded value as the replay holds it: a NumPy scalar result becomes its 0-d buffer."""
        return self.swap.get(id(v), v) if isinstance(v, np.generic) else v

    def _check_reads(self, name: str, values: list[Any]) -> None:
        for a in values:
            for v in a if isinstance(a, (list, tuple)) else [a]:
                # a NumPy scalar left here is a constant, like a float: a setting (settings_of) or literal
                if is_array(v) and not isinstance(v, (type, np.generic)) and id(root(v)) not in self.known:
                    raise NotReplayable(f"{name} reads an array made outside the backend's calls")

    def _hold(self, result: Any) -> Any:
        """The result's memory as known; a NumPy scalar result swapped for a 0-d buffer the replay writes."""
        if isinstance(result, np.generic):
            scalar = result
            result = np.asarray(scalar).copy()
            self.swap[id(scalar)] = result
            self.keep.append(scalar)  # its id stays its own while the list is made
        for r in result if isinstance(result, tuple) else [result]:
            if isinstance(r, np.ndarray):
                self.known.add(id(root(r)))
        return result

    def run(self) -> None:
        for f in self.flat:
            f()


class Replay:
    """One training step as a flat list of bound calls on the buffers of the step it was recorded from.

    Before the list, the host counters the step's Python code moves (the optimizer's t); after it,
    the dropout counters; then the running sums [loss, *metric states].
    """

    def __init__(
        self,
        ops: Ops,
        model: Trainer,
        tape: Tape,
        held: list[Any],
        xb: Any,
        yb: Any,
        global_batch: int,
        batch: list[Any],
    ) -> None:
        """held: the memory the step's objects held before the recorded step (weights, counters, ...);
        batch: the recorded step's sums."""
        self.xb, self.yb, self.global_batch = xb, yb, global_batch
        self.xb_rows = rows(xb)
        self.verified = False
        self.held = held
        known = {id(a) for a in held} | {id(root(a)) for a in [*listed(xb), *listed(yb)]}
        self.list = CallList(ops, tape, known)
        self.batch = [self.list.swapped(b) for b in batch]
        if any(not isinstance(b, np.ndarray) or id(root(b)) not in known for b in self.batch):
            raise NotReplayable("the step's sums are not all results of its backend calls")
        self.sums = [np.empty_like(b) for b in self.batch]
        opt = model.optimizer
        assert opt is not None
        self.opt = opt
        self.before, self.after = _host_steps(model)
        self.flat = [*self.before, *self.list.flat, *self.after]  # what one replay runs, in order
        self.settings = settings_of(model)
        self.ops, self.backend = ops, backend_settings(ops)
        # what the recorded step left on its layers (a dropout mask, cached inputs): the recorded buffers,
        # which each replay rewrites, and so what the layers show after a replayed step
        self.left = [(layer, k, v) for layer in model.leaf_layers for k, v in vars(layer).items() if _is_buffer(v)]

    def show(self) -> None:
        """Point the layers' step-made attributes back at the recorded buffers (after an eager step)."""
        for layer, key, value in self.left:
            layer.__dict__[key] = value

    @property
    def calls(self) -> list[Any]:
        return self.list.calls

    @property
    def bound(self) -> int:
        return self.list.bound

    @property
    def rerun(self) -> list[str]:
        return self.list.rerun

    def current(self) -> bool:
        """False when a setting the list holds as a constant changed (a callback, a new `trainable`, a
        backend setting)."""
        return unchanged(self.settings, self.ops, self.backend)

    def fits(self, xb: Any, yb: Any, global_batch: int) -> bool:
        """Whether this batch lies in the recorded buffers, at the recorded shape (not the last partial batch)."""
        if global_batch != self.global_batch:
            return False
        if xb is self.xb and yb is self.yb:  # train_on_batch's own buffers, the ones recorded
            return True
        for new, old in ((xb, self.xb), (yb, self.yb)):
            for a, b in zip(listed(new), listed(old), strict=True):
                if a.shape != b.shape or a.base is not b.base or a.strides != b.strides:
                    return False
        return True

    def run(self, running: list[Array]) -> list[Array]:
        """One step: the host counters, the list, the running sums [loss, *metric states] in place."""
        # the optimizer's host count, moved here as `Optimizer.apply` moves it in an eager step (its device
        # twin t is the first entry of `before`): no call into the optimizer per replayed step
        self.opt._iterations += 1  # noqa: SLF001
        for f in self.flat:
            f()
        # the sums go back as fresh copies: a batch callback may read a step's logs after later steps
        sums = self.sums
        if running:
            for acc, r, b in zip(sums, running, self.batch, strict=True):
                np.add(r, b, out=acc)
        else:
            for acc, b in zip(sums, self.batch, strict=True):
                np.copyto(acc, b)
        return [acc.copy() for acc in sums]


def _host_steps(model: Trainer) -> tuple[list[Callable[[], object]], list[Callable[[], object]]]:
    """What the step's Python code moves outside the backend's calls: the optimizer's device count t, as
    `Optimizer.apply`'s `self._t += 1` (before the list), and each Dropout layer's `self._counter += 1`
    (after it). Its host count `iterations` moves in `Replay.run`."""
    from ..layers.dropout import Dropout

    opt = model.optimizer
    assert opt is not None
    before: list[Callable[[], object]] = [_advance(opt._t)]  # noqa: SLF001
    dropouts = [d for d in model.leaf_layers if isinstance(d, Dropout) and d.rate != 0.0]
    return before, [_advance(d._counter) for d in dropouts]  # noqa: SLF001


_MISSING = object()
_PER_STEP = frozenset({"_iterations", "row_offset", "_steps"})  # attributes the step or the loop moves


def backend_settings(ops: Ops) -> list[tuple[str, Any]]:
    """(name, value) of the backend's plain settings (`conv_patch_bytes`, `inference_rows`, ...): its methods
    read them to choose a path, so a recorded list is only good while they stay."""
    plain = (bool, int, float, str, type(None))
    # the names its class defines (set on the class or the instance): not counters of the instance's own
    names = [k for k in dir(type(ops)) if not k.startswith("__")]
    return [(k, v) for k in names if isinstance(v := getattr(ops, k, None), plain)]


def unchanged(settings: list[tuple[Any, str, Any]], ops: Ops, backend: list[tuple[str, Any]]) -> bool:
    """Whether every (owner, attribute, value) of `settings_of` and every backend setting is as recorded."""
    return all(owner.__dict__.get(key, _MISSING) is value for owner, key, value in settings) and all(
        getattr(ops, key, _MISSING) == value for key, value in backend
    )


def settings_of(model: Trainer) -> list[tuple[Any, str, Any]]:
    """(owner, attribute, value) of every plain setting of the optimizer and the layers, and of each
    layer's activation object: a recorded list holds them as constants, so a change (learning_rate,
    trainable, rate, a replaced activation) means record anew. The optimizer's state objects too (its
    slots, its device count t, its rate scalars): `build` makes new ones, which the list does not read."""
    from ..activations import Activation

    plain = (bool, int, float, str, np.generic, Activation)
    out = []
    opt = model.optimizer
    for owner in [opt, *model.leaf_layers]:
        if owner is None:
            continue
        for key, value in vars(owner).items():
            if key not in _PER_STEP and (value is None or isinstance(value, plain) or owner is opt):
                out.append((owner, key, value))
    return out


def _opened(calls: list[Callable[[], object]]) -> list[Callable[[], object]]:
    from ..backend.fused_cpu import Steps

    return [f for call in calls for f in (call if isinstance(call, Steps) else (call,))]


def _is_buffer(v: Any) -> bool:
    return isinstance(v, np.ndarray) and v.ndim > 0


def _advance(counter: Array) -> Callable[[], object]:
    """counter += 1 in place (a 0-d array), as one bound ufunc call."""
    return partial(np.add, counter, np.ones((), dtype=counter.dtype), out=counter)


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


def same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


class ForwardReplay:
    """An inference forward pass (predict's outputs, or evaluate's batch sums) as a list of bound calls:
    the inputs copied into buffers of its own, the list run, its outputs the recorded results' memory.

    Made by running `fn` once on those buffers (the recording); `verified` once a replay matched an
    eager run bit for bit (training/forward_program.py checks it).
    """

    def __init__(self, ops: Ops, model: Any, fn: Callable[..., list[Array]], inputs: list[Array]) -> None:
        self.inputs = [np.array(a, copy=True) for a in inputs]
        held = state_of(model, None, model)  # the model's own kept values too (the evaluation loss factor 1)
        known = {id(a) for a in held} | {id(root(a)) for a in self.inputs}
        tape = Tape()
        with recording(ops, tape):
            first = fn(*self.inputs)
        self.list = CallList(ops, tape, known)
        self.first = first  # the recording's own results: the eager answer for the batch it ran on
        self.out = [self.list.swapped(o) for o in first]
        if any(not isinstance(o, np.ndarray) or id(root(o)) not in known for o in self.out):
            raise NotReplayable("the forward pass's outputs are not all results of its backend calls")
        self.settings = settings_of(model)
        self.ops, self.backend = ops, backend_settings(ops)
        self.verified = False

    def current(self) -> bool:
        """False when a layer setting or a backend setting the list holds as a constant changed."""
        return unchanged(self.settings, self.ops, self.backend)

    def run(self, inputs: list[Array]) -> list[Array]:
        """The pass on `inputs`: the list's own output buffers, overwritten by the next run."""
        for buf, a in zip(self.inputs, inputs, strict=True):
            np.copyto(buf, a)
        self.list.run()
        return self.out
