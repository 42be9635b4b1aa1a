"""The smaller Keras names a tutorial reaches for: schedules on arrays, Input's dtype and batch_shape,
loss=None and Loss(name=), model.losses as the weight penalties, set_random_seed, plot_model,
and a call()-only custom layer's error."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import schedules
from xpnet.layers.base import Layer


def test_a_schedule_takes_an_array_of_steps_to_plot() -> None:
    for sched in (
        schedules.ExponentialDecay(0.1, 10, 0.5),
        schedules.PiecewiseConstantDecay([5.0, 10.0], [0.1, 0.01, 0.001]),
        schedules.CosineDecay(0.1, 20),
    ):
        steps = np.linspace(0, 30, 7)
        rates = sched(steps)
        assert isinstance(rates, np.ndarray) and rates.shape == (7,)
        np.testing.assert_allclose(rates, [sched(float(s)) for s in steps], rtol=1e-12)
    assert isinstance(schedules.ExponentialDecay(0.1, 10, 0.5)(3), float)


def test_input_has_a_dtype_and_takes_batch_shape() -> None:
    assert xpnet.Input(shape=(3,)).dtype == "float32"
    assert xpnet.Input(shape=(3,), dtype="float64").dtype == "float64"
    assert xpnet.Input(batch_shape=(None, 3)).shape == (None, 3)
    fixed = xpnet.Input(batch_shape=(8, 3))
    assert fixed.shape == (8, 3) and fixed.feature_shape == (3,)
    model = xpnet.Model(fixed, xpnet.Dense(2)(fixed))
    assert model.predict(np.ones((5, 3), np.float32)).shape == (5, 2)
    assert xpnet.Dense(2)(xpnet.Input((3,))).dtype == "float32"
    with pytest.raises(ValueError, match="not both"):
        xpnet.Input(shape=(3,), batch_shape=(None, 3))
    with pytest.raises(ValueError, match="batch_shape must be"):
        xpnet.Input(batch_shape=(3,))
    with pytest.raises(ValueError, match="sparse tensors"):
        xpnet.Input((3,), sparse=True)


def test_loss_none_says_what_to_pass() -> None:
    model = xpnet.Sequential([xpnet.Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="'categorical_crossentropy' for one-hot rows"):
        model.compile("adam", loss=None)
    assert model.predict(np.ones((2, 3), np.float32)).shape == (2, 2)  # no compile needed


def _clf(loss: Any) -> dict[str, list[float]]:
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 3)).astype(np.float32), rng.integers(0, 2, 40)
    model = xpnet.Sequential([xpnet.Dense(2, "softmax", input_shape=(3,))], seed=0)
    model.compile("sgd", loss, backend="numpy")
    assert model.fused_loss  # a name given to the loss keeps the fused softmax + cross-entropy path
    return model.fit(x, y, epochs=2, verbose=0).history


def test_a_named_loss_keeps_its_name_and_its_math(tmp_path: Path) -> None:
    named = xpnet.losses.SparseCategoricalCrossentropy(name="xent")
    assert named.name == "xent" and "xent" in repr(named)
    assert (
        xpnet.losses.MeanSquaredError(name="m").name == "m"
        and xpnet.losses.MeanSquaredError().name == "mean_squared_error"
    )
    assert _clf(named) == _clf(xpnet.losses.SparseCategoricalCrossentropy())
    model = xpnet.Sequential([xpnet.Dense(1, input_shape=(3,))])
    model.compile("sgd", xpnet.losses.MeanSquaredError(name="my_mse"))
    model.save(tmp_path / "m.keras")
    assert xpnet.models.load_model(tmp_path / "m.keras").loss.name == "my_mse"
    with pytest.raises(ValueError, match="reduction"):
        xpnet.losses.MeanSquaredError(reduction="sum")


def test_model_losses_are_the_regularization_penalties() -> None:
    model = xpnet.Sequential(
        [
            xpnet.Dense(4, input_shape=(3,), kernel_regularizer=xpnet.regularizers.L2(0.01)),
            xpnet.Dense(2, kernel_regularizer=xpnet.regularizers.L1(0.1)),
        ]
    )
    model.compile("sgd", "mse")
    k1, _, k2, _ = model.get_weights()
    np.testing.assert_allclose(model.losses, [0.01 * np.sum(k1**2), 0.1 * np.sum(np.abs(k2))], rtol=1e-5)
    assert [type(lo).__name__ for lo in model.compiled_losses] == ["MeanSquaredError"]
    assert xpnet.Sequential([xpnet.Dense(2, input_shape=(3,))]).losses == []


def test_set_random_seed_seeds_python_numpy_and_models() -> None:
    def draw() -> tuple[float, float, list[np.ndarray]]:
        xpnet.utils.set_random_seed(42)
        model = xpnet.Sequential([xpnet.Dense(3, input_shape=(2,))])
        return random.random(), float(np.random.random()), model.get_weights()

    a, b = draw(), draw()
    assert a[:2] == b[:2]
    for u, v in zip(a[2], b[2], strict=True):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="non-negative integer"):
        xpnet.utils.set_random_seed(-1)


def test_plot_model_writes_dot_and_names_what_rendering_needs(tmp_path: Path) -> None:
    inp = xpnet.Input((4,), name="pixels")
    a = xpnet.Dense(3, "relu", name="left")(inp)
    b = xpnet.Dense(3, "relu", name="right")(inp)
    out = xpnet.Dense(2, "softmax", name="out")(xpnet.layers.Concatenate()([a, b]))
    model = xpnet.Model(inp, out)
    xpnet.utils.plot_model(model, tmp_path / "m.dot", show_shapes=True, show_layer_activations=True)
    text = (tmp_path / "m.dot").read_text()
    assert "pixels (InputLayer)" in text and "out (Dense) [softmax]|output: (None, 2)" in text
    assert text.count("->") == 5  # pixels→left, pixels→right, left→concat, right→concat, concat→out
    if importlib.util.find_spec("pydot") is None:
        with pytest.raises(ImportError, match="needs pydot and Graphviz"):
            xpnet.utils.plot_model(model, tmp_path / "m.png")
        assert not list(tmp_path.glob("*.png")) and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(ValueError, match="not built yet"):
        xpnet.utils.plot_model(xpnet.Sequential([xpnet.Dense(2)]), tmp_path / "x.dot")


def test_a_call_only_custom_layer_runs_and_a_layer_without_call_says_what_xpnet_needs() -> None:
    class Doubler(Layer):
        def call(self, x: Any) -> Any:
            return 2 * x

    model = xpnet.Sequential([xpnet.Input((3,)), Doubler()])
    np.testing.assert_array_equal(model.predict(np.ones((2, 3), np.float32)), np.full((2, 3), 2.0, np.float32))

    class Empty(Layer):
        pass

    with pytest.raises(NotImplementedError, match=r"Empty defines neither forward/backward .* nor call"):
        xpnet.Sequential([xpnet.Input((3,)), Empty()]).predict(np.ones((2, 3), np.float32))
