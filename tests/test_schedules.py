"""Learning-rate schedules: Keras's formulas, computed on the device from the step counter."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.callbacks import LambdaCallback
from xpnet.optimizers import schedules


def test_schedules_follow_keras_formulas() -> None:
    exp = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert exp(0) == pytest.approx(0.1) and exp(10) == pytest.approx(0.05) and exp(5) == pytest.approx(0.1 * 0.5**0.5)
    stair = schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True)
    assert stair(9) == pytest.approx(0.1) and stair(10) == pytest.approx(0.05)
    inv = schedules.InverseTimeDecay(0.1, 10, 1.0)
    assert inv(10) == pytest.approx(0.05) and inv(30) == pytest.approx(0.025)
    poly = schedules.PolynomialDecay(0.1, 10, end_learning_rate=0.01, power=2.0)
    assert poly(5) == pytest.approx(0.09 * 0.25 + 0.01) and poly(20) == pytest.approx(0.01)
    cos = schedules.CosineDecay(0.1, 10, alpha=0.1)
    assert (
        cos(0) == pytest.approx(0.1)
        and cos(5) == pytest.approx(0.1 * (0.9 * 0.5 + 0.1))
        and cos(99) == pytest.approx(0.01)
    )
    piece = schedules.PiecewiseConstantDecay([3, 6], [1.0, 0.5, 0.1])
    assert [piece(s) for s in (0, 3, 4, 6, 7, 100)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    with pytest.raises(ValueError, match="one more value than boundaries"):
        schedules.PiecewiseConstantDecay([1], [1.0])


def test_device_values_equal_host_values_on_the_strict_backend() -> None:
    pytest.importorskip("array_api_strict")
    ops = xpnet.get_backend("strict")
    for sched in (
        schedules.ExponentialDecay(0.1, 7, 0.3, staircase=True),
        schedules.PolynomialDecay(0.2, 50),
        schedules.CosineDecay(0.1, 20),
        schedules.PiecewiseConstantDecay([2, 5], [0.3, 0.2, 0.1]),
    ):
        for step in (0, 3, 6, 49, 60):
            got = float(ops.to_numpy(sched.on_device(ops.xp, ops.asarray(np.asarray(float(step))))))
            assert got == pytest.approx(sched(step), rel=1e-15)


def _fit(optimizer: Any, callbacks: list[Any] | None = None) -> xpnet.Sequential:
    rng = np.random.default_rng(1)
    x, y = rng.random((96, 5)).astype(np.float32), rng.integers(0, 3, 96)
    model = xpnet.Sequential([xpnet.Dense(6, "relu", input_shape=(5,)), xpnet.Dense(3, "softmax")], seed=0)
    model.compile(optimizer, "sparse_categorical_crossentropy", backend="numpy")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks or [])
    return model


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "rmsprop"])
def test_a_schedule_trains_as_setting_each_steps_rate_by_hand(name: str) -> None:
    sched = schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.7)
    make = {
        "sgd": lambda lr: xpnet.optimizers.SGD(lr),
        "momentum": lambda lr: xpnet.optimizers.SGD(lr, momentum=0.9),
        "adam": lambda lr: xpnet.optimizers.Adam(lr),
        "rmsprop": lambda lr: xpnet.optimizers.RMSprop(lr),
    }[name]
    scheduled = _fit(make(sched))
    by_hand_opt = make(0.05)

    def set_rate(batch: int, logs: None) -> None:
        by_hand_opt.learning_rate = sched(by_hand_opt.iterations)

    by_hand = _fit(by_hand_opt, [LambdaCallback(on_train_batch_begin=set_rate)])
    for a, b in zip(scheduled.get_weights(), by_hand.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    assert scheduled.optimizer.learning_rate == pytest.approx(sched(12))


def test_a_scheduled_optimizer_is_saved_and_loaded(tmp_path: Path) -> None:
    model = _fit(xpnet.optimizers.SGD(schedules.CosineDecay(0.1, 50), momentum=0.5))
    model.save(tmp_path / "m.keras")
    loaded = xpnet.models.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.learning_rate == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 12 / 50)))
