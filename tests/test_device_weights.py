"""Weights from device arrays: `Model.set_weights`, `Layer.set_weights` and `Variable.assign` take the
model's own device arrays (written device to device, no trip through the host) as well as host data."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.backend import Ops
from xpnet.layers import Dense


def _model(backend: str) -> xpnet.Sequential:
    model = xpnet.Sequential([Dense(5, "relu", input_shape=(3,)), Dense(2)], seed=0)
    model.build(backend=backend)
    return model


def _new_weights(model: xpnet.Sequential, dtype: type = np.float32) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [rng.standard_normal(w.shape).astype(dtype) for w in model.get_weights()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_set_weights_takes_device_arrays(ops: Ops, backend: str, dtype: type) -> None:
    model = _model(backend)
    host = _new_weights(model, dtype)
    device = [ops.asarray(w) for w in host]
    syncs = ops.syncs
    model.set_weights(device)
    assert ops.syncs == syncs  # written device to device: no read back to the host
    for got, want in zip(model.get_weights(), host, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want.astype(np.float32))
    # host and device arrays mixed in one call
    mixed = [host[0] * 2, device[1], host[2], device[3]]
    model.set_weights(mixed)
    np.testing.assert_array_equal(model.get_weights()[0], (host[0] * 2).astype(np.float32))
    np.testing.assert_array_equal(model.get_weights()[1], host[1].astype(np.float32))


def test_layer_set_weights_and_variable_assign_take_device_arrays(ops: Ops, backend: str) -> None:
    model = _model(backend)
    host = _new_weights(model)
    layer = model.layers[0]
    layer.set_weights([ops.asarray(host[0]), ops.asarray(host[1])])
    np.testing.assert_array_equal(layer.get_weights()[0], host[0])
    np.testing.assert_array_equal(layer.get_weights()[1], host[1])
    kernel = layer.weights[0]
    kernel.assign(ops.asarray(host[0] * 3))
    np.testing.assert_array_equal(kernel.numpy(), host[0] * 3)
    kernel.assign(layer.weights[0])  # a Variable of the same model: device to device
    np.testing.assert_array_equal(kernel.numpy(), host[0] * 3)
    # the model trains on afterwards: the writes went into the flat buffer the optimizer updates
    model.compile("sgd", "mse", backend=backend)
    x = np.ones((4, 3), np.float32)
    model.fit(x, np.zeros((4, 2), np.float32), epochs=1, verbose=0)
    assert not np.array_equal(kernel.numpy(), host[0] * 3)


def test_device_weights_are_checked_like_host_weights(ops: Ops, backend: str) -> None:
    model = _model(backend)
    host = _new_weights(model)
    nan = host[0].copy()
    nan[1, 1] = np.nan
    syncs = ops.syncs
    model.set_weights([ops.asarray(nan), *(ops.asarray(w) for w in host[1:])])  # NaN taken, as Keras takes it
    model.layers[0].weights[0].assign(ops.asarray(nan))
    assert ops.syncs == syncs  # device arrays go in without a single read back to the host
    np.testing.assert_array_equal(model.get_weights()[0], nan)
    with pytest.raises(ValueError, match=r"dense.*/kernel\.assign: expected numbers, received dtype <U1"):
        model.layers[0].weights[0].assign(np.full((3, 5), "x"))
    with pytest.raises(ValueError, match=r"must have shape \(3, 5\), received \(5, 3\)"):
        model.layers[0].set_weights([ops.asarray(host[0].T.copy()), ops.asarray(host[1])])
    np.testing.assert_array_equal(model.get_weights()[0], nan)  # the failed calls changed nothing


@pytest.mark.gpu
@pytest.mark.parametrize("target", ["numpy", "strict"])
def test_a_model_on_another_backend_takes_cupy_arrays(target: str) -> None:
    # e.g. a CPU copy of a GPU model: cpu.set_weights(gpu weights) downloads each array once, explicitly
    from xpnet.backend import _cupy_problem, get_backend

    problem = _cupy_problem(0)
    if problem:
        pytest.skip(f"cupy backend unavailable: {problem.split(' (')[0]}")
    if target == "strict":
        pytest.importorskip("array_api_strict")
    gpu = get_backend("cupy")
    model = _model(target)
    host = _new_weights(model)
    model.set_weights([gpu.asarray(w) for w in host])
    for got, want in zip(model.get_weights(), host, strict=True):
        np.testing.assert_array_equal(got, want)
    layer = model.layers[1]
    layer.set_weights([gpu.asarray(host[2] * 2), gpu.asarray(host[3] * 2)])
    np.testing.assert_array_equal(layer.get_weights()[0], host[2] * 2)
    layer.weights[1].assign(gpu.asarray(host[3] * 3))
    np.testing.assert_array_equal(layer.get_weights()[1], host[3] * 3)


def test_variable_assign_takes_a_variable_of_a_model_on_another_backend(backend: str) -> None:
    # a Variable of another device (the strict stand-in's, a GPU's) is read through its own backend
    source = _model(backend)
    target = _model("numpy")
    other = xpnet.Sequential([Dense(5, "relu", input_shape=(3,)), Dense(2)], seed=7)
    other.build(backend=backend)
    target.layers[0].weights[0].assign(other.layers[0].weights[0])
    np.testing.assert_array_equal(target.layers[0].weights[0].numpy(), other.layers[0].weights[0].numpy())
    source.layers[1].weights[1].assign(target.layers[1].weights[1])  # and from NumPy onto `backend`
    np.testing.assert_array_equal(source.layers[1].weights[1].numpy(), target.layers[1].weights[1].numpy())
