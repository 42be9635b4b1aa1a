"""Symbolic tensors and nodes: what `Dense(4)(x)` records when x is an `Input` (Keras's functional API).

A `KerasTensor` stands for a batch that a model will compute: its feature shape and the
`Node` (one call of one layer on its input tensors) that makes it. `xpnet.functional.Model`
walks these nodes from its outputs back to its inputs to find the graph it runs.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..params import Shape


class KerasTensor:
    """A symbolic batch: `shape` is (None, *features); `node` is the layer call that computes it (None for an Input).

    Python operators (+, -, *, /, @, **, unary -) and `xpnet.ops` functions on it record a call of
    an `OpLayer` (xpnet/layers/op_layer.py); merge layers (`Add()([a, b])`) name what they combine.
    """

    def _op(self, name: str, *args: Any) -> Any:
        from ..tape import OPERATORS

        return OPERATORS[name](*args)

    def __add__(self, o: Any) -> Any:
        return self._op("add", self, o)

    def __radd__(self, o: Any) -> Any:
        return self._op("add", o, self)

    def __sub__(self, o: Any) -> Any:
        return self._op("subtract", self, o)

    def __rsub__(self, o: Any) -> Any:
        return self._op("subtract", o, self)

    def __mul__(self, o: Any) -> Any:
        return self._op("multiply", self, o)

    def __rmul__(self, o: Any) -> Any:
        return self._op("multiply", o, self)

    def __truediv__(self, o: Any) -> Any:
        return self._op("divide", self, o)

    def __rtruediv__(self, o: Any) -> Any:
        return self._op("divide", o, self)

    def __matmul__(self, o: Any) -> Any:
        return self._op("matmul", self, o)

    def __pow__(self, o: Any) -> Any:
        return self._op("power", self, o)

    def __neg__(self) -> Any:
        return self._op("negative", self)

    def __init__(self, feature_shape: Shape, node: Node | None = None, name: str | None = None) -> None:
        self.feature_shape: Shape = tuple(feature_shape)
        self.node = node
        self.name = name

    @property
    def shape(self) -> tuple[int | None, ...]:
        return (None, *self.feature_shape)

    @property
    def dtype(self) -> str:
        """Layers compute in the model's float dtype ("float32" unless the model asks for float64)."""
        return "float32"

    def describe(self) -> str:
        """Where this tensor comes from, for error messages: "Dense 'dense_1'" or "Input 'input_layer'"."""
        if self.node is None:
            return f"Input {self.name!r}" if self.name else "an unnamed Input"
        layer = self.node.layer
        return f"{type(layer).__name__} {layer.name!r}" if layer.name else f"an unnamed {type(layer).__name__}"

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape} from {self.describe()}>"


_SERIAL = itertools.count()


class Node:
    """One call of `layer` on `inputs` (a list even for one input; `multi` when the layer took a list).

    `serial` orders the calls as they were made: Keras numbers a layer's calls that way (its
    node index, the k of "dense[k][0]"), and making order is also a topological order.
    """

    def __init__(self, layer: Any, inputs: list[KerasTensor], multi: bool, output_shape: Shape | None = None) -> None:
        """output_shape: the output's feature shape, default `layer.output_shape` (a nested model gives its own)."""
        self.layer, self.inputs, self.multi = layer, inputs, multi
        self.serial = next(_SERIAL)
        shape = layer.output_shape if output_shape is None else output_shape
        assert shape is not None
        self.output = KerasTensor(shape, self)
        # Keras's layer.input / layer.output read the layer's calls (a custom layer may skip Layer.__init__)
        if not hasattr(layer, "inbound_nodes"):
            layer.inbound_nodes = []
        layer.inbound_nodes.append(self)
        # False: the call runs in inference mode even while its model trains (a nested model's training=False)
        self.training: bool | None = None
        # a shared layer's attributes as this call's forward left them, for its backward (see functional.Model)
        self.cache: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Node {self.output.describe()} on [{', '.join(t.describe() for t in self.inputs)}]>"
