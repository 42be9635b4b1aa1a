"""Activation functions φ with their derivatives, written against the array API.

`forward(xp, u) -> h` and `backward(xp, u, h, dh) -> du` take the pre-activation
u: (batch, units) and the activation h = φ(u) of the same shape and dtype.
"""

from __future__ import annotations

from typing import Any

Array = Any


class NotDifferentiableError(RuntimeError):
    """Raised when training would need the gradient of a step function."""


class Activation:
    name = "activation"
    differentiable = True

    def forward(self, xp: Any, u: Array) -> Array:
        raise NotImplementedError

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Activation):
    name = "linear"

    def forward(self, xp: Any, u: Array) -> Array:
        return u

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return dh


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, xp: Any, u: Array) -> Array:
        # 1/(1+e^-u) overflows for very negative u; the tanh form never does.
        return 0.5 * xp.tanh(0.5 * u) + 0.5

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return dh * h * (1.0 - h)


class Tanh(Activation):
    name = "tanh"

    def forward(self, xp: Any, u: Array) -> Array:
        return xp.tanh(u)

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return dh * (1.0 - h * h)


class ReLU(Activation):
    name = "relu"

    def forward(self, xp: Any, u: Array) -> Array:
        return xp.maximum(u, 0.0)

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return dh * xp.astype(u > 0.0, dh.dtype)


class ELU(Activation):
    name = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)

    def forward(self, xp: Any, u: Array) -> Array:
        neg = self.alpha * (xp.exp(xp.minimum(u, 0.0)) - 1.0)
        return xp.where(u > 0.0, u, neg)

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return xp.where(u > 0.0, dh, dh * (h + self.alpha))

    def __repr__(self) -> str:
        return f"ELU(alpha={self.alpha})"


class Softmax(Activation):
    """Softmax over the last axis; shifted by the row max so huge logits do not overflow."""

    name = "softmax"

    def forward(self, xp: Any, u: Array) -> Array:
        e = xp.exp(u - xp.max(u, axis=-1, keepdims=True))
        return e / xp.sum(e, axis=-1, keepdims=True)

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return h * (dh - xp.sum(dh * h, axis=-1, keepdims=True))


class _Step(Activation):
    differentiable = False

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        raise NotDifferentiableError(
            f"the {self.name!r} activation is a step function: its derivative is 0 everywhere except at 0, "
            "so backpropagation cannot train through it. Use it for a perceptron trained with the "
            "perceptron rule, or use 'sigmoid'/'tanh' (smooth versions of the step) for gradient descent."
        )


class Heaviside(_Step):
    """Step function: 1 where u >= 0, else 0 (the McCulloch–Pitts / perceptron threshold)."""

    name = "heaviside"

    def forward(self, xp: Any, u: Array) -> Array:
        return xp.astype(u >= 0.0, u.dtype)


class Sign(_Step):
    """sgn(u): -1, 0 or +1."""

    name = "sign"

    def forward(self, xp: Any, u: Array) -> Array:
        return xp.sign(u)


_REGISTRY: dict[str, type[Activation]] = {
    cls.name: cls for cls in (Linear, Sigmoid, Tanh, ReLU, ELU, Softmax, Heaviside, Sign)
}
_REGISTRY["step"] = Heaviside


def get(identifier: str | Activation | None) -> Activation:
    """Resolve 'relu', an Activation instance, or None (linear)."""
    if identifier is None:
        return Linear()
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str):
        cls = _REGISTRY.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown activation {identifier!r}; known: {sorted(_REGISTRY)}")
        return cls()
    raise TypeError(f"activation must be a name or an Activation instance, got {type(identifier).__name__}")
