"""A custom layer's backward: the replay of the tape its training forward recorded (layers/custom.py).

Weight gradients go to each owner's gradient sink, as a built-in layer's do: a weight read by one
op that has a route to the sink (x @ W, u + b) hands its gradient over from inside the replay, the
others once it is over. A built-in sublayer called inside `call` is recorded as one op whose VJP is
its own backward (`record_builtin`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol

from ..ops import SINK_ROUTES
from ..ops.core import unwrap
from ..params import AccumulatingSink, GradientSink, Shape
from ..params import Layer as WeightOwner
from ..tape import Tape, Tensor
from ..variables import Variable

Array = Any


class Layer(WeightOwner, Protocol):
    """What the custom-layer machinery uses of a layer (`xpnet.layers.Layer` has it all)."""

    keras_call: ClassVar[bool]
    multi_input: ClassVar[bool]
    activation: Any
    input_shape: Shape | None
    output_shape: Shape | None

    @property
    def built(self) -> bool: ...

    @property
    def preactivation(self) -> Array | None: ...

    @preactivation.setter
    def preactivation(self, u: Array) -> None: ...

    def build(self, input_shape: Any) -> Any: ...

    def build_for(self, feature_shape: Any) -> Shape: ...

    def compute_output_shape(self, input_shape: Shape) -> Shape: ...

    def forward(self, x: Array, training: bool = False) -> Array: ...

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None: ...


# the seed ∂L/∂(added loss) while a training step runs backward (None outside a step)
_loss_seed: contextvars.ContextVar[Any] = contextvars.ContextVar("xpnet_added_loss_seed", default=None)


@contextmanager
def added_loss_seed(seed: Any) -> Iterator[None]:
    """While the block runs backward, added losses are seeded with `seed` (the step's scale / batch × rows)."""
    token = _loss_seed.set(seed)
    try:
        yield
    finally:
        _loss_seed.reset(token)


def backward(layer: Layer, dy: Array, need_input_grad: bool) -> Any:
    """Replay the layer's tape from ∂L/∂output (and the seed of its added losses); weight gradients go to
    each owner's sink, and ∂L/∂input (a list with several inputs) is returned when needed.

    A weight read by one op that has a route to the sink (x @ W, u + b) hands its gradient to the sink
    as the built-in Dense does (`matmul_t`, `column_sum`: in-place SGD where the sink applies it), from
    inside the replay; the others get theirs with `put` once the replay is over.
    """
    tape, leaves, out = layer.__dict__["_xp_tape"]
    layer.__dict__["_xp_tape"] = None
    many = isinstance(leaves, list)
    ins = leaves if many else [leaves]
    seeds: list[tuple[Any, Any]] = [(out, dy)]
    seed = _loss_seed.get()
    if seed is not None:
        seeds += [(v, seed) for v in tape.added_losses]
    after, routed = _sink_routes(tape)
    weights = [(var, t) for var, t in tape.leaves.values() if id(t) not in routed]
    wanted = (ins if need_input_grad else []) + [t for _, t in weights]
    deferred = _defer_builtins(tape, layer.sink)
    try:
        grads = tape.backward(seeds, wanted, after)
    finally:
        for sub, own in deferred:
            sub.sink = own
    k = len(ins) if need_input_grad else 0
    _put_weight_grads(tape, weights, grads[k:])
    _apply_deferred(tape, deferred)
    for var, ran in routed.values():
        if not ran and var.layer.sink is not None:  # the route's op got no gradient this step: 0, not the last one
            var.layer.sink.put(var.layer, var.name, 0.0)
    if not need_input_grad:
        return None
    dx = [g if g is not None else tape.xp.zeros_like(t.data) for g, t in zip(grads[:k], ins, strict=True)]
    return dx if many else dx[0]


def _apply_deferred(tape: Tape, deferred: list[tuple[Any, Any]]) -> None:
    """Hand the gradients that deferred built-in sublayers left in the buffer to their own sinks."""
    wrote = tape.__dict__.get("builtin_backward", set())
    for sub, own in deferred:
        if id(sub) in wrote and own is not None:
            for name, g in sub.grads.items():
                own.put(sub, name, g)


def _sink_routes(tape: Tape) -> tuple[dict[int, Any], dict[int, list[Any]]]:
    """The weights read by exactly one op that has a route to the sink (`ops.SINK_ROUTES`).

    Returns (node id -> function of the node's ∂L/∂output that hands the gradient over, leaf id ->
    [Variable, whether the route ran]). A built-in sublayer's weights keep their own backward's way.
    """
    weights = {id(t): var for var, t in tape.leaves.values() if id(var.layer) not in tape.builtin_layers}
    uses: dict[int, Any] = {}
    for node in tape.nodes:
        for i, p in enumerate(node.parents):
            k = id(p)
            if k in weights:
                uses[k] = (node, i) if k not in uses else None
    after: dict[int, Any] = {}
    routed: dict[int, list[Any]] = {}
    for k, use in uses.items():
        var = weights[k]
        route = SINK_ROUTES.get(use[0].op) if use is not None else None
        sink = var.layer.sink
        hand = route(sink, var.layer, var.name, *use) if route is not None and sink is not None else None
        if hand is None:
            continue
        done = routed[k] = [var, False]
        after[id(use[0])] = _then(after.get(id(use[0])), hand, done)
    return after, routed


def _then(first: Any, hand: Any, done: list[Any]) -> Any:
    """A node's hand-over: `first` (another weight of the same op, or None), then `hand`, marking it done."""

    def run(g: Array) -> None:
        if first is not None:
            first(g)
        hand(g)
        done[1] = True

    return run


def _put_weight_grads(tape: Tape, weights: list[tuple[Variable, Tensor]], grads: list[Any]) -> None:
    # built-in sublayers whose own backward ran in this replay: they wrote their share of their weights' gradients
    wrote = tape.__dict__.get("builtin_backward", set())
    for (var, _), g in zip(weights, grads, strict=True):
        owner = var.layer
        sink = owner.sink
        if sink is None:
            continue
        if id(owner) in wrote:  # the weight was also read by ops (tied weights): add this share
            if g is not None:
                assert owner.ops is not None
                (sink if isinstance(sink, AccumulatingSink) else AccumulatingSink(owner.ops)).put(owner, var.name, g)
            continue
        # a weight this step did not reach gets 0, not the previous step's gradient
        sink.put(owner, var.name, g if g is not None else 0.0)


def _defer_builtins(tape: Tape, sink: Any) -> list[tuple[Any, Any]]:
    """With a sink that applies updates (in-place SGD), built-in sublayers write their gradients into the
    buffer during the replay, and `backward` applies them after it: ops recorded before such a sublayer's
    call may still read its weights in their VJPs (tied weights), which must hold the step's old values.
    Returns [(sublayer, its own sink)] to restore and apply, empty when nothing is deferred."""
    if sink is None or not sink.applies_update or not tape.builtin_layers:
        return []
    subs = list(tape.builtin_layers.values())
    deferred = [(sub, sub.sink) for sub in subs]
    plain = GradientSink(sink.ops)
    for sub in subs:
        sub.sink = plain
    return deferred


def record_builtin(layer: Layer, tape: Tape, x: Any, training: bool) -> Tensor:
    """A built-in layer inside a recording: one op, its VJP the layer's own backward."""
    many = isinstance(x, list)
    parents = tuple(x) if many else (x,)
    data = [unwrap(p) for p in parents]
    out = layer.forward(data if many else data[0], training)
    after = dict(vars(layer))  # this call's caches: the layer may be called again before backward
    calls = tape.__dict__.setdefault("builtin_backward", set())

    def vjp(g: Array, needs: tuple[bool, ...]) -> Any:
        state = vars(layer)
        current = dict(state)
        state.update(after)
        sink = layer.sink = current.get("sink")  # the sink of this replay (`_defer_builtins`), not the forward's
        # the first backward of this layer in the replay writes its gradients, later ones add to them
        if id(layer) in calls and sink is not None and not isinstance(sink, AccumulatingSink):
            assert layer.ops is not None
            layer.sink = AccumulatingSink(layer.ops)
        calls.add(id(layer))
        try:
            dx = layer.backward(g, any(needs))
        finally:
            state.clear()
            state.update(current)
            layer.sink = sink
        return list(dx or [None] * len(parents)) if many else [dx]

    node = tape.record(Tensor(out, parents, vjp))
    tape.builtin_layers[id(layer)] = layer
    if layer.grads:
        tape.with_weights.add(id(node))
    return node
