"""A custom layer's weights take the built-in layers' gradient routes: x @ W and u + b hand their
gradients to the sink (plain SGD applied in place, as for the built-in Dense), a call ending in
ops.softmax gets the fused softmax + cross-entropy, and a sublayer's raw weight array read by ops
gets its gradient. Each is checked against the built-in model or the unfused path in float64."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_linear_regression import _script  # loads a script of scripts/ as a module

import xpnet
from xpnet import Input, Sequential, ops
from xpnet.layers import Dense, Layer
from xpnet.params import GradientSink, InPlaceSGD

TOL = 1e-10


# the benchmark's own layer: h = φ(x·W + b) with forward code only
OpsDense = _script("bench_custom_dense").OpsDense


class SoftmaxThenScale(OpsDense):  # type: ignore[misc,valid-type]
    """softmax, then one more op: the loss may not start from u."""

    def call(self, x: Any) -> Any:
        return super().call(x) * 1.0


class RawKernel(Layer):
    """Reads its Dense sublayer's raw arrays (`self.dense.kernel`, `.bias`) instead of calling it."""

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = Dense(units)

    def build(self, input_shape: Any) -> None:
        self.dense.build(input_shape)

    def call(self, x: Any) -> Any:
        return ops.tanh(ops.matmul(x, self.dense.kernel) + self.dense.bias)


class TiedKernel(RawKernel):
    """Calls its Dense sublayer and also reads its kernel raw: both shares of ∂L/∂kernel must add up."""

    def call(self, x: Any) -> Any:
        side = ops.matmul(x, self.dense.kernel)  # recorded before the sublayer's own call
        return self.dense(x) + 0.5 * ops.tanh(side)


def _data(n: int = 40, features: int = 6, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, features)), rng.integers(0, classes, n)


def _model(layer: Any, *more: Any, seed: int = 1) -> Any:
    return Sequential([Input((6,)), layer, *more], seed=seed, dtype="float64")


def _sink_of(model: Any) -> Any:
    return model.plan.make_sink(model.ops)


def _fit_weights(model: Any, x: np.ndarray, y: np.ndarray, loss: Any, optimizer: Any = "sgd") -> list[np.ndarray]:
    model.compile(optimizer=optimizer, loss=loss)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return model.get_weights()  # type: ignore[no-any-return]


def test_custom_dense_uses_in_place_sgd_and_trains_as_the_builtin_dense() -> None:
    x, y = _data()
    custom = _model(OpsDense(5, "relu"), OpsDense(3, "softmax"))
    builtin = _model(Dense(5, "relu"), Dense(3, "softmax"), seed=2)
    builtin.set_weights(custom.get_weights())
    custom.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")  # the backend with in-place SGD
    builtin.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    assert isinstance(_sink_of(custom), InPlaceSGD) and isinstance(_sink_of(builtin), InPlaceSGD)
    assert custom.fused_outputs == builtin.fused_outputs == [True]
    ha = custom.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
    hb = builtin.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(ha, hb, rtol=0, atol=TOL)
    assert ha[-1] < ha[0]
    for a, b in zip(custom.get_weights(), builtin.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    np.testing.assert_allclose(custom.predict(x, verbose=0), builtin.predict(x, verbose=0), rtol=0, atol=TOL)
    np.testing.assert_allclose(custom.evaluate(x, y, verbose=0), builtin.evaluate(x, y, verbose=0), rtol=0, atol=TOL)


def _sparse_ce(y_true: Any, y_pred: Any) -> Any:
    """The sparse cross-entropy as a custom function: never fused, so the softmax's own VJP runs."""
    hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), 3, dtype="float64")
    return -ops.sum(hot * ops.log(y_pred), axis=-1)


def test_fused_softmax_of_a_custom_layer_equals_the_unfused_tape() -> None:
    x, y = _data()
    fused = _model(OpsDense(5, "relu"), OpsDense(3, "softmax"))
    plain = _model(OpsDense(5, "relu"), OpsDense(3, "softmax"), seed=2)
    plain.set_weights(fused.get_weights())
    wa = _fit_weights(fused, x, y, "sparse_categorical_crossentropy")
    wb = _fit_weights(plain, x, y, _sparse_ce)
    assert fused.fused_outputs == [True] and plain.fused_outputs == [False]
    for a, b in zip(wa, wb, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


def test_a_call_with_an_op_after_its_softmax_is_not_fused_and_still_trains_the_same() -> None:
    x, y = _data()
    after = _model(SoftmaxThenScale(3, "softmax"))
    plain = _model(OpsDense(3, "softmax"), seed=2)
    plain.set_weights(after.get_weights())
    after.compile("sgd", "sparse_categorical_crossentropy")
    assert after.fused_outputs == [False]
    wa, wb = _fit_weights(after, x, y, "sparse_categorical_crossentropy"), _fit_weights(plain, x, y, _sparse_ce)
    for a, b in zip(wa, wb, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_sublayers_raw_weight_arrays_get_their_gradients(optimizer: str) -> None:
    x, _ = _data()
    y2 = np.random.default_rng(1).normal(size=(x.shape[0], 4))
    custom = _model(RawKernel(4))
    builtin = _model(Dense(4, "tanh"), seed=2)
    builtin.set_weights(custom.get_weights())
    custom.compile(optimizer, "mse")
    builtin.compile(optimizer, "mse")
    (la, ga), (lb, gb) = custom.compute_gradients(x, y2), builtin.compute_gradients(x, y2)
    assert abs(la - lb) <= TOL
    assert [np.abs(g).max() > 0 for g in ga] == [True, True]
    for a, b in zip(ga, gb, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    wa, wb = _fit_weights(custom, x, y2, "mse", optimizer), _fit_weights(builtin, x, y2, "mse", optimizer)
    for a, b in zip(wa, wb, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


def test_tied_sublayer_weights_with_in_place_sgd_equal_one_plain_gradient_step() -> None:
    """The sublayer's own backward and the raw read both reach ∂L/∂kernel; in-place SGD applies their sum
    once the replay is over (the raw read's VJP still sees the step's old kernel)."""
    x, _ = _data()
    y2 = np.random.default_rng(1).normal(size=(x.shape[0], 4))
    model = _model(TiedKernel(4))
    model.compile(xpnet.optimizers.SGD(0.1), "mse", backend="numpy")
    assert isinstance(_sink_of(model), InPlaceSGD)
    before = model.get_weights()
    _, grads = model.compute_gradients(x, y2)
    model.fit(x, y2, batch_size=x.shape[0], epochs=1, shuffle=False, verbose=0)
    for w0, g, w1 in zip(before, grads, model.get_weights(), strict=True):
        np.testing.assert_allclose(w1, w0 - 0.1 * g, rtol=0, atol=TOL)
    # and the gradients themselves: the plain buffer path against finite differences of the loss
    kernel = model.layers[0].dense
    w = kernel.get_weights()
    eps, (i, j) = 1e-6, (2, 1)
    losses = []
    for d in (eps, -eps):
        moved = [a.copy() for a in w]
        moved[0][i, j] += d
        kernel.set_weights(moved)
        losses.append(model.compute_gradients(x, y2)[0])
    kernel.set_weights(w)
    assert abs((losses[0] - losses[1]) / (2 * eps) - model.compute_gradients(x, y2)[1][0][i, j]) < 1e-7


def test_momentum_sgd_keeps_the_gradient_buffer_path() -> None:
    model = _model(OpsDense(3))
    model.compile(xpnet.optimizers.SGD(0.1, momentum=0.9), "mse")
    sink = _sink_of(model)
    assert type(sink) is GradientSink


class DropoutBlock(Layer):
    """Dense → Dropout → OpsDense as sublayers: the Dropout's mask counter lives inside the custom layer."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden, self.drop, self.out = Dense(5, "tanh"), xpnet.layers.Dropout(0.5), OpsDense(4)

    def call(self, x: Any, training: Any = None) -> Any:
        return self.out(self.drop(self.hidden(x), training=training))


def test_a_dropout_sublayers_mask_stays_put_under_compute_gradients_and_fit_draws_it() -> None:
    """compute_gradients leaves every Dropout counter where it was, a custom layer's sublayer's too: two
    looks give the same loss, and fit's first step draws the mask they saw (in-place SGD: w − lr·g)."""
    x, _ = _data(16)
    y2 = np.random.default_rng(1).normal(size=(x.shape[0], 4))
    model = _model(DropoutBlock())
    model.compile(xpnet.optimizers.SGD(0.1), "mse", backend="numpy")
    (la, ga), (lb, _) = model.compute_gradients(x, y2), model.compute_gradients(x, y2)
    assert la == lb
    before = model.get_weights()
    model.fit(x, y2, batch_size=x.shape[0], epochs=1, shuffle=False, verbose=0)
    assert model.layers[0].drop.iterations == 1
    for w0, g, w1 in zip(before, ga, model.get_weights(), strict=True):
        np.testing.assert_allclose(w1, w0 - 0.1 * g, rtol=0, atol=TOL)
