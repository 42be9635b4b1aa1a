"""A model's weights: drawn at build, read and written as arrays or files, carried over by `copy.deepcopy`.

The weights themselves live in the model's flat `ParamStore` (xpnet/params.py); this module
decides their first values (the same numbers on any backend, drawn on the host from the
model's seed, or kept from a layer that already holds some), and moves them in and out of the
store with the checks that leave a model unchanged when an input does not fit. The file
formats are in xpnet/io/ (weights_io for .npz, h5_weights for Keras's .weights.h5).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend.values import is_numeric, weight_source, write_weight
from ..io import h5_weights, weights_io
from ..io.file_checks import check_parameter_count
from ..layers import custom
from ..layers.base import Layer
from ..random import init_rng, layer_seed, next_model_seed
from . import sharing


def check_model_args(seed: Any, dtype: str) -> int:
    """The seed as an int (a fresh one for None), or a ValueError for a bad seed or dtype."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', received {dtype!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer (or None), received {seed!r}")
    return int(seed) if seed is not None else next_model_seed()


def seed_dropouts(leaves: Sequence[Layer], seed: int) -> None:
    """Number the weight-holding layers and give each Dropout without a seed one drawn from the model's."""
    for i, layer in enumerate(leaves):
        layer.index = i
        layer.take_model_seed(layer_seed(seed, i))
        if layer.keras_call:  # a custom layer's Dropout sublayers
            custom.seed_dropouts(layer, layer_seed(seed, i))


def initial_weights(leaves: Sequence[Layer], seed: int, dtype_name: str) -> np.ndarray:
    """The (P,) host weights a new store starts from, layer by layer in `param_specs` order.

    A layer built on its own keeps its weights, one that another model holds keeps that model's
    current values (Keras's transfer learning), every other weight is drawn from (seed, layer, weight).
    A model file being loaded must store this many parameters: the count is refused before any is drawn.
    """
    check_parameter_count(sum(math.prod(spec.shape) for layer in leaves for spec in layer.param_specs()))
    dtype = np.dtype(dtype_name)
    chunks = []
    for i, layer in enumerate(leaves):
        own = _standalone_weights(layer)
        if own is not None:  # built on its own (layer.build, layer(array)) before: Keras keeps those weights
            chunks.append(own.astype(dtype))
            continue
        specs = layer.param_specs()
        kept = _kept_weights(layer, dtype_name)
        chunks += [
            s.initializer(s.shape, init_rng(seed, i, j), dtype).ravel() if w is None else w.ravel()
            for j, (s, w) in enumerate(zip(specs, kept or [None] * len(specs), strict=True))
        ]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype)


def _kept_weights(layer: Layer, dtype_name: str) -> list[np.ndarray | None] | None:
    """The weights `layer` holds from another model (None for none), checked against what this model builds."""
    specs = layer.param_specs()
    kept = sharing.current_values(layer, dtype_name)
    if kept is None:
        return None
    if [s.shape if w is None else w.shape for w, s in zip(kept, specs, strict=False)] != [s.shape for s in specs]:
        raise ValueError(
            f"layer {layer.name!r} holds weights of shapes {[None if w is None else w.shape for w in kept]} "
            "from another model, "
            f"but this model builds it for {[s.shape for s in specs]}; give it inputs of the shape it was "
            "built for, or use a new layer"
        )
    held = sharing.current_dtype(layer)
    if held is not None and held != dtype_name:
        # sharing across dtypes would round the other model's weights each time they move
        raise ValueError(
            f"layer {layer.name!r} holds {held} weights from another model, and this "
            f"model is {dtype_name}; give it dtype={held!r} to share the layer"
        )
    return kept


def _standalone_weights(layer: Layer) -> np.ndarray | None:
    """The (P,) host weights of a layer that has a parameter store of its own (a standalone layer), if it
    still has the weights its specs declare; else None."""
    own = layer.__dict__.get("_xp_standalone")
    if own is None or own.layers != [layer]:
        return None
    if [tuple(s.spec.shape) for s in own.slots] != [tuple(s.shape) for s in layer.param_specs()]:
        return None
    return np.asarray(own.host_params())


def set_weights(model: Any, weights: Sequence[Any]) -> None:
    """`model.set_weights`: shapes are checked first, so a mismatch leaves the model unchanged.

    NaN and inf are accepted (as Keras does), so `set_weights(get_weights())` works on a diverged model.
    Device arrays of the model's backend are written device to device.
    """
    store = model.store
    slots = store.slots
    if len(weights) != len(slots):
        raise ValueError(f"set_weights expects {len(slots)} arrays for this model, received {len(weights)}")
    arrays = []
    for s, w in zip(slots, weights, strict=True):
        a = weight_source(store.ops, w)
        if tuple(a.shape) != tuple(s.spec.shape):
            raise ValueError(f"set_weights: {s.label} must have shape {s.spec.shape}, received {tuple(a.shape)}")
        if not is_numeric(a):
            raise ValueError(f"set_weights: {s.label} must be numbers, received dtype {a.dtype}")
        arrays.append(a)
    if all(isinstance(a, np.ndarray) for a in arrays):  # host data: one upload of the whole buffer
        flat = [a.astype(model.dtype).ravel() for a in arrays]
        store.set_host_params(np.concatenate(flat) if flat else np.zeros(0, model.dtype))
        return
    # device arrays are written into each weight's view on the device, without a host round trip
    for s, a in zip(slots, arrays, strict=True):
        write_weight(store.ops, s.layer.params[s.spec.name], a)
    for layer in store.layers:
        layer.weights_assigned()


def save_weights(model: Any, filepath: str | os.PathLike[str]) -> None:
    """`model.save_weights`: .npz (no pickle), or Keras 3's layout for "*.weights.h5"; written atomically."""
    if h5_weights.is_keras_h5_name(filepath):
        h5_weights.save(filepath, model.name, model.layers)
        return
    weights_io.save(filepath, model.store.layout(), model.get_weights())


def load_weights(model: Any, filepath: str | os.PathLike[str]) -> None:
    """`model.load_weights`: a file of `save_weights` (or Keras's .weights.h5); a mismatch raises, changes nothing."""
    if h5_weights.is_keras_h5_name(filepath):
        _ = model.store  # an unbuilt model has no shapes to check the file against: a clear error first
        model.set_weights(h5_weights.load(filepath, model.layers))
        return
    mine = model.store.layout()
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
    model.set_weights(arrays)


def deep_copy(model: Any, memo: dict[int, Any]) -> Any:
    """`copy.deepcopy(model)`: a model with its own layers, weights and optimizer state, equal to `model`.

    A plain deep copy would cut the layers' weight views loose from the copied flat buffer: the
    weights are put in a new buffer, bound to the copied layers (the copied graph indexes itself
    again, `Graph.__deepcopy__`, and the model reads that index). The backend is shared, not copied.
    """
    new = object.__new__(type(model))
    memo[id(model)] = new
    if model.ops is not None:
        memo[id(model.ops)] = model.ops
    for key, value in vars(model).items():
        # the step and its program are made again by the copy's first fit: a captured one holds CUDA graphs
        # and a cuBLAS handle, which cannot be copied
        new.__dict__[key] = None if key in ("_step", "_program") else copy.deepcopy(value, memo)
    new.index_graph()
    adopt_copy(new, model)
    return new


def adopt_copy(new: Any, original: Any) -> None:
    """After `copy.deepcopy(original)` filled `new`'s attributes: its weights in a buffer of its own, bound to
    the copied layers, with the optimizer's state."""
    if original.built and original.ops is not None:
        new.install(original.ops, np.array(original.store.host_params()))  # NumPy hands out its buffer: copy
        if new.optimizer is not None and original.optimizer is not None:
            with original.ops.activate():
                for name, slot in new.optimizer.slots.items():
                    slot[...] = original.optimizer.slots[name]
