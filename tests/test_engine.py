"""The training engine keeps what the code it replaced did: fast paths step aside for anything changed,
counters stay in step, a failed compile changes nothing, and the sink is put back after fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Dropout, Sequential
from xpnet.gradcheck import float64_copy
from xpnet.layers import Layer
from xpnet.params import GradientSink


def _data(n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.random((n, 6)).astype(np.float32), rng.integers(0, 3, n)


def _model(*middle: Layer, optimizer: Any = "sgd") -> Sequential:
    model = Sequential([Dense(8, "relu", input_shape=(6,)), *middle, Dense(3, "softmax")], seed=4)
    model.compile(optimizer, "sparse_categorical_crossentropy", backend="numpy")
    return model


def test_predict_runs_a_dropout_subclass_that_is_active_at_inference() -> None:
    class MCDropout(Dropout):
        def forward(self, x: Any, training: bool = False) -> Any:
            return super().forward(x, True)

    x, _ = _data(400)
    plain, mc = _model(Dropout(0.5)), _model(MCDropout(0.5))
    assert not np.allclose(plain.predict(x), mc.predict(x))  # the layer is run, not skipped as an identity


def test_the_gradient_sink_is_the_buffer_again_after_fit() -> None:
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=1, verbose=0)
    assert type(model.store.sink) is GradientSink and not model.store.sink.applies_update


def test_setting_iterations_moves_adams_device_count() -> None:
    x, y = _data()
    a, b = _model(optimizer="adam"), _model(optimizer="adam")
    a.fit(x, y, epochs=2, verbose=0)
    a.optimizer.iterations = 0  # as if starting over: t restarts too
    b.set_weights(a.get_weights())
    b.fit(x, y, epochs=1, verbose=0, shuffle=False)
    a.optimizer.slots["m"][...] = 0.0
    a.optimizer.slots["v"][...] = 0.0
    a.fit(x, y, epochs=1, verbose=0, shuffle=False)
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def test_a_failed_compile_changes_nothing() -> None:
    x, y = _data()
    model = _model(optimizer="adam")
    with pytest.raises(ValueError, match="Unknown metric"):
        model.compile("sgd", "mse", metrics=["acuracy"])
    assert isinstance(model.optimizer, xpnet.optimizers.Adam) and model.loss.name == "sparse_categorical_crossentropy"
    model.fit(x, y, epochs=1, verbose=0)


def test_a_float64_copy_draws_the_next_dropout_mask_of_the_model() -> None:
    x, y = _data()
    model = _model(Dropout(0.3))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    twin = float64_copy(model)
    assert twin.layers[1].iterations == model.layers[1].iterations == 4


def test_a_custom_layer_with_an_activation_but_no_logits_contract_trains_unfused() -> None:
    class SoftmaxDense(Layer):
        def __init__(self, units: int) -> None:
            super().__init__()
            self.inner = Dense(units, "softmax")
            self.activation = self.inner.activation

        def compute_output_shape(self, input_shape: Any) -> Any:
            return self.inner.compute_output_shape(input_shape)

        def build(self, input_shape: Any) -> Any:
            self.inner.build(input_shape)
            return super().build(input_shape)

        def param_specs(self) -> list[Any]:
            return self.inner.param_specs()

        def bind(self, ops: Any, params: Any, grads: Any) -> None:
            super().bind(ops, params, grads)
            self.inner.bind(ops, params, grads)

        def forward(self, x: Any, training: bool = False) -> Any:
            self.inner.sink = self.sink
            return self.inner.forward(x, training)

        def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
            return self.inner.backward(dy, need_input_grad)

    x, y = _data()
    model = Sequential([Dense(8, "relu", input_shape=(6,)), SoftmaxDense(3)], seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    assert not model.fused_loss
    hist = model.fit(x, y, epochs=2, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()


def test_a_layer_whose_backward_is_replaced_keeps_sgd_out_of_backprop() -> None:
    model = _model()
    assert model.plan.updates_in_backprop == model.ops.runs_in_one_call("gemm_sub")
    layer = model.layers[0]
    original = layer.backward_preactivation
    layer.backward_preactivation = lambda du, need=True: original(du, need)  # type: ignore[method-assign]
    assert not model.plan.updates_in_backprop


def test_a_float64_model_takes_float32_device_arrays() -> None:
    pytest.importorskip("array_api_strict")
    ops = xpnet.get_backend("strict")
    x, y = _data()
    model = Sequential([Dense(4, "relu", input_shape=(6,)), Dense(3, "softmax")], seed=2, dtype="float64")
    model.compile("sgd", "sparse_categorical_crossentropy", backend=ops)
    hist = model.fit(ops.asarray(x), y, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
