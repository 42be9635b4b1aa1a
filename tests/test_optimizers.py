"""One step of each optimizer against values worked out by hand, on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet import optimizers

P0 = np.array([1.0, -2.0, 0.5])
G = np.array([0.5, 0.25, -1.0])


def run_steps(ops: xpnet.backend.Ops, opt: optimizers.Optimizer, steps: int, dtype: str = "float64") -> np.ndarray:
    p = ops.asarray(P0.astype(dtype))
    g = ops.asarray(G.astype(dtype))
    opt.build(ops, p)
    for _ in range(steps):
        opt.step(p, g)
    return ops.to_numpy(p)


def test_sgd_step(ops: xpnet.backend.Ops) -> None:
    # w - lr*g = (1 - 0.05, -2 - 0.025, 0.5 + 0.1)
    np.testing.assert_allclose(run_steps(ops, optimizers.SGD(0.1), 1), [0.95, -2.025, 0.6], rtol=1e-12)


def test_sgd_momentum_two_steps(ops: xpnet.backend.Ops) -> None:
    # v1 = -0.1 g; v2 = 0.9 v1 - 0.1 g = -0.19 g; w2 = w0 - 0.29 g
    np.testing.assert_allclose(run_steps(ops, optimizers.SGD(0.1, momentum=0.9), 2), P0 - 0.29 * G, rtol=1e-12)


def test_sgd_nesterov_step(ops: xpnet.backend.Ops) -> None:
    # v1 = -0.1 g; w1 = w0 + 0.9 v1 - 0.1 g = w0 - 0.19 g
    got = run_steps(ops, optimizers.SGD(0.1, momentum=0.9, nesterov=True), 1)
    np.testing.assert_allclose(got, [0.905, -2.0475, 0.69], rtol=1e-12)


def test_rmsprop_step(ops: xpnet.backend.Ops) -> None:
    # v = 0.1 g²; w = w0 - 0.01 g / sqrt(v + 1e-7): |step| = 0.01/sqrt(0.1 + 1e-7/g²)
    expected = [w - 0.01 * g / math.sqrt(0.1 * g * g + 1e-7) for w, g in zip(P0, G, strict=True)]
    np.testing.assert_allclose(run_steps(ops, optimizers.RMSprop(0.01), 1), expected, rtol=1e-12)
    assert expected[0] == pytest.approx(1.0 - 0.0316227, abs=1e-6)


def test_rmsprop_momentum_step(ops: xpnet.backend.Ops) -> None:
    expected = [w - 0.01 * g / math.sqrt(0.1 * g * g + 1e-7) for w, g in zip(P0, G, strict=True)]
    np.testing.assert_allclose(run_steps(ops, optimizers.RMSprop(0.01, momentum=0.5), 1), expected, rtol=1e-12)


def test_adam_first_step_moves_each_weight_by_learning_rate(ops: xpnet.backend.Ops) -> None:
    # m = 0.1 g, v = 0.001 g², lr_t = 0.001·√0.001/0.1, so the step is ≈ 0.001·sign(g)
    lr_t = 0.001 * math.sqrt(0.001) / 0.1
    expected = [w - lr_t * 0.1 * g / (math.sqrt(0.001) * abs(g) + 1e-7) for w, g in zip(P0, G, strict=True)]
    got = run_steps(ops, optimizers.Adam(), 1)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(got, P0 - 0.001 * np.sign(G), atol=1e-6)


def test_adam_second_step(ops: xpnet.backend.Ops) -> None:
    m, v, w = 0.0 * G, 0.0 * G, P0.copy()
    for t in (1, 2):
        m = 0.9 * m + 0.1 * G
        v = 0.999 * v + 0.001 * G * G
        w = w - 0.01 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(run_steps(ops, optimizers.Adam(0.01), 2), w, rtol=1e-12)


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam"])
def test_float32_stays_float32_through_an_update(ops: xpnet.backend.Ops, name: str) -> None:
    opt = optimizers.get(name)
    p = ops.asarray(P0.astype(np.float32))
    opt.build(ops, p)
    opt.step(p, ops.asarray(G.astype(np.float32)))
    assert ops.to_numpy(p).dtype == np.float32
    assert all(ops.to_numpy(s).dtype == np.float32 for s in opt.slots.values())


def test_keras_defaults_and_aliases() -> None:
    assert optimizers.get("sgd").learning_rate == 0.01
    assert optimizers.get("rmsprop").learning_rate == 0.001
    adam = optimizers.get("adam")
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (0.001, 0.9, 0.999, 1e-7)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optimizers.get("adagrad-ish")
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SGD(learning_rate=-1.0)


def test_a_subclass_apply_with_the_two_argument_signature_still_trains(backend: str) -> None:
    """A user's SGD subclass that overrides `apply(store, sink)` (the signature before `counted`) is called
    as it was written: once per step, with the host's and the device's counts the number of steps."""
    calls: list[int] = []

    class LoggedSGD(optimizers.SGD):
        def apply(self, store, sink):  # type: ignore[no-untyped-def, override]
            calls.append(1)
            super().apply(store, sink)

    opt = LoggedSGD(0.1)
    model = xpnet.Sequential([xpnet.layers.Dense(8, "relu", input_shape=(4,)), xpnet.layers.Dense(3, "softmax")])
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend, jit_compile=False)
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 4), dtype=np.float32), rng.integers(0, 3, 40)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)  # 2 full batches and a short one per epoch
    model.train_on_batch(x[:16], y[:16])
    assert not model.plan.count_in_loss  # the loss kernel leaves t to the user's apply
    assert len(calls) == opt.iterations == 7
    assert float(model.ops.to_numpy(opt.device_count)) == 7.0
    # the same override on the instance (the plan then keeps the gradient buffer)
    plain = optimizers.SGD(0.1)
    plain.apply = lambda store, sink: (calls.append(2), optimizers.SGD.apply(plain, store, sink))  # type: ignore[method-assign]
    model.compile(plain, "sparse_categorical_crossentropy", backend=backend, jit_compile=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert calls.count(2) == plain.iterations == 3 and float(model.ops.to_numpy(plain.device_count)) == 3.0
