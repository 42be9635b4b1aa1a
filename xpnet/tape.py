"""Reverse-mode differentiation of forward code written with `xpnet.ops`: the tape.

While a custom layer, loss or activation runs inside a training step, its inputs and weights
are `Tensor`s and a `Tape` is recording: each op of `xpnet.ops` that receives a Tensor wraps
its result in a new Tensor that remembers its parents and its vector-Jacobian product, and
appends it to the tape. `Tape.backward` replays the tape in reverse, handing each node's
∂L/∂output to its VJP and adding up what arrives at its parents. Leaves (inputs, weights) are
Tensors that no op made; their gradients are what backward returns.

Outside a recording nothing of this exists: the ops compute on plain arrays and return them.
Every array stays on the device: no op or VJP reads a value back to the host.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

Array = Any
# vjp(g, needs) -> one gradient (or None) per input: g is ∂L/∂output, needs[i] says whether input i wants one
VJP = Callable[[Array, tuple[bool, ...]], Sequence[Array | None]]


class Tensor:
    """An array inside a recording: `data` (the backend array), and how it was made (`parents`, `vjp`).

    Python operators (+, -, *, /, @, **, unary -, [basic index]) run the matching `xpnet.ops`
    function, so `ops.matmul(x, w) + b` is recorded as two ops; <, <=, >, >= give plain boolean
    arrays (conditions for `ops.where`, which carry no gradient).
    """

    # NumPy and CuPy arrays hand `array + tensor` to Tensor.__radd__ instead of converting it
    __array_ufunc__ = None
    __array_priority__ = 1000.0
    # a step makes a few Tensors per op: slots keep that cheap
    __slots__ = ("data", "op", "parents", "vjp")

    def __init__(
        self, data: Array, parents: tuple[Any, ...] = (), vjp: VJP | None = None, op: Callable[..., Any] | None = None
    ) -> None:
        self.data = data
        self.parents = parents
        self.vjp = vjp
        # the xpnet.ops function that made it (None for leaves): what a weight's gradient route looks up
        self.op = op

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return int(self.data.ndim)

    @property
    def T(self) -> Any:
        return OPERATORS["transpose"](self)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __add__(self, o: Any) -> Any:
        return OPERATORS["add"](self, o)

    def __radd__(self, o: Any) -> Any:
        return OPERATORS["add"](o, self)

    def __sub__(self, o: Any) -> Any:
        return OPERATORS["subtract"](self, o)

    def __rsub__(self, o: Any) -> Any:
        return OPERATORS["subtract"](o, self)

    def __mul__(self, o: Any) -> Any:
        return OPERATORS["multiply"](self, o)

    def __rmul__(self, o: Any) -> Any:
        return OPERATORS["multiply"](o, self)

    def __truediv__(self, o: Any) -> Any:
        return OPERATORS["divide"](self, o)

    def __rtruediv__(self, o: Any) -> Any:
        return OPERATORS["divide"](o, self)

    def __matmul__(self, o: Any) -> Any:
        return OPERATORS["matmul"](self, o)

    def __rmatmul__(self, o: Any) -> Any:
        return OPERATORS["matmul"](o, self)

    def __pow__(self, o: Any) -> Any:
        return OPERATORS["power"](self, o)

    def __rpow__(self, o: Any) -> Any:
        return OPERATORS["power"](o, self)

    def __neg__(self) -> Any:
        return OPERATORS["negative"](self)

    # comparisons give plain boolean arrays (no gradient), for ops.where(x > 0, x, 0.1 * x)
    def __gt__(self, o: Any) -> Any:
        return OPERATORS["greater"](self, o)

    def __ge__(self, o: Any) -> Any:
        return OPERATORS["greater_equal"](self, o)

    def __lt__(self, o: Any) -> Any:
        return OPERATORS["less"](self, o)

    def __le__(self, o: Any) -> Any:
        return OPERATORS["less_equal"](self, o)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Any:
        return OPERATORS["abs"](self)

    def __getitem__(self, key: Any) -> Any:
        return OPERATORS["getitem"](self, key)

    def __bool__(self) -> bool:
        raise TypeError(
            "the truth value of a recorded tensor would need a device-to-host read inside the training step; "
            "use ops.where(condition, a, b) instead of if/else on values"
        )

    def __repr__(self) -> str:
        kind = "leaf" if self.vjp is None else "node"
        return f"<Tensor {kind} shape={self.shape} dtype={str(self.dtype).split('.')[-1]}>"


# how an op applied to symbolic tensors (a model's Input, layer outputs) becomes a layer call: set by
# xpnet.layers.op_layer, which depends on the layers this module must not import
SYMBOLIC: dict[str, Callable[..., Any]] = {}

# the ops behind Tensor's operators, filled in by xpnet.ops when it loads (it imports this module)
OPERATORS: dict[str, Callable[..., Any]] = {}


class Tape:
    """The ops recorded while it was active, in the order they ran, on array namespace `xp`."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.nodes: list[Tensor] = []
        # nodes that must run backward whatever their inputs need: built-in layers handing weight gradients
        # to their sink from their own backward
        self.with_weights: set[int] = set()
        # the built-in layers recorded as one op each, by id (their backward writes their weights' gradients)
        self.builtin_layers: dict[int, Any] = {}
        # id of a weight's raw array (`self.dense.kernel`) -> its Variable: ops read it as that weight's leaf
        self.raw_weights: dict[int, Any] = {}
        # one leaf per weight, however often the code reads it: (layer id, weight name) -> (Variable, leaf)
        self.leaves: dict[tuple[int, str], tuple[Any, Tensor]] = {}
        # what the recorded code passed to `add_loss` (scalars that join the model's loss)
        self.added_losses: list[Any] = []

    def leaf(self, var: Any) -> Tensor:
        """The leaf standing for weight `var` (a `Variable`) in this recording."""
        key = var.key
        found = self.leaves.get(key)
        if found is None:
            found = self.leaves[key] = (var, Tensor(var.value))
        return found[1]

    def record(self, t: Tensor) -> Tensor:
        self.nodes.append(t)
        return t

    def backward(
        self,
        seeds: Sequence[tuple[Tensor, Any]],
        wanted: Sequence[Tensor],
        after: dict[int, Callable[[Array], None]] | None = None,
    ) -> list[Array | None]:
        """∂L/∂w for each of `wanted` (leaves), for L = Σ ⟨seed, output⟩ over (output, seed) in `seeds`.

        seed: an array shaped as its output, or a scalar (a 0-d array, a Python float).
        after: node id -> a function called with that node's ∂L/∂output once its VJP has run (a weight
        gradient handed straight to a sink, which may then change the weight: nothing reads it later).
        Returns one gradient per wanted leaf, None for a leaf that no seeded output depends on.
        Only the ops between the wanted leaves (or the `after` nodes) and the seeded outputs run their VJPs.
        """
        after = after or {}
        live = self._live(wanted, self.with_weights | after.keys() if after else self.with_weights)
        grads: dict[int, Array] = {}
        for out, seed in seeds:
            if isinstance(out, Tensor) and id(out) in live:
                if not hasattr(seed, "shape"):  # a Python number: a fill, not an upload
                    g = self.xp.full(out.shape, seed, dtype=out.dtype)
                else:
                    g = seed if tuple(seed.shape) == out.shape else self.xp.broadcast_to(seed, out.shape)
                _accumulate(grads, out, g)
        for node in reversed(self.nodes):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            parents = node.parents
            needs = tuple([id(p) in live for p in parents])  # a list inside: faster than a generator
            if True in needs or id(node) in self.with_weights:
                assert node.vjp is not None
                for p, need, pg in zip(parents, needs, node.vjp(g, needs), strict=True):
                    if need and pg is not None:
                        _accumulate(grads, p, pg)
            hook = after.get(id(node))
            if hook is not None:
                hook(g)
        return [grads.get(id(t)) for t in wanted]

    def _live(self, wanted: Sequence[Tensor], forced: Any) -> set[int]:
        """Ids of the tensors on a path from a wanted leaf or a `forced` node: the only VJPs worth running."""
        live = {id(t) for t in wanted}
        for node in self.nodes:
            k = id(node)
            if k in forced:
                live.add(k)
                continue
            for p in node.parents:
                if id(p) in live:
                    live.add(k)
                    break
        return live

    def __deepcopy__(self, memo: dict[int, Any]) -> Tape:
        # a copy of a layer (copy.deepcopy, gradcheck's twins) does not inherit a recording in progress
        return Tape(self.xp)

    def __repr__(self) -> str:
        return f"Tape({len(self.nodes)} ops)"


def _accumulate(grads: dict[int, Array], t: Any, g: Array) -> None:
    k = id(t)
    old = grads.get(k)
    grads[k] = g if old is None else old + g


_active: contextvars.ContextVar[Tape | None] = contextvars.ContextVar("xpnet_tape", default=None)


def active() -> Tape | None:
    """The tape recording now, or None (ops then compute plain arrays)."""
    return _active.get()


@contextmanager
def recording(tape: Tape | None) -> Iterator[Tape | None]:
    """Record every op on Tensors into `tape` inside the block (None: record nothing)."""
    token = _active.set(tape)
    try:
        yield tape
    finally:
        _active.reset(token)
