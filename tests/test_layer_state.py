"""Non-trainable state and freezing: BatchNormalization, Normalization, `trainable = False`, weight handles,
and that the optimizer, penalties, saving, checkpoints and MPI treat the state as Keras does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import BatchNormalization, Conv2D, Dense, Flatten, Normalization, Sequential
from xpnet.checkpoint import Checkpoint
from xpnet.gradcheck import check_layer_gradients
from xpnet.summary import readable_size, table


def _data(n: int = 96, features: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, features)) * 2 + 0.5).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 1).astype(np.int64)


def _bn_model(seed: int = 3, features: int = 6, **bn: Any) -> Sequential:
    return Sequential(
        [Dense(8, "relu", input_shape=(features,)), BatchNormalization(**bn), Dense(2, "softmax")], seed=seed
    )


def _bn_reference(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> tuple[np.ndarray, ...]:
    """Batch statistics over every axis but the last, biased variance (Keras), in float64."""
    x2 = x.reshape(-1, x.shape[-1]).astype(np.float64)
    mean, var = x2.mean(axis=0), x2.var(axis=0)
    y = (x2 - mean) / np.sqrt(var + eps) * gamma + beta
    return y.reshape(x.shape), mean, var


# ------------------------------------------------------------------------------------ BatchNormalization
@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 3, 5)], ids=["after-dense", "after-conv"])
def test_batch_norm_forward_and_moving_stats_match_numpy(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float64)
    model = Sequential([BatchNormalization(momentum=0.9, epsilon=1e-3, input_shape=shape[1:])], dtype="float64")
    bn = model.layers[0]
    gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    mm0, mv0 = rng.standard_normal(5), rng.uniform(0.5, 2, 5)
    model.set_weights([gamma, beta, mm0, mv0])
    ops = model.ops
    assert ops is not None
    y = ops.to_numpy(bn.forward(ops.asarray(x), training=True))
    ref, mean, var = _bn_reference(x, gamma, beta, 1e-3)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    got = model.get_weights()
    np.testing.assert_allclose(got[2], mm0 * 0.9 + mean * 0.1, rtol=1e-13)
    np.testing.assert_allclose(got[3], mv0 * 0.9 + var * 0.1, rtol=1e-13)
    inference = model.predict(x)
    expect = (x - got[2]) / np.sqrt(got[3] + 1e-3) * gamma + beta
    np.testing.assert_allclose(inference, expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(5,), (3, 3, 4)], ids=["rank2", "rank4"])
@pytest.mark.parametrize("flags", [{}, {"center": False}, {"scale": False}], ids=["both", "no-center", "no-scale"])
def test_batch_norm_gradients_match_finite_differences(shape: tuple[int, ...], flags: dict[str, bool]) -> None:
    layer = BatchNormalization(gamma_initializer="random_normal", beta_initializer="random_normal", **flags)
    result = check_layer_gradients(layer, shape, batch_size=6, max_elements=None, directions=3)
    assert result.passed, str(result)
    names = [w.name.split("/")[-1] for w in result.weights]
    assert names == [
        "input",
        *(["gamma"] if flags.get("scale", True) else []),
        *(["beta"] if flags.get("center", True) else []),
    ]


def test_batch_norm_model_gradients_after_dense_and_conv_check_in_float64() -> None:
    rng = np.random.default_rng(2)
    dense = _bn_model()
    dense.compile("sgd", "sparse_categorical_crossentropy")
    assert dense.check_gradients(rng.standard_normal((7, 6)), rng.integers(0, 2, 7)).passed
    conv = Sequential(
        [Conv2D(3, 3, input_shape=(5, 5, 2)), BatchNormalization(), Flatten(), Dense(3, "softmax")], seed=1
    )
    conv.compile("adam", "sparse_categorical_crossentropy")
    result = conv.check_gradients(rng.standard_normal((4, 5, 5, 2)), rng.integers(0, 3, 4))
    assert result.passed, str(result)
    assert [w.name for w in result.weights][2:4] == ["batch_normalization/gamma", "batch_normalization/beta"]


def test_batch_norm_weights_come_in_keras_order_and_only_gamma_beta_train() -> None:
    model = _bn_model()
    bn = model.layers[1]
    assert [w.name for w in bn.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.path for w in model.non_trainable_weights] == [
        "batch_normalization/moving_mean",
        "batch_normalization/moving_variance",
    ]
    assert [w.path for w in model.trainable_weights] == [
        "dense/kernel",
        "dense/bias",
        "batch_normalization/gamma",
        "batch_normalization/beta",
        "dense_1/kernel",
        "dense_1/bias",
    ]
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(6, 8), (8,), (8,), (8,), (8,), (8,), (8, 2), (2,)]
    np.testing.assert_array_equal(model.get_weights()[5], np.ones(8, np.float32))  # moving_variance starts at 1
    assert model.count_params() == 56 + 32 + 18 and bn.count_params() == 32


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizer_and_penalties_never_change_non_trainable_weights(optimizer: str) -> None:
    """momentum=1 keeps the moving statistics fixed in the forward: any change would be the optimizer's."""
    x, y = _data()
    model = Sequential(
        [
            Dense(8, "relu", input_shape=(6,), kernel_regularizer="l2"),
            BatchNormalization(momentum=1.0, gamma_regularizer="l1", beta_regularizer="l2"),
            Dense(2, "softmax"),
        ],
        seed=4,
    )
    frozen = Sequential([Dense(8, "relu", input_shape=(6,), kernel_regularizer="l2"), Dense(2, "softmax")], seed=4)
    frozen.layers[0].trainable = False
    for m in (model, frozen):
        m.compile(optimizer, "sparse_categorical_crossentropy")
    before = [w.numpy() for w in model.non_trainable_weights + frozen.non_trainable_weights]
    trained = [w.numpy() for w in model.trainable_weights + frozen.trainable_weights]
    for m in (model, frozen):
        m.fit(x, y, batch_size=16, epochs=2, verbose=0)
    after = [w.numpy() for w in model.non_trainable_weights + frozen.non_trainable_weights]
    assert len(before) == 4
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(
        not np.array_equal(a, w.numpy())
        for a, w in zip(trained, model.trainable_weights + frozen.trainable_weights, strict=True)
    )


def test_plain_sgd_updates_batch_norm_inside_backprop_like_the_gradient_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    from xpnet.backend.numpy_ops import NumpyOps

    x, y = _data()
    runs = []
    for in_backward in (True, False):
        monkeypatch.setattr(NumpyOps, "runs_in_one_call", lambda self, method, on=in_backward: on)
        model = _bn_model()
        model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
        assert model.plan.updates_in_backprop == in_backward
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_training_moves_the_moving_statistics_and_inference_uses_them() -> None:
    x, y = _data()
    model = _bn_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    mm, mv = (w.numpy() for w in model.non_trainable_weights)
    assert not np.allclose(mm, 0) and not np.allclose(mv, 1)
    assert model.store.flat.dtype == np.float32 and all(w.dtype == "float32" for w in model.weights)
    h = np.maximum(x @ model.get_weights()[0] + model.get_weights()[1], 0).astype(np.float64)
    g, b = model.get_weights()[2:4]
    z = (h - mm) / np.sqrt(mv + 1e-3) * g + b
    k, c = model.get_weights()[6:]
    u = z @ k + c
    p = np.exp(u - u.max(1, keepdims=True))
    np.testing.assert_allclose(model.predict(x), p / p.sum(1, keepdims=True), rtol=1e-4, atol=1e-5)


def test_compute_gradients_leaves_the_moving_statistics_alone() -> None:
    x, y = _data()
    model = _bn_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = model.get_weights()
    loss, grads = model.compute_gradients(x, y)
    assert len(grads) == 6 and np.isfinite(loss)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_compute_gradients_and_trace_leave_statistics_alone_while_an_unfreeze_awaits_compile() -> None:
    x, y = _data()
    model = _bn_model()
    model.layers[1].trainable = False
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.layers[1].trainable = True  # applied at the next compile; the forward already trains
    before = model.get_weights()
    model.compute_gradients(x, y)
    model.trace(x, y)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_batch_norm_errors_name_what_was_received() -> None:
    with pytest.raises(ValueError, match=r"axis=-1; received axis=1 for inputs of shape \(None, 4, 4, 3\)"):
        Sequential([BatchNormalization(axis=1, input_shape=(4, 4, 3))])
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\], received 1.5"):
        BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="epsilon must be a positive number, received 0"):
        BatchNormalization(epsilon=0)
    with pytest.raises(ValueError, match=r"synchronized=True\) is not supported"):
        BatchNormalization(synchronized=True)


# ------------------------------------------------------------------------------------ freezing
def test_trainable_false_takes_effect_at_compile_and_freezes_batch_norm() -> None:
    x, y = _data()
    model = _bn_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    bn = model.layers[1]
    bn.trainable = False
    assert [w.trainable for w in bn.weights] == [False] * 4 and len(model.trainable_weights) == 4
    model.compile("adam", "sparse_categorical_crossentropy")
    assert model.store.trainable_size == 56 + 18
    frozen = [w.numpy() for w in bn.weights]
    first = model.get_weights()[0]
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    for a, w in zip(frozen, bn.weights, strict=True):
        np.testing.assert_array_equal(a, w.numpy())  # inference mode: the moving statistics stay
    assert not np.array_equal(first, model.get_weights()[0])  # the layer below still trains through it
    bn.trainable = True
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert not np.array_equal(frozen[2], bn.weights[2].numpy())


def test_unfreezing_batch_norm_without_gamma_and_beta_moves_its_statistics_back_at_compile() -> None:
    # no weight changes trainability, yet the moving statistics must rejoin the moving state
    # (restored around compute_gradients and trace, averaged across MPI ranks)
    x, y = _data()
    model = _bn_model(center=False, scale=False)
    model.layers[1].trainable = False
    model.build((None, 6))
    assert model.store.moving.shape == (0,)
    model.layers[1].trainable = True
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model.store.moving.shape == (16,)
    before = model.get_weights()
    model.compute_gradients(x, y)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_frozen_layer_runs_batch_norm_in_inference_mode_during_training() -> None:
    x, _ = _data(8)
    model = Sequential([BatchNormalization(input_shape=(6,))], dtype="float64")
    model.set_weights([np.full(6, 2.0), np.full(6, 0.5), np.full(6, 1.0), np.full(6, 4.0)])
    model.layers[0].trainable = False
    ops = model.ops
    assert ops is not None
    x = x.astype(np.float64)
    y = ops.to_numpy(model.layers[0].forward(ops.asarray(x), training=True))
    np.testing.assert_allclose(y, (x - 1.0) / np.sqrt(4.0 + 1e-3) * 2.0 + 0.5, rtol=1e-12)


def test_trainable_false_in_the_constructor_freezes_as_in_keras() -> None:
    x, y = _data()
    model = Sequential(
        [
            Dense(8, "relu", input_shape=(6,), trainable=False),
            BatchNormalization(trainable=False),
            Dense(2, "softmax"),
        ],
        seed=3,
    )
    assert [layer.trainable for layer in model.layers] == [False, False, True]
    assert [w.path for w in model.trainable_weights] == ["dense_1/kernel", "dense_1/bias"]
    model.compile("adam", "sparse_categorical_crossentropy")
    before = model.get_weights()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    for a, b in zip(before[:6], model.get_weights()[:6], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not Conv2D(2, 3, trainable=False).trainable


def test_a_fully_frozen_model_cannot_fit() -> None:
    x, y = _data()
    model = _bn_model()
    model.trainable = False  # Keras: sets every layer's flag
    assert model.trainable is False and model.trainable_weights == [] and len(model.non_trainable_weights) == 8
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"no trainable parameters \(every layer with weights has trainable=False\)"):
        model.fit(x, y, verbose=0)


# ------------------------------------------------------------------------------------ weight handles
def test_variables_read_and_assign_through_the_flat_store() -> None:
    model = _bn_model()
    kernel = model.weights[0]
    assert (kernel.name, kernel.path, kernel.shape, kernel.dtype, kernel.trainable) == (
        "kernel",
        "dense/kernel",
        (6, 8),
        "float32",
        True,
    )
    new = np.arange(48, dtype=np.float64).reshape(6, 8)
    kernel.assign(new)
    np.testing.assert_array_equal(model.get_weights()[0], new.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(kernel), kernel.numpy())
    assert "path=dense/kernel" in repr(kernel)
    with pytest.raises(ValueError, match=r"dense/kernel.assign: expected shape \(6, 8\), received \(8, 6\)"):
        kernel.assign(new.T)
    assert Dense(3).weights == []


# ------------------------------------------------------------------------------------ saving and resuming
def test_save_weights_and_model_files_carry_the_moving_statistics(tmp_path: Path) -> None:
    x, y = _data()
    model = _bn_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    model.save_weights(tmp_path / "w.npz")
    other = _bn_model(seed=9)
    other.load_weights(tmp_path / "w.npz")
    for a, b in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    model.layers[0].trainable = False  # saved in the layer's config, as Keras does
    model.save(tmp_path / "m.keras")
    loaded = xpnet.models.load_model(tmp_path / "m.keras")
    assert loaded.layers[0].trainable is False and isinstance(loaded.layers[1], BatchNormalization)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_save_load_and_resume_continue_a_batch_norm_run_bit_for_bit(tmp_path: Path) -> None:
    x, y = _data(100)

    def fresh() -> Sequential:
        m = _bn_model()
        m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return m

    straight = fresh()
    straight.fit(x, y, batch_size=16, epochs=4, verbose=0)

    first = fresh()
    first.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[Checkpoint(tmp_path / "ck")])
    first.save(tmp_path / "m.keras")
    resumed = fresh()
    resumed.fit(x, y, batch_size=16, epochs=4, verbose=0, resume_from=tmp_path / "ck")
    loaded = xpnet.models.load_model(tmp_path / "m.keras")
    loaded.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for a, b, c in zip(straight.get_weights(), resumed.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_resuming_with_other_trainable_weights_is_refused(tmp_path: Path) -> None:
    x, y = _data()
    model = _bn_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[Checkpoint(tmp_path)])
    other = _bn_model()
    other.layers[0].trainable = False
    other.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(xpnet.checkpoint.CheckpointError, match="trainable weights"):
        other.fit(x, y, batch_size=32, epochs=2, verbose=0, resume_from=tmp_path)


# ------------------------------------------------------------------------------------ Normalization
def test_normalization_adapts_per_feature_as_keras() -> None:
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((50, 4)) * [1, 2, 3, 0] + [0, 1, -2, 7]).astype(np.float32)
    norm = Normalization()
    norm.adapt(x)
    model = Sequential([norm])
    mean, var = x.astype(np.float64).mean(0), x.astype(np.float64).var(0)
    np.testing.assert_allclose(model.get_weights()[0], mean, rtol=1e-6)
    expect = (x - mean) / np.maximum(np.sqrt(var), 1e-7)  # the constant feature divides by the floor, not 0
    np.testing.assert_allclose(model.predict(x), expect, rtol=1e-4, atol=1e-4)
    assert [w.trainable for w in model.weights] == [False, False] and model.trainable_weights == []


def test_normalization_over_images_keeps_per_channel_statistics_and_axis_none_one() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((10, 4, 4, 3)) * [1.0, 2.0, 3.0]
    per_channel = Normalization()
    per_channel.adapt(x)
    assert per_channel.adapted_values is not None
    np.testing.assert_allclose(per_channel.adapted_values[1], x.var(axis=(0, 1, 2)))
    overall = Normalization(axis=None)
    overall.adapt(x)
    model = Sequential([overall], dtype="float64")
    np.testing.assert_allclose(model.predict(x), (x - x.mean()) / x.std(), rtol=1e-10)


def test_normalization_with_given_statistics_has_no_weights_and_round_trips(tmp_path: Path) -> None:
    x, _ = _data()
    model = Sequential([Normalization(mean=[1.0] * 6, variance=[4.0] * 6, input_shape=(6,)), Dense(2, "softmax")])
    assert len(model.get_weights()) == 2
    ops = model.ops  # the layer computes on the model's backend: device arrays in and out
    np.testing.assert_allclose(ops.to_numpy(model.layers[0].forward(ops.asarray(x))), (x - 1) / 2, rtol=1e-6)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.save(tmp_path / "m.keras")
    np.testing.assert_array_equal(xpnet.models.load_model(tmp_path / "m.keras").predict(x), model.predict(x))


def test_adapted_normalization_saves_loads_and_trains_before_a_model(tmp_path: Path) -> None:
    x, y = _data()
    norm = Normalization()
    norm.adapt(x)
    model = Sequential([norm, Dense(4, "relu"), Dense(2, "softmax")], seed=2)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0], x.mean(0), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = xpnet.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_normalization_before_adapt_is_an_error() -> None:
    model = Sequential([Normalization(input_shape=(3,)), Dense(2)])
    with pytest.raises(ValueError, match=r"no statistics yet: call layer.adapt\(data\)"):
        model.predict(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="mean and variance, or neither"):
        Normalization(mean=0.0)
    with pytest.raises(ValueError, match=r"adapt\(\) received data of shape \(5, 4\)"):
        model.layers[0].adapt(np.ones((5, 4)))


# ------------------------------------------------------------------------------------ summary
def test_summary_counts_trainable_non_trainable_and_optimizer_params() -> None:
    model = _bn_model()
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    assert lines[0] == 'Model: "sequential"' and lines[1].startswith("┏") and lines[1].endswith("┓")
    row = next(line for line in lines if "batch_normalization (BatchNormalization)" in line)
    assert row.startswith("│ ") and row.endswith(" 32 │") and "(None, 8)" in row
    assert " Total params: 106 (424.00 B)" in lines
    assert " Trainable params: 90 (360.00 B)" in lines
    assert " Non-trainable params: 16 (64.00 B)" in lines
    assert not any("Optimizer" in line for line in lines)
    model.compile("adam", "sparse_categorical_crossentropy")
    lines.clear()
    model.summary(print_fn=lines.append)  # Keras builds the optimizer in fit: none counted after compile
    assert " Total params: 106 (424.00 B)" in lines and not any("Optimizer" in line for line in lines)
    x, y = _data()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    lines.clear()
    model.summary(print_fn=lines.append)
    assert " Optimizer params: 182 (732.00 B)" in lines  # m and v of 90 weights, t, learning rate
    assert " Total params: 288 (1.13 KB)" in lines


def test_summary_of_an_unbuilt_model_and_a_four_column_table() -> None:
    lines: list[str] = []
    Sequential([Dense(3), BatchNormalization()]).summary(print_fn=lines.append)
    assert any("dense (Dense)" in line and "?" in line and "0 (unbuilt)" in line for line in lines)
    rows = [
        ["input_layer (InputLayer)", "(None, 4)", "0", "-"],
        ["dense (Dense)", "(None, 2)", "10", "input_layer[0][0]"],
    ]
    out = table(
        ["Layer (type)", "Output Shape", "Param #", "Connected to"], rows, 108, ["left", "left", "right", "left"]
    )
    assert all(len(line) == 108 for line in out)
    assert out[1].startswith("┃ Layer (type)") and "Connected to" in out[1]
    assert readable_size(266_610 * 4) == "1.02 MB" and readable_size(0) == "0.00 B"


# ------------------------------------------------------------------------------------ MPI
@pytest.mark.mpi
def test_two_ranks_average_their_moving_statistics(tmp_path: Path) -> None:
    from test_distributed import _env, _needs_mpi

    exe = _needs_mpi()
    worker = str(Path(__file__).with_name("mpi_bn_worker.py"))
    subprocess.run([exe, "-n", "2", sys.executable, worker, str(tmp_path / "bn")], env=_env(), check=True, timeout=300)
    with np.load(tmp_path / "bn.0.npz") as a, np.load(tmp_path / "bn.1.npz") as b:
        assert int(a["ranks"]) == 2
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        h = a["h"]
        # momentum 0: after one step the moving statistics are the ranks' shard statistics, averaged
        np.testing.assert_allclose(a["arr_4"], h.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a["arr_5"], (h[:16].var(0) + h[16:].var(0)) / 2, rtol=1e-4)


@pytest.mark.mpi
def test_a_rank_with_an_empty_shard_leaves_batch_norm_finite_and_out_of_the_average(tmp_path: Path) -> None:
    # 33 samples, 16 per rank: the last global batch is one row, which rank 1 gets; rank 0's empty
    # shard used to divide by zero in backward (and give NaN batch statistics to the Allreduce)
    from test_distributed import _env, _needs_mpi

    exe = _needs_mpi()
    worker = str(Path(__file__).with_name("mpi_bn_worker.py"))
    cmd = [exe, "-n", "2", sys.executable, worker, str(tmp_path / "bn"), "short"]
    subprocess.run(cmd, env=_env(), check=True, timeout=300)
    with np.load(tmp_path / "bn.0.npz") as a, np.load(tmp_path / "bn.1.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        # momentum 0: the moving statistics are those of the one row of the last step, not halved
        np.testing.assert_allclose(a["arr_4"], a["h"][32], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a["arr_5"], np.zeros(8, np.float32))
