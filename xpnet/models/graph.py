"""The graph of a model: its layer calls between inputs and outputs, checked, ordered and indexed once.

`Graph.between(inputs, outputs)` walks the calls (`Node`s, xpnet/layers/node.py) from the outputs
back to the inputs, checks the graph (no cycle, every output reached from the inputs, every
input used), names unnamed layers, and orders the calls topologically. The result is plain data
that forward and backward read each step:

* `program`: one `Call` per layer call, in the order forward runs them, reading and writing
  tensors by slot (inputs first, then each call's output), so a step looks up arrays by index;
* `layers`: the layers in Keras's order (weights, configs and summaries follow it);
* `shared`: the layers called more than once. Each call of a shared layer keeps its own
  forward state in its `Node` (`node.cache`), and its backward runs on `call_view`, the layer as
  that call's forward left it, so one call's backward never reads another call's caches.
  The calls' weight gradients add up (`params.AccumulatingSink`); plain SGD then updates the
  weights after backprop, not inside it, since an earlier call's backward still needs them.

A graph knows layers and calls only; the weights, the backend and training are the `Model`'s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..layers.base import Layer, _as_shape
from ..layers.input import Input
from ..layers.node import KerasTensor, Node
from . import sharing


class Call:
    """One step of the forward program: call `index` runs `node` from the tensors in slots `inputs` into `output`."""

    __slots__ = ("index", "inputs", "node", "output", "shared", "trains")

    def __init__(self, index: int, node: Node, inputs: tuple[int, ...], output: int, shared: bool) -> None:
        self.index, self.node, self.inputs, self.output, self.shared = index, node, inputs, output, shared
        # False for a call made with training=False (Keras's base_model(x, training=False)): always inference
        self.trains = node.training is not False

    def __repr__(self) -> str:
        return f"<Call {self.index} {self.node.layer.name!r} slots {list(self.inputs)} -> {self.output}>"


# one step of a backward plan: the call, which of its inputs need ∂L/∂input, whether any does
BackwardStep = tuple[Call, list[bool], bool]


class Graph:
    """The calls from `inputs` to `outputs`, topologically ordered (`nodes`), with their slots and consumers.

    single_input / single_output: whether the model was given one tensor (not a list) for each,
    so that it takes and returns one array rather than a list of one.
    """

    def __init__(
        self,
        inputs: Sequence[KerasTensor],
        outputs: Sequence[KerasTensor],
        nodes: Sequence[Node],
        single_input: bool = True,
        single_output: bool = True,
    ) -> None:
        self.inputs, self.outputs, self.nodes = list(inputs), list(outputs), list(nodes)
        self.single_input, self.single_output = single_input, single_output
        calls: dict[int, int] = {}
        for node in self.nodes:
            calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
        self.shared = {k for k, v in calls.items() if v > 1}
        for node in self.nodes:
            if is_model(node.layer) and id(node.layer) in self.shared:
                raise ValueError(
                    f"model {node.layer.name!r} is called more than once in one model; a nested model may be "
                    "called once (call its layers on each input instead)"
                )
        self.layers = keras_layer_order(self.outputs, self.nodes)
        self.slots = {id(t): i for i, t in enumerate(self.inputs)}
        for node in self.nodes:
            self.slots[id(node.output)] = len(self.slots)
        self.consumers: dict[int, int] = {}
        for t in [*(t for node in self.nodes for t in node.inputs), *self.outputs]:
            self.consumers[id(t)] = self.consumers.get(id(t), 0) + 1
        self.program = [
            Call(
                k,
                node,
                tuple(self.slots[id(t)] for t in node.inputs),
                self.slots[id(node.output)],
                id(node.layer) in self.shared,
            )
            for k, node in enumerate(self.nodes)
        ]
        self.stops: dict[tuple[bool, ...], frozenset[int]] = {}

    @classmethod
    def between(
        cls, inputs: KerasTensor | Sequence[KerasTensor], outputs: KerasTensor | Sequence[KerasTensor]
    ) -> Graph:
        """Find, check and order the layer calls between `inputs` and `outputs`; names unnamed layers."""
        ins = [inputs] if isinstance(inputs, KerasTensor) else list(inputs)
        outs = [outputs] if isinstance(outputs, KerasTensor) else list(outputs)
        _check_endpoints(ins, outs)
        order, cycle, foreign = walk(outs)
        name_layers(ins, order)
        if cycle:
            raise ValueError(
                "the layer graph has a cycle: "
                + " -> ".join(n.output.describe() for n in cycle)
                + "; a layer's output cannot feed back into its own inputs"
            )
        _check_connected(ins, outs, foreign)
        return cls(ins, outs, order, isinstance(inputs, KerasTensor), isinstance(outputs, KerasTensor))

    @classmethod
    def traced(cls, call: Callable[[Any], Any], kind: str, name: str, input_shape: Any) -> Graph:
        """The graph a subclassed model's `call` records when it runs once on an Input of `input_shape`.

        kind, name: the model's class and name, for the errors.
        """
        if input_shape is None:
            raise ValueError(
                f"model {name!r} is subclassed and its input shape is unknown: "
                "call model.build((None, n_features)) or fit it first"
            )
        source = Input(_as_shape(input_shape), name="input_layer")
        out = call(source)
        if not isinstance(out, KerasTensor) and not (
            isinstance(out, (list, tuple)) and all(isinstance(t, KerasTensor) for t in out)
        ):
            raise TypeError(
                f"{kind}.call returned {type(out).__name__} when traced on an Input; it must return the "
                "outputs of layer calls (or xpnet.ops functions) on its inputs"
            )
        return cls.between(source, out if isinstance(out, KerasTensor) else list(out))

    def __deepcopy__(self, memo: dict[int, Any]) -> Graph:
        # the slots and consumers are keyed by id(): index the copied tensors and calls again
        return Graph(
            copy.deepcopy(self.inputs, memo),
            copy.deepcopy(self.outputs, memo),
            copy.deepcopy(self.nodes, memo),
            self.single_input,
            self.single_output,
        )

    def __repr__(self) -> str:
        return f"<Graph inputs={len(self.inputs)} outputs={len(self.outputs)} calls={len(self.nodes)}>"

    def stop_at(self, logits: Sequence[bool]) -> frozenset[int]:
        """The indices of the calls that stop at their pre-activation for this choice of fused outputs."""
        key = tuple(logits)
        stop = self.stops.get(key)
        if stop is None:
            ids = {id(t.node) for t, u in zip(self.outputs, key, strict=True) if u}
            stop = self.stops[key] = frozenset(c.index for c in self.program if id(c.node) in ids)
        return stop

    def backward_plan(self, input_grads: bool) -> list[BackwardStep]:
        """The calls backward runs, in reverse order: those with trained weights behind them.

        A tensor needs ∂L/∂t when trained weights (ones the store gives gradient views) lie behind
        it (or an input, with input_grads), so frozen layers and those below them skip backward.
        """
        needs = [input_grads] * len(self.inputs) + [False] * (len(self.slots) - len(self.inputs))
        plan = []
        for call in self.program:
            need_in = [needs[i] for i in call.inputs]
            needs[call.output] = has_trained_weights(call.node.layer) or any(need_in)
            if needs[call.output]:
                plan.append((call, need_in, any(need_in)))
        return plan[::-1]

    def calls_as_made(self) -> list[Node]:
        """The layer calls in the order they were made (a topological order too): Keras numbers a layer's
        calls this way ("dense[1][0]" is the second call of dense), in configs and in the summary."""
        return sorted(self.nodes, key=lambda node: node.serial)

    def output_names(self) -> list[str]:
        """The names of the layers that make the outputs; one layer's second call as an output is "name_1"."""
        names: list[str] = []
        for t in self.outputs:
            base = str(output_node(t).layer.name)
            name, k = base, 0
            while name in names:
                k += 1
                name = f"{base}_{k}"
            names.append(name)
        return names

    def fusable_outputs(self) -> list[bool]:
        """Per output: whether the loss may read its logits (no other call needs the activated output)."""
        return [self.consumers.get(id(t), 0) == 1 and id(output_node(t).layer) not in self.shared for t in self.outputs]


def call_view(layer: Layer, state: dict[str, Any]) -> Layer:
    """The layer as one of its calls left it: the same class and weights, that call's forward caches.

    A shared layer's attributes hold its last call's caches; backward of an earlier call runs on
    this view instead, so the layer itself is never rolled back and forth between calls.
    """
    view: Layer = object.__new__(type(layer))
    view.__dict__.update(state)
    return view


def check_model_call(name: str, graph: Graph, x: Any) -> None:
    """Raise unless the model `name` with `graph` can be called as a layer on x: one tensor of its input shape."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1 or not isinstance(x, KerasTensor):
        got = f"{len(x)} tensors" if isinstance(x, (list, tuple)) else type(x).__name__
        raise TypeError(
            f"model {name!r} (inputs {len(graph.inputs)}, outputs {len(graph.outputs)}) was called on {got}; "
            "a model used as a layer takes one tensor and has one input and one output"
        )
    want = graph.inputs[0].feature_shape
    if x.feature_shape != want:
        raise ValueError(
            f"model {name!r} was built for input {(None, *want)} and cannot be called on {x.describe()} {x.shape}"
        )


def has_trained_weights(layer: Any) -> bool:
    """Whether the store gave some weight of this layer (of a nested model's layers) a gradient view."""
    return any(leaf.grads for leaf in sharing.leaves([layer]))


def output_node(t: KerasTensor) -> Node:
    assert t.node is not None
    return t.node


def is_model(layer: Any) -> bool:
    """A model used as a layer (it lists layers of its own; see sharing.leaves)."""
    return isinstance(getattr(layer, "nested_layers", None), list)


def _check_endpoints(ins: list[Any], outs: list[Any]) -> None:
    if not ins or not outs:
        raise ValueError(f"a Model needs at least one input and one output, received {len(ins)} and {len(outs)}")
    for what, group in (("inputs", ins), ("outputs", outs)):
        for t in group:
            if not isinstance(t, KerasTensor):
                raise TypeError(
                    f"Model {what} must be symbolic tensors (Input(...), layer outputs), received {type(t).__name__}"
                )
    for t in ins:
        if t.node is not None:
            raise ValueError(f"Model inputs must be Input(...) tensors; received the output of {t.describe()}")
    if len({id(t) for t in ins}) != len(ins):
        raise ValueError("the same Input appears twice in the model's inputs")


def _check_connected(
    ins: list[KerasTensor], outs: list[KerasTensor], foreign: list[tuple[KerasTensor, KerasTensor]]
) -> None:
    """Every output reached only from `ins`, every input used, no output an Input itself."""
    in_ids = {id(t) for t in ins}
    for out_t, t in foreign:
        if id(t) not in in_ids:
            raise ValueError(
                f"output {out_t.describe()} {out_t.shape} is not connected to the model's inputs "
                f"[{', '.join(i.describe() for i in ins)}]: it depends on {t.describe()} {t.shape}. "
                "Pass that Input in inputs=[...], or build the output from the given inputs"
            )
    reached = {id(t) for _, t in foreign}
    for t in ins:
        if id(t) not in reached:
            raise ValueError(
                f"{t.describe()} {t.shape} is not connected to any output "
                f"[{', '.join(o.describe() for o in outs)}]; remove it from inputs or use it"
            )
    for t in outs:
        if t.node is None:
            raise ValueError(f"output {t.describe()} is an Input itself; a model's outputs come from layers")


def walk(outputs: list[KerasTensor]) -> tuple[list[Node], list[Node], list[tuple[KerasTensor, KerasTensor]]]:
    """Depth-first from the outputs: (the calls in topological order, a cycle if any, (output, Input) pairs reached).

    Iterative, so deep chains do not hit Python's recursion limit; the post-order of a DAG's
    depth-first walk is a topological order, and for a chain it is the chain's own order.
    """
    order: list[Node] = []
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    cycle: list[Node] = []
    foreign: list[tuple[KerasTensor, KerasTensor]] = []
    for out in outputs:
        stack: list[tuple[KerasTensor, int]] = [(out, 0)]
        path: list[Node] = []
        while stack:
            t, i = stack.pop()
            node = t.node
            if node is None:
                foreign.append((out, t))
                continue
            if i == 0:
                s = state.get(id(node))
                if s == 2:
                    continue
                if s == 1:
                    if not cycle:
                        cycle = [*path[path.index(node) :], node]
                    continue
                state[id(node)] = 1
                path.append(node)
            if i < len(node.inputs):
                stack.append((t, i + 1))
                stack.append((node.inputs[i], 0))
            else:
                state[id(node)] = 2
                path.pop()
                order.append(node)
    return order, cycle, foreign


def keras_layer_order(outputs: list[KerasTensor], order: list[Node]) -> list[Layer]:
    """The layers as Keras 3 lists a functional model's layers (`keras.src.ops.function.map_graph`).

    Deepest first (a call's depth is its longest path to an output; a layer takes its deepest
    call's), ties in the order a depth-first walk from the outputs first meets them. Weights,
    .weights.h5 paths (per class, by position), get_config and summary follow this order, so a
    file Keras wrote lands in the right layers. `order` is the walk's post-order (`walk`).
    """
    first: dict[int, int] = {}  # the walk's pre-order: when each layer is first met
    done: set[int] = set()
    for out in outputs:
        stack = [out]
        while stack:
            t = stack.pop()
            node = t.node
            if node is None or id(node) in done:
                continue
            done.add(id(node))
            first.setdefault(id(node.layer), len(first))
            stack.extend(reversed(node.inputs))
    node_depth: dict[int, int] = {}
    layer_depth: dict[int, int] = {}
    for node in reversed(order):
        depth = max(node_depth.get(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = node_depth[id(node)] = depth
        for t in node.inputs:
            if t.node is not None:
                node_depth[id(t.node)] = max(depth + 1, node_depth.get(id(t.node), 0))
    layers = {id(node.layer): node.layer for node in order}
    return sorted(layers.values(), key=lambda layer: (-layer_depth[id(layer)], first[id(layer)]))


def name_layers(inputs: list[KerasTensor], order: list[Node]) -> None:
    """Unique names, as Sequential gives them: `dense`, `dense_1`, ... in call order; Inputs `input_layer`, ..."""
    explicit = [t.name for t in inputs if t.name] + [n.layer.name for n in order if n.layer.name]
    _check_unique_names(inputs, order)
    # the layers of a nested model keep their names, which new layers must not take
    nested = [str(leaf.name) for n in order if is_model(n.layer) for leaf in sharing.leaves([n.layer]) if leaf.name]
    names = UniqueNames(explicit + nested)
    for t in inputs:
        if not t.name:
            t.name = names.fresh("input_layer")
    for n in order:
        if not n.layer.name:  # a layer called twice is named at its first call
            n.layer.name = names.fresh(n.layer.default_name)


def _check_unique_names(inputs: list[KerasTensor], order: list[Node]) -> None:
    """Raise for two Inputs or layers of one name; a nested model's default name is dropped (named anew)."""
    owners: dict[str, int] = {}
    # Inputs share the namespace (the config refers to both by name; load_model could not rebuild otherwise)
    for t in inputs:
        if t.name and owners.setdefault(t.name, id(t)) != id(t):
            raise ValueError(f"two different Inputs are named {t.name!r}; input and layer names must be unique")
    for n in order:
        if not n.layer.name or owners.setdefault(n.layer.name, id(n.layer)) == id(n.layer):
            continue
        if is_model(n.layer) and n.layer.name == n.layer.default_name:
            n.layer.name = None  # named by name_layers: Keras names each model uniquely
            continue
        clash = any(t.name == n.layer.name for t in inputs)
        what = "an Input and a layer are" if clash else "two different layers are"
        raise ValueError(f"{what} named {n.layer.name!r}; layer names must be unique (Inputs' too)")


class UniqueNames:
    """Fresh names next to the `used` ones: `base`, then `base_1`, `base_2`, ... (Keras's numbering per base)."""

    def __init__(self, used: Iterable[str | None]) -> None:
        self.used: set[str | None] = set(used)
        self.taken: dict[str, int] = {}

    def fresh(self, base: str) -> str:
        k = self.taken.get(base, 0)
        name = base if k == 0 else f"{base}_{k}"
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.taken[base] = k + 1
        self.used.add(name)
        return name

    def __repr__(self) -> str:
        return f"<UniqueNames used={len(self.used)}>"
