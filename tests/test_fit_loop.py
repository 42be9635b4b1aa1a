"""fit's step loop around a replayed NumPy step: the settings compared once per epoch while no batch hook
runs, still caught when a hook changes one; the gather into the fixed buffers; the direct reductions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.backend import fused_cpu
from xpnet.backend.base import Ops
from xpnet.backend.numpy_ops import NumpyOps
from xpnet.layers import Dense
from xpnet.training import data, distributed, replay


def _fit(jit: bool, callbacks: list[Any], epochs: int = 3) -> tuple[Any, Any]:
    """A small 64-20-10 model, SGD, 12 steps of 8 rows an epoch (the last one short)."""
    rng = np.random.default_rng(5)
    x, y = rng.random((91, 64), dtype=np.float32), rng.integers(0, 10, 91)
    model = xpnet.Sequential([Dense(20, "relu", input_shape=(64,)), Dense(10, "softmax")], seed=2)
    opt = xpnet.optimizers.SGD(0.05)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy", jit_compile=jit)
    return model, model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks)


def _same(a: Any, b: Any, ha: Any, hb: Any) -> None:
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
    assert ha.history == hb.history


class _EpochRate(xpnet.callbacks.Callback):
    """A new learning rate at each epoch's start, as Keras's LearningRateScheduler sets it."""

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.model.optimizer.learning_rate = 0.05 / (epoch + 1)


def test_without_batch_hooks_the_settings_are_compared_once_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    compared = []
    plain = replay.Replay.current
    monkeypatch.setattr(replay.Replay, "current", lambda self: compared.append(1) or plain(self))
    eager, h0 = _fit(False, [_EpochRate()])
    replayed, h1 = _fit(True, [_EpochRate()])
    program = replayed.step_program
    assert program.replayed >= 3 * 7, program.explain()
    # of 12 steps an epoch, at most the recording's check, the first replay and a failed comparison (the new
    # rate, then recorded anew) compare; the other replayed steps do not
    assert 1 <= len(compared) <= 3 * 3, len(compared)
    _same(eager, replayed, h0, h1)


@pytest.mark.parametrize("hook", ["on_train_batch_begin", "on_train_batch_end"])
def test_a_rate_a_batch_hook_changes_is_still_seen_by_the_next_step(hook: str) -> None:
    def change(self: Any, batch: int, logs: Any = None) -> None:
        if batch in (6, 9):
            self.model.optimizer.learning_rate = 0.05 / (batch - 4)

    callback = type("Change", (xpnet.callbacks.Callback,), {hook: change})
    eager, h0 = _fit(False, [callback()])
    replayed, h1 = _fit(True, [callback()])
    assert replayed.step_program.replayed >= 3 * 3, replayed.step_program.explain()
    _same(eager, replayed, h0, h1)


def test_a_steady_epoch_leaves_the_program_comparing_again_after_it() -> None:
    model, _ = _fit(True, [], epochs=1)
    program = model.step_program
    assert not program.steady and not program._settled
    model.optimizer.learning_rate = 0.5
    replayed = program._replay
    assert replayed is not None and not replayed.current()


def test_a_full_batch_is_gathered_into_the_buffers_themselves_and_a_short_one_into_their_first_rows() -> None:
    ops = NumpyOps()
    rng = np.random.default_rng(0)
    x, y = rng.random((10, 3), dtype=np.float32), rng.integers(0, 4, 10)
    batches = data.Batches(ops, x, y, 4, distributed.Communicator(), "float32", "int64", True)
    batches.shuffle(7, 0, True)
    order = np.asarray(batches.order)
    xb, yb, wb = batches.gather(0, 4)
    assert xb is batches.xbuf and yb is batches.ybuf and wb is None
    np.testing.assert_array_equal(xb, x[order[:4]])
    np.testing.assert_array_equal(yb, y[order[:4]])
    xb, yb, _ = batches.gather(8, 10)
    assert xb.shape == (2, 3) and np.shares_memory(xb, batches.xbuf) and np.shares_memory(yb, batches.ybuf)
    np.testing.assert_array_equal(xb, x[order[8:10]])
    np.testing.assert_array_equal(yb, y[order[8:10]])


def test_numpys_gather_of_rows_is_the_plain_take() -> None:
    rng = np.random.default_rng(1)
    sources = [rng.random((50, 6), dtype=np.float32), rng.integers(0, 9, 50)]
    idx = rng.permutation(50)[:16]
    fast = [np.empty((16, 6), np.float32), np.empty(16, sources[1].dtype)]
    plain = [np.empty_like(a) for a in fast]
    NumpyOps().take_rows_into(sources, idx, fast)
    Ops.take_rows_into(NumpyOps(), sources, idx, plain)
    for a, b in zip(fast, plain, strict=True):
        assert replay.same_bits(a, b)


@pytest.mark.parametrize(
    ("f", "args", "kwargs"),
    [
        (np.sum, (), {}),
        (np.sum, (1,), {}),
        (np.sum, (), {"axis": 0}),
        (np.sum, (), {"axis": 1, "dtype": np.float64}),
        (np.argmax, (1,), {}),
        (np.argmin, (), {"axis": 0}),
    ],
)
def test_a_bound_sum_or_argmax_writes_what_numpys_function_returns(f: Any, args: tuple[Any, ...], kwargs: Any) -> None:
    x = np.random.default_rng(2).standard_normal((32, 10)).astype(np.float32)
    expected = f(x, *args, **kwargs)
    result = np.zeros_like(np.asarray(expected))
    bound = fused_cpu.bind_xp(f, (x, *args), dict(kwargs), result)
    assert bound is not None
    bound()
    assert replay.same_bits(result, expected)
    assert getattr(bound, "func", None) is not f  # NumPy's own reduction, not its Python wrapper
