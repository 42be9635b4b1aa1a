"""Conv2D, pooling and Reshape: forward against independent float64 references, finite-difference
gradients over strides / padding / odd sizes, the backends against the generic array-API code,
Keras's geometry, names and errors, and the course's LeNet-5 (summary, fit, trace, check_gradients)."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

import xpnet
from xpnet.backend import Ops, numpy_ops
from xpnet.backend.numpy_ops import NumpyOps
from xpnet.gradcheck import check_gradients, check_layer_gradients
from xpnet.layers import (
    AveragePooling2D,
    Conv2D,
    Dense,
    Flatten,
    GlobalAveragePooling2D,
    MaxPool2D,
    MaxPooling2D,
    Reshape,
)
from xpnet.layers._spatial import out_and_pads

try:
    import numba  # noqa: F401

    HAS_NUMBA = True
except ImportError:
    HAS_NUMBA = False
# NumPy backend tests run with and without numba's compiled loops (`xpnet/backend/_jit.py`)
JIT = pytest.mark.parametrize(
    "jit", [False, pytest.param(True, marks=pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed"))]
)


class GenericNumpyOps(Ops):
    """The plain array-API methods of `Ops`, run on NumPy: the reference every override is tested against."""

    name = "generic-numpy"
    xp = np


# ------------------------------------------------------------------------------------ references
def keras_pads(size: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """TensorFlow's rule, written out independently: out, pad before, pad after."""
    if padding == "valid":
        return (size - k) // s + 1, 0, 0
    out = (size + s - 1) // s
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, strides: tuple[int, int], padding: str) -> np.ndarray:
    """Direct loops in float64: y[n, r, q, f] = Σ_{i, j, c} xpad[n, r·sh + i, q·sw + j, c] w[i, j, c, f] + b[f]."""
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    oh, top, bottom = keras_pads(h, kh, strides[0], padding)
    ow, left, right = keras_pads(wd, kw, strides[1], padding)
    xp = np.zeros((n, h + top + bottom, wd + left + right, c))
    xp[:, top : top + h, left : left + wd] = x
    y = np.empty((n, oh, ow, f))
    for r in range(oh):
        for q in range(ow):
            patch = xp[:, r * strides[0] : r * strides[0] + kh, q * strides[1] : q * strides[1] + kw, :]
            y[:, r, q, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2])) + b
    return y


def pool_reference(
    x: np.ndarray, size: tuple[int, int], strides: tuple[int, int], padding: str, how: str
) -> np.ndarray:
    """Max (padding never wins) or mean over the window's pixels inside the image, by direct loops."""
    n, h, w, c = x.shape
    oh, top, _ = keras_pads(h, size[0], strides[0], padding)
    ow, left, _ = keras_pads(w, size[1], strides[1], padding)
    y = np.empty((n, oh, ow, c))
    for r in range(oh):
        for q in range(ow):
            r0, q0 = r * strides[0] - top, q * strides[1] - left
            win = x[:, max(r0, 0) : r0 + size[0], max(q0, 0) : q0 + size[1], :]
            y[:, r, q, :] = win.max(axis=(1, 2)) if how == "max" else win.mean(axis=(1, 2))
    return y


def run_layer(layer: xpnet.layers.Layer, x: np.ndarray, backend: str = "numpy", dtype: str = "float64") -> np.ndarray:
    with xpnet.use_backend(backend):
        model = xpnet.Sequential([xpnet.Input(x.shape[1:]), layer], seed=3, dtype=dtype)
    return model.predict(x)


CONV_CASES = [
    # (input h, w, c), filters, kernel, strides, padding
    ((7, 5, 2), 3, (3, 2), (1, 1), "valid"),
    ((7, 5, 2), 3, (3, 2), (1, 1), "same"),
    ((7, 6, 1), 2, (4, 3), (2, 1), "same"),
    ((9, 8, 3), 4, (3, 3), (2, 3), "valid"),
    ((6, 6, 2), 2, (2, 2), (2, 2), "same"),
    ((5, 7, 2), 3, (5, 1), (3, 2), "same"),
    ((8, 8, 1), 6, (5, 5), (1, 1), "same"),
]


# ------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize(("size", "k", "s"), list(itertools.product(range(1, 12), range(1, 6), range(1, 4))))
def test_output_size_and_padding_follow_tensorflow(size: int, k: int, s: int) -> None:
    assert out_and_pads(size, k, s, "same") == keras_pads(size, k, s, "same")
    if size >= k:
        assert out_and_pads(size, k, s, "valid") == keras_pads(size, k, s, "valid")


def test_keras_names_defaults_and_aliases() -> None:
    conv = Conv2D(6, 5)
    assert (conv.kernel_size, conv.strides, conv.padding, conv.use_bias) == ((5, 5), (1, 1), "valid", True)
    assert conv.activation.name == "linear"
    assert repr(conv.kernel_initializer) == "VarianceScaling(scale=1.0, mode='fan_avg', distribution='uniform')"
    pool = MaxPool2D()
    assert MaxPool2D is MaxPooling2D
    assert (pool.pool_size, pool.strides, pool.padding) == ((2, 2), (2, 2), "valid")
    assert AveragePooling2D(3, strides=1, padding="SAME").strides == (1, 1)
    model = xpnet.Sequential([Conv2D(2, 3, input_shape=(10, 10, 1)), MaxPooling2D(), AveragePooling2D(), Flatten()])
    assert [layer.name for layer in model.layers] == ["conv2d", "max_pooling2d", "average_pooling2d", "flatten"]
    assert "Conv2D(2, (3, 3)" in repr(model.layers[0])


def test_conv_kernel_init_uses_keras_fans() -> None:
    """Glorot-uniform limit √(6 / (fan_in + fan_out)) with fan_in = kh·kw·in, fan_out = kh·kw·out."""
    model = xpnet.Sequential([Conv2D(16, (5, 5), input_shape=(14, 14, 6))], seed=0)
    kernel = model.get_weights()[0]
    limit = np.sqrt(6.0 / (25 * 6 + 25 * 16))
    assert kernel.shape == (5, 5, 6, 16)
    assert limit * 0.98 < np.abs(kernel).max() <= limit
    assert abs(kernel.std() - limit / np.sqrt(3)) < 0.05 * limit


# ------------------------------------------------------------------------------------ forward
@pytest.mark.parametrize(("shape", "filters", "kernel", "strides", "padding"), CONV_CASES)
def test_conv_forward_matches_direct_loops(
    shape: tuple[int, int, int],
    filters: int,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
    backend: str,
) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *shape))
    layer = Conv2D(filters, kernel, strides=strides, padding=padding, bias_initializer="random_normal")
    with xpnet.use_backend(backend):
        model = xpnet.Sequential([xpnet.Input(shape), layer], seed=1, dtype="float64")
    w, b = model.get_weights()
    expected = conv_reference(x, w, b, strides, padding)
    assert model.output_shape == (None, *expected.shape[1:])
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12, atol=1e-12)


def test_conv_forward_matches_scipy_correlate() -> None:
    """'valid', stride 1: Σ over channels of scipy.signal.correlate per (input, output) channel pair."""
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 9, 7, 3))
    model = xpnet.Sequential([Conv2D(4, (4, 3), input_shape=(9, 7, 3))], seed=2, dtype="float64")
    w, b = model.get_weights()
    expected = np.stack(
        [
            np.stack(
                [
                    sum(signal.correlate(x[n, :, :, c], w[:, :, c, f], mode="valid") for c in range(3)) + b[f]
                    for f in range(4)
                ],
                axis=-1,
            )
            for n in range(2)
        ]
    )
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("size", "strides", "padding"),
    [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"), ((3, 2), (1, 2), "valid"), ((2, 3), (3, 1), "same")],
)
@pytest.mark.parametrize("how", ["max", "avg"])
def test_pooling_forward_matches_direct_loops(
    size: tuple[int, int], strides: tuple[int, int] | None, padding: str, how: str, backend: str
) -> None:
    x = np.random.default_rng(2).standard_normal((2, 7, 6, 3)) - 3.0  # negative: zero padding would win a max
    cls = MaxPooling2D if how == "max" else AveragePooling2D
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 7 rows in 2×2 windows: the floor warning, tested below
        out = run_layer(cls(size, strides, padding), x, backend)
    np.testing.assert_allclose(out, pool_reference(x, size, strides or size, padding, how), rtol=1e-12, atol=1e-12)


def test_global_average_pooling_and_reshape(backend: str) -> None:
    x = np.random.default_rng(3).standard_normal((4, 5, 3, 2))
    np.testing.assert_allclose(run_layer(GlobalAveragePooling2D(), x, backend), x.mean(axis=(1, 2)), rtol=1e-12)
    kept = run_layer(GlobalAveragePooling2D(keepdims=True), x, backend)
    assert kept.shape == (4, 1, 1, 2)
    np.testing.assert_allclose(run_layer(Reshape((-1, 6)), x, backend), x.reshape(4, 5, 6))


def test_max_pool_backward_goes_to_the_first_maximum() -> None:
    x = np.zeros((1, 2, 4, 1))
    x[0, 1, 2, 0] = 5.0  # second window: one clear maximum at (1, 0) of the window
    layer = MaxPooling2D()
    with xpnet.use_backend("numpy"):
        model = xpnet.Sequential([xpnet.Input((2, 4, 1)), layer], dtype="float64")
    layer.forward(x, training=True)
    dx = layer.backward(np.array([[[[2.0], [3.0]]]]))
    expected = np.zeros((1, 2, 4, 1))
    expected[0, 0, 0, 0] = 2.0  # a tie of four zeros: the first one takes it all
    expected[0, 1, 2, 0] = 3.0
    np.testing.assert_array_equal(dx, expected)
    assert model.count_params() == 0


# ------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize(("shape", "filters", "kernel", "strides", "padding"), CONV_CASES)
def test_conv_gradients_match_finite_differences(
    shape: tuple[int, int, int], filters: int, kernel: tuple[int, int], strides: tuple[int, int], padding: str
) -> None:
    layer = Conv2D(
        filters, kernel, strides=strides, padding=padding, activation="tanh", bias_initializer="random_normal"
    )
    result = check_layer_gradients(layer, shape, batch_size=2, max_elements=60)
    assert result.passed, str(result)
    assert [w.name for w in result.weights] == ["input", "conv2d/kernel", "conv2d/bias"]
    assert result.max_rel_error < 1e-6


@pytest.mark.filterwarnings("ignore:.*outside every window")  # 7 columns in 2×2 windows
@pytest.mark.parametrize(
    ("cls", "size", "strides", "padding"),
    [
        (MaxPooling2D, (2, 2), None, "valid"),
        (MaxPooling2D, (3, 3), (2, 2), "same"),
        (MaxPooling2D, (2, 3), (1, 2), "same"),
        (AveragePooling2D, (2, 2), None, "valid"),
        (AveragePooling2D, (3, 2), (2, 1), "same"),
        (AveragePooling2D, (3, 3), (1, 1), "same"),
    ],
)
def test_pooling_gradients_match_finite_differences(
    cls: type, size: tuple[int, int], strides: tuple[int, int] | None, padding: str
) -> None:
    result = check_layer_gradients(cls(size, strides, padding), (6, 7, 2), batch_size=2, max_elements=None)
    assert result.passed, str(result)
    assert result.weights[0].checked == 2 * 6 * 7 * 2


@pytest.mark.parametrize("layer", [GlobalAveragePooling2D(), GlobalAveragePooling2D(keepdims=True), Reshape((5, -1))])
def test_shape_layers_gradients(layer: xpnet.layers.Layer) -> None:
    result = check_layer_gradients(layer, (5, 3, 2), batch_size=3, max_elements=None)
    assert result.passed, str(result)


# ------------------------------------------------------------------------------------ backends vs generic
@pytest.mark.parametrize(("shape", "filters", "kernel", "strides", "padding"), CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backend_conv_matches_generic_code(
    shape: tuple[int, int, int],
    filters: int,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
    dtype: type,
    ops: Ops,
) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, *shape)).astype(dtype)
    w = rng.standard_normal((*kernel, shape[2], filters)).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype)
    (oh, ow), pads = _geometry(shape, kernel, strides, padding)
    du = rng.standard_normal((3, oh, ow, filters)).astype(dtype)
    ref = GenericNumpyOps()
    u0, ctx0 = ref.conv2d_forward(x, w, b, strides, pads)
    g0 = ref.conv2d_backward(du, ctx0, w, x.shape, strides, pads, True)
    dev = [ops.asarray(a) for a in (x, w, b, du)]
    u1, ctx1 = ops.conv2d_forward(dev[0], dev[1], dev[2], strides, pads)
    g1 = ops.conv2d_backward(dev[3], ctx1, dev[1], x.shape, strides, pads, True)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ops.to_numpy(u1), u0, rtol=tol, atol=tol)
    assert str(u1.dtype).endswith(np.dtype(dtype).name)
    for a, b_ in zip(g1, g0, strict=True):
        np.testing.assert_allclose(ops.to_numpy(a), b_, rtol=tol, atol=tol * 10)
    assert ops.conv2d_backward(dev[3], ctx1, dev[1], x.shape, strides, pads, False)[2] is None


@pytest.mark.parametrize(
    ("size", "strides", "padding"), [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same"), ((2, 3), (1, 2), "same")]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("height", [7, 8])
def test_backend_pooling_matches_generic_code(
    size: tuple[int, int], strides: tuple[int, int], padding: str, dtype: type, height: int, ops: Ops
) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, height, 8, 5)).astype(dtype)
    (oh, ow), pads = _geometry(x.shape[1:], size, strides, padding)
    dy = rng.standard_normal((3, oh, ow, 5)).astype(dtype)
    ref = GenericNumpyOps()
    y0, a0 = ref.max_pool_forward(x, size, strides, pads)
    y1, a1 = ops.max_pool_forward(ops.asarray(x), size, strides, pads)
    np.testing.assert_array_equal(ops.to_numpy(y1), y0)
    np.testing.assert_array_equal(ops.to_numpy(ops.max_pool_forward(ops.asarray(x), size, strides, pads, False)[0]), y0)
    dx0 = ref.max_pool_backward(dy, a0, x.shape, size, strides, pads)
    dx1 = ops.max_pool_backward(ops.asarray(dy), a1, x.shape, size, strides, pads)
    np.testing.assert_allclose(ops.to_numpy(dx1), dx0, rtol=1e-6)
    inv = 1.0 / (size[0] * size[1])
    np.testing.assert_allclose(
        ops.to_numpy(ops.avg_pool_forward(ops.asarray(x), size, strides, pads, inv)),
        ref.avg_pool_forward(x, size, strides, pads, inv),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        ops.to_numpy(ops.avg_pool_backward(ops.asarray(dy), x.shape, size, strides, pads, inv)),
        ref.avg_pool_backward(dy, x.shape, size, strides, pads, inv),
        rtol=1e-6,
    )


def _geometry(
    shape: tuple[int, ...], window: tuple[int, int], strides: tuple[int, int], padding: str
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    oh, top, bottom = keras_pads(shape[0], window[0], strides[0], padding)
    ow, left, right = keras_pads(shape[1], window[1], strides[1], padding)
    return (oh, ow), (top, bottom, left, right)


# ------------------------------------------------------------------------------------ errors
def lenet(seed: int = 0, dtype: str = "float32") -> xpnet.Sequential:
    return xpnet.Sequential(
        [
            Conv2D(6, (5, 5), padding="same", activation="relu", input_shape=(28, 28, 1)),
            MaxPool2D(pool_size=(2, 2), strides=(2, 2)),
            Conv2D(16, (5, 5), padding="same", activation="relu"),
            MaxPool2D((2, 2), (2, 2)),
            Flatten(),
            Dense(120, activation="relu"),
            Dense(84, activation="relu"),
            Dense(10, activation="softmax"),
        ],
        seed=seed,
        dtype=dtype,
    )


def test_conv_model_given_flat_vectors_names_both_shapes() -> None:
    model = lenet()
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"expects input of shape \(None, 28, 28, 1\).*\(5, 784\)"):
        model.fit(np.zeros((5, 784), np.float32), np.zeros(5, int), verbose=0)
    unbuilt = xpnet.Sequential([Conv2D(6, 5), Flatten(), Dense(10)])
    with pytest.raises(
        ValueError, match=r"Conv2D 'conv2d' expects images .* \(None, 784\).*reshape\(-1, \*\(28, 28, 1\)\)"
    ):
        unbuilt.build((784,))


def test_images_without_channel_axis() -> None:
    """As Keras, (n, 28, 28) for input_shape (28, 28, 1) gets its channel axis; a conv on 2-D input says what to do."""
    model = lenet()
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model.predict(np.zeros((4, 28, 28), np.float32)).shape == (4, 10)
    with pytest.raises(ValueError, match=r"\(None, 28, 28\); add the channel axis: x.reshape\(-1, 28, 28, 1\)"):
        xpnet.Sequential([Conv2D(6, 5, input_shape=(28, 28))])
    ok = Reshape((28, 28, 1), input_shape=(28, 28))
    model2 = xpnet.Sequential([ok, Conv2D(2, 5), Flatten(), Dense(3)], seed=0)
    assert model2.predict(np.zeros((4, 28, 28), np.float32)).shape == (4, 3)


def test_kernel_larger_than_valid_input() -> None:
    with pytest.raises(
        ValueError,
        match=r"the 5×5 kernel does not fit the 4×6 input with padding='valid' \(it would give a 0×2 output\)",
    ):
        xpnet.Sequential([Conv2D(2, 5, input_shape=(4, 6, 1))])
    xpnet.Sequential([Conv2D(2, 5, padding="same", input_shape=(4, 6, 1))])  # "same" always fits
    with pytest.raises(ValueError, match=r"the 3×3 pool does not fit the 2×2 input"):
        xpnet.Sequential([MaxPooling2D(3, input_shape=(2, 2, 4))])


def test_pool_that_does_not_divide_floors_like_keras_with_a_warning() -> None:
    with pytest.warns(
        UserWarning, match=r"leave the last 1 row\(s\) and 1 column\(s\) of the 7×7 input outside.*\(output 3×3\)"
    ):
        model = xpnet.Sequential([MaxPooling2D(2, input_shape=(7, 7, 1))], dtype="float64")
    assert model.output_shape == (None, 3, 3, 1)
    x = np.arange(49.0).reshape(1, 7, 7, 1)
    np.testing.assert_array_equal(model.predict(x)[0, :, :, 0], x[0, 1:6:2, 1:6:2, 0])


@pytest.mark.parametrize("filters", [6.0, 6.5, "6", 0, -1, True, None])
def test_filters_must_be_a_positive_integer(filters: object) -> None:
    with pytest.raises(ValueError, match=rf"Conv2D: filters must be a positive integer, received {filters!r}"):
        Conv2D(filters, 5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": (5, 0)}, r"kernel_size must be a positive integer or a pair of them, received \(5, 0\)"),
        ({"kernel_size": 2.5}, r"kernel_size .* received 2.5"),
        ({"kernel_size": 3, "strides": (1, 2, 3)}, r"strides .* received \(1, 2, 3\)"),
        ({"kernel_size": 3, "padding": "full"}, r"padding must be 'valid' or 'same', received 'full'"),
    ],
)
def test_bad_conv_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Conv2D(4, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError, match="channels_last"):
        Conv2D(4, 3, data_format="channels_first")


def test_reshape_errors_name_the_shapes() -> None:
    with pytest.raises(
        ValueError, match=r"cannot reshape an input of shape \(None, 28, 28\) \(784 values per sample\)"
    ):
        xpnet.Sequential([Reshape((28, 27, 1), input_shape=(28, 28))])
    with pytest.raises(ValueError, match="at most one -1"):
        Reshape((-1, -1))


# ------------------------------------------------------------------------------------ the course's LeNet-5
def test_lenet_summary_shows_the_course_counts() -> None:
    lines: list[str] = []
    model = lenet()
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert [layer.count_params() for layer in model.layers] == [156, 0, 2416, 0, 0, 94200, 10164, 850]
    assert "Total params: 107,786" in text
    for shape in ["(None, 28, 28, 6)", "(None, 14, 14, 6)", "(None, 14, 14, 16)", "(None, 7, 7, 16)", "(None, 784)"]:
        assert shape in text
    assert model.layers[0].kernel.shape == (5, 5, 1, 6)
    assert model.get_layer("conv2d_1").get_weights()[0].shape == (5, 5, 6, 16)


def test_lenet_trains_in_float32_and_keeps_float32(rng: np.random.Generator) -> None:
    """Bars that run across or down the image: LeNet tells them apart after a few epochs."""
    n = 256
    x = rng.random((n, 28, 28, 1), dtype=np.float32) * 0.2
    y = rng.integers(0, 2, n)
    for i in range(n):
        pos = rng.integers(4, 24)
        if y[i]:
            x[i, :, pos, 0] += 1.0
        else:
            x[i, pos, :, 0] += 1.0
    model = lenet(seed=1)
    model.compile(xpnet.optimizers.SGD(0.1), "sparse_categorical_crossentropy", ["accuracy"], backend="numpy")
    hist = model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] > 0.95
    assert model.store.params.dtype == np.float32 and model.store.grads.dtype == np.float32
    assert model.predict(x[:8]).dtype == np.float32
    assert model.layers[0].preactivation.dtype == np.float32


def test_check_gradients_on_a_conv_model() -> None:
    model = xpnet.Sequential(
        [
            Conv2D(3, 3, padding="same", activation="tanh", input_shape=(6, 6, 2)),
            MaxPooling2D(),
            Conv2D(2, (2, 2), strides=(1, 2), activation="sigmoid"),
            AveragePooling2D((1, 1)),
            Flatten(),
            Dense(3, activation="softmax"),
        ],
        seed=0,
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).standard_normal((4, 6, 6, 2)).astype(np.float32)
    result = check_gradients(model, x, np.array([0, 1, 2, 1]))
    assert result.passed, str(result)
    assert [w.name for w in result.weights][:2] == ["conv2d/kernel", "conv2d/bias"]
    assert result.source_dtype == "float32"


def test_trace_on_a_conv_model() -> None:
    model = xpnet.Sequential(
        [Conv2D(2, 3, activation="relu", input_shape=(6, 6, 1)), MaxPooling2D(), Flatten(), Dense(3, "softmax")],
        seed=0,
        dtype="float64",
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 1))
    y = np.array([0, 2])
    t = model.trace(x, y)
    assert t.u(1).shape == (2, 4, 4, 2) and t.h(2).shape == (2, 2, 2, 2)
    np.testing.assert_allclose(t.h(1), np.maximum(t.u(1), 0))
    assert t.delta(1).shape == (2, 4, 4, 2)
    _, grads = model.compute_gradients(x, y)
    np.testing.assert_allclose(t.grad(1, "kernel"), grads[0])
    # ∂L/∂W(1) = Σ over positions of the patch ⊗ δ(1), computed here from the traced values by direct loops
    w_grad = np.zeros((3, 3, 1, 2))
    for r, q in itertools.product(range(4), range(4)):
        w_grad += np.einsum("nijc,nf->ijcf", x[:, r : r + 3, q : q + 3, :], t.delta(1)[:, r, q, :])
    np.testing.assert_allclose(t.grad(1, "kernel"), w_grad, rtol=1e-12, atol=1e-14)
    assert "conv2d" in str(t)


@pytest.mark.gpu
def test_lenet_on_cupy_matches_numpy() -> None:
    """Seeded CPU-vs-GPU parity: the same weights, the same shuffles, the same losses to float32 rounding."""
    from xpnet.backend import _cupy_problem

    problem = _cupy_problem(0)
    if problem:
        pytest.skip(f"needs a CUDA device: {problem.split(' (')[0]}")
    rng = np.random.default_rng(7)
    x = rng.random((96, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 96)
    runs = []
    for backend in ("numpy", "cupy"):
        model = lenet(seed=5)
        model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"], backend=backend)
        hist = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        runs.append((hist.history["loss"], model.get_weights(), model.predict(x[:16])))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-4)
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(runs[0][2], runs[1][2], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("strides", [(1, 1), (2, 1)])
def test_numpy_inference_in_batch_slices_matches_one_pass(
    strides: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:

    # NumpyOps's own slicing is under test: the model is on NumPy whatever "auto" would pick
    model = xpnet.Sequential([Conv2D(4, 3, strides=strides, padding="same", input_shape=(9, 8, 3))], seed=0)
    model.build(backend="numpy")
    x = np.random.default_rng(0).standard_normal((7, 9, 8, 3)).astype(np.float32)
    whole = model.predict(x, batch_size=7)
    monkeypatch.setattr(NumpyOps, "conv_patch_bytes", 1)  # one image per slice
    u, ctx = model.ops.conv2d_forward(
        x, model.layers[0].kernel, model.layers[0].bias, strides, model.layers[0].pads, False
    )
    assert ctx is None
    np.testing.assert_allclose(u, whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.predict(x, batch_size=7), whole, rtol=1e-6, atol=1e-6)


@JIT
@pytest.mark.parametrize("layout", ["nhwc", "channels_first", "wide", "wide_odd"])
@pytest.mark.parametrize(("height", "width"), [(8, 6), (7, 5), (6, 7)])
def test_numpy_2x2_pool_matches_generic_code_with_ties(layout: str, height: int, width: int, jit: bool) -> None:
    # few distinct values: most windows tie, and the gradient must still go to the first maximum only
    rng = np.random.default_rng(6)
    shape = (3, height, width, 4)
    x = rng.integers(-1, 2, size=shape).astype(np.float32)
    if layout == "channels_first":  # (c, n, h, w) in memory behind an NHWC view
        x = np.ascontiguousarray(x.transpose(3, 0, 1, 2)).transpose(1, 2, 3, 0)
    elif layout.startswith("wide"):  # NumPy's conv output: rows of wp > w pixels, the extra ones garbage
        wp = width + (3 if layout == "wide" else 2)
        buf = rng.standard_normal((4, 3, height, wp)).astype(np.float32) * 9.0
        buf[..., :width] = x.transpose(3, 0, 1, 2)
        x = buf.reshape(4, -1).reshape(4, 3, height, wp)[..., :width].transpose(1, 2, 3, 0)
        assert numpy_ops._wide_base(x) is not None
    dy = rng.standard_normal((3, height // 2, width // 2, 4)).astype(np.float32)
    ref, ops = GenericNumpyOps(), NumpyOps(jit=jit)
    y0, a0 = ref.max_pool_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    y1, a1 = ops.max_pool_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(ops.max_pool_forward(x, (2, 2), (2, 2), (0, 0, 0, 0), need_arg=False)[0], y0)
    dx0 = ref.max_pool_backward(dy, a0, x.shape, (2, 2), (2, 2), (0, 0, 0, 0))
    dx1 = ops.max_pool_backward(dy, a1, x.shape, (2, 2), (2, 2), (0, 0, 0, 0))
    np.testing.assert_array_equal(dx1, dx0)
    wide = numpy_ops._wide_base(dx1)
    if layout.startswith("wide") and height % 2 == 0 and (width + (3 if layout == "wide" else 2)) % 2 == 0:
        assert isinstance(a1, numpy_ops._WideHalves)  # the wide path was taken, and its extra columns are 0
        assert wide is not None and not wide[..., width:].any()


@JIT
def test_numpy_conv_takes_the_pools_wide_gradient_as_it_is(jit: bool) -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 10, 10, 3)).astype(np.float32)  # rows of 12 padded pixels: even
    kernel = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    ref, ops = GenericNumpyOps(), NumpyOps(jit=jit)
    pads = (1, 1, 1, 1)
    u, ctx = ops.conv2d_forward(x, kernel, bias, (1, 1), pads)
    y, arg = ops.max_pool_forward(u, (2, 2), (2, 2), (0, 0, 0, 0))
    assert isinstance(arg, numpy_ops._WideHalves)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    du = ops.max_pool_backward(dy, arg, u.shape, (2, 2), (2, 2), (0, 0, 0, 0))
    assert not numpy_ops._wide_base(du)[..., 10:].any()  # the pool leaves the extra columns 0
    garbage = numpy_ops._wide_base(du).copy()  # another array in this layout: its extra columns get zeroed
    garbage[..., 10:] = np.nan
    du_garbage = garbage.reshape(4, -1).reshape(garbage.shape)[..., :10].transpose(1, 2, 3, 0)
    assert numpy_ops._wide_base(du_garbage) is not None
    u0, ctx0 = ref.conv2d_forward(x, kernel, bias, (1, 1), pads)
    y0, a0 = ref.max_pool_forward(u0, (2, 2), (2, 2), (0, 0, 0, 0))
    du0 = ref.max_pool_backward(dy, a0, u0.shape, (2, 2), (2, 2), (0, 0, 0, 0))
    np.testing.assert_allclose(y, y0, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(du == 0, du0 == 0)
    want = ref.conv2d_backward(du0, ctx0, kernel, x.shape, (1, 1), pads, True)
    for d in (du, du_garbage):
        got = ops.conv2d_backward(d, ctx, kernel, x.shape, (1, 1), pads, True)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_numpy_conv_products_in_column_blocks_match_generic_code(monkeypatch: pytest.MonkeyPatch) -> None:
    from xpnet.backend import numpy_images

    # blocks of 7 columns from 8 on: every product of this small conv is split, the last block ragged
    monkeypatch.setattr(numpy_images, "_GEMM_COLUMNS", 7)
    monkeypatch.setattr(numpy_images, "_GEMM_SPLIT_FROM", 8)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 6, 5, 2)).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    du = rng.standard_normal((3, 6, 5, 4)).astype(np.float32)
    pads = (1, 1, 1, 1)
    ref, ops = GenericNumpyOps(), NumpyOps()
    u0, ctx0 = ref.conv2d_forward(x, w, b, (1, 1), pads)
    u1, ctx1 = ops.conv2d_forward(x, w, b, (1, 1), pads)
    np.testing.assert_allclose(u1, u0, rtol=1e-5, atol=1e-5)
    grads0 = ref.conv2d_backward(du, ctx0, w, x.shape, (1, 1), pads, True)
    grads1 = ops.conv2d_backward(du, ctx1, w, x.shape, (1, 1), pads, True)
    for g1, g0 in zip(grads1, grads0, strict=True):
        np.testing.assert_allclose(g1, g0, rtol=1e-5, atol=1e-4)


def test_numpy_conv_patch_matrices_are_reused_only_once_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 6, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 3)).astype(np.float32)
    du = rng.standard_normal((4, 6, 6, 3)).astype(np.float32)
    ops, pads = NumpyOps(), (1, 1, 1, 1)
    _, ctx = ops.conv2d_forward(x, w, None, (1, 1), pads)
    _, ctx2 = ops.conv2d_forward(x, w, None, (1, 1), pads)  # ctx's patches are still in use: not taken
    first = ops.conv2d_backward(du, ctx, w, x.shape, (1, 1), pads, True)
    again = ops.conv2d_backward(du, ctx, w, x.shape, (1, 1), pads, True)  # let go, but not yet reused
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    ops.conv2d_forward(x * 2, w, None, (1, 1), pads)  # takes ctx's patches
    with pytest.raises(RuntimeError, match="reused this context's patches"):
        ops.conv2d_backward(du, ctx, w, x.shape, (1, 1), pads, True)
    ops.conv2d_backward(du, ctx2, w, x.shape, (1, 1), pads, True)

    # a model with two convolutions of one patch shape trains as with fresh patch matrices every step
    def model(seed: int) -> xpnet.Sequential:
        m = xpnet.Sequential(
            [
                Conv2D(3, 3, padding="same", activation="relu", input_shape=(6, 6, 3)),
                Conv2D(3, 3, padding="same", activation="relu"),
                Flatten(),
                Dense(2, "softmax"),
            ],
            seed=seed,
        )
        m.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
        return m

    y = rng.integers(0, 2, 4)
    reused = model(1).fit(x, y, batch_size=2, epochs=3, verbose=0, shuffle=False).history["loss"]
    monkeypatch.setattr(NumpyOps, "_patches", lambda self, shape, dtype: np.empty(shape, dtype))
    fresh = model(1).fit(x, y, batch_size=2, epochs=3, verbose=0, shuffle=False).history["loss"]
    assert reused == fresh


@pytest.mark.parametrize("block_images", [1, 2, 3, 5])
def test_numpy_conv_inference_in_blocks_of_images_matches_the_training_pass(
    block_images: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((5, 7, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    ops, pads = NumpyOps(), (1, 1, 1, 1)
    whole, _ = ops.conv2d_forward(x, w, b, (1, 1), pads, need_ctx=True)
    per_image = (3 * 3 * 3 + 1) * 7 * 8 * 4  # patch bytes of one image: 28 rows of 7·8 columns
    monkeypatch.setattr(ops, "conv_block_bytes", per_image * block_images)  # 5 images: a smaller last block
    for _ in range(2):  # the second time with the block the first one let go
        blocked, ctx = ops.conv2d_forward(x, w, b, (1, 1), pads, need_ctx=False)
        assert ctx is None
        np.testing.assert_allclose(blocked, whole, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            blocked, GenericNumpyOps().conv2d_forward(x, w, b, (1, 1), pads)[0], rtol=1e-5, atol=1e-5
        )


def test_numpy_conv_keeps_at_most_spare_patch_bytes_of_patch_matrices(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = NumpyOps()
    monkeypatch.setattr(ops, "spare_patch_bytes", 100_000)
    rng = np.random.default_rng(11)
    w = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    for n in range(1, 30):  # every batch size its own patch shape (18 rows · n·6·8 columns · 4 bytes)
        x = rng.standard_normal((n, 6, 6, 2)).astype(np.float32)
        _, ctx = ops.conv2d_forward(x, w, None, (1, 1), (1, 1, 1, 1))
        ops.conv2d_backward(np.ones((n, 6, 6, 4), np.float32), ctx, w, x.shape, (1, 1), (1, 1, 1, 1), True)
        kept = [c.cols.nbytes for c in ops._spare_patches if c.cols is not None]
        assert sum(kept) <= 100_000 and (sum(kept) > 0 or 18 * n * 48 * 4 > 100_000)


def test_numpy_conv_reuses_zeroed_buffers_only_for_the_same_layout() -> None:
    # 6×6 images padded by 1 and 8×8 images unpadded share a buffer size (8×8 padded pixels), not
    # the pixels they write: the second must not find the first's pixels in its padding, nor δ rows
    rng = np.random.default_rng(12)
    w = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)
    ops, ref = NumpyOps(), GenericNumpyOps()
    cases = [(rng.standard_normal((2, 6, 6, 2)).astype(np.float32), (1, 1, 1, 1))]
    cases.append((rng.standard_normal((2, 8, 8, 2)).astype(np.float32) * 5, (0, 0, 0, 0)))
    for x, pads in cases * 3:
        u, ctx = ops.conv2d_forward(x, w, None, (1, 1), pads)
        u0, ctx0 = ref.conv2d_forward(x, w, None, (1, 1), pads)
        np.testing.assert_allclose(u, u0, rtol=1e-5, atol=1e-5)
        du = rng.standard_normal(u.shape).astype(np.float32)
        for got, want in zip(
            ops.conv2d_backward(du, ctx, w, x.shape, (1, 1), pads, True),
            ref.conv2d_backward(du, ctx0, w, x.shape, (1, 1), pads, True),
            strict=True,
        ):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_numpy_conv_kept_buffers_survive_threads_predicting_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import threading

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: take, give back and evict interleave
    try:
        ops = NumpyOps()
        monkeypatch.setattr(ops, "spare_patch_bytes", 20_000)  # evictions of patch matrices too
        rng = np.random.default_rng(13)
        w = rng.standard_normal((3, 3, 2, 2)).astype(np.float32)
        xs = [rng.standard_normal((1 + i % 4, 6 + i // 4, 6, 2)).astype(np.float32) for i in range(16)]
        want = [GenericNumpyOps().conv2d_forward(x, w, None, (1, 1), (1, 1, 1, 1))[0] for x in xs]
        errors: list[str] = []

        def work(t: int) -> None:
            try:
                for r in range(400):
                    i = (r * 7 + t) % 16
                    y = ops.conv2d_forward(xs[i], w, None, (1, 1), (1, 1, 1, 1), need_ctx=r % 2 == 0)[0]
                    np.testing.assert_allclose(y, want[i], rtol=1e-5, atol=1e-5)
            except Exception as e:  # reported below, with the thread's failure
                errors.append(repr(e))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors[:3]
    finally:
        sys.setswitchinterval(old)
