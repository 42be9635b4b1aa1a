"""A stand-in for a foreign device, for CPU CI.

`array_api_strict` arrays placed on a non-default device refuse `np.asarray`, refuse to mix
with NumPy arrays and only offer the array API standard. Running the suite through it fails
whenever layer math escapes the abstraction (a stray `np.` call, an implicit host copy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Array, Ops


class StrictOps(Ops):
    name = "strict"

    def __init__(self) -> None:
        import array_api_strict

        super().__init__()
        self.xp = array_api_strict
        self.device = array_api_strict.Device("device1")
        self.array_type = type(array_api_strict.asarray(0))

    def _to_numpy(self, a: Array) -> np.ndarray:
        host = a.to_device(self.xp.Device("CPU_DEVICE"))
        return np.asarray(host)

    def asarray(self, a: Any, dtype: Any = None) -> Array:
        if isinstance(a, np.ndarray) and dtype is None:
            dtype = getattr(self.xp, a.dtype.name)
        return self.xp.asarray(a, dtype=dtype, device=self.device)

    def is_native(self, a: Any) -> bool:
        return isinstance(a, self.array_type) and a.device == self.device
