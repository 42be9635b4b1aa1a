"""Weight penalties: value added to the reported loss, gradient added to the weight's gradient."""

from __future__ import annotations

from typing import Any

from . import argcheck

Array = Any


class Regularizer:
    def penalty(self, xp: Any, w: Array) -> Array:
        raise NotImplementedError

    def grad(self, xp: Any, w: Array) -> Array:
        raise NotImplementedError


class L1L2(Regularizer):
    """l1·Σ|w| + l2·Σw²."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1, self.l2 = argcheck.number("L1L2", "l1", l1, 0), argcheck.number("L1L2", "l2", l2, 0)

    def penalty(self, xp: Any, w: Array) -> Array:
        total = 0.0
        if self.l1:
            total = total + self.l1 * xp.sum(xp.abs(w))
        if self.l2:
            total = total + self.l2 * xp.sum(w * w)
        return total

    def grad(self, xp: Any, w: Array) -> Array:
        if self.l1 and self.l2:
            return self.l1 * xp.sign(w) + (2.0 * self.l2) * w
        if self.l1:
            return self.l1 * xp.sign(w)
        return (2.0 * self.l2) * w

    def __repr__(self) -> str:
        return f"L1L2(l1={self.l1}, l2={self.l2})"


def L1(l1: float = 0.01) -> L1L2:
    return L1L2(l1=argcheck.number("L1", "l1", l1, 0))


def L2(l2: float = 0.01) -> L1L2:
    return L1L2(l2=argcheck.number("L2", "l2", l2, 0))


# Keras's lower-case names: keras.regularizers.l2(0.01), l1, l1_l2
l1, l2 = L1, L2


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:
    return L1L2(l1=argcheck.number("l1_l2", "l1", l1, 0), l2=argcheck.number("l1_l2", "l2", l2, 0))


def get(identifier: str | Regularizer | None) -> Regularizer | None:
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    table = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(0.01, 0.01), "l1l2": lambda: L1L2(0.01, 0.01)}
    if isinstance(identifier, str) and identifier.lower() in table:
        return table[identifier.lower()]()
    raise ValueError(f"Unknown regularizer {identifier!r}; use 'l1', 'l2', 'l1_l2' or xpnet.regularizers.L1L2(...)")
