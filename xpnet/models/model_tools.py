"""What a user does with a built model besides training and predicting, for `Model` and so
`Sequential`: its weights (`get_weights`/`set_weights`), weight files (`save_weights`,
`load_weights`), whole-model files (`save`), layer lookup and counts, and the teaching looks
inside it (`trace`, `check_gradients`). The flat buffer behind the weights is in
xpnet/models/weights.py, the file formats in xpnet/io/."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..io import h5_model, saving
from ..layers.base import Layer
from ..training.trainer import Trainer
from . import weights as model_weights


class ModelTools(Trainer):
    """The weight, file and inspection methods of `Model` (which extends this class); see the module docstring."""

    def get_weights(self) -> list[np.ndarray]:
        """All parameters as host NumPy arrays, layer by layer ([kernel, bias] for each Dense)."""
        return self.store.split(self.store.host_params())

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace all parameters; shapes are checked first, so a mismatch leaves the model unchanged.

        NaN and inf are accepted (as Keras does); device arrays of the model's backend are written on the device.
        """
        model_weights.set_weights(self, weights)

    def save_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Write all parameters to `filepath` atomically: .npz (no pickle), or Keras 3's layout for "*.weights.h5"."""
        model_weights.save_weights(self, filepath)

    def load_weights(self, filepath: str | os.PathLike[str]) -> None:
        """Load a file written by `save_weights` (or Keras's .weights.h5); a mismatch raises and changes nothing."""
        model_weights.load_weights(self, filepath)

    def save(self, filepath: str | os.PathLike[str]) -> None:
        """The whole model in one file (".keras" or ".npz"): graph, weights, compile settings and optimizer state.
        A ".h5" name writes Keras's legacy HDF5 layout instead (h5py needed; see xpnet/io/h5_model.py)."""
        if h5_model.is_legacy_h5(filepath):
            h5_model.save_model(self, filepath, spec=self.file_spec())
            return
        saving.save_model(self, filepath, spec=self.file_spec())

    def file_spec(self) -> dict[str, Any]:
        """What a model file records of the architecture: Keras's functional config with the seed and dtype."""
        return {"class_name": "Functional", "seed": self.seed, "dtype": self.dtype, "config": self.get_config()}

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers are {[lyr.name for lyr in self.layers]}")

    def count_params(self) -> int:
        # from the layers, not the store: counting must not take the layers from a model that uses them
        if not self.built:
            raise ValueError(
                "the model is not built yet. Give the first layer input_shape=..., or call build() or fit() first"
            )
        return sum(layer.count_params() for layer in self.leaf_layers)

    def trace(self, x: Any, y: Any = None, training: bool = True) -> Any:
        """Layer-by-layer values (and with y: δ and gradients); see `xpnet.trace.trace` (one input)."""
        from ..teaching.trace import trace

        nested = [str(layer.name) for layer in self.layers if isinstance(layer, ModelTools)]
        if nested:
            raise ValueError(
                f"trace follows layers, and {nested} are models used as layers; trace each model alone, "
                "or build one model from all the layers (e.g. Sequential(inner.layers + [...]))"
            )
        return trace(self, x, y, training)

    def check_gradients(self, x: Any, y: Any, **kwargs: Any) -> Any:
        """Finite-difference check of this model's gradients in float64; see `xpnet.gradcheck.check_gradients`."""
        from ..teaching.gradcheck import check_gradients

        return check_gradients(self, x, y, **kwargs)
