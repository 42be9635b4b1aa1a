"""Every bad input raises an error that names what was received."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Flatten, Sequential


@pytest.fixture
def clf() -> Sequential:
    model = Sequential([Dense(8, "relu", input_shape=(4,)), Dense(3, "softmax")], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    return model


X = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
Y = np.arange(10) % 3


def test_wrong_feature_count(clf: Sequential) -> None:
    with pytest.raises(ValueError, match=r"expects input of shape \(None, 4\), received x of shape \(10, 5\)"):
        clf.fit(np.zeros((10, 5)), Y, verbose=0)
    with pytest.raises(ValueError, match=r"shape \(None, 4\)"):
        clf.predict(np.zeros((2, 3)))


def test_x_y_length_mismatch(clf: Sequential) -> None:
    with pytest.raises(ValueError, match="x has 10, y has 9"):
        clf.fit(X, Y[:9], verbose=0)


def test_labels_outside_class_range(clf: Sequential) -> None:
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*received labels from 0 to 7"):
        clf.fit(X, np.where(Y == 2, 7, Y), verbose=0)
    with pytest.raises(ValueError, match="received labels from -1"):
        clf.evaluate(X, Y - 1, verbose=0)
    with pytest.raises(ValueError, match="non-integer"):
        clf.fit(X, Y + 0.5, verbose=0)


def test_one_hot_given_to_sparse_loss(clf: Sequential) -> None:
    with pytest.raises(ValueError, match=r"looks one-hot.*categorical_crossentropy"):
        clf.fit(X, np.eye(3)[Y], verbose=0)


def test_sparse_labels_given_to_categorical_loss() -> None:
    model = Sequential([Dense(3, "softmax", input_shape=(4,))])
    model.compile("sgd", "categorical_crossentropy")
    with pytest.raises(ValueError, match=r"integer class labels.*sparse_categorical_crossentropy"):
        model.fit(X, Y, verbose=0)


def test_nan_and_inf_in_inputs(clf: Sequential) -> None:
    bad = X.copy()
    bad[3, 2] = np.nan
    bad[5, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 NaN or inf values \(first at index \(3, 2\)\)"):
        clf.fit(bad, Y, verbose=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        clf.predict(bad)


def test_non_numeric_arrays(clf: Sequential) -> None:
    with pytest.raises(TypeError, match=r"numeric.*dtype <U"):
        clf.fit(np.array([["a", "b", "c", "d"]] * 10), Y, verbose=0)
    with pytest.raises(TypeError, match="y must be numeric"):
        clf.fit(X, np.array(["cat"] * 10), verbose=0)


def test_empty_arrays(clf: Sequential) -> None:
    with pytest.raises(ValueError, match=r"x is empty \(shape \(0, 4\)\)"):
        clf.fit(np.zeros((0, 4)), np.zeros(0), verbose=0)


@pytest.mark.parametrize("bs", [0, -3])
def test_batch_size_not_positive(clf: Sequential, bs: int) -> None:
    with pytest.raises(ValueError, match=f"batch_size must be a positive integer, received {bs}"):
        clf.fit(X, Y, batch_size=bs, verbose=0)


def test_batch_size_wrong_type(clf: Sequential) -> None:
    with pytest.raises(TypeError, match="batch_size"):
        clf.predict(X, batch_size=2.5)  # type: ignore[arg-type]


def test_fit_before_compile() -> None:
    model = Sequential([Dense(2, input_shape=(4,))])
    with pytest.raises(RuntimeError, match=r"compile the model before fit\(\)"):
        model.fit(X, Y, verbose=0)


def test_device_array_handed_to_numpy_model(clf: Sequential) -> None:
    class FakeCupyArray:  # what a cupy.ndarray looks like to a type check
        device = "cuda:0"
        shape = (10, 4)

    FakeCupyArray.__module__ = "cupy._core.core"
    FakeCupyArray.__name__ = "ndarray"
    with pytest.raises(TypeError, match=r"cupy\.ndarray.*'numpy' backend.*x\.get\(\)"):
        clf.fit(FakeCupyArray(), Y, verbose=0)


def test_strict_device_array_handed_to_numpy_model(clf: Sequential) -> None:
    xps = pytest.importorskip("array_api_strict")
    x = xps.asarray(X, device=xps.Device("device1"))
    with pytest.raises(TypeError, match=r"array_api_strict.*'numpy' backend"):
        clf.predict(x)


def test_training_through_a_step_function_is_refused() -> None:
    model = Sequential([Dense(2, "heaviside", input_shape=(4,)), Dense(1, "sigmoid")])
    model.compile("sgd", "binary_crossentropy")
    model.predict(X)  # forward through a step function is fine
    assert set(np.unique(model.layers[0].activation.forward(np, np.array([-1.0, 0.0, 2.0])))) == {0.0, 1.0}
    with pytest.raises(xpnet.activations.NotDifferentiableError, match=r"heaviside.*no useful gradient"):
        model.fit(X, (Y > 0).astype(np.float32), verbose=0)


def test_compile_needs_a_loss_and_known_names() -> None:
    model = Sequential([Dense(2, input_shape=(4,))])
    with pytest.raises(ValueError, match="needs a loss"):
        model.compile("sgd")
    with pytest.raises(ValueError, match="Unknown loss 'msee'"):
        model.compile("sgd", "msee")
    with pytest.raises(ValueError, match="Unknown metric 'accuracyy'"):
        model.compile("sgd", "mse", metrics=["accuracyy"])
        model.fit(X, np.zeros((10, 2)), verbose=0)
    with pytest.raises(ValueError, match="Unknown activation 'rellu'"):
        Dense(3, "rellu")


def test_dense_needs_flat_input() -> None:
    with pytest.raises(ValueError, match="add a Flatten layer"):
        Sequential([Dense(3, input_shape=(28, 28))])
    assert Sequential([Flatten(input_shape=(28, 28)), Dense(3)]).count_params() == 784 * 3 + 3


def test_wrong_shape_set_weights_leaves_model_unchanged(clf: Sequential) -> None:
    before = clf.get_weights()
    bad = [w.copy() for w in before]
    bad[2] = np.zeros((8, 4))
    with pytest.raises(ValueError, match=r"dense_1/kernel must have shape \(8, 3\), received \(8, 4\)"):
        clf.set_weights(bad)
    for a, b in zip(before, clf.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
