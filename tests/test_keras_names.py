"""Names a course's Keras code uses, with `import xpnet as keras`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import xpnet as keras


def test_datasets_and_utils_are_reachable_without_importing_them() -> None:
    code = "import xpnet as keras; print(keras.datasets.fashion_mnist.__name__, keras.utils.to_categorical([1]).shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["xpnet.datasets.fashion_mnist", "(1,", "2)"]
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        keras.nope  # noqa: B018


def test_import_xpnet_does_not_import_the_lazy_modules() -> None:
    code = "import sys, xpnet; print(sorted(m for m in sys.modules if m in ('xpnet.datasets', 'xpnet.search')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_to_categorical_as_keras() -> None:
    got = keras.utils.to_categorical([0, 2, 1, 2])
    np.testing.assert_array_equal(got, np.eye(3, dtype=np.float32)[[0, 2, 1, 2]])
    assert got.dtype == np.float32
    assert keras.utils.to_categorical(np.array([[1], [0]]), num_classes=4).shape == (2, 4)  # trailing 1 dropped
    assert keras.utils.to_categorical(np.zeros((2, 3), int), 5).shape == (2, 3, 5)
    with pytest.raises(ValueError, match="label 3 is out of range for num_classes=3"):
        keras.utils.to_categorical([3], num_classes=3)
    with pytest.raises(ValueError, match=">= 0"):
        keras.utils.to_categorical([-1, 1])
    with pytest.raises(ValueError, match="integer class labels"):
        keras.utils.to_categorical([0.5])


@pytest.mark.parametrize("cls", [keras.optimizers.SGD, keras.optimizers.RMSprop, keras.optimizers.Adam])
def test_the_lr_keyword_of_keras_2_sets_the_learning_rate(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keras.optimizers, "_warned_lr", False)
    with pytest.warns(DeprecationWarning, match="use `learning_rate`"):
        opt = cls(lr=0.05)
    cls(lr=0.01)  # said once
    assert opt.learning_rate == 0.05 and "lr" not in opt.get_config()


def test_new_activations_give_keras_values() -> None:
    """Reference values from the definitions Keras documents, computed here in float64."""
    from xpnet import activations

    u = np.array([-30.0, -2.0, -1e-20, 0.0, 0.5, 3.0, 40.0])
    sig = 1.0 / (1.0 + np.exp(-u))
    a, scale = 1.6732632423543772, 1.0507009873554805
    want = {
        "selu": scale * np.where(u > 0, u, a * np.expm1(np.minimum(u, 0))),
        "softplus": np.log1p(np.exp(-np.abs(u))) + np.maximum(u, 0),
        "softsign": u / (1 + np.abs(u)),
        "swish": u * sig,
        "silu": u * sig,
        "leaky_relu": np.where(u > 0, u, 0.2 * u),
        "elu": np.where(u > 0, u, np.expm1(np.minimum(u, 0))),
    }
    for name, ref in want.items():
        np.testing.assert_allclose(activations.get(name).forward(np, u), ref, rtol=1e-14, atol=1e-300, err_msg=name)
    assert activations.get("elu").forward(np, np.array([-1e-20]))[0] == -1e-20  # expm1, not exp − 1
    assert activations.get("softplus").forward(np, np.array([1000.0]))[0] == 1000.0  # no overflow


def test_activation_and_regularizer_functions_as_keras_spells_them() -> None:
    x = np.array([-1.0, 0.5])
    np.testing.assert_array_equal(keras.activations.relu(x), [0.0, 0.5])
    np.testing.assert_allclose(keras.activations.softmax(np.array([[0.0, 0.0]])), [[0.5, 0.5]])
    layer = keras.Dense(2, activation=keras.activations.tanh, kernel_regularizer=keras.regularizers.l2(0.01))
    assert layer.activation.name == "tanh" and layer.kernel_regularizer is not None
    assert keras.regularizers.l1_l2(0.1, 0.2).l2 == 0.2


def test_on_batch_methods_as_keras() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.random((16, 4)).astype(np.float32), rng.integers(0, 3, 16)

    def model() -> keras.Sequential:
        m = keras.Sequential([keras.Dense(5, "relu", input_shape=(4,)), keras.Dense(3, "softmax")], seed=2)
        m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
        return m

    a, b = model(), model()
    before = a.test_on_batch(x, y, return_dict=True)
    got = a.train_on_batch(x, y, return_dict=True)
    assert got["loss"] == pytest.approx(before["loss"], rel=1e-6)  # the batch's loss before the update
    b.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
    assert a.optimizer.iterations == 1
    np.testing.assert_array_equal(a.predict_on_batch(x), a.predict(x, batch_size=16))
    assert isinstance(a.train_on_batch(x, y), list) and a.optimizer.iterations == 2


def test_pop_removes_the_last_layer_and_keeps_the_rest() -> None:
    m = keras.Sequential([keras.Dense(5, "relu", input_shape=(4,)), keras.Dense(3, "softmax")], seed=2)
    w0 = m.layers[0].get_weights()
    last = m.pop()
    assert last.name == "dense_1" and len(m.layers) == 1 and m.count_params() == 25
    np.testing.assert_array_equal(m.layers[0].get_weights()[0], w0[0])
    m.add(keras.Dense(2))
    assert m.output_shape == (None, 2)


def test_leaky_relu_and_rescaling_layers() -> None:
    from xpnet.gradcheck import check_layer_gradients
    from xpnet.layers import LeakyReLU, Rescaling

    m = keras.Sequential([Rescaling(1 / 255, input_shape=(3,)), LeakyReLU()])
    np.testing.assert_allclose(m.predict(np.array([[-255.0, 0.0, 510.0]])), [[-0.3, 0.0, 2.0]], rtol=1e-6)
    assert check_layer_gradients(LeakyReLU(0.1), 5).passed
    assert check_layer_gradients(Rescaling(0.5, 1.0), (2, 3)).passed
