"""The course's worked examples, reproduced number by number."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Flatten, Sequential


def course_3221() -> Sequential:
    model = Sequential(
        [Dense(2, "relu", input_shape=(3,)), Dense(2, "relu"), Dense(1, "linear")], dtype="float64", seed=0
    )
    # kernel columns are the units: hidden 1 unit 1 = (0.1, 0.2, 0.4), unit 2 = (0.3, 0.1, 0.2)
    model.set_weights(
        [
            np.array([[0.1, 0.3], [0.2, 0.1], [0.4, 0.2]]),
            np.array([0.1, 0.1]),
            np.array([[0.2, 0.3], [0.1, 0.2]]),
            np.array([0.2, 0.1]),
            np.array([[0.1], [0.2]]),
            np.array([0.1]),
        ]
    )
    return model


def test_3221_network_has_17_parameters() -> None:
    model = course_3221()
    assert [layer.count_params() for layer in model.layers] == [8, 6, 3]
    assert model.count_params() == 17


def test_3221_forward_pass_gives_the_arithmetic_values(backend: str) -> None:
    model = course_3221()
    model.to_backend(backend)
    y = model.predict(np.array([[0.7, 0.3, 0.5]]))
    trace = model.trace(np.array([0.7, 0.3, 0.5]))
    u1, u2 = trace.u(1), trace.u(2)
    np.testing.assert_allclose(trace.output, y, rtol=1e-12)
    np.testing.assert_allclose(u1, [[0.43, 0.44]], rtol=1e-12)
    # The slides print u(2) = (0.33, 1.217) and ŷ = 0.3764; the arithmetic gives
    # 0.2·0.43 + 0.3·0.44 + 0.1 = 0.317 (not 1.217), hence ŷ = 0.1·0.33 + 0.2·0.317 + 0.1 = 0.1964.
    np.testing.assert_allclose(u2, [[0.33, 0.317]], rtol=1e-12)
    np.testing.assert_allclose(y, [[0.1964]], rtol=1e-12)


def fashion_model() -> Sequential:
    return Sequential(
        [
            Flatten(input_shape=[28, 28]),
            Dense(300, activation="relu"),
            Dense(100, activation="relu"),
            Dense(10, activation="softmax"),
        ]
    )


def test_fashion_mnist_model_summary_counts_parameters() -> None:
    model = fashion_model()
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text
    # Keras 3's boxed rows: │ name (Type) │ (None, ...) │ count │
    rows = {cells[0].split()[0]: cells for line in lines if (cells := [c.strip() for c in line.split("│")[1:-1]])}
    assert rows["flatten"] == ["flatten (Flatten)", "(None, 784)", "0"]
    assert rows["dense"] == ["dense (Dense)", "(None, 300)", "235,500"]
    assert rows["dense_1"][-1] == "30,100"
    assert rows["dense_2"][-1] == "1,010"
    assert " Total params: 266,610 (1.02 MB)" in lines
    assert " Trainable params: 266,610 (1.02 MB)" in lines
    assert " Non-trainable params: 0 (0.00 B)" in lines
    assert model.count_params() == 266_610
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    lines.clear()
    model.summary(print_fn=lines.append)  # Keras counts optimizer variables only once fit built them
    assert " Total params: 266,610 (1.02 MB)" in lines and not any("Optimizer" in line for line in lines)


def test_hidden_layer_weights_have_keras_shapes() -> None:
    model = fashion_model()
    hidden1 = model.layers[1]
    assert hidden1.name == "dense"
    assert model.get_layer("dense") is hidden1
    kernel, bias = hidden1.get_weights()
    assert kernel.shape == (784, 300) and kernel.dtype == np.float32
    assert bias.shape == (300,) and np.all(bias == 0)
    limit = np.sqrt(6 / (784 + 300))  # glorot_uniform
    assert np.abs(kernel).max() <= limit and kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)


def test_xor_is_learned_by_a_small_sigmoid_mlp(backend: str) -> None:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0], dtype=np.float32)
    model = Sequential([Dense(4, "sigmoid", input_shape=(2,)), Dense(1, "sigmoid")], seed=0)
    model.compile(xpnet.optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"], backend=backend)
    hist = model.fit(x, y, batch_size=4, epochs=400, verbose=0)
    pred = model.predict(x)[:, 0]
    np.testing.assert_array_equal(pred > 0.5, [False, True, True, False])
    assert hist.history["accuracy"][-1] == 1.0
    assert hist.history["loss"][-1] < 0.1 < hist.history["loss"][0]
