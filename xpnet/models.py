"""`Sequential`: a linear stack of layers, its weights and predict; training comes from `Trainer`.

The weights live in one flat `ParamStore` (xpnet/params.py); compile, fit, evaluate and
compute_gradients in xpnet/training/. This file is the model's structure: adding and building
layers, the forward and backward traversals, summary, weight I/O and inference.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import saving, weights_io
from ._checks import probably_finite, require_finite
from .backend import Ops, get_backend
from .backend.base import builtin_name
from .layers.base import Layer, Shape, _as_shape
from .layers.dropout import Dropout
from .layers.fusion import ReluAfterMaxPool
from .layers.input import Input
from .params import ParamStore
from .random import init_rng, layer_seed, next_model_seed
from .training import data
from .training.trainer import Trainer, check_batch_size

Array = Any


class Sequential(Trainer):
    """A linear stack of layers: `Sequential([Flatten(input_shape=(28, 28)), Dense(300, "relu"), ...])`.

    seed: makes initial weights, shuffles and dropout masks reproducible (any backend).
    dtype: "float32" (default) or "float64" for parameters and computation.
    """

    def __init__(
        self,
        layers: Sequence[Layer | Input] | None = None,
        name: str = "sequential",
        seed: int | None = None,
        dtype: str = "float32",
    ) -> None:
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', received {dtype!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer (or None), received {seed!r}")
        self.name, self.dtype = name, dtype
        self.seed = int(seed) if seed is not None else next_model_seed()
        self.layers: list[Layer] = []
        self.ops: Ops | None = None
        self._input_shape: Shape | None = None
        self._store: ParamStore | None = None
        self._init_trainer()
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------ structure
    def add(self, layer: Layer | Input) -> None:
        if isinstance(layer, Input):
            if self.layers:
                raise ValueError("Input(...) must come first in a Sequential model")
            self._input_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a Layer, received {type(layer).__name__}")
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
        shape = self._input_shape
        for i, layer in enumerate(self.layers):
            layer.index = i
            shape = layer.build(shape)
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

    def install(self, ops: Ops, host_params: np.ndarray) -> None:
        """Put the flat parameters on `ops` and bind each layer to its views."""
        self._store = ParamStore(ops, self.layers, host_params, self.dtype)
        self.ops = ops
        self._step = None
        if self.optimizer is not None:
            self.optimizer.build(ops, self._store.params)

    def to_backend(self, backend: str | Ops) -> Sequential:
        """Move the parameters to another backend (an explicit host round trip); optimizer state restarts."""
        ops = get_backend(backend)
        self._backend_request = ops
        if self.built and ops is not self.ops:
            self.install(ops, self.store.host_params())
        return self

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

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers are {[lyr.name for lyr in self.layers]}")

    def count_params(self) -> int:
        return self.store.size

    def summary(self, print_fn: Callable[[str], Any] | None = None, line_length: int = 65) -> None:
        """Print the Keras table: Layer (type) | Output Shape | Param #, then the totals."""
        total = self.count_params()
        out = print_fn or print
        names = [f" {layer.name} ({type(layer).__name__})" for layer in self.layers]
        shapes = ["(None, " + ", ".join(map(str, layer.output_shape or ())) + ")" for layer in self.layers]
        # the columns widen for long names and shapes (max_pooling2d_1 (MaxPooling2D)) instead of running together
        c1 = max(int(line_length * 0.45), max(map(len, names), default=0) + 2)
        c2 = max(int(line_length * 0.85), c1 + max(map(len, shapes), default=0) + 2)
        line_length = max(line_length, c2 + 10)
        cols = [0, c1, c2]

        def row(*cells: str) -> str:
            line = ""
            for c, start in zip(cells, cols, strict=True):
                line = (line + " " * max(0, start - len(line)) + c)[: start + 64]
            return line

        lines = [f'Model: "{self.name}"', "_" * line_length, row(" Layer (type)", "Output Shape", "Param #")]
        lines.append("=" * line_length)
        for i, layer in enumerate(self.layers):
            lines.append(row(names[i], shapes[i], str(layer.count_params())))
            lines.append("=" * line_length if i == len(self.layers) - 1 else "")
        lines += [
            f"Total params: {total:,}",
            f"Trainable params: {total:,}",
            "Non-trainable params: 0",
            "_" * line_length,
        ]
        for line in lines:
            out(line)

    # ------------------------------------------------------------------ traversals
    def forward(self, x: Array, training: bool = False) -> Array:
        """The model's output for device batch x: (batch, *output_shape)."""
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def forward_logits(self, x: Array, training: bool = False) -> Array:
        """Forward through every layer but the last layer's activation: its pre-activation u."""
        for layer in self.layers[:-1]:
            x = layer.forward(x, training)
        return self.layers[-1].forward_preactivation(x, training)

    def backward(self, grad: Array, from_logits: bool) -> None:
        """Backprop ∂L/∂output (∂L/∂u of the last layer when from_logits) down to the first layer with weights."""
        layers = self.layers
        first = next((i for i, layer in enumerate(layers) if layer.param_specs()), len(layers))
        for i in range(len(layers) - 1, first - 1, -1):
            need = i > first  # nobody needs ∂L/∂x of the first layer with weights
            if from_logits and i == len(layers) - 1:
                grad = layers[i].backward_preactivation(grad, need)
            else:
                grad = layers[i].backward(grad, need)

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

    def save(self, filepath: str | os.PathLike[str]) -> None:
        """The whole model in one file (".keras" or ".npz"): architecture, weights, compile settings and
        optimizer state, so `xpnet.models.load_model` continues training exactly; no pickle, atomic."""
        saving.save_model(self, filepath)

    def save_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Write all parameters to `filepath` (.npz, no pickle) atomically; readable by any backend."""
        weights_io.save(filepath, self.store.layout(), self.get_weights())

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Load a file written by `save_weights`; an architecture mismatch raises and changes nothing."""
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

    # ------------------------------------------------------------------ inference
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
        with ops.activate(), ReluAfterMaxPool(self.layers):  # exact rewrites of the layer sequence
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

    def trace(self, x: Any, y: Any = None, training: bool = True) -> Any:
        """Layer-by-layer u, h (and with y: δ and gradients) in the course's notation; see `xpnet.trace.trace`."""
        from .trace import trace

        return trace(self, x, y, training)

    def check_gradients(self, x: Any, y: Any, **kwargs: Any) -> Any:
        """Finite-difference check of this model's gradients in float64; see `xpnet.gradcheck.check_gradients`."""
        from .gradcheck import check_gradients

        return check_gradients(self, x, y, **kwargs)

    def predict_on_batch(self, x: Any) -> np.ndarray:
        """Outputs for x as one batch: (n, outputs)."""
        return self.predict(x, batch_size=max(1, len(x)))

    def pop(self) -> Layer:
        """Remove and return the last layer; the others keep their weights (Keras's Sequential.pop)."""
        if not self.layers:
            raise TypeError("pop: there are no layers in the model")
        kept = [layer.get_weights() for layer in self.layers[:-1]] if self.built else None
        last = self.layers.pop()
        self._store, self.ops, self._step = None, self.ops, None
        if self.layers and self._input_shape is not None:
            self.build()
            for layer, w in zip(self.layers, kept or [], strict=False):
                if w:
                    layer.set_weights(w)
            if self.loss is not None:
                self._resolve_metrics()
        return last

    def __call__(self, x: Any) -> np.ndarray:
        return self.predict(x, batch_size=max(1, len(x)))

    def __repr__(self) -> str:
        backend = self.ops.describe() if self.ops is not None else "unbuilt"
        return f"<Sequential name={self.name!r} layers={len(self.layers)} backend={backend!r} dtype={self.dtype}>"


def load_model(
    filepath: str | os.PathLike[str],
    custom_objects: dict[str, Any] | None = None,
    compile: bool = True,
    backend: str | Ops | None = None,
) -> Sequential:
    """A model saved by `model.save`, on `backend` (default: as a new model would choose).

    custom_objects: {class name: class} for your own layers, activations, losses or optimizers.
    compile=False gives the architecture and weights only.
    """
    custom = dict(custom_objects or {})
    header, arrays = saving.read_model_file(filepath)
    spec = header["model"]
    if spec.get("class_name") != "Sequential":
        raise ValueError(f"{filepath} holds a {spec.get('class_name')} model; this xpnet loads Sequential models")
    layers = [saving.layer_from_config(entry, custom) for entry in spec["layers"]]
    model = Sequential(
        [Input(tuple(spec["input_shape"])), *layers], name=spec["name"], seed=spec["seed"], dtype=spec["dtype"]
    )
    if backend is not None:
        model.to_backend(backend)
    saving.restore_state(model, header if compile else {**header, "compile": None}, arrays, custom)
    return model
