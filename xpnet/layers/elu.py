"""Keras's `ELU` layer."""

from __future__ import annotations

import math
from typing import Any

from .. import activations as acts
from .activation import Activation


class ELU(Activation):
    """h = x for x > 0, alpha·(eˣ − 1) otherwise: (batch, ...) → the same shape (Keras's default alpha 1.0)."""

    def __init__(self, alpha: float = 1.0, name: str | None = None, input_shape: Any = None) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
            raise ValueError(f"ELU alpha must be a finite number, received {alpha!r}")
        self.alpha = float(alpha)
        super().__init__(acts.ELU(self.alpha), name=name, input_shape=input_shape)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "alpha": self.alpha}

    def __repr__(self) -> str:
        return f"ELU(alpha={self.alpha}, name={self.name!r})"
