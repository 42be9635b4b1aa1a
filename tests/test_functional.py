"""The functional API: graphs of layer calls train through the same engine as Sequential.

References are float64 NumPy code written out by hand for each graph (forward, backward, SGD).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Dropout, Input, Model, Sequential
from xpnet.backend.numpy_ops import NumpyOps
from xpnet.checkpoint import Checkpoint
from xpnet.layers import Add, Average, Concatenate, Multiply, Subtract
from xpnet.parity import synthetic_fashion_like


class Crash(xpnet.Callback):
    """Stands in for a crash: raises after a given number of optimizer steps."""

    def __init__(self, at_step: int) -> None:
        super().__init__()
        self.at_step = at_step

    def on_train_batch_end(self, batch: int, logs: None = None) -> None:
        assert self.model is not None and self.model.optimizer is not None
        if self.model.optimizer.iterations == self.at_step:
            raise KeyboardInterrupt


def _tanh_grad(h: np.ndarray) -> np.ndarray:
    return 1.0 - h * h


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sgd_reference(
    weights: dict[str, np.ndarray], grad_fn: Any, lr: float, steps: int
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Full-batch SGD on the reference: w ← w − lr·∂L/∂w; returns the weights and each step's loss."""
    w = {k: v.astype(np.float64).copy() for k, v in weights.items()}
    losses = []
    for _ in range(steps):
        loss, g = grad_fn(w)
        losses.append(loss)
        for k in w:
            w[k] -= lr * g[k]
    return w, losses


def _weights(model: Model, names: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        kernel, bias = model.get_layer(name).get_weights()
        out[f"{name}/kernel"], out[f"{name}/bias"] = kernel, bias
    return out


def _assert_weights(model: Model, ref: dict[str, np.ndarray], rtol: float = 1e-10) -> None:
    names = sorted({k.split("/")[0] for k in ref})
    got = _weights(model, names)
    for k, v in ref.items():
        np.testing.assert_allclose(got[k], v, rtol=rtol, atol=1e-13, err_msg=k)


# ---------------------------------------------------------------------------------------------- Sequential equality
def _seq_and_functional(seed: int) -> tuple[Sequential, Model]:
    seq = Sequential(
        [Dense(16, "relu", input_shape=(784,), kernel_regularizer="l2"), Dropout(0.3), Dense(10, "softmax")], seed=seed
    )
    x = Input((784,))
    h = Dense(16, "relu", kernel_regularizer="l2")(x)
    out = Dense(10, "softmax")(Dropout(0.3)(h))
    return seq, Model(x, out, seed=seed)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_a_functional_chain_trains_bit_identically_to_the_sequential_model(backend: str, optimizer: str) -> None:
    x, y = synthetic_fashion_like(160)
    runs = []
    for model in _seq_and_functional(seed=4):
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
        hist = model.fit(x, y, batch_size=32, epochs=2, verbose=0, validation_split=0.25)
        runs.append((model.get_weights(), hist.history, model.evaluate(x, y, verbose=0)))
    (wa, ha, ea), (wb, hb, eb) = runs
    assert len(wa) == len(wb) == 4
    for a, b in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(a, b)
    assert ha == hb and ea == eb
    assert set(ha) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_a_functional_chain_with_plain_sgd_updates_inside_backprop_as_sequential_does() -> None:
    """With NumPy's BLAS, plain SGD updates weights inside backprop; an unshared graph keeps that fast path."""
    x, y = synthetic_fashion_like(128)
    seq, fun = _seq_and_functional(seed=9)
    for m in (seq, fun):
        m.compile(xpnet.optimizers.SGD(0.1), "sparse_categorical_crossentropy", backend="numpy")
        m.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for a, b in zip(seq.get_weights(), fun.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(seq.predict(x), fun.predict(x))


# ---------------------------------------------------------------------------------------------- residual MLP
def _residual() -> Model:
    x = Input((5,))
    h = Dense(6, "relu", name="d1")(x)
    r = Add()([h, Dense(6, "tanh", name="d2")(h)])
    return Model(x, Dense(3, "softmax", name="d3")(r), seed=11, dtype="float64")


def _residual_reference(x: np.ndarray, y: np.ndarray) -> Any:
    n = x.shape[0]
    onehot = np.eye(3)[y]

    def grads(w: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
        u1 = x @ w["d1/kernel"] + w["d1/bias"]
        h = np.maximum(u1, 0.0)
        g = np.tanh(h @ w["d2/kernel"] + w["d2/bias"])
        r = h + g
        p = _softmax(r @ w["d3/kernel"] + w["d3/bias"])
        loss = float(-np.mean(np.log(p[np.arange(n), y])))
        dz = (p - onehot) / n
        dr = dz @ w["d3/kernel"].T
        du2 = dr * _tanh_grad(g)
        dh = dr + du2 @ w["d2/kernel"].T
        du1 = dh * (u1 > 0)
        return loss, {
            "d3/kernel": r.T @ dz,
            "d3/bias": dz.sum(0),
            "d2/kernel": h.T @ du2,
            "d2/bias": du2.sum(0),
            "d1/kernel": x.T @ du1,
            "d1/bias": du1.sum(0),
        }

    return grads


def _classes(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return x, (np.argmax(x[:, :3], axis=1)).astype(np.int64)


def test_a_second_model_over_a_trained_models_layers_shares_their_weights() -> None:
    """Keras shares the layers (and weights) of Model(model.inputs, hidden); xpnet's second model used to
    re-initialize them. Now it starts from the trained values, and the first model keeps its predictions."""
    x, y = _classes(24, 5)
    model = _residual()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    before = model.predict(x)
    hidden = model.get_layer("d1")
    trained = hidden.get_weights()
    with pytest.raises(ValueError, match="holds float64 weights from another model, and this model is float32"):
        Model(model.inputs[0], model.nodes[0].output)
    features = Model(model.inputs[0], model.nodes[0].output, dtype="float64")
    np.testing.assert_allclose(features.predict(x), np.maximum(x @ trained[0] + trained[1], 0.0), rtol=1e-12)
    alone = Sequential([Input((5,)), hidden], dtype="float64")
    for u, v in zip(alone.get_weights(), trained, strict=True):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(model.predict(x), before)
    with pytest.raises(ValueError, match=r"layer 'd1' holds weights of shapes \[\(5, 6\), \(6,\)\] from another model"):
        Sequential([Input((4,)), hidden])
    popped = Sequential([Input((5,)), Dense(2), Dense(3)])
    last = popped.pop()
    Sequential([Input((2,)), last])


@pytest.mark.parametrize("kind", ["sequential", "shared"])
def test_a_deep_copy_of_a_model_trains_on_its_own(kind: str) -> None:
    """copy.deepcopy: the id()-keyed lookups pointed at the original's tensors (KeyError in forward), and the
    copied layers' weight views were cut loose from the copied buffer (get_weights disagreed with predict)."""
    import copy

    x, y = _classes(24, 5)
    if kind == "sequential":
        model: Model = Sequential([Input((5,)), Dense(4, "relu"), Dropout(0.2), Dense(3, "softmax")], seed=1)
    else:
        a = Input((5,))
        d = Dense(5, "tanh", name="shared")
        model = Model(a, Dense(3, "softmax")(Add()([d(a), d(Dropout(0.2)(d(a)))])), seed=1)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    twin = copy.deepcopy(model)
    np.testing.assert_array_equal(twin.predict(x), model.predict(x))
    before = model.get_weights()
    twin.fit(x, y, epochs=2, verbose=0)
    for u, v in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(twin.predict(x), model.predict(x))
    reused = Sequential([Input((5,)), twin.layers[0]], dtype=twin.dtype)  # shares twin's trained weights
    np.testing.assert_array_equal(reused.get_weights()[0], twin.layers[0].get_weights()[0])
    again = copy.deepcopy(model)  # the optimizer state and dropout counters come along: the same next epoch
    for m in (model, again):
        m.fit(x, y, epochs=1, verbose=0, shuffle=False)
    for u, v in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def test_a_residual_mlp_matches_the_hand_written_float64_reference() -> None:
    x, y = _classes(40, 5)
    model = _residual()
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense", "Add", "Dense"]
    model.compile(xpnet.optimizers.SGD(0.2), "sparse_categorical_crossentropy")
    ref_fn = _residual_reference(x, y)
    start = _weights(model, ["d1", "d2", "d3"])
    loss, grads = model.compute_gradients(x, y)
    ref_loss, ref_grads = ref_fn(start)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    names = [f"{layer.name}/{s.name}" for layer in model.layers for s in layer.param_specs()]
    for name, g in zip(names, grads, strict=True):
        np.testing.assert_allclose(g, ref_grads[name], rtol=1e-10, atol=1e-14, err_msg=name)
    hist = model.fit(x, y, batch_size=40, epochs=5, shuffle=False, verbose=0)
    ref, ref_losses = _sgd_reference(start, ref_fn, 0.2, 5)
    _assert_weights(model, ref)
    np.testing.assert_allclose(hist.history["loss"], ref_losses, rtol=1e-10)


def test_the_residual_mlp_passes_the_gradient_check() -> None:
    x, y = _classes(12, 5, seed=1)
    model = _residual()
    model.compile("adam", "sparse_categorical_crossentropy")
    result = model.check_gradients(x, y)
    assert result.passed, str(result)


# ---------------------------------------------------------------------------------------------- two inputs
def _two_inputs() -> Model:
    a, b = Input((3,), name="a"), Input((5,), name="b")
    h1 = Dense(4, "tanh", name="ha")(a)
    h2 = Dense(4, "tanh", name="hb")(b)
    joined = Concatenate()([h1, Subtract()([h1, h2])])  # h1 reaches the output twice: its gradients add
    return Model([a, b], Dense(1, name="out")(joined), seed=5, dtype="float64")


def _two_inputs_reference(xa: np.ndarray, xb: np.ndarray, t: np.ndarray) -> Any:
    n = xa.shape[0]

    def grads(w: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
        h1 = np.tanh(xa @ w["ha/kernel"] + w["ha/bias"])
        h2 = np.tanh(xb @ w["hb/kernel"] + w["hb/bias"])
        c = np.concatenate([h1, h1 - h2], axis=1)
        o = c @ w["out/kernel"] + w["out/bias"]
        loss = float(np.mean((o - t) ** 2))
        do = 2.0 * (o - t) / n
        dc = do @ w["out/kernel"].T
        dh1, ds = dc[:, :4], dc[:, 4:]
        du1 = (dh1 + ds) * _tanh_grad(h1)
        du2 = -ds * _tanh_grad(h2)
        return loss, {
            "out/kernel": c.T @ do,
            "out/bias": do.sum(0),
            "ha/kernel": xa.T @ du1,
            "ha/bias": du1.sum(0),
            "hb/kernel": xb.T @ du2,
            "hb/bias": du2.sum(0),
        }

    return grads


def test_a_two_input_model_matches_the_hand_written_float64_reference() -> None:
    rng = np.random.default_rng(3)
    xa, xb = rng.standard_normal((30, 3)), rng.standard_normal((30, 5))
    t = (xa[:, :1] - xb[:, 1:2]) * 0.5
    model = _two_inputs()
    model.compile(xpnet.optimizers.SGD(0.1), "mse")
    start = _weights(model, ["ha", "hb", "out"])
    ref_fn = _two_inputs_reference(xa, xb, t)
    hist = model.fit([xa, xb], t, batch_size=30, epochs=4, shuffle=False, verbose=0)
    ref, ref_losses = _sgd_reference(start, ref_fn, 0.1, 4)
    _assert_weights(model, ref)
    np.testing.assert_allclose(hist.history["loss"], ref_losses, rtol=1e-10)
    by_name = model.predict({"a": xa, "b": xb})
    np.testing.assert_array_equal(by_name, model.predict([xa, xb]))
    h1 = np.tanh(xa @ ref["ha/kernel"] + ref["ha/bias"])
    h2 = np.tanh(xb @ ref["hb/kernel"] + ref["hb/bias"])
    want = np.concatenate([h1, h1 - h2], axis=1) @ ref["out/kernel"] + ref["out/bias"]
    np.testing.assert_allclose(by_name, want, rtol=1e-10)


def test_on_batch_methods_of_a_two_input_model_take_all_rows_as_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch is the inputs' rows, not len(x) (the number of inputs of a list, tuple or dict)."""
    rng = np.random.default_rng(7)
    xa, xb, t = rng.standard_normal((40, 3)), rng.standard_normal((40, 5)), rng.standard_normal((40, 1))
    model = _two_inputs()
    model.compile("sgd", "mse")
    sizes: list[Any] = []
    for name in ("evaluate", "predict"):
        method = getattr(model, name)
        monkeypatch.setattr(model, name, lambda *a, _m=method, **k: (sizes.append(k["batch_size"]), _m(*a, **k))[1])
    model.test_on_batch({"a": xa, "b": xb}, t)
    model.test_on_batch([xa, xb], t)
    model.predict_on_batch((xa, xb))
    model.predict_on_batch({"a": xa, "b": xb})
    assert sizes == [40, 40, 40, 40]


def test_the_two_input_model_passes_the_gradient_check() -> None:
    rng = np.random.default_rng(4)
    xa, xb = rng.standard_normal((8, 3)), rng.standard_normal((8, 5))
    model = _two_inputs()
    model.compile("sgd", "mse")
    result = model.check_gradients([xa, xb], rng.standard_normal((8, 1)))
    assert result.passed, str(result)


# ---------------------------------------------------------------------------------------------- two outputs
def _two_outputs(dtype: str = "float64") -> Model:
    x = Input((4,))
    h = Dense(6, "tanh", name="h")(x)
    return Model(x, [Dense(3, "softmax", name="cls")(h), Dense(1, name="reg")(h)], seed=8, dtype=dtype)


def _two_outputs_data(n: int = 36) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, 4))
    return x, np.argmax(x[:, :3], axis=1).astype(np.int64), x[:, 3:4] * 0.3


def _two_outputs_reference(x: np.ndarray, labels: np.ndarray, t: np.ndarray, weight: float) -> Any:
    n = x.shape[0]
    onehot = np.eye(3)[labels]

    def grads(w: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
        h = np.tanh(x @ w["h/kernel"] + w["h/bias"])
        p = _softmax(h @ w["cls/kernel"] + w["cls/bias"])
        o = h @ w["reg/kernel"] + w["reg/bias"]
        loss = float(-np.mean(np.log(p[np.arange(n), labels])) + weight * np.mean((o - t) ** 2))
        dz = (p - onehot) / n
        do = weight * 2.0 * (o - t) / n
        du = (dz @ w["cls/kernel"].T + do @ w["reg/kernel"].T) * _tanh_grad(h)
        return loss, {
            "cls/kernel": h.T @ dz,
            "cls/bias": dz.sum(0),
            "reg/kernel": h.T @ do,
            "reg/bias": do.sum(0),
            "h/kernel": x.T @ du,
            "h/bias": du.sum(0),
        }

    return grads


def test_a_two_output_model_with_loss_weights_matches_the_hand_written_float64_reference() -> None:
    x, labels, t = _two_outputs_data()
    model = _two_outputs()
    model.compile(
        xpnet.optimizers.SGD(0.3),
        loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
        loss_weights={"cls": 1.0, "reg": 0.5},
        metrics={"cls": ["accuracy"], "reg": ["mae"]},
    )
    assert model.fused_outputs == [True, False]  # the softmax output starts backprop at p − y
    start = _weights(model, ["h", "cls", "reg"])
    ref_fn = _two_outputs_reference(x, labels, t, 0.5)
    hist = model.fit(x, [labels, t], batch_size=36, epochs=3, shuffle=False, verbose=0)
    ref, ref_losses = _sgd_reference(start, ref_fn, 0.3, 3)
    _assert_weights(model, ref)
    np.testing.assert_allclose(hist.history["loss"], ref_losses, rtol=1e-10)
    assert set(hist.history) == {"loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"}
    # as Keras 3: each output's loss is reported without its loss weight; the total weighs them
    np.testing.assert_allclose(
        np.add(hist.history["cls_loss"], np.multiply(0.5, hist.history["reg_loss"])), hist.history["loss"], rtol=1e-12
    )
    p, o = model.predict(x)
    assert p.shape == (36, 3) and o.shape == (36, 1)
    logs = model.evaluate(x, {"cls": labels, "reg": t}, verbose=0, return_dict=True)
    assert isinstance(logs, dict)
    assert logs["reg_mae"] == pytest.approx(float(np.mean(np.abs(o - t))), rel=1e-10)
    assert logs["reg_loss"] == pytest.approx(float(np.mean((o - t) ** 2)), rel=1e-10)  # no 0.5: Keras 3's history
    assert logs["cls_accuracy"] == pytest.approx(float(np.mean(p.argmax(1) == labels)))


def test_the_two_output_model_passes_the_gradient_check() -> None:
    x, labels, t = _two_outputs_data(10)
    model = _two_outputs("float32")
    model.compile("sgd", ["sparse_categorical_crossentropy", "mse"], loss_weights=[0.7, 2.0])
    result = model.check_gradients(x, [labels, t])
    assert result.passed, str(result)


def test_a_flat_metric_list_with_one_entry_per_output_maps_them_in_order_as_keras() -> None:
    """Keras 3: metrics=["accuracy", "mae"] on two outputs is cls_accuracy and reg_mae, not both on each."""
    model = _two_outputs()
    model.compile("sgd", ["sparse_categorical_crossentropy", "mse"], metrics=["accuracy", "mae"])
    assert model.metrics_names == ["loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"]
    model.compile("sgd", ["sparse_categorical_crossentropy", "mse"], metrics=["mse"])  # xpnet: every output
    assert model.metrics_names == ["loss", "cls_loss", "reg_loss", "cls_mse", "reg_mse"]


def test_per_output_compile_arguments_are_checked() -> None:
    model = _two_outputs()
    with pytest.raises(ValueError, match=r"output names \['cls', 'reg'\]; unknown \['other'\]"):
        model.compile("sgd", {"cls": "mse", "other": "mse"})
    with pytest.raises(ValueError, match="loss has 3 entries but the model has 2 outputs"):
        model.compile("sgd", ["mse", "mse", "mse"])
    model.compile("sgd", ["sparse_categorical_crossentropy", "mse"])
    x, labels, t = _two_outputs_data(6)
    with pytest.raises(ValueError, match=r"the model has 2 .*cls, reg.*received ndarray"):
        model.fit(x, labels, verbose=0)
    with pytest.raises(ValueError, match=r"output 'reg'.*different numbers of samples"):
        model.fit(x, [labels, t[:4]], verbose=0)


# ---------------------------------------------------------------------------------------------- shared layers, merges
def _shared() -> Model:
    x = Input((4,))
    shared = Dense(4, "tanh", name="shared")
    h1 = shared(Dense(4, name="pre")(x))
    h2 = shared(h1)  # the same weights twice in a row
    return Model(x, Dense(2, "softmax", name="head")(Average()([h1, h2])), seed=2)


def test_a_shared_layer_sums_the_gradients_of_its_calls() -> None:
    x, y = _classes(10, 4, seed=3)
    model = _shared()
    assert [layer.name for layer in model.layers] == ["pre", "shared", "average", "head"]
    assert model.shares_layers and len(model.nodes) == 5
    model.compile("sgd", "sparse_categorical_crossentropy")
    result = model.check_gradients(x, y % 2)
    assert result.passed, str(result)


def test_plain_sgd_on_a_shared_layer_updates_the_weights_after_backprop(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-place SGD would move the shared kernel between its two backward calls; the step declines it."""
    x, y = _classes(64, 4, seed=5)
    runs = []
    for inplace in (True, False):
        monkeypatch.setattr(NumpyOps, "runs_in_one_call", lambda self, method, on=inplace: on)
        model = _shared()
        model.compile(xpnet.optimizers.SGD(0.5), "sparse_categorical_crossentropy", backend="numpy")
        model.fit(x, y % 2, batch_size=16, epochs=2, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_multiply_and_average_merges_pass_the_gradient_check() -> None:
    x = Input((3,))
    a, b, c = Dense(5, "tanh")(x), Dense(5, "sigmoid")(x), Dense(5)(x)
    out = Dense(2)(Add()([Multiply()([a, b, c]), Average()([a, c]), Subtract()([b, a])]))
    model = Model(x, out, seed=3)
    model.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    result = model.check_gradients(rng.standard_normal((6, 3)), rng.standard_normal((6, 2)))
    assert result.passed, str(result)


def test_merge_layers_compute_what_they_say() -> None:
    a, b = Input((2,), name="a"), Input((2,), name="b")
    ident = xpnet.layers.Rescaling(1.0)
    outs = [m([ident(a), b]) for m in (Add(), Subtract(), Multiply(), Average(), Concatenate())]
    model = Model([a, b], outs)
    xa, xb = np.array([[1.0, 2.0]], np.float32), np.array([[3.0, 5.0]], np.float32)
    got = model.predict([xa, xb])
    want = [xa + xb, xa - xb, xa * xb, (xa + xb) / 2, np.concatenate([xa, xb], axis=1)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w)


# ---------------------------------------------------------------------------------------------- bad graphs
def test_a_cycle_is_an_error_naming_its_layers() -> None:
    x = Input((4,))
    t1 = Dense(4, name="first")(x)
    t2 = Dense(4, name="second")(t1)
    assert t1.node is not None
    t1.node.inputs = [t2]  # first now reads second's output, which reads first's
    with pytest.raises(ValueError, match=r"cycle: Dense 'second' -> Dense 'first' -> Dense 'second'"):
        Model(x, t2)


def test_a_config_whose_calls_wait_on_each_other_is_an_error_naming_them() -> None:
    x = Input((4,))
    model = Model(x, Dense(4, name="second")(Dense(4, name="first")(x)))
    config = model.get_config()
    first = next(e for e in config["layers"] if e["name"] == "first")
    first["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["second", 0, 0]
    with pytest.raises(ValueError, match=r"calls of \['first', 'second'\] wait on each other"):
        Model.from_config(config)


def test_an_output_not_computed_from_the_inputs_is_an_error() -> None:
    a, b = Input((4,), name="a"), Input((3,), name="b")
    out = Dense(2, name="head")(b)
    with pytest.raises(ValueError, match=r"output Dense 'head' \(None, 2\) is not connected.*depends on Input 'b'"):
        Model(a, out)


def test_an_input_no_output_uses_is_an_error() -> None:
    a, b = Input((4,), name="a"), Input((3,), name="b")
    with pytest.raises(ValueError, match=r"Input 'b' \(None, 3\) is not connected to any output \[Dense 'head'\]"):
        Model([a, b], Dense(2, name="head")(a))


def test_names_are_unique_across_inputs_and_layers(tmp_path: Path) -> None:
    """Two Inputs called 'a', or an Input and a layer called 'dense', built a model whose file load_model
    could not read back (the config refers to inputs and layers by name)."""
    a, b = Input((3,), name="a"), Input((2,), name="a")
    with pytest.raises(ValueError, match="two different Inputs are named 'a'"):
        Model([a, b], Dense(1)(Concatenate()([a, b])))
    x = Input((3,), name="dense")
    with pytest.raises(ValueError, match="an Input and a layer are named 'dense'"):
        Model(x, Dense(2, name="dense")(x))
    x = Input((3,))
    model = Model(x, Dense(2, name="input_layer")(x))  # an unnamed Input takes a free name
    assert model.input_names == ["input_layer_1"]
    model.save(tmp_path / "m.keras")
    assert xpnet.models.load_model(tmp_path / "m.keras").input_names == ["input_layer_1"]


def test_merging_tensors_of_different_shapes_is_an_error_naming_the_layers() -> None:
    x = Input((4,))
    p, q = Dense(3, name="p")(x), Dense(5, name="q")(x)
    with pytest.raises(
        ValueError, match=r"Add 'join' cannot be called on Dense 'p' \(None, 3\), Dense 'q' \(None, 5\)"
    ):
        Add(name="join")([p, q])
    rp, rq = xpnet.layers.Reshape((3, 1), name="rp")(p), xpnet.layers.Reshape((5, 1), name="rq")(q)
    with pytest.raises(
        ValueError, match=r"Reshape 'rp' \(None, 3, 1\), Reshape 'rq' \(None, 5, 1\): .* match except along that axis"
    ):
        Concatenate(axis=2)([rp, rq])
    with pytest.raises(ValueError, match="Subtract merges 2 tensors, received 3"):
        Subtract()([p, p, p])


def test_a_shared_layer_called_on_another_shape_is_an_error() -> None:
    x = Input((4,))
    d = Dense(3, name="d")
    d(x)
    with pytest.raises(ValueError, match=r"Dense 'd' was built for input \(None, 4\) and cannot be called again on"):
        d(Dense(5, name="wide")(x))


def test_layers_are_called_on_symbolic_tensors_or_arrays() -> None:
    assert Dense(2)(np.zeros((3, 4))).shape == (3, 2)  # Keras's eager call (tests/test_custom_layers.py)
    with pytest.raises(TypeError, match="called on str; call layers on symbolic tensors"):
        Dense(2)("x")
    with pytest.raises(TypeError, match="Add 'a' takes a list of tensors"):
        Add(name="a")(Input((2,)))


# ---------------------------------------------------------------------------------------------- engine features
def test_save_and_load_model_continue_a_two_output_run_exactly(tmp_path: Path) -> None:
    x, labels, t = _two_outputs_data()
    x = x.astype(np.float32)
    model = _two_outputs("float32")
    model.compile(
        "adam", ["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.25], metrics=[["accuracy"], []]
    )
    model.fit(x, [labels, t], batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = xpnet.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, Model) and loaded.output_names == ["cls", "reg"]
    for a, b in zip(model.predict(x), loaded.predict(x), strict=True):
        np.testing.assert_array_equal(a, b)
    ha = model.fit(x, [labels, t], batch_size=8, epochs=1, verbose=0).history
    hb = loaded.fit(x, [labels, t], batch_size=8, epochs=1, verbose=0).history
    assert ha == hb
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_get_config_is_keras_functional_with_inbound_nodes() -> None:
    config = _two_inputs().get_config()
    entries = {e["name"]: e for e in config["layers"]}
    assert entries["a"]["class_name"] == "InputLayer" and entries["a"]["inbound_nodes"] == []
    subtract = entries["subtract"]["inbound_nodes"][0]["args"][0]
    assert [r["config"]["keras_history"] for r in subtract] == [["ha", 0, 0], ["hb", 0, 0]]
    assert config["input_layers"] == [["a", 0, 0], ["b", 0, 0]]
    assert config["output_layers"] == ["out", 0, 0]
    rebuilt = Model.from_config(config)
    assert [layer.name for layer in rebuilt.layers] == ["ha", "hb", "subtract", "concatenate", "out"]


def test_summary_shows_what_each_layer_is_connected_to() -> None:
    lines: list[str] = []
    _residual().summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text
    add_row = next(i for i, line in enumerate(lines) if line.startswith("│ add (Add)"))
    # Keras 3 lists a merge's inputs one per line inside the cell
    assert lines[add_row].rstrip("│ ").endswith("d1[0][0],")
    assert lines[add_row + 1].rstrip("│ ").endswith("d2[0][0]")
    assert "│ input_layer (InputLayer) │ (None, 5)" in text
    assert "Total params: 99" in text  # 5·6+6 + 6·6+6 + 6·3+3


def test_a_shared_layers_calls_are_numbered_as_they_were_made_as_keras() -> None:
    """Keras 3's summary for d(x1), d(x2), Subtract([second, first]): d ← x1[0][0], x2[0][0]; sub ← d[1][0], d[0][0]
    (the walk from the output meets the second call first; numbering by it swapped them)."""
    x1, x2 = Input((3,), name="x1"), Input((3,), name="x2")
    d = Dense(2, name="d")
    first, second = d(x1), d(x2)
    model = Model([x1, x2], Subtract(name="sub")([second, first]))
    lines: list[str] = []
    model.summary(print_fn=lines.append, line_length=90)
    text = "\n".join(lines)
    rows = {line.split()[1]: line.rstrip("│ ") for line in text.splitlines() if line.startswith(("│ d (", "│ sub ("))}
    assert rows["d"].endswith("x1[0][0],") and rows["sub"].endswith("d[1][0],")
    config = model.get_config()
    inbound = next(e for e in config["layers"] if e["name"] == "d")["inbound_nodes"]
    assert [n["args"][0]["config"]["keras_history"] for n in inbound] == [["x1", 0, 0], ["x2", 0, 0]]
    again = Model.from_config(config)
    assert again.get_config()["layers"] == config["layers"]
    xa, xb = np.ones((2, 3)), np.arange(6.0).reshape(2, 3)
    again.set_weights(model.get_weights())
    np.testing.assert_allclose(again.predict([xa, xb]), model.predict([xa, xb]), rtol=1e-6)


def test_trace_of_a_two_input_model_says_what_to_use_instead() -> None:
    model = _two_inputs()
    model.compile("sgd", "mse")
    with pytest.raises(TypeError, match="trace follows a model with one input and one output"):
        model.trace([np.ones((1, 3)), np.ones((1, 5))])


def test_trace_follows_a_residual_graph() -> None:
    x, y = _classes(3, 5)
    model = _residual()
    model.compile("sgd", "sparse_categorical_crossentropy")
    t = model.trace(x, y)
    _, grads = model.compute_gradients(x, y)
    np.testing.assert_allclose(t.grad(1, "kernel"), grads[0])
    np.testing.assert_allclose(t.layer("add").output, t.h(1) + t.h(2))
    assert t.fused and t.loss == pytest.approx(model.evaluate(x, y, verbose=0))


@pytest.mark.parametrize("outputs", [1, 2])
def test_resume_of_a_functional_model_is_bit_identical(tmp_path: Path, outputs: int) -> None:
    x, y = _classes(120, 5, seed=2)
    x = x.astype(np.float32)
    targets: Any = y if outputs == 1 else [y, x[:, :2] * 0.5]

    def make() -> Model:
        i = Input((5,))
        h = Dense(8, "relu")(i)
        r = Add()([h, Dropout(0.2)(Dense(8, "relu")(h))])
        if outputs == 1:
            m = Model(i, Dense(3, "softmax")(r), seed=3)
            m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        else:
            m = Model(i, [Dense(3, "softmax")(r), Dense(2)(h)], seed=3)
            m.compile("adam", ["sparse_categorical_crossentropy", "mse"], metrics=[["accuracy"], ["mae"]])
        return m

    ref = make()
    ref_hist = ref.fit(x, targets, batch_size=16, epochs=3, verbose=0)
    crashed = make()
    with pytest.raises(KeyboardInterrupt):  # 8 steps per epoch: dies mid-epoch 2, last checkpoint at step 12
        crashed.fit(
            x, targets, batch_size=16, epochs=3, verbose=0, callbacks=[Checkpoint(tmp_path, save_freq=4), Crash(13)]
        )
    resumed = make()
    hist = resumed.fit(x, targets, batch_size=16, epochs=3, verbose=0, resume_from=tmp_path)
    for a, b in zip(ref.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert hist.history == ref_hist.history


def test_a_siamese_model_shares_one_encoder_between_two_inputs() -> None:
    a, b = Input((6,), name="left"), Input((6,), name="right")
    encoder = Dense(4, "tanh", name="encoder")
    distance = Subtract()([encoder(a), encoder(b)])
    model = Model([a, b], Dense(1, "sigmoid", name="same")(Multiply()([distance, distance])), seed=7)
    assert [layer.name for layer in model.layers] == ["encoder", "subtract", "multiply", "same"]
    assert model.count_params() == 6 * 4 + 4 + 4 + 1
    model.compile("sgd", "binary_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(2)
    xa, xb = rng.standard_normal((10, 6)), rng.standard_normal((10, 6))
    labels = (rng.random((10, 1)) < 0.5).astype(np.float64)
    result = model.check_gradients([xa, xb], labels)
    assert result.passed, str(result)
    hist = model.fit([xa, xb], labels, batch_size=5, epochs=2, verbose=0)
    assert set(hist.history) == {"loss", "accuracy"}


def test_a_shared_convolution_on_two_images_passes_the_gradient_check() -> None:
    a, b = Input((6, 6, 1), name="a"), Input((6, 6, 1), name="b")
    conv = xpnet.Conv2D(2, 3, activation="relu", name="conv")
    joined = Concatenate()([xpnet.Flatten()(conv(a)), xpnet.Flatten()(conv(b))])
    model = Model([a, b], Dense(3, "softmax")(joined), seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(5)
    xa, xb = rng.standard_normal((4, 6, 6, 1)), rng.standard_normal((4, 6, 6, 1))
    result = model.check_gradients([xa, xb], np.array([0, 1, 2, 1]), max_elements=40)
    assert result.passed, str(result)


def _every_merge(seed: int) -> Model:
    a, b = Input((5,), name="a"), Input((3,), name="b")
    shared = Dense(4, "tanh", name="shared")
    p, q = shared(Dense(4, name="pa")(a)), shared(Dense(4, name="pb")(b))
    mixed = Add()([Multiply()([p, q]), Average()([p, q]), Subtract()([p, q])])
    h = Dropout(0.25)(Concatenate()([mixed, p]))
    return Model([a, b], [Dense(3, "softmax", name="cls")(h), Dense(2, name="reg")(mixed)], seed=seed)


def test_every_merge_and_a_shared_layer_run_on_each_backend_as_on_numpy(backend: str) -> None:
    """The graph engine stays inside the array API: the strict stand-in (and CuPy) follow NumPy's numbers."""
    rng = np.random.default_rng(8)
    xa, xb = rng.standard_normal((48, 5)).astype(np.float32), rng.standard_normal((48, 3)).astype(np.float32)
    labels, t = rng.integers(0, 3, 48), rng.standard_normal((48, 2)).astype(np.float32)
    runs = []
    for name in ("numpy", backend):
        model = _every_merge(seed=3)
        model.compile("adam", ["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.3], backend=name)
        hist = model.fit([xa, xb], [labels, t], batch_size=16, epochs=2, verbose=0)
        runs.append((model.get_weights(), hist.history, model.predict([xa, xb])))
    (wa, ha, pa), (wb, hb, pb) = runs
    for u, v in zip(wa, wb, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)
    for k in ha:
        np.testing.assert_allclose(ha[k], hb[k], rtol=1e-5, err_msg=k)
    for u, v in zip(pa, pb, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)


def test_calling_a_model_on_symbolic_tensors_nests_it_and_on_arrays_predicts() -> None:
    model = _residual()
    x = np.random.default_rng(0).standard_normal((4, 5))
    a = Input((5,))
    outer = Model(a, model(a), dtype="float64")
    assert outer.layers == [model]
    np.testing.assert_allclose(outer.predict(x), model.predict(x), rtol=1e-12)
    np.testing.assert_allclose(model(np.ones((2, 5))), model.predict(np.ones((2, 5))))
    with pytest.raises(ValueError, match=r"model 'functional' was built for input \(None, 5\) and cannot be called"):
        model(Input((4,)))
    with pytest.raises(TypeError, match="a model used as a layer takes one tensor"):
        model([Input((5,)), Input((5,))])


def test_a_shared_dropout_draws_a_mask_per_call_and_backprops_through_each() -> None:
    x = Input((6,))
    drop = Dropout(0.4, name="drop")
    h = Dense(6, "tanh", name="h")(x)
    out = Dense(2, name="out")(Add()([drop(h), drop(Dense(6, "tanh", name="g")(h))]))
    model = Model(x, out, seed=4)
    model.compile("sgd", "mse")
    rng = np.random.default_rng(1)
    xs, ys = rng.standard_normal((8, 6)), rng.standard_normal((8, 2))
    result = model.check_gradients(xs, ys)
    assert result.passed, str(result)
    assert model.get_layer("drop").iterations == 0  # the check leaves the counters where they were


def test_gradients_after_an_inference_pass_are_those_of_a_fresh_model() -> None:
    """Inference leaves a shared layer's caches in another state; training must not read them."""
    x, y = _classes(12, 4, seed=6)
    fresh, used = _shared(), _shared()
    for m in (fresh, used):
        m.compile("sgd", "sparse_categorical_crossentropy")
    used.evaluate(x, y % 2, verbose=0)
    used.predict(x)
    for a, b in zip(fresh.compute_gradients(x, y % 2)[1], used.compute_gradients(x, y % 2)[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_trace_of_a_graph_names_each_layers_own_inputs_and_readers() -> None:
    """In a residual graph h(3) = add(h(1), h(2)) and ∂L/∂h(1) sums what [2] and [3] send back (not chain labels)."""
    x = Input((3,), name="x")
    h = Dense(4, "relu", name="h")(x)
    r = Dense(4, name="r")(h)
    out = Dense(2, "softmax", name="o")(Add(name="add")([h, r]))
    model = Model(x, out, seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy")
    t = model.trace(np.ones((2, 3)), np.array([0, 1]))
    text = t.format()
    assert "h(3) = add(h(1), h(2))" in text and "u(4) = h(3) W(4) + b(4)" in text
    assert "∂L/∂h(1) = Σ of what [2], [3] send back" in text
    assert "∂L/∂h(3) = δ(4) W(4)ᵀ" in text and "ŷ = h(4)" in text
    _, grads = model.compute_gradients(np.ones((2, 3)), np.array([0, 1]))
    np.testing.assert_allclose(t.grad(1, "kernel"), grads[0])


def test_trace_refuses_a_shared_layer() -> None:
    """One h(l) per layer: a layer called twice showed its second call's forward and its first call's backward."""
    x = Input((3,), name="x")
    d = Dense(3, "tanh", name="shared")
    model = Model(x, Dense(2, "softmax", name="o")(d(d(x))), seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(TypeError, match="'shared' is called more than once"):
        model.trace(np.ones((2, 3)), np.array([0, 1]))


def test_trace_to_dict_keeps_a_graphs_links() -> None:
    x = Input((3,), name="x")
    a, b = Dense(2, "relu", name="a")(x), Dense(2, name="b")(x)
    model = Model(x, Dense(2, "softmax", name="o")(Concatenate(name="cat")([a, b])), seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy")
    d = json.loads(json.dumps(model.trace(np.ones((2, 3)), np.array([0, 1])).to_dict()))
    assert [(lt["sources"], lt["consumers"]) for lt in d["layers"]] == [
        ([0], [3]),
        ([0], [3]),
        ([1, 2], [4]),
        ([3], []),
    ]
    assert d["output_layer"] == 4
