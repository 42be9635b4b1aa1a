"""`xpnet.ops` on symbolic tensors: `ops.relu(x)` inside a functional or subclassed model's graph.

The op becomes a call of an `OpLayer`, a custom layer whose `call` applies the op again to the
arrays that reach it; like every custom layer it is differentiated by the tape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import tape
from .base import Layer


def _symbolic(a: Any) -> bool:
    return hasattr(a, "feature_shape")


class OpLayer(Layer):
    """One `xpnet.ops` function with its constant arguments; its symbolic arguments arrive as the call's inputs."""

    def __init__(
        self, apply: Callable[..., Any], fn: Callable[..., Any], args: tuple[Any, ...], settings: dict[str, Any]
    ) -> None:
        super().__init__(name=None)
        self._xp_apply, self._xp_fn = apply, fn
        # the constants stay; each symbolic argument's place is taken by the next input of the call
        self._xp_args = tuple(None if _symbolic(a) else a for a in args)
        self._xp_slots = tuple(_symbolic(a) for a in args)
        self._xp_settings = settings

    @property
    def default_name(self) -> str:
        return self._xp_fn.__name__.lstrip("_")

    def call(self, *xs: Any) -> Any:
        it = iter(xs)
        args = [next(it) if slot else a for a, slot in zip(self._xp_args, self._xp_slots, strict=True)]
        return self._xp_apply(self._xp_fn, *args, **self._xp_settings)

    def get_config(self) -> dict[str, Any]:
        raise ValueError(
            f"the model applies xpnet.ops.{self.default_name} to symbolic tensors, which has no saved form; "
            "write that step as a custom layer (a Layer subclass with call) to save the model's config"
        )

    def __repr__(self) -> str:
        return f"OpLayer({self.default_name!r}, name={self.name!r})"


def symbolic_call(
    apply: Callable[..., Any], fn: Callable[..., Any], args: tuple[Any, ...], settings: dict[str, Any]
) -> Any:
    tensors = [a for a in args if _symbolic(a)]
    layer = OpLayer(apply, fn, args, settings)
    return layer(tensors[0], *tensors[1:])


tape.SYMBOLIC["apply"] = symbolic_call
