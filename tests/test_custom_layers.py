"""Keras's custom layers, losses, activations and add_loss, written as forward code with `xpnet.ops`
(the keras-io guide patterns, rewritten): each trains with fit, and in float64 its gradients equal
those of the equivalent built-in model to 1e-10."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import Input, Sequential, ops
from xpnet.layers import Activation, Dense, Layer

TOL = 1e-10


class Linear(Layer):
    """y = x·w + b, the guide's first layer, with its weights made in build."""

    def __init__(self, units: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape: Any) -> None:
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="kernel")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True, name="bias")

    def call(self, inputs: Any) -> Any:
        return ops.matmul(inputs, self.w) + self.b

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


class MLPBlock(Layer):
    """Sublayers held as attributes: three Linear layers with relu between."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.linear_1 = Linear(8)
        self.linear_2 = Linear(6)
        self.linear_3 = Linear(2)

    def call(self, inputs: Any) -> Any:
        x = ops.relu(self.linear_1(inputs))
        x = ops.relu(self.linear_2(x))
        return self.linear_3(x)


class DenseBlock(Layer):
    """Built-in sublayers inside a custom layer keep their own backward."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden = Dense(8, activation="tanh")
        self.out = Dense(2)

    def call(self, inputs: Any, training: Any = None) -> Any:
        return self.out(self.hidden(inputs))


class ActivityRegularization(Layer):
    """Passes its input through and adds rate · mean(x²) to the loss."""

    def __init__(self, rate: float = 1e-2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, inputs: Any) -> Any:
        self.add_loss(self.rate * ops.mean(ops.square(inputs)))
        return inputs


def custom_mse(y_true: Any, y_pred: Any) -> Any:
    return ops.mean(ops.square(y_true - y_pred), axis=-1)


def my_swish(x: Any) -> Any:
    return x * ops.sigmoid(x)


def _data(n: int = 48, features: int = 5, outputs: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)), rng.normal(size=(n, outputs))


def _same_training(custom: Any, builtin: Any, x: np.ndarray, y: np.ndarray, loss: Any = "mse", epochs: int = 3) -> None:
    """Same weights in, same gradients, same losses and weights after fit (plain SGD, fixed order)."""
    builtin.set_weights(custom.get_weights())
    custom.compile(optimizer="sgd", loss=loss)
    builtin.compile(optimizer="sgd", loss="mse")
    (la, ga), (lb, gb) = custom.compute_gradients(x, y), builtin.compute_gradients(x, y)
    assert abs(la - lb) <= TOL
    assert len(ga) == len(gb)
    for a, b in zip(ga, gb, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    ha = custom.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0).history["loss"]
    hb = builtin.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(ha, hb, rtol=0, atol=TOL)
    assert ha[-1] < ha[0]  # it trains
    for a, b in zip(custom.get_weights(), builtin.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


def test_linear_layer_trains_as_dense() -> None:
    x, y = _data()
    custom = Sequential([Input((5,)), Linear(8), Activation("tanh"), Linear(2)], seed=1, dtype="float64")
    builtin = Sequential([Input((5,)), Dense(8), Activation("tanh"), Dense(2)], seed=2, dtype="float64")
    assert [w.shape for w in custom.get_weights()] == [(5, 8), (8,), (8, 2), (2,)]
    _same_training(custom, builtin, x, y)


def test_layer_with_custom_sublayers_trains_as_three_dense() -> None:
    x, y = _data()
    custom = Sequential([Input((5,)), MLPBlock()], seed=1, dtype="float64")
    builtin = Sequential([Input((5,)), Dense(8, "relu"), Dense(6, "relu"), Dense(2)], seed=2, dtype="float64")
    block = custom.layers[0]
    assert [w.path for w in block.weights][:2] == [f"{block.name}/linear_1/kernel", f"{block.name}/linear_1/bias"]
    assert custom.count_params() == builtin.count_params() == 5 * 8 + 8 + 8 * 6 + 6 + 6 * 2 + 2
    _same_training(custom, builtin, x, y)


def test_builtin_sublayers_inside_a_custom_layer_keep_their_backward() -> None:
    x, y = _data()
    custom = Sequential([Input((5,)), DenseBlock()], seed=1, dtype="float64")
    builtin = Sequential([Input((5,)), Dense(8, "tanh"), Dense(2)], seed=2, dtype="float64")
    _same_training(custom, builtin, x, y)


def test_custom_loss_function_trains_as_mse() -> None:
    x, y = _data()
    a = Sequential([Input((5,)), Dense(4, "relu"), Dense(2)], seed=1, dtype="float64")
    b = Sequential([Input((5,)), Dense(4, "relu"), Dense(2)], seed=2, dtype="float64")
    _same_training(a, b, x, y, loss=custom_mse)
    assert a.loss is not None and a.loss.name == "custom_mse"


def test_call_only_loss_subclass_trains_as_mse() -> None:
    class MeanSquared(xpnet.losses.Loss):
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return ops.mean(ops.square(y_pred - y_true))

    x, y = _data()
    a = Sequential([Input((5,)), Dense(3, "tanh"), Dense(2)], seed=1, dtype="float64")
    b = Sequential([Input((5,)), Dense(3, "tanh"), Dense(2)], seed=2, dtype="float64")
    _same_training(a, b, x, y, loss=MeanSquared(name="my_mse"))
    assert a.loss is not None and a.loss.name == "my_mse"


def test_custom_activation_function_trains_as_swish() -> None:
    x, y = _data()
    a = Sequential([Input((5,)), Dense(6, activation=my_swish), Dense(2)], seed=1, dtype="float64")
    b = Sequential([Input((5,)), Dense(6, activation="swish"), Dense(2)], seed=2, dtype="float64")
    _same_training(a, b, x, y)


def test_add_loss_gradient_matches_finite_differences_and_the_hand_derivation() -> None:
    x, y = _data()
    rate = 0.3
    model = Sequential([Input((5,)), Dense(4), ActivityRegularization(rate), Dense(2)], seed=1, dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    loss, grads = model.compute_gradients(x, y)
    w0, b0, w1, b1 = model.get_weights()
    h = x @ w0 + b0
    p = h @ w1 + b1
    assert abs(loss - (np.mean((p - y) ** 2) + rate * np.mean(h**2))) <= TOL
    dh = (2 * (p - y) / y.size) @ w1.T + rate * 2 * h / h.size
    np.testing.assert_allclose(grads[0], x.T @ dh, rtol=0, atol=TOL)
    np.testing.assert_allclose(grads[1], dh.sum(0), rtol=0, atol=TOL)
    assert model.check_gradients(x[:8], y[:8]).passed
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before


def test_compile_without_a_loss_minimizes_the_added_losses() -> None:
    x, _ = _data()
    model = Sequential([Input((5,)), Dense(3), ActivityRegularization(1.0)], seed=1, dtype="float64")
    model.compile(optimizer="sgd")
    first = model.fit(x, np.zeros((len(x), 3)), epochs=4, batch_size=16, verbose=0).history["loss"]
    assert first[-1] < first[0]
    with pytest.raises(ValueError, match=r"compile\(\) needs a loss"):
        Sequential([Input((5,)), Dense(3)]).compile(optimizer="sgd")


def test_standalone_layer_computes_eagerly_and_keeps_weights() -> None:
    layer = Linear(4)
    out = layer(np.ones((2, 3), dtype=np.float32))
    assert layer.built and out.shape == (2, 4) and out.dtype == np.float32
    w, b = layer.get_weights()
    np.testing.assert_allclose(out, np.ones((2, 3)) @ w + b, rtol=1e-6)
    layer.set_weights([np.full((3, 4), 0.5), np.arange(4.0)])
    np.testing.assert_allclose(layer(np.ones((1, 3))), [[1.5, 2.5, 3.5, 4.5]], rtol=1e-6)

    built = Linear(2)
    built.build((None, 7))
    assert [v.shape for v in built.get_weights()] == [(7, 2), (2,)]
    dense = Dense(3)
    dense.build((None, 5))
    assert [v.shape for v in dense.get_weights()] == [(5, 3), (3,)]
    np.testing.assert_allclose(dense(np.ones((1, 5))), np.ones((1, 5)) @ dense.get_weights()[0], rtol=1e-6)


def test_from_config_round_trips_a_custom_layer() -> None:
    layer = Linear(5, name="lin")
    config = layer.get_config()
    assert config == {"name": "lin", "units": 5}
    again = Linear.from_config(config)
    assert isinstance(again, Linear) and again.units == 5 and again.name == "lin"
    assert Dense.from_config(Dense(3, name="d").get_config()).units == 3


def test_output_shape_is_inferred_from_call_or_taken_from_compute_output_shape() -> None:
    class Pairs(Layer):
        def call(self, x: Any) -> Any:
            return ops.concatenate([x, ops.square(x)], axis=-1)

    class Declared(Pairs):
        def compute_output_shape(self, input_shape: Any) -> Any:
            return (input_shape[0], 2 * input_shape[-1])

    for cls in (Pairs, Declared):
        model = Sequential([Input((3,)), cls(), Dense(1)])
        assert model.layers[0].output_shape == (6,)
        assert model.predict(np.ones((2, 3)), verbose=0).shape == (2, 1)


def test_several_tensor_arguments_and_the_training_flag() -> None:
    seen: list[Any] = []

    class Mix(Layer):
        def call(self, a: Any, b: Any, training: Any = None) -> Any:
            seen.append(training)
            return a * b + a

    x1, x2 = Input((3,)), Input((3,))
    out = Dense(1)(Mix()(x1, x2))
    model = xpnet.Model([x1, x2], out, seed=3, dtype="float64")
    a, b = np.random.default_rng(0).normal(size=(2, 8, 3))
    model.compile("sgd", "mse")
    seen.clear()
    model.fit([a, b], np.zeros((8, 1)), epochs=1, batch_size=8, verbose=0)
    model.predict([a, b], verbose=0)
    assert seen == [True, False]
    assert model.check_gradients([a, b], np.ones((8, 1))).passed


def test_save_and_load_a_model_with_custom_pieces(tmp_path: Any) -> None:
    x, y = _data()
    model = Sequential(
        [Input((5,)), Linear(4), Dense(3, activation=my_swish), ActivityRegularization(0.1), Dense(2)], seed=4
    )
    model.compile("adam", custom_mse)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "custom.keras"
    model.save(path)
    custom = {
        "Linear": Linear,
        "my_swish": my_swish,
        "ActivityRegularization": ActivityRegularization,
        "custom_mse": custom_mse,
    }
    back = xpnet.models.load_model(path, custom_objects=custom)
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
    back.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="custom_objects"):
        xpnet.models.load_model(path)


def test_a_layer_without_call_or_forward_says_what_to_define() -> None:
    class Empty(Layer):
        pass

    with pytest.raises(NotImplementedError, match="define call"):
        Empty().forward(np.ones((1, 2)))
