"""Keras 3 `.weights.h5` files: `model.save_weights("m.weights.h5")` / `load_weights`, both ways with Keras.

Keras 3 (saving_lib.save_weights_only, H5IOStore) writes one HDF5 group per object it tracks:

    vars                      attrs name=<model name>, no datasets (a Sequential has no variables of its own)
    layers/<path>/vars        attrs name=<layer name>; datasets "0", "1", ...: the layer's variables,
                              trainable then non-trainable (Dense: kernel, bias; Conv2D: kernel
                              (kh, kw, in, out), bias; BatchNormalization: gamma, beta, moving_mean,
                              moving_variance), i.e. `layer.get_weights()` order
    optimizer/vars            the optimizer's variables (written by Keras when compiled; xpnet neither
                              writes nor reads them: Keras then warns that it skips them and goes on)

<path> is not the layer's name: it is the snake-case class name, numbered by class in layer
order ("dense", "dense_1", "conv2d", "max_pooling2d"), the InputLayer left out. So weights
match by position and class, as Keras matches them, whatever the layers are called. Layers
without weights get a group too. A model used as a layer is one such group ("sequential",
"functional" for a `Model(inputs, outputs)`) with its own empty `vars` (attrs name=<its name>)
and its layers below it, numbered afresh: `layers/sequential/layers/dense/vars/0`, nested as
deep as the models are. h5py is an optional dependency: `pip install xpnet[h5]`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..layers.base import Layer
from .file_checks import DEFLATE_SLACK, MAX_DEFLATE_RATIO, FileFormatError, h5_dataset, h5_group
from .weights_io import atomic_write_path

SUFFIX = ".weights.h5"
MAX_NESTING = 32  # models inside models a file may describe (a crafted file could loop its groups)


def is_keras_h5_name(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names a Keras 3 weights file (Keras requires the ".weights.h5" ending)."""
    return str(path).lower().endswith(SUFFIX)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as e:
        raise ModuleNotFoundError(
            "reading or writing Keras .weights.h5 files needs h5py: pip install xpnet[h5] (or pip install h5py); "
            "xpnet's own weight files (.npz) need nothing extra"
        ) from e
    return h5py


def snake_case(class_name: str) -> str:
    """Keras's object path name for a class: "Conv2D" → "conv2d", "MaxPooling2D" → "max_pooling2d"."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _inner(layer: Layer) -> list[Layer] | None:
    """The layers of a model used as a layer (`sharing.leaves`), None for a plain layer."""
    return getattr(layer, "nested_layers", None)


def _class_path(layer: Layer) -> str:
    kind = type(layer).__name__
    if kind == "Model" and _inner(layer) is not None:  # Keras's class for Model(inputs, outputs)
        kind = "Functional"
    return snake_case(kind)


def layer_paths(layers: list[Layer]) -> list[str]:
    """The group of each layer under "layers/": its class in snake case, "_k" from the second of a class on."""
    seen: dict[str, int] = {}
    paths = []
    for layer in layers:
        base = _class_path(layer)
        k = seen.get(base)
        seen[base] = 0 if k is None else k + 1
        paths.append(base if k is None else f"{base}_{k + 1}")
    return paths


def leaf_paths(layers: list[Layer], prefix: str = "") -> list[tuple[str, Layer]]:
    """(group path under "layers/", layer) of each weight-holding layer, a nested model's in its place.

    The order is `sharing.leaves`' (the model's get_weights order); a nested model's layers sit under
    "<its path>/layers/", as Keras 3 writes them.
    """
    out: list[tuple[str, Layer]] = []
    for layer, where in zip(layers, layer_paths(layers), strict=True):
        inner = _inner(layer)
        if inner is None:
            out.append((prefix + where, layer))
        else:
            out += leaf_paths(inner, f"{prefix}{where}/layers/")
    return out


def save(path: str | os.PathLike[str], model_name: str, layers: list[Layer]) -> Path:
    """Write the layers' weights in Keras 3's layout, atomically (a temp file renamed over `path`)."""
    h5py = _h5py()
    weights = [layer.get_weights() for _, layer in leaf_paths(layers)]

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            write_layers(f, model_name, layers, weights)

    return atomic_write_path(path, write)


def write_layers(f: Any, model_name: str, layers: list[Layer], weights: list[list[np.ndarray]]) -> None:
    """Keras 3's groups and datasets for `layers` into open HDF5 file f.

    weights: each leaf's get_weights(), in `leaf_paths(layers)` order (a nested model's layers in its place).
    """
    f.create_group("vars").attrs["name"] = model_name
    left = list(weights)

    def write(group: Any, layers: list[Layer]) -> None:
        for layer, where in zip(layers, layer_paths(layers), strict=True):
            node = group.create_group(where)
            vars_ = node.create_group("vars")
            vars_.attrs["name"] = layer.name or where
            inner = _inner(layer)
            if inner is not None:  # a model used as a layer: no variables of its own, its layers below
                write(node.create_group("layers"), inner)
                continue
            for i, a in enumerate(left.pop(0)):
                vars_.create_dataset(str(i), data=a)

    write(f.create_group("layers"), layers)
    if left:
        raise ValueError(f"write_layers: {len(left)} more weight lists than the layers hold")


KIND = "Keras .weights.h5"


def load(path: str | os.PathLike[str], layers: list[Layer]) -> list[np.ndarray]:
    """The weights in `path` for `layers`, in get_weights order, each checked against the layer's shapes.

    Raises FileNotFoundError, FileFormatError for a damaged or crafted file (external storage,
    links, virtual datasets, more data than the file holds), or ValueError naming the file's and
    the model's layers when they differ.
    """
    h5py = _h5py()
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a Keras .weights.h5 file")
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError, RuntimeError, TypeError) as e:
        raise FileFormatError(path, KIND, f"not a readable HDF5 file ({e})") from e
    with f:
        stored = read_layers(f, path, KIND, path.stat().st_size)
    return match(stored, layers, path)


def read_layers(f: Any, path: str | os.PathLike[str], kind: str, file_size: int) -> dict[str, list[np.ndarray]]:
    """{layer path: its arrays} of an open Keras weights HDF5 file, each dataset checked before it is read.

    file_size: the bytes the data came from; together the arrays may take at most
    MAX_DEFLATE_RATIO times that (see `file_checks.h5_dataset`).
    """
    budget = [file_size * MAX_DEFLATE_RATIO + DEFLATE_SLACK]
    try:
        group = h5_group(f, "layers", path, kind)
        if group is None:
            legacy = (
                " It looks like a Keras 2 .h5 file (layer_names), which xpnet does not read."
                if ("layer_names" in f.attrs or "model_weights" in f)
                else ""
            )
            raise FileFormatError(path, kind, f"no 'layers' group.{legacy}")
        stored: dict[str, list[np.ndarray]] = {}
        # (group, its path, depth): a nested model's layers are under <its path>/layers/, as deep as models nest
        todo = [(group, "", 0)]
        while todo:
            parent, prefix, depth = todo.pop()
            if depth > MAX_NESTING:
                raise FileFormatError(path, kind, f"{parent.name} nests models more than {MAX_NESTING} deep")
            for name in list(parent):
                layer = h5_group(parent, name, path, kind)
                vars_ = h5_group(layer, "vars", path, kind)
                keys = sorted((k for k in vars_ if k.isdigit()), key=int) if vars_ is not None else []
                stored[prefix + name] = [h5_dataset(vars_, k, path, kind, budget) for k in keys]
                inner = h5_group(layer, "layers", path, kind)
                if inner is not None:
                    todo.append((inner, f"{prefix}{name}/layers/", depth + 1))
        return stored
    except FileFormatError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError) as e:
        raise FileFormatError(path, kind, f"a damaged HDF5 structure ({type(e).__name__}: {e})") from e


def match(stored: dict[str, list[np.ndarray]], layers: list[Layer], path: str | os.PathLike[str]) -> list[np.ndarray]:
    """The stored arrays in `layers`' get_weights order (a nested model's layers in its place); ValueError
    naming both sides when they differ."""
    leaves = leaf_paths(layers)
    ours = [p for p, _ in leaves]
    # the shapes the layers hold, also where get_weights is empty for now (a Normalization before adapt)
    wanted = [[tuple(spec.shape) for spec in layer.param_specs()] for _, layer in leaves]
    found = [[a.shape for a in stored.get(p, [])] for p in ours]
    extra = sorted(p for p in stored if p not in ours and stored[p])
    if found != wanted or extra:
        raise ValueError(
            f"{path} holds weights for a different architecture:\n  file:  "
            + ", ".join(f"{p}{[tuple(a.shape) for a in arrays]}" for p, arrays in sorted(stored.items()))
            + "\n  model: "
            + ", ".join(f"{p}{[tuple(s) for s in shapes]}" for p, shapes in zip(ours, wanted, strict=True))
        )
    return [a for p in ours for a in stored.get(p, [])]
