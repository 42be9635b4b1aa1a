"""Models back from text and files: `model_from_json`, `clone_model`, `load_model` (xpnet's .npz, .keras, .h5).

The file formats are read in xpnet/io/ (saving, keras_format, h5_model, h5_weights); this module
builds the model a file describes, within the parameter budget its size allows, then restores
its weights and (with compile=True) its compile settings and optimizer state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..backend import Ops
from ..io import h5_model, h5_weights, keras_format, saving
from ..io.file_checks import FileFormatError, parameter_budget
from ..io.serialization import merged_custom_objects
from ..layers.base import Layer
from ..layers.input import Input
from ..random import layer_seed
from .functional import Model
from .sequential import Sequential


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
        if isinstance(layer, Layer) and layer.seeded_by_model(layer_seed(model.seed, i)):
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
    """load_model for a legacy .h5 file (see xpnet/io/h5_model.py): xpnet's exact state when xpnet wrote it.

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
