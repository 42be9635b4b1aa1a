"""Conv1D, MaxPooling1D, GlobalMaxPooling1D and GlobalAveragePooling1D: forward values against direct
float64 loops, finite-difference gradients (also on the other backends), Keras's documented shapes,
names, configs and errors, save/load, and a small 1-D conv net that learns from random sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.config import layer_entry
from xpnet.gradcheck import check_layer_gradients
from xpnet.layers import (
    Conv1D,
    Dense,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    Input,
    MaxPooling1D,
)
from xpnet.params import ParamStore
from xpnet.saving import layer_from_config


def seq_pads(steps: int, span: int, stride: int, padding: str) -> tuple[int, int]:
    """Output steps and padding before, from Keras's documented rules, written out independently."""
    if padding == "valid":
        return (steps - span) // stride + 1, 0
    if padding == "causal":
        return (steps + span - 1 - span) // stride + 1, span - 1
    out = (steps + stride - 1) // stride
    return out, max((out - 1) * stride + span - steps, 0) // 2


def conv1d_reference(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: str, dilation: int
) -> np.ndarray:
    """y[n, t, f] = Σ_{i, c} x[n, t·stride + i·dilation − before, c] · w[i, c, f] + b[f], x zero outside."""
    n, steps, _ = x.shape
    k, _, f = w.shape
    out, before = seq_pads(steps, (k - 1) * dilation + 1, stride, padding)
    y = np.zeros((n, out, f))
    for t in range(out):
        for i in range(k):
            src = t * stride + i * dilation - before
            if 0 <= src < steps:
                y[:, t, :] += x[:, src, :] @ w[i]
    return y + b


def maxpool1d_reference(x: np.ndarray, size: int, stride: int, padding: str) -> np.ndarray:
    n, steps, c = x.shape
    out, before = seq_pads(steps, size, stride, padding)
    y = np.empty((n, out, c))
    for t in range(out):
        lo = t * stride - before
        y[:, t, :] = x[:, max(lo, 0) : lo + size, :].max(axis=1)
    return y


def predict_with(
    layer: xpnet.layers.Layer, x: np.ndarray, backend: str = "numpy", dtype: str = "float64"
) -> np.ndarray:
    with xpnet.use_backend(backend):
        model = xpnet.Sequential([Input(x.shape[1:]), layer], seed=3, dtype=dtype)
    return model.predict(x, verbose=0)


CONV1D_CASES = [
    # steps, channels, filters, kernel, strides, padding, dilation
    (9, 2, 3, 3, 1, "valid", 1),
    (9, 2, 3, 3, 1, "same", 1),
    (10, 3, 2, 4, 1, "same", 1),
    (11, 2, 3, 3, 2, "valid", 1),
    (10, 1, 2, 5, 3, "same", 1),
    (12, 2, 3, 3, 1, "causal", 1),
    (12, 2, 3, 3, 2, "causal", 1),
    (12, 2, 2, 3, 1, "valid", 2),
    (12, 2, 2, 2, 1, "same", 3),
    (12, 2, 2, 3, 1, "causal", 4),
]


@pytest.mark.parametrize(("steps", "channels", "filters", "kernel", "strides", "padding", "dilation"), CONV1D_CASES)
def test_conv1d_forward_matches_direct_loops(
    steps: int, channels: int, filters: int, kernel: int, strides: int, padding: str, dilation: int, backend: str
) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, steps, channels))
    layer = Conv1D(
        filters, kernel, strides=strides, padding=padding, dilation_rate=dilation, bias_initializer="random_normal"
    )
    with xpnet.use_backend(backend):
        model = xpnet.Sequential([Input((steps, channels)), layer], seed=3, dtype="float64")
    w, b = layer.get_weights()
    assert w.shape == (kernel, channels, filters) and b.shape == (filters,)
    expected = conv1d_reference(x, w, b, strides, padding, dilation)
    assert model.output_shape == (None, *expected.shape[1:])
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("steps", "channels", "filters", "kernel", "strides", "padding", "dilation"), CONV1D_CASES)
def test_conv1d_gradients_match_finite_differences(
    steps: int, channels: int, filters: int, kernel: int, strides: int, padding: str, dilation: int
) -> None:
    layer = Conv1D(
        filters, kernel, strides, padding, dilation_rate=dilation, activation="tanh", bias_initializer="random_normal"
    )
    result = check_layer_gradients(layer, (steps, channels), batch_size=2, max_elements=None)
    assert result.passed, str(result)
    assert [w.name for w in result.weights] == ["input", "conv1d/kernel", "conv1d/bias"]
    assert result.max_rel_error < 1e-6


@pytest.mark.filterwarnings("ignore:.*outside every window")
@pytest.mark.parametrize(
    ("size", "strides", "padding"), [(2, None, "valid"), (3, 2, "same"), (3, 1, "valid"), (2, 3, "same")]
)
@pytest.mark.parametrize("steps", [7, 8])
def test_max_pooling1d_forward_and_gradients(
    size: int, strides: int | None, padding: str, steps: int, backend: str
) -> None:
    x = np.random.default_rng(2).standard_normal((3, steps, 2))
    got = predict_with(MaxPooling1D(size, strides, padding), x, backend)
    np.testing.assert_array_equal(got, maxpool1d_reference(x, size, strides or size, padding))
    result = check_layer_gradients(MaxPooling1D(size, strides, padding), (steps, 2), batch_size=2, max_elements=None)
    assert result.passed, str(result)


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling1d_forward_and_gradients(keepdims: bool, backend: str) -> None:
    x = np.random.default_rng(3).standard_normal((4, 6, 3))
    for cls, reduce in ((GlobalMaxPooling1D, np.max), (GlobalAveragePooling1D, np.mean)):
        want = np.array([[reduce(x[n, :, c]) for c in range(3)] for n in range(4)])
        got = predict_with(cls(keepdims=keepdims), x, backend)
        np.testing.assert_allclose(got, want[:, None, :] if keepdims else want, rtol=1e-13)
        result = check_layer_gradients(cls(keepdims=keepdims), (6, 3), batch_size=3, max_elements=None)
        assert result.passed, str(result)


@pytest.mark.parametrize(
    "layer",
    [
        Conv1D(3, 3, padding="same", activation="tanh"),
        Conv1D(2, 2, dilation_rate=2, padding="causal"),
        MaxPooling1D(3, 2, "same"),
        GlobalMaxPooling1D(),
        GlobalAveragePooling1D(keepdims=True),
    ],
    ids=repr,
)
def test_1d_layers_backward_on_every_backend_passes_the_gradient_check(layer: xpnet.layers.Layer, backend: str) -> None:
    result = check_layer_gradients(layer, (7, 2), batch_size=2, max_elements=None, backend=backend)
    assert result.passed, str(result)


def test_global_max_pooling1d_splits_the_gradient_between_tied_maxima() -> None:
    layer = GlobalMaxPooling1D()
    layer.build((4, 1))
    ops = xpnet.get_backend("numpy")
    ParamStore(ops, [layer], np.zeros(0), "float64")
    y = layer.forward(np.array([[[1.0], [3.0], [3.0], [0.0]]]), training=True)
    dx = layer.backward(np.ones((1, 1)))
    assert y.tolist() == [[3.0]]
    np.testing.assert_array_equal(dx[0, :, 0], [0.0, 0.5, 0.5, 0.0])


def test_keras_documented_shapes() -> None:
    # keras.io Conv1D: (4, 10, 128) through Conv1D(32, 3, activation="relu") gives (4, 8, 32)
    model = xpnet.Sequential([Conv1D(32, 3, activation="relu", input_shape=(10, 128))])
    assert model.output_shape == (None, 8, 32)
    assert model.predict(np.random.default_rng(0).random((4, 10, 128)), verbose=0).shape == (4, 8, 32)
    # keras.io MaxPooling1D: [1, 2, 3, 4, 5] with pool 2
    x = np.arange(1.0, 6.0).reshape(1, 5, 1)
    assert predict_with(MaxPooling1D(2, 1, "valid"), x).ravel().tolist() == [2, 3, 4, 5]
    with pytest.warns(UserWarning, match="leave the last 1 step"):
        assert predict_with(MaxPooling1D(2, 2, "valid"), x).ravel().tolist() == [2, 4]
    assert predict_with(MaxPooling1D(2, 1, "same"), x).ravel().tolist() == [2, 3, 4, 5, 5]
    # keras.io GlobalMaxPooling1D / GlobalAveragePooling1D
    x3 = np.arange(1.0, 10.0).reshape(3, 3, 1)
    assert predict_with(GlobalMaxPooling1D(), x3).tolist() == [[3.0], [6.0], [9.0]]
    assert predict_with(GlobalAveragePooling1D(), np.ones((2, 3, 4))).shape == (2, 4)
    assert predict_with(GlobalMaxPooling1D(keepdims=True), np.ones((2, 3, 4))).shape == (2, 1, 4)


def test_defaults_names_and_repr_follow_keras() -> None:
    conv = Conv1D(6, 5)
    assert (conv.kernel_size, conv.strides, conv.padding, conv.dilation_rate, conv.use_bias) == (5, 1, "valid", 1, True)
    assert conv.activation.name == "linear"
    pool = MaxPooling1D()
    assert (pool.pool_size, pool.strides, pool.padding) == (2, 2, "valid")
    model = xpnet.Sequential([Conv1D(2, 3, input_shape=(12, 1)), MaxPooling1D(), Conv1D(2, 3), GlobalMaxPooling1D()])
    assert [layer.name for layer in model.layers] == ["conv1d", "max_pooling1d", "conv1d_1", "global_max_pooling1d"]
    assert repr(model.layers[0]) == "Conv1D(2, 3, strides=1, padding='valid', activation='linear', name='conv1d')"
    assert repr(model.layers[1]) == "MaxPooling1D(pool_size=2, strides=2, padding='valid', name='max_pooling1d')"
    assert repr(model.layers[3]) == "GlobalMaxPooling1D(keepdims=False, name='global_max_pooling1d')"
    assert GlobalAveragePooling1D().default_name == "global_average_pooling1d"
    assert xpnet.layers.Conv1D is xpnet.Conv1D and xpnet.layers.Convolution1D is Conv1D
    assert xpnet.layers.MaxPool1D is MaxPooling1D and xpnet.layers.GlobalMaxPool1D is GlobalMaxPooling1D
    assert xpnet.layers.GlobalAvgPool1D is GlobalAveragePooling1D


def test_conv1d_kernel_init_uses_keras_fans() -> None:
    """glorot_uniform limit √(6 / (k·in + k·filters)), Keras's fans for a (k, in, filters) kernel."""
    model = xpnet.Sequential([Conv1D(16, 5, input_shape=(40, 6))], seed=0)
    w = model.layers[0].get_weights()[0]
    limit = np.sqrt(6.0 / (5 * 6 + 5 * 16))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Conv1D(0, 3), r"Conv1D: filters must be a positive integer, received 0"),
        (lambda: Conv1D(2, (3, 3)), r"Conv1D: kernel_size must be a positive integer, received \(3, 3\)"),
        (lambda: Conv1D(2, 3, padding="full"), r"padding must be 'valid', 'same' or 'causal', received 'full'"),
        (lambda: Conv1D(2, 3, strides=2, dilation_rate=2), r"strides > 1 cannot be combined with dilation_rate > 1"),
        (lambda: MaxPooling1D(0), r"MaxPooling1D: pool_size must be a positive integer, received 0"),
        (lambda: MaxPooling1D(2, padding="causal"), r"padding must be 'valid' or 'same', received 'causal'"),
    ],
)
def test_bad_arguments_name_what_was_received(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_channels_first_and_wrong_ranks_are_refused_clearly() -> None:
    with pytest.raises(NotImplementedError, match="channels_last"):
        Conv1D(2, 3, data_format="channels_first")
    with pytest.raises(NotImplementedError, match="groups=1"):
        Conv1D(2, 3, groups=2)
    with pytest.raises(
        ValueError, match=r"expects sequences of shape \(batch, steps, channels\).*\(None, 20\).*reshape\(-1, 20, 1\)"
    ):
        xpnet.Sequential([Conv1D(2, 3, input_shape=(20,))])
    with pytest.raises(
        ValueError, match=r"GlobalMaxPooling1D 'global_max_pooling1d' expects sequences.*\(None, 4, 4, 1\)"
    ):
        xpnet.Sequential([GlobalMaxPooling1D(input_shape=(4, 4, 1))])
    with pytest.raises(ValueError, match=r"kernel of width 9 .* does not fit the 6 input steps"):
        xpnet.Sequential([Conv1D(2, 5, dilation_rate=2, input_shape=(6, 1))])


@pytest.mark.parametrize(
    "layer",
    [
        Conv1D(4, 3, strides=2, padding="same", activation="relu", use_bias=False, name="c"),
        Conv1D(4, 3, padding="causal", dilation_rate=2, kernel_regularizer="l2"),
        MaxPooling1D(3, 1, "same"),
        GlobalMaxPooling1D(keepdims=True),
        GlobalAveragePooling1D(),
    ],
    ids=repr,
)
def test_config_round_trip(layer: xpnet.layers.Layer) -> None:
    again = layer_from_config(layer_entry(layer), {})
    assert type(again) is type(layer) and again.get_config() == layer.get_config()


def test_conv1d_reads_a_keras_style_config() -> None:
    """The config Keras 3 writes for Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu")."""
    entry = {
        "class_name": "Conv1D",
        "config": {
            "name": "conv1d",
            "trainable": True,
            "dtype": "float32",
            "filters": 8,
            "kernel_size": [3],
            "strides": [1],
            "padding": "causal",
            "data_format": "channels_last",
            "dilation_rate": [2],
            "groups": 1,
            "activation": "relu",
            "use_bias": True,
            "kernel_initializer": {
                "module": "keras.initializers",
                "class_name": "GlorotUniform",
                "config": {"seed": None},
            },
            "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {}},
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "activity_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
        },
    }
    layer = layer_from_config(entry, {})
    assert isinstance(layer, Conv1D)
    assert (layer.filters, layer.kernel_size, layer.padding, layer.dilation_rate) == (8, 3, "causal", 2)


def test_save_and_load_keep_the_1d_model(tmp_path: Path) -> None:
    model = xpnet.Sequential(
        [
            Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu", input_shape=(12, 2)),
            MaxPooling1D(),
            Conv1D(3, 3, strides=2, padding="same"),
            GlobalMaxPooling1D(),
            Dense(2),
        ],
        seed=1,
    )
    x = np.random.default_rng(0).standard_normal((5, 12, 2)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    again = xpnet.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    pytest.importorskip("h5py")
    model.save_weights(tmp_path / "m.weights.h5")
    fresh = xpnet.Sequential(
        [
            Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu", input_shape=(12, 2)),
            MaxPooling1D(),
            Conv1D(3, 3, strides=2, padding="same"),
            GlobalMaxPooling1D(),
            Dense(2),
        ],
        seed=2,
    )
    fresh.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))
    import h5py

    with h5py.File(tmp_path / "m.weights.h5") as f:
        assert sorted(f["layers"]) == ["conv1d", "conv1d_1", "dense", "global_max_pooling1d", "max_pooling1d"]
        assert f["layers/conv1d/vars/0"].shape == (3, 2, 4)


def test_tutorial_1d_convnet_learns_from_random_sequences() -> None:
    """A Keras-style 1-D conv net: which of two motifs (rising or falling ramp) hides in a noisy sequence."""
    rng = np.random.default_rng(0)
    n, steps = 256, 32
    x = 0.3 * rng.standard_normal((n, steps, 1)).astype(np.float32)
    y = rng.integers(0, 2, n)
    starts = rng.integers(0, steps - 6, n)
    ramp = np.linspace(-1.0, 1.0, 6, dtype=np.float32)
    for i in range(n):
        x[i, starts[i] : starts[i] + 6, 0] += ramp if y[i] else -ramp
    model = xpnet.Sequential(
        [
            xpnet.Input(shape=(steps, 1)),
            Conv1D(8, 5, activation="relu", padding="same"),
            MaxPooling1D(2),
            Conv1D(8, 3, activation="relu"),
            GlobalMaxPooling1D(),
            Dense(2, activation="softmax"),
        ],
        seed=0,
    )
    model.compile(optimizer=xpnet.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    assert history.history["accuracy"][-1] > 0.9
    assert model.layers[0].get_weights()[0].dtype == np.float32
