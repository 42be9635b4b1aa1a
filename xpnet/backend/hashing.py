"""The counter-based integer hash behind dropout masks and derived seeds: uint32 array ops only, so its
bits are the same on every backend (and in Python ints on the host, `mix_int`)."""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any


def _mix32(x: Array, xp: Any = None) -> Array:
    # "lowbias32" integer finaliser (C. Wellons): good avalanche with three multiplies.
    # With xp, the same through namespace calls, whose results a captured step keeps (training/program.py).
    if xp is not None:
        shift = getattr(xp, "bitwise_right_shift", None) or xp.right_shift  # the array API's name, CuPy's
        x = xp.bitwise_xor(x, shift(x, 16))
        x = xp.multiply(x, 0x7FEB352D)
        x = xp.bitwise_xor(x, shift(x, 15))
        x = xp.multiply(x, 0x846CA68B)
        return xp.bitwise_xor(x, shift(x, 16))
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


def step_keys(xp: Any, base: int, step: Array) -> tuple[Array, Array]:
    """The two keys of dropout call `step` (a 0-d uint32 device counter) for a layer key `base`, on the device
    through namespace calls (`Ops.dropout_keys`)."""
    k0 = xp.bitwise_xor(_mix32(xp.bitwise_xor(step, 0x85EBCA6B), xp), base)
    k0 = _mix32(k0, xp)
    return k0, _mix32(xp.add(k0, 0x632BE5AB), xp)


def hash_u32(xp: Any, counters: Array, keys: tuple[int, int]) -> Array:
    """One keyed round of the mixer over uint32 counters: mix32((c + k0) ^ k1); keys are Python ints < 2**32.

    One round suffices here: the keys are themselves mixer outputs, and the tests check keep
    rate and independence across steps, layers and neighbouring elements.
    """
    del xp
    return _mix32((counters + keys[0]) ^ keys[1])


def mix_int(x: int) -> int:
    """The same mixer on a Python int (host side, for deriving keys)."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def dropout_constants(keys: tuple[Any, Any], rate: float, dtype: Any, offset: Any = 0) -> tuple[int, int, int, Any]:
    """What the hash mask of `keys` needs, for 0 < rate < 1: the first counter (k0 + offset) mod 2³², k1, the
    keep threshold (kept where the hash is ≥ rate·2³²) and the kept value 1/(1 − rate) as a `dtype` scalar."""
    start = (int(keys[0]) + int(offset)) & 0xFFFFFFFF
    threshold = min(int(rate * 4294967296.0), 4294967295)
    # True · 1/(1 − rate) in `dtype`: what NumPy's multiply of the keep mask writes where kept
    scale = np.multiply(np.ones((), dtype=bool), 1.0 / (1.0 - rate), dtype=dtype)[()]
    return start, int(keys[1]), threshold, scale
