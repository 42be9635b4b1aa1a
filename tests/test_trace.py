"""xpnet.trace.trace: the course's 3-2-2-1 example followed number by number, forward and backward."""

from __future__ import annotations

import json

import numpy as np
import pytest

import xpnet
from xpnet import Activation, Dense, Dropout, Sequential
from xpnet.trace import trace

X = np.array([[0.7, 0.3, 0.5]])
W1, B1 = np.array([[0.1, 0.3], [0.2, 0.1], [0.4, 0.2]]), np.array([0.1, 0.1])
W2, B2 = np.array([[0.2, 0.3], [0.1, 0.2]]), np.array([0.2, 0.1])
W3, B3 = np.array([[0.1], [0.2]]), np.array([0.1])


def course_3221(backend: str = "numpy") -> Sequential:
    """The course's network (same weights as tests/test_course.py), compiled with MSE."""
    model = Sequential(
        [Dense(2, "relu", input_shape=(3,)), Dense(2, "relu"), Dense(1, "linear")], dtype="float64", seed=0
    )
    model.set_weights([W1, B1, W2, B2, W3, B3])
    model.compile("sgd", "mse", backend=backend)
    return model


def test_trace_3221_forward_gives_the_arithmetic_values(backend: str) -> None:
    t = trace(course_3221(backend), [0.7, 0.3, 0.5])  # one sample: the batch axis is added
    np.testing.assert_allclose(t.h(0), X, rtol=0)
    np.testing.assert_allclose(t.u(1), [[0.43, 0.44]], rtol=1e-12)  # 0.07+0.06+0.2+0.1, 0.21+0.03+0.1+0.1
    np.testing.assert_allclose(t.h(1), [[0.43, 0.44]], rtol=1e-12)
    # 0.2·0.43 + 0.1·0.44 + 0.2 = 0.33; 0.3·0.43 + 0.2·0.44 + 0.1 = 0.317 (the slides print 1.217)
    np.testing.assert_allclose(t.u(2), [[0.33, 0.317]], rtol=1e-12)
    # 0.1·0.33 + 0.2·0.317 + 0.1 = 0.1964 (the slides print 0.3764)
    np.testing.assert_allclose(t.output, [[0.1964]], rtol=1e-12)
    assert t.loss is None and t.layers[0].delta is None and t.layers[0].grads == {}
    np.testing.assert_array_equal(t.layer(1).weights["kernel"], W1)


def test_trace_3221_backward_matches_the_chain_rule_by_hand(backend: str) -> None:
    t = trace(course_3221(backend), [0.7, 0.3, 0.5], 1.0)
    y_hat, y = 0.1964, 1.0
    # L = (ŷ − y)² (xpnet's MSE is Keras's: the mean of squares, no ½), one sample
    assert t.loss == pytest.approx((y_hat - y) ** 2, rel=1e-12)  # 0.64577296
    dL_dyhat = 2 * (y_hat - y)  # −1.6072
    # output layer, linear: δ(3) = ∂L/∂ŷ · 1
    d3 = np.array([[dL_dyhat]])
    np.testing.assert_allclose(t.layer(3).grad_output, [[-1.6072]], rtol=1e-12)
    np.testing.assert_allclose(t.delta(3), d3, rtol=1e-12)
    # ∂L/∂W(3) = h(2)ᵀ δ(3) = (0.33, 0.317)ᵀ · −1.6072 = (−0.530376, −0.5094824); ∂L/∂b(3) = δ(3)
    np.testing.assert_allclose(t.grad(3, "kernel"), [[-0.530376], [-0.5094824]], rtol=1e-12)
    np.testing.assert_allclose(t.grad(3, "bias"), [-1.6072], rtol=1e-12)
    # hidden 2: ∂L/∂h(2) = δ(3) W(3)ᵀ = −1.6072 · (0.1, 0.2); relu'(u(2)) = (1, 1) since u(2) = (0.33, 0.317) > 0
    d2 = np.array([[-0.16072, -0.32144]])
    np.testing.assert_allclose(t.layer(2).grad_output, d2, rtol=1e-12)
    np.testing.assert_allclose(t.delta(2), d2, rtol=1e-12)
    # ∂L/∂W(2) = h(1)ᵀ δ(2): rows are the inputs h(1) = (0.43, 0.44)
    np.testing.assert_allclose(
        t.grad(2, "kernel"),
        [[0.43 * -0.16072, 0.43 * -0.32144], [0.44 * -0.16072, 0.44 * -0.32144]],
        rtol=1e-12,
    )
    np.testing.assert_allclose(t.grad(2, "bias"), [-0.16072, -0.32144], rtol=1e-12)
    # hidden 1: ∂L/∂h(1)_j = Σ_k δ(2)_k W(2)_jk:
    #   j = 1: −0.16072·0.2 − 0.32144·0.3 = −0.128576;  j = 2: −0.16072·0.1 − 0.32144·0.2 = −0.08036
    d1 = np.array([[-0.128576, -0.08036]])  # relu'(u(1)) = (1, 1): u(1) = (0.43, 0.44) > 0
    np.testing.assert_allclose(t.delta(1), d1, rtol=1e-12)
    np.testing.assert_allclose(t.grad(1, "kernel"), X.T @ d1, rtol=1e-12)  # x_i · δ(1)_j
    np.testing.assert_allclose(t.grad(1, "kernel")[0], [0.7 * -0.128576, 0.7 * -0.08036], rtol=1e-12)
    np.testing.assert_allclose(t.grad(1, "bias"), [-0.128576, -0.08036], rtol=1e-12)
    # the same numbers the model's public gradient API gives
    _, grads = course_3221(backend).compute_gradients(X, np.array([[y]]))
    for got, want in zip([g for lt in t.layers for g in lt.grads.values()], grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_trace_prints_the_course_notation_with_the_numbers() -> None:
    text = str(trace(course_3221(), X, [[1.0]]))
    for expected in (
        "u(1) = h(0) W(1) + b(1)",
        "[0.43, 0.44]",
        "h(1) = relu(u(1))",
        "[0.33, 0.317]",
        "ŷ = h(3)",
        "[0.1964]",
        "L = mean over the batch of mean_squared_error",
        "0.645773",
        "δ(3) = ∂L/∂u(3)",
        "∂L/∂h(2) = δ(3) W(3)ᵀ",
        "∂L/∂W(1) = h(0)ᵀ δ(1)",
        "[-0.128576, -0.08036]",
    ):
        assert expected in text, f"{expected!r} missing from\n{text}"


def test_trace_to_dict_is_json_ready() -> None:
    d = trace(course_3221(), X, [[1.0]]).to_dict()
    back = json.loads(json.dumps(d))
    assert back["loss"] == pytest.approx(0.64577296)
    assert back["layers"][1]["preactivation"][0] == pytest.approx([0.33, 0.317])
    assert back["layers"][2]["grads"]["bias"] == pytest.approx([-1.6072])


def test_trace_leaves_the_model_as_it_was() -> None:
    model = Sequential([Dense(4, "tanh", input_shape=(3,)), Dropout(0.5, seed=1), Dense(2)], seed=0)
    model.compile("sgd", "mse", backend="numpy")
    before = model.get_weights()
    drop = model.layers[1]
    t = trace(model, np.ones((5, 3)), np.zeros((5, 2)))
    assert drop.iterations == 0  # the mask counter is restored, so the next fit draws the same masks
    assert all(name not in layer.__dict__ for layer in model.layers for name in ("forward", "backward"))
    assert "backward_preactivation" not in model.layers[0].__dict__
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # dropout was active: h(2) is h(1) with about half the entries zeroed and the rest doubled
    h1, h2 = t.h(1), t.h(2)
    kept = h2 != 0
    np.testing.assert_allclose(h2[kept], 2 * h1[kept], rtol=1e-6)
    assert 0 < kept.sum() < kept.size
    assert t.dtype == "float32" and t.u(1).dtype == np.float32


def test_trace_fused_softmax_cross_entropy_delta_is_p_minus_y_over_n(backend: str) -> None:
    rng = np.random.default_rng(0)
    model = Sequential([Dense(5, "elu", input_shape=(4,)), Dense(3, "softmax")], seed=3, dtype="float64")
    model.compile("adam", "sparse_categorical_crossentropy", backend=backend)
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    t = trace(model, x, y)
    assert t.fused and t.layer(2).grad_output is None
    p = t.output
    np.testing.assert_allclose(t.delta(2), (p - np.eye(3)[y]) / 6, rtol=1e-10, atol=1e-15)
    # δ(1) = (δ(2) W(2)ᵀ) ⊙ elu'(u(1)), elu'(u) = 1 for u > 0, h + 1 otherwise
    u1, h1 = t.u(1), t.h(1)
    expected = (t.delta(2) @ t.layer(2).weights["kernel"].T) * np.where(u1 > 0, 1.0, h1 + 1.0)
    np.testing.assert_allclose(t.delta(1), expected, rtol=1e-10)
    np.testing.assert_allclose(t.grad(1), x.T @ t.delta(1), rtol=1e-10)
    assert "fused" in str(t)


def test_trace_activation_layer_delta_and_regularized_gradient() -> None:
    rng = np.random.default_rng(1)
    model = Sequential(
        [Dense(3, input_shape=(2,), kernel_regularizer=xpnet.regularizers.L2(0.1)), Activation("tanh"), Dense(1)],
        seed=4,
        dtype="float64",
    )
    model.compile("sgd", "mse", backend="numpy")
    t = trace(model, rng.standard_normal((4, 2)), rng.standard_normal((4, 1)))
    act = t.layer(2)
    np.testing.assert_array_equal(act.preactivation, t.h(1))  # an Activation layer's u is its input
    np.testing.assert_allclose(act.delta, act.grad_output * (1 - act.output**2), rtol=1e-12)
    # the regularized kernel's gradient is h(0)ᵀ δ(1) plus the L2 term 2·0.1·W
    w1 = t.layer(1).weights["kernel"]
    np.testing.assert_allclose(t.grad(1), t.h(0).T @ t.delta(1) + 0.2 * w1, rtol=1e-12)
    assert t.layer(1).delta is not None


def test_trace_needs_a_loss_for_backward_and_training_mode() -> None:
    model = Sequential([Dense(2, input_shape=(3,))], seed=0)
    with pytest.raises(ValueError, match="compile"):
        trace(model, X, [[1.0, 2.0]])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="training"):
        trace(model, X, [[1.0, 2.0]], training=False)
    t = trace(model, X, training=False)
    np.testing.assert_allclose(t.output, model.predict(X), rtol=1e-6)
    with pytest.raises(ValueError, match="trace with y"):
        t.delta(1)


def test_trace_writes_the_transposed_convolution_as_such() -> None:
    """Conv2DTranspose is the adjoint of a convolution: its forward is h ⋆ᵀ W, its kernel gradient comes from
    the patches of δ (not of its input), and the layer below it receives δ ⋆ W (a plain convolution)."""
    model = Sequential(
        [xpnet.Input((3, 3, 1)), xpnet.layers.Conv2D(2, 2), xpnet.layers.Conv2DTranspose(2, 3, strides=2)],
        dtype="float64",
        seed=0,
    )
    model.add(xpnet.layers.Flatten())
    model.add(Dense(1))
    model.compile("sgd", "mse")
    text = str(trace(model, np.ones((1, 3, 3, 1)), [[1.0]]))
    for expected in (
        "u(1) = h(0) ⋆ W(1) + b(1)",
        "u(2) = h(1) ⋆ᵀ W(2) + b(2)",
        "∂L/∂h(1) = δ(2) ⋆ W(2)",
        "∂L/∂W(2) = Σ patches(δ(2))ᵀ h(1)",
        "∂L/∂W(1) = Σ patches(h(0))ᵀ δ(1)",
    ):
        assert expected in text, f"{expected!r} missing from\n{text}"
    assert "u(2) = h(1) ⋆ W(2)" not in text


def test_trace_of_a_merge_keeps_each_input(backend: str) -> None:
    """A merge's input is a list of tensors (of different widths for concatenate): the trace keeps one host
    array per input (it stacked them, which failed on unequal widths and on CuPy arrays)."""
    x = xpnet.Input((3,))
    a, b = xpnet.layers.Dense(3, name="a")(x), xpnet.layers.Dense(5, name="b")(x)
    joined = xpnet.layers.concatenate([a, xpnet.layers.maximum([b, xpnet.layers.Dense(5)(x)])], name="joined")
    with xpnet.use_backend(backend):
        model = xpnet.Model(x, Dense(2, "softmax")(joined), seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    t = model.trace(np.ones((2, 3)), np.array([0, 1]))
    merged = t.layer("joined")
    assert [v.shape for v in merged.input] == [(2, 3), (2, 5)]
    np.testing.assert_allclose(merged.output, np.concatenate(merged.input, axis=1))
    assert [len(v) for v in merged.to_dict()["input"]] == [2, 2]
    json.dumps(t.to_dict())
