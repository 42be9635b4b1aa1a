"""`Model`: Keras's functional API, a directed acyclic graph of layer calls trained by the same `Trainer`.

    x = Input((784,))
    h = Dense(64, "relu")(x)
    y = Dense(10, "softmax")(Add()([h, Dense(64, "relu")(h)]))
    model = Model(x, y)

Calling a layer on symbolic tensors records a `Node` (xpnet/layers/node.py); `Model` walks the
nodes from its outputs back to its inputs once, checks the graph, and orders the calls
topologically. Forward runs the calls in that order; backward runs them in reverse, summing
the gradients of a tensor that several calls read. The weights live in the same flat
`ParamStore`, and fit / evaluate / checkpoints / MPI / the fused softmax + cross-entropy come
from `Trainer`, as for `Sequential`, which is the special case of a chain.

A layer called more than once (a shared layer) keeps one set of weights; each call keeps its
own forward caches (the layer's attributes as that call's forward left them, put back for that
call's backward), and the calls' weight gradients add up (`params.AccumulatingSink`). Plain SGD then
updates weights after backprop instead of inside it, since a later call's backward still
needs the weights unchanged.

A model is also a layer of another model (`Sequential([model, Softmax()])`, `model(x)` on a
symbolic x), and models may share layers; xpnet/sharing.py says how the weights stay shared
with one flat buffer per model.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..backend import Ops, get_backend
from ..backend.base import is_numeric, weight_source, write_weight
from ..io import h5_model, h5_weights, saving, weights_io
from ..io.config import layer_entry
from ..io.file_checks import check_parameter_count
from ..io.serialization import merged_custom_objects
from ..layers import custom
from ..layers.base import Layer, Shape, _as_shape
from ..layers.dropout import Dropout
from ..layers.fusion import ReluAfterMaxPool
from ..layers.input import Input
from ..layers.node import KerasTensor, Node
from ..params import AccumulatingSink, GradientSink, ParamStore
from ..random import init_rng, layer_seed, next_model_seed
from ..training import data
from ..training.callbacks import Callback
from ..training.forward_program import forward_program
from ..training.guard import exclusive
from ..training.stream import is_stream
from ..training.trainer import Trainer, check_batch_size
from . import sharing, summary

Array = Any
_MISSING = object()


def check_model_args(seed: Any, dtype: str) -> int:
    """The seed as an int (a fresh one for None), or a ValueError for a bad seed or dtype."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', received {dtype!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer (or None), received {seed!r}")
    return int(seed) if seed is not None else next_model_seed()


class Model(Trainer):
    """A graph of layer calls from `inputs` (Input tensors) to `outputs` (tensors the calls made).

    inputs, outputs: one tensor or a list; with lists, fit/evaluate/predict take lists of arrays
    (or dicts keyed by input and output names) in the same order.
    seed: makes initial weights, shuffles and dropout masks reproducible (any backend).
    dtype: "float32" (default) or "float64" for parameters and computation.

    A one-input, one-output model is also a layer: `Sequential([model, Softmax()])` or `model(x)` on a
    symbolic x puts it in another model as one call (xpnet/sharing.py: how the weights are shared).
    """

    # what another model's graph reads of its layers (a model used as a layer has no activation of its own)
    activation = None
    multi_input = False
    carries_nan = False
    identity_at_inference = False
    grads_via_sink = False

    def __init__(
        self,
        inputs: KerasTensor | Sequence[KerasTensor] | None = None,
        outputs: KerasTensor | Sequence[KerasTensor] | None = None,
        name: str | None = None,
        seed: int | None = None,
        dtype: str = "float32",
    ) -> None:
        if inputs is None and outputs is None and callable(getattr(type(self), "call", None)):
            # Keras's subclassing: __init__ makes the layers, call wires them; traced once on build
            self._setup(name or _snake(type(self).__name__), seed, dtype)
            return
        if inputs is None or outputs is None:
            raise TypeError(
                "Model(inputs, outputs) needs both its inputs and its outputs; or subclass Model and define "
                "call(self, inputs)"
            )
        self._setup(name or "functional", seed, dtype)
        self.set_graph(inputs, outputs)
        self.build()

    def _setup(self, name: str, seed: int | None, dtype: str) -> None:
        self.seed = check_model_args(seed, dtype)
        self.name, self.dtype = name, dtype
        self.layers: list[Layer] = []
        self.ops: Ops | None = None
        self._store: ParamStore | None = None
        self.inputs: list[KerasTensor] = []
        self.outputs: list[KerasTensor] = []
        self._single_input = self._single_out = True
        self._nodes: list[Node] = []
        self._plan: list[tuple[_Call, list[bool], bool]] = []
        self._forward_program: list[_Call] = []
        self._slots: dict[int, int] = {}
        self._stops: dict[tuple[bool, ...], frozenset[int]] = {}
        self._shared: set[int] = set()
        self._consumers: dict[int, int] = {}
        self._accumulate: GradientSink | None = None
        self._plan_in: list[tuple[_Call, list[bool], bool]] = []
        self._handovers_seen = -1
        self.inbound_nodes: list[Node] = []
        self.keep_preactivation = True
        self.index = 0
        self._init_trainer()

    def __deepcopy__(self, memo: dict[int, Any]) -> Model:
        """A model with its own layers, weights and optimizer state, equal to this one (copy.deepcopy).

        A plain deep copy would cut the layers' weight views loose from the copied flat buffer and
        leave the id()-keyed lookups pointing at this model's tensors: the copy's graph is indexed
        again and its weights are put in a new buffer, bound to the copied layers.
        """
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        if self.ops is not None:
            memo[id(self.ops)] = self.ops  # a backend is shared, not copied
        for key, value in vars(self).items():
            new.__dict__[key] = copy.deepcopy(value, memo)
        new.adopt_copy_of(self)
        return new

    def adopt_copy_of(self, original: Model) -> None:
        """After `copy.deepcopy(original)` filled this model's attributes: index the copied graph and put the
        weights in a buffer of its own, bound to the copied layers, with the optimizer's state."""
        if self._nodes:
            self._set_order(self._nodes)
        if original.built and original.ops is not None:
            self.install(original.ops, np.array(original.store.host_params()))  # NumPy hands out its buffer: copy
            if self.optimizer is not None and original.optimizer is not None:
                with original.ops.activate():
                    for name, slot in self.optimizer.slots.items():
                        slot[...] = original.optimizer.slots[name]

    def set_graph(
        self, inputs: KerasTensor | Sequence[KerasTensor], outputs: KerasTensor | Sequence[KerasTensor]
    ) -> None:
        """Find, check and order the layer calls between `inputs` and `outputs`; names unnamed layers."""
        ins = [inputs] if isinstance(inputs, KerasTensor) else list(inputs)
        outs = [outputs] if isinstance(outputs, KerasTensor) else list(outputs)
        if not ins or not outs:
            raise ValueError(f"a Model needs at least one input and one output, received {len(ins)} and {len(outs)}")
        for what, group in (("inputs", ins), ("outputs", outs)):
            for t in group:
                if not isinstance(t, KerasTensor):
                    raise TypeError(
                        f"Model {what} must be symbolic tensors (Input(...), layer outputs), "
                        f"received {type(t).__name__}"
                    )
        for t in ins:
            if t.node is not None:
                raise ValueError(f"Model inputs must be Input(...) tensors; received the output of {t.describe()}")
        if len({id(t) for t in ins}) != len(ins):
            raise ValueError("the same Input appears twice in the model's inputs")
        order, cycle, foreign = _walk(outs)
        _name_layers(ins, order)
        if cycle:
            raise ValueError(
                "the layer graph has a cycle: "
                + " -> ".join(n.output.describe() for n in cycle)
                + "; a layer's output cannot feed back into its own inputs"
            )
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
        self.inputs, self.outputs = ins, outs
        self._single_input = isinstance(inputs, KerasTensor)
        self._single_out = isinstance(outputs, KerasTensor)
        self._set_order(order)

    def _set_order(self, order: list[Node]) -> None:
        """Precompute what forward and backward need from the topologically ordered calls.

        Tensors get slots in a list (inputs first, then each call's output), so a step looks up
        arrays by index; the per-step cost of the traversal stays a few µs per call.
        """
        self._nodes = order
        calls: dict[int, int] = {}
        for node in order:
            calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
        self.layers = _keras_layer_order(self.outputs, order)
        self._shared = {k for k, v in calls.items() if v > 1}
        slot = {id(t): i for i, t in enumerate(self.inputs)}
        for node in order:
            slot[id(node.output)] = len(slot)
        self._slots = slot
        consumers: dict[int, int] = {}
        for node in order:
            for t in node.inputs:
                consumers[id(t)] = consumers.get(id(t), 0) + 1
        for t in self.outputs:
            consumers[id(t)] = consumers.get(id(t), 0) + 1
        self._consumers = consumers
        for node in order:
            if isinstance(node.layer, Model) and id(node.layer) in self._shared:
                raise ValueError(
                    f"model {node.layer.name!r} is called more than once in one model; a nested model may be "
                    "called once (call its layers on each input instead)"
                )
        self._forward_program = [
            _Call(
                k, node, tuple(slot[id(t)] for t in node.inputs), slot[id(node.output)], id(node.layer) in self._shared
            )
            for k, node in enumerate(order)
        ]
        self._stops = {}

    def plan_backward(self) -> None:
        """The calls backward runs, in reverse order: those with trained weights behind them.

        A tensor needs ∂L/∂t when trained weights (ones the store gives gradient views) lie behind
        it, so frozen layers and those below them skip backward. Made when the store is installed
        (or its layers are bound again); `_plan_in` is the plan of this model used as a layer of
        another model that needs ∂L/∂input from it.
        """
        for layer in self.layers:
            if isinstance(layer, Model):
                layer.plan_backward()
        self._plan = self._backward_plan(False)
        self._plan_in = self._backward_plan(True)

    def _backward_plan(self, input_grads: bool) -> list[tuple[_Call, list[bool], bool]]:
        needs = [input_grads] * len(self.inputs) + [False] * (len(self._slots) - len(self.inputs))
        plan = []
        for call in self._forward_program:
            need_in = [needs[i] for i in call.inputs]
            needs[call.output] = _has_trained_weights(call.node.layer) or any(need_in)
            if needs[call.output]:
                plan.append((call, need_in, any(need_in)))
        return plan[::-1]

    def _stop_at(self, logits: Sequence[bool]) -> frozenset[int]:
        """The indices of the calls that stop at their pre-activation for this choice of fused outputs."""
        key = tuple(logits)
        stop = self._stops.get(key)
        if stop is None:
            ids = {id(t.node) for t, u in zip(self.outputs, key, strict=True) if u}
            stop = self._stops[key] = frozenset(c.index for c in self._forward_program if id(c.node) in ids)
        return stop

    def _calls_as_made(self) -> list[Node]:
        """The layer calls in the order they were made (a topological order too): Keras numbers a layer's
        calls this way ("dense[1][0]" is the second call of dense), in configs and in the summary."""
        return sorted(self._nodes, key=lambda node: node.serial)

    @property
    def nodes(self) -> list[Node]:
        """The layer calls in the order forward runs them."""
        return list(self._nodes)

    @property
    def built(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> ParamStore:
        """The flat parameter and gradient buffers (built models only), holding the current weights."""
        if self._store is None:
            raise ValueError(
                "the model is not built yet. Give the first layer input_shape=..., or call build() or fit() first"
            )
        self.hold_layers()
        return self._store

    def hold_layers(self) -> None:
        """Take back the layers another model used since this one last did (xpnet/sharing.py).

        One integer comparison when no layer changed hands since this model last looked, so the
        training loop calls it every step (a callback may have run a model that shares layers).
        """
        store = self._store
        if store is None or self._handovers_seen == sharing.handovers():
            return
        leaves = self.leaf_layers
        if len(leaves) != len(store.layers) or any(a is not b for a, b in zip(leaves, store.layers, strict=True)):
            # a nested model added or popped layers since this model was built: its buffer lacks (or keeps) them
            nested = [layer.name for layer in self.layers if isinstance(layer, Model)]
            raise ValueError(
                f"model {nested[0] if len(nested) == 1 else nested!r} changed its layers after it became a layer of "
                f"{self.name!r}, whose weights were laid out for the layers it had then; make the outer model again "
                "(e.g. Sequential([inner, ...])) to use the changed one"
            )
        if sharing.take_back(store, self):
            self.plan_backward()
            self._step = None  # a recorded step may hold the other store's views
        self._handovers_seen = sharing.handovers()

    @property
    def leaf_layers(self) -> list[Layer]:
        """The layers whose weights this model's store holds: its layers, a nested model's layers in its place."""
        return sharing.leaves(self.layers)

    @property
    def nested_layers(self) -> list[Layer]:
        """This model's layers, as the model of which it is a layer sees them (`sharing.leaves`)."""
        return self.layers

    def build(self, input_shape: Any = None, backend: str | Ops | None = None) -> None:
        """Draw initial weights on the host (the same numbers on any backend) and put them on the backend.

        A subclassed model (one that defines `call`) is first traced: `call` runs once on an Input of
        `input_shape` ((None, *features) or the features alone), which records the layer graph a
        functional model would have.

        A layer that already holds weights (from another model: transfer learning, a nested model)
        keeps them, as in Keras, and is shared with that model from now on; so does a layer built on its
        own (`layer.build`, `layer(array)`).
        """
        if not self._nodes and callable(getattr(type(self), "call", None)):
            self._trace(input_shape)
        leaves = self.leaf_layers
        for i, layer in enumerate(leaves):
            layer.index = i
            if isinstance(layer, Dropout) and layer.seed is None:
                layer.seed = layer_seed(self.seed, i)
            if layer.keras_call:  # a custom layer's Dropout sublayers
                custom.seed_dropouts(layer, layer_seed(self.seed, i))
        # a model file being loaded must store this many parameters: refused before any is drawn
        check_parameter_count(sum(math.prod(spec.shape) for layer in leaves for spec in layer.param_specs()))
        dtype = np.dtype(self.dtype)
        chunks = []
        for i, layer in enumerate(leaves):
            own = _standalone_weights(layer)
            if own is not None:  # built on its own (layer.build, layer(array)) before: Keras keeps those weights
                chunks.append(own.astype(dtype))
                continue
            specs = layer.param_specs()
            kept = sharing.current_values(layer, self.dtype)
            if kept is not None and [s.shape if w is None else w.shape for w, s in zip(kept, specs, strict=False)] != [
                s.shape for s in specs
            ]:
                raise ValueError(
                    f"layer {layer.name!r} holds weights of shapes {[None if w is None else w.shape for w in kept]} "
                    "from another model, "
                    f"but this model builds it for {[s.shape for s in specs]}; give it inputs of the shape it was "
                    "built for, or use a new layer"
                )
            held = sharing.current_dtype(layer)
            if kept is not None and held is not None and held != self.dtype:
                # sharing across dtypes would round the other model's weights each time they move
                raise ValueError(
                    f"layer {layer.name!r} holds {held} weights from another model, and this "
                    f"model is {self.dtype}; give it dtype={held!r} to share the layer"
                )
            chunks += [
                s.initializer(s.shape, init_rng(self.seed, i, j), dtype).ravel() if w is None else w.ravel()
                for j, (s, w) in enumerate(zip(specs, kept or [None] * len(specs), strict=True))
            ]
        host = np.concatenate(chunks) if chunks else np.zeros(0, dtype)
        self.install(get_backend(backend if backend is not None else (self._backend_request or self.ops)), host)

    def _trace(self, input_shape: Any) -> None:
        if input_shape is None:
            raise ValueError(
                f"model {self.name!r} is subclassed and its input shape is unknown: "
                "call model.build((None, n_features)) or fit it first"
            )
        source = Input(_as_shape(input_shape), name="input_layer")
        out = self.call(source)  # type: ignore[attr-defined]
        if not isinstance(out, KerasTensor) and not (
            isinstance(out, (list, tuple)) and all(isinstance(t, KerasTensor) for t in out)
        ):
            raise TypeError(
                f"{type(self).__name__}.call returned {type(out).__name__} when traced on an Input; it must return the "
                "outputs of layer calls (or xpnet.ops functions) on its inputs"
            )
        self.set_graph(source, out if isinstance(out, KerasTensor) else list(out))

    def install(self, ops: Ops, host_params: np.ndarray) -> None:
        """Put the flat parameters on `ops` and bind each layer (each nested model's layers too) to its views."""
        leaves = self.leaf_layers
        self._store = ParamStore(ops, leaves, host_params, self.dtype)
        sharing.mark_owner(self, leaves)
        for layer in leaves:
            layer.__dict__.pop("_xp_standalone", None)  # its weights now live in this model's buffer
        self._handovers_seen = sharing.handovers()
        self.ops = ops
        self._step = None
        self._accumulate = AccumulatingSink(ops)
        self.plan_backward()
        if self.optimizer is not None:
            self.optimizer.build(ops, self._store.params)

    def to_backend(self, backend: str | Ops) -> Model:
        """Move the parameters to another backend (an explicit host round trip); optimizer state restarts."""
        ops = get_backend(backend)
        self._backend_request = ops
        if self.built and ops is not self.ops:
            self.install(ops, self.store.host_params())
        return self

    @property
    def feature_shape(self) -> Shape | None:
        """The input shape without the batch axis (None for several inputs: see `inputs`)."""
        return self.inputs[0].feature_shape if self._single_input and self.inputs else None

    @property
    def input_shape(self) -> Any:
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if self._single_input else shapes

    @property
    def output_shape(self) -> Any:
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if self._single_out else shapes

    @property
    def input_names(self) -> list[str]:
        return [str(t.name) for t in self.inputs]

    # the Trainer's per-output hooks
    @property
    def single_output(self) -> bool:
        return self._single_out

    # a Sequential whose input shape is not known yet has no graph: then its last layer is the output
    @property
    def output_layers(self) -> list[Layer]:
        if not self.outputs:
            return super().output_layers
        return [_node(t).layer for t in self.outputs]

    @property
    def output_names(self) -> list[str]:
        if not self.outputs:
            return super().output_names
        names: list[str] = []
        for t in self.outputs:
            base = str(_node(t).layer.name)
            name, k = base, 0
            while name in names:  # one layer's two calls as two outputs
                k += 1
                name = f"{base}_{k}"
            names.append(name)
        return names

    @property
    def output_widths(self) -> list[int]:
        if not self.outputs:
            return super().output_widths
        return [t.feature_shape[-1] if t.feature_shape else 1 for t in self.outputs]

    @property
    def fusable_outputs(self) -> list[bool]:
        # the fused loss reads the logits: no other call may need the layer's activated output
        if not self.outputs:
            return super().fusable_outputs
        return [self._consumers.get(id(t), 0) == 1 and id(_node(t).layer) not in self._shared for t in self.outputs]

    @property
    def shares_layers(self) -> bool:
        return bool(self._shared)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers are {[lyr.name for lyr in self.layers]}")

    def count_params(self) -> int:
        # from the layers, not the store: counting must not take the layers from a model that uses them
        if self._store is None:
            raise ValueError(
                "the model is not built yet. Give the first layer input_shape=..., or call build() or fit() first"
            )
        return sum(layer.count_params() for layer in self.leaf_layers)

    def forward_outputs(self, x: Any, training: bool, logits: Sequence[bool]) -> list[Array]:
        values: list[Array] = [None] * len(self._slots)
        if self._single_input:
            values[0] = x
        else:
            values[: len(self.inputs)] = x
        stop = self._stop_at(logits)
        for call in self._forward_program:
            layer = call.node.layer
            arg = [values[i] for i in call.inputs] if call.node.multi else values[call.inputs[0]]
            train = training and call.trains
            values[call.output] = (
                layer.forward_preactivation(arg, train) if call.index in stop else layer.forward(arg, train)
            )
            if call.shared:  # the layer's state after this call (its caches), for this call's backward
                call.node.cache = dict(vars(layer))
        return [values[self._slots[id(t)]] for t in self.outputs]

    def step_added_losses(self) -> list[Array]:
        """The `add_loss` values of the last forward pass, call by call: a layer called twice adds twice."""
        if not self._forward_program:
            return custom.step_losses(self.layers)
        found: list[Array] = []
        for call in self._forward_program:
            layer = call.node.layer
            if isinstance(layer, Model):
                found += layer.step_added_losses()
            elif call.shared and call.node.cache is not None:  # each call's state was kept (forward_outputs)
                found += call.node.cache.get("_xp_step_losses", [])
            else:
                found += layer.__dict__.get("_xp_step_losses", [])
        return found

    def backward_outputs(self, grads: Sequence[Array], from_logits: Sequence[bool]) -> None:
        self._backprop(self._plan, grads, from_logits)

    def backward_nested(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        """Backward of this model as one call in another model's graph: ∂L/∂output → ∂L/∂input (or None)."""
        pending = self._backprop(self._plan_in if need_input_grad else self._plan, [dy], [False])
        return pending[0] if need_input_grad else None

    def _backprop(
        self, plan: list[tuple[_Call, list[bool], bool]], grads: Sequence[Array], from_logits: Sequence[bool]
    ) -> list[Array]:
        """Run `plan` from the outputs' gradients; returns the pending gradients (the inputs' come first)."""
        assert self.ops is not None
        # namespace calls rather than operators: a captured step keeps their results (training/program.py)
        xp = self.ops.xp
        pending: list[Array] = [None] * len(self._slots)
        for t, g in zip(self.outputs, grads, strict=True):
            i = self._slots[id(t)]
            pending[i] = g if pending[i] is None else xp.add(pending[i], g)
        stop = self._stop_at(from_logits)
        seen: set[int] = set()
        for call, need_in, need in plan:
            dy = pending[call.output]
            if dy is None:  # no loss depends on this call
                continue
            pending[call.output] = None
            layer = call.node.layer
            if not call.trains:
                raise ValueError(
                    f"model {layer.name!r} was called with training=False, and training needs gradients through "
                    "it (it has trainable weights, or trainable layers come before it); xpnet backpropagates "
                    f"only through calls in training mode: freeze it ({layer.name}.trainable = False) or call "
                    "it without training=False"
                )
            if call.shared:
                dx = self._shared_backward(call.node, dy, need, call.index in stop, id(layer) in seen)
                seen.add(id(layer))
            elif call.index in stop:
                dx = layer.backward_preactivation(dy, need)
            elif isinstance(layer, Model):
                dx = layer.backward_nested(dy, need)
            else:
                dx = layer.backward(dy, need)
            if not need:
                continue
            if call.node.multi:
                given: set[int] = set()
                for i, g, wanted in zip(call.inputs, dx, need_in, strict=True):
                    if not wanted or g is None:
                        continue
                    if id(g) in given:
                        # one array for two inputs (Add's backward): the next backward may overwrite it in place
                        g = xp.multiply(g, 1)
                    given.add(id(g))
                    pending[i] = g if pending[i] is None else xp.add(pending[i], g)
            else:
                i = call.inputs[0]
                pending[i] = dx if pending[i] is None else xp.add(pending[i], dx)
        return pending

    def _shared_backward(self, node: Node, dy: Array, need: bool, logits: bool, again: bool) -> Any:
        """One call of a shared layer: its own caches in place, its weight gradients added to the others'."""
        layer = node.layer
        state, after = vars(layer), node.cache
        # every attribute that differs from right after this call's forward (other calls' caches) goes back
        saved = {
            k: state.get(k, _MISSING) for k in {*state, *after} if state.get(k, _MISSING) is not after.get(k, _MISSING)
        }
        for k in saved:
            if k in after:
                state[k] = after[k]
            else:
                del state[k]
        sink = layer.sink
        if again and sink is not None and not sink.applies_update:
            layer.sink = self._accumulate
        try:
            return layer.backward_preactivation(dy, need) if logits else layer.backward(dy, need)
        finally:
            layer.sink = sink
            for k, v in saved.items():  # as after the forward pass: the last call's caches
                if v is _MISSING:
                    state.pop(k, None)
                else:
                    state[k] = v

    def forward(self, x: Any, training: bool = False) -> Any:
        """The model's output(s) for device batch x (a list of arrays for several inputs)."""
        outs = self.forward_outputs(x, training, [False] * len(self.outputs))
        return outs[0] if self._single_out else outs

    def forward_logits(self, x: Any, training: bool = False) -> Array:
        """A one-output model's output layer's pre-activation u."""
        return self.forward_outputs(x, training, [True])[0]

    def backward(self, grad: Array, from_logits: bool) -> None:
        """Backprop ∂L/∂output (∂L/∂u of the output layer when from_logits) of a one-output model."""
        self.backward_outputs([grad], [from_logits])

    def _by_name(self, a: Any, names: list[str], what: str, single: bool) -> list[Any]:
        if isinstance(a, dict):
            missing = [n for n in names if n not in a]
            if missing or len(a) != len(names):
                raise ValueError(f"{what} must have the keys {names}, received {sorted(a)}")
            return [a[n] for n in names]
        if single or (len(names) == 1 and not isinstance(a, (list, tuple))):  # Model([x], ...) takes x alone too
            return [a]
        if not isinstance(a, (list, tuple)) or len(a) != len(names):
            got = f"a list of {len(a)}" if isinstance(a, (list, tuple)) else type(a).__name__
            raise ValueError(f"{what}: the model has {len(names)} ({', '.join(names)}), received {got}")
        return list(a)

    def check_inputs(self, x: Any, what: str, finite: bool = True) -> Any:
        if self._single_input and not isinstance(x, dict):
            return super().check_inputs(x, what, finite)
        xs = self._by_name(x, self.input_names, f"{what}: x (the inputs)", self._single_input)
        checked = [
            data.check_x(a, f"{what} (input {t.name!r})", self.ops, t.feature_shape, finite)
            for a, t in zip(xs, self.inputs, strict=True)
        ]
        counts = {t.name: data.rows(a) for t, a in zip(self.inputs, checked, strict=True)}
        if len(set(counts.values())) > 1:
            raise ValueError(f"{what}: the inputs have different numbers of samples: {counts}")
        return checked[0] if self._single_input else checked

    def check_targets(self, y: Any, n: int, what: str) -> Any:
        if self._single_out and not isinstance(y, dict):
            return super().check_targets(y, n, what)
        ys = self._by_name(y, self.output_names, f"{what}: y (the targets)", self._single_out)
        for t, name in zip(self.outputs, self.output_names, strict=True):
            data.require_flat_output(t.feature_shape, f"{what} (output {name!r})")
        checked = [
            data.check_y(a, n, f"{what} (output {name!r})", loss, width, self.dtype)
            for a, name, loss, width in zip(
                ys, self.output_names, self.compiled_losses, self.output_widths, strict=True
            )
        ]
        return checked[0] if self._single_out else checked

    def get_weights(self) -> list[np.ndarray]:
        """All parameters as host NumPy arrays, layer by layer ([kernel, bias] for each Dense)."""
        return self.store.split(self.store.host_params())

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace all parameters; shapes are checked first, so a mismatch leaves the model unchanged.

        NaN and inf are accepted (as Keras does), so `set_weights(get_weights())` works on a diverged model.
        Device arrays of the model's backend are written device to device.
        """
        slots = self.store.slots
        if len(weights) != len(slots):
            raise ValueError(f"set_weights expects {len(slots)} arrays for this model, received {len(weights)}")
        ops = self.store.ops
        arrays = []
        for s, w in zip(slots, weights, strict=True):
            a = weight_source(ops, w)
            if tuple(a.shape) != tuple(s.spec.shape):
                raise ValueError(f"set_weights: {s.label} must have shape {s.spec.shape}, received {tuple(a.shape)}")
            if not is_numeric(a):
                raise ValueError(f"set_weights: {s.label} must be numbers, received dtype {a.dtype}")
            arrays.append(a)
        if all(isinstance(a, np.ndarray) for a in arrays):  # host data: one upload of the whole buffer
            flat = [a.astype(self.dtype).ravel() for a in arrays]
            self.store.set_host_params(np.concatenate(flat) if flat else np.zeros(0, self.dtype))
            return
        # device arrays are written into each weight's view on the device, without a host round trip
        for s, a in zip(slots, arrays, strict=True):
            write_weight(ops, s.layer.params[s.spec.name], a)
        for layer in self.store.layers:
            layer.weights_assigned()

    def save_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Write all parameters to `filepath` atomically: .npz (no pickle), or Keras 3's layout for "*.weights.h5"."""
        if h5_weights.is_keras_h5_name(filepath):
            h5_weights.save(filepath, self.name, self.layers)
            return
        weights_io.save(filepath, self.store.layout(), self.get_weights())

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Load a file written by `save_weights` (or Keras's .weights.h5); a mismatch raises and changes nothing."""
        if h5_weights.is_keras_h5_name(filepath):
            _ = self.store  # an unbuilt model has no shapes to check the file against: a clear error first
            self.set_weights(h5_weights.load(filepath, self.layers))
            return
        mine = self.store.layout()
        layout, arrays = weights_io.load(filepath)
        theirs = [[ly.get("class"), list(ly.get("params", {}).values())] for ly in layout]
        ours = [[ly["class"], list(ly["params"].values())] for ly in mine]
        if theirs != ours:
            raise ValueError(
                f"{filepath} holds weights for a different architecture:\n  file:  "
                + ", ".join(f"{c}{s}" for c, s in theirs)
                + "\n  model: "
                + ", ".join(f"{c}{s}" for c, s in ours)
            )
        self.set_weights(arrays)

    def save(self, filepath: str | os.PathLike[str]) -> None:
        """The whole model in one file (".keras" or ".npz"): graph, weights, compile settings and optimizer state.
        A ".h5" name writes Keras's legacy HDF5 layout instead (h5py needed; see xpnet/h5_model.py)."""
        if h5_model.is_legacy_h5(filepath):
            h5_model.save_model(self, filepath, spec=self.file_spec())
            return
        saving.save_model(self, filepath, spec=self.file_spec())

    def file_spec(self) -> dict[str, Any]:
        """What a model file records of the architecture: Keras's functional config with the seed and dtype."""
        return {"class_name": "Functional", "seed": self.seed, "dtype": self.dtype, "config": self.get_config()}

    def to_json(self, **kwargs: Any) -> str:
        """The architecture as Keras-shaped JSON: {"class_name": "Functional" (or "Sequential"), "config": ...}."""
        kind = "Functional" if type(self) is Model else type(self).__name__
        return json.dumps({"class_name": kind, "config": self.get_config()}, **kwargs)

    def get_config(self) -> dict[str, Any]:
        """Keras's functional config: layers with their `inbound_nodes`, `input_layers`, `output_layers`."""
        index: dict[int, tuple[str, int]] = {id(t): (str(t.name), 0) for t in self.inputs}
        calls: dict[int, int] = {}  # a layer's calls numbered as they were made, as Keras's node indices
        inbound: dict[int, list[Any]] = {id(layer): [] for layer in self.layers}

        def ref(t: KerasTensor) -> dict[str, Any]:
            name, k = index[id(t)]
            return {"class_name": "__keras_tensor__", "config": {"shape": list(t.shape), "keras_history": [name, k, 0]}}

        made = self._calls_as_made()
        for node in made:
            k = calls.get(id(node.layer), 0)
            calls[id(node.layer)] = k + 1
            index[id(node.output)] = (str(node.layer.name), k)
            refs = [ref(t) for t in node.inputs]
            kwargs = {} if node.training is None else {"training": node.training}
            inbound[id(node.layer)].append({"args": [refs] if node.multi else refs, "kwargs": kwargs})
        entries: list[dict[str, Any]] = [
            {
                "class_name": "InputLayer",
                "name": t.name,
                "config": {"batch_shape": list(t.shape), "dtype": self.dtype, "name": t.name},
                "inbound_nodes": [],
            }
            for t in self.inputs
        ]
        entries += [
            {
                "class_name": layer_entry(layer)["class_name"],
                "name": layer.name,
                "config": layer_entry(layer)["config"],
                "inbound_nodes": inbound[id(layer)],
            }
            for layer in self.layers
        ]

        def history(t: KerasTensor) -> list[Any]:
            name, k = index[id(t)]
            return [name, k, 0]

        return {
            "name": self.name,
            "layers": entries,
            "input_layers": [history(t) for t in self.inputs] if not self._single_input else history(self.inputs[0]),
            "output_layers": [history(t) for t in self.outputs] if not self._single_out else history(self.outputs[0]),
        }

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        custom_objects: dict[str, Any] | None = None,
        seed: int | None = None,
        dtype: str = "float32",
    ) -> Model:
        """A new model (fresh weights) from `get_config()`; a cycle or a missing layer raises naming the layers."""
        need = ("layers", "input_layers", "output_layers")
        if not isinstance(config, dict) or not all(k in config for k in need):
            got = sorted(config) if isinstance(config, dict) else type(config).__name__
            raise ValueError(f"a functional config is a dict with {list(need)} (model.get_config()), received {got}")
        custom = merged_custom_objects(custom_objects)
        tensors: dict[tuple[str, int], KerasTensor] = {}
        pending: list[tuple[Layer, int, dict[str, Any]]] = []
        for entry in config["layers"]:
            if entry["class_name"] == "InputLayer":
                cfg = entry["config"]
                tensors[(entry["name"], 0)] = Input(tuple(cfg["batch_shape"][1:]), name=cfg.get("name", entry["name"]))
                continue
            layer = saving.layer_from_config({"class_name": entry["class_name"], "config": entry["config"]}, custom)
            layer.name = entry.get("name", layer.name)
            pending += [(layer, k, node) for k, node in enumerate(entry["inbound_nodes"])]
        # a layer's later call may read a layer listed after it: call whatever is ready until nothing is left
        while pending:
            left = []
            for layer, k, node in pending:
                args = node["args"]
                multi = len(args) == 1 and isinstance(args[0], list)
                refs = args[0] if multi else args
                keys = [tuple(r["config"]["keras_history"][:2]) for r in refs]
                if all(key in tensors for key in keys) and (k == 0 or (str(layer.name), k - 1) in tensors):
                    inputs = [tensors[key] for key in keys]  # type: ignore[index]
                    training = node.get("kwargs", {}).get("training")
                    arg = inputs if multi else inputs[0]
                    tensors[(str(layer.name), k)] = (
                        layer(arg, training=training) if isinstance(layer, Model) else layer(arg)
                    )
                else:
                    left.append((layer, k, node))
            if len(left) == len(pending):
                stuck = sorted({str(layer.name) for layer, _, _ in left})
                raise ValueError(
                    f"the model config cannot be built: the calls of {stuck} wait on each other (a cycle) "
                    "or on layers the config does not have"
                )
            pending = left

        def pick(spec: Any) -> Any:
            if spec and isinstance(spec[0], list):
                return [tensors[(s[0], s[1])] for s in spec]
            return tensors[(spec[0], spec[1])]

        return cls(pick(config["input_layers"]), pick(config["output_layers"]), config["name"], seed, dtype)

    def clone_structure(self, copy_layer: Callable[[Layer], Layer], name: str, dtype: str) -> Model:
        """The same graph over copies of the layers (`copy_layer`), with this model's seed, as `dtype`."""
        copies = {id(layer): copy_layer(layer) for layer in self.layers}
        tensors: dict[int, KerasTensor] = {id(t): Input(t.feature_shape, name=t.name) for t in self.inputs}
        for node in self._calls_as_made():  # so a shared layer's copy numbers its calls as the original
            args = [tensors[id(t)] for t in node.inputs]
            tensors[id(node.output)] = copies[id(node.layer)](args if node.multi else args[0])
        ins = [tensors[id(t)] for t in self.inputs]
        outs = [tensors[id(t)] for t in self.outputs]
        return Model(
            ins[0] if self._single_input else ins, outs[0] if self._single_out else outs, name, self.seed, dtype
        )

    @exclusive("predict", shared=True)
    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int | str = 0,
        steps: int | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> Any:
        """Outputs for x as host NumPy arrays: (n, *output_shape), a list of them for several outputs."""
        if callbacks or steps is not None or is_stream(x):  # batch by batch: a PyDataset, a generator, hooks
            return self._predict_batches(x, batch_size, list(callbacks or []), steps)
        batch_size = check_batch_size(32 if batch_size is None else batch_size)
        x = self.check_inputs(x, "predict")
        self.hold_layers()
        ops = self.ops
        assert ops is not None
        xp = ops.xp
        with ops.activate(), ReluAfterMaxPool(self):  # exact rewrites, as in training
            X = data.upload_all(ops, x, self.dtype)
            n = data.rows(X)
            outs = [ops.zeros((n, *t.feature_shape), getattr(xp, self.dtype)) for t in self.outputs]
            rows = min(batch_size, ops.inference_rows or batch_size)
            kept = [(layer, layer.keep_preactivation) for layer in self.layers]
            for layer, _ in kept:  # predict keeps no pre-activations, so activations may reuse their memory
                layer.keep_preactivation = False
            graphs = forward_program(self, "predict", False)  # on CuPy, a CUDA graph per batch shape
            flags = [False] * len(self.outputs)
            try:
                for lo in range(0, n, rows):
                    hi = min(lo + rows, n)
                    got = graphs.outputs(lambda a: self.forward_outputs(a, False, flags), [data.select(X, lo, hi)])
                    for out, a in zip(outs, got, strict=True):
                        out[lo:hi, ...] = a
            finally:
                for layer, keep in kept:
                    layer.keep_preactivation = keep
            result = [ops.to_numpy(out) for out in outs]
        return result[0] if self._single_out else result

    def predict_on_batch(self, x: Any) -> Any:
        x = self.check_inputs(x, "predict_on_batch", finite=False)  # a list or dict of inputs: rows, not len(x)
        return self.predict(x, batch_size=max(1, data.rows(x)))

    def __call__(self, x: Any, training: bool | None = None) -> Any:
        """Outputs for arrays x as one batch; on a symbolic tensor, this model as one call of a new graph.

        x: (batch, *input_shape) arrays → NumPy outputs; or a `KerasTensor` (Input(...), a layer's
        output) → the output tensor of this model's call, so the model is a layer of the model built
        from it (one input and one output; see xpnet/sharing.py for the weights).
        training=False (Keras's fine-tuning `base_model(inputs, training=False)`): that call always
        runs in inference mode (Dropout off, BatchNormalization on its moving statistics), also
        while the outer model trains.
        """
        if training not in (None, True, False):
            raise ValueError(f"training must be None, True or False, received {training!r}")
        parts = x if isinstance(x, (list, tuple)) else [x]
        if any(isinstance(t, KerasTensor) for t in parts):
            return self.call_symbolic(x, training)
        return self.predict_on_batch(x)

    def call_symbolic(self, x: Any, training: bool | None = None) -> KerasTensor:
        """Record a call of this model on the symbolic tensor x (as `Layer.__call__` does for a layer)."""
        if not self.inputs and self.layers and isinstance(x, KerasTensor):  # a Sequential without an input shape
            self.build((None, *x.feature_shape))
        if len(self.inputs) != 1 or len(self.outputs) != 1 or not isinstance(x, KerasTensor):
            got = f"{len(x)} tensors" if isinstance(x, (list, tuple)) else type(x).__name__
            raise TypeError(
                f"model {self.name!r} (inputs {len(self.inputs)}, outputs {len(self.outputs)}) was called on {got}; "
                "a model used as a layer takes one tensor and has one input and one output"
            )
        want = self.inputs[0].feature_shape
        if x.feature_shape != want:
            raise ValueError(
                f"model {self.name!r} was built for input {(None, *want)} and cannot be called on "
                f"{x.describe()} {x.shape}"
            )
        _ = self.store  # the inner model's weights are what the outer model starts from: it must be built
        node = Node(self, [x], False, self.outputs[0].feature_shape)
        node.training = training
        return node.output

    @property
    def requested_input_shape(self) -> Shape | None:
        """The input shape a `Sequential` that starts with this model takes (its own input's, once known)."""
        return self.inputs[0].feature_shape if len(self.inputs) == 1 else None

    def inference_affine(self) -> None:
        return None

    def is_inference_identity(self) -> bool:
        return False

    def replaces_methods(self) -> bool:
        return False

    @property
    def default_name(self) -> str:
        return "functional" if type(self) is Model else re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()

    @property
    def output(self) -> KerasTensor:
        """The output tensor (Keras's `model.output`; several outputs: see `outputs`)."""
        if len(self.outputs) != 1:
            raise AttributeError(f"model {self.name!r} has {len(self.outputs)} outputs: use model.outputs")
        return self.outputs[0]

    @property
    def input(self) -> KerasTensor:
        """The input tensor (Keras's `model.input`; several inputs: see `inputs`)."""
        if len(self.inputs) != 1:
            raise AttributeError(f"model {self.name!r} has {len(self.inputs)} inputs: use model.inputs")
        return self.inputs[0]

    def trace(self, x: Any, y: Any = None, training: bool = True) -> Any:
        """Layer-by-layer values (and with y: δ and gradients); see `xpnet.trace.trace` (one input)."""
        from ..teaching.trace import trace

        nested = [str(layer.name) for layer in self.layers if isinstance(layer, Model)]
        if nested:
            raise ValueError(
                f"trace follows layers, and {nested} are models used as layers; trace each model alone, "
                "or build one model from all the layers (e.g. Sequential(inner.layers + [...]))"
            )
        return trace(self, x, y, training)

    def check_gradients(self, x: Any, y: Any, **kwargs: Any) -> Any:
        """Finite-difference check of this model's gradients in float64; see `xpnet.gradcheck.check_gradients`."""
        from ..teaching.gradcheck import check_gradients

        return check_gradients(self, x, y, **kwargs)

    def summary(self, print_fn: Callable[[str], Any] | None = None, line_length: int | None = None) -> None:
        """Keras 3's functional table: Layer (type) | Output Shape | Param # | Connected to, then the counts."""
        index: dict[int, str] = {id(t): f"{t.name}[0][0]" for t in self.inputs}
        calls: dict[int, int] = {}
        links: dict[int, list[str]] = {id(layer): [] for layer in self.layers}
        for node in self._calls_as_made():
            k = calls.get(id(node.layer), 0)
            calls[id(node.layer)] = k + 1
            index[id(node.output)] = f"{node.layer.name}[{k}][0]"
            links[id(node.layer)] += [index[id(t)] for t in node.inputs]
        rows = [[f"{t.name} (InputLayer)", str(t.shape), "0", "-"] for t in self.inputs]
        rows += [[*summary.layer_cells(layer, self.built), ",\n".join(links[id(layer)])] for layer in self.layers]
        headers = ("Layer (type)", "Output Shape", "Param #", "Connected to")
        summary.print_summary(self, print_fn, line_length, headers, rows)

    def __repr__(self) -> str:
        backend = self.ops.describe() if self.ops is not None else "unbuilt"
        return (
            f"<Model name={self.name!r} inputs={len(self.inputs)} outputs={len(self.outputs)} "
            f"layers={len(self.layers)} backend={backend!r} dtype={self.dtype}>"
        )


def _has_trained_weights(layer: Any) -> bool:
    """Whether the store gave some weight of this layer (of a nested model's layers) a gradient view."""
    if isinstance(layer, Model):
        return any(leaf.grads for leaf in layer.leaf_layers)
    return bool(layer.grads)


saving.MODEL_CLASSES["Functional"] = Model


class _Call:
    """One step of the forward program: call `index` runs `node` from the tensors in slots `inputs` into `output`."""

    __slots__ = ("index", "inputs", "node", "output", "shared", "trains")

    def __init__(self, index: int, node: Node, inputs: tuple[int, ...], output: int, shared: bool) -> None:
        self.index, self.node, self.inputs, self.output, self.shared = index, node, inputs, output, shared
        # False for a call made with training=False (Keras's base_model(x, training=False)): always inference
        self.trains = node.training is not False


def _node(t: KerasTensor) -> Node:
    assert t.node is not None
    return t.node


def _walk(outputs: list[KerasTensor]) -> tuple[list[Node], list[Node], list[tuple[KerasTensor, KerasTensor]]]:
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


def _keras_layer_order(outputs: list[KerasTensor], order: list[Node]) -> list[Layer]:
    """The layers as Keras 3 lists a functional model's layers (`keras.src.ops.function.map_graph`).

    Deepest first (a call's depth is its longest path to an output; a layer takes its deepest
    call's), ties in the order a depth-first walk from the outputs first meets them. Weights,
    .weights.h5 paths (per class, by position), get_config and summary follow this order, so a
    file Keras wrote lands in the right layers. `order` is the walk's post-order (`_walk`).
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


def _name_layers(inputs: list[KerasTensor], order: list[Node]) -> None:
    """Unique names, as Sequential gives them: `dense`, `dense_1`, ... in call order; Inputs `input_layer`, ..."""
    taken: dict[str, int] = {}
    seen: set[int] = set()
    explicit = [t.name for t in inputs if t.name] + [n.layer.name for n in order if n.layer.name]
    owners: dict[str, int] = {}
    # Inputs share the namespace (the config refers to both by name; load_model could not rebuild otherwise)
    for t in inputs:
        if t.name and owners.setdefault(t.name, id(t)) != id(t):
            raise ValueError(f"two different Inputs are named {t.name!r}; input and layer names must be unique")
    for n in order:
        if n.layer.name and owners.setdefault(n.layer.name, id(n.layer)) != id(n.layer):
            if isinstance(n.layer, Model) and n.layer.name == n.layer.default_name:
                n.layer.name = None  # type: ignore[assignment]  # named below: Keras names each model uniquely
                continue
            clash = any(t.name == n.layer.name for t in inputs)
            what = "an Input and a layer are" if clash else "two different layers are"
            raise ValueError(f"{what} named {n.layer.name!r}; layer names must be unique (Inputs' too)")
    for n in order:  # the layers of a nested model keep their names, which new layers must not take
        if isinstance(getattr(n.layer, "nested_layers", None), list):
            explicit += [str(leaf.name) for leaf in sharing.leaves([n.layer]) if leaf.name]
    used = set(explicit)

    def fresh(base: str) -> str:
        k = taken.get(base, 0)
        name = base if k == 0 else f"{base}_{k}"
        while name in used:
            k += 1
            name = f"{base}_{k}"
        taken[base] = k + 1
        used.add(name)
        return name

    for t in inputs:
        if not t.name:
            t.name = fresh("input_layer")
    for n in order:
        if id(n.layer) in seen:
            continue
        seen.add(id(n.layer))
        if not n.layer.name:
            n.layer.name = fresh(n.layer.default_name)


def _snake(name: str) -> str:
    """A class name as Keras names a subclassed model by default: MyModel → my_model."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _standalone_weights(layer: Layer) -> np.ndarray | None:
    """The (P,) host weights of a layer that has a parameter store of its own (a standalone layer), if it
    still has the weights its specs declare; else None."""
    own = layer.__dict__.get("_xp_standalone")
    if own is None or own.layers != [layer]:
        return None
    if [tuple(s.spec.shape) for s in own.slots] != [tuple(s.shape) for s in layer.param_specs()]:
        return None
    return np.asarray(own.host_params())
