"""The eager walk of one `train_on_batch`: the batch check read once per build and compile gives
what the model's own checks give, the step keeps taking back shared layers, and the walk stays short."""

from __future__ import annotations

import sys
import warnings
from functools import partial
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


def test_the_walk_of_one_replayed_train_on_batch_stays_short() -> None:
    """scripts/architecture_figures.py's yardstick: the 6th call of an MLP's train_on_batch as compiled by
    default on NumPy (the program has recorded and checked its list, and replays it) entered 17 xpnet files
    with 53 switches between files at 47e3f8c; 13 and 27 at 0715488; 8 and 13 since the list's entries are
    partials of C functions, the replay moves the optimizer's counts, the program's copy of the batch is
    the upload and its host sums are read as they are."""
    model = _mlp()
    x, y = _xy()
    for _ in range(5):
        model.train_on_batch(x, y)
    assert model._program.replays and model._program._replay.verified  # the call walked is a replay
    files, switches = _walk(model, x, y)
    assert files <= 8 and switches <= 16, (files, switches)


def test_the_walk_of_one_eager_train_on_batch_stays_short() -> None:
    """The same yardstick for one eager step (jit_compile=False, the second call): 21 files and 121 switches
    before the batch check and the step's per-compile facts, 17 and 80 at 47e3f8c, at most 17 and 72 now."""
    model = Sequential([Input((20,)), Dense(16, activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy", jit_compile=False)
    x, y = _xy()
    model.train_on_batch(x, y)
    files, switches = _walk(model, x, y)
    assert files <= 17 and switches <= 72, (files, switches)


def test_a_replayed_mlp_step_is_a_flat_list_of_partials_of_c_functions() -> None:
    """The MLP's recorded calls are bound as `functools.partial`s of ufuncs, array methods and the ctypes
    GEMM (a call of several such, `fused_cpu.Steps`, opened into the list), so the replay runs no wrapper
    frame of ours; the counts it moves itself are the eager step's (the optimizer's host `iterations` and
    device t)."""
    model = _mlp()
    x, y = _xy()
    for _ in range(6):
        model.train_on_batch(x, y)
    replay = model._program._replay
    assert replay is not None and replay.verified and model._program.replayed >= 2
    flat = replay.list.flat
    assert len(flat) > len(replay.calls) and all(isinstance(f, partial) for f in flat), flat
    assert all(not hasattr(f.func, "__code__") for f in flat)  # C functions (ufuncs, ctypes), none of ours
    opt = model.optimizer
    assert opt.iterations == 6 and float(opt._t) == 6.0 and opt._t.dtype == np.float64


@pytest.mark.parametrize("case", ["float64 x", "fortran x", "int labels", "two shapes"])
def test_a_replayed_train_on_batch_uploads_as_the_eager_one(case: str) -> None:
    """The replay's copy of the batch into its own buffers is the upload (the cast to the model's dtype, C
    order): 8 calls through the replay give the bits of 8 eager calls, for batches the upload used to convert."""
    x, y = _xy()
    batches = {
        "float64 x": [(x.astype(np.float64) * 1.1, y)] * 8,
        "fortran x": [(np.asfortranarray(x), y)] * 8,
        "int labels": [(x, y.astype(np.int64))] * 8,
        "two shapes": [(x, y)] * 4 + [(x[:16].astype(np.float64), y[:16])] * 4,
    }[case]
    runs = []
    for jit in ("auto", False):
        model = Sequential([Input((20,)), Dense(16, activation="relu"), Dense(3, activation="softmax")], seed=2)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy", jit_compile=jit)
        losses = [model.train_on_batch(bx, by) for bx, by in batches]
        runs.append((losses, model.get_weights(), model.optimizer.iterations))
        if jit == "auto":
            assert model._program.replayed >= 2, case  # the calls compared did go through the replay
    (got_l, got_w, got_i), (want_l, want_w, want_i) = runs
    assert got_l == want_l and got_i == want_i == 8
    for a, b in zip(got_w, want_w, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_replayed_two_input_train_on_batch_uploads_each_input_as_the_eager_one() -> None:
    """A list of inputs (one float64, one float32) goes into the program's buffers one array each, cast to
    the model's dtype: the replayed calls give the bits of the eager ones."""
    rng = np.random.default_rng(0)
    a, b, y = rng.standard_normal((32, 5)), rng.standard_normal((32, 7)).astype(np.float32), rng.integers(0, 3, 32)
    runs = []
    for jit in ("auto", False):
        i1, i2 = Input((5,)), Input((7,))
        h = xpnet.layers.Add()([Dense(8, activation="relu")(i1), Dense(8, activation="relu")(i2)])
        model = xpnet.Model([i1, i2], Dense(3, activation="softmax")(h), seed=3)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy", jit_compile=jit)
        runs.append(([model.train_on_batch([a, b], y) for _ in range(8)], model.get_weights()))
        assert jit is False or model._program.replayed >= 2
    assert runs[0][0] == runs[1][0]
    for p, q in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(p, q)


def test_a_replayed_train_on_batch_that_overflows_warns_nothing() -> None:
    """The replay runs under the backend's activation (np.errstate, bound in NumpyOps): an overflowing step
    says nothing per call (fit reports a non-finite loss itself)."""
    model = Sequential([Input((20,)), Dense(16, activation="relu"), Dense(3, activation="softmax")], seed=2)
    model.compile(optimizer=xpnet.optimizers.SGD(1e30), loss="sparse_categorical_crossentropy", backend="numpy")
    x, y = _xy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses = [model.train_on_batch(x * 1e18, y) for _ in range(8)]
    assert model._program.replays and not np.isfinite(losses[-1])


def test_a_replayed_train_on_batch_after_the_optimizer_is_built_afresh_matches_eager() -> None:
    """`optimizer.build` (its state afresh: new slots, a new device count t) between replayed calls: the
    next calls record anew on the new state, so losses, weights, `iterations` and t are the eager ones
    (a list kept from before read the old slots and moved the old t: t stayed 0 while iterations ran on)."""
    x, y = _xy()
    runs = []
    for jit in (True, False):
        model = Sequential([Input((20,)), Dense(16, activation="relu"), Dense(3, activation="softmax")], seed=2)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="numpy", jit_compile=jit)
        losses = []
        for i in range(10):
            losses.append(model.train_on_batch(x, y))
            if i == 5:
                model.optimizer.iterations = 0
                model.optimizer.build(model.ops, model.store.params)
        opt = model.optimizer
        runs.append((losses, opt.iterations, float(opt._t), model.get_weights()))
        if jit is True:
            assert model._program.replayed >= 2  # the calls after the rebuild replay again
    (got_l, got_i, got_t, got_w), (want_l, want_i, want_t, want_w) = runs
    assert got_l == want_l and got_i == want_i == 4 and got_t == want_t == 4.0
    for a, b in zip(got_w, want_w, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "case",
    [
        "plain",
        "float64 x",
        "int x",
        "fortran x",
        "nan x",
        "inf x",
        "label too big",
        "negative label",
        "float labels",
        "bool labels",
        "(n, 1) labels",
        "rows differ",
        "wrong width",
        "list x",
    ],
)
def test_the_batch_checks_one_pass_gives_what_the_full_checks_give(case: str) -> None:
    """`BatchCheck._plain` takes the common case in one pass: its result (or, refusing it, the full checks'
    result or error) is what the model's own checks give, for plain and for awkward batches."""
    x, y = _xy(8)
    x, y = {
        "plain": (x, y),
        "float64 x": (x.astype(np.float64), y),
        "int x": (np.ones((8, 20), np.int64), y),
        "fortran x": (np.asfortranarray(x.reshape(8, 20)), y),
        "nan x": (np.where(np.arange(20) == 3, np.nan, x).astype(np.float32), y),
        "inf x": (np.where(np.arange(20) == 3, np.inf, x).astype(np.float32), y),
        "label too big": (x, np.where(np.arange(8) == 2, 3, y)),
        "negative label": (x, np.where(np.arange(8) == 2, -1, y)),
        "float labels": (x, y.astype(np.float64)),
        "bool labels": (x, (y > 0)),
        "(n, 1) labels": (x, y[:, None]),
        "rows differ": (x, y[:5]),
        "wrong width": (x[:, :19], y),
        "list x": (x.tolist(), y),
    }[case]
    model = _mlp()
    model.train_on_batch(*_xy(8))
    check = model._batch_check
    assert check is not None
    plain = check._plain(x, y)
    assert (plain is not None) == (case in ("plain", "float64 x")), case
    got = _outcome(model, x, y, plain=False)
    want = _outcome(model, x, y, plain=True)
    assert got[0] == want[0], (got, want)
    if got[0] == "ok":
        for a, b in zip(got[1], want[1], strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    else:
        assert got[1] == want[1]


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


@pytest.mark.parametrize("back", [False, True])
def test_a_rate_set_between_replayed_calls_is_used_at_once(back: bool) -> None:
    """A replayed train_on_batch reads the rate the list holds without rewriting it first: a new
    `learning_rate` (and a return to the recorded one) must still reach the next step, bit for bit as eagerly."""
    models = []
    for jit in ("auto", False):
        m = Sequential([Input((20,)), Dense(16, activation="relu"), Dense(3, activation="softmax")], seed=3)
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy", jit_compile=jit)
        models.append(m)
    x, y = _xy()
    for i in range(10):
        for m in models:
            assert m.optimizer is not None
            if i == 6:
                m.optimizer.learning_rate = 0.5
            if back and i == 8:
                m.optimizer.learning_rate = 0.01
            m.train_on_batch(x, y)
    assert models[0]._program.replayed > 0
    for got, want in zip(models[0].get_weights(), models[1].get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_the_batch_checks_one_pass_leaves_other_target_checks_to_the_loss() -> None:
    """A loss whose `prepare_targets` is not sparse cross-entropy's own (here an instance's override that
    refuses label 2) is asked each time: the one pass does not stand in for it."""
    model = _mlp()
    x, y = _xy(8)
    model.train_on_batch(x, y)
    assert model._batch_check is not None and model._batch_check._plain(x, y) is not None

    def no_twos(labels: np.ndarray, n_outputs: int) -> np.ndarray:
        if (labels == 2).any():
            raise ValueError("no label 2 here")
        return labels.astype(np.int32)

    model.loss.prepare_targets = no_twos  # type: ignore[method-assign]
    assert model._batch_check._plain(x, y) is None
    with pytest.raises(ValueError, match="no label 2 here"):
        model.train_on_batch(x, np.full(8, 2))
