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
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import probably_finite, require_finite
from ..backend import Ops
from ..backend.base import builtin_name
from ..io import config, h5_model, h5_weights, keras_format, saving
from ..io.file_checks import FileFormatError, parameter_budget
from ..io.serialization import merged_custom_objects
from ..layers.base import Layer, Shape, _as_shape
from ..layers.dropout import Dropout
from ..layers.fusion import ReluAfterMaxPool
from ..layers.input import Input
from ..layers.node import KerasTensor, Node
from ..random import layer_seed
from ..training import data
from ..training.callbacks import Callback
from ..training.forward_program import forward_program
from ..training.guard import exclusive
from ..training.stream import is_stream
from ..training.trainer import check_batch_size
from . import sharing, summary
from .functional import Model

Array = Any


class Sequential(Model):
    """A linear stack of layers: `Sequential([Flatten(input_shape=(28, 28)), Dense(300, "relu"), ...])`.

    seed: makes initial weights, shuffles and dropout masks reproducible (any backend).
    dtype: "float32" (default) or "float64" for parameters and computation.
    Once its input shape is known it is the functional `Model` of the chain Input → layer 1 → ….
    """

    def __init__(
        self,
        layers: Sequence[Layer | Input | Model] | None = None,
        name: str = "sequential",
        seed: int | None = None,
        dtype: str = "float32",
    ) -> None:
        self._setup(name, seed, dtype)
        self._input_shape: Shape | None = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer | Input | Model) -> None:
        """Append a layer, or a model used as one layer (`Sequential([model, Softmax()])`, see xpnet/sharing.py)."""
        if isinstance(layer, Input):
            if self.layers:
                raise ValueError("Input(...) must come first in a Sequential model")
            self._input_shape = layer.feature_shape
            return
        if not isinstance(layer, (Layer, Model)):
            raise TypeError(f"Sequential.add expects a Layer or a Model, received {type(layer).__name__}")
        if layer is self:
            raise ValueError(f"a model cannot be a layer of itself ({self.name!r})")
        # names are unique over the weight-holding layers too: "dense/kernel" must name one weight
        taken = {lyr.name for lyr in [*self.layers, *sharing.leaves(self.layers)]}
        if isinstance(layer, Model):
            clash = sorted({str(leaf.name) for leaf in layer.leaf_layers} & taken)
            if clash:
                raise ValueError(
                    f"model {layer.name!r} has layers named {clash}, names the model already uses; "
                    "layer names must be unique (name the layers, e.g. Dense(5, name='head'))"
                )
        if layer.name is None:
            base, k = layer.default_name, 0
            layer.name = base
            while layer.name in taken:
                k += 1
                layer.name = f"{base}_{k}"
        elif isinstance(layer, Model) and layer.name == layer.default_name and layer.name in taken:
            base, k = layer.name, 1  # Keras names each model uniquely: "sequential_1" for the second
            while f"{base}_{k}" in taken:
                k += 1
            layer.name = f"{base}_{k}"
        elif layer.name in taken:
            raise ValueError(f"a layer named {layer.name!r} is already in the model; layer names must be unique")
        if isinstance(layer, Sequential) and not layer.built and not layer.layers:
            raise ValueError(f"model {layer.name!r} has no layers; add some before using it as a layer")
        if not self.layers and self._input_shape is None and layer.requested_input_shape is not None:
            self._input_shape = layer.requested_input_shape
        self.layers.append(layer)  # type: ignore[arg-type]  # a nested Model stands where a Layer would
        if self._input_shape is not None:
            self.build()  # the layers that hold weights keep them

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
        self._forget_calls()
        source = Input(self._input_shape, name="input_layer")
        t: KerasTensor = source
        nodes: list[Node] = []
        for layer in self.layers:
            if isinstance(layer, Model):
                if isinstance(layer, Sequential) and not layer.built:
                    layer.build(t.feature_shape, backend=backend if backend is not None else self._backend_request)
                t = layer.call_symbolic(t)
                nodes.append(t.node)  # type: ignore[arg-type]
                continue
            layer.build_for(t.feature_shape)
            nodes.append(Node(layer, [t], False))
            t = nodes[-1].output
        self.inputs, self.outputs = [source], [t]
        self._set_order(nodes)
        super().build(backend=backend)  # the weights, drawn as for any Model

    def _forget_calls(self) -> None:
        """Drop this model's graph from its layers' calls (`layer.output` is then the next graph's)."""
        for node in self._nodes:
            calls = getattr(node.layer, "inbound_nodes", None)
            if calls is not None and node in calls:
                calls.remove(node)

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
        if self.outputs:
            return self.outputs[0].shape
        out = self.layers[-1].output_shape if self.layers and not isinstance(self.layers[-1], Model) else None
        if out is None:
            raise AttributeError("the model is not built yet")
        return (None, *out)

    def summary(self, print_fn: Callable[[str], Any] | None = None, line_length: int | None = None) -> None:
        """Print Keras 3's table: Layer (type) | Output Shape | Param #, then the parameter counts and sizes."""
        summary.print_summary(self, print_fn, line_length)

    def save(self, filepath: str | os.PathLike[str]) -> None:
        """The whole model in one file (".keras" or ".npz"): architecture, weights, compile settings and
        optimizer state, so `xpnet.models.load_model` continues training exactly; no pickle, atomic.
        A ".h5" name writes Keras's legacy HDF5 layout instead (h5py needed; see xpnet/h5_model.py)."""
        if h5_model.is_legacy_h5(filepath):
            h5_model.save_model(self, filepath)
            return
        saving.save_model(self, filepath)

    @exclusive("predict", shared=True)
    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int | str = 0,
        steps: int | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> np.ndarray:
        """Outputs for x as a host NumPy array: (n, outputs).

        NaN and inf inputs raise a ValueError. Where this backend's kernels carry a NaN input
        through every layer (probed once per backend and activation), the inputs are looked at
        only if an output is not finite, which spares a pass over them (~8% of predict on a
        CPU). An inf input then still raises unless the network maps it to its finite limit
        (e.g. a relu of -inf, a saturated sigmoid), which is the value an answer would have.
        """
        if callbacks or steps is not None or is_stream(x):  # batch by batch: a PyDataset, a generator, hooks
            return self._predict_batches(x, batch_size, list(callbacks or []), steps)
        batch_size = check_batch_size(32 if batch_size is None else batch_size)
        by_output = self.ops is not None and self._carries_nan()
        x = self.check_inputs(x, "predict", finite=not by_output)
        if not self.built:
            self.build(x.shape[1:])
        self.hold_layers()
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
            graphs = forward_program(self, "predict", False)  # on CuPy, a CUDA graph per batch shape
            forward = (lambda a: [self.forward_logits(a)]) if at_end else (lambda a: [self.forward(a)])
            try:
                for lo in range(0, n, rows):
                    hi = min(lo + rows, n)
                    if program is not None:
                        program(X[lo:hi, ...], out[lo:hi])
                    else:
                        out[lo:hi, ...] = graphs.outputs(forward, [X[lo:hi, ...]])[0]
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
        self.hold_layers()
        last = self.layers.pop()
        kept_layers = list(self.layers)
        self.inputs, self.outputs = [], []
        self._store, self._step = None, None
        self._forget_calls()
        self._set_order([])  # no graph until the shorter chain is built
        self.layers.extend(kept_layers)
        if self.layers and self._input_shape is not None:
            self.build()  # the layers keep their weights
            if self.loss is not None:
                self._resolve_metrics()
        return last

    def get_config(self) -> dict[str, Any]:
        """Keras's model config: {"name", "dtype", "seed", "layers": [InputLayer?, {"class_name", "config"}, ...]}."""
        return config.sequential_config(self)

    @classmethod
    def from_config(  # type: ignore[override]
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> Sequential:
        """A new model (new layers, weights drawn from the config's seed) from `get_config()`'s dict."""
        shape, layers, kwargs = saving.sequential_from_config(config, merged_custom_objects(custom_objects))
        return cls([Input(shape), *layers] if shape is not None else layers, **kwargs)

    def __repr__(self) -> str:
        backend = self.ops.describe() if self.ops is not None else "unbuilt"
        return f"<Sequential name={self.name!r} layers={len(self.layers)} backend={backend!r} dtype={self.dtype}>"


saving.MODEL_CLASSES["Sequential"] = Sequential


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
    custom = merged_custom_objects(custom_objects)
    if h5_model.is_legacy_h5(filepath):
        return _load_h5(filepath, custom, compile, backend)
    return _load(filepath, custom, compile, backend)


def _load(path: str | os.PathLike[str], custom: dict[str, Any], compile: bool, backend: Any) -> Model:
    """The model in `path` (Keras 3 .keras, or xpnet's .npz-based file), checked before anything is built.

    The architecture may need at most as many parameters as the file stores (`file_checks.
    parameter_budget`), so a crafted file cannot make xpnet draw weights its size does not justify.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a model file")
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if keras_format.is_keras_zip(path):
        return _load_keras(path, custom, compile, backend)
    header, arrays = saving.read_model_file(path)
    kind = saving.MODEL_KIND
    with parameter_budget(path, kind, arrays["params"].size), saving.as_file_error(path, kind, "its architecture"):
        model = _build_from_spec(header["model"], custom, backend, path)
    with saving.as_file_error(path, kind, "its saved state"):
        if header["layout"] != model.store.layout():
            raise FileFormatError(path, kind, "its weights do not fit the architecture it describes")
        saving.restore_state(model, header if compile else {**header, "compile": None}, arrays, custom)
    return model


def _load_keras(path: Path, custom: dict[str, Any], compile: bool, backend: Any) -> Model:
    kind = keras_format.KIND
    config, stored, header, slots = keras_format.read(path)
    count = sum(a.size for arrays in stored.values() for a in arrays)
    inner = config["config"]
    seed = header["model"].get("seed") if isinstance(header, dict) and isinstance(header.get("model"), dict) else None
    with parameter_budget(path, kind, count), saving.as_file_error(path, kind, "its architecture"):
        dtype = inner.get("dtype", "float32")
        if isinstance(dtype, dict):  # Keras's DTypePolicy
            dtype = dtype["config"]["name"]
        if config["class_name"] == "Functional":
            spec = {"class_name": "Functional", "seed": seed, "dtype": dtype, "config": inner}
        else:
            spec = {"class_name": "Sequential", "keras_config": {**inner, "seed": seed}}
        model = _build_from_spec(spec, custom, backend, path)
    with saving.as_file_error(path, kind, "its weights"):
        model.set_weights(h5_weights.match(stored, model.layers, path))
    if header is not None:
        with saving.as_file_error(path, kind, "its saved state"):
            saving.check_header({**header, "layout": model.store.layout()}, path, kind)
            arrays = {"params": model.store.host_params(), **{f"slot_{k}": v for k, v in slots.items()}}
            full = {**header, "layout": model.store.layout()}
            saving.restore_state(model, full if compile else {**full, "compile": None}, arrays, custom)
    elif compile and isinstance(config.get("compile_config"), dict) and config["compile_config"]:
        with saving.as_file_error(path, kind, "its compile_config"):
            saving.compile_from_keras(model, config["compile_config"], custom)
    return model


def _build_from_spec(spec: dict[str, Any], custom: dict[str, Any], backend: Any, path: str | os.PathLike[str]) -> Model:
    """A new model from a file's architecture: {"class_name": "Functional", "config", "seed", "dtype"},
    {"class_name": "Sequential", "layers", "input_shape", "name", "seed", "dtype"} (xpnet's .npz file),
    or {"class_name": "Sequential", "keras_config": Sequential.get_config()} (a .keras file)."""
    model: Model
    if spec.get("class_name") == "Functional":
        model = Model.from_config(spec["config"], custom, seed=spec.get("seed"), dtype=spec.get("dtype", "float32"))
    elif spec.get("class_name") == "Sequential" and "keras_config" in spec:
        shape, layers, kwargs = saving.sequential_from_config(spec["keras_config"], custom)
        if shape is None:
            raise ValueError("the Sequential config has no InputLayer, so its input shape is unknown")
        model = Sequential([Input(shape), *layers], **kwargs)
    elif spec.get("class_name") == "Sequential":
        layers = [saving.layer_from_config(entry, custom) for entry in spec["layers"]]
        model = Sequential(
            [Input(tuple(spec["input_shape"])), *layers], name=spec["name"], seed=spec["seed"], dtype=spec["dtype"]
        )
    else:
        raise ValueError(f"{path} holds a {spec.get('class_name')} model; xpnet loads Sequential and Functional models")
    if backend is not None:
        model.to_backend(backend)
    return model


def _load_h5(
    filepath: str | os.PathLike[str], custom: dict[str, Any], compile: bool, backend: str | Ops | None
) -> Model:
    """load_model for a legacy .h5 file (see xpnet/h5_model.py): xpnet's exact state when xpnet wrote it.

    The weights are read (bounded) before the architecture is built, which may need at most as many
    parameters as the file stores; whatever a crafted file makes go wrong is one FileFormatError line.
    """
    kind = h5_model.KIND
    with h5_model.LegacyFile(filepath) as f:
        header = f.xpnet_header
        spec = header.get("model") if isinstance(header, dict) else None
        model: Model
        with parameter_budget(filepath, kind, f.count()), saving.as_file_error(filepath, kind, "its architecture"):
            if spec is not None and spec.get("class_name") == "Functional":
                model = Model.from_config(spec["config"], custom, seed=spec["seed"], dtype=spec["dtype"])
            elif spec is not None:
                layers = [saving.layer_from_config(entry, custom) for entry in spec["layers"]]
                model = Sequential(
                    [Input(tuple(spec["input_shape"])), *layers],
                    name=spec["name"],
                    seed=spec["seed"],
                    dtype=spec["dtype"],
                )
            else:  # written by Keras
                model = model_from_json(f.model_json(), custom)
            if backend is not None:
                model.to_backend(backend)
        with saving.as_file_error(filepath, kind, "its weights"):
            model.set_weights(f.layer_weights(model))
        with saving.as_file_error(filepath, kind, "its saved state"):
            if header is not None:
                saving.check_header({**header, "layout": model.store.layout()}, filepath, kind)
                arrays = {"params": model.store.host_params(), **f.slots(int(model.store.params.shape[0]))}
                saving.restore_state(model, header if compile else {**header, "compile": None}, arrays, custom)
            elif compile and f.training_config is not None:
                h5_model.compile_from_keras(model, f.training_config, custom)
    return model
