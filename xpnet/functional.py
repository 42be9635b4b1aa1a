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
"""

from __future__ import annotations

import copy
import gc
import json
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import h5_weights, saving, summary, weights_io
from .backend import Ops, get_backend
from .layers.base import Layer, Shape
from .layers.dropout import Dropout
from .layers.fusion import ReluAfterMaxPool
from .layers.input import Input
from .layers.node import KerasTensor, Node
from .params import AccumulatingSink, GradientSink, ParamStore
from .random import init_rng, layer_seed, next_model_seed
from .training import data
from .training.trainer import Trainer, check_batch_size

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
    """

    def __init__(
        self,
        inputs: KerasTensor | Sequence[KerasTensor],
        outputs: KerasTensor | Sequence[KerasTensor],
        name: str = "functional",
        seed: int | None = None,
        dtype: str = "float32",
    ) -> None:
        self._setup(name, seed, dtype)
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

    # ------------------------------------------------------------------ the graph
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
        self._forward_program = [
            _Call(
                k, node, tuple(slot[id(t)] for t in node.inputs), slot[id(node.output)], id(node.layer) in self._shared
            )
            for k, node in enumerate(order)
        ]
        self._stops = {}

    def _plan_backward(self) -> None:
        """The calls backward runs, in reverse order: those with trained weights behind them.

        A tensor needs ∂L/∂t when trained weights (ones the store gives gradient views) lie behind
        it, so frozen layers and those below them skip backward. Made when the store is installed.
        """
        needs = [False] * len(self._slots)
        plan = []
        for call in self._forward_program:
            need_in = [needs[i] for i in call.inputs]
            needs[call.output] = bool(call.node.layer.grads) or any(need_in)
            if needs[call.output]:
                plan.append((call, need_in, any(need_in)))
        self._plan = plan[::-1]

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

    # ------------------------------------------------------------------ structure
    @property
    def built(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> ParamStore:
        """The flat parameter and gradient buffers (built models only)."""
        if self._store is None:
            raise ValueError(
                "the model is not built yet. Give the first layer input_shape=..., or call build() or fit() first"
            )
        return self._store

    def build(self, input_shape: Any = None, backend: str | Ops | None = None) -> None:
        """Draw initial weights on the host (the same numbers on any backend) and put them on the backend."""
        self.check_layers_free(self.layers)
        for i, layer in enumerate(self.layers):
            layer.index = i
            if isinstance(layer, Dropout) and layer.seed is None:
                layer.seed = layer_seed(self.seed, i)
        dtype = np.dtype(self.dtype)
        chunks = [
            spec.initializer(spec.shape, init_rng(self.seed, i, j), dtype).ravel()
            for i, layer in enumerate(self.layers)
            for j, spec in enumerate(layer.param_specs())
        ]
        host = np.concatenate(chunks) if chunks else np.zeros(0, dtype)
        self.install(get_backend(backend if backend is not None else (self._backend_request or self.ops)), host)

    def check_layers_free(self, layers: Sequence[Layer]) -> None:
        """Raise if a layer's weights live in another model's parameter buffer (xpnet does not share layers
        between models: building this one would re-initialize them and cut the other model off from them)."""

        def others() -> list[str]:  # names only: the error must not keep the other model alive
            found = []
            for layer in layers:
                ref = getattr(layer, "model_ref", None)  # a custom layer may skip Layer.__init__
                owner = ref() if ref is not None else None
                if owner is not None and owner is not self and any(lyr is layer for lyr in owner.layers):
                    found.append(f"{layer.name!r} (model {owner.name!r})")
            return found

        taken = others()
        if taken:
            gc.collect()  # a model nobody holds any more may just be waiting for the cycle collector
            taken = others()
        if taken:
            names = ", ".join(taken)
            raise ValueError(
                f"layers {names} already belong to another model, whose weights they hold; xpnet does not share "
                "layers between models (Keras does), and building this model would re-initialize them and break "
                "the other. Use new layers (copy weights with set_weights), or give the one model several "
                "outputs, e.g. Model(inputs, [output, features])"
            )

    def install(self, ops: Ops, host_params: np.ndarray) -> None:
        """Put the flat parameters on `ops` and bind each layer to its views."""
        self.check_layers_free(self.layers)
        self._store = ParamStore(ops, self.layers, host_params, self.dtype)
        for layer in self.layers:
            layer.model_ref = weakref.ref(self)
        self.ops = ops
        self._step = None
        self._accumulate = AccumulatingSink(ops)
        self._plan_backward()
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
        return self.store.size

    # ------------------------------------------------------------------ traversals
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
            values[call.output] = (
                layer.forward_preactivation(arg, training) if call.index in stop else layer.forward(arg, training)
            )
            if call.shared:  # the layer's state after this call (its caches), for this call's backward
                call.node.cache = dict(vars(layer))
        return [values[self._slots[id(t)]] for t in self.outputs]

    def backward_outputs(self, grads: Sequence[Array], from_logits: Sequence[bool]) -> None:
        assert self.ops is not None
        # namespace calls rather than operators: a captured step keeps their results (training/program.py)
        xp = self.ops.xp
        pending: list[Array] = [None] * len(self._slots)
        for t, g in zip(self.outputs, grads, strict=True):
            i = self._slots[id(t)]
            pending[i] = g if pending[i] is None else xp.add(pending[i], g)
        stop = self._stop_at(from_logits)
        seen: set[int] = set()
        for call, need_in, need in self._plan:
            dy = pending[call.output]
            if dy is None:  # no loss depends on this call
                continue
            pending[call.output] = None
            layer = call.node.layer
            if call.shared:
                dx = self._shared_backward(call.node, dy, need, call.index in stop, id(layer) in seen)
                seen.add(id(layer))
            elif call.index in stop:
                dx = layer.backward_preactivation(dy, need)
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

    # ------------------------------------------------------------------ data at the boundary
    def _by_name(self, a: Any, names: list[str], what: str, single: bool) -> list[Any]:
        if isinstance(a, dict):
            missing = [n for n in names if n not in a]
            if missing or len(a) != len(names):
                raise ValueError(f"{what} must have the keys {names}, received {sorted(a)}")
            return [a[n] for n in names]
        if single:
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
        checked = [
            data.check_y(a, n, f"{what} (output {name!r})", loss, width, self.dtype)
            for a, name, loss, width in zip(ys, self.output_names, self.losses, self.output_widths, strict=True)
        ]
        return checked[0] if self._single_out else checked

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> list[np.ndarray]:
        """All parameters as host NumPy arrays, layer by layer ([kernel, bias] for each Dense)."""
        return self.store.split(self.store.host_params())

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace all parameters; shapes are checked first, so a mismatch leaves the model unchanged."""
        slots = self.store.slots
        if len(weights) != len(slots):
            raise ValueError(f"set_weights expects {len(slots)} arrays for this model, received {len(weights)}")
        arrays = []
        for s, w in zip(slots, weights, strict=True):
            a = np.asarray(w)
            if a.shape != s.spec.shape:
                raise ValueError(f"set_weights: {s.label} must have shape {s.spec.shape}, received {a.shape}")
            if a.dtype.kind not in "biuf" or not np.all(np.isfinite(a)):
                raise ValueError(f"set_weights: {s.label} must be finite numbers, received dtype {a.dtype}")
            arrays.append(a.astype(self.dtype).ravel())
        self.store.set_host_params(np.concatenate(arrays) if arrays else np.zeros(0, self.dtype))

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
        """The whole model in one file (".keras" or ".npz"): graph, weights, compile settings and optimizer state."""
        saving.save_model(self, filepath, spec=self.file_spec())

    def file_spec(self) -> dict[str, Any]:
        """What a model file records of the architecture: Keras's functional config with the seed and dtype."""
        return {"class_name": "Functional", "seed": self.seed, "dtype": self.dtype, "config": self.get_config()}

    # ------------------------------------------------------------------ config
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
            inbound[id(node.layer)].append({"args": [refs] if node.multi else refs, "kwargs": {}})
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
                "class_name": type(layer).__name__,
                "name": layer.name,
                "config": {**layer.get_config(), "trainable": layer.trainable},
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
        custom = dict(custom_objects or {})
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
                    tensors[(str(layer.name), k)] = layer(inputs if multi else inputs[0])
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

    # ------------------------------------------------------------------ inference
    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = 0) -> Any:
        """Outputs for x as host NumPy arrays: (n, *output_shape), a list of them for several outputs."""
        batch_size = check_batch_size(32 if batch_size is None else batch_size)
        x = self.check_inputs(x, "predict")
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
            try:
                for lo in range(0, n, rows):
                    hi = min(lo + rows, n)
                    got = self.forward_outputs(data.select(X, lo, hi), False, [False] * len(self.outputs))
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

    def __call__(self, x: Any) -> Any:
        """Outputs for arrays x as one batch (a model is not yet callable on symbolic tensors)."""
        parts = x if isinstance(x, (list, tuple)) else [x]
        if any(isinstance(t, KerasTensor) for t in parts):
            raise TypeError(
                f"model {self.name!r} was called on symbolic tensors; using a model as a layer of another model is "
                "not supported yet: call its layers on the tensors instead"
            )
        return self.predict_on_batch(x)

    def trace(self, x: Any, y: Any = None, training: bool = True) -> Any:
        """Layer-by-layer values (and with y: δ and gradients); see `xpnet.trace.trace` (one input)."""
        from .trace import trace

        return trace(self, x, y, training)

    def check_gradients(self, x: Any, y: Any, **kwargs: Any) -> Any:
        """Finite-difference check of this model's gradients in float64; see `xpnet.gradcheck.check_gradients`."""
        from .gradcheck import check_gradients

        return check_gradients(self, x, y, **kwargs)

    # ------------------------------------------------------------------ summary
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


class _Call:
    """One step of the forward program: call `index` runs `node` from the tensors in slots `inputs` into `output`."""

    __slots__ = ("index", "inputs", "node", "output", "shared")

    def __init__(self, index: int, node: Node, inputs: tuple[int, ...], output: int, shared: bool) -> None:
        self.index, self.node, self.inputs, self.output, self.shared = index, node, inputs, output, shared


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
            clash = any(t.name == n.layer.name for t in inputs)
            what = "an Input and a layer are" if clash else "two different layers are"
            raise ValueError(f"{what} named {n.layer.name!r}; layer names must be unique (Inputs' too)")
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
