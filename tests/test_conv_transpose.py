"""Conv2DTranspose, UpSampling2D and GlobalMaxPooling2D: forward values against direct float64 loops,
finite-difference gradients (also on the other backends), Keras's documented shapes, names, configs
and errors, save/load, and a tiny convolutional autoencoder that learns to reconstruct images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.config import layer_entry
from xpnet.gradcheck import check_layer_gradients
from xpnet.layers import (
    Conv2D,
    Conv2DTranspose,
    Flatten,
    GlobalMaxPooling2D,
    Input,
    MaxPooling2D,
    UpSampling2D,
)
from xpnet.params import ParamStore
from xpnet.saving import layer_from_config


def transpose_geometry(size: int, k: int, s: int, padding: str, op: int | None = None) -> tuple[int, int]:
    """Output size and how many leading positions of the full result are cropped.

    Written from Keras 3's JAX backend rule (not from xpnet's code): the full transposed result has
    (size − 1)·s + k positions. Without output_padding, "valid" keeps them all and pads to
    size·s + max(k − s, 0); "same" gives size·s and drops k − 1 − min(ceil((s + k − 2) / 2), k − 1)
    positions in front. With output_padding op: (size − 1)·s + k − 2·pad + op (pad = k // 2 for
    "same"), and "same" drops k − 1 − min(ceil((k + k % 2 − 2 + op) / 2), k − 1) in front.
    """
    if padding == "valid":
        return (size * s + max(k - s, 0) if op is None else (size - 1) * s + k + op), 0
    pad_len = s + k - 2 if op is None else k + k % 2 - 2 + op
    left = min(pad_len // 2 + pad_len % 2, k - 1)
    length = size * s if op is None else (size - 1) * s + k - 2 * (k // 2) + op
    return length, k - 1 - left


def conv_transpose_reference(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    strides: tuple[int, int],
    padding: str,
    output_padding: tuple[int, int] | None = None,
) -> np.ndarray:
    """Scatter loops: y[n, r·sh + i − cut_h, q·sw + j − cut_w, f] += x[n, r, q, c] · w[i, j, f, c], then + b."""
    n, h, wd, _ = x.shape
    kh, kw, f, _ = w.shape
    ops = output_padding or (None, None)
    oh, cut_h = transpose_geometry(h, kh, strides[0], padding, ops[0])
    ow, cut_w = transpose_geometry(wd, kw, strides[1], padding, ops[1])
    y = np.zeros((n, oh, ow, f))
    for r in range(h):
        for q in range(wd):
            for i in range(kh):
                for j in range(kw):
                    a, bb = r * strides[0] + i - cut_h, q * strides[1] + j - cut_w
                    if 0 <= a < oh and 0 <= bb < ow:
                        y[:, a, bb, :] += x[:, r, q, :] @ w[i, j].T
    return y + b


TRANSPOSE_CASES = [
    # (input h, w, c), filters, kernel, strides, padding
    ((3, 4, 2), 3, (3, 3), (1, 1), "valid"),
    ((3, 4, 2), 3, (3, 3), (1, 1), "same"),
    ((3, 4, 2), 2, (3, 3), (2, 2), "same"),
    ((3, 3, 1), 2, (4, 4), (2, 2), "same"),
    ((3, 4, 2), 2, (2, 3), (3, 2), "valid"),
    ((2, 3, 3), 4, (5, 2), (2, 3), "same"),
    ((4, 3, 2), 2, (2, 2), (2, 2), "valid"),
    ((2, 2, 2), 3, (1, 1), (2, 3), "same"),
]
# the same with output_padding
PADDED_CASES = [
    ((3, 4, 2), 2, (3, 3), (2, 2), "same", (1, 1)),
    ((3, 4, 2), 2, (3, 3), (2, 2), "same", (0, 1)),
    ((3, 3, 1), 2, (4, 4), (2, 2), "same", (1, 0)),
    ((3, 4, 2), 2, (2, 3), (3, 2), "valid", (2, 1)),
    ((2, 3, 3), 2, (5, 2), (2, 3), "same", (1, 2)),
    ((2, 2, 2), 3, (1, 1), (3, 2), "same", (2, 1)),
    ((2, 2, 2), 3, (1, 2), (3, 3), "valid", (2, 0)),
]


@pytest.mark.parametrize(("shape", "filters", "kernel", "strides", "padding"), TRANSPOSE_CASES)
def test_conv_transpose_forward_matches_scatter_loops(
    shape: tuple[int, int, int],
    filters: int,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
    backend: str,
) -> None:
    x = np.random.default_rng(5).standard_normal((3, *shape))
    layer = Conv2DTranspose(filters, kernel, strides, padding, bias_initializer="random_normal")
    with xpnet.use_backend(backend):
        model = xpnet.Sequential([Input(shape), layer], seed=3, dtype="float64")
    w, b = layer.get_weights()
    assert w.shape == (*kernel, filters, shape[2]) and b.shape == (filters,)
    expected = conv_transpose_reference(x, w, b, strides, padding)
    assert model.output_shape == (None, *expected.shape[1:])
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "filters", "kernel", "strides", "padding", "output_padding"), PADDED_CASES)
def test_conv_transpose_with_output_padding_matches_loops_and_finite_differences(
    shape: tuple[int, int, int],
    filters: int,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
    output_padding: tuple[int, int],
    backend: str,
) -> None:
    x = np.random.default_rng(5).standard_normal((2, *shape))
    layer = Conv2DTranspose(filters, kernel, strides, padding, output_padding, bias_initializer="random_normal")
    with xpnet.use_backend(backend):
        model = xpnet.Sequential([Input(shape), layer], seed=3, dtype="float64")
    w, b = layer.get_weights()
    expected = conv_transpose_reference(x, w, b, strides, padding, output_padding)
    assert model.output_shape == (None, *expected.shape[1:])
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-12, atol=1e-12)
    again = Conv2DTranspose(filters, kernel, strides, padding, output_padding, activation="tanh")
    result = check_layer_gradients(again, shape, batch_size=2, max_elements=None, backend=backend)
    assert result.passed, str(result)


@pytest.mark.parametrize(("shape", "filters", "kernel", "strides", "padding"), TRANSPOSE_CASES)
def test_conv_transpose_gradients_match_finite_differences(
    shape: tuple[int, int, int], filters: int, kernel: tuple[int, int], strides: tuple[int, int], padding: str
) -> None:
    layer = Conv2DTranspose(filters, kernel, strides, padding, activation="tanh", bias_initializer="random_normal")
    result = check_layer_gradients(layer, shape, batch_size=2, max_elements=None)
    assert result.passed, str(result)
    assert [w.name for w in result.weights] == ["input", "conv2d_transpose/kernel", "conv2d_transpose/bias"]
    assert result.max_rel_error < 1e-6


@pytest.mark.parametrize(("side", "padding"), [(7, "valid"), (8, "same")])
def test_conv_transpose_is_the_adjoint_of_conv2d(side: int, padding: str) -> None:
    """⟨Conv2D(x; W), y⟩ = ⟨x, Conv2DTranspose(y; W)⟩ with one kernel W: the defining identity.

    Keras's Conv2DTranspose kernel (kh, kw, filters, in) is the kernel (kh, kw, in, out) of the Conv2D
    it transposes, so the same array serves both.
    """
    rng = np.random.default_rng(0)
    conv = xpnet.Sequential(
        [Conv2D(3, 3, strides=2, padding=padding, use_bias=False, input_shape=(side, side, 2))], dtype="float64"
    )
    small = conv.output_shape[1:]
    deconv = xpnet.Sequential(
        [Conv2DTranspose(2, 3, strides=2, padding=padding, use_bias=False, input_shape=small)], dtype="float64"
    )
    assert deconv.output_shape == (None, side, side, 2)
    w = rng.standard_normal((3, 3, 2, 3))
    conv.layers[0].set_weights([w])
    deconv.layers[0].set_weights([w])
    x, y = rng.standard_normal((2, side, side, 2)), rng.standard_normal((2, *small))
    lhs = np.sum(conv.predict(x, verbose=0) * y)
    rhs = np.sum(x * deconv.predict(y, verbose=0))
    assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.parametrize("size", [(2, 2), (1, 2), (3, 1), 2])
def test_up_sampling_forward_and_gradients(size: int | tuple[int, int], backend: str) -> None:
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 2))
    sh, sw = (size, size) if isinstance(size, int) else size
    want = np.empty((2, 3 * sh, 4 * sw, 2))
    for r in range(3 * sh):
        for q in range(4 * sw):
            want[:, r, q, :] = x[:, r // sh, q // sw, :]
    with xpnet.use_backend(backend):
        model = xpnet.Sequential([Input((3, 4, 2)), UpSampling2D(size)], dtype="float64")
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)
    result = check_layer_gradients(UpSampling2D(size), (3, 4, 2), batch_size=2, max_elements=None)
    assert result.passed, str(result)


def bilinear_reference(x: np.ndarray, sh: int, sw: int) -> np.ndarray:
    """Per output pixel: the half-pixel source point, clamped into the image, and its four neighbours' weights."""
    n, h, w, c = x.shape
    y = np.empty((n, h * sh, w * sw, c))
    for r in range(h * sh):
        for q in range(w * sw):
            fr = min(max((r + 0.5) / sh - 0.5, 0.0), h - 1.0)
            fq = min(max((q + 0.5) / sw - 0.5, 0.0), w - 1.0)
            r0, q0 = int(fr), int(fq)
            r1, q1 = min(r0 + 1, h - 1), min(q0 + 1, w - 1)
            a, b = fr - r0, fq - q0
            y[:, r, q, :] = (
                (1 - a) * (1 - b) * x[:, r0, q0, :]
                + (1 - a) * b * x[:, r0, q1, :]
                + a * (1 - b) * x[:, r1, q0, :]
                + a * b * x[:, r1, q1, :]
            )
    return y


@pytest.mark.parametrize("size", [(2, 2), (3, 1), (1, 4)])
def test_bilinear_up_sampling_forward_and_gradients(size: tuple[int, int], backend: str) -> None:
    x = np.random.default_rng(9).standard_normal((2, 3, 4, 2))
    with xpnet.use_backend(backend):
        model = xpnet.Sequential([Input((3, 4, 2)), UpSampling2D(size, interpolation="bilinear")], dtype="float64")
    np.testing.assert_allclose(model.predict(x, verbose=0), bilinear_reference(x, *size), rtol=1e-12, atol=1e-12)
    layer = UpSampling2D(size, interpolation="bilinear")
    result = check_layer_gradients(layer, (3, 4, 2), batch_size=2, max_elements=None, backend=backend)
    assert result.passed, str(result)


def test_bilinear_up_sampling_of_keras_example() -> None:
    """A 1×2 image [0, 4] doubled across: Keras (half-pixel centres, borders repeated) gives [0, 1, 3, 4]."""
    model = xpnet.Sequential([Input((1, 2, 1)), UpSampling2D((1, 2), interpolation="bilinear")])
    assert model.predict(np.array([[[[0.0], [4.0]]]]), verbose=0).ravel().tolist() == [0.0, 1.0, 3.0, 4.0]


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_max_pooling2d_forward_and_gradients(keepdims: bool, backend: str) -> None:
    x = np.random.default_rng(8).standard_normal((3, 4, 5, 2))
    want = np.array([[max(x[n, :, :, c].ravel()) for c in range(2)] for n in range(3)])
    with xpnet.use_backend(backend):
        model = xpnet.Sequential([Input((4, 5, 2)), GlobalMaxPooling2D(keepdims=keepdims)], dtype="float64")
    assert model.output_shape == ((None, 1, 1, 2) if keepdims else (None, 2))
    np.testing.assert_array_equal(model.predict(x, verbose=0), want[:, None, None, :] if keepdims else want)
    result = check_layer_gradients(GlobalMaxPooling2D(keepdims=keepdims), (4, 5, 2), batch_size=2, max_elements=None)
    assert result.passed, str(result)


def test_global_max_pooling2d_splits_the_gradient_between_tied_maxima() -> None:
    layer = GlobalMaxPooling2D()
    layer.build((2, 2, 1))
    ParamStore(xpnet.get_backend("numpy"), [layer], np.zeros(0), "float64")
    layer.forward(np.array([[[[2.0], [5.0]], [[5.0], [5.0]]]]), training=True)
    dx = layer.backward(np.array([[3.0]]))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.0, 1.0], [1.0, 1.0]])


@pytest.mark.parametrize(
    "layer",
    [
        Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu"),
        Conv2DTranspose(2, (2, 3), strides=(3, 2)),
        UpSampling2D((2, 3)),
        GlobalMaxPooling2D(),
        GlobalMaxPooling2D(keepdims=True),
    ],
    ids=repr,
)
def test_2d_layers_backward_on_every_backend_passes_the_gradient_check(layer: xpnet.layers.Layer, backend: str) -> None:
    result = check_layer_gradients(layer, (3, 4, 2), batch_size=2, max_elements=None, backend=backend)
    assert result.passed, str(result)


def test_keras_documented_shapes() -> None:
    # keras.io Conv2DTranspose: (4, 10, 8, 128) through Conv2DTranspose(32, 2, 2, activation="relu") → (4, 20, 16, 32)
    model = xpnet.Sequential([Conv2DTranspose(32, 2, 2, activation="relu", input_shape=(10, 8, 128))])
    assert model.output_shape == (None, 20, 16, 32)
    assert model.predict(np.random.default_rng(0).random((4, 10, 8, 128)), verbose=0).shape == (4, 20, 16, 32)
    # keras.io UpSampling2D: arange(12) as (2, 2, 1, 3), size (1, 2)
    x = np.arange(12.0).reshape(2, 2, 1, 3)
    up = xpnet.Sequential([Input((2, 1, 3)), UpSampling2D(size=(1, 2))]).predict(x, verbose=0)
    assert up.tolist() == [
        [[[0, 1, 2], [0, 1, 2]], [[3, 4, 5], [3, 4, 5]]],
        [[[6, 7, 8], [6, 7, 8]], [[9, 10, 11], [9, 10, 11]]],
    ]
    # keras.io GlobalMaxPooling2D: (2, 4, 5, 3) → (2, 3)
    assert xpnet.Sequential([Input((4, 5, 3)), GlobalMaxPooling2D()]).output_shape == (None, 3)
    # Keras's sizes: valid k > s adds k − s, valid k < s gives size·s, same gives size·s
    for k, s, padding, want in [(3, 1, "valid", 12), (5, 2, "valid", 23), (2, 3, "valid", 30), (5, 2, "same", 20)]:
        out = xpnet.Sequential([Conv2DTranspose(1, k, s, padding, input_shape=(10, 10, 1))]).output_shape
        assert out == (None, want, want, 1)


def test_defaults_names_and_repr_follow_keras() -> None:
    deconv = Conv2DTranspose(6, 5)
    assert (deconv.kernel_size, deconv.strides, deconv.padding, deconv.use_bias) == ((5, 5), (1, 1), "valid", True)
    assert UpSampling2D().size == (2, 2) and UpSampling2D().interpolation == "nearest"
    model = xpnet.Sequential(
        [Conv2DTranspose(2, 3, input_shape=(4, 4, 1)), UpSampling2D(), Conv2DTranspose(1, 2), GlobalMaxPooling2D()]
    )
    names = [layer.name for layer in model.layers]
    assert names == ["conv2d_transpose", "up_sampling2d", "conv2d_transpose_1", "global_max_pooling2d"]
    assert repr(model.layers[0]) == (
        "Conv2DTranspose(2, (3, 3), strides=(1, 1), padding='valid', activation='linear', name='conv2d_transpose')"
    )
    assert repr(model.layers[1]) == "UpSampling2D(size=(2, 2), interpolation='nearest', name='up_sampling2d')"
    assert repr(model.layers[3]) == "GlobalMaxPooling2D(keepdims=False, name='global_max_pooling2d')"
    assert model.layers[0].count_params() == 3 * 3 * 2 * 1 + 2
    assert xpnet.Conv2DTranspose is Conv2DTranspose and xpnet.UpSampling2D is UpSampling2D
    assert xpnet.GlobalMaxPooling2D is GlobalMaxPooling2D and xpnet.layers.GlobalMaxPool2D is GlobalMaxPooling2D
    assert xpnet.layers.Convolution2DTranspose is Conv2DTranspose


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: Conv2DTranspose(0, 3), ValueError, r"Conv2DTranspose: filters must be a positive integer, received 0"),
        (
            lambda: Conv2DTranspose(2, 3, padding="full"),
            ValueError,
            r"padding must be 'valid' or 'same', received 'full'",
        ),
        (
            lambda: Conv2DTranspose(2, 3, 2, output_padding=2),
            ValueError,
            r"smaller than strides \(2, 2\) .* received 2",
        ),
        (lambda: Conv2DTranspose(2, 3, output_padding=(0,)), ValueError, r"output_padding must be .* received \(0,\)"),
        (lambda: Conv2DTranspose(2, 3, dilation_rate=2), NotImplementedError, r"dilation_rate=\(1, 1\) .* received 2"),
        (lambda: UpSampling2D(0), ValueError, r"UpSampling2D: size must be a positive integer or a pair"),
        (lambda: UpSampling2D(interpolation="bicubic"), NotImplementedError, r"received interpolation='bicubic'"),
        (lambda: GlobalMaxPooling2D(data_format="channels_first"), NotImplementedError, r"channels_last"),
    ],
)
def test_bad_arguments_name_what_was_received(make: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make()  # type: ignore[operator]


def test_flat_input_to_a_2d_layer_says_how_to_reshape() -> None:
    with pytest.raises(ValueError, match=r"Conv2DTranspose 'conv2d_transpose' expects images .*\(None, 784\)"):
        xpnet.Sequential([Conv2DTranspose(2, 3, input_shape=(784,))])
    with pytest.raises(ValueError, match=r"UpSampling2D 'up_sampling2d' expects images .*\(None, 5, 3\)"):
        xpnet.Sequential([UpSampling2D(input_shape=(5, 3))])


@pytest.mark.parametrize(
    "layer",
    [
        Conv2DTranspose(4, (3, 2), strides=2, padding="same", activation="relu", use_bias=False, name="up"),
        Conv2DTranspose(2, 3, bias_regularizer="l1"),
        Conv2DTranspose(2, 3, strides=(2, 3), output_padding=(1, 2)),
        UpSampling2D((1, 3)),
        UpSampling2D(3, interpolation="bilinear"),
        GlobalMaxPooling2D(keepdims=True),
    ],
    ids=repr,
)
def test_config_round_trip(layer: xpnet.layers.Layer) -> None:
    again = layer_from_config(layer_entry(layer), {})
    assert type(again) is type(layer) and again.get_config() == layer.get_config()


def test_reads_keras_style_configs() -> None:
    """The configs Keras 3 writes for Conv2DTranspose(16, 3, strides=2, padding="same") and UpSampling2D()."""
    deconv = layer_from_config(
        {
            "class_name": "Conv2DTranspose",
            "config": {
                "name": "conv2d_transpose",
                "trainable": True,
                "dtype": "float32",
                "filters": 16,
                "kernel_size": [3, 3],
                "strides": [2, 2],
                "padding": "same",
                "data_format": "channels_last",
                "dilation_rate": [1, 1],
                "activation": "linear",
                "use_bias": True,
                "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {}},
                "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {}},
                "kernel_regularizer": None,
                "bias_regularizer": None,
                "activity_regularizer": None,
                "kernel_constraint": None,
                "bias_constraint": None,
            },
        },
        {},
    )
    assert isinstance(deconv, Conv2DTranspose) and (deconv.filters, deconv.strides) == (16, (2, 2))
    up = layer_from_config(
        {
            "class_name": "UpSampling2D",
            "config": {
                "name": "up_sampling2d",
                "trainable": True,
                "dtype": "float32",
                "size": [2, 2],
                "data_format": "channels_last",
                "interpolation": "nearest",
            },
        },
        {},
    )
    assert isinstance(up, UpSampling2D) and up.size == (2, 2)


def autoencoder(seed: int) -> xpnet.Sequential:
    return xpnet.Sequential(
        [
            Input((8, 8, 1)),
            Conv2D(8, 3, padding="same", activation="relu"),
            MaxPooling2D(2),
            Conv2D(4, 3, padding="same", activation="relu"),
            MaxPooling2D(2),
            Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu"),
            UpSampling2D(2),
            Conv2D(1, 3, padding="same", activation="sigmoid"),
            # xpnet's losses take (batch, k) outputs, so the reconstruction is compared as 64 pixels
            Flatten(),
        ],
        seed=seed,
    )


def test_save_and_load_keep_the_autoencoder(tmp_path: Path) -> None:
    model = autoencoder(1)
    x = np.random.default_rng(0).random((3, 8, 8, 1)).astype(np.float32)
    model.save(tmp_path / "ae.keras")
    again = xpnet.models.load_model(tmp_path / "ae.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    h5py = pytest.importorskip("h5py")
    model.save_weights(tmp_path / "ae.weights.h5")
    fresh = autoencoder(2)
    fresh.load_weights(tmp_path / "ae.weights.h5")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))
    with h5py.File(tmp_path / "ae.weights.h5") as f:
        assert f["layers/conv2d_transpose/vars/0"].shape == (3, 3, 8, 4)
        assert "up_sampling2d" in f["layers"]


def test_tutorial_conv_autoencoder_lowers_its_reconstruction_loss() -> None:
    """Keras's image-denoising pattern in miniature: encode 8×8 images of bars, decode with
    Conv2DTranspose and UpSampling2D, train with fit on (x, x)."""
    rng = np.random.default_rng(0)
    n = 256
    x = np.zeros((n, 8, 8, 1), np.float32)
    rows, cols, vertical = rng.integers(0, 8, n), rng.integers(0, 8, n), rng.integers(0, 2, n)
    for i in range(n):
        if vertical[i]:
            x[i, :, cols[i], 0] = 1.0
        else:
            x[i, rows[i], :, 0] = 1.0
    model = autoencoder(0)
    model.compile(optimizer=xpnet.optimizers.Adam(0.01), loss="binary_crossentropy")
    model.summary(print_fn=lambda *a, **k: None)
    history = model.fit(x, x.reshape(n, 64), epochs=12, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.6 * losses[0], losses
    assert model.predict(x[:4], verbose=0).shape == (4, 64)
    deconv = next(layer for layer in model.layers if isinstance(layer, Conv2DTranspose))
    assert deconv.get_weights()[0].dtype == np.float32


@pytest.mark.parametrize("which", ["1d", "2d"])
def test_fit_with_the_new_layers_reads_the_device_a_fixed_number_of_times_per_epoch(which: str) -> None:
    """No hidden host reads in the new layers' training step: the strict foreign-device backend counts them."""
    pytest.importorskip("array_api_strict")
    from array_api_strict._array_object import Array

    from xpnet.layers import Conv1D, Dense, GlobalMaxPooling1D, MaxPooling1D

    rng = np.random.default_rng(0)
    shape = (12, 2) if which == "1d" else (4, 4, 2)
    x, y = rng.standard_normal((64, *shape)).astype(np.float32), rng.integers(0, 3, 64)
    counts = {}
    for bs in (32, 4):
        if which == "1d":
            stack = [Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"), MaxPooling1D(), Conv1D(4, 2)]
            stack += [GlobalMaxPooling1D()]
        else:
            stack = [Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu"), UpSampling2D()]
            stack += [Conv2D(2, 3, strides=2), GlobalMaxPooling2D()]
        model = xpnet.Sequential([Input(shape), *stack, Dense(3, "softmax")], seed=0)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="strict")
        ops = model.ops
        before = ops.syncs
        hidden: list[str] = []
        originals = {k: getattr(Array, k) for k in ("__float__", "__bool__", "__int__", "__index__")}
        try:
            for k in originals:
                setattr(Array, k, lambda self, k=k, seen=hidden, orig=originals: seen.append(k) or orig[k](self))
            model.fit(x, y, batch_size=bs, epochs=2, verbose=0)
        finally:
            for k, f in originals.items():
                setattr(Array, k, f)
        counts[bs] = ops.syncs - before
        assert hidden == [], f"implicit device reads in fit: {hidden[:5]}"
    assert counts[32] == counts[4] <= 2 * 2


@pytest.mark.parametrize("which", ["1d", "2d"])
def test_sgd_inside_backprop_matches_the_separate_update(which: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain SGD may update Conv1D's and Conv2DTranspose's kernels as backprop reaches them (InPlaceSGD):
    each layer must compute ∂L/∂x from the kernel before the sink changes it, so both routes train alike."""
    from xpnet.backend.numpy_ops import NumpyOps
    from xpnet.layers import Conv1D, Dense, GlobalMaxPooling1D

    rng = np.random.default_rng(0)
    shape = (12, 2) if which == "1d" else (3, 3, 2)
    x, y = rng.standard_normal((48, *shape)).astype(np.float32), rng.integers(0, 3, 48)
    runs = []
    for in_backward in (True, False):
        monkeypatch.setattr(NumpyOps, "runs_in_one_call", lambda self, method, on=in_backward: on)
        if which == "1d":
            stack = [Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"), Conv1D(3, 3, strides=2)]
            stack += [GlobalMaxPooling1D()]
        else:
            stack = [Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu"), Conv2DTranspose(2, 2)]
            stack += [GlobalMaxPooling2D()]
        model = xpnet.Sequential([Input(shape), *stack, Dense(3, "softmax")], seed=0)
        model.compile(xpnet.optimizers.SGD(0.1), "sparse_categorical_crossentropy", backend="numpy")
        assert model.plan.updates_in_backprop == in_backward
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("functional", [False, True])
def test_fit_on_an_image_output_says_what_the_output_is_and_how_to_flatten_it(functional: bool) -> None:
    """An autoencoder ending in an image (Keras's pattern) cannot be fitted yet: the error names the model's
    real output shape and the way around it, instead of a wrong "(None, 1)" or a NumPy broadcast error."""
    rng = np.random.default_rng(0)
    x = rng.random((8, 5, 5, 1)).astype(np.float32)
    stack = [Conv2DTranspose(2, 2, strides=2, padding="same"), Conv2D(1, 3, padding="same", activation="sigmoid")]
    if functional:
        inputs = Input((5, 5, 1))
        h = inputs
        for layer in stack:
            h = layer(h)
        model: xpnet.Sequential | xpnet.Model = xpnet.Model(inputs, h)
    else:
        model = xpnet.Sequential([Input((5, 5, 1)), *stack])
    model.compile("adam", "binary_crossentropy")
    for y in (rng.random((8, 10, 10, 1)), rng.random((8, 1))):
        with pytest.raises(ValueError, match=r"output has shape \(None, 10, 10, 1\).*Flatten\(\)"):
            model.fit(x, y, epochs=1, verbose=0)
