"""Objects as JSON-able configs: what model files store for activations, regularizers, losses, layers.

`serialize(obj)` gives a name for parameter-free built-ins ("relu") and otherwise
{"class_name": ..., "config": {...}} with the object's numeric settings; `xpnet.saving`
turns these back into objects. Nothing here imports the classes it describes, so layers can
call it from their get_config.
"""

from __future__ import annotations

from typing import Any

_SCALARS = (bool, int, float, str, type(None))


def plain_settings(obj: Any) -> dict[str, Any]:
    """The public JSON-able settings of an object (the arguments it was made with, for simple classes)."""
    return {k: v for k, v in vars(obj).items() if not k.startswith("_") and isinstance(v, _SCALARS)}


def serialize(obj: Any) -> Any:
    """A JSON-able description of `obj` (None stays None)."""
    if obj is None:
        return None
    settings = plain_settings(obj)
    name = getattr(type(obj), "name", None)
    builtin = type(obj).__module__.startswith("xpnet.")
    if builtin and isinstance(name, str) and not settings:
        return name
    return {"class_name": type(obj).__name__, "config": settings}
