"""`Sequential`: the Keras workflow (add → compile → fit → evaluate → predict) over flat buffers.

All parameters live in one flat (P,) buffer and all gradients in another; each layer sees
reshaped views of its slice. The optimizer and weight I/O then work on one array, and data
crosses host↔device only at the edges of `fit` / `evaluate` / `predict`.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard, TypeVar

import numpy as np

from . import distributed, weights_io
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers as opt_mod
from ._checks import numeric_array, probably_finite, require_finite
from .activations import NotDifferentiableError
from .backend import Ops, get_backend
from .backend.base import builtin_name
from .callbacks import Callback, History, Progress, format_logs
from .layers.base import Layer, Shape, _as_shape
from .layers.dense import Dense
from .layers.dropout import Dropout
from .layers.flatten import Flatten
from .layers.input import Input
from .random import init_rng, layer_seed, next_model_seed, shuffle_rng

Array = Any
_DIST_READ_EVERY = 100  # steps between progress reads in a data-parallel run
_DEVICE_MODULES = {"cupy", "torch", "jax", "jaxlib", "tensorflow", "array_api_strict", "dask"}


class Sequential:
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
        self.name, self.dtype = name, dtype
        self.seed = int(seed) if seed is not None else next_model_seed()
        self.layers: list[Layer] = []
        self.ops: Ops | None = None
        self.optimizer: opt_mod.Optimizer | None = None
        self.loss: losses_mod.Loss | None = None
        self.metrics: list[metrics_mod.Metric] = []
        self.stop_training = False
        self.history: History | None = None
        self._input_shape: Shape | None = None
        self._metric_ids: list[Any] = []
        self._backend_request: str | Ops | None = None
        self._params: Array = None
        self._grads: Array = None
        self._reg_terms: list[tuple[Layer, str, Any]] = []
        self._comm: distributed.Communicator = distributed.Communicator()
        self._epochs_trained = 0  # over the model's life: keys the shuffle of the next epoch
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
        return self._params is not None

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
        ops = get_backend(backend if backend is not None else (self._backend_request or self.ops))
        self._install(ops, host)

    def _install(self, ops: Ops, host_params: np.ndarray) -> None:
        """Upload the flat parameters to `ops` and bind each layer to its views."""
        xp = ops.xp
        with ops.activate():
            self._params = ops.asarray(np.ascontiguousarray(host_params, dtype=self.dtype))
            self._grads = ops.zeros(host_params.shape[0], getattr(xp, self.dtype))
            off = 0
            self._reg_terms = []
            for layer in self.layers:
                params, grads = {}, {}
                for spec in layer.param_specs():
                    n = int(np.prod(spec.shape))
                    params[spec.name] = xp.reshape(self._params[off : off + n], spec.shape)
                    grads[spec.name] = xp.reshape(self._grads[off : off + n], spec.shape)
                    if spec.regularizer is not None:
                        self._reg_terms.append((layer, spec.name, spec.regularizer))
                    off += n
                layer.bind(ops, params, grads)
        self.ops = ops
        if self.optimizer is not None:
            self.optimizer.build(ops, self._params)

    def to_backend(self, backend: str | Ops) -> Sequential:
        """Move the parameters to another backend (an explicit host round trip); optimizer state restarts."""
        ops = get_backend(backend)
        self._backend_request = ops
        if self.built and ops is not self.ops:
            self._install(ops, self._host_params())
        return self

    def _host_params(self) -> np.ndarray:
        assert self.ops is not None
        return self.ops.to_numpy(self._params)

    def _require_built(self, what: str) -> Ops:
        if not self.built or self.ops is None:
            raise ValueError(
                f"{what}: the model is not built yet. Give the first layer input_shape=..., "
                "or call build() or fit() first"
            )
        return self.ops

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
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn: Callable[[str], Any] | None = None, line_length: int = 65) -> None:
        """Print the Keras table: Layer (type) | Output Shape | Param #, then the totals."""
        self._require_built("summary")
        out = print_fn or print
        cols = [0, int(line_length * 0.45), int(line_length * 0.85)]

        def row(*cells: str) -> str:
            line = ""
            for c, start in zip(cells, cols, strict=True):
                line = (line + " " * max(0, start - len(line)) + c)[: start + 64]
            return line

        total = self.count_params()
        lines = [f'Model: "{self.name}"', "_" * line_length, row(" Layer (type)", "Output Shape", "Param #")]
        lines.append("=" * line_length)
        for i, layer in enumerate(self.layers):
            shape = "(None, " + ", ".join(map(str, layer.output_shape or ())) + ")"
            lines.append(row(f" {layer.name} ({type(layer).__name__})", shape, str(layer.count_params())))
            lines.append("=" * line_length if i == len(self.layers) - 1 else "")
        lines += [
            f"Total params: {total:,}",
            f"Trainable params: {total:,}",
            "Non-trainable params: 0",
            "_" * line_length,
        ]
        for line in lines:
            out(line)

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> list[np.ndarray]:
        """All parameters as host NumPy arrays, layer by layer ([kernel, bias] for each Dense)."""
        self._require_built("get_weights")
        flat = self._host_params()
        out, off = [], 0
        for layer in self.layers:
            for spec in layer.param_specs():
                n = int(np.prod(spec.shape))
                out.append(flat[off : off + n].reshape(spec.shape).copy())
                off += n
        return out

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace all parameters; shapes are checked first, so a mismatch leaves the model unchanged."""
        ops = self._require_built("set_weights")
        specs = [(layer, s) for layer in self.layers for s in layer.param_specs()]
        if len(weights) != len(specs):
            raise ValueError(f"set_weights expects {len(specs)} arrays for this model, received {len(weights)}")
        arrays = []
        for (layer, s), w in zip(specs, weights, strict=True):
            a = np.asarray(w)
            if a.shape != s.shape:
                raise ValueError(f"set_weights: {layer.name}/{s.name} must have shape {s.shape}, received {a.shape}")
            if a.dtype.kind not in "biuf" or not np.all(np.isfinite(a)):
                raise ValueError(f"set_weights: {layer.name}/{s.name} must be finite numbers, received dtype {a.dtype}")
            arrays.append(a.astype(self.dtype).ravel())
        flat = np.concatenate(arrays) if arrays else np.zeros(0, self.dtype)
        with ops.activate():
            self._params[...] = ops.asarray(flat)

    def _layout(self) -> list[dict[str, Any]]:
        return [
            {
                "name": layer.name,
                "class": type(layer).__name__,
                "params": {s.name: list(s.shape) for s in layer.param_specs()},
            }
            for layer in self.layers
        ]

    def save_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Write all parameters to `filepath` (.npz, no pickle) atomically; readable by any backend."""
        self._require_built("save_weights")
        weights_io.save(filepath, self._layout(), self.get_weights())

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Load a file written by `save_weights`; an architecture mismatch raises and changes nothing."""
        self._require_built("load_weights")
        layout, arrays = weights_io.load(filepath)
        mine = self._layout()
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

    # ------------------------------------------------------------------ compile
    def compile(
        self,
        optimizer: str | opt_mod.Optimizer = "rmsprop",
        loss: str | losses_mod.Loss | None = None,
        metrics: Sequence[Any] | None = None,
        backend: str | Ops | None = None,
        distribute: bool | str | distributed.Communicator | None = "auto",
    ) -> None:
        """Choose optimizer, loss, metrics and (optionally) the backend: "auto", "numpy", "cupy", "cupy:N".

        distribute: "auto" trains data-parallel over MPI when the script runs under `mpiexec -n N`
        (N > 1); True requires MPI; False always trains in this process alone.
        """
        self._comm = distributed.get_communicator(distribute)
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        if isinstance(metrics, (str, metrics_mod.Metric)) or callable(metrics):
            metrics = [metrics]
        self.loss = losses_mod.get(loss)
        self.optimizer = opt_mod.get(optimizer)
        self._metric_ids = list(metrics or [])
        self.metrics = []
        if backend is not None:
            self._backend_request = get_backend(backend)
        if self.built:
            assert self.ops is not None
            target = self._backend_request if isinstance(self._backend_request, Ops) else self.ops
            if target is not self.ops:
                self._install(target, self._host_params())
            else:
                self.optimizer.build(self.ops, self._params)
            self._resolve_metrics()

    def _resolve_metrics(self) -> None:
        assert self.loss is not None
        width = self.output_shape[-1] or 1
        self.metrics = [metrics_mod.get(m, self.loss, width) for m in self._metric_ids]
        names = ["loss"] + [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"metric names must be unique, received {names}")

    def trace(self, x: Any, y: Any = None, training: bool = True) -> Any:
        """Layer-by-layer u, h (and with y: δ and gradients) in the course's notation; see `xpnet.inspect.trace`."""
        from .inspect import trace

        return trace(self, x, y, training)

    def check_gradients(self, x: Any, y: Any, **kwargs: Any) -> Any:
        """Finite-difference check of this model's gradients in float64; see `xpnet.gradcheck.check_gradients`."""
        from .gradcheck import check_gradients

        return check_gradients(self, x, y, **kwargs)

    @property
    def comm(self) -> distributed.Communicator:
        """The data-parallel communicator (rank, size); a one-process stand-in without MPI."""
        return self._comm

    @property
    def metrics_names(self) -> list[str]:
        return ["loss"] + [m.name for m in self.metrics]

    def _fused(self) -> bool:
        """Whether the loss can start backprop from the last layer's pre-activation."""
        assert self.loss is not None
        want = self.loss.fused_activation()
        act = getattr(self.layers[-1], "activation", None)
        return want is not None and act is not None and act.name == want and hasattr(self.layers[-1], "preactivation")

    # ------------------------------------------------------------------ input checks
    def _check_x(self, x: Any, what: str, finite: bool = True) -> Any:
        """Host arrays -> validated float NumPy array; this backend's own arrays pass through.

        finite=False leaves the NaN/inf check to the caller.
        """
        ops = self.ops
        if ops is not None and ops.is_native(x) and not isinstance(x, np.ndarray):
            return x
        mod = type(x).__module__.split(".")[0]
        if mod in _DEVICE_MODULES:
            where = ops.describe() if ops is not None else "numpy"
            raise TypeError(
                f"{what}: x is a {mod}.{type(x).__name__} (device {getattr(x, 'device', '?')}) but this model runs "
                f"on the {where!r} backend. Move it to the host first (for CuPy: x.get() or cupy.asnumpy(x)), or "
                f"compile(..., backend=...) for that device."
            )
        a = numeric_array(x, what, "x")
        if self._input_shape is not None and tuple(a.shape[1:]) != self._input_shape:
            raise ValueError(
                f"{what}: the model expects input of shape {self.input_shape}, received x of shape {a.shape} "
                f"(features {tuple(a.shape[1:])} instead of {self._input_shape})"
            )
        if finite:
            require_finite(a, what, "x")
        return a

    def _check_y(self, y: Any, n: int, what: str) -> np.ndarray:
        assert self.loss is not None
        if y is None:
            raise ValueError(f"{what}: y (the targets) is required")
        mod = type(y).__module__.split(".")[0]
        if mod in _DEVICE_MODULES:
            y = y.get() if hasattr(y, "get") else np.asarray(y)
        b = numeric_array(y, what, "y")
        if b.shape[0] != n:
            raise ValueError(f"{what}: x and y have different numbers of samples: x has {n}, y has {b.shape[0]}")
        require_finite(b, what, "y")
        b = self.loss.prepare_targets(b, self.output_shape[-1] or 1)
        return b if self.loss.sparse else b.astype(self.dtype, copy=False)

    def _prepare(self, x: Any, y: Any, what: str) -> tuple[Any, np.ndarray | None]:
        if self.loss is None or self.optimizer is None:
            raise RuntimeError(f"You must compile the model before {what}(): model.compile(optimizer, loss, metrics)")
        x = self._check_x(x, what)
        if not self.built:
            self.build(x.shape[1:])
            self._resolve_metrics()
        elif not self.metrics and self._metric_ids:
            self._resolve_metrics()
        yy = self._check_y(y, x.shape[0], what) if y is not None else None
        return x, yy

    def _upload(self, a: Any, float_dtype: bool = True) -> Array:
        assert self.ops is not None
        if self.ops.is_native(a) and not isinstance(a, np.ndarray):
            return a
        return self.ops.asarray(np.ascontiguousarray(a, dtype=self.dtype) if float_dtype else a)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int | str = "auto",
        callbacks: Sequence[Callback] | None = None,
        validation_split: float = 0.0,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        initial_epoch: int = 0,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> History:
        """Train for `epochs` epochs of mini-batch gradient descent; returns a History.

        x: (n, *input_shape) numbers; y: (n,) int labels for sparse losses, else (n, outputs).
        resume_from: a checkpoint folder (or file) written by `xpnet.checkpoint.Checkpoint`;
        training continues from its epoch and step with identical results. An empty folder
        starts from the beginning.
        Under `mpiexec -n N`, `batch_size` is per rank: each step uses N × batch_size samples.
        """
        batch_size = _check_batch_size(32 if batch_size is None else batch_size)
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, received {epochs!r}")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), received {validation_split}")
        x, yy = self._prepare(x, y, "fit")
        if yy is None:
            raise ValueError("fit: y (the targets) is required")
        for layer in self.layers:
            act = getattr(layer, "activation", None)
            if act is not None and not act.differentiable:
                raise NotDifferentiableError(
                    f"layer {layer.name!r} uses the {act.name!r} activation, a step function with no useful "
                    "gradient, so fit() cannot backpropagate through it. Use 'sigmoid' or 'tanh' (smooth steps), "
                    "or train a perceptron with the perceptron learning rule."
                )
        if self._params.shape[0] == 0:
            raise ValueError("fit: the model has no trainable parameters")
        vx = vy = None
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            vx = self._check_x(validation_data[0], "fit (validation_data)")
            vy = self._check_y(validation_data[1], vx.shape[0], "fit (validation_data)")
        elif validation_split:
            split = int(x.shape[0] * (1.0 - validation_split))
            if split == 0 or split == x.shape[0]:
                raise ValueError(f"validation_split={validation_split} leaves an empty training or validation set")
            x, vx, yy, vy = x[:split], x[split:], yy[:split], yy[split:]

        self._fit_n, self._fit_batch_size = x.shape[0], batch_size
        ops, comm = self.ops, self._comm
        assert ops is not None and self.optimizer is not None and self.loss is not None
        n = x.shape[0]
        global_batch = batch_size * comm.size  # each rank takes its shard of every global batch
        steps = math.ceil(n / global_batch)
        history = History()
        start_epoch, skip = initial_epoch, 0
        restored_sums: list[Array] | None = None
        if resume_from is not None:
            from . import checkpoint

            found = checkpoint.load_latest(resume_from)
            if found is None:
                if comm.is_root and verbose:
                    print(f"No checkpoint in {resume_from}: starting from the beginning.")
            else:
                path, header, arrays = found
                checkpoint.restore(self, header, arrays, n, batch_size)
                start_epoch, skip = header["position"]["epoch"], header["position"]["step"]
                if "sums" in arrays:  # they hold every rank's share: rank 0 carries them, the others start at 0
                    saved = arrays["sums"] if comm.is_root else np.zeros_like(arrays["sums"])
                    restored_sums = self._unflatten_sums(saved, header["sums_sizes"])
                history.epoch = list(header.get("history_epochs", []))
                history.history = {k: list(v) for k, v in header.get("history", {}).items()}
                if comm.is_root and verbose:
                    print(f"Resuming from {path} (epoch {start_epoch + 1}, step {skip}/{steps})")
        distributed.check_same_model(comm, self._layout(), self.seed, self.optimizer.get_config())
        if comm.size > 1:
            comm.bcast_from_root(ops, self._params)
        cbs: list[Callback] = [history, *(callbacks or [])]
        batch_hooks = [cb for cb in cbs if type(cb).on_train_batch_end is not Callback.on_train_batch_end]
        for cb in cbs:
            cb.set_model(self)
            cb.set_params({"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size})
        progress = Progress(verbose if comm.is_root else 0, epochs, steps)
        names = self.metrics_names
        fused = self._fused()
        dropouts = [layer for layer in self.layers if isinstance(layer, Dropout)]
        self.stop_training = False
        self._history = history
        sparse = self.loss.sparse
        from .threads import blas_threads_for, macs_per_sample  # BLAS thread policy (xpnet/threads.py)

        with ops.activate(), blas_threads_for(macs_per_sample(self), batch_size, comm.size):
            nbytes = _nbytes(x, self.dtype) + _nbytes(yy, None) + _nbytes(vx, self.dtype) + _nbytes(vy, None)
            resident = ops.fits_on_device(nbytes)
            if resident:  # the usual case: the data crosses to the device once per fit
                X, Y = self._upload(x), self._upload(yy, float_dtype=not sparse)
                VX = self._upload(vx) if vx is not None else None
                VY = self._upload(vy, float_dtype=not sparse) if vy is not None else None
            else:  # too large for the device: keep it on the host and upload each batch as it is used
                X, Y, VX, VY = x, yy, vx, vy
            for cb in cbs:
                cb.on_train_begin()
            try:
                for epoch in range(start_epoch, epochs):
                    for cb in cbs:
                        cb.on_epoch_begin(epoch)
                    # keyed by the model's lifetime epoch count: repeated fit() calls see new orders
                    perm = shuffle_rng(self.seed, self._epochs_trained).permutation(n) if shuffle else None
                    if perm is not None and resident:
                        perm = ops.asarray(perm)
                    progress.epoch_begin(epoch)
                    sums: list[Array] = []
                    first = 0
                    if restored_sums is not None and epoch == start_epoch:
                        sums, first = restored_sums, skip
                    hi = min(first * global_batch, n)
                    for step in range(first, steps):
                        lo, hi = step * global_batch, min((step + 1) * global_batch, n)
                        a, b = distributed.shard(lo, hi, comm.rank, comm.size)
                        for d in dropouts:
                            d.row_offset = a - lo
                        if perm is None:
                            xb, yb = X[a:b, ...], Y[a:b, ...]
                        elif resident:
                            idx = perm[a:b]
                            xb, yb = ops.take_rows(X, idx), ops.take_rows(Y, idx)
                        else:
                            idx = perm[a:b]
                            xb, yb = X[idx], Y[idx]
                        if not resident:
                            xb, yb = self._upload(xb), self._upload(yb, float_dtype=not sparse)
                        batch = self._train_step(xb, yb, fused, hi - lo, self._sgd_in_backward())
                        sums = batch if not sums else [u + v for u, v in zip(sums, batch, strict=True)]
                        self._position, self._running = (epoch, step + 1), sums
                        for cb in batch_hooks:
                            cb.on_train_batch_end(step)
                        # the read is a collective under MPI: every rank must decide alike
                        due = progress.due() if comm.size == 1 else (step + 1) % _DIST_READ_EVERY == 0
                        if due:
                            logs = self._read(sums, hi, names)
                            if not math.isfinite(logs["loss"]):
                                break
                            if progress.mode == 1:
                                progress.update(step + 1, logs)
                    logs = self._read(sums, hi, names)
                    self._epochs_trained += 1
                    self._position, self._running = (epoch + 1, 0), []
                    if not math.isfinite(logs["loss"]):
                        self.stop_training = True
                        progress.close()
                        warnings.warn(
                            f"Epoch {epoch + 1}: the loss became {logs['loss']} (not finite); training stopped. "
                            "Lower the learning rate, check the inputs are scaled, or use a stabler loss.",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                    elif VX is not None:
                        val = self._evaluate_device(VX, VY, batch_size, fused)
                        logs.update({f"val_{k}": v for k, v in val.items()})
                    if not self.stop_training:
                        progress.epoch_end(epoch, logs)
                    for cb in cbs:
                        cb.on_epoch_end(epoch, logs)
                    if self.stop_training:
                        break
            finally:
                progress.close()
                for d in dropouts:
                    d.row_offset = 0
            for cb in cbs:
                cb.on_train_end()
        self.history = history
        return history

    def _unflatten_sums(self, flat: np.ndarray, sizes: list[int]) -> list[Array]:
        """Split a saved flat copy of the running sums back into device arrays shaped like `_train_step`'s."""
        assert self.ops is not None
        out, off = [], 0
        for size in sizes:
            part = flat[off : off + size]
            out.append(self.ops.asarray(part.reshape(()) if size == 1 else part))
            off += size
        return out

    def _checkpoint_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything a resumed fit needs, as a JSON-able header and host arrays."""
        ops, opt = self.ops, self.optimizer
        assert ops is not None and opt is not None
        epoch, step = getattr(self, "_position", (0, 0))
        hist = getattr(self, "_history", None)
        header = {
            "layout": self._layout(),
            "dtype": self.dtype,
            "seed": self.seed,
            "optimizer": {"class": type(opt).__name__, "config": opt.get_config(), "iterations": opt.iterations},
            "position": {"epoch": epoch, "step": step, "n": self._fit_n, "batch_size": self._fit_batch_size},
            "dropout": {layer.name: layer.iterations for layer in self.layers if isinstance(layer, Dropout)},
            "epochs_trained": self._epochs_trained,
            "history": hist.history if hist is not None else {},
            "history_epochs": hist.epoch if hist is not None else [],
        }
        arrays = {"params": self._host_params()}
        arrays.update({f"slot_{k}": ops.to_numpy(v) for k, v in opt.slots.items()})
        running = getattr(self, "_running", None)
        if running:
            xp = ops.xp
            flat = [xp.reshape(s, (-1,)) for s in running]
            concat = getattr(xp, "concat", None) or xp.concatenate
            # the whole run's partial sums: each rank holds only its shards' share
            arrays["sums"] = self._comm.allreduce_host(ops.to_numpy(concat(flat)))
            header["sums_sizes"] = [int(f.shape[0]) for f in flat]
        return header, arrays

    def _restore_checkpoint(self, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        ops, opt = self.ops, self.optimizer
        assert ops is not None and opt is not None
        if opt.ops is not ops or set(opt.slots) != {k[5:] for k in arrays if k.startswith("slot_")}:
            opt.build(ops, self._params)
        with ops.activate():
            self._params[...] = ops.asarray(arrays["params"])
            for k, v in opt.slots.items():
                v[...] = ops.asarray(arrays[f"slot_{k}"])
        opt.iterations = int(header["optimizer"]["iterations"])
        self._epochs_trained = int(header.get("epochs_trained", header["position"]["epoch"]))
        for layer in self.layers:
            if isinstance(layer, Dropout):
                layer.iterations = int(header["dropout"][layer.name])

    def _read(self, sums: list[Array], count: int, names: list[str]) -> dict[str, float]:
        """One device→host read of the running states; returns loss and metric values."""
        ops = self.ops
        assert ops is not None
        xp = ops.xp
        flat = [xp.reshape(s, (-1,)) for s in sums]
        concat = getattr(xp, "concat", None) or xp.concatenate  # CuPy before 14 lacks the array-API name
        host = self._comm.allreduce_host(ops.to_numpy(concat(flat) if len(flat) > 1 else flat[0]))
        out, off = {"loss": float(host[0]) / count}, 1
        for name, metric, s in zip(names[1:], self.metrics, flat[1:], strict=True):
            size = int(s.shape[0])
            state = host[off : off + size]
            out[name] = metric.result(state[0] if size == 1 else state, count)
            off += size
        return out

    def _forward(self, x: Array, training: bool) -> Array:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def _forward_to_logits(self, x: Array, training: bool) -> Array:
        """Forward through every layer but the last layer's activation: its pre-activation u."""
        for layer in self.layers[:-1]:
            x = layer.forward(x, training)
        return self.layers[-1].forward_preactivation(x, training)  # type: ignore[attr-defined]

    def _penalty(self) -> Any:
        xp = self.ops.xp  # type: ignore[union-attr]
        total: Any = 0.0
        for layer, pname, reg in self._reg_terms:
            total = total + reg.penalty(xp, layer.params[pname])
        return total

    def _loss_and_grads(
        self,
        xb: Array,
        yb: Array,
        fused: bool,
        scale: float = 1.0,
        global_batch: int | None = None,
        add_penalty_grad: bool = True,
        sgd_in_backward: bool = False,
    ) -> tuple[Array, Array]:
        """Forward and backward on one batch: fills the flat gradient buffer with `scale` × the gradient.

        sgd_in_backward: instead, each layer subtracts its `scale` × gradient from its weights as
        backprop reaches it (plain SGD with scale = η; see `_sgd_in_backward`).
        Returns (sum of per-sample losses + batch size × weight penalty, model output), on the device.
        """
        ops, loss, layers = self.ops, self.loss, self.layers
        assert ops is not None and loss is not None
        xp = ops.xp
        nb = xb.shape[0]
        denom = global_batch or nb
        if fused:  # the last layer stops at u; the loss applies the activation and gives p − y directly
            u = self._forward_to_logits(xb, training=True)
            value, grad, out = ops.fused_loss(loss, layers[-1].activation, yb, u, scale / denom)  # type: ignore[attr-defined]
        else:
            out = self._forward(xb, training=True)
            value, grad = loss.call(xp, yb, out), loss.grad(xp, yb, out) * (scale / denom)
        first = self._first_param_layer()
        dense = [d for d in layers if isinstance(d, Dense)] if sgd_in_backward else []
        for d in dense:
            d.sgd_in_backward = True
        try:
            for i in range(len(layers) - 1, first - 1, -1):
                need = i > first
                if fused and i == len(layers) - 1:
                    grad = layers[i].backward_preactivation(grad, need)  # type: ignore[attr-defined]
                else:
                    grad = layers[i].backward(grad, need)
        finally:
            for d in dense:
                d.sgd_in_backward = False
        loss_sum = xp.sum(value)
        if self._reg_terms:
            penalty: Any = 0.0
            for layer, pname, reg in self._reg_terms:
                w = layer.params[pname]
                penalty = penalty + reg.penalty(xp, w)
                if add_penalty_grad:  # data-parallel: one rank adds it, the Allreduce shares it
                    layer.grads[pname][...] += reg.grad(xp, w) * scale if scale != 1.0 else reg.grad(xp, w)
            loss_sum = loss_sum + penalty * nb
        return loss_sum, out

    def _train_step(
        self, xb: Array, yb: Array, fused: bool, global_batch: int | None = None, in_backward: bool = False
    ) -> list[Array]:
        """One mini-batch update; returns device sums [loss, *metrics] (no host sync).

        global_batch: samples in this step over all ranks (this rank has xb.shape[0] of them).
        """
        assert self.ops is not None and self.optimizer is not None
        scale = self.optimizer.grad_scale
        comm = self._comm
        loss_sum, out = self._loss_and_grads(xb, yb, fused, scale, global_batch, comm.is_root, in_backward)
        if comm.size > 1:
            comm.allreduce_sum(self.ops, self._grads)
        if in_backward:
            self.optimizer.iterations += 1
        else:
            self.optimizer.step(self._params, self._grads, scale)
        xp = self.ops.xp
        return [loss_sum, *(m.update(xp, yb, out) for m in self.metrics)]

    def _sgd_in_backward(self) -> bool:
        """Whether this step can update each Dense layer inside backprop instead of in a separate pass.

        Only plain SGD (w ← w − η∇w, no momentum, `step` not replaced on the instance), on one
        process (no gradient Allreduce), without weight penalties, with plain Dense layers (not
        subclasses) as the only weighted layers, and where the backend gains by it. Checked every
        step, since a callback may change the optimizer. On that path `layer.grads` is not filled;
        `compute_gradients` gives gradients at any time.
        """
        opt = self.optimizer
        if not (
            type(opt) is opt_mod.SGD
            and not opt.momentum
            and "step" not in vars(opt)
            and self._comm.size == 1
            and not self._reg_terms
            and self.ops is not None
            and self.ops.sgd_in_backward
        ):
            return False
        cached = self.__dict__.get("_plain_dense")
        if cached is None or cached[0] != len(self.layers):
            weighted = [layer for layer in self.layers if layer.param_specs()]
            cached = self._plain_dense = (len(self.layers), all(_is_plain(layer, Dense) for layer in weighted))
        return bool(cached[1])

    def compute_gradients(self, x: Any, y: Any) -> tuple[float, list[np.ndarray]]:
        """Loss over (x, y) as one batch, and its gradient for every weight (same order as get_weights).

        The training-mode forward pass is used (dropout active), without updating anything:
        for gradient checks and for looking inside backpropagation.
        """
        x, yy = self._prepare(x, y, "compute_gradients")
        ops = self.ops
        assert ops is not None and self.loss is not None
        dropouts = [(d, d.iterations) for d in self.layers if isinstance(d, Dropout)]
        with ops.activate():
            X, Y = self._upload(x), self._upload(yy, float_dtype=not self.loss.sparse)
            try:
                loss_sum, _ = self._loss_and_grads(X, Y, self._fused())
            finally:  # a look at the gradients must not move the masks a later fit() draws
                for d, steps in dropouts:
                    d.iterations = steps
            value = float(ops.to_numpy(loss_sum)) / x.shape[0]
            flat = ops.to_numpy(self._grads)
        grads, off = [], 0
        for layer in self.layers:
            for spec in layer.param_specs():
                n = int(np.prod(spec.shape))
                grads.append(flat[off : off + n].reshape(spec.shape).copy())
                off += n
        return value, grads

    def _first_param_layer(self) -> int:
        """Index of the first layer with weights: backprop stops there (nobody needs ∂L/∂x)."""
        cached = self.__dict__.get("_first_param")
        if cached is not None and cached[0] == len(self.layers):
            return int(cached[1])
        first = next((i for i, layer in enumerate(self.layers) if layer.param_specs()), len(self.layers))
        self._first_param = (len(self.layers), first)
        return first

    # ------------------------------------------------------------------ inference
    def _evaluate_device(self, X: Array, Y: Array, batch_size: int, fused: bool) -> dict[str, float]:
        ops, loss = self.ops, self.loss
        assert ops is not None and loss is not None
        xp = ops.xp
        n = X.shape[0]
        first, last = distributed.shard(0, n, self._comm.rank, self._comm.size)  # each rank evaluates a share
        sums: list[Array] = []
        for lo in range(first, last, batch_size):
            hi = min(lo + batch_size, last)
            xb, yb = X[lo:hi, ...], Y[lo:hi, ...]
            if isinstance(xb, np.ndarray) and (not ops.is_native(xb) or xb.dtype != self.dtype):  # streamed
                xb, yb = self._upload(xb), self._upload(yb, float_dtype=not loss.sparse)
            if fused:
                u = self._forward_to_logits(xb, training=False)
                value, _, out = ops.fused_loss(loss, self.layers[-1].activation, yb, u, 1.0)  # type: ignore[attr-defined]
            else:
                out = self._forward(xb, training=False)
                value = loss.call(xp, yb, out)
            batch = [xp.sum(value), *(m.update(xp, yb, out) for m in self.metrics)]
            sums = batch if not sums else [a + b for a, b in zip(sums, batch, strict=True)]
        if not sums:  # more ranks than samples: this rank contributes zeros of the right shapes
            xb, yb = X[0:1, ...], Y[0:1, ...]
            out = self._forward(self._upload(xb) if isinstance(xb, np.ndarray) else xb, training=False)
            yb = self._upload(yb, float_dtype=not loss.sparse) if isinstance(yb, np.ndarray) else yb
            sums = [xp.sum(out) * 0.0, *(m.update(xp, yb, out) * 0 for m in self.metrics)]
        if self._reg_terms:
            sums[0] = sums[0] + self._penalty() * (last - first)
        return self._read(sums, n, self.metrics_names)

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        return_dict: bool = False,
    ) -> float | list[float] | dict[str, float]:
        """Loss (plus any weight penalty) and metrics over (x, y): a float, a list, or a dict."""
        batch_size = _check_batch_size(32 if batch_size is None else batch_size)
        x, yy = self._prepare(x, y, "evaluate")
        if yy is None:
            raise ValueError("evaluate: y (the targets) is required")
        ops = self.ops
        assert ops is not None and self.loss is not None
        with ops.activate():
            X, Y = self._upload(x), self._upload(yy, float_dtype=not self.loss.sparse)
            result = self._evaluate_device(X, Y, batch_size, self._fused())
        steps = math.ceil(x.shape[0] / batch_size)
        if verbose == "auto":
            verbose = 1
        if verbose:
            print(f"{steps}/{steps} - {format_logs(result)}", file=sys.stdout, flush=True)
        if return_dict:
            return result
        values = list(result.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = 0) -> np.ndarray:
        """Outputs for x as a host NumPy array: (n, outputs).

        NaN and inf inputs raise a ValueError. When every layer carries NaN through (products and
        the built-in smooth activations do; a step function does not, nor does a BLAS that skips
        zero terms), they are looked for only if an output is not finite, which spares a pass
        over the inputs (~8% of predict on a CPU). An inf input then still raises unless the
        network maps it to its finite limit (e.g. a relu of -inf, a saturated sigmoid), which is
        the value an answer would have.
        """
        batch_size = _check_batch_size(32 if batch_size is None else batch_size)
        by_output = (
            self.ops is not None and all(_carries_nan(layer) for layer in self.layers) and self.ops.matmul_keeps_nan()
        )
        x = self._check_x(x, "predict", finite=not by_output)
        if not self.built:
            self.build(x.shape[1:])
        ops = self.ops
        assert ops is not None
        with ops.activate():
            X = self._upload(x)
            n = X.shape[0]
            out_shape = (n, *(d for d in self.output_shape[1:] if d is not None))
            out = ops.zeros(out_shape, getattr(ops.xp, self.dtype))
            dense = [layer for layer in self.layers if hasattr(layer, "keep_preactivation")]
            for layer in dense:  # predict keeps no pre-activations, so activations may reuse their memory
                layer.keep_preactivation = False  # type: ignore[attr-defined]
            # a built-in output activation works row by row, so it runs once over all the logits
            # instead of once per batch (5 calls per batch for softmax at batch 32)
            last = self.layers[-1]
            act = getattr(last, "activation", None)
            at_end = _is_plain(last, Dense) and builtin_name(act) is not None
            step = min(batch_size, ops.inference_rows or batch_size)
            plan = self._transposed_plan(n, step) if at_end else None
            try:
                for lo in range(0, n, step):
                    hi = min(lo + step, n)
                    xb = X[lo:hi, ...]
                    if plan is not None:
                        _logits_transposed(ops, plan, xb.reshape(hi - lo, -1), out[lo:hi])
                    else:
                        out[lo:hi, ...] = self._forward_to_logits(xb, False) if at_end else self._forward(xb, False)
            finally:
                for layer in dense:
                    layer.keep_preactivation = True  # type: ignore[attr-defined]
            if plan is not None and n:  # as the layer path leaves it: the last batch's logits
                last._u = out[(n - 1) // step * step :, ...].copy()  # type: ignore[attr-defined]
            if at_end:
                out = ops.activation_forward(act, out, in_place=True)
            result = ops.to_numpy(out)
        if by_output and isinstance(x, np.ndarray) and not probably_finite(result):
            require_finite(x, "predict", "x")  # names the bad inputs; finite inputs may overflow: then no error
        return result

    def _transposed_plan(self, n: int, step: int) -> list[tuple[Array, Array | None, Any]] | None:
        """(Wᵀ, b as a column, activation) per Dense layer, where `_logits_transposed` is faster.

        Small batches on NumPy: OpenBLAS is ~12% faster at uᵀ = Wᵀhᵀ with a contiguous Wᵀ (the
        layout PyTorch keeps) than at u = hW. Copying Wᵀ costs about one batch, so only for long
        predictions. Only Dense and (inference-time identity) Dropout layers, elementwise hidden
        activations, and a leading Flatten qualify; anything else takes the layer-by-layer path.
        """
        ops = self.ops
        if ops is None or not ops.transposed_inference_rows or step > ops.transposed_inference_rows or n < 4 * step:
            return None
        plan = []
        for i, layer in enumerate(self.layers):
            if _is_plain(layer, Dropout) or (i == 0 and _is_plain(layer, Flatten)):
                continue
            if not _is_plain(layer, Dense):
                return None
            if layer is not self.layers[-1] and builtin_name(layer.activation) not in _ELEMENTWISE:
                return None
            bias = layer.params.get("bias")
            plan.append(
                (ops.xp.ascontiguousarray(layer.kernel.T), None if bias is None else bias[:, None], layer.activation)
            )
        return plan

    def __call__(self, x: Any) -> np.ndarray:
        return self.predict(x, batch_size=max(1, len(x)))

    def __repr__(self) -> str:
        backend = self.ops.describe() if self.ops is not None else "unbuilt"
        return f"<Sequential name={self.name!r} layers={len(self.layers)} backend={backend!r} dtype={self.dtype}>"


_L = TypeVar("_L", bound=Layer)


def _is_plain(layer: Layer, cls: type[_L]) -> TypeGuard[_L]:
    """`layer` is exactly `cls`, with no method replaced on the instance (fast paths skip its methods)."""
    return type(layer) is cls and not any(callable(getattr(cls, k, None)) for k in vars(layer))


_ELEMENTWISE = ("linear", "relu", "elu", "sigmoid", "tanh")


def _logits_transposed(ops: Ops, plan: list[tuple[Array, Array | None, Any]], x: Array, out: Array) -> None:
    """out ← the last layer's u for the rows x, computed as uᵀ = Wᵀhᵀ layer by layer (see `_transposed_plan`)."""
    h = x.T
    for i, (wt, bias, act) in enumerate(plan):
        u = wt @ h
        if bias is not None:
            u += bias
        h = u if i == len(plan) - 1 else ops.activation_forward(act, u, in_place=True)
    out[...] = h.T


_NAN_CARRIERS = ("linear", "relu", "elu", "sigmoid", "tanh", "softmax")


def _carries_nan(layer: Layer) -> bool:
    """Whether a NaN in this layer's input always reaches its output (built-in layers only)."""
    if type(layer).__module__.split(".")[:2] != ["xpnet", "layers"]:
        return False
    act = getattr(layer, "activation", None)
    return act is None or builtin_name(act) in _NAN_CARRIERS


def _nbytes(a: Any, dtype: str | None) -> int:
    if a is None:
        return 0
    itemsize = np.dtype(dtype).itemsize if dtype is not None else a.dtype.itemsize
    return int(a.size) * itemsize


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be a positive integer, received {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, received {batch_size}")
    return int(batch_size)
