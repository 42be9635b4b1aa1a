from __future__ import annotations

from typing import Any

from ..backend.base import mix_int
from .base import Array, Layer


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability `rate` and scale the rest by 1/(1−rate).

    Masks come from a counter-based hash of (seed, call number, element index), so they are
    reproducible and identical on every backend. At inference the layer is the identity.
    """

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None, input_shape: Any = None) -> None:
        super().__init__(name=name, input_shape=input_shape)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), received {rate}")
        self.rate = float(rate)
        self.seed = seed
        self.iterations = 0  # training forward calls so far: the mask's step counter
        self.row_offset = 0  # first row of this batch within the global batch (data-parallel ranks)
        self._mask: Array = None

    def keys(self, step: int) -> tuple[int, int]:
        """The two 32-bit hash keys for training call `step`."""
        if self.seed is None:
            raise RuntimeError(f"Dropout {self.name!r} has no seed yet; build it inside a model")
        s = int(self.seed)
        base = mix_int(mix_int(s & 0xFFFFFFFF) ^ mix_int((s >> 32) ^ 0x9E3779B9))
        k0 = mix_int(base ^ mix_int(step ^ 0x85EBCA6B))
        return k0, mix_int(k0 + 0x632BE5AB)

    def forward(self, x: Array, training: bool = False) -> Array:
        if not training or self.rate == 0.0:
            return x
        assert self.ops is not None
        width = 1
        for d in x.shape[1:]:
            width *= int(d)
        y, self._mask = self.ops.dropout_forward(x, self.keys(self.iterations), self.rate, self.row_offset * width)
        self.iterations += 1
        return y

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        return dy if self.rate == 0.0 else dy * self._mask

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "rate": self.rate, "seed": self.seed}

    def __repr__(self) -> str:
        return f"Dropout(rate={self.rate}, name={self.name!r})"
