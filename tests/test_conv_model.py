"""A conv model as a course user meets it: (n, 28, 28) images, the summary table, the trace's formulas."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.backend import numpy_ops
from xpnet.layers import Activation, Conv2D, Dense, Flatten, MaxPooling2D
from xpnet.training import plan as plan_mod


def _small(seed: int = 0) -> xpnet.Sequential:
    conv = Conv2D(3, (3, 3), padding="same", activation="relu", input_shape=(8, 8, 1))
    model = xpnet.Sequential([conv, MaxPooling2D(), Flatten(), Dense(4, "softmax")], seed=seed)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    return model


def test_images_without_the_channel_axis_get_it_as_in_keras() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 8, 8)).astype(np.float32), rng.integers(0, 4, 40)
    a, b = _small(), _small()
    a.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    b.fit(x[..., None], y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.predict(x), a.predict(x[..., None]))
    with pytest.raises(ValueError, match=r"expects input of shape \(None, 8, 8, 1\), received x of shape \(40, 64\)"):
        a.predict(x.reshape(40, 64))


def test_summary_columns_make_room_for_long_names() -> None:
    lines: list[str] = []
    model = _small()
    model.summary(print_fn=lines.append)
    row = next(line for line in lines if "max_pooling2d (MaxPooling2D)" in line)
    name_end = row.index("(MaxPooling2D)") + len("(MaxPooling2D)")
    assert row[name_end : name_end + 2] == "  "  # at least two spaces before the shape column
    assert "(None, 4, 4, 3)" in row and row.endswith(" 0 │")
    assert any(line.startswith(" Total params: ") for line in lines)


def test_trace_writes_the_convolution_with_its_own_formulas() -> None:
    rng = np.random.default_rng(1)
    model = _small()
    text = str(model.trace(rng.random((2, 8, 8, 1)).astype(np.float32), np.array([0, 3])))
    assert "u(1) = h(0) ⋆ W(1) + b(1)" in text
    assert "∂L/∂W(1) = Σ patches(h(0))ᵀ δ(1)" in text
    assert "u(4) = h(3) W(4) + b(4)" in text  # the Dense layer keeps the matrix form


def _relu_pool_model(seed: int, pool: dict[str, Any], side: int) -> xpnet.Sequential:
    """Both places a relu can precede max pooling: a Conv2D's own activation and an Activation layer."""
    layers = [
        Conv2D(3, (3, 3), padding="same", activation="relu", input_shape=(side, side, 2)),
        MaxPooling2D(**pool),
        Conv2D(4, (2, 2)),
        Activation("relu"),
        MaxPooling2D(**pool),
        Flatten(),
        Dense(5, "softmax"),
    ]
    model = xpnet.Sequential(layers, seed=seed)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    return model


POOLS = [{}, {"pool_size": 3, "strides": 1, "padding": "same"}, {"pool_size": (2, 3), "strides": (1, 2)}]


@pytest.mark.parametrize("side", [9, 10])  # 10: NumPy's wide 2×2 pooling over the conv's buffer
@pytest.mark.parametrize("pool", POOLS, ids=["2x2", "3x3-same-overlapping", "2x3-strided"])
def test_relu_after_max_pool_trains_and_predicts_bit_for_bit_as_written(pool: dict[str, Any], side: int) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((48, side, side, 2)).astype(np.float32), rng.integers(0, 5, 48)
    x[0, :3, :3, :] = 0.0  # windows whose maximum is exactly 0 (ties): relu' = 0 either way
    fused, plain = _relu_pool_model(0, pool, side), _relu_pool_model(0, pool, side)
    assert fused.plan.relu_pairs == (("conv2d", "max_pooling2d"), ("activation", "max_pooling2d_1"))
    h1 = fused.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    wide = isinstance(fused.layers[1]._arg, numpy_ops._WideHalves)
    assert wide == (side == 10 and not pool)  # the relu on the pooled buffer took NumPy's wide path
    with pytest.MonkeyPatch.context() as mp:  # the layers exactly as written
        mp.setattr(plan_mod, "_relu_pairs", lambda model, nodes: [])
        assert plain.plan.relu_pairs == ()
        h2 = plain.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    assert h1.history["loss"] == h2.history["loss"]
    for u, v in zip(fused.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
    by_layers = x
    for layer in plain.layers:  # a layer called on its own never sees the rewrite
        by_layers = plain.ops.to_numpy(layer.forward(plain.ops.asarray(by_layers)))
    np.testing.assert_array_equal(fused.predict(x, batch_size=48), by_layers)
    # the rewrite is the plan's forward program, never a switch left on a layer
    assert not any(hasattr(layer, "activation_deferred") or hasattr(layer, "relu_after") for layer in fused.layers)


def test_relu_after_max_pool_leaves_trace_and_subclasses_alone() -> None:
    class MyPool(MaxPooling2D):
        pass

    model = xpnet.Sequential(
        [Conv2D(2, 3, activation="relu", input_shape=(6, 6, 1)), MyPool(), Flatten(), Dense(2, "softmax")]
    )
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    assert model.plan.relu_pairs == ()
    model = _small()
    plan = model.plan
    assert len(plan.relu_pairs) == 1
    conv = model.layers[0]
    conv.forward = conv.forward  # replaced on the instance after the plan was made: not rewritten
    assert model.plan is not plan and model.plan.relu_pairs == ()
    del conv.forward
    assert model.plan.relu_pairs == plan.relu_pairs
    rng = np.random.default_rng(4)
    t = model.trace(rng.standard_normal((2, 8, 8, 1)).astype(np.float32), np.array([0, 1]))
    np.testing.assert_array_equal(t.h(1), np.maximum(t.u(1), 0.0))  # the conv layer's own h = relu(u)
    assert (t.u(1) < 0).any()


def test_relu_after_max_pool_in_a_graph_only_where_the_pool_alone_reads_the_relu() -> None:
    """In a functional model a relu output that another layer also reads must stay relu'd: no rewrite there."""
    x = xpnet.Input((8, 8, 1))
    c = Conv2D(2, 3, padding="same", activation="relu", name="c")(x)
    p = MaxPooling2D(name="p")(c)
    side = Flatten(name="side")(c)  # also reads the conv's relu output
    c2 = Conv2D(2, 3, padding="same", activation="relu", name="c2")(p)
    p2 = MaxPooling2D(name="p2")(c2)  # reads c2 alone: rewritten
    out = Dense(3, "softmax", name="out")(xpnet.layers.Concatenate()([Flatten()(p2), side]))
    model = xpnet.Model(x, out, seed=2)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    assert model.plan.relu_pairs == (("c2", "p2"),)
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((6, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 6)
    plain = xpnet.Model.from_config(model.get_config(), seed=2)
    plain.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    plain.set_weights(model.get_weights())
    model.fit(xs, ys, batch_size=3, epochs=2, verbose=0)
    with pytest.MonkeyPatch.context() as mp:  # the same training with no rewrite at all
        mp.setattr(plan_mod, "_relu_pairs", lambda model, nodes: [])
        plain.fit(xs, ys, batch_size=3, epochs=2, verbose=0)
    for a, b in zip(model.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_functional_conv_model_predicts_the_same_with_the_rewrite() -> None:
    """Model.predict runs the relu-after-pool plan too; its outputs equal those with no rewrite at all."""
    x = xpnet.Input((8, 8, 1))
    h = MaxPooling2D()(Conv2D(3, 3, padding="same", activation="relu")(x))
    model = xpnet.Model(x, Dense(4, "softmax")(Flatten()(h)), seed=5)
    assert len(model.plan.relu_pairs) == 1
    images = np.random.default_rng(1).standard_normal((7, 8, 8, 1)).astype(np.float32)
    fast = model.predict(images)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan_mod, "_relu_pairs", lambda model, nodes: [])
        mp.setattr(model, "_exec_plan", None)  # made again without the rewrite
        plain = model.predict(images)
        assert model.plan.relu_pairs == ()
    np.testing.assert_array_equal(fast, plain)


def test_relu_after_max_pool_follows_an_activation_changed_after_the_first_fit() -> None:
    """The training step keeps its plan: a conv switched from relu to tanh after fit was still trained as relu."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 16)

    def model() -> xpnet.Sequential:
        m = xpnet.Sequential(
            [Conv2D(3, 3, activation="relu", input_shape=(8, 8, 1)), MaxPooling2D(), Flatten(), Dense(3, "softmax")],
            seed=1,
        )
        m.compile("sgd", "sparse_categorical_crossentropy")
        return m

    used, fresh = model(), model()
    used.fit(x, y, batch_size=8, epochs=1, verbose=0)  # makes the training step and its plan
    used.set_weights(fresh.get_weights())
    for m in (used, fresh):
        m.layers[0].activation = xpnet.activations.get("tanh")
    a = used.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False).history["loss"]
    b = fresh.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False).history["loss"]
    assert a == b
    for wa, wb in zip(used.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
