"""Keras's custom layers, losses, activations and add_loss, written as forward code with `xpnet.ops`
(the keras-io guide patterns, rewritten): each trains with fit, and in float64 its gradients equal
those of the equivalent built-in model to 1e-10."""

from __future__ import annotations

import inspect
import itertools
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
    # one SGD step in fit (whose loss gradient carries the learning rate) moves the weights by −η·gradient
    start = model.get_weights()
    _, g16 = model.compute_gradients(x[:16], y[:16])
    model.fit(x[:16], y[:16], batch_size=16, epochs=1, shuffle=False, verbose=0)
    for w, w_then, g in zip(model.get_weights(), start, g16, strict=True):
        np.testing.assert_allclose(w, w_then - 0.01 * g, rtol=0, atol=TOL)
    before = model.evaluate(x, y, verbose=0)
    w0, b0, w1, b1 = model.get_weights()
    h = x @ w0 + b0
    assert abs(before - (np.mean((h @ w1 + b1 - y) ** 2) + rate * np.mean(h**2))) <= 1e-9  # evaluate counts it too
    model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before


def test_compile_without_a_loss_minimizes_the_added_losses() -> None:
    x, _ = _data()
    model = Sequential([Input((5,)), Dense(3), ActivityRegularization(1.0)], seed=1, dtype="float64")
    model.compile(optimizer="sgd")
    first = model.fit(x, np.zeros((len(x), 3)), epochs=4, batch_size=16, verbose=0).history["loss"]
    assert first[-1] < first[0]
    with pytest.raises(ValueError, match=r"compile\(loss=None\): xpnet needs a loss"):
        Sequential([Input((5,)), Dense(3)]).compile(optimizer="sgd")


def test_standalone_layer_computes_eagerly_and_keeps_weights() -> None:
    """On the default backend (NumPy, or CuPy where "auto" picks it: the result is then its array)."""
    layer = Linear(4)
    out = layer(np.ones((2, 3), dtype=np.float32))
    assert layer.built and out.shape == (2, 4) and out.dtype == np.float32
    assert xpnet.get_backend().is_native(out)
    w, b = layer.get_weights()
    np.testing.assert_allclose(ops.convert_to_numpy(out), np.ones((2, 3)) @ w + b, rtol=1e-6, atol=1e-6)
    layer.set_weights([np.full((3, 4), 0.5), np.arange(4.0)])
    np.testing.assert_allclose(ops.convert_to_numpy(layer(np.ones((1, 3)))), [[1.5, 2.5, 3.5, 4.5]], rtol=1e-6)

    built = Linear(2)
    built.build((None, 7))
    assert [v.shape for v in built.get_weights()] == [(7, 2), (2,)]
    dense = Dense(3)
    dense.build((None, 5))
    assert [v.shape for v in dense.get_weights()] == [(5, 3), (3,)]
    expected = np.ones((1, 5)) @ dense.get_weights()[0]
    np.testing.assert_allclose(ops.convert_to_numpy(dense(np.ones((1, 5)))), expected, rtol=1e-6, atol=1e-6)

    # placed in a model, a built layer keeps its weights (Keras's behaviour)
    dense.set_weights([np.full((5, 3), 0.25), np.ones(3)])
    with pytest.raises(ValueError, match=r"was built for input \(None, 7\) and cannot take input of shape \(None, 5\)"):
        Sequential([Input((5,)), built])
    other = Sequential([Input((5,)), dense], dtype="float64")
    np.testing.assert_array_equal(other.get_weights()[0], np.full((5, 3), 0.25))
    np.testing.assert_array_equal(other.get_weights()[1], np.ones(3))


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


class TwoDense(xpnet.Model):
    """The guide's subclassed model: layers made in __init__, wired in call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense1 = Dense(8, activation="relu")
        self.dropout = xpnet.layers.Dropout(0.5)
        self.dense2 = Dense(3, activation="softmax")

    def call(self, inputs: Any, training: Any = None) -> Any:
        x = self.dense1(inputs)
        x = self.dropout(x, training=training)
        return self.dense2(x)


def test_subclassed_model_traces_into_the_graph_sequential_builds() -> None:
    rng = np.random.default_rng(5)
    x, labels = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    sub = TwoDense(seed=9, dtype="float64")
    assert sub.name == "two_dense" and not sub.built
    sub.build((None, 6))
    ref = Sequential(
        [Input((6,)), Dense(8, "relu"), xpnet.layers.Dropout(0.5), Dense(3, "softmax")], seed=9, dtype="float64"
    )
    assert [type(layer).__name__ for layer in sub.layers] == ["Dense", "Dropout", "Dense"]
    for m in (sub, ref):
        m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    np.testing.assert_array_equal(sub.get_weights()[0], ref.get_weights()[0])  # same seed, same draws
    (la, ga), (lb, gb) = sub.compute_gradients(x, labels), ref.compute_gradients(x, labels)
    assert abs(la - lb) <= TOL
    for a, b in zip(ga, gb, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    ha = sub.fit(x, labels, batch_size=8, epochs=3, verbose=0).history["loss"]
    hb = ref.fit(x, labels, batch_size=8, epochs=3, verbose=0).history["loss"]
    np.testing.assert_allclose(ha, hb, rtol=0, atol=TOL)
    assert ha[-1] < ha[0]


def test_subclassed_model_saves_as_its_traced_graph(tmp_path: Any) -> None:
    rng = np.random.default_rng(5)
    x, labels = rng.normal(size=(16, 6)), rng.integers(0, 3, 16)
    model = TwoDense(seed=9)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, labels, epochs=1, verbose=0)
    model.save(tmp_path / "sub.keras")
    back = xpnet.models.load_model(tmp_path / "sub.keras")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(back.predict(x, verbose=0)), ops.convert_to_numpy(model.predict(x, verbose=0))
    )


def test_float32_stays_float32_through_the_tape() -> None:
    x, y = _data()
    model = Sequential([Input((5,)), Linear(4), ActivityRegularization(), Dense(3, activation=my_swish), Dense(2)])
    model.compile("sgd", custom_mse)
    model.fit(x, y, epochs=1, verbose=0)
    lin = model.layers[0]
    assert lin.weights[0].dtype == "float32" and str(model.store.grads.dtype) == "float32"
    xb = model.ops.asarray(x[:4].astype(np.float32))
    lin.forward(xb, training=True)
    dx = lin.backward(model.ops.xp.ones((4, 4), dtype=np.float32), True)
    assert str(dx.dtype) == "float32"
    assert str(xpnet.losses.get(custom_mse).grad(model.ops.xp, xb[:, :2], xb[:, 2:4]).dtype) == "float32"


def test_subclassed_model_builds_on_fit_and_takes_ops_between_layers(tmp_path: Any) -> None:
    class Residual(xpnet.Model):
        def __init__(self) -> None:
            super().__init__(seed=2, dtype="float64")
            self.a = Dense(4)
            self.b = Dense(1)

        def call(self, inputs: Any) -> Any:
            h = self.a(inputs)
            return self.b(ops.tanh(h) + h)

    x, y = _data(outputs=1)
    model = Residual()
    model.compile("sgd", "mse")
    hist = model.fit(x, y, epochs=3, batch_size=16, verbose=0).history["loss"]
    assert model.built and hist[-1] < hist[0]
    assert model.check_gradients(x[:6], y[:6]).passed
    w0, b0, w1, b1 = model.get_weights()
    h = x @ w0 + b0
    np.testing.assert_allclose(model.predict(x, verbose=0), (np.tanh(h) + h) @ w1 + b1, rtol=1e-12)
    with pytest.raises(ValueError, match="no saved form"):
        model.save(tmp_path / "r.keras")


def test_subclassed_model_without_an_input_shape_says_how_to_give_one() -> None:
    with pytest.raises(ValueError, match=r"model.build\(\(None, n_features\)\) or fit it first"):
        TwoDense().build()
    with pytest.raises(TypeError, match="needs both its inputs and its outputs"):
        xpnet.Model(Input((2,)))


class OpsDense(Layer):
    """Dense written with ops: the course's model A built from it must train as the built-in one."""

    def __init__(self, units: int, activation: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units, self.activation_name = units, activation

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, x: Any) -> Any:
        u = ops.matmul(x, self.kernel) + self.bias
        if self.activation_name == "relu":
            return ops.relu(u)
        if self.activation_name == "softmax":
            return ops.softmax(u)
        return u


def test_model_a_with_an_ops_dense_trains_as_the_builtin_dense() -> None:
    rng = np.random.default_rng(11)
    x = rng.uniform(0, 1, size=(96, 784))
    labels = rng.integers(0, 10, 96)

    def model_a(dense: Any) -> Any:
        return Sequential(
            [
                Input((784,)),
                dense(300, activation="relu"),
                dense(100, activation="relu"),
                dense(10, activation="softmax"),
            ],
            seed=7,
            dtype="float64",
        )

    custom, builtin = model_a(OpsDense), model_a(Dense)
    np.testing.assert_array_equal(custom.get_weights()[0], builtin.get_weights()[0])
    for m in (custom, builtin):
        m.compile(xpnet.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    ha = custom.fit(x, labels, batch_size=32, epochs=2, verbose=0).history
    hb = builtin.fit(x, labels, batch_size=32, epochs=2, verbose=0).history
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=0, atol=TOL)
    assert ha["accuracy"] == hb["accuracy"]
    for a, b in zip(custom.get_weights(), builtin.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


def _describe(a: Any) -> Any:
    if isinstance(a, type):
        return a.__name__
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return ("array", tuple(a.shape), str(a.dtype))
    if isinstance(a, (tuple, list)):
        return tuple(_describe(v) for v in a)
    if isinstance(a, (bool, int, float, str, type(None))):
        return a
    return type(a).__name__


class _Logged:
    """A callable of the array module that logs each call (name, argument shapes and numbers)."""

    def __init__(self, name: str, fn: Any, log: list[Any]) -> None:
        self._name, self._fn, self._log = name, fn, log

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._log.append(("xp." + self._name, _describe(args), _describe(sorted(kwargs.items()))))
        return self._fn(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)


class _LoggedNumpy:
    def __init__(self, log: list[Any]) -> None:
        self._log = log

    def __getattr__(self, name: str) -> Any:
        attr = getattr(np, name)
        if callable(attr) and not isinstance(attr, type):
            return _Logged(name, attr, self._log)
        return attr


def _custom_model() -> Any:
    model = Sequential(
        [Input((784,)), Linear(16), ActivityRegularization(0.01), Dense(8, activation=my_swish), MLPBlock()], seed=2
    )
    model.compile("adam", custom_mse)
    return model


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])  # sgd: weight gradients go to the in-place sink
def test_a_step_with_custom_layers_and_loss_makes_the_same_calls_every_time_without_host_reads(optimizer: str) -> None:
    """As tests/test_architecture.py's capture test: every Ops call and array-module call of a full step
    (the tape's included) repeats with the same shapes and numbers, and nothing is read back to the host."""
    from xpnet.backend.numpy_ops import NumpyOps

    log: list[Any] = []

    class Recording(NumpyOps):
        def __init__(self) -> None:
            super().__init__()
            self.xp = _LoggedNumpy(log)

        def __getattribute__(self, name: str) -> Any:
            attr = super().__getattribute__(name)
            if name.startswith("_") or not inspect.ismethod(attr) or name in ("activate", "describe"):
                return attr

            def call(*args: Any, **kwargs: Any) -> Any:
                log.append((name, _describe(args), _describe(sorted(kwargs.items()))))
                return attr(*args, **kwargs)

            return call

    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(200, 784)), rng.normal(size=(200, 2))
    model = _custom_model()
    model.compile(optimizer, custom_mse, backend=Recording())
    marks: list[int] = []

    class Mark(xpnet.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            marks.append(len(log))

    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Mark()])
    steps = [log[a:b] for a, b in itertools.pairwise(marks)]
    full = [s for i, s in enumerate(steps) if (i + 1) % 7 not in (0, 6)]  # not the short 7th batch nor its neighbour
    assert len(full) >= 6 and all(len(s) > 30 for s in full)
    assert any(c[0] == "xp.matmul" for c in full[0])  # the tape's calls are in the log
    assert not [c for c in full[0] if c[0] == "to_numpy"]
    for s in full[1:]:
        assert s == full[0]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_step_with_custom_layers_and_loss_has_no_sync_on_the_stand_in(optimizer: str) -> None:
    """On gpusim (run the suite with -p gpusim.pytest_plugin): the same launches every step, no sync, no upload."""
    gpusim = pytest.importorskip("gpusim")
    from xpnet.backend import _cupy_problem

    if _cupy_problem(0):
        pytest.skip("cupy is not the stand-in here (run with -p gpusim.pytest_plugin)")
    from gpusim import device

    class Marker(xpnet.Callback):
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            device.record("mark", f"begin {batch}")

    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(160, 784)).astype(np.float32), rng.normal(size=(160, 2)).astype(np.float32)
    model = _custom_model()
    model.compile(optimizer, custom_mse, backend="cupy")
    with gpusim.counting() as c:
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[Marker()])
    cuts = [i for i, e in enumerate(c.events) if e[0] == "mark"]
    steps = [c.events[a + 1 : b] for a, b in itertools.pairwise(cuts)]
    assert len(steps) >= 3
    for s in steps[2:]:
        assert [e for e in s if e[0] in ("sync", "upload")] == []
        assert s == steps[1]


class DropoutBlock(Layer):
    """A custom layer holding Dense and Dropout sublayers (the guides' transformer-block shape)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = Dense(6, activation="relu")
        self.dropout = xpnet.layers.Dropout(0.5)

    def call(self, inputs: Any, training: Any = None) -> Any:
        return self.dropout(self.dense(inputs), training=training)


def test_dropout_inside_a_custom_layer_gets_a_seed_and_trains() -> None:
    """A Dropout sublayer is seeded by the model as a top-level one is (it raised "has no seed yet"), its masks
    follow the model's seed, and its gradient is checked: the sequential twin with the same seed and draws."""
    x, y = _data()
    custom = Sequential([Input((5,)), DropoutBlock(), Dense(2)], seed=3, dtype="float64")
    again = Sequential([Input((5,)), DropoutBlock(), Dense(2)], seed=3, dtype="float64")
    for m in (custom, again):
        m.compile("sgd", "mse")
    ha = custom.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
    hb = again.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
    assert ha == hb and np.isfinite(ha).all()
    drop = custom.layers[0].dropout
    assert drop.seed is not None and drop.seed != again.layers[0].dropout.seed + 1
    np.testing.assert_array_equal(custom.predict(x, verbose=0), custom.predict(x, verbose=0))  # off at inference


def leaky(x: Any) -> Any:
    return ops.where(x > 0, x, 0.1 * x)


def test_an_activation_with_a_comparison_trains() -> None:
    """ops.where(x > 0, ...) inside a custom activation: the comparison on a recorded tensor used to raise."""
    x, y = _data()
    model = Sequential([Input((5,)), Dense(4, activation=leaky), Dense(2)], seed=1, dtype="float64")
    model.compile("sgd", "mse")
    hist = model.fit(x, y, epochs=3, batch_size=16, verbose=0).history["loss"]
    assert hist[-1] < hist[0]
    assert model.check_gradients(x[:8], y[:8]).passed


def test_a_custom_loss_reads_integer_labels_as_given() -> None:
    """Keras hands a loss function y_true as the user gave it: a sparse loss written with ops gets (n,) labels
    for a (n, 3) output (it was refused: "targets of shape (64,) do not match the model output")."""

    def my_sparse_ce(y_true: Any, y_pred: Any) -> Any:
        hot = ops.one_hot(ops.cast(y_true, "int32"), 3)
        return -ops.sum(hot * ops.log(y_pred), axis=-1)

    class MySparseCE(xpnet.losses.Loss):
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return my_sparse_ce(y_true, y_pred)

    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(48, 5)), rng.integers(0, 3, 48)
    for loss in (my_sparse_ce, MySparseCE()):
        custom = Sequential([Input((5,)), Dense(3, activation="softmax")], seed=1, dtype="float64")
        builtin = Sequential([Input((5,)), Dense(3, activation="softmax")], seed=1, dtype="float64")
        custom.compile("sgd", loss)
        builtin.compile("sgd", "sparse_categorical_crossentropy")
        (la, ga), (lb, gb) = custom.compute_gradients(x, labels), builtin.compute_gradients(x, labels)
        assert abs(la - lb) <= TOL
        for a, b in zip(ga, gb, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
        ha = custom.fit(x, labels, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
        hb = builtin.fit(x, labels, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
        np.testing.assert_allclose(ha, hb, rtol=0, atol=TOL)


class TiedDecoder(Layer):
    """x → h = x·W (a built-in Dense sublayer) → h·Wᵀ, W read again as a weight: a tied autoencoder."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encode = Dense(3, use_bias=False)

    def build(self, input_shape: Any) -> None:
        self.encode.build(input_shape)

    def call(self, inputs: Any) -> Any:
        return ops.matmul(self.encode(inputs), ops.transpose(self.encode.weights[0]))


def test_a_weight_used_by_a_builtin_sublayer_and_by_ops_gets_both_gradients() -> None:
    """The sublayer's backward wrote its share of ∂L/∂W and the op's share then overwrote it (0.9 off)."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(16, 5)), rng.normal(size=(16, 5))
    model = Sequential([Input((5,)), TiedDecoder()], seed=1, dtype="float64")
    model.compile("sgd", "mse")
    _, (g,) = model.compute_gradients(x, y)
    (w,) = model.get_weights()
    r = 2 * (x @ w @ w.T - y) / y.size
    np.testing.assert_allclose(g, x.T @ (r @ w) + r.T @ (x @ w), rtol=0, atol=TOL)


def test_a_call_with_arguments_nothing_passes_on_is_refused() -> None:
    """Keras's layer(x, mask=m) reaches call's mask; xpnet passes only inputs and training, and dropped the rest
    silently."""
    x = Input((4,))
    with pytest.raises(TypeError, match=r"\['mask'\]"):
        Dense(2)(x, mask=None)
    with pytest.raises(TypeError, match=r"\['mask'\]"):
        Linear(2)(np.ones((1, 4)), mask=None)


class _ActivityPenalty(Layer):
    """Passes x through and adds mean(x²) as a loss (Keras's activity-regularization pattern)."""

    def call(self, x: Any) -> Any:
        self.add_loss(ops.mean(ops.square(x)))
        return x


def test_a_layer_called_twice_adds_its_loss_once_per_call() -> None:
    """A shared layer's add_loss counted only its last call in the reported loss (evaluate 0.944, expected 1.723)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)), np.zeros((16, 3))
    i = xpnet.Input((3,))
    penalty, dense = _ActivityPenalty(), Dense(3)
    model = xpnet.Model(i, penalty(dense(penalty(i))), seed=1, dtype="float64")
    model.compile("sgd", "mse")
    w, b = model.get_weights()
    h = x @ w + b
    expected = np.mean(h**2) + np.mean(x**2) + np.mean(h**2)  # mse of h against 0, then both penalties
    assert abs(model.evaluate(x, y, verbose=0) - expected) <= TOL
    loss, (gw, gb) = model.compute_gradients(x, y)
    assert abs(loss - expected) <= TOL
    # d/dh of mean(h²) twice: 2 · 2h / h.size, through h = xW + b (the input's own penalty has no weights)
    dh = 2 * 2 * h / h.size
    np.testing.assert_allclose(gw, x.T @ dh, rtol=0, atol=TOL)
    np.testing.assert_allclose(gb, dh.sum(0), rtol=0, atol=TOL)
