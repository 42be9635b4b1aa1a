"""CuPy backend: the generic code on a CUDA device, plus fused elementwise kernels.

Only this module (and `select`) import cupy. Each fused kernel has the generic `Ops`
method as its reference and a GPU test comparing the two.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from .base import Array, Ops


class CupyOps(Ops):  # pragma: no cover - needs a CUDA device
    name = "cupy"

    def __init__(self, device_id: int = 0) -> None:
        import cupy

        super().__init__()
        self.xp = cupy
        self.device_id = device_id
        self.device = cupy.cuda.Device(device_id)
        self._kernels: dict[str, Any] = {}

    def describe(self) -> str:
        return f"cupy:{self.device_id}"

    def info(self) -> dict[str, str]:
        props = self.xp.cuda.runtime.getDeviceProperties(self.device_id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return {
            **super().info(),
            "cupy": self.xp.__version__,
            "device": name,
            "cuda_runtime": str(self.xp.cuda.runtime.runtimeGetVersion()),
            "memory_gib": f"{props['totalGlobalMem'] / 2**30:.1f}",
        }

    def asarray(self, a: Any, dtype: Any = None) -> Array:
        with self.device:
            return self.xp.asarray(a, dtype=dtype)

    def zeros(self, shape: tuple[int, ...] | int, dtype: Any) -> Array:
        with self.device:
            return self.xp.zeros(shape, dtype=dtype)

    def arange_u32(self, n: int) -> Array:
        a = self._arange_cache.get(n)
        if a is None:
            with self.device:
                a = self.xp.arange(n, dtype=self.xp.uint32)
            self._arange_cache[n] = a
        return a

    def _to_numpy(self, a: Array) -> np.ndarray:
        return self.xp.asnumpy(a)

    def is_native(self, a: Any) -> bool:
        return isinstance(a, self.xp.ndarray) and a.device.id == self.device_id

    def activate(self) -> AbstractContextManager[Any]:
        return self.device

    def synchronize(self) -> None:
        self.device.synchronize()

    def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        return self.xp.matmul(a, b, out=out)

    def _kernel(self, name: str) -> Any:
        k = self._kernels.get(name)
        if k is None:
            k = _build_kernel(self.xp, name)
            self._kernels[name] = k
        return k

    def dropout_mask(self, shape: tuple[int, ...], keys: tuple[int, int], rate: float, dtype: Any) -> Array:
        out = self.xp.empty(shape, dtype=dtype)
        threshold = min(int(rate * 4294967296.0), 4294967295)
        self._kernel("dropout_mask")(
            np.uint32(keys[0]), np.uint32(keys[1]), np.uint32(threshold), out.dtype.type(1.0 / (1.0 - rate)), out
        )
        return out

    def sgd_update(self, p: Array, g: Array, m: Array | None, lr: float, momentum: float, nesterov: bool) -> None:
        if m is None:
            self._kernel("sgd")(g, p.dtype.type(lr), p)
        else:
            self._kernel("sgd_momentum")(g, p.dtype.type(lr), p.dtype.type(momentum), bool(nesterov), p, m)

    def adam_update(
        self, p: Array, g: Array, m: Array, v: Array, lr_t: float, beta_1: float, beta_2: float, eps: float
    ) -> None:
        t = p.dtype.type
        self._kernel("adam")(g, t(lr_t), t(1.0 - beta_1), t(1.0 - beta_2), t(eps), p, m, v)

    def rmsprop_update(
        self, p: Array, g: Array, v: Array, m: Array | None, lr: float, rho: float, momentum: float, eps: float
    ) -> None:
        if m is not None:
            super().rmsprop_update(p, g, v, m, lr, rho, momentum, eps)
            return
        t = p.dtype.type
        self._kernel("rmsprop")(g, t(lr), t(rho), t(eps), p, v)


_MIX = """
__device__ inline unsigned int xpnet_mix32(unsigned int x) {
    x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16; return x;
}
"""


def _build_kernel(cp: Any, name: str) -> Any:  # pragma: no cover - needs a CUDA device
    ek = cp.ElementwiseKernel
    if name == "dropout_mask":
        return ek(
            "uint32 k0, uint32 k1, uint32 threshold, T scale",
            "T out",
            "unsigned int h = xpnet_mix32(xpnet_mix32((unsigned int)i ^ k0) ^ k1);"
            "out = h >= threshold ? scale : (T)0;",
            "xpnet_dropout_mask",
            preamble=_MIX,
        )
    if name == "sgd":
        return ek("T g, T lr", "T p", "p -= lr * g;", "xpnet_sgd")
    if name == "sgd_momentum":
        return ek(
            "T g, T lr, T mu, bool nesterov",
            "T p, T m",
            "m = mu * m - lr * g; p += nesterov ? mu * m - lr * g : m;",
            "xpnet_sgd_momentum",
        )
    if name == "adam":
        return ek(
            "T g, T lr_t, T one_m_b1, T one_m_b2, T eps",
            "T p, T m, T v",
            "m += one_m_b1 * (g - m); v += one_m_b2 * (g * g - v); p -= lr_t * m / (sqrt(v) + eps);",
            "xpnet_adam",
        )
    if name == "rmsprop":
        return ek(
            "T g, T lr, T rho, T eps",
            "T p, T v",
            "v = rho * v + (1 - rho) * g * g; p -= lr * g / sqrt(v + eps);",
            "xpnet_rmsprop",
        )
    raise KeyError(name)
