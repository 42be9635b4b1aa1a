"""`Sequential`: a linear stack of layers, the chain case of the functional `Model`.

The weights live in one flat `ParamStore` (xpnet/params.py); compile, fit, evaluate and
compute_gradients in xpnet/training/; the traversals, weight I/O and the graph in
xpnet/functional.py. This file adds what a stack has of its own: adding and popping layers
with the input shape known late, its summary, and a predict with the fast paths a chain of
affine layers allows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import config, saving, summary
from ._checks import probably_finite, require_finite
from .backend import Ops
from .backend.base import builtin_name
from .functional import Model
from .layers.base import Layer, Shape, _as_shape
from .layers.dropout import Dropout
from .layers.fusion import ReluAfterMaxPool
from .layers.input import Input
from .layers.node import KerasTensor, Node
from .random import layer_seed
from .training import data
from .training.guard import exclusive
from .training.trainer import check_batch_size

Array = Any


class Sequential(Model):
    """A linear stack of layers: `Sequential([Flatten(input_shape=(28, 28)), Dense(300, "relu"), ...])`.

    seed: makes initial weights, shuffles and dropout masks reproducible (any backend).
    dtype: "float32" (default) or "float64" for parameters and computation.
    Once its input shape is known it is the functional `Model` of the chain Input → layer 1 → ….
    """

    def __init__(
        self,
        layers: Sequence[Layer | Input] | None = None,
        name: str = "sequential",
        seed: int | None = None,
        dtype: str = "float32",
    ) -> None:
        self._setup(name, seed, dtype)
        self._input_shape: Shape | None = None
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------ structure
    def add(self, layer: Layer | Input) -> None:
        if isinstance(layer, Input):
            if self.layers:
                raise ValueError("Input(...) must come first in a Sequential model")
            self._input_shape = layer.feature_shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a Layer, received {type(layer).__name__}")
        self.check_layers_free([layer])
        taken = {lyr.name for lyr in self.layers}
        if layer.name is None:
            base, k = layer.default_name, 0
            layer.name = base
            while layer.name in taken:
                k += 1
                layer.name = f"{base}_{k}"
        elif layer.name in taken:
            raise ValueError(f"a layer named {layer.name!r} is already in the model; layer names must be unique")
        if not self.layers and self._input_shape is None and layer.requested_input_shape is not None:
            self._input_shape = layer.requested_input_shape
        kept = [lyr.get_weights() for lyr in self.layers] if self.built else None
        self.layers.append(layer)
        if self._input_shape is not None:
            self.build()
            if kept is not None:
                for lyr, w in zip(self.layers, kept, strict=False):
                    if w:
                        lyr.set_weights(w)

    def build(self, input_shape: Any = None, backend: str | Ops | None = None) -> None:
        """Build every layer and draw initial weights on the host (same numbers on any backend)."""
        if input_shape is not None:
            self._input_shape = _as_shape(input_shape)
        if self._input_shape is None:
            raise ValueError(
                "the model's input shape is unknown: pass input_shape=... to the first layer, start with "
                "Input(shape=...), or call model.build((None, n_features))"
            )
        if not self.layers:
            raise ValueError("the model has no layers; add some with model.add(...)")
        source = Input(self._input_shape, name="input_layer")
        t: KerasTensor = source
        nodes: list[Node] = []
        for layer in self.layers:
            layer.build(t.feature_shape)
            nodes.append(Node(layer, [t], False))
            t = nodes[-1].output
        self.inputs, self.outputs = [source], [t]
        self._set_order(nodes)
        super().build(backend=backend)  # the weights, drawn as for any Model

    @property
    def feature_shape(self) -> Shape | None:
        """The input shape without the batch axis (None until known)."""
        return self._input_shape

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        if self._input_shape is None:
            raise AttributeError("the model has no input shape yet")
        return (None, *self._input_shape)

    @property
    def output_shape(self) -> tuple[int | None, ...]:
        out = self.layers[-1].output_shape if self.layers else None
        if out is None:
            raise AttributeError("the model is not built yet")
        return (None, *out)

    def summary(self, print_fn: Callable[[str], Any] | None = None, line_length: int | None = None) -> None:
        """Print Keras 3's table: Layer (type) | Output Shape | Param #, then the parameter counts and sizes."""
        summary.print_summary(self, print_fn, line_length)

    def save(self, filepath: str | os.PathLike[str]) -> None:
        """The whole model in one file (".keras" or ".npz"): architecture, weights, compile settings and
        optimizer state, so `xpnet.models.load_model` continues training exactly; no pickle, atomic."""
        saving.save_model(self, filepath)

    # ------------------------------------------------------------------ inference
    @exclusive("predict", shared=True)
    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = 0) -> np.ndarray:
        """Outputs for x as a host NumPy array: (n, outputs).

        NaN and inf inputs raise a ValueError. Where this backend's kernels carry a NaN input
        through every layer (probed once per backend and activation), the inputs are looked at
        only if an output is not finite, which spares a pass over them (~8% of predict on a
        CPU). An inf input then still raises unless the network maps it to its finite limit
        (e.g. a relu of -inf, a saturated sigmoid), which is the value an answer would have.
        """
        batch_size = check_batch_size(32 if batch_size is None else batch_size)
        by_output = self.ops is not None and self._carries_nan()
        x = self.check_inputs(x, "predict", finite=not by_output)
        if not self.built:
            self.build(x.shape[1:])
        ops = self.ops
        assert ops is not None
        last = self.layers[-1]
        # a built-in output activation works row by row: once over all the logits, not once per batch
        at_end = builtin_name(last.activation) is not None and last.inference_affine() is not None
        with ops.activate(), ReluAfterMaxPool(self):  # exact rewrites of the layer sequence
            X = data.upload(ops, x, self.dtype)
            n = X.shape[0]
            out = ops.zeros((n, *(d for d in self.output_shape[1:] if d is not None)), getattr(ops.xp, self.dtype))
            rows = min(batch_size, ops.inference_rows or batch_size)
            program = ops.inference_program(self._affine_chain(), n, rows) if at_end else None
            kept = [(layer, layer.keep_preactivation) for layer in self.layers]
            for layer, _ in kept:  # predict keeps no pre-activations, so activations may reuse their memory
                layer.keep_preactivation = False
            try:
                for lo in range(0, n, rows):
                    hi = min(lo + rows, n)
                    if program is not None:
                        program(X[lo:hi, ...], out[lo:hi])
                    else:
                        out[lo:hi, ...] = self.forward_logits(X[lo:hi, ...]) if at_end else self.forward(X[lo:hi, ...])
            finally:
                for layer, keep in kept:
                    layer.keep_preactivation = keep
            if program is not None and n:  # as the layer path leaves it: the last batch's logits
                last.preactivation = out[(n - 1) // rows * rows :, ...].copy()
            if at_end:
                assert last.activation is not None
                out = ops.activation_forward(last.activation, out, in_place=True)
            result = ops.to_numpy(out)
        if by_output and isinstance(x, np.ndarray) and not probably_finite(result):
            require_finite(x, "predict", "x")  # names the bad inputs; finite inputs may overflow: then no error
        return result

    def _affine_chain(self) -> list[Any] | None:
        """Per layer its `Affine` (None for an identity at inference), or None if some layer is neither."""
        chain = []
        for layer in self.layers:
            affine = layer.inference_affine()
            if affine is None and not layer.is_inference_identity():
                return None
            chain.append(affine)
        return chain

    def _carries_nan(self) -> bool:
        """Whether a NaN input surely reaches the output on this backend (then predict checks the outputs)."""
        ops = self.ops
        assert ops is not None
        if not ops.matmul_keeps_nan():
            return False
        for layer in self.layers:
            if not layer.carries_nan or type(layer).__module__.split(".")[:2] != ["xpnet", "layers"]:
                return False  # a user's layer may do anything
            if layer.activation is not None and not ops.carries_nan(layer.activation):
                return False
        return True

    def clone_structure(self, copy_layer: Callable[[Layer], Layer], name: str, dtype: str) -> Sequential:
        """The same stack over copy_layer(each layer), with this model's seed, in `dtype` (fresh weights)."""
        if self.feature_shape is None:
            raise ValueError("the model's input shape is unknown")
        return Sequential(
            [Input(self.feature_shape), *(copy_layer(layer) for layer in self.layers)],
            name=name,
            seed=self.seed,
            dtype=dtype,
        )

    def pop(self) -> Layer:
        """Remove and return the last layer; the others keep their weights (Keras's Sequential.pop)."""
        if not self.layers:
            raise TypeError("pop: there are no layers in the model")
        kept = [layer.get_weights() for layer in self.layers[:-1]] if self.built else None
        last = self.layers.pop()
        kept_layers = list(self.layers)
        self.inputs, self.outputs = [], []
        self._store, self._step = None, None
        self._set_order([])  # no graph until the shorter chain is built
        self.layers.extend(kept_layers)
        if self.layers and self._input_shape is not None:
            self.build()
            for layer, w in zip(self.layers, kept or [], strict=False):
                if w:
                    layer.set_weights(w)
            if self.loss is not None:
                self._resolve_metrics()
        return last

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """Keras's model config: {"name", "dtype", "seed", "layers": [InputLayer?, {"class_name", "config"}, ...]}."""
        return config.sequential_config(self)

    @classmethod
    def from_config(  # type: ignore[override]
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> Sequential:
        """A new model (new layers, weights drawn from the config's seed) from `get_config()`'s dict."""
        shape, layers, kwargs = saving.sequential_from_config(config, dict(custom_objects or {}))
        return cls([Input(shape), *layers] if shape is not None else layers, **kwargs)

    def __repr__(self) -> str:
        backend = self.ops.describe() if self.ops is not None else "unbuilt"
        return f"<Sequential name={self.name!r} layers={len(self.layers)} backend={backend!r} dtype={self.dtype}>"


def model_from_json(json_string: str, custom_objects: dict[str, Any] | None = None) -> Model:
    """The (unweighted, freshly initialized) model that `model.to_json()` describes: Sequential or Functional."""
    try:
        spec = json.loads(json_string)
    except (TypeError, json.JSONDecodeError) as e:
        got = f"{json_string!r:.80}"
        raise ValueError(f"model_from_json expects the JSON text of model.to_json(), received {got}") from e
    kind = spec.get("class_name") if isinstance(spec, dict) else None
    if kind not in ("Sequential", "Functional") or "config" not in spec:
        what = kind if isinstance(spec, dict) else type(spec).__name__
        raise ValueError(f"model_from_json builds Sequential and Functional models; the JSON describes {what!r}")
    if kind == "Sequential":
        return Sequential.from_config(spec["config"], custom_objects)
    return Model.from_config(spec["config"], custom_objects)


def clone_model(model: Model, custom_objects: dict[str, Any] | None = None) -> Model:
    """A new model with the same architecture: new layers, freshly initialized weights (as Keras), not compiled."""
    if not isinstance(model, Model):
        raise TypeError(f"clone_model expects a Sequential or functional Model, received {type(model).__name__}")
    spec = model.get_config()
    entries = [e for e in spec["layers"] if e["class_name"] != "InputLayer"]
    for i, (layer, entry) in enumerate(zip(model.layers, entries, strict=True)):
        if isinstance(layer, Dropout) and layer.seed == layer_seed(model.seed, i):
            entry["config"]["seed"] = None  # drawn from the model's seed at build: the clone draws its own
    if isinstance(model, Sequential):
        spec["seed"] = None  # a new seed: fresh weights, as Keras's clone_model
        return type(model).from_config(spec, custom_objects)
    return Model.from_config(spec, custom_objects)  # no seed given: a new one


def load_model(
    filepath: str | os.PathLike[str],
    custom_objects: dict[str, Any] | None = None,
    compile: bool = True,
    backend: str | Ops | None = None,
) -> Model:
    """A model saved by `model.save`, on `backend` (default: as a new model would choose).

    custom_objects: {class name: class} for your own layers, activations, losses or optimizers.
    compile=False gives the architecture and weights only.
    """
    custom = dict(custom_objects or {})
    header, arrays = saving.read_model_file(filepath)
    spec = header["model"]
    if spec.get("class_name") == "Functional":
        graph = Model.from_config(spec["config"], custom, seed=spec["seed"], dtype=spec["dtype"])
        if backend is not None:
            graph.to_backend(backend)
        saving.restore_state(graph, header if compile else {**header, "compile": None}, arrays, custom)
        return graph
    if spec.get("class_name") != "Sequential":
        raise ValueError(
            f"{filepath} holds a {spec.get('class_name')} model; this xpnet loads Sequential and Functional models"
        )
    layers = [saving.layer_from_config(entry, custom) for entry in spec["layers"]]
    model = Sequential(
        [Input(tuple(spec["input_shape"])), *layers], name=spec["name"], seed=spec["seed"], dtype=spec["dtype"]
    )
    if backend is not None:
        model.to_backend(backend)
    saving.restore_state(model, header if compile else {**header, "compile": None}, arrays, custom)
    return model
