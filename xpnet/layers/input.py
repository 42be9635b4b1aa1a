from __future__ import annotations

from typing import Any

from .base import _as_shape


class Input:
    """Declares the model's input shape (without the batch axis): `Input(shape=(28, 28))`."""

    def __init__(self, shape: Any, name: str | None = None) -> None:
        self.shape = _as_shape(shape)
        self.name = name

    def __repr__(self) -> str:
        return f"Input(shape={self.shape})"
