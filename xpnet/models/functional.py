"""`Model`: Keras's functional API, a directed acyclic graph of layer calls trained by the same `Trainer`.

    x = Input((784,))
    h = Dense(64, "relu")(x)
    y = Dense(10, "softmax")(Add()([h, Dense(64, "relu")(h)]))
    model = Model(x, y)

The calls live in a `Graph` (xpnet/models/graph.py: walk, order, slots, shared layers); the
weights in one flat `ParamStore` (xpnet/models/weights.py: drawn, read, written, copied); the
config in xpnet/models/config.py; fit / evaluate / the fused softmax + cross-entropy in
`Trainer`; weights, files and inspection (get_weights, save, trace, ...) in
xpnet/models/model_tools.py. This file runs the graph forward and backward and predicts. `Sequential` is the
special case of a chain. A model is also a layer of another model (`Sequential([model,
Softmax()])`, `model(x)` on a symbolic x), and models may share layers (xpnet/models/sharing.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._checks import probably_finite, require_finite
from ..backend import Ops, get_backend
from ..io import saving
from ..io.serialization import merged_custom_objects
from ..layers import custom
from ..layers.base import Layer, Shape
from ..layers.node import KerasTensor, Node
from ..params import AccumulatingSink, GradientSink, ParamStore
from ..training import data
from ..training.callbacks import Callback
from ..training.forward_program import forward_program
from ..training.guard import exclusive
from ..training.plan import AS_WRITTEN, PREACTIVATION, Form, Plan, current_plan
from ..training.stream import is_stream
from ..training.trainer import check_batch_size
from . import arrays, sharing, summary
from . import config as model_config
from . import weights as model_weights
from .as_layer import ModelAsLayer
from .graph import BackwardStep, Graph, call_view
from .model_tools import ModelTools
from .weights import check_model_args

Array = Any


class Model(ModelAsLayer, ModelTools):
    """A graph of layer calls from `inputs` (Input tensors) to `outputs` (tensors the calls made).

    inputs, outputs: one tensor or a list; with lists, fit/evaluate/predict take lists of arrays
    (or dicts keyed by input and output names) in the same order.
    seed: makes initial weights, shuffles and dropout masks reproducible (any backend).
    dtype: "float32" (default) or "float64" for parameters and computation.

    A one-input, one-output model is also a layer: `Sequential([model, Softmax()])` or `model(x)` on a
    symbolic x puts it in another model as one call (xpnet/models/sharing.py: how the weights are shared).
    """

    # a chain of layers (Sequential): predict may then take the chain's fast routes (training/plan.py)
    chain = False
    single_output: bool  # one output (not a list of them): set with the graph, read by every step

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
        self._graph = Graph([], [], [])
        self._exec_plan: Plan | None = None
        self.index_graph()
        self._plan: list[BackwardStep] = []
        self._plan_in: list[BackwardStep] = []
        self._accumulate: GradientSink | None = None
        self._handovers_seen = -1
        self.inbound_nodes: list[Node] = []
        self.index = 0
        self._init_trainer()

    def __deepcopy__(self, memo: dict[int, Any]) -> Model:
        """A model with its own layers, weights and optimizer state, equal to this one (copy.deepcopy)."""
        return model_weights.deep_copy(self, memo)

    def set_graph(
        self, inputs: KerasTensor | Sequence[KerasTensor], outputs: KerasTensor | Sequence[KerasTensor]
    ) -> None:
        """Find, check and order the layer calls between `inputs` and `outputs`; names unnamed layers."""
        self.use_graph(Graph.between(inputs, outputs))

    def use_graph(self, graph: Graph) -> None:
        """Run the calls of `graph` from now on; its layers are this model's layers (in Keras's order)."""
        self._graph = graph
        self.layers = list(graph.layers)
        self.index_graph()

    def index_graph(self) -> None:
        """Keep what each step reads of the graph as plain attributes (reading a property is a call per read)."""
        g = self._graph
        self.inputs, self.outputs = g.inputs, g.outputs
        self._single_input, self.single_output = g.single_input, g.single_output
        self._forward_program, self._slots = g.program, g.slots
        self._forms: dict[tuple[bool, ...], tuple[Form, ...]] = {}
        self._batch_check = None  # what the input and target checks read of the model: read again

    @property
    def graph(self) -> Graph:
        """The layer calls between the inputs and the outputs, in the order forward runs them."""
        return self._graph

    def _forms_for(self, logits: Sequence[bool]) -> tuple[Form, ...]:
        """Per call, as written, except the output calls that stop at their pre-activation (`logits`, per output)."""
        key = tuple(logits)
        forms = self._forms.get(key)
        if forms is None:
            stop = self._graph.stops.get(key)  # made once per choice of fused outputs
            stop = stop if stop is not None else self._graph.stop_at(logits)
            forms = self._forms[key] = tuple(
                PREACTIVATION if c.index in stop else AS_WRITTEN for c in self._forward_program
            )
        return forms

    @property
    def plan(self) -> Plan:
        """Every execution decision for this model as it stands (training/plan.py); `plan.explain()` says them."""
        if not self.built:
            raise ValueError("plan: the model is not built yet; build it (or call fit or predict) first")
        # made again after a recompile, a rebuild, a changed layer
        plan = self._exec_plan = current_plan(self, self._exec_plan, self._graph.nodes)
        return plan

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
        self._plan = self._graph.backward_plan(False)
        self._plan_in = self._graph.backward_plan(True)

    def _calls_as_made(self) -> list[Node]:
        """The layer calls in the order they were made (Keras's numbering of a layer's calls)."""
        return self._graph.calls_as_made()

    @property
    def nodes(self) -> list[Node]:
        """The layer calls in the order forward runs them."""
        return list(self._graph.nodes)

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
        """Take back the layers another model used since this one last did (xpnet/models/sharing.py).

        One integer comparison when no layer changed hands since this model last looked, so the
        training loop calls it every step (a callback may have run a model that shares layers).
        """
        store = self._store
        if store is None or self._handovers_seen == sharing.HANDOVERS[0]:
            return
        sharing.check_leaves(self, store)
        if sharing.take_back(store, self):
            self.plan_backward()
            self._step = None  # a recorded step may hold the other store's views
        self._handovers_seen = sharing.handovers()

    @property
    def leaf_layers(self) -> list[Layer]:
        """The layers whose weights this model's store holds: its layers, a nested model's layers in its place."""
        return sharing.leaves(self.layers)

    def build(self, input_shape: Any = None, backend: str | Ops | None = None) -> None:
        """Draw initial weights on the host (the same numbers on any backend) and put them on the backend.

        A subclassed model (one that defines `call`) is first traced: `call` runs once on an Input of
        `input_shape` ((None, *features) or the features alone), which records the layer graph a
        functional model would have.

        A layer that already holds weights (from another model: transfer learning, a nested model)
        keeps them, as in Keras, and is shared with that model from now on; so does a layer built on its
        own (`layer.build`, `layer(array)`).
        """
        if not self._graph.nodes and callable(getattr(type(self), "call", None)):
            self.use_graph(Graph.traced(self.call, type(self).__name__, self.name, input_shape))  # type: ignore[attr-defined]
        leaves = self.leaf_layers
        model_weights.seed_dropouts(leaves, self.seed)
        host = model_weights.initial_weights(leaves, self.seed, self.dtype)
        self.install(get_backend(backend if backend is not None else (self._backend_request or self.ops)), host)

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
        self._batch_check = None  # the checks read the backend and shapes again
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
        return shapes[0] if self.single_output else shapes

    @property
    def input_names(self) -> list[str]:
        return [str(t.name) for t in self.inputs]

    # the Trainer's per-output hooks (`single_output` is set with the graph, in `index_graph`)
    # a Sequential whose input shape is not known yet has no graph: then its last layer is the output
    @property
    def output_layers(self) -> list[Layer]:
        if not self.outputs:
            return [self.layers[-1]]
        return [t.node.layer for t in self.outputs if t.node is not None]  # read each step: no call

    @property
    def output_names(self) -> list[str]:
        if not self.outputs:
            return [str(self.layers[-1].name)] if self.layers else ["output"]
        return self._graph.output_names()

    @property
    def output_widths(self) -> list[int]:
        if not self.outputs:
            return [self.output_shape[-1] or 1]
        return [t.feature_shape[-1] if t.feature_shape else 1 for t in self.outputs]

    @property
    def fusable_outputs(self) -> list[bool]:
        # the fused loss reads the logits: no other call may need the layer's activated output
        if not self.outputs:
            return [True]
        return self._graph.fusable_outputs()

    @property
    def shares_layers(self) -> bool:
        return bool(self._graph.shared)

    def forward_outputs(self, x: Any, training: bool, logits: Sequence[bool]) -> list[Array]:
        return self.run_forward(x, training, self._forms_for(logits))

    def run_forward(self, x: Any, training: bool, forms: Sequence[Form]) -> list[Array]:
        """The outputs for device batch x, each call run in its `Form` (one per call of the forward program)."""
        values: list[Array] = [None] * len(self._slots)
        if self._single_input:
            values[0] = x
        else:
            values[: len(self.inputs)] = x
        for call, form in zip(self._forward_program, forms, strict=True):
            layer = call.node.layer
            arg = [values[i] for i in call.inputs] if call.node.multi else values[call.inputs[0]]
            values[call.output] = getattr(layer, form.forward)(arg, training and call.trains)
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
        self._backprop(self._plan, grads, self._forms_for(from_logits))

    def run_backward(self, grads: Sequence[Array], forms: Sequence[Form]) -> None:
        """Backprop the outputs' gradients through the calls run forward in `forms`."""
        self._backprop(self._plan, grads, forms)

    def backward_nested(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        """Backward of this model as one call in another model's graph: ∂L/∂output → ∂L/∂input (or None)."""
        pending = self._backprop(self._plan_in if need_input_grad else self._plan, [dy], self._forms_for([False]))
        return pending[0] if need_input_grad else None

    def _backprop(self, plan: list[BackwardStep], grads: Sequence[Array], forms: Sequence[Form]) -> list[Array]:
        """Run `plan` from the outputs' gradients; returns the pending gradients (the inputs' come first)."""
        assert self.ops is not None
        # namespace calls rather than operators: a captured step keeps their results (training/program.py)
        xp = self.ops.xp
        pending: list[Array] = [None] * len(self._slots)
        for t, g in zip(self.outputs, grads, strict=True):
            i = self._slots[id(t)]
            pending[i] = g if pending[i] is None else xp.add(pending[i], g)
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
            form = forms[call.index]
            if call.shared:
                dx = self._shared_backward(call.node, dy, need, form, id(layer) in seen)
                seen.add(id(layer))
            elif form is AS_WRITTEN and isinstance(layer, Model):
                dx = layer.backward_nested(dy, need)
            else:
                dx = getattr(layer, form.backward)(dy, need)
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

    def _shared_backward(self, node: Node, dy: Array, need: bool, form: Form, again: bool) -> Any:
        """One call of a shared layer: its backward on that call's own forward state (`node.cache`, see
        `graph.call_view`), its weight gradients added to those of the calls whose backward ran before."""
        layer = node.layer
        view = call_view(layer, node.cache)
        sink = layer.sink
        if not (again and sink is not None and not sink.applies_update):
            return getattr(view, form.backward)(dy, need)
        # the layer too: a custom layer's weights are owned by the layer (and its sublayers), not the view
        layer.sink = view.sink = self._accumulate
        try:
            return getattr(view, form.backward)(dy, need)
        finally:
            layer.sink = sink

    def forward(self, x: Any, training: bool = False) -> Any:
        """The model's output(s) for device batch x (a list of arrays for several inputs)."""
        outs = self.forward_outputs(x, training, [False] * len(self.outputs))
        return outs[0] if self.single_output else outs

    def forward_logits(self, x: Any, training: bool = False) -> Array:
        """A one-output model's output layer's pre-activation u."""
        return self.forward_outputs(x, training, [True])[0]

    def backward(self, grad: Array, from_logits: bool) -> None:
        """Backprop ∂L/∂output (∂L/∂u of the output layer when from_logits) of a one-output model."""
        self.backward_outputs([grad], [from_logits])

    def check_inputs(self, x: Any, what: str, finite: bool = True) -> Any:
        if self._single_input and not isinstance(x, dict):
            return data.check_x(x, what, self.ops, self.feature_shape, finite)
        return arrays.check_inputs(self, x, what, finite)

    def check_targets(self, y: Any, n: int, what: str) -> Any:
        if self.single_output and not isinstance(y, dict):
            assert self.loss is not None
            data.require_flat_output(tuple(self.output_shape[1:]), what)
            return data.check_y(y, n, what, self.loss, self.output_widths[0], self.dtype)
        return arrays.check_targets(self, y, n, what)

    def to_json(self, **kwargs: Any) -> str:
        """The architecture as Keras-shaped JSON: {"class_name": "Functional" (or "Sequential"), "config": ...}."""
        kind = "Functional" if type(self) is Model else type(self).__name__
        return json.dumps({"class_name": kind, "config": self.get_config()}, **kwargs)

    def get_config(self) -> dict[str, Any]:
        """Keras's functional config: layers with their `inbound_nodes`, `input_layers`, `output_layers`."""
        return model_config.functional_config(self._graph, self.name, self.dtype)

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        custom_objects: dict[str, Any] | None = None,
        seed: int | None = None,
        dtype: str = "float32",
    ) -> Model:
        """A new model (fresh weights) from `get_config()`; a cycle or a missing layer raises naming the layers."""
        inputs, outputs = model_config.graph_from_config(config, merged_custom_objects(custom_objects))
        return cls(inputs, outputs, config["name"], seed, dtype)

    def clone_structure(self, copy_layer: Callable[[Layer], Layer], name: str, dtype: str) -> Model:
        """The same graph over copies of the layers (`copy_layer`), with this model's seed, as `dtype`."""
        inputs, outputs = model_config.copy_graph(self._graph, copy_layer)
        return Model(inputs, outputs, name, self.seed, dtype)

    @exclusive("predict", shared=True)
    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int | str = 0,
        steps: int | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> Any:
        """Outputs for x as host NumPy arrays: (n, *output_shape), a list of them for several outputs.

        Runs as `self.plan` says (`plan.explain()`). NaN and inf inputs raise a ValueError. Where the
        plan checks by output (a chain whose backend kernels carry a NaN input through every layer,
        probed once per backend and activation), the inputs are looked at only if an output is not
        finite, which spares a pass over them (~8% of predict on a CPU). An inf input then still
        raises unless the network maps it to its finite limit (e.g. a relu of -inf, a saturated
        sigmoid), which is the value an answer would have.
        """
        hooks = list(callbacks or [])
        if hooks or steps is not None or is_stream(x):  # batch by batch: a PyDataset, a generator, hooks
            return self._predict_batches(x, batch_size, hooks, steps)
        batch_size = check_batch_size(32 if batch_size is None else batch_size)
        by_output = self.built and self.plan.nan_check == "by output"
        x = self.check_inputs(x, "predict", finite=not by_output)
        if not self.built:
            self.build(x.shape[1:])
        result = self._predict_arrays(x, batch_size)
        if by_output:
            _check_outputs(x, result)
        return result[0] if self.single_output else result

    def _predict_arrays(self, x: Any, batch_size: int) -> list[np.ndarray]:
        """Each output for checked host x as a host array."""
        self.hold_layers()
        ops = self.ops
        assert ops is not None
        with ops.activate():
            return [ops.to_numpy(out) for out in self._predict_on_device(x, batch_size, self.plan)]

    def _predict_on_device(self, x: Any, batch_size: int, plan: Plan) -> list[Array]:
        """The outputs for host x on the device, batch by batch, by the plan's route."""
        ops = self.ops
        assert ops is not None
        X = data.upload_all(ops, x, self.dtype)
        n = data.rows(X)
        outs = [ops.zeros((n, *t.feature_shape), getattr(ops.xp, self.dtype)) for t in self.outputs]
        rows = min(batch_size, ops.inference_rows or batch_size)
        program = plan.batch_logits(ops, n, rows)
        graphs = forward_program(self, "predict", False)  # on CuPy, a CUDA graph per batch shape
        forms = plan.predict_forms
        for lo in range(0, n, rows):
            hi = min(lo + rows, n)
            if program is not None:
                program(X[lo:hi, ...], outs[0][lo:hi])
                continue
            got = graphs.outputs(lambda a: self.run_forward(a, False, forms), [data.select(X, lo, hi)])
            for out, a in zip(outs, got, strict=True):
                out[lo:hi, ...] = a
        last = self.output_layers[0]
        if program is not None and n:  # as the layer path leaves it: the last batch's logits
            last.preactivation = outs[0][(n - 1) // rows * rows :, ...].copy()
        if plan.logits_at_end:  # a built-in activation works row by row: once over all the logits
            outs[0] = ops.activation_forward(last.activation, outs[0], in_place=True)
        return outs

    def predict_on_batch(self, x: Any) -> Any:
        x = self.check_inputs(x, "predict_on_batch", finite=False)  # a list or dict of inputs: rows, not len(x)
        return self.predict(x, batch_size=max(1, data.rows(x)))

    @property
    def default_name(self) -> str:
        return "functional" if type(self) is Model else _snake(type(self).__name__)

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

    def summary(self, print_fn: Callable[[str], Any] | None = None, line_length: int | None = None) -> None:
        """Keras 3's functional table: Layer (type) | Output Shape | Param # | Connected to, then the counts."""
        summary.print_functional(self, print_fn, line_length)

    def __repr__(self) -> str:
        backend = self.ops.describe() if self.ops is not None else "unbuilt"
        return (
            f"<Model name={self.name!r} inputs={len(self.inputs)} outputs={len(self.outputs)} "
            f"layers={len(self.layers)} backend={backend!r} dtype={self.dtype}>"
        )


def _check_outputs(x: Any, result: list[np.ndarray]) -> None:
    """After a NaN check by output: an output that is not finite sends predict back to name the bad inputs."""
    if isinstance(x, np.ndarray) and not all(probably_finite(r) for r in result):
        require_finite(x, "predict", "x")  # finite inputs may overflow: then no error


saving.MODEL_CLASSES["Functional"] = Model


def _snake(name: str) -> str:
    """A class name as Keras names a subclassed model by default: MyModel → my_model."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
