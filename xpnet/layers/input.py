from __future__ import annotations

from typing import Any

from .base import _as_shape
from .node import KerasTensor


class Input(KerasTensor):
    """The model's input: `Input(shape=(28, 28))`, shape without the batch axis.

    It is a symbolic tensor (`.shape` is (None, 28, 28)) that layers can be called on to build a
    functional `Model`, and the first entry of a `Sequential([...])` list to declare its input shape.
    """

    def __init__(self, shape: Any, name: str | None = None) -> None:
        super().__init__(_as_shape(shape), None, name)

    def __repr__(self) -> str:
        return f"Input(shape={self.feature_shape}, name={self.name!r})"
