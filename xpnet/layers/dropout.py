from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import Ops
from ..backend.base import DeviceScalar, mix_int
from .base import Array, Layer


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability `rate` and scale the rest by 1/(1−rate).

    Masks come from a counter-based hash of (seed, call number, element index), so they are
    reproducible and identical on every backend. The call number lives in device memory and
    advances on the device, so a recorded training step draws a new mask on every replay. At
    inference the layer is the identity.
    """

    identity_at_inference = True
    counts_steps = True

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None, input_shape: Any = None) -> None:
        super().__init__(name=name, input_shape=input_shape)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), received {rate}")
        self.rate = float(rate)
        self.seed = seed
        self.row_offset = 0  # first row of this batch within the global batch (data-parallel ranks)
        self._steps = 0  # the call counter while the layer is not bound to a backend
        self._counter: Array = None  # 0-d uint32 on the device once bound
        self._offset: DeviceScalar | None = None
        self._mask: Array = None

    def take_model_seed(self, seed: int) -> None:
        if self.seed is None:
            self.seed = seed

    def seeded_by_model(self, seed: int) -> bool:
        return self.seed == seed

    def bind(self, ops: Ops, params: dict[str, Array], grads: dict[str, Array]) -> None:
        steps = self.iterations
        super().bind(ops, params, grads)
        self._counter = ops.asarray(np.asarray(steps, dtype=np.uint32))
        self._offset = DeviceScalar(ops, 0, np.uint32)

    @property
    def iterations(self) -> int:
        """Training forward calls so far: the mask's step counter (reading it is a device→host copy)."""
        if self._counter is None or self.ops is None:
            return self._steps
        return int(self.ops.to_numpy(self._counter))

    @iterations.setter
    def iterations(self, value: int) -> None:
        if self._counter is None or self.ops is None:
            self._steps = int(value)
        else:
            self._counter[...] = int(value)

    @property
    def mask(self) -> Array:
        """The mask of the last training forward pass: (batch, ...) of 0 and 1/(1−rate)."""
        return self._mask

    def base_key(self) -> int:
        """The layer's 32-bit key, from its seed."""
        if self.seed is None:
            raise RuntimeError(f"Dropout {self.name!r} has no seed yet; build it inside a model")
        cached = self.__dict__.get("_base")
        if cached is None or cached[0] != self.seed:
            s = int(self.seed)
            cached = self._base = (self.seed, mix_int(mix_int(s & 0xFFFFFFFF) ^ mix_int((s >> 32) ^ 0x9E3779B9)))
        return int(cached[1])

    def keys(self, step: int) -> tuple[int, int]:
        """The two 32-bit hash keys for training call `step` (host side; the step computes them on the device)."""
        k0 = mix_int(self.base_key() ^ mix_int(step ^ 0x85EBCA6B))
        return k0, mix_int(k0 + 0x632BE5AB)

    def forward(self, x: Array, training: bool = False) -> Array:
        if not training or self.rate == 0.0:
            return x
        ops = self.ops
        assert ops is not None and self._offset is not None
        width = 1
        for d in x.shape[1:]:
            width *= int(d)
        offset = self._offset.set(self.row_offset * width)
        if ops.fuses_launches:  # the count moves inside the mask kernel
            y, self._mask = ops.dropout_counting(x, self.base_key(), self._counter, self.rate, offset)
            return y
        y, self._mask = ops.dropout_step(x, self.base_key(), self._counter, self.rate, offset)
        self._counter += 1
        return y

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        if not need_input_grad:
            return None
        assert self.ops is not None
        # a namespace call rather than `*`: a captured step keeps its result (training/program.py)
        return dy if self.rate == 0.0 else self.ops.xp.multiply(dy, self._mask)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "rate": self.rate, "seed": self.seed}

    def __repr__(self) -> str:
        return f"Dropout(rate={self.rate}, name={self.name!r})"
