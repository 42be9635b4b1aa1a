"""Keras's lower-case merge functions (`layers.add([a, b])` …) and the Maximum / Minimum merges:
what they build, the values they compute, their gradients (finite differences), save/load, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import Model
from xpnet.layers import (
    Add,
    Average,
    Concatenate,
    Dense,
    Input,
    Maximum,
    Minimum,
    Multiply,
    add,
    average,
    concatenate,
    maximum,
    minimum,
    multiply,
    subtract,
)
from xpnet.layers.node import KerasTensor

FUNCTIONS = [
    (add, Add, lambda xs: xs[0] + xs[1] + xs[2]),
    (multiply, Multiply, lambda xs: xs[0] * xs[1] * xs[2]),
    (average, Average, lambda xs: (xs[0] + xs[1] + xs[2]) / 3),
    (maximum, Maximum, lambda xs: np.maximum(np.maximum(xs[0], xs[1]), xs[2])),
    (minimum, Minimum, lambda xs: np.minimum(np.minimum(xs[0], xs[1]), xs[2])),
    (concatenate, Concatenate, lambda xs: np.concatenate(xs, axis=1)),
]


def three_branches() -> tuple[list[KerasTensor], list[KerasTensor]]:
    inputs = [Input((4,), name=f"in{i}") for i in range(3)]
    return inputs, [xpnet.layers.Rescaling(1.0, name=f"same{i}")(t) for i, t in enumerate(inputs)]


@pytest.mark.parametrize(("fn", "cls", "reference"), FUNCTIONS, ids=lambda v: getattr(v, "__name__", ""))
def test_lower_case_merge_builds_the_layer_and_computes_its_value(fn: object, cls: type, reference: object) -> None:
    inputs, branches = three_branches()
    out = fn(branches, name="joined")  # type: ignore[operator]
    assert isinstance(out, KerasTensor)
    model = Model(inputs, out)
    merge = model.get_layer("joined")
    assert type(merge) is cls
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(3)]
    np.testing.assert_allclose(model.predict(xs, verbose=0), reference(xs), rtol=1e-6)  # type: ignore[operator]


def test_subtract_and_concatenate_axis() -> None:
    a, b = Input((2, 3), name="a"), Input((2, 3), name="b")
    diff = subtract([xpnet.layers.Rescaling(1.0)(a), b])
    joined = concatenate([xpnet.layers.Rescaling(1.0)(a), b], axis=1)
    model = Model([a, b], [diff, joined])
    assert model.get_layer(joined.node.layer.name).axis == 1  # type: ignore[union-attr]
    rng = np.random.default_rng(1)
    xa, xb = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3))
    got_diff, got_joined = model.predict([xa, xb], verbose=0)
    np.testing.assert_allclose(got_diff, xa - xb, rtol=1e-6)
    assert got_joined.shape == (4, 4, 3)
    np.testing.assert_allclose(got_joined, np.concatenate([xa, xb], axis=1), rtol=1e-6)


@pytest.mark.parametrize("cls", [Maximum, Minimum])
def test_maximum_minimum_gradients_match_finite_differences(cls: type, backend: str) -> None:
    x = Input((3,))
    a, b, c = Dense(5, "tanh")(x), Dense(5)(x), Dense(5, "sigmoid")(x)
    with xpnet.use_backend(backend):
        model = Model(x, Dense(2)(cls()([a, b, c])), seed=3)
    model.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    result = model.check_gradients(rng.standard_normal((6, 3)), rng.standard_normal((6, 2)))
    assert result.passed, str(result)


def test_maximum_sends_a_tie_to_the_first_input_as_keras_pairwise_maximum_does() -> None:
    layer = Maximum()
    layer.build([(2,), (2,), (2,)])
    layer.ops = xpnet.get_backend("numpy")
    xs = [np.array([[1.0, 4.0]]), np.array([[3.0, 4.0]]), np.array([[3.0, 2.0]])]
    assert layer.forward(xs, training=True).tolist() == [[3.0, 4.0]]
    grads = layer.backward(np.array([[10.0, 20.0]]))
    assert [g.tolist() for g in grads] == [[[0.0, 20.0]], [[10.0, 0.0]], [[0.0, 0.0]]]
    low = Minimum()
    low.build([(2,), (2,)])
    low.ops = layer.ops
    assert low.forward(xs[:2], training=True).tolist() == [[1.0, 4.0]]
    assert [g.tolist() for g in low.backward(np.array([[1.0, 1.0]]))] == [[[1.0, 1.0]], [[0.0, 0.0]]]


def test_functional_model_with_lower_case_merges_saves_and_loads(tmp_path: Path) -> None:
    x = Input((6,), name="x")
    h1, h2 = Dense(4, "relu", name="h1")(x), Dense(4, "tanh", name="h2")(x)
    out = Dense(2, name="out")(concatenate([maximum([h1, h2]), minimum([h1, h2]), average([h1, h2])]))
    model = Model(x, out, seed=4)
    model.compile("adam", "mse")
    data = np.random.default_rng(2).standard_normal((8, 6)).astype(np.float32)
    model.save(tmp_path / "merges.keras")
    again = xpnet.models.load_model(tmp_path / "merges.keras")
    assert [type(layer).__name__ for layer in again.layers if type(layer).__name__ in ("Maximum", "Minimum")] == [
        "Maximum",
        "Minimum",
    ]
    np.testing.assert_array_equal(again.predict(data, verbose=0), model.predict(data, verbose=0))


def test_lower_case_merges_refuse_what_their_classes_refuse() -> None:
    a, b = Dense(3)(Input((2,))), Dense(5)(Input((2,)))
    with pytest.raises(ValueError, match=r"Add 'bad' cannot be called on .* \(None, 3\), .* \(None, 5\)"):
        add([a, b], name="bad")
    with pytest.raises(ValueError, match="Subtract merges 2 tensors, received 3"):
        subtract([a, a, a])
    with pytest.raises(ValueError, match="Maximum merges at least 2 tensors, received 1"):
        maximum([a])
    with pytest.raises(TypeError, match="takes a list of tensors"):
        multiply(a)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword argument 'axis'"):
        add([a, a], axis=1)
