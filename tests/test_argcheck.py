"""Hyperparameters and fit arguments are checked at construction, one line naming the argument and value."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import callbacks, checkpoint, optimizers, regularizers, schedules
from xpnet.layers import Dense


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: optimizers.Adam(beta_1=1.5), r"Adam: beta_1 must be a number in \[0, 1\), received 1.5"),
        (lambda: optimizers.Adam(beta_2=-1), r"Adam: beta_2 must be a number in \[0, 1\), received -1"),
        (lambda: optimizers.Adam(epsilon=-1), r"Adam: epsilon must be a number >= 0, received -1"),
        (lambda: optimizers.Adam(learning_rate=float("nan")), r"Adam: learning_rate must be a number > 0"),
        (lambda: optimizers.RMSprop(rho=2), r"RMSprop: rho must be a number in \[0, 1\), received 2"),
        (lambda: optimizers.RMSprop(momentum=1.0), r"RMSprop: momentum must be a number in \[0, 1\), received 1.0"),
        (lambda: optimizers.SGD(momentum=-0.1), r"SGD: momentum must be a number in \[0, 1\), received -0.1"),
        (lambda: optimizers.SGD(nesterov="no"), r"SGD: nesterov must be True or False, received 'no'"),
        (lambda: optimizers.SGD(learning_rate="0.1"), r"SGD: learning_rate must be a number > 0, received '0.1'"),
        (
            lambda: schedules.ExponentialDecay(0.1, 10, decay_rate=-1),
            r"ExponentialDecay: decay_rate must be a number > 0, received -1",
        ),
        (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), r"ExponentialDecay: decay_steps must be a number > 0"),
        (
            lambda: schedules.ExponentialDecay(0.1, 10, 0.5, staircase="yes"),
            r"ExponentialDecay: staircase must be True or False",
        ),
        (lambda: schedules.InverseTimeDecay(0.1, 10, -0.5), r"InverseTimeDecay: decay_rate must be a number >= 0"),
        (lambda: schedules.CosineDecay(0.1, 10, alpha=2), r"CosineDecay: alpha must be a number in \[0, 1\]"),
        (lambda: schedules.PolynomialDecay(0.1, 10, power=-1), r"PolynomialDecay: power must be a number >= 0"),
        (
            lambda: schedules.PiecewiseConstantDecay([10, 5], [0.1, 0.01, 0.001]),
            r"PiecewiseConstantDecay: boundaries must increase",
        ),
        (lambda: regularizers.L2("x"), r"L2: l2 must be a number >= 0, received 'x'"),
        (lambda: regularizers.L1(-1), r"L1: l1 must be a number >= 0, received -1"),
        (lambda: regularizers.L1L2(l1=float("inf")), r"L1L2: l1 must be a number >= 0, received inf"),
        (lambda: checkpoint.Checkpoint("d", keep="3"), r"Checkpoint: keep must be an integer >= 1, received '3'"),
        (lambda: checkpoint.Checkpoint("d", keep=0), r"Checkpoint: keep must be an integer >= 1, received 0"),
        (lambda: checkpoint.Checkpoint("d", save_freq=True), r"Checkpoint: save_freq must be 'epoch' or a positive"),
        (lambda: callbacks.EarlyStopping(patience=-1), r"EarlyStopping: patience must be an integer >= 0"),
        (lambda: callbacks.EarlyStopping(patience="2"), r"EarlyStopping: patience must be an integer >= 0"),
        (
            lambda: callbacks.EarlyStopping(restore_best_weights="no"),
            r"EarlyStopping: restore_best_weights must be True or False",
        ),
        (lambda: callbacks.ReduceLROnPlateau(factor=1.0), r"ReduceLROnPlateau: factor must be a number in \(0, 1\)"),
        (lambda: callbacks.ReduceLROnPlateau(min_lr=-1), r"ReduceLROnPlateau: min_lr must be a number >= 0"),
        (lambda: callbacks.ReduceLROnPlateau(cooldown=1.5), r"ReduceLROnPlateau: cooldown must be an integer >= 0"),
        (lambda: callbacks.TerminateOnNaN(check_every=0), r"TerminateOnNaN: check_every must be an integer >= 1"),
        (lambda: callbacks.CSVLogger("log.csv", separator=",,"), r"CSVLogger: separator must be one character"),
        (lambda: callbacks.ModelCheckpoint("m.keras", verbose=3), r"ModelCheckpoint: verbose must be one of 0, 1, 2"),
    ],
)
def test_bad_hyperparameters_are_refused_at_construction(make, pattern) -> None:
    with pytest.raises(ValueError, match=pattern) as info:
        make()
    assert "\n" not in str(info.value)


def test_keras_ranges_and_numpy_scalars_are_accepted() -> None:
    opt = optimizers.Adam(learning_rate=np.float32(0.01), beta_1=0.0, beta_2=np.float64(0.99), epsilon=0.0)
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.0, 0.99, 0.0)
    assert isinstance(opt.beta_2, float)
    assert optimizers.SGD(momentum=0.9, nesterov=np.bool_(True)).nesterov is True
    assert checkpoint.Checkpoint("d", keep=np.int64(2), save_freq=np.int32(5)).keep == 2
    assert schedules.ExponentialDecay(0.1, 10, 1.0)(5) == pytest.approx(0.1)
    assert regularizers.L2(0).l2 == 0.0


def test_a_piecewise_schedule_may_end_at_zero_as_in_keras_but_not_below() -> None:
    # keras.optimizers.schedules.PiecewiseConstantDecay([10], [0.1, 0.0]) is valid: training pauses after step 10
    schedule = schedules.PiecewiseConstantDecay([10], [0.1, 0.0])
    assert (schedule(5), schedule(20)) == (pytest.approx(0.1), 0.0)
    with pytest.raises(ValueError, match=r"PiecewiseConstantDecay: values\[1\] must be a number >= 0, received -0.1"):
        schedules.PiecewiseConstantDecay([10], [0.1, -0.1])


def _model() -> xpnet.Sequential:
    model = xpnet.Sequential([Dense(3, activation="softmax", input_shape=(4,))], seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"initial_epoch": -1}, r"fit: initial_epoch must be an integer >= 0, received -1"),
        ({"epochs": 2.0}, r"fit: epochs must be an integer >= 0, received 2.0"),
        ({"epochs": -1}, r"fit: epochs must be an integer >= 0, received -1"),
        ({"validation_split": 1.0}, r"fit: validation_split must be a number in \[0, 1\), received 1.0"),
        ({"shuffle": "false"}, r"fit: shuffle must be True or False, received 'false'"),
        ({"verbose": 5}, r"fit: verbose must be one of 'auto', 0, 1, 2, received 5"),
    ],
)
def test_bad_fit_arguments_are_refused_before_training(kwargs, pattern) -> None:
    model = _model()
    x, y = np.ones((8, 4), np.float32), np.zeros(8, np.int64)
    before = model.get_weights()
    with pytest.raises(ValueError, match=pattern):
        model.fit(x, y, **{"verbose": 0, **kwargs})
    np.testing.assert_array_equal(before[0], model.get_weights()[0])


def test_fit_takes_numpy_integer_epochs_like_batch_size() -> None:
    model = _model()
    x, y = np.ones((8, 4), np.float32), np.zeros(8, np.int64)
    hist = model.fit(x, y, epochs=np.int64(2), batch_size=np.int64(4), initial_epoch=np.int32(0), verbose=0)
    assert hist.epoch == [0, 1]


def test_a_lone_callback_is_refused_with_the_fix() -> None:
    model = _model()
    x, y = np.ones((8, 4), np.float32), np.zeros(8, np.int64)
    with pytest.raises(TypeError, match=r"callbacks must be a list of callbacks, received one History; "):
        model.fit(x, y, callbacks=callbacks.History(), verbose=0)
    with pytest.raises(TypeError, match=r"callbacks\[1\] must be a Callback, received 'x'"):
        model.fit(x, y, callbacks=[callbacks.History(), "x"], verbose=0)


def test_an_int_too_large_for_a_float_is_the_one_line_not_an_overflow_error() -> None:
    with pytest.raises(ValueError, match=r"Adam: epsilon must be a number .* received 1000000"):
        xpnet.optimizers.Adam(epsilon=10**400)
