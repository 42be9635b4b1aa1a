"""Keras's `keras.utils` helpers a course uses."""

from __future__ import annotations

import os
import random
import tempfile
from typing import Any

import numpy as np

from . import random as xpnet_random
from .io.serialization import (  # as keras.utils exposes them
    CustomObjectScope,
    custom_object_scope,
    deserialize_keras_object,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
    serialize_keras_object,
)


def to_categorical(y: Any, num_classes: int | None = None, dtype: str = "float32") -> np.ndarray:
    """One-hot rows for integer class labels, as `keras.utils.to_categorical`.

    y: int labels of any shape (a trailing axis of size 1 is dropped); num_classes: defaults to
    max(y) + 1. Returns y.shape + (num_classes,) in `dtype`.
    """
    a = np.asarray(y)
    if a.dtype.kind == "f" and np.any(a != np.round(a)):
        raise ValueError("to_categorical: y must hold integer class labels, received non-integer values")
    if a.size and a.dtype.kind not in "biuf":
        raise TypeError(f"to_categorical: y must be integer class labels, received dtype {a.dtype}")
    labels = a.astype(np.int64)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.size and labels.min() < 0:
        raise ValueError(f"to_categorical: labels must be >= 0, received {int(labels.min())}")
    n = int(labels.max()) + 1 if num_classes is None and labels.size else int(num_classes or 0)
    if labels.size and labels.max() >= n:
        raise ValueError(f"to_categorical: label {int(labels.max())} is out of range for num_classes={n}")
    out = np.zeros((*labels.shape, n), dtype=dtype)
    np.put_along_axis(out, labels[..., None], 1, axis=-1)
    return out


class PyDataset:
    """Batches computed in Python, as `keras.utils.PyDataset`: subclass it, call
    `super().__init__(**kwargs)`, and define `__len__` (the number of batches per epoch) and
    `__getitem__(index)` returning `(x, y)` or `(x, y, sample_weight)` NumPy batches (`x` alone
    for predict).

    `fit`, `evaluate` and `predict` take it in place of arrays and stream its batches through
    fixed device buffers, for data that does not fit in memory; `on_epoch_begin`/`on_epoch_end`
    run around each epoch (shuffle there). `workers`, `use_multiprocessing` and `max_queue_size`
    are accepted for Keras code and recorded; batches are read in the calling thread.
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10) -> None:
        for name, value in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PyDataset: {name} must be a positive integer, received {value!r}")
        self._workers, self._use_multiprocessing, self._max_queue_size = (
            workers,
            bool(use_multiprocessing),
            max_queue_size,
        )

    @property
    def workers(self) -> int:
        return int(getattr(self, "_workers", 1))

    @property
    def use_multiprocessing(self) -> bool:
        return bool(getattr(self, "_use_multiprocessing", False))

    @property
    def max_queue_size(self) -> int:
        return int(getattr(self, "_max_queue_size", 10))

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index) returning one batch")

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch: `len(self)`, or None when the subclass defines no `__len__`."""
        if type(self).__len__ is PyDataset.__len__:
            return None
        return len(self)

    def __len__(self) -> int:
        raise TypeError(f"{type(self).__name__} defines no __len__")

    def on_epoch_begin(self) -> None:
        """Called before each epoch's first batch."""

    def on_epoch_end(self) -> None:
        """Called after each epoch's last batch (shuffle the order here)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} batches={self.num_batches}>"


def set_random_seed(seed: int) -> None:
    """Seed Python's `random`, NumPy's global generator and every xpnet model made from now on,
    as `keras.utils.set_random_seed` does (xpnet's own draws do not depend on the backend)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_random_seed: seed must be a non-negative integer, received {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    xpnet_random.set_random_seed(int(seed))


def _dot_label(text: str) -> str:
    for c in '\\"{}|<>':  # the characters a record label gives a meaning
        text = text.replace(c, "\\" + c)
    return text


def model_to_dot(
    model: Any,
    show_shapes: bool = False,
    show_dtype: bool = False,
    show_layer_names: bool = True,
    rankdir: str = "TB",
    dpi: int = 200,
    show_layer_activations: bool = False,
) -> str:
    """The model's layer graph in Graphviz's DOT language (text; no dependency needed).

    One box per input and per layer (a layer called twice is one box, as in Keras), an arrow per
    tensor passed; show_shapes adds each layer's output shape, show_layer_activations its activation.
    """
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"plot_model: rankdir must be 'TB' or 'LR', received {rankdir!r}")
    if not getattr(model, "built", False):
        raise ValueError(
            "plot_model: the model is not built yet; give its first layer input_shape=..., start it with "
            "Input(shape=...), or call model.build((None, *input_shape))"
        )
    title = str(model.name).replace("\\", "").replace('"', "")
    lines = [f'digraph "{title}" {{', f"  graph [rankdir={rankdir}, dpi={int(dpi)}];"]
    lines.append('  node [shape=record, fontname="Helvetica"];')
    ids: dict[int, str] = {}

    def box(key: int, title: str, cls: str, shape: Any, extra: str = "") -> None:
        ids[key] = f"n{len(ids)}"
        head = f"{title} ({cls})" if show_layer_names else cls
        parts = [head + extra]
        if show_shapes:
            parts.append(f"output: {shape}")
        if show_dtype:
            parts.append(f"dtype: {getattr(model, 'dtype', 'float32')}")
        label = "|".join(_dot_label(p) for p in parts)
        lines.append(f'  {ids[key]} [label="{{{label}}}"];')

    for t in model.inputs:
        box(id(t), str(t.name), "InputLayer", t.shape)
    edges: list[tuple[str, str]] = []
    for node in model._calls_as_made():  # noqa: SLF001 - the graph is the model's own record
        layer = node.layer
        if id(layer) not in ids:
            act = getattr(layer, "activation", None)
            extra = f" [{act.name}]" if show_layer_activations and act is not None else ""
            box(id(layer), str(layer.name), type(layer).__name__, node.output.shape, extra)
        for t in node.inputs:
            src = ids[id(t)] if t.node is None else ids[id(t.node.layer)]
            edge = (src, ids[id(layer)])
            if edge not in edges:
                edges.append(edge)
    lines += [f"  {a} -> {b};" for a, b in edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def plot_model(model: Any, to_file: str | os.PathLike[str] = "model.png", **options: Any) -> None:
    """Draw the model's layer graph into `to_file`, as `keras.utils.plot_model`.

    A ".dot" file is written directly (no dependency); other formats (png, svg, pdf, ...) are
    rendered by Graphviz through pydot: `pip install 'xpnet[graph]'` and Graphviz's `dot` program.
    Options as `model_to_dot`; Keras's expand_nested and show_trainable are accepted and ignored.
    The file is written atomically (a temporary file in the same folder, then renamed).
    """
    options.pop("expand_nested", None)
    options.pop("show_trainable", None)
    path = os.fspath(to_file)
    ext = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    source = model_to_dot(model, **options)
    folder = os.path.dirname(os.path.abspath(path))
    if ext != "dot":
        try:
            import pydot  # type: ignore[import-not-found]
        except ImportError:
            raise ImportError(
                f"plot_model: drawing a .{ext} file needs pydot and Graphviz (pip install 'xpnet[graph]', then "
                "Graphviz from https://graphviz.org/download/); to_file='model.dot' writes the graph without them"
            ) from None
    fd, tmp = tempfile.mkstemp(suffix=f".{ext}", dir=folder)
    os.close(fd)
    try:
        if ext == "dot":
            with open(tmp, "w") as f:
                f.write(source)
        else:
            graph = pydot.graph_from_dot_data(source)[0]
            try:
                graph.write(tmp, format=ext)
            except (OSError, FileNotFoundError, AssertionError) as e:  # pydot raises these when `dot` is missing
                raise RuntimeError(
                    f"plot_model: Graphviz could not draw {path!r} ({e}); install Graphviz's `dot` program "
                    "(https://graphviz.org/download/), or write to_file='model.dot'"
                ) from None
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


__all__ = [
    "CustomObjectScope",
    "PyDataset",
    "custom_object_scope",
    "deserialize_keras_object",
    "get_custom_objects",
    "get_registered_name",
    "get_registered_object",
    "model_to_dot",
    "plot_model",
    "register_keras_serializable",
    "serialize_keras_object",
    "set_random_seed",
    "to_categorical",
]
