"""Optimizers over one flat parameter buffer: one vectorised update (one kernel on CuPy) per step.

Hyperparameters are Python floats; what changes from step to step (the iteration count t, the
learning rate a callback may set) is mirrored in 0-d device arrays, so the update reads no
Python number that a recorded step would freeze. Defaults follow Keras. Each rule's plain
array code is an `Ops` method (`sgd_update`, `rmsprop_update`, `adam_update`) that backends
override with fused kernels, side by side with it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import argcheck, schedules
from .backend import Ops
from .backend.base import DeviceScalar
from .params import GradientSink, ParamStore
from .schedules import LearningRateSchedule

Array = Any
_warned_lr = False  # the `lr=` deprecation is said once per process


class Optimizer:
    name = "optimizer"

    def __init__(self, learning_rate: float | LearningRateSchedule, lr: float | None = None) -> None:
        if lr is not None:  # Keras 2's name, which the course's code uses: SGD(lr=0.01)
            if not _warned_lr:
                warnings.warn("`lr` is deprecated, use `learning_rate` instead", DeprecationWarning, stacklevel=3)
                globals()["_warned_lr"] = True
            learning_rate = lr
        self._schedule: LearningRateSchedule | None = None
        self._rate = 0.0
        self.learning_rate = learning_rate  # type: ignore[assignment]
        self.ops: Ops | None = None
        self.slots: dict[str, Array] = {}
        self._t: Array = None  # the update count on the device (Adam's t), beside the host's `iterations`
        self._iterations = 0
        self._dtype: Any = None
        self._slot_shape: tuple[int, ...] = ()  # the flat parameter buffer's, for slots made after `build`
        self._lr: DeviceScalar | None = None  # learning rate in the parameters' dtype
        self._lr64: DeviceScalar | None = None  # and in float64, for per-step factors computed on the device

    def build(self, ops: Ops, params: Array) -> None:
        """Allocate state buffers shaped like the flat parameter buffer, and the device step counter."""
        self.ops = ops
        self.slots = {name: ops.zeros(params.shape, params.dtype) for name in self.slot_names()}
        self._slot_shape = tuple(params.shape)
        self._t = ops.asarray(np.asarray(self._iterations, dtype=np.float64))
        self._dtype = params.dtype
        self._lr = DeviceScalar(ops, self._rate, params.dtype)
        self._lr64 = DeviceScalar(ops, self._rate, np.float64)

    def add_missing_slots(self) -> None:
        """Zeros for each slot a setting changed since `build` asks for (SGD's or RMSprop's `momentum` set from 0
        by a callback): PyTorch's rule, a velocity starting at zero. Called between steps, never inside a
        recorded or captured step, whose buffers must all exist before it (a zero fill there would rerun
        at every replay)."""
        if self.ops is None:
            return
        missing = [name for name in self.slot_names() if name not in self.slots]
        if missing:
            # a new dict: the replay's and the graph's settings watch see the optimizer's state objects change
            self.slots = {**self.slots, **{n: self.ops.zeros(self._slot_shape, self._dtype) for n in missing}}

    @property
    def learning_rate(self) -> float:
        """The rate of the next update (a schedule's value at the current step)."""
        return self._schedule(self._iterations) if self._schedule is not None else self._rate

    @learning_rate.setter
    def learning_rate(self, value: float | LearningRateSchedule) -> None:
        if isinstance(value, LearningRateSchedule):
            self._schedule = value
            return
        try:
            rate = argcheck.number(type(self).__name__, "learning_rate", value, 0, low_open=True)
        except ValueError as e:
            raise ValueError(f"{e} (or pass a LearningRateSchedule)") from None
        self._schedule, self._rate = None, rate

    @property
    def schedule(self) -> LearningRateSchedule | None:
        """The learning-rate schedule, or None for a constant rate."""
        return self._schedule

    def count_replayed_update(self) -> None:
        """Advance the host's `iterations` alone: a replayed CUDA graph has advanced the device's t."""
        self._iterations += 1

    @property
    def device_count(self) -> Array:
        """The update count t on the device (0-d float64; None before `build`): what Adam's correction and a
        schedule read, moved by `apply` or by a kernel of the step (`apply(..., counted=True)`)."""
        return self._t

    @property
    def built(self) -> bool:
        return self.ops is not None

    @property
    def iterations(self) -> int:
        """Updates applied so far; setting it also moves the device's count (Adam's t)."""
        return self._iterations

    @iterations.setter
    def iterations(self, value: int) -> None:
        self._iterations = int(value)
        if self._t is not None:
            self._t[...] = float(value)

    def slot_names(self) -> list[str]:
        return []

    def lr(self, dtype64: bool = False, updating: bool = False) -> Array:
        """The learning rate as a 0-d device value.

        A constant rate is rewritten only when `learning_rate` changes; a schedule is computed from
        the device step counter (`updating`: called inside the update, after the counter moved).
        """
        assert self._lr is not None and self._lr64 is not None and self.ops is not None
        if self._schedule is None:
            return (self._lr64 if dtype64 else self._lr).set(self._rate)
        rate = self._schedule.on_device(self.ops.xp, self._t - 1.0 if updating else self._t)
        return rate if dtype64 else self.ops.cast(rate, self._dtype)

    def has_constant_rate(self) -> bool:
        """True without a schedule: the rate changes only when `learning_rate` is set."""
        return self._schedule is None

    def gradient_scale(self) -> Array | None:
        """The factor the step folds into the loss gradient (a 0-d float64 device value), None for 1."""
        return None

    def apply(self, store: ParamStore, sink: GradientSink, counted: bool = False) -> None:
        """The training step's update of `store.params` from `store.grads` (`gradient_scale()` × the gradient).

        counted: a kernel of the step has moved the device count t already (the loss kernel, where plain SGD
        updates inside backprop on CuPy); the host's `iterations` moves here either way.
        """
        self._iterations += 1
        if not counted:
            self._t += 1
        if not sink.applies_update:
            self.update(store.params, store.grads, scaled=True)

    def step(self, params: Array, grads: Array) -> None:
        """One update of flat `params` in place from the true gradient `grads` (build() first)."""
        if not self.built:
            raise RuntimeError(f"{type(self).__name__}.step: call build(ops, params) first")
        self._iterations += 1
        self._t += 1
        self.update(params, grads, scaled=False)

    def update(self, params: Array, grads: Array, scaled: bool) -> None:
        """The rule itself, and the place to change it in a subclass (fit calls `apply`, which calls this).

        scaled: grads hold `gradient_scale()` × the gradient.
        """
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        rate: Any = schedules.serialize(self._schedule) if self._schedule is not None else self._rate
        settings = {k: v for k, v in vars(self).items() if isinstance(v, (int, float, bool)) and not k.startswith("_")}
        return {"learning_rate": rate, **settings}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """w ← w − η·g; with momentum μ: v ← μv − η·g, w ← w + v (Nesterov: w ← w + μv − η·g).

    Without momentum the loss gradient arrives already multiplied by η, so the update is one
    subtraction, or none at all where the model's plan updates each layer inside backprop
    (xpnet/training/plan.py: on NumPy, one GEMM with β = 1 per weight).
    """

    name = "sgd"

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        *,
        lr: float | None = None,
    ) -> None:
        super().__init__(learning_rate, lr)
        self.momentum = argcheck.number("SGD", "momentum", momentum, 0, 1, high_open=True)
        self.nesterov = argcheck.boolean("SGD", "nesterov", nesterov)

    def slot_names(self) -> list[str]:
        return ["momentum"] if self.momentum else []

    def gradient_scale(self) -> Array | None:
        return None if self.momentum else self.lr(dtype64=True)

    def apply(self, store: ParamStore, sink: GradientSink, counted: bool = False) -> None:
        own_rule = type(self).update is SGD.update and "update" not in vars(self)
        if self.momentum or sink.applies_update or not own_rule or self.ops is None or counted:
            super().apply(store, sink, counted)
            return
        # grads carry η already: w ← w − g, and the device count moves in the same pass
        self._iterations += 1
        self.ops.subtract_counting(store.params, store.grads, self._t)

    def update(self, params: Array, grads: Array, scaled: bool) -> None:
        assert self.ops is not None
        if not self.momentum and scaled:
            self.ops.subtract_(params, grads)  # grads carry η already
            return
        lr = self.lr(updating=True)
        self.ops.sgd_update(params, grads, self.slots.get("momentum"), lr, self.momentum, self.nesterov)


class RMSprop(Optimizer):
    """v ← ρv + (1−ρ)g², w ← w − η·g/√(v+ε)."""

    name = "rmsprop"

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        *,
        lr: float | None = None,
    ) -> None:
        super().__init__(learning_rate, lr)
        self.rho = argcheck.number("RMSprop", "rho", rho, 0, 1, high_open=True)
        self.momentum = argcheck.number("RMSprop", "momentum", momentum, 0, 1, high_open=True)
        self.epsilon = argcheck.number("RMSprop", "epsilon", epsilon, 0)

    def slot_names(self) -> list[str]:
        return ["velocity", "momentum"] if self.momentum else ["velocity"]

    def update(self, params: Array, grads: Array, scaled: bool) -> None:
        assert self.ops is not None
        self.ops.rmsprop_update(
            params,
            grads,
            self.slots["velocity"],
            self.slots.get("momentum"),
            self.lr(updating=True),
            self.rho,
            self.momentum,
            self.epsilon,
        )


class Adam(Optimizer):
    """m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², w ← w − η·√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v+ε)."""

    name = "adam"

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        *,
        lr: float | None = None,
    ) -> None:
        super().__init__(learning_rate, lr)
        self.beta_1 = argcheck.number("Adam", "beta_1", beta_1, 0, 1, high_open=True)
        self.beta_2 = argcheck.number("Adam", "beta_2", beta_2, 0, 1, high_open=True)
        self.epsilon = argcheck.number("Adam", "epsilon", epsilon, 0)

    def slot_names(self) -> list[str]:
        return ["m", "v"]

    def apply(self, store: ParamStore, sink: GradientSink, counted: bool = False) -> None:
        own_rule = type(self).update is Adam.update and "update" not in vars(self)
        if sink.applies_update or not own_rule or self.ops is None or not self.ops.fuses_launches or counted:
            super().apply(store, sink, counted)
            return
        # t moves in the update's own pass (Ops.adam_counting); the rate is read at the t before it, as
        # lr(updating=True) reads it once t has moved
        self._iterations += 1
        rate = self.lr(dtype64=True)
        m, v = self.slots["m"], self.slots["v"]
        self.ops.adam_counting(store.params, store.grads, m, v, rate, self._t, self.beta_1, self.beta_2, self.epsilon)

    def update(self, params: Array, grads: Array, scaled: bool) -> None:
        ops = self.ops
        assert ops is not None
        # the bias correction from the device's t (see Ops.adam_step)
        ops.adam_step(
            params,
            grads,
            self.slots["m"],
            self.slots["v"],
            self.lr(dtype64=True, updating=True),
            self._t,
            self.beta_1,
            self.beta_2,
            self.epsilon,
        )


_REGISTRY: dict[str, type[SGD] | type[RMSprop] | type[Adam]] = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def get(identifier: str | Optimizer) -> Optimizer:
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]()
    raise ValueError(f"Unknown optimizer {identifier!r}; known: {sorted(_REGISTRY)}")
