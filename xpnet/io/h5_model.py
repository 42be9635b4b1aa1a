"""Keras's legacy full-model `.h5` files: `model.save("m.h5")` and `load_model("m.h5")` (h5py: `xpnet[h5]`).

The layout is Keras 2's (`keras.saving.legacy.hdf5_format`):

    attrs model_config        the architecture as JSON ({"class_name": "Sequential", "config": ...})
    attrs training_config     compile settings as JSON (loss, metrics, optimizer_config), when compiled
    attrs keras_version, backend
    model_weights             attrs layer_names; one group per layer with attrs weight_names
                              ("dense/kernel:0", ...) naming datasets inside it ("dense/kernel:0")

xpnet adds what resuming a fit needs: attrs xpnet_header (its model-file header: seed, dtype,
layout, compile settings, counters) and optimizer_weights/xpnet_slot_<name> (the optimizer's
flat slots). A file Keras 2 wrote loads too: architecture, weights, and (compile=True) its loss,
metrics and optimizer settings, without optimizer state.

Every read is bounded and checked as `file_checks` checks Keras 3's files: the JSON attributes
by size and nesting, each dataset refused unless its data lies plainly inside the file (no
external storage, virtual datasets or links) in an amount its stored bytes justify, and the
weights are read before the architecture is built, so that it may need at most as many
parameters as the file stores (`file_checks.parameter_budget`). Every problem is one
`FileFormatError` line.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import optimizers
from . import saving
from .file_checks import DEFLATE_SLACK, MAX_DEFLATE_RATIO, FileFormatError, h5_dataset, h5_group, loads_json
from .weights_io import atomic_write_path

if TYPE_CHECKING:
    from ..training.protocol import TrainableModel

_MAX_JSON = 64 << 20  # bytes of a config attribute: far above any real model, far below a hostile one
KIND = "Keras .h5 model"


def is_legacy_h5(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names a legacy full-model file (".h5"/".hdf5", not Keras 3's ".weights.h5")."""
    name = str(path).lower()
    return name.endswith((".h5", ".hdf5")) and not name.endswith(".weights.h5")


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as e:
        raise ModuleNotFoundError(
            "saving or loading a legacy .h5 model needs h5py: pip install 'xpnet[h5]' (or pip install h5py); "
            "model.save('m.keras') needs nothing extra"
        ) from e
    return h5py


def save_model(model: TrainableModel, path: str | os.PathLike[str], spec: dict[str, Any] | None = None) -> Path:
    """Write `model` to a legacy .h5 file, atomically (spec: as for `saving.save_model`)."""
    h5py = _h5py()
    if not Path(path).parent.is_dir() and str(Path(path).parent):
        raise FileNotFoundError(f"cannot write {path}: folder {Path(path).parent} does not exist")
    # xpnet's own header and arrays, exactly as its .keras files hold them (one place decides their content)
    with tempfile.TemporaryDirectory() as folder:
        saving.save_model(model, Path(folder) / "model.npz", spec)
        header, arrays = saving.read_model_file(Path(folder) / "model.npz")
    return _write(h5py, model, path, header, arrays)


def _write(
    h5py: Any,
    model: TrainableModel,
    path: str | os.PathLike[str],
    header: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> Path:
    model_json = json.dumps({"class_name": header["model"].get("class_name", "Sequential"), "config": _config(model)})
    layers = [layer for layer in model.layers]
    weights = [layer.get_weights() for layer in layers]
    training = _training_config(header)

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["backend"] = "xpnet"
            f.attrs["keras_version"] = "2.15.0"  # the layout's version, so Keras 2 readers accept it
            f.attrs["model_config"] = model_json
            f.attrs["xpnet_header"] = json.dumps(header)
            if training is not None:
                f.attrs["training_config"] = json.dumps(training)
            group = f.create_group("model_weights")
            group.attrs["layer_names"] = [str(layer.name).encode() for layer in layers]
            group.attrs["backend"] = "xpnet"
            group.attrs["keras_version"] = "2.15.0"
            for layer, arrays_ in zip(layers, weights, strict=True):
                g = group.create_group(str(layer.name))
                # a model used as a layer holds its layers' weights: their paths ("i1/kernel") keep the names apart
                names = [f"{w.path}:0" for w in layer.weights]
                g.attrs["weight_names"] = [n.encode() for n in names]
                for name, a in zip(names, arrays_, strict=True):
                    g.create_dataset(name, data=a)
            slots = {k: v for k, v in arrays.items() if k.startswith("slot_")}
            if slots:
                opt = f.create_group("optimizer_weights")
                for k, v in slots.items():
                    opt.create_dataset(f"xpnet_{k}", data=v)

    return atomic_write_path(path, write)


def _config(model: TrainableModel) -> Any:
    get_config = getattr(model, "get_config", None)
    return get_config() if callable(get_config) else {}


def _training_config(header: dict[str, Any]) -> dict[str, Any] | None:
    """Keras 2's training_config from xpnet's compile settings (one-output models; None when not compiled)."""
    cfg = header.get("compile")
    if cfg is None:
        return None
    return {
        "loss": cfg["loss"],
        "metrics": cfg.get("metrics", []),
        "weighted_metrics": cfg.get("weighted_metrics") or None,
        "loss_weights": cfg.get("loss_weights"),
        "optimizer_config": cfg["optimizer"],
    }


class LegacyFile:
    """An open legacy .h5 model file: its JSON attributes, read and checked; weights on request."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        h5py = _h5py()
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a folder, not a .h5 model file")
        if not self.path.exists():
            raise FileNotFoundError(f"model file not found: {self.path}")
        try:
            self.file = h5py.File(self.path, "r")
        except (OSError, ValueError, RuntimeError, TypeError) as e:
            raise FileFormatError(self.path, KIND, f"not a readable HDF5 file ({e})") from e
        # what this file may still make us allocate (see `file_checks.h5_dataset`)
        self.budget = [self.path.stat().st_size * MAX_DEFLATE_RATIO + DEFLATE_SLACK]
        try:
            if "model_config" not in self.file.attrs:
                hint = (
                    " (a weights-only file: build the model, then model.load_weights)" if "layers" in self.file else ""
                )
                raise FileFormatError(self.path, KIND, f"it holds no model_config: not a full-model file{hint}")
            self.model_config = self._json("model_config")
            self.xpnet_header = self._json("xpnet_header") if "xpnet_header" in self.file.attrs else None
            self.training_config = self._json("training_config") if "training_config" in self.file.attrs else None
            self.stored = self._stored()
        except FileFormatError:
            self.file.close()
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError) as e:
            self.file.close()
            raise FileFormatError(self.path, KIND, f"a damaged HDF5 structure ({type(e).__name__}: {e})") from e
        except BaseException:
            self.file.close()
            raise

    def __enter__(self) -> LegacyFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.file.close()

    def _json(self, name: str) -> Any:
        # a fixed-length string declares its size: checked before reading; a variable-length one lives in
        # the file's heap, so reading it allocates no more than the file holds, and its length is checked after
        declared = self.file.attrs.get_id(name).get_storage_size()
        if declared > _MAX_JSON:
            raise FileFormatError(
                self.path, KIND, f"the {name} attribute is {declared} bytes, more than a model config can be"
            )
        value = self.file.attrs[name]
        if not isinstance(value, str | bytes):
            raise FileFormatError(self.path, KIND, f"the {name} attribute is not a string")
        data = value if isinstance(value, bytes) else value.encode()
        if len(data) > _MAX_JSON:
            raise FileFormatError(
                self.path, KIND, f"the {name} attribute is {len(data)} bytes, more than a model config can be"
            )
        return loads_json(data, self.path, KIND, f"{name} attribute")

    def model_json(self) -> str:
        return json.dumps(self.model_config)

    def _stored(self) -> dict[str, dict[str, np.ndarray]]:
        """{layer group: {weight name: array}} of model_weights, each dataset checked before it is read."""
        group = h5_group(self.file, "model_weights", self.path, KIND)
        if group is None:
            raise FileFormatError(self.path, KIND, "it has no model_weights group")
        out: dict[str, dict[str, np.ndarray]] = {}
        for layer in list(group):
            g = h5_group(group, layer, self.path, KIND)
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
            out[layer] = {name: h5_dataset(g, name, self.path, KIND, self.budget) for name in names}
        return out

    def count(self) -> int:
        """The number of weights the file stores (the most an architecture it describes may need)."""
        return sum(a.size for arrays in self.stored.values() for a in arrays.values())

    def layer_weights(self, model: TrainableModel) -> list[np.ndarray]:
        """The weights for `model` in get_weights order, matched by layer name and checked against its shapes."""
        out: list[np.ndarray] = []
        for layer in model.layers:
            expected = [tuple(w.shape) for w in layer.get_weights()]
            if not expected:
                continue
            if str(layer.name) not in self.stored:
                raise FileFormatError(
                    self.path, KIND, f"it has no weights for layer {layer.name!r}; it has {sorted(self.stored)}"
                )
            arrays = self.stored[str(layer.name)]
            if len(arrays) != len(expected):
                raise FileFormatError(
                    self.path,
                    KIND,
                    f"layer {layer.name!r} has {len(arrays)} weights in the file, the model expects "
                    f"{len(expected)} {expected}",
                )
            for (name, a), shape in zip(arrays.items(), expected, strict=True):
                if a.shape != shape:
                    raise FileFormatError(
                        self.path, KIND, f"weight {name!r} is {a.dtype}{a.shape}, the model expects {shape}"
                    )
                out.append(a)
        return out

    def slots(self, size: int) -> dict[str, np.ndarray]:
        """xpnet's optimizer slots (each (size,), checked before reading); {} for a Keras-written file."""
        try:
            return self._slots(size)
        except FileFormatError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError) as e:
            raise FileFormatError(self.path, KIND, f"a damaged HDF5 structure ({type(e).__name__}: {e})") from e

    def _slots(self, size: int) -> dict[str, np.ndarray]:
        group = h5_group(self.file, "optimizer_weights", self.path, KIND)
        if group is None:
            return {}
        out = {}
        for key in list(group):
            if not key.startswith("xpnet_slot_"):
                continue  # Keras 2's own optimizer variables: not xpnet's layout, so training restarts them
            a = h5_dataset(group, key, self.path, KIND, self.budget)
            if a.shape != (size,):
                raise FileFormatError(
                    self.path, KIND, f"optimizer slot {key!r} has shape {a.shape}, expected ({size},)"
                )
            out[key[len("xpnet_") :]] = a
        return out


def compile_from_keras(model: TrainableModel, training: dict[str, Any], custom: dict[str, Any]) -> None:
    """compile `model` from a Keras 2 training_config: its loss, metrics and optimizer settings."""
    optimizer = _optimizer_from_keras(training.get("optimizer_config") or {}, custom)
    loss = training.get("loss")
    if isinstance(loss, dict) and "config" in loss and "class_name" in loss:
        loss = {
            "class_name": loss["class_name"],
            "config": {k: v for k, v in loss["config"].items() if k != "reduction"},
        }
    metrics = [
        m if isinstance(m, str) else m.get("config", {}).get("name", m.get("class_name"))
        for m in training.get("metrics") or []
    ]
    model.compile(optimizer, saving.deserialize(loss, "loss", custom), metrics or None)


def _optimizer_from_keras(opt_cfg: dict[str, Any], custom: dict[str, Any]) -> optimizers.Optimizer:
    """The xpnet optimizer for a Keras 2 optimizer_config, with the settings xpnet's class takes."""
    opt_name = str(opt_cfg.get("class_name"))
    cls = custom.get(opt_name) or getattr(optimizers, opt_name, None)
    if not (isinstance(cls, type) and issubclass(cls, optimizers.Optimizer)):
        raise ValueError(f"the file's optimizer {opt_cfg.get('class_name')!r} has no counterpart in xpnet")
    params = inspect.signature(cls).parameters
    settings = dict(opt_cfg.get("config") or {})
    if "lr" in settings and "learning_rate" not in settings:  # Keras 2's older name
        settings["learning_rate"] = settings.pop("lr")
    kept = {k: v for k, v in settings.items() if k in params and not isinstance(v, dict) and v is not None}
    return cls(**kept)
