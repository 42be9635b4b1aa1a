"""The eager walk of one `train_on_batch`: the batch check read once per build and compile gives
what the model's own checks give, the step keeps taking back shared layers, and the walk stays short."""

from __future__ import annotations

import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Input, Sequential
from xpnet.callbacks import Callback
from xpnet.training import data

PKG = Path(xpnet.__file__).resolve().parent


def _mlp(seed: int = 0) -> Sequential:
    model = Sequential([Input((20,)), Dense(16, activation="relu"), Dense(3, activation="softmax")], seed=seed)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy")
    return model


def _xy(n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 20)).astype(np.float32), rng.integers(0, 3, n)


def _outcome(model: Sequential, x: Any, y: Any, plain: bool) -> tuple[str, Any]:
    """prepare's result (or its error) through the model's own checks (plain) or its batch check."""
    if plain:
        model._batch_check = None
    else:
        assert isinstance(model._batch_check, data.BatchCheck)
    try:
        return "ok", model.prepare(x, y, "train_on_batch")
    except Exception as e:  # the comparison is of the error itself: its type and message
        return type(e).__name__, str(e)


def _bad_batches() -> list[tuple[Any, Any]]:
    x, y = _xy()
    nan_x = x.copy()
    nan_x[3, 4] = np.nan
    return [
        (x, y),
        (x.astype(np.float64), y),
        (x[:, :19], y),
        (x[:, :, None], y),  # an extra size-1 axis is dropped, as Keras does
        (x[:, None, :], y),
        (nan_x, y),
        (x, y[:31]),
        (x, y + 3),  # a label the output cannot name
        (x, y.astype(np.float32) + 0.5),
        (x, np.full(32, np.inf)),
        (np.array([["a"] * 20] * 32), y),
        (x, None),
        (x.tolist(), y.tolist()),
    ]


@pytest.mark.parametrize("case", range(len(_bad_batches())))
def test_the_batch_check_gives_what_the_models_own_checks_give(case: int) -> None:
    x, y = _bad_batches()[case]
    model = _mlp()
    good_x, good_y = _xy()
    model.train_on_batch(good_x, good_y)  # built, compiled: the batch check is made
    fast = _outcome(model, x, y, plain=False)
    plain = _outcome(model, x, y, plain=True)
    assert fast[0] == plain[0]
    if fast[0] != "ok":
        assert fast[1] == plain[1]
        return
    for a, b in zip(fast[1], plain[1], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_the_batch_check_is_made_again_for_a_new_loss() -> None:
    model = _mlp()
    x, y = _xy()
    model.train_on_batch(x, y)
    first = model._batch_check
    model.compile(optimizer="sgd", loss="categorical_crossentropy", backend="numpy")
    onehot = np.eye(3, dtype=np.float32)[y]
    model.train_on_batch(x, onehot)  # integer labels would now be refused: the check reads the new loss
    assert model._batch_check is not first and model._batch_check is not None
    with pytest.raises(ValueError) as fast:
        model.train_on_batch(x, y)
    model._batch_check = None
    with pytest.raises(ValueError) as plain:
        model.train_on_batch(x, y)
    assert str(fast.value) == str(plain.value)


def test_a_dict_of_inputs_still_goes_through_the_models_checks() -> None:
    model = _mlp()
    x, y = _xy()
    model.train_on_batch(x, y)
    name = model.input_names[0]
    out = model.train_on_batch({name: x}, y, return_dict=True)
    assert np.isfinite(out["loss"])


def test_train_on_batch_results_do_not_depend_on_the_batch_check() -> None:
    x, y = _xy()
    fast, plain = _mlp(), _mlp()
    for _ in range(3):
        a = fast.train_on_batch(x, y)
        plain._batch_check = None
        b = plain.train_on_batch(x, y)
        assert a == b
    for wa, wb in zip(fast.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


class _TrainOther(Callback):
    """At batch 1, train another model that shares the first Dense layer (the layer moves to its store)."""

    def __init__(self, other: Sequential, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.other, self.x, self.y = other, x, y

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if batch == 1:
            self.other.train_on_batch(self.x, self.y)


def _pair(seed: int) -> tuple[Sequential, Sequential]:
    shared = Dense(8, activation="relu")
    a = Sequential([Input((20,)), shared, Dense(3, activation="softmax")], seed=seed)
    b = Sequential([Input((20,)), shared, Dense(3, activation="softmax")], seed=seed + 1)
    for m in (a, b):
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy")
    return a, b


def test_a_fit_step_takes_back_a_shared_layer_that_a_callback_trained_elsewhere() -> None:
    x, y = _xy(32)
    bx, by = x[::-1].copy() * 2.0, (y + 1) % 3
    a, b = _pair(7)
    a.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[_TrainOther(b, bx, by)])
    ref_a, ref_b = _pair(7)  # the same, step by step
    ref_a.train_on_batch(x[:16], y[:16])
    ref_b.train_on_batch(bx, by)
    ref_a.train_on_batch(x[16:], y[16:])
    lone, _ = _pair(7)  # without the other model's update in between
    lone.train_on_batch(x[:16], y[:16])
    lone.train_on_batch(x[16:], y[16:])
    for got, want in zip(a.get_weights(), ref_a.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not np.allclose(a.get_weights()[0], lone.get_weights()[0])  # the take-back is what made them agree


def _walk(model: Sequential, x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    trail: list[str] = []

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(str(PKG)):
            trail.append(frame.f_code.co_filename)

    sys.setprofile(profile)
    try:
        model.train_on_batch(x, y)
    finally:
        sys.setprofile(None)
    return len(set(trail)), sum(1 for a, b in pairwise(trail) if a != b)


def test_the_walk_of_one_train_on_batch_stays_short() -> None:
    """scripts/architecture_figures.py's yardstick: the second call of an MLP's train_on_batch on NumPy
    entered 21 xpnet files with 121 switches between files before the batch check and the step's
    per-compile facts; at most 17 files and 77 switches now. The call measured is a steady one: with
    jit_compile="auto" (the default) on NumPy the first three calls write the step down, record it and
    check the recording (training/program.py), the later ones replay it."""
    model = _mlp()
    x, y = _xy()
    for _ in range(3):
        model.train_on_batch(x, y)
    assert model.step_program.replayed == 0  # the next call is the first replayed one
    files, switches = _walk(model, x, y)
    assert model.step_program.replayed == 1
    assert files <= 17 and switches <= 77, (files, switches)


def test_a_step_activation_set_after_a_step_is_refused_at_the_next() -> None:
    model = _mlp()
    x, y = _xy()
    model.train_on_batch(x, y)
    before = model.get_weights()
    model.layers[0].activation = xpnet.activations.get("heaviside")  # a new plan: the step checks again
    # the step's own check, before anything runs (the activation's backward names "heaviside" too, but
    # only after plain SGD has updated the layers above it)
    with pytest.raises(xpnet.activations.NotDifferentiableError, match="uses the 'heaviside' activation"):
        model.train_on_batch(x, y)
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_frozen_model_compiles_for_a_recorded_step_and_refuses_only_training() -> None:
    model = _mlp()
    for layer in model.layers:
        layer.trainable = False
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy", jit_compile=True)
    x, y = _xy()
    assert np.isfinite(model.evaluate(x, y, verbose=0))
    with pytest.raises(ValueError, match="no trainable parameters"):
        model.train_on_batch(x, y)


def test_a_step_activation_set_inside_a_nested_model_is_refused_before_any_weight_moves() -> None:
    """The step checks trainability again only when the plan is remade: a changed activation of a nested
    model's layer (a node of the inner graph, not of this one) must remake it too, or backward reaches the
    step function after plain SGD has already updated the layers above it."""
    inner = Sequential([Input((20,)), Dense(8, activation="relu")], seed=1)
    inputs = Input((20,))
    model = xpnet.Model(inputs, Dense(3, activation="softmax")(inner(inputs)), seed=2)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy")
    x, y = _xy()
    model.train_on_batch(x, y)
    before = model.get_weights()
    inner.layers[-1].activation = xpnet.activations.get("heaviside")
    with pytest.raises(xpnet.activations.NotDifferentiableError, match="uses the 'heaviside' activation"):
        model.train_on_batch(x, y)
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)
