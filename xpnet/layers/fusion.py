"""Exact rewrites of a layer sequence that the training step, evaluate and predict apply while they run.

`ReluAfterMaxPool`: a relu directly followed by max pooling is computed after the pool instead,
relu(maxpool(u)) rather than maxpool(relu(u)), on 4× fewer elements for 2×2 windows. Both are
monotone, so the values are the same bit for bit, and so is the backward pass: a window whose
maximum is positive sends its gradient to the same (first) argmax either way; one whose maximum
is ≤ 0 sends nothing either way (relu'(max) = 0 here, relu' = 0 at every pixel there). A NaN stays
NaN through both orders.

The rewrite is switched on only for the duration of those calls (`with plan:`), so a layer called
on its own, `trace`, `check_gradients`, the feature-map plots, `summary`, `get_weights` and saving
see the user's layers exactly as written.
"""

from __future__ import annotations

from collections import Counter
from types import TracebackType
from typing import Any

from ..activations import ReLU
from .activation import Activation
from .base import Layer
from .conv import Conv2D
from .pooling import MaxPooling2D


def _defers(layer: Layer) -> bool:
    """A built-in layer (not a subclass, no replaced methods) whose activation is the built-in relu."""
    return type(layer) in (Conv2D, Activation) and type(layer.activation) is ReLU and not layer.replaces_methods()


class ReluAfterMaxPool:
    """The (relu layer, max pool) pairs of `model`; `with plan:` moves each relu after its pool.

    A pair is a pool whose one input is the relu layer's output and nothing else reads that
    output (not another layer, not the model's outputs); neither layer is called twice. In a
    Sequential model these are neighbours; in a graph, neighbours in `layers` need not be.
    """

    def __init__(self, model: Any) -> None:
        nodes = list(getattr(model, "nodes", []))
        calls = Counter(id(n.layer) for n in nodes)
        readers = Counter(id(t) for n in nodes for t in n.inputs) + Counter(id(t) for t in model.outputs)
        self.pairs: list[tuple[Conv2D | Activation, MaxPooling2D]] = []
        for node in nodes:
            pool = node.layer
            if type(pool) is not MaxPooling2D or pool.replaces_methods() or calls[id(pool)] > 1:
                continue
            t = node.inputs[0]
            below = t.node.layer if t.node is not None and len(node.inputs) == 1 else None
            if (
                isinstance(below, (Conv2D, Activation))
                and _defers(below)
                and calls[id(below)] == 1
                and readers[id(t)] == 1
            ):
                self.pairs.append((below, pool))
        self.active: list[tuple[Conv2D | Activation, MaxPooling2D]] = []

    def __enter__(self) -> ReluAfterMaxPool:
        # a method replaced on an instance since the plan was made (a callback, a debugger) runs as written,
        # and a layer whose activation was changed since (layer.activation = ...) is no longer a relu
        self.active = [(a, b) for a, b in self.pairs if _defers(a) and not b.replaces_methods()]
        for a, b in self.active:
            a.activation_deferred = True
            b.relu_after = True
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        for a, b in self.active:
            a.activation_deferred = False
            b.relu_after = False

    def __repr__(self) -> str:
        return f"ReluAfterMaxPool({[(a.name, b.name) for a, b in self.pairs]})"
