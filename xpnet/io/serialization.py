"""Keras's object registry and (de)serialization: `register_keras_serializable`, `get_custom_objects`,
`custom_object_scope`, `serialize_keras_object` / `deserialize_keras_object`.

Exposed as Keras exposes them, under `xpnet.saving` and `xpnet.utils`. Model loading
(`load_model`, `model_from_json`, `from_config`, `clone_model`) looks a class name up in the
`custom_objects` argument first, then in the open `custom_object_scope`s (innermost first), then
in the registry, so a registered layer loads without being passed again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .. import activations, initializers, losses, metrics, optimizers, regularizers, schedules
from .config import layer_entry
from .config import serialize as describe

# "package>name" -> object, as Keras keys it; plain names (as `get_custom_objects().update(...)`
# adds them) live in the same dict
_REGISTRY: dict[str, Any] = {}
_NAMES: dict[Any, str] = {}  # object -> its registered name
_SCOPES = threading.local()
# layers come from xpnet.saving when it is imported (the Layer class and `layer_from_config`): the
# layers package exposes this module's functions, so this module cannot import it or saving
_LAYERS: dict[str, Any] = {}


def set_layer_support(layer_class: type, loader: Callable[[dict[str, Any], dict[str, Any]], Any]) -> None:
    _LAYERS.update(base=layer_class, loader=loader)


def _is_layer_class(obj: Any) -> bool:
    base = _LAYERS.get("base")
    return base is not None and isinstance(obj, type) and issubclass(obj, base)


def get_custom_objects() -> dict[str, Any]:
    """The global registry itself (a dict): `get_custom_objects().update({"MyLayer": MyLayer})` registers."""
    return _REGISTRY


def register_keras_serializable(package: str = "Custom", name: str | None = None) -> Callable[[Any], Any]:
    """Decorator registering a class (or function) as "package>name" (name: the class's own by default)."""
    if not isinstance(package, str) or ">" in package or not package:
        raise ValueError(
            f"register_keras_serializable: package must be a non-empty name without '>', received {package!r}"
        )

    def register(obj: Any) -> Any:
        key = f"{package}>{name or getattr(obj, '__name__', None) or type(obj).__name__}"
        if isinstance(obj, type) and not callable(getattr(obj, "get_config", None)):
            raise ValueError(
                f"register_keras_serializable: {obj.__name__} needs a get_config() method to be saved and loaded"
            )
        # a second registration under the same name replaces the first, as in Keras: re-running a
        # notebook cell that defines a registered class gives a new class of the same name
        _REGISTRY[key] = obj
        _NAMES[obj] = key
        return obj

    return register


def get_registered_name(obj: Any) -> str:
    """The name `obj` is registered under ("package>name"), else its own name."""
    return _NAMES.get(obj, getattr(obj, "__name__", type(obj).__name__))


def get_registered_object(
    name: str, custom_objects: dict[str, Any] | None = None, module_objects: dict[str, Any] | None = None
) -> Any:
    """The object for `name`: from custom_objects, the open scopes, the registry (by "package>name",
    or by the bare name when exactly one registered object has it), then module_objects; None if absent."""
    for table in (custom_objects or {}, *reversed(_scopes()), _REGISTRY):
        if name in table:
            return table[name]
    bare = [obj for key, obj in _REGISTRY.items() if key.rpartition(">")[2] == name]
    if len(bare) == 1:
        return bare[0]
    return (module_objects or {}).get(name)


def _scopes() -> list[dict[str, Any]]:
    if not hasattr(_SCOPES, "stack"):
        _SCOPES.stack = []
    stack: list[dict[str, Any]] = _SCOPES.stack
    return stack


@contextmanager
def custom_object_scope(*scopes: dict[str, Any]) -> Iterator[None]:
    """Within the `with` block, loading finds these {name: object} without custom_objects=."""
    merged: dict[str, Any] = {}
    for scope in scopes:
        if not isinstance(scope, dict):
            raise TypeError(f"custom_object_scope takes dicts of {{name: object}}, received {type(scope).__name__}")
        merged.update(scope)
    stack = _scopes()
    stack.append(merged)
    try:
        yield
    finally:
        stack.pop()


CustomObjectScope = custom_object_scope


def merged_custom_objects(custom_objects: dict[str, Any] | None) -> dict[str, Any]:
    """custom_objects over the open scopes over the registry (also under bare names), for loaders
    that look names up in one dict."""
    out: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for key in _REGISTRY:
        bare = key.rpartition(">")[2]
        counts[bare] = counts.get(bare, 0) + 1
    for key, obj in _REGISTRY.items():
        bare = key.rpartition(">")[2]
        if counts[bare] == 1:
            out[bare] = obj
        out[key] = obj
    for scope in _scopes():
        out.update(scope)
    out.update(custom_objects or {})
    return out


_PLAIN = (str, int, float, bool, type(None))


def serialize_keras_object(obj: Any) -> Any:
    """A JSON-able description: {"module", "class_name", "config", "registered_name"} for objects with
    `get_config` (layers, optimizers, metrics, schedules, losses...), the name of a built-in activation
    or loss, and lists, dicts and plain values as they are."""
    if isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, (list, tuple)):
        return [serialize_keras_object(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): serialize_keras_object(v) for k, v in obj.items()}
    if _is_layer_class(type(obj)):
        entry = layer_entry(obj)
        cfg = {k: serialize_keras_object(v) for k, v in entry["config"].items()}
    elif callable(getattr(obj, "get_config", None)):
        cfg = serialize_keras_object(obj.get_config())
    elif isinstance(obj, type) or (callable(obj) and hasattr(obj, "__name__")):
        return get_registered_name(obj)
    else:
        described = describe(obj)  # activations, regularizers, losses: a name or class + settings
        if isinstance(described, str):
            return described
        cfg = described["config"]
    cls = type(obj)
    return {
        "module": _saved_module(cls),
        "class_name": cls.__name__,
        "config": cfg,
        "registered_name": _NAMES.get(cls, cls.__name__),
    }


def _saved_module(cls: type) -> str:
    """The module a saved config names for `cls`: a class of a package of one kind (xpnet.metrics.means's
    Precision) is the package's (xpnet.metrics), as before the package split, and loading looks it up there."""
    for module in _MODULES.values():
        if cls.__module__.startswith(module.__name__ + ".") and getattr(module, cls.__name__, None) is cls:
            return module.__name__
    return cls.__module__


def _layer_classes() -> dict[str, type]:
    """Every Layer subclass defined so far, by class name (xpnet's own and imported user ones)."""
    found: dict[str, type] = {}
    todo = [_LAYERS["base"]] if "base" in _LAYERS else []
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            found.setdefault(sub.__name__, sub)
            todo.append(sub)
    return found


_MODULES = {
    "losses": losses,
    "metrics": metrics,
    "optimizers": optimizers,
    "activations": activations,
    "regularizers": regularizers,
    "initializers": initializers,
    "schedules": schedules,
}


def _xpnet_class(name: str, where: Any = None) -> Any:
    """A public xpnet class by name: from the xpnet module the description names, else from the
    kinds of objects models are made of (losses before metrics: a loss's name means the loss)."""
    module = _MODULES.get(str(where or "").rpartition(".")[2])
    found = getattr(module, name, None) if module is not None else None
    if isinstance(found, type):
        return found
    if str(where or "").startswith("xpnet.layers") or module is None:
        layer = _layer_classes().get(name)
        if layer is not None and layer.__module__.startswith("xpnet."):
            return layer
    for module in _MODULES.values():
        found = getattr(module, name, None)
        if isinstance(found, type):
            return found
    return None


def deserialize_keras_object(
    config: Any, custom_objects: dict[str, Any] | None = None, module_objects: dict[str, Any] | None = None, **_: Any
) -> Any:
    """The object `serialize_keras_object` described (a registered name, a dict with class_name and
    config, or a plain value); layers take Keras's config spelling as `from_config` does."""
    if config is None or isinstance(config, (int, float, bool)):
        return config
    if isinstance(config, list):
        return [deserialize_keras_object(v, custom_objects, module_objects) for v in config]
    if isinstance(config, str):
        found = get_registered_object(config, custom_objects, module_objects)
        if found is not None:
            return found
        for get in (activations.get, losses.get):
            try:
                return get(config)
            except (ValueError, TypeError, KeyError):
                continue
        raise ValueError(
            f"deserialize_keras_object: unknown name {config!r}; register it with @register_keras_serializable "
            "or pass custom_objects={...}"
        )
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            "deserialize_keras_object expects a name or a dict with 'class_name' and 'config', "
            f"received {type(config).__name__}"
        )
    name = str(config.get("registered_name") or config["class_name"])
    cls = (
        get_registered_object(name, custom_objects, module_objects)
        or get_registered_object(str(config["class_name"]), custom_objects, module_objects)
        or _xpnet_class(str(config["class_name"]), config.get("module"))
    )
    if cls is None:
        raise ValueError(
            f"deserialize_keras_object: unknown class {config['class_name']!r}; register it with "
            "@register_keras_serializable or pass custom_objects={...}"
        )
    inner = dict(config.get("config") or {})
    if _is_layer_class(cls):
        return _LAYERS["loader"](
            {"class_name": config["class_name"], "config": inner},
            merged_custom_objects({**(custom_objects or {}), str(config["class_name"]): cls}),
        )
    from_config = getattr(cls, "from_config", None)
    return from_config(inner) if callable(from_config) else cls(**inner)
