"""Whole-model files: architecture, weights, compile settings and optimizer state in one .keras/.npz file.

The file is an uncompressed zip (NumPy's .npz, never pickle) holding a JSON header and the flat
parameter and optimizer buffers, written atomically. It carries what a resumed `fit` needs to
continue exactly: the optimizer's slots and step count, the dropout counters and the number of
epochs trained (which keys the next shuffle). `xpnet.models.load_model` reads it on any backend.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import activations, initializers, losses, optimizers, regularizers, schedules
from .config import layer_entry, serialize
from .layers.base import Layer, Shape, _as_shape
from .layers.dropout import Dropout
from .weights_io import atomic_write_bytes, open_npz

if TYPE_CHECKING:
    from .training.trainer import Trainer

FORMAT = "xpnet-model"
VERSION = 1


def save_model(model: Trainer, path: str | os.PathLike[str], spec: dict[str, Any] | None = None) -> Path:
    """Write `model` to `path` (".keras" or ".npz"); see the module docstring.

    spec: the architecture as the model describes it (a functional model's graph); by default
    the layer list of a Sequential.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".keras", ".npz"):
        raise ValueError(f"model.save writes a .keras (or .npz) file, not {suffix or 'a name without suffix'}: {path}")
    if not model.built or (spec is None and model.feature_shape is None):
        raise ValueError("model.save: build the model first (give the first layer input_shape=..., or fit it)")
    opt = model.optimizer
    if spec is None:
        assert model.feature_shape is not None
        spec = {
            "class_name": type(model).__name__,
            "name": model.name,
            "seed": model.seed,
            "dtype": model.dtype,
            "input_shape": list(model.feature_shape),
            "layers": [layer_entry(layer) for layer in model.layers],
        }
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model": spec,
        "layout": model.store.layout(),
        "trainable": model.store.trainable_labels(),
        "dropout": {layer.name: layer.iterations for layer in model.layers if isinstance(layer, Dropout)},
        "epochs_trained": model.train_state.epochs_trained,
        "compile": None,
    }
    arrays = {"params": model.store.host_params()}
    if opt is not None and model.loss is not None:
        header["compile"] = {
            "optimizer": {"class_name": type(opt).__name__, "config": opt.get_config()},
            "iterations": opt.iterations,
            "loss": serialize(model.loss),
            "metrics": [m if isinstance(m, str) else getattr(m, "name", str(m)) for m in model.metric_ids],
            "weighted_metrics": [
                m if isinstance(m, str) else getattr(m, "name", str(m)) for m in model.weighted_metric_ids
            ],
        }
        if not model.single_output:  # one loss, weight and metric list per output
            header["compile"]["loss"] = [serialize(loss) for loss in model.compiled_losses]
            header["compile"]["loss_weights"] = model.loss_weights
            header["compile"]["metrics"] = [[m.name for m in ms] for ms in model.output_metrics]
        if model.ops is not None and opt.ops is model.ops:
            arrays.update({f"slot_{k}": model.ops.to_numpy(v) for k, v in opt.slots.items()})
    entries = {f"a_{k}": v for k, v in arrays.items()}
    entries["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return atomic_write_bytes(path, lambda f: np.savez(f, **entries))  # type: ignore[arg-type]


def read_model_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a file written by `save_model`; ValueError says what is wrong."""
    with open_npz(path, "model") as z:
        try:
            header = json.loads(bytes(z["header"]).decode()) if "header" in z.files else None
            arrays = {k[2:]: z[k] for k in z.files if k.startswith("a_")}
        except ValueError as e:  # an object array: NumPy would suggest unpickling, which xpnet never does
            raise ValueError(f"{path} is not an xpnet model file (it holds pickled objects)") from e
        except (OSError, EOFError, KeyError) as e:
            raise ValueError(f"{path} is not a readable xpnet model file (a damaged or truncated archive)") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not an xpnet model file (no xpnet-model header; weights files load with load_weights)"
        )
    if header.get("version", 0) > VERSION:
        raise ValueError(f"{path} was written by a newer xpnet (model format version {header['version']})")
    if "params" not in arrays:
        raise ValueError(f"{path} is not a complete xpnet model file (no parameters)")
    return header, arrays


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
        return custom[value]()
    if value is None or isinstance(value, str):
        return get(value)
    if kind == "regularizer" and value["class_name"] in ("L1", "L2", "L1L2"):  # Keras's classes, xpnet's factories
        return regularizers.L1L2(**value["config"])
    return _class(value["class_name"], module, base, custom)(**value["config"])


def layer_from_config(entry: dict[str, Any], custom: dict[str, Any]) -> Layer:
    from . import layers as layers_mod

    cls = _class(entry["class_name"], layers_mod, Layer, custom)
    config = dict(entry["config"])
    trainable = bool(config.pop("trainable", True))  # Keras keeps it in the config; xpnet sets it after
    config = _from_keras(cls, config)
    for key, value in config.items():
        if key == "activation" and isinstance(value, dict):
            config[key] = deserialize(value, "activation", custom)
        elif key.endswith("_regularizer") and value is not None:
            config[key] = deserialize(value, "regularizer", custom)
        elif key.endswith("_initializer") and isinstance(value, dict):
            config[key] = _initializer(value)
    layer = cls(**config)
    layer.trainable = trainable
    return layer


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
    model: Trainer, header: dict[str, Any], arrays: dict[str, np.ndarray], custom: dict[str, Any]
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
    for layer in model.layers:
        if isinstance(layer, Dropout) and layer.name in header.get("dropout", {}):
            layer.iterations = int(header["dropout"][layer.name])
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
