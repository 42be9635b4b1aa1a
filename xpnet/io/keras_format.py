"""Keras 3's `.keras` file: a zip of config.json, metadata.json and model.weights.h5, read and written by xpnet.

    config.json        {"module", "class_name": "Sequential" | "Functional", "config": the model's
                       get_config() with a "module" on every layer, "build_config", "compile_config"}
    metadata.json      {"keras_version", "date_saved", "saved_by"}
    model.weights.h5   the layers' weights in the layout of `xpnet.h5_weights` (as save_weights writes)

xpnet adds what an exact resume needs and Keras has no place for, in members Keras does not
read: xpnet/header.json (xpnet's model header: compile settings, optimizer step, dropout
counters, epochs trained) and xpnet/slot_<name>.npy (the optimizer's flat slots). A Keras file
has neither; its compile_config is then followed where xpnet has the same optimizer, loss and
metrics. Reads are bounded like every xpnet read (`file_checks`). h5py is an optional
dependency: `pip install xpnet[h5]`.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import h5_weights
from .file_checks import READ_ERRORS, FileFormatError, check_zip_members, loads_json, read_member, read_npz_member
from .weights_io import atomic_write_bytes

if TYPE_CHECKING:
    from ..training.protocol import TrainableModel

KIND = "Keras .keras"
CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
XPNET_HEADER = "xpnet/header.json"
KERAS_VERSION = "3.15.1"  # the Keras release whose layout this writes (and was checked against)
_MODULES = {"Sequential": "keras", "Functional": "keras.src.models.functional"}


def is_keras_zip(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a zip with a config.json (Keras 3's layout), not xpnet's older .npz-based file."""
    try:
        with zipfile.ZipFile(path) as z:
            return CONFIG in z.namelist()
    except READ_ERRORS:
        return False


def _h5py_for_keras() -> Any:
    try:
        import h5py
    except ImportError as e:
        raise ModuleNotFoundError(
            "a .keras file holds its weights in HDF5, which needs h5py: pip install xpnet[h5]; "
            "or save without it as .npz: model.save('model.npz')"
        ) from e
    return h5py


def _keras_object(value: Any, module: str) -> Any:
    """A {"class_name", "config"} dict as Keras serializes it (with its module); names and None unchanged."""
    if isinstance(value, dict) and "class_name" in value:
        return {"module": module, **value, "registered_name": None}
    return value


def _with_modules(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Layer entries as Keras writes them: Keras looks classes up by module, and nested objects too.

    A model used as a layer ("Sequential", "Functional") gets its model class's module, and its own
    layers theirs, as deep as models nest.
    """
    out = []
    for entry in layers:
        config = dict(entry["config"])
        kind = entry.get("class_name")
        if kind in _MODULES and isinstance(config.get("layers"), list):
            config["layers"] = _with_modules(config["layers"])
            registered = None if kind == "Sequential" else kind
            out.append({"module": _MODULES[kind], **entry, "config": config, "registered_name": registered})
            continue
        for key, value in config.items():
            if key.endswith("_regularizer"):
                config[key] = _keras_object(value, "keras.regularizers")
            elif key.endswith("_initializer"):
                config[key] = _keras_object(value, "keras.initializers")
            elif key == "activation":
                config[key] = _keras_object(value, "keras.activations")
        out.append({"module": "keras.layers", **entry, "config": config, "registered_name": None})
    return out


def _with_tensor_dtypes(value: Any, dtype: str) -> Any:
    """A copy where every "__keras_tensor__" reference names its dtype (Keras needs it to rebuild a graph)."""
    if isinstance(value, list):
        return [_with_tensor_dtypes(v, dtype) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _with_tensor_dtypes(v, dtype) for k, v in value.items()}
    if out.get("class_name") == "__keras_tensor__" and isinstance(out.get("config"), dict):
        out["config"] = {"dtype": dtype, **out["config"]}
    return out


def keras_config(model: TrainableModel, spec: dict[str, Any], compile_cfg: dict[str, Any] | None) -> dict[str, Any]:
    """config.json for `model` from xpnet's file spec (a Sequential's layer list or a functional config)."""
    if spec.get("class_name") == "Functional":
        kind, config = "Functional", dict(spec["config"])
        build: dict[str, Any] = {"input_shape": None}
    else:
        from .config import sequential_config

        kind, config = "Sequential", sequential_config(model)
        build = {"input_shape": [None, *spec["input_shape"]]}
    config = {**config, "layers": _with_tensor_dtypes(_with_modules(config["layers"]), model.dtype)}
    config["seed"] = spec.get("seed")
    out: dict[str, Any] = {
        "module": _MODULES[kind],
        "class_name": kind,
        "config": config,
        "registered_name": None if kind == "Sequential" else kind,
        "build_config": build,
    }
    if compile_cfg is not None and isinstance(compile_cfg.get("loss"), str | dict):
        opt = compile_cfg["optimizer"]
        settings = {k: v for k, v in opt["config"].items() if k not in ("iterations",)}
        if isinstance(settings.get("learning_rate"), dict):
            settings["learning_rate"] = _keras_object(settings["learning_rate"], "keras.optimizers.schedules")
        out["compile_config"] = {
            "optimizer": {"module": "keras.optimizers", "class_name": opt["class_name"], "config": settings},
            "loss": _keras_object(compile_cfg["loss"], "keras.losses"),
            "loss_weights": None,
            "metrics": compile_cfg.get("metrics") or None,
            "weighted_metrics": compile_cfg.get("weighted_metrics") or None,
            "run_eagerly": False,
            "steps_per_execution": 1,
            "jit_compile": False,
        }
    return out


def save(
    model: TrainableModel,
    path: str | os.PathLike[str],
    header: dict[str, Any],
    slots: dict[str, np.ndarray],
) -> Path:
    """Write `model` as a Keras 3 .keras zip, atomically; header: xpnet's model header (see `saving`)."""
    h5py = _h5py_for_keras()
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        leaves = h5_weights.leaf_paths(model.layers)
        h5_weights.write_layers(f, model.name, model.layers, [layer.get_weights() for _, layer in leaves])
    config = keras_config(model, header["model"], header.get("compile"))
    from .. import __version__

    metadata = {
        "keras_version": KERAS_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "saved_by": f"xpnet {__version__}",
    }

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
            z.writestr(METADATA, json.dumps(metadata))
            z.writestr(CONFIG, json.dumps(config))
            z.writestr(WEIGHTS, weights.getvalue())
            z.writestr(XPNET_HEADER, json.dumps(header))
            for k, v in slots.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(v), allow_pickle=False)
                z.writestr(f"xpnet/slot_{k}.npy", buf.getvalue())

    return atomic_write_bytes(path, write)


def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, list[np.ndarray]], Any, dict[str, Any]]:
    """(config.json, {layer path: arrays} of model.weights.h5, xpnet's header or None, xpnet's slots).

    Every member is size-checked before it is read and every dataset before its data is read.
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as z:
            check_zip_members(z, size, path, KIND)
            names = set(z.namelist())
            for need in (CONFIG, WEIGHTS):
                if need not in names:
                    raise FileFormatError(path, KIND, f"it has no {need}")
            config = loads_json(read_member(z, CONFIG, path, KIND), path, KIND, CONFIG)
            header = (
                loads_json(read_member(z, XPNET_HEADER, path, KIND), path, KIND, XPNET_HEADER)
                if XPNET_HEADER in names
                else None
            )
            slots = {
                n[len("xpnet/slot_") : -4]: read_npz_member(z, n, path, KIND)
                for n in sorted(names)
                if n.startswith("xpnet/slot_") and n.endswith(".npy")
            }
            data = read_member(z, WEIGHTS, path, KIND)
    except FileFormatError:
        raise
    except READ_ERRORS as e:
        raise FileFormatError(path, KIND, f"a damaged or truncated archive ({e})") from e
    h5py = _h5py_for_keras()
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except (OSError, ValueError, RuntimeError, TypeError) as e:
        raise FileFormatError(path, KIND, f"its {WEIGHTS} is not a readable HDF5 file ({e})") from e
    with f:
        # bounded by the archive's size, not the inflated member's: else the zip's ratio and HDF5's gzip multiply
        stored = h5_weights.read_layers(f, path, KIND, size)
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("class_name"), str)
        or config["class_name"] not in _MODULES
        or not isinstance(config.get("config"), dict)
    ):
        got = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise FileFormatError(path, KIND, f"its {CONFIG} describes {got!r}, not a Sequential or Functional model")
    if header is not None and not isinstance(header, dict):
        raise FileFormatError(path, KIND, f"its {XPNET_HEADER} is not a JSON object")
    return config, stored, header, slots


# Keras settings that xpnet has no argument for but whose Keras default is what xpnet does anyway
_INERT: dict[str, tuple[Any, ...]] = {
    "name": (),  # any value: a label only
    "use_ema": (False,),
    "ema_momentum": (0.99,),
    "ema_overwrite_frequency": (None,),
    "loss_scale_factor": (None,),
    "amsgrad": (False,),
    "centered": (False,),
    "reduction": ("sum_over_batch_size",),
    "dtype": (None, "float32"),
    "axis": (-1,),
    "label_smoothing": (0, 0.0),
    "ignore_class": (None,),
}


def keras_settings(cls: type, config: Any, what: str) -> dict[str, Any] | None:
    """The arguments for xpnet's `cls` from a Keras config; None (with a warning) if a setting has no counterpart."""
    import inspect

    accepted = inspect.signature(cls).parameters
    settings = dict(config) if isinstance(config, dict) else {}
    unknown = {
        k: v
        for k, v in settings.items()
        if k not in accepted and v is not None and not (k in _INERT and (not _INERT[k] or v in _INERT[k]))
    }
    if unknown:
        message = f"the .keras file's {what} settings {unknown} have no xpnet counterpart; not compiled"
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        return None
    return {k: v for k, v in settings.items() if k in accepted}


def optimizer_from_keras(cfg: Any, custom: dict[str, Any]) -> Any:
    """xpnet's optimizer for Keras's {"class_name", "config"}; None (with a warning) where xpnet has no match."""
    from .. import optimizers

    if isinstance(cfg, str):
        return optimizers.get(cfg)
    name = cfg.get("class_name") if isinstance(cfg, dict) else None
    cls = custom.get(str(name)) or getattr(optimizers, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, optimizers.Optimizer)):
        warnings.warn(f"the .keras file's optimizer {name!r} has no xpnet counterpart; not compiled", RuntimeWarning, 3)
        return None
    settings = keras_settings(cls, cfg.get("config"), str(name))
    if settings is not None and isinstance(settings.get("learning_rate"), dict):
        from .. import schedules

        rate = settings["learning_rate"]
        kind = custom.get(str(rate.get("class_name"))) or getattr(schedules, str(rate.get("class_name")), None)
        if not (isinstance(kind, type) and issubclass(kind, schedules.LearningRateSchedule)):
            raise ValueError(f"learning-rate schedule {rate.get('class_name')!r} has no xpnet counterpart")
        rate_settings = keras_settings(kind, rate.get("config"), str(rate.get("class_name")))
        if rate_settings is None:
            return None
        settings["learning_rate"] = kind(**rate_settings)
    return None if settings is None else cls(**settings)


def loss_from_keras(cfg: Any, custom: dict[str, Any]) -> Any:
    """xpnet's loss for Keras's loss entry (a name, or {"module", "class_name", "config"}); None with a warning."""
    from .. import losses

    if isinstance(cfg, str):
        return custom[cfg]() if cfg in custom else losses.get(cfg)
    name = cfg.get("class_name") if isinstance(cfg, dict) else None
    cls = custom.get(str(name)) or getattr(losses, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, losses.Loss)):
        warnings.warn(f"the .keras file's loss {name!r} has no xpnet counterpart; not compiled", RuntimeWarning, 3)
        return None
    settings = keras_settings(cls, cfg.get("config"), str(name))
    return None if settings is None else cls(**settings)
