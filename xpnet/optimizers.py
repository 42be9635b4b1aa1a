"""Optimizers over one flat parameter buffer: one vectorised update (one kernel on CuPy) per step.

Hyperparameters stay Python floats so float32 buffers are never upcast. Defaults follow Keras.
"""

from __future__ import annotations

import math
from typing import Any

from .backend import Ops

Array = Any


class Optimizer:
    name = "optimizer"

    def __init__(self, learning_rate: float) -> None:
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, received {learning_rate}")
        self.learning_rate = float(learning_rate)
        self.iterations = 0
        self.ops: Ops | None = None
        self.slots: dict[str, Array] = {}

    def build(self, ops: Ops, params: Array) -> None:
        """Allocate state buffers shaped like the flat parameter buffer."""
        self.ops = ops
        self.slots = {name: ops.zeros(params.shape, params.dtype) for name in self.slot_names()}

    def slot_names(self) -> list[str]:
        return []

    @property
    def grad_scale(self) -> float:
        """The factor the model may fold into the gradients it hands to `step` (saves a pass per step)."""
        return 1.0

    def step(self, params: Array, grads: Array, grads_scaled_by: float = 1.0) -> None:
        """Update `params` in place from `grads` (both flat (P,) buffers).

        grads_scaled_by: `grads` hold this multiple of the true gradient (see `grad_scale`).
        """
        self.iterations += 1
        self._update(params, grads, grads_scaled_by)

    def _update(self, params: Array, grads: Array, scaled_by: float) -> None:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if isinstance(v, (int, float, bool)) and k != "iterations"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """w ← w − η·g; with momentum μ: v ← μv − η·g, w ← w + v (Nesterov: w ← w + μv − η·g)."""

    name = "sgd"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(learning_rate)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), received {momentum}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def slot_names(self) -> list[str]:
        return ["momentum"] if self.momentum else []

    @property
    def grad_scale(self) -> float:
        # plain SGD: gradients premultiplied by η make the update a single p -= g
        return 1.0 if self.momentum else self.learning_rate

    def _update(self, params: Array, grads: Array, scaled_by: float) -> None:
        assert self.ops is not None
        self.ops.sgd_update(
            params, grads, self.slots.get("momentum"), self.learning_rate / scaled_by, self.momentum, self.nesterov
        )


class RMSprop(Optimizer):
    """v ← ρv + (1−ρ)g², w ← w − η·g/√(v+ε)."""

    name = "rmsprop"

    def __init__(
        self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7
    ) -> None:
        super().__init__(learning_rate)
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)

    def slot_names(self) -> list[str]:
        return ["velocity", "momentum"] if self.momentum else ["velocity"]

    def _update(self, params: Array, grads: Array, scaled_by: float) -> None:
        assert self.ops is not None
        if scaled_by != 1.0:
            raise ValueError("RMSprop needs unscaled gradients")
        self.ops.rmsprop_update(
            params,
            grads,
            self.slots["velocity"],
            self.slots.get("momentum"),
            self.learning_rate,
            self.rho,
            self.momentum,
            self.epsilon,
        )


class Adam(Optimizer):
    """m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², w ← w − η·√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v+ε)."""

    name = "adam"

    def __init__(
        self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
    ) -> None:
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def slot_names(self) -> list[str]:
        return ["m", "v"]

    def _update(self, params: Array, grads: Array, scaled_by: float) -> None:
        assert self.ops is not None
        if scaled_by != 1.0:
            raise ValueError("Adam needs unscaled gradients")
        t = self.iterations
        lr_t = self.learning_rate * math.sqrt(1.0 - self.beta_2**t) / (1.0 - self.beta_1**t)
        self.ops.adam_update(
            params, grads, self.slots["m"], self.slots["v"], lr_t, self.beta_1, self.beta_2, self.epsilon
        )


_REGISTRY: dict[str, type[SGD] | type[RMSprop] | type[Adam]] = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def get(identifier: str | Optimizer) -> Optimizer:
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]()
    raise ValueError(f"Unknown optimizer {identifier!r}; known: {sorted(_REGISTRY)}")
