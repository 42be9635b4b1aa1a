"""Activation functions φ with their derivatives, written against the array API.

`forward(xp, u) -> h` and `backward(xp, u, h, dh) -> du` take the pre-activation
u: (batch, units) and the activation h = φ(u) of the same shape and dtype.

Backend variants sit with the formula they compute. `apply(ops, u)` and `backprop(ops, …)` run φ
and φ' by the backend's method named after the math where it has one (`ops.relu`, `ops.softmax`,
`ops.backprop_relu`; NumPy writes in place), and `cuda_forward`/`cuda_backward` hold the same
formulas as CUDA C for CuPy's fused kernels. A subclass that writes its own `forward` drops the
variants (its own `backward`: those of φ'), so it always runs its own code.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from .backend import namespace_of
from .backend.special import erfc
from .tape import Tape, Tensor, recording

if TYPE_CHECKING:
    from .backend.base import Ops

Array = Any


class NotDifferentiableError(RuntimeError):
    """Raised when training would need the gradient of a step function."""


class Activation:
    name = "activation"
    differentiable = True
    # one of the registry's classes (not a subclass): the backends probe only these for NaN propagation
    builtin: ClassVar[bool] = False
    # φ acts entry by entry and NumPy's predict route for small batches, which computes on uᵀ, is
    # checked with it; False where unknown (a user's function) or not checked
    elementwise: ClassVar[bool] = False
    # φ and φ' as CUDA C for CuPy's fused kernels, beside the formula they must match: `h` from `u`
    # (type T, the bias already added), `du` from u, h and dh; `alpha` is the object's `alpha` (else 0).
    # None: no kernel, CuPy runs `forward`/`backward`.
    cuda_forward: ClassVar[str | None] = None
    cuda_backward: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.builtin = cls.__module__ == __name__ and "name" in cls.__dict__  # not FunctionActivation
        # a variant computes the formula it was written beside, so a subclass with its own formula runs
        # that; backward variants may read h (NumPy's relu' does), so a new forward drops them too. The
        # formula is the one the class resolves (a mixin's forward counts), not only one in its own body.
        backward = ("backprop", "cuda_backward")
        forward = ("apply", "apply_biased", "output_of_softmax", "cuda_forward", "elementwise", *backward)
        for own, variants in (("forward", forward), ("backward", backward)):
            for v in variants:
                beside = next(k for k in cls.__mro__ if v in k.__dict__)
                if getattr(cls, own) is not getattr(beside, own):
                    setattr(cls, v, Activation.__dict__[v])

    def forward(self, xp: Any, u: Array) -> Array:
        raise NotImplementedError

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        raise NotImplementedError

    def apply(self, ops: Ops, u: Array, in_place: bool = False) -> Array:
        """h = φ(u) on `ops`, by its own method for this φ where it has one; in_place lets it write into u."""
        return self.forward(ops.xp, u)

    def backprop(self, ops: Ops, u: Array, h: Array, dh: Array) -> Array:
        """∂L/∂u = φ'(u)·dh on `ops`, by its own method for this φ where it has one (it may write into dh)."""
        return self.backward(ops.xp, u, h, dh)

    def apply_biased(self, ops: Ops, u: Array, b: Array | None) -> Array:
        """h = φ(u + b) for u: (n, units), b: (units,) or None; u becomes u + b. CuPy fuses the two."""
        return ops.bias_activation(self, u, b)

    def output_of_softmax(self, xp: Any, u: Array, p: Array) -> Array:
        """φ(u) where p = softmax(u) is at hand already (a fused softmax + cross-entropy computed it)."""
        return self.forward(xp, u)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Activation):
    name = "linear"
    elementwise = True

    def forward(self, xp: Any, u: Array) -> Array:
        return u

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return dh


class Sigmoid(Activation):
    name = "sigmoid"
    elementwise = True
    cuda_forward = "h = (T)0.5 * tanh((T)0.5 * u) + (T)0.5;"
    cuda_backward = "du = dh * h * ((T)1 - h);"

    def forward(self, xp: Any, u: Array) -> Array:
        # 1/(1+e^-u) overflows for very negative u; the tanh form never does.
        return 0.5 * xp.tanh(0.5 * u) + 0.5

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return dh * h * (1.0 - h)


class Tanh(Activation):
    name = "tanh"
    elementwise = True
    cuda_forward = "h = tanh(u);"
    cuda_backward = "du = dh * ((T)1 - h * h);"

    def forward(self, xp: Any, u: Array) -> Array:
        return xp.tanh(u)

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return dh * (1.0 - h * h)


class ReLU(Activation):
    name = "relu"
    elementwise = True
    # NaN stays NaN (`u != u`), as NumPy's maximum keeps it; φ' is [u > 0], so a NaN dh stays NaN
    # where the unit is inactive
    cuda_forward = "h = (u > (T)0 || u != u) ? u : (T)0;"
    cuda_backward = "du = dh * (u > (T)0 ? (T)1 : (T)0);"

    def forward(self, xp: Any, u: Array) -> Array:
        return xp.maximum(u, 0.0)

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return dh * xp.astype(u > 0.0, dh.dtype)

    def apply(self, ops: Ops, u: Array, in_place: bool = False) -> Array:
        return ops.relu(self, u, in_place)

    def backprop(self, ops: Ops, u: Array, h: Array, dh: Array) -> Array:
        return ops.backprop_relu(self, u, h, dh)


class ELU(Activation):
    name = "elu"
    elementwise = True
    cuda_forward = "h = u > (T)0 ? u : alpha * expm1(u);"
    cuda_backward = "du = u > (T)0 ? dh : dh * (h + alpha);"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)

    def forward(self, xp: Any, u: Array) -> Array:
        # expm1, not exp(u) − 1: elu(−1e−20) is −1e−20, not 0
        neg = self.alpha * xp.expm1(xp.minimum(u, 0.0))
        return xp.where(u > 0.0, u, neg)

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return xp.where(u > 0.0, dh, dh * (h + self.alpha))

    def __repr__(self) -> str:
        return f"ELU(alpha={self.alpha})"


class SELU(Activation):
    """scale·u for u > 0, scale·α·(eᵘ − 1) otherwise, with Keras's (self-normalising) constants."""

    name = "selu"
    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946

    def forward(self, xp: Any, u: Array) -> Array:
        return self.scale * xp.where(u > 0.0, u, self.alpha * xp.expm1(xp.minimum(u, 0.0)))

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return xp.where(u > 0.0, dh * self.scale, dh * (h + self.scale * self.alpha))


def _sigmoid(xp: Any, u: Array) -> Array:
    """1/(1 + e^−u) accurate in relative terms for very negative u too (no cancellation, no overflow)."""
    e = xp.exp(-xp.abs(u))
    return xp.where(u >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


class Softplus(Activation):
    """log(1 + eᵘ), computed as max(u, 0) + log1p(e^−|u|) so it never overflows; φ' = sigmoid(u)."""

    name = "softplus"

    def forward(self, xp: Any, u: Array) -> Array:
        return xp.maximum(u, 0.0) + xp.log1p(xp.exp(-xp.abs(u)))

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return dh * _sigmoid(xp, u)


class Softsign(Activation):
    """u / (1 + |u|); φ' = 1 / (1 + |u|)²."""

    name = "softsign"

    def forward(self, xp: Any, u: Array) -> Array:
        return u / (1.0 + xp.abs(u))

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        d = 1.0 + xp.abs(u)
        return dh / (d * d)


class Swish(Activation):
    """u · sigmoid(u) (also called SiLU); φ' = s + u·s·(1 − s)."""

    name = "swish"

    def forward(self, xp: Any, u: Array) -> Array:
        return u * _sigmoid(xp, u)

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        s = _sigmoid(xp, u)
        return dh * (s + u * s * (1.0 - s))


class LeakyReLU(Activation):
    """u for u > 0, negative_slope·u otherwise (Keras's activation default: 0.2)."""

    name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.2) -> None:
        self.negative_slope = float(negative_slope)

    def forward(self, xp: Any, u: Array) -> Array:
        return xp.where(u > 0.0, u, u * self.negative_slope)

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return xp.where(u > 0.0, dh, dh * self.negative_slope)

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self.negative_slope})"


class GELU(Activation):
    """Gaussian error linear unit u·Φ(u), Φ the standard normal CDF (Keras's `gelu`).

    approximate=False (Keras's default): Φ(u) = erfc(−u/√2)/2, written with erfc rather than
    1 + erf so that the left tail keeps its relative accuracy; φ' = Φ(u) + u·N(u), N the normal
    density. approximate=True: the tanh form ½u(1 + tanh(√(2/π)(u + 0.044715u³))) and its exact
    derivative.
    """

    name = "gelu"
    _C = math.sqrt(2.0 / math.pi)
    _A = 0.044715

    def __init__(self, approximate: bool = False) -> None:
        if not isinstance(approximate, bool):
            raise TypeError(f"gelu: approximate must be True or False, received {approximate!r}")
        self.approximate = approximate

    def forward(self, xp: Any, u: Array) -> Array:
        if self.approximate:
            return 0.5 * u * (1.0 + xp.tanh(self._C * (u + self._A * u * u * u)))
        return 0.5 * u * erfc(xp, u * -math.sqrt(0.5))

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        if self.approximate:
            t = xp.tanh(self._C * (u + self._A * u * u * u))
            return dh * (0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * self._C * (1.0 + 3.0 * self._A * u * u))
        # Φ(u) = h/u, read back from the forward pass instead of a second erfc (which costs ~30
        # elementwise passes on NumPy); at u = 0, where h/u is 0/0, Φ = 1/2
        zero = xp.astype(u == 0.0, u.dtype)
        cdf = h / (u + zero) + 0.5 * zero
        return dh * (cdf + u * xp.exp(-0.5 * u * u) * (1.0 / math.sqrt(2.0 * math.pi)))

    def __repr__(self) -> str:
        return f"GELU(approximate={self.approximate})"


class Softmax(Activation):
    """Softmax over the last axis; shifted by the row max so huge logits do not overflow."""

    name = "softmax"

    def forward(self, xp: Any, u: Array) -> Array:
        e = xp.exp(u - xp.max(u, axis=-1, keepdims=True))
        return e / xp.sum(e, axis=-1, keepdims=True)

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        return h * (dh - xp.sum(dh * h, axis=-1, keepdims=True))

    def apply(self, ops: Ops, u: Array, in_place: bool = False) -> Array:
        return ops.softmax(self, u, in_place)

    def apply_biased(self, ops: Ops, u: Array, b: Array | None) -> Array:
        return ops.bias_softmax(self, u, b)

    def output_of_softmax(self, xp: Any, u: Array, p: Array) -> Array:
        return p


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
    cls.name: cls
    for cls in (
        Linear,
        Sigmoid,
        Tanh,
        ReLU,
        ELU,
        SELU,
        Softplus,
        Softsign,
        Swish,
        LeakyReLU,
        GELU,
        Softmax,
        Heaviside,
        Sign,
    )
}
_REGISTRY["step"] = Heaviside
_REGISTRY["silu"] = Swish


def _array_and_namespace(x: Any) -> tuple[Array, Any]:
    """(x, its array module): arrays stay on their device (CuPy too); lists and scalars become float64 NumPy."""
    xp = namespace_of(x)
    if xp is None:
        import numpy as np

        return np.asarray(x, dtype=float), np
    return x, xp


def _function(name: str) -> Any:
    """Keras's `keras.activations.relu(x)`: φ applied to an array; also accepted as `activation=`."""

    def apply(x: Array) -> Array:
        x, xp = _array_and_namespace(x)
        return _REGISTRY[name]().forward(xp, x)

    apply.__name__ = apply.__qualname__ = name
    apply.__doc__ = f"The {name!r} activation of an array (NumPy, CuPy or any array-API array)."
    apply.xpnet_activation = name  # type: ignore[attr-defined]
    return apply


linear, sigmoid, tanh, relu, elu = (_function(n) for n in ("linear", "sigmoid", "tanh", "relu", "elu"))
selu, softplus, softsign, swish = (_function(n) for n in ("selu", "softplus", "softsign", "swish"))
silu, leaky_relu, softmax = (_function(n) for n in ("silu", "leaky_relu", "softmax"))


def gelu(x: Array, approximate: bool = False) -> Array:
    """Keras's `keras.activations.gelu(x, approximate=False)` on an array (NumPy, CuPy or array-API)."""
    x, xp = _array_and_namespace(x)
    return GELU(approximate).forward(xp, x)


gelu.xpnet_activation = "gelu"  # type: ignore[attr-defined]


class FunctionActivation(Activation):
    """An activation written as a function with `xpnet.ops` (Keras's `Dense(64, activation=my_fn)`).

    forward runs fn on the pre-activation u (batch, units); backward records fn on the tape and
    replays it from ∂L/∂h, so φ' never has to be written. Saved by the function's name: load the
    model with custom_objects={"my_fn": my_fn}.
    """

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", "custom_activation")
        self.keras_name = self.name

    def forward(self, xp: Any, u: Array) -> Array:
        with recording(None):
            h = self.fn(u)
        return h.data if isinstance(h, Tensor) else h

    def backward(self, xp: Any, u: Array, h: Array, dh: Array) -> Array:
        tape = Tape(xp)
        leaf = Tensor(u)
        with recording(tape):
            out = self.fn(leaf)
        (du,) = tape.backward([(out, dh)], [leaf])
        return xp.zeros_like(u) if du is None else du

    def __repr__(self) -> str:
        return f"FunctionActivation({self.name!r})"


def get(identifier: str | Activation | None) -> Activation:
    """Resolve 'relu', an Activation instance, `xpnet.activations.relu`, a function written with `xpnet.ops`,
    or None (linear)."""
    if identifier is None:
        return Linear()
    if isinstance(identifier, Activation):
        return identifier
    tag = getattr(identifier, "xpnet_activation", None)
    if callable(identifier) and tag in _REGISTRY:
        return _REGISTRY[tag]()
    if isinstance(identifier, str):
        cls = _REGISTRY.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown activation {identifier!r}; known: {sorted(_REGISTRY)}")
        return cls()
    if callable(identifier) and not isinstance(identifier, type):
        return FunctionActivation(identifier)
    raise TypeError(
        "activation must be a name, an Activation instance, xpnet.activations.<name> or a function, "
        f"got {type(identifier).__name__}"
    )
