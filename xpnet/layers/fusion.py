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

import itertools
from collections.abc import Sequence
from types import TracebackType

from ..backend.base import builtin_name
from .activation import Activation
from .base import Layer
from .conv import Conv2D
from .pooling import MaxPooling2D


def _defers(layer: Layer) -> bool:
    """A built-in layer (not a subclass, no replaced methods) whose activation is the built-in relu."""
    return (
        type(layer) in (Conv2D, Activation)
        and builtin_name(layer.activation) == "relu"
        and not layer.replaces_methods()
    )


class ReluAfterMaxPool:
    """The (relu layer, max pool) pairs of `layers`; `with plan:` moves each relu after its pool."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.pairs: list[tuple[Conv2D | Activation, MaxPooling2D]] = [
            (a, b)
            for a, b in itertools.pairwise(layers)
            if isinstance(a, (Conv2D, Activation))
            and _defers(a)
            and isinstance(b, MaxPooling2D)
            and type(b) is MaxPooling2D
            and not b.replaces_methods()
        ]
        self.active: list[tuple[Conv2D | Activation, MaxPooling2D]] = []

    def __enter__(self) -> ReluAfterMaxPool:
        # a method replaced on an instance since the plan was made (a callback, a debugger) runs as written
        self.active = [(a, b) for a, b in self.pairs if not (a.replaces_methods() or b.replaces_methods())]
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
