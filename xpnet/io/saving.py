"""Whole-model files: architecture, weights, compile settings and optimizer state in one .keras/.npz file.

A ".keras" name gets Keras 3's layout (`xpnet.keras_format`: config.json, metadata.json,
model.weights.h5, plus xpnet's header and optimizer slots); ".npz" gets an uncompressed zip
(NumPy's .npz, never pickle) holding a JSON header and the flat parameter and optimizer
buffers, the layout xpnet used for ".keras" before, which still loads. Both are written
atomically and carry what a resumed `fit` needs to continue exactly: the optimizer's slots and
step count, the dropout counters and the number of epochs trained (which keys the next
shuffle). `xpnet.models.load_model` reads either on any backend, checked before anything is built.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import activations, initializers, losses, optimizers, regularizers, schedules
from ..layers.base import Layer, Shape, _as_shape
from ..training.state import step_counted, step_counters
from . import keras_format
from .config import layer_entry, serialize
from .file_checks import FileFormatError, json_member
from .weights_io import atomic_write_bytes, read_xpnet_npz

if TYPE_CHECKING:
    from ..training.protocol import TrainableModel

FORMAT = "xpnet-model"
VERSION = 1
MODEL_KIND = "xpnet model"

# "Sequential" and "Functional": the model classes a config may hold as layers, registered by their
# modules (which import this one, so it cannot import them)
MODEL_CLASSES: dict[str, Any] = {}


def save_model(model: TrainableModel, path: str | os.PathLike[str], spec: dict[str, Any] | None = None) -> Path:
    """Write `model` to `path` (".keras" or ".npz"); see the module docstring.

    spec: the architecture as the model describes it (a functional model's graph); by default
    the layer list of a Sequential.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".keras", ".npz"):
        raise ValueError(f"model.save writes a .keras (or .npz) file, not {suffix or 'a name without suffix'}: {path}")
    if not model.built or (spec is None and model.feature_shape is None):
        raise ValueError("model.save: build the model first (give the first layer input_shape=..., or fit it)")
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model": spec if spec is not None else _sequential_spec(model),
        "layout": model.store.layout(),
        "trainable": model.store.trainable_labels(),
        "dropout": step_counters(model.leaf_layers),
        "epochs_trained": model.train_state.epochs_trained,
        "compile": _compile_header(model),
    }
    arrays = {"params": model.store.host_params()}
    opt = model.optimizer
    if header["compile"] is not None and opt is not None and model.ops is not None and opt.ops is model.ops:
        arrays.update({f"slot_{k}": model.ops.to_numpy(v) for k, v in opt.slots.items()})
    if suffix == ".keras":
        slots = {k[5:]: v for k, v in arrays.items() if k.startswith("slot_")}
        return keras_format.save(model, path, header, slots)
    entries = {f"a_{k}": v for k, v in arrays.items()}
    entries["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return atomic_write_bytes(path, lambda f: np.savez(f, **entries))  # type: ignore[arg-type]


def _sequential_spec(model: TrainableModel) -> dict[str, Any]:
    """A Sequential's architecture for the header: its layer list and input shape."""
    assert model.feature_shape is not None
    return {
        "class_name": type(model).__name__,
        "name": model.name,
        "seed": model.seed,
        "dtype": model.dtype,
        "input_shape": list(model.feature_shape),
        "layers": [layer_entry(layer) for layer in model.layers],
    }


def _compile_header(model: TrainableModel) -> dict[str, Any] | None:
    """The compile settings for the header (None for a model that was never compiled)."""
    opt = model.optimizer
    if opt is None or model.loss is None:
        return None
    out: dict[str, Any] = {
        "optimizer": {"class_name": type(opt).__name__, "config": opt.get_config()},
        "iterations": opt.iterations,
        "loss": serialize(model.loss),
        "metrics": [_metric_name(m) for m in model.metric_ids],
        "weighted_metrics": [_metric_name(m) for m in model.weighted_metric_ids],
    }
    if not model.single_output:  # one loss, weight and metric list per output
        out["loss"] = [serialize(loss) for loss in model.compiled_losses]
        out["loss_weights"] = model.loss_weights
        out["metrics"] = [[m.name for m in ms] for ms in model.output_metrics]
    return out


def _metric_name(metric: Any) -> str:
    """A compile metric as the header names it: its string, else its `name`."""
    return metric if isinstance(metric, str) else getattr(metric, "name", str(metric))


def read_model_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of an .npz-based model file (`save_model`'s ".npz", main's ".keras").

    Raises FileNotFoundError, IsADirectoryError, or FileFormatError saying what is wrong.
    """
    kind = MODEL_KIND
    entries = read_xpnet_npz(path, kind)
    header = json_member(entries, "header", path, kind) if "header" in entries else None
    arrays = {k[2:]: v for k, v in entries.items() if k.startswith("a_")}
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise FileFormatError(path, kind, "no xpnet-model header (weights files load with load_weights)")
    version = header.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise FileFormatError(path, kind, f"model format version {version!r} (this xpnet reads up to {VERSION})")
    check_header(header, path, kind)
    params = arrays.get("params")
    if params is None or params.ndim != 1 or params.dtype.kind != "f":
        raise FileFormatError(path, kind, "no flat float parameter array")
    declared = _layout_size(header["layout"], path, kind)
    if declared != params.size:
        raise FileFormatError(path, kind, f"its layout lists {declared:,} parameters but it stores {params.size:,}")
    return header, arrays


def check_header(header: dict[str, Any], path: str | os.PathLike[str], kind: str) -> None:
    spec, layout = header.get("model"), header.get("layout")
    if not isinstance(spec, dict) or not isinstance(layout, list):
        raise FileFormatError(path, kind, "its header has no model description and layout")
    cfg = header.get("compile")
    if cfg is not None and not (isinstance(cfg, dict) and isinstance(cfg.get("optimizer"), dict)):
        raise FileFormatError(path, kind, "its compile settings are not {'optimizer', 'loss', ...}")


def _layout_size(layout: list[Any], path: str | os.PathLike[str], kind: str) -> int:
    """The number of parameters a header's layout lists ([{"params": {name: shape}}, ...])."""
    total = 0
    for entry in layout:
        shapes = entry.get("params") if isinstance(entry, dict) else None
        if not isinstance(shapes, dict) or not all(
            isinstance(sh, list) and all(isinstance(d, int) and d >= 0 for d in sh) for sh in shapes.values()
        ):
            raise FileFormatError(path, kind, f"its layout entry {entry!r:.80} is not {{'params': {{name: shape}}}}")
        total += sum(math.prod(sh) for sh in shapes.values())
    return total


def compile_from_keras(model: TrainableModel, cfg: dict[str, Any], custom: dict[str, Any]) -> None:
    """Compile `model` as a Keras compile_config says, where xpnet has the same optimizer, loss and metrics."""
    try:
        opt = keras_format.optimizer_from_keras(cfg.get("optimizer"), custom)
        loss = cfg.get("loss")
        loss = keras_format.loss_from_keras(loss, custom) if isinstance(loss, str | dict) else None
        if opt is None or loss is None:
            return  # several losses, or settings xpnet lacks: weights only (as Keras, with a warning)
        metrics = cfg.get("metrics") or []
        weighted = cfg.get("weighted_metrics") or None
        model.compile(opt, loss, metrics, weighted_metrics=weighted)
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # the weights still load, as in Keras
        what = f"the .keras file's compile_config was not applied ({e})"
        warnings.warn(f"{what}; compile the model yourself", RuntimeWarning, stacklevel=3)


@contextlib.contextmanager
def as_file_error(path: str | os.PathLike[str], kind: str, what: str) -> Iterator[None]:
    """Whatever a crafted description makes the constructors raise, as the one FileFormatError line."""
    try:
        yield
    except FileFormatError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError, OverflowError) as e:
        raise FileFormatError(path, kind, f"{what} cannot be used: {e}") from e


def _class(name: str, module: Any, base: type, custom: dict[str, Any]) -> Any:
    if name in custom:
        return custom[name]
    cls = getattr(module, name, None)
    if isinstance(cls, type) and issubclass(cls, base):
        return cls
    raise ValueError(f"unknown {base.__name__} class {name!r} in the model file; pass it in custom_objects={{...}}")


def deserialize(value: Any, kind: str, custom: dict[str, Any]) -> Any:
    """An activation, regularizer or loss from what `config.serialize` wrote."""
    getters: dict[str, tuple[Any, type, Any]] = {
        "activation": (activations, activations.Activation, activations.get),
        "regularizer": (regularizers, regularizers.Regularizer, regularizers.get),
        "loss": (losses, losses.Loss, losses.get),
    }
    module, base, get = getters[kind]
    if isinstance(value, str) and value in custom:
        found = custom[value]
        return found() if isinstance(found, type) else get(found)  # a class, or a user's function
    if value is None or isinstance(value, str):
        return get(value)
    if kind == "regularizer" and value["class_name"] in ("L1", "L2", "L1L2"):  # Keras's classes, xpnet's factories
        return regularizers.L1L2(**value["config"])
    return _class(value["class_name"], module, base, custom)(**value["config"])


def layer_from_config(entry: dict[str, Any], custom: dict[str, Any]) -> Layer:
    from .. import layers as layers_mod

    if entry["class_name"] in MODEL_CLASSES and entry["class_name"] not in custom:
        return _nested_model(entry, custom)  # type: ignore[return-value]  # a model used as a layer
    cls = _class(entry["class_name"], layers_mod, Layer, custom)
    config = dict(entry["config"])
    trainable = bool(config.pop("trainable", True))  # Keras keeps it in the config; xpnet sets it after
    config = _from_keras(cls, config)
    for key, value in config.items():
        if key == "activation" and (isinstance(value, dict) or (isinstance(value, str) and value in custom)):
            config[key] = deserialize(value, "activation", custom)
        elif key.endswith("_regularizer") and value is not None:
            config[key] = deserialize(value, "regularizer", custom)
        elif key.endswith("_initializer") and isinstance(value, dict):
            config[key] = _initializer(value)
    layer = cls(**config)
    layer.trainable = trainable
    return layer


def _nested_model(entry: dict[str, Any], custom: dict[str, Any]) -> Any:
    """A model used as a layer, from its entry in the outer model's config (its weights come with the outer's)."""
    config = dict(entry["config"])
    trainable = bool(config.pop("trainable", True))
    cls = MODEL_CLASSES[entry["class_name"]]
    if entry["class_name"] == "Sequential":
        model = cls.from_config(config, custom)
    else:
        model = cls.from_config(config, custom, seed=config.get("seed"), dtype=config.get("dtype", "float32"))
    model.trainable = trainable
    return model


def _from_keras(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    """A layer config as xpnet's constructor takes it, also when Keras 3 wrote it (model.to_json()).

    Keras adds settings xpnet has no counterpart for; they are dropped when they hold what
    xpnet does anyway (trainable, the dtype policy: the model's dtype rules, unset constraints,
    channels_last, BatchNormalization's renorm off), and anything else raises instead of being
    silently ignored.
    """
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return config
    kept = {}
    for key, value in config.items():
        if key in params:
            kept[key] = value
        elif not (
            value is None
            or key == "dtype"
            or (key == "trainable" and value is True)
            or (key == "data_format" and value == "channels_last")
            or (key == "renorm" and value is False)  # BatchNormalization: renorm off, so its momentum is unused
            or (key == "renorm_momentum" and not config.get("renorm"))
        ):
            raise ValueError(f"{cls.__name__}: the config's {key}={value!r} has no counterpart in xpnet")
    return kept


def _initializer(value: dict[str, Any]) -> Any:
    """Keras's {"class_name": "GlorotUniform", "config": {"seed": None, ...}} as an xpnet initializer."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", str(value.get("class_name", ""))).lower()
    settings = {k: v for k, v in dict(value.get("config", {})).items() if v is not None}
    if not settings:
        return initializers.get(name)
    cls = getattr(initializers, str(value.get("class_name")), None)
    if not isinstance(cls, type):
        what = value.get("class_name")
        raise ValueError(f"initializer {what!r} with settings {settings} has no counterpart in xpnet")
    return cls(**settings)


def sequential_from_config(config: Any, custom: dict[str, Any]) -> tuple[Shape | None, list[Layer], dict[str, Any]]:
    """What `Sequential.from_config` needs from a `get_config()` dict: (input shape or None, layers, model kwargs).

    config: {"name", "layers": [{"class_name", "config"}, ...], "dtype"?, "seed"?}, an InputLayer
    entry first when the input shape is known (Keras's `batch_shape`, or `batch_input_shape`).
    """
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"a Sequential config is a dict with a 'layers' list (model.get_config()), received {got}")
    entries = list(config["layers"])
    shape: Shape | None = None
    if entries and isinstance(entries[0], dict) and entries[0].get("class_name") == "InputLayer":
        inner = entries.pop(0).get("config", {})
        batch_shape = inner.get("batch_shape", inner.get("batch_input_shape"))
        if batch_shape is None:
            raise ValueError(f"the InputLayer entry has no batch_shape: {inner}")
        shape = _as_shape(batch_shape)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "class_name" not in entry or "config" not in entry:
            raise ValueError(f"layer {i} of the config is not a {{'class_name', 'config'}} dict: {entry!r}")
    layers = [layer_from_config(entry, custom) for entry in entries]
    dtype = config.get("dtype", "float32")
    if isinstance(dtype, dict):  # Keras 3 writes a DTypePolicy: {"class_name": "DTypePolicy", "config": {"name": ...}}
        dtype = dtype.get("config", {}).get("name", "float32")
    kwargs = {"name": config.get("name", "sequential"), "dtype": dtype, "seed": config.get("seed")}
    return shape, layers, kwargs


def restore_state(
    model: TrainableModel, header: dict[str, Any], arrays: dict[str, np.ndarray], custom: dict[str, Any]
) -> None:
    """Weights, compile settings, optimizer state and counters of a model file into `model` (built alike)."""
    if header["layout"] != model.store.layout():
        raise ValueError("the model file's weights do not fit the architecture it describes (a damaged file?)")
    model.store.set_host_params(arrays["params"])
    cfg = header.get("compile")
    if cfg is not None:
        opt_cls = _class(cfg["optimizer"]["class_name"], optimizers, optimizers.Optimizer, custom)
        opt_config = dict(cfg["optimizer"]["config"])
        if isinstance(opt_config.get("learning_rate"), dict):
            opt_config["learning_rate"] = schedules.deserialize(opt_config["learning_rate"], custom)
        loss = cfg["loss"]
        if isinstance(loss, list):
            model.compile(
                opt_cls(**opt_config),
                [deserialize(lo, "loss", custom) for lo in loss],  # type: ignore[arg-type]
                cfg["metrics"],
                loss_weights=cfg.get("loss_weights"),
            )
        else:
            model.compile(
                opt_cls(**opt_config),
                deserialize(loss, "loss", custom),
                cfg["metrics"],
                weighted_metrics=cfg.get("weighted_metrics"),
            )
        opt, ops = model.optimizer, model.ops
        assert opt is not None and ops is not None
        # slots are laid out over the trainable weights: a file saved before a `trainable` change
        # (which its compile had not applied yet) starts the optimizer afresh
        same = header.get("trainable", model.store.trainable_labels()) == model.store.trainable_labels()
        with ops.activate():
            for k, v in opt.slots.items():
                if same and f"slot_{k}" in arrays:
                    v[...] = ops.asarray(arrays[f"slot_{k}"])
        opt.iterations = int(cfg["iterations"])
    saved = header.get("dropout", {})
    for layer in step_counted(model.leaf_layers):
        if layer.name in saved:
            layer.iterations = int(saved[layer.name])
    model.train_state.epochs_trained = int(header.get("epochs_trained", 0))


# Keras's registry and (de)serialization live in xpnet/serialization.py; `keras.saving` exposes them here
from .serialization import custom_object_scope as custom_object_scope  # noqa: E402
from .serialization import deserialize_keras_object as deserialize_keras_object  # noqa: E402
from .serialization import get_custom_objects as get_custom_objects  # noqa: E402
from .serialization import get_registered_name as get_registered_name  # noqa: E402
from .serialization import get_registered_object as get_registered_object  # noqa: E402
from .serialization import register_keras_serializable as register_keras_serializable  # noqa: E402
from .serialization import serialize_keras_object as serialize_keras_object  # noqa: E402
from .serialization import set_layer_support  # noqa: E402

set_layer_support(Layer, layer_from_config)
