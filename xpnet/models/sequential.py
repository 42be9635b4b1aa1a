"""`Sequential`: a linear stack of layers, the chain case of the functional `Model`.

Once its input shape is known, a Sequential is a `Model` whose `Graph` (xpnet/models/graph.py)
is the chain Input → layer 1 → …: the traversals, weights and config are the Model's. This file
adds what a stack has of its own: adding and popping layers with the input shape known late,
its summary and config. Its one `predict` is the Model's; the plan (xpnet/training/plan.py)
gives a chain the routes a chain of affine layers allows.
Loading a model back from a file is in xpnet/models/loading.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ..backend import Ops
from ..io import config, h5_model, saving
from ..io.serialization import merged_custom_objects
from ..layers.base import Layer, Shape, _as_shape
from ..layers.input import Input
from ..layers.node import KerasTensor, Node
from . import sharing, summary
from .functional import Model
from .graph import Graph, UniqueNames

Array = Any


class Sequential(Model):
    """A linear stack of layers: `Sequential([Flatten(input_shape=(28, 28)), Dense(300, "relu"), ...])`.

    seed: makes initial weights, shuffles and dropout masks reproducible (any backend).
    dtype: "float32" (default) or "float64" for parameters and computation.
    Once its input shape is known it is the functional `Model` of the chain Input → layer 1 → ….
    """

    chain = True

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
        """Append a layer, or a model used as one layer (`Sequential([model, Softmax()])`, xpnet/models/sharing.py)."""
        if isinstance(layer, Input):
            if self.layers:
                raise ValueError("Input(...) must come first in a Sequential model")
            self._input_shape = layer.feature_shape
            return
        self._name_new_layer(layer)
        if not self.layers and self._input_shape is None and layer.requested_input_shape is not None:
            self._input_shape = layer.requested_input_shape
        self.layers.append(layer)  # type: ignore[arg-type]  # a nested Model stands where a Layer would
        if self._input_shape is not None:
            self.build()  # the layers that hold weights keep them

    def _name_new_layer(self, layer: Layer | Model) -> None:
        """Check that `layer` may be added, and name it if unnamed: names are unique over the model's layers
        and over the weight-holding layers of its nested models ("dense/kernel" must name one weight)."""
        if not isinstance(layer, (Layer, Model)):
            raise TypeError(f"Sequential.add expects a Layer or a Model, received {type(layer).__name__}")
        if layer is self:
            raise ValueError(f"a model cannot be a layer of itself ({self.name!r})")
        taken = {lyr.name for lyr in [*self.layers, *sharing.leaves(self.layers)]}
        if isinstance(layer, Model):
            clash = sorted({str(leaf.name) for leaf in layer.leaf_layers} & taken)
            if clash:
                raise ValueError(
                    f"model {layer.name!r} has layers named {clash}, names the model already uses; "
                    "layer names must be unique (name the layers, e.g. Dense(5, name='head'))"
                )
        # Keras names each model uniquely: "sequential_1" for the second
        renamed = isinstance(layer, Model) and layer.name == layer.default_name and layer.name in taken
        if layer.name is None or renamed:
            layer.name = UniqueNames(taken).fresh(layer.default_name)
        elif layer.name in taken:
            raise ValueError(f"a layer named {layer.name!r} is already in the model; layer names must be unique")
        if isinstance(layer, Sequential) and not layer.built and not layer.layers:
            raise ValueError(f"model {layer.name!r} has no layers; add some before using it as a layer")

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
        self.use_graph(Graph([source], [t], nodes))
        super().build(backend=backend)  # the weights, drawn as for any Model

    def _forget_calls(self) -> None:
        """Drop this model's graph from its layers' calls (`layer.output` is then the next graph's)."""
        for node in self._graph.nodes:
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
        A ".h5" name writes Keras's legacy HDF5 layout instead (h5py needed; see xpnet/io/h5_model.py)."""
        if h5_model.is_legacy_h5(filepath):
            h5_model.save_model(self, filepath)
            return
        saving.save_model(self, filepath)

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
        self._store, self._step = None, None
        self._forget_calls()
        self.use_graph(Graph([], [], []))  # no graph until the shorter chain is built
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
