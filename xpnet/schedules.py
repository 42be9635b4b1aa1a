"""Learning-rate schedules as Keras's `keras.optimizers.schedules`: the rate as a function of the step.

`schedule(step)` gives the rate on the host; `on_device(xp, step)` computes the same from the
optimizer's device step counter (a 0-d float64 array), so a training step recorded once (a
CUDA graph) follows the schedule on replay without a host write per step. `step` counts the
updates already applied, as Keras's `optimizer.iterations`.
"""

from __future__ import annotations

import math
from typing import Any

from . import argcheck
from .io.config import plain_settings

Array = Any


class LearningRateSchedule:
    def __call__(self, step: Any) -> Any:
        """The rate at `step`: a float for one step, a float64 NumPy array for an array of steps
        (`schedule(np.arange(1000))`, to plot it, as Keras's schedules accept tensors)."""
        import numpy as np

        if np.ndim(step) == 0:
            return float(self.on_device(np, np.asarray(float(step))))
        steps = np.asarray(step, dtype=np.float64)
        return np.broadcast_to(self.on_device(np, steps), steps.shape).astype(np.float64)

    def on_device(self, xp: Any, step: Array) -> Array:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return plain_settings(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _positive(owner: str, name: str, value: Any) -> float:
    return argcheck.number(owner, name, value, 0, low_open=True)


class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate · decay_rate^(step / decay_steps) (the exponent floored when staircase)."""

    def __init__(
        self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False
    ) -> None:
        who = "ExponentialDecay"
        self.initial_learning_rate = _positive(who, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive(who, "decay_steps", decay_steps)
        # a rate <= 0 gives zero or sign-flipping learning rates (gradient ascent)
        self.decay_rate = _positive(who, "decay_rate", decay_rate)
        self.staircase = argcheck.boolean(who, "staircase", staircase)

    def on_device(self, xp: Any, step: Array) -> Array:
        p = step / self.decay_steps
        return self.initial_learning_rate * self.decay_rate ** (xp.floor(p) if self.staircase else p)


class InverseTimeDecay(LearningRateSchedule):
    """initial_learning_rate / (1 + decay_rate · step / decay_steps) (floored when staircase)."""

    def __init__(
        self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False
    ) -> None:
        who = "InverseTimeDecay"
        self.initial_learning_rate = _positive(who, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive(who, "decay_steps", decay_steps)
        # a negative rate makes the denominator cross zero: an infinite, then negative, learning rate
        self.decay_rate = argcheck.number(who, "decay_rate", decay_rate, 0)
        self.staircase = argcheck.boolean(who, "staircase", staircase)

    def on_device(self, xp: Any, step: Array) -> Array:
        p = step / self.decay_steps
        return self.initial_learning_rate / (1.0 + self.decay_rate * (xp.floor(p) if self.staircase else p))


class PolynomialDecay(LearningRateSchedule):
    """(initial − end) · (1 − min(step, decay_steps) / decay_steps)^power + end (cycle=False)."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        end_learning_rate: float = 0.0001,
        power: float = 1.0,
        cycle: bool = False,
    ) -> None:
        who = "PolynomialDecay"
        if argcheck.boolean(who, "cycle", cycle):
            raise ValueError("PolynomialDecay(cycle=True) is not supported; use cycle=False")
        self.initial_learning_rate = _positive(who, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive(who, "decay_steps", decay_steps)
        self.end_learning_rate = argcheck.number(who, "end_learning_rate", end_learning_rate, 0)
        self.power, self.cycle = argcheck.number(who, "power", power, 0), False

    def on_device(self, xp: Any, step: Array) -> Array:
        frac = 1.0 - xp.minimum(step, self.decay_steps) / self.decay_steps
        return (self.initial_learning_rate - self.end_learning_rate) * frac**self.power + self.end_learning_rate


class CosineDecay(LearningRateSchedule):
    """initial · ((1 − alpha) · ½(1 + cos(π · min(step, decay_steps) / decay_steps)) + alpha)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0) -> None:
        self.initial_learning_rate = _positive("CosineDecay", "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive("CosineDecay", "decay_steps", decay_steps)
        self.alpha = argcheck.number("CosineDecay", "alpha", alpha, 0, 1)

    def on_device(self, xp: Any, step: Array) -> Array:
        cosine = 0.5 * (1.0 + xp.cos(math.pi * xp.minimum(step, self.decay_steps) / self.decay_steps))
        return self.initial_learning_rate * ((1.0 - self.alpha) * cosine + self.alpha)


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] for step ≤ boundaries[0], values[i] for boundaries[i−1] < step ≤ boundaries[i], then values[-1]."""

    def __init__(self, boundaries: list[float], values: list[float]) -> None:
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"PiecewiseConstantDecay needs one more value than boundaries: {len(boundaries)} boundaries, "
                f"{len(values)} values"
            )
        who = "PiecewiseConstantDecay"
        self.boundaries = [argcheck.number(who, f"boundaries[{i}]", b, 0) for i, b in enumerate(boundaries)]
        # a value of 0 is a valid stage (Keras takes it: training pauses there); a negative one would ascend
        self.values = [argcheck.number(who, f"values[{i}]", v, 0) for i, v in enumerate(values)]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:], strict=False)):
            raise ValueError(f"PiecewiseConstantDecay: boundaries must increase, received {list(boundaries)}")

    def on_device(self, xp: Any, step: Array) -> Array:
        rate = self.values[-1] + 0.0 * step
        for bound, value in zip(reversed(self.boundaries), reversed(self.values[:-1]), strict=True):
            rate = xp.where(step <= bound, value, rate)
        return rate

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": self.boundaries, "values": self.values}


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(value: dict[str, Any], custom: dict[str, Any] | None = None) -> LearningRateSchedule:
    name = value["class_name"]
    cls = (custom or {}).get(name) or globals().get(name)
    if not (isinstance(cls, type) and issubclass(cls, LearningRateSchedule)):
        raise ValueError(f"unknown learning-rate schedule {name!r}; pass it in custom_objects={{...}}")
    return cls(**value["config"])
