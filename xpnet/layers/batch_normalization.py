"""BatchNormalization (Keras 3's defaults): normalise each feature with the batch's statistics in
training, with the moving statistics at inference."""

from __future__ import annotations

from typing import Any

from .. import initializers as inits
from .. import regularizers as regs
from ..io.config import serialize
from .base import Array, Layer, ParamSpec, Shape


class BatchNormalization(Layer):
    """y = γ·(x − μ)/√(σ² + ε) + β per feature (the last axis).

    x: (batch, features) after Dense or (batch, h, w, channels) after Conv2D; y has x's shape.
    Training (a trainable layer): μ, σ² are the batch's mean and biased variance over every axis
    but the last, and the moving statistics move toward them:
    moving ← moving·momentum + batch·(1 − momentum). Inference, or a frozen layer
    (`trainable = False`, as Keras): μ, σ² are moving_mean and moving_variance.
    Weights, in Keras's order: gamma, beta (trainable), moving_mean, moving_variance (not).
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 0.001,
        center: bool = True,
        scale: bool = True,
        beta_initializer: str | inits.Initializer = "zeros",
        gamma_initializer: str | inits.Initializer = "ones",
        moving_mean_initializer: str | inits.Initializer = "zeros",
        moving_variance_initializer: str | inits.Initializer = "ones",
        beta_regularizer: str | regs.Regularizer | None = None,
        gamma_regularizer: str | regs.Regularizer | None = None,
        synchronized: bool = False,
        name: str | None = None,
        input_shape: Any = None,
        trainable: bool = True,
    ) -> None:
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"BatchNormalization axis must be an integer, received {axis!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNormalization momentum must be a number in [0, 1], received {momentum!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"BatchNormalization epsilon must be a positive number, received {epsilon!r}")
        if synchronized:  # Keras offers it on TensorFlow only; here ranks average their moving statistics instead
            raise ValueError(
                "BatchNormalization(synchronized=True) is not supported: under MPI each rank normalises with its "
                "own batch statistics and the ranks average the moving statistics after every step"
            )
        self.synchronized = False
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = inits.get(beta_initializer)
        self.gamma_initializer = inits.get(gamma_initializer)
        self.moving_mean_initializer = inits.get(moving_mean_initializer)
        self.moving_variance_initializer = inits.get(moving_variance_initializer)
        self.beta_regularizer = regs.get(beta_regularizer)
        self.gamma_regularizer = regs.get(gamma_regularizer)
        self._xhat: Array = None  # (rows, features): what backward needs, with _inv (features,)
        self._inv: Array = None
        self._batch_stats = False  # whether the last training forward used the batch's statistics

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        rank = len(input_shape) + 1  # Keras counts the batch axis
        if self.axis not in (-1, rank - 1):
            raise ValueError(
                f"BatchNormalization {self.name!r} normalises the last (features or channels) axis, axis=-1; "
                f"received axis={self.axis} for inputs of shape (None, {', '.join(map(str, input_shape))})"
            )
        return input_shape

    def param_specs(self) -> list[ParamSpec]:
        assert self.input_shape is not None
        shape = (self.input_shape[-1],)
        specs = []
        if self.scale:
            specs.append(ParamSpec("gamma", shape, self.gamma_initializer, self.gamma_regularizer))
        if self.center:
            specs.append(ParamSpec("beta", shape, self.beta_initializer, self.beta_regularizer))
        specs += [
            ParamSpec("moving_mean", shape, self.moving_mean_initializer, trainable=False, aggregation="mean"),
            ParamSpec("moving_variance", shape, self.moving_variance_initializer, trainable=False, aggregation="mean"),
        ]
        return specs

    def _affine(self, x2: Array, mean: Array, inv: Array) -> tuple[Array, Array]:
        """(x̂ = (x − mean)·inv, y = γ·x̂ + β) for x2: (rows, features)."""
        assert self.ops is not None
        xp = self.ops.xp  # namespace calls, not operators: a captured step keeps their results
        xhat = xp.multiply(xp.subtract(x2, mean), inv)
        y = xp.multiply(xhat, self.params["gamma"]) if self.scale else xhat
        return xhat, (xp.add(y, self.params["beta"]) if self.center else y)

    def forward(self, x: Array, training: bool = False) -> Array:
        assert self.ops is not None
        xp = self.ops.xp
        x2 = xp.reshape(x, (-1, x.shape[-1]))
        # an empty batch (a data-parallel rank's share of a short last batch) has no statistics
        self._batch_stats = bool(training and self.trainable and x2.shape[0])
        if self._batch_stats:
            # namespace calls, not operators: a captured step keeps their results (training/program.py)
            mul, add = xp.multiply, xp.add
            mean = xp.mean(x2, axis=0)
            centred = xp.subtract(x2, mean)
            var = xp.mean(mul(centred, centred), axis=0)  # biased, as Keras (and its moving variance)
            inv = xp.divide(1.0, xp.sqrt(add(var, self.epsilon)))
            xhat = mul(centred, inv)
            y = mul(xhat, self.params["gamma"]) if self.scale else xhat
            if self.center:
                y = add(y, self.params["beta"])
            mm, mv = self.params["moving_mean"], self.params["moving_variance"]
            self.ops.assign(mm, add(mul(mm, self.momentum), mul(mean, 1.0 - self.momentum)))
            self.ops.assign(mv, add(mul(mv, self.momentum), mul(var, 1.0 - self.momentum)))
        else:
            inv = xp.divide(1.0, xp.sqrt(xp.add(self.params["moving_variance"], self.epsilon)))
            xhat, y = self._affine(x2, self.params["moving_mean"], inv)
        if training:
            self._xhat, self._inv = xhat, inv
        return xp.reshape(y, x.shape)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array | None:
        """dy: y's shape. ∂L/∂β = Σ dy, ∂L/∂γ = Σ dy·x̂ over rows; with batch statistics
        ∂L/∂x = γ·inv·(dy − ∂L/∂β/m − x̂·∂L/∂γ/m), m rows; with fixed statistics ∂L/∂x = γ·inv·dy."""
        assert self.ops is not None and self.sink is not None
        xp = self.ops.xp
        dy2 = xp.reshape(dy, (-1, dy.shape[-1]))
        mul, sub = xp.multiply, xp.subtract  # namespace calls: see forward
        dbeta = xp.sum(dy2, axis=0)
        dgamma = xp.sum(mul(dy2, self._xhat), axis=0)
        dx = None
        if need_input_grad:  # before the sink moves γ (plain SGD updates it in place)
            g = mul(self._inv, self.params["gamma"]) if self.scale else self._inv
            if self._batch_stats:
                m = 1.0 / dy2.shape[0]
                dx = xp.reshape(mul(sub(sub(dy2, mul(dbeta, m)), mul(self._xhat, mul(dgamma, m))), g), dy.shape)
            else:
                dx = xp.reshape(mul(dy2, g), dy.shape)
        if self.scale:
            self.sink.put(self, "gamma", dgamma)
        if self.center:
            self.sink.put(self, "beta", dbeta)
        return dx

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_regularizer": serialize(self.beta_regularizer),
            "gamma_regularizer": serialize(self.gamma_regularizer),
            "synchronized": self.synchronized,
        }

    def __repr__(self) -> str:
        settings = f"axis={self.axis}, momentum={self.momentum}, epsilon={self.epsilon}"
        return f"BatchNormalization({settings}, name={self.name!r})"
