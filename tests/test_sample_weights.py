"""fit/evaluate with sample_weight and class_weight, and weighted_metrics, as Keras 3 defines them.

Keras's reduction: a batch's loss is Σ wᵢℓᵢ / batch size, so the gradient of sample i is
scaled by wᵢ; plain `metrics` ignore the weights, `weighted_metrics` are Σ wᵢvᵢ / Σ wᵢ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.layers import Dense


def _data(n: int = 24, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)), rng.integers(0, k, n), rng.uniform(0.0, 2.0, n)


def _softmax_regression(loss: str = "sparse_categorical_crossentropy", **compile_kw: Any) -> xpnet.Sequential:
    model = xpnet.Sequential([Dense(3, "softmax", input_shape=(5,))], seed=4, dtype="float64")
    model.compile(xpnet.optimizers.SGD(0.5), loss, backend="numpy", **compile_kw)
    return model


def _softmax(u: np.ndarray) -> np.ndarray:
    e = np.exp(u - u.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_one_weighted_sgd_step_matches_a_float64_hand_computation(loss: str) -> None:
    """The fused softmax + cross-entropy path scales each row of p − y by its weight."""
    x, labels, w = _data()
    y = labels if loss.startswith("sparse") else np.eye(3)[labels]
    model = _softmax_regression(loss)
    assert model.fused_loss
    kernel, bias = model.get_weights()
    p = _softmax(x @ kernel + bias)
    onehot = np.eye(3)[labels]
    want_loss = float(np.sum(w * -np.log(p[np.arange(24), labels])) / 24)  # Σ wᵢℓᵢ / batch size
    delta = (p - onehot) * w[:, None] / 24
    hist = model.fit(x, y, sample_weight=w, batch_size=24, epochs=1, shuffle=False, verbose=0)
    assert hist.history["loss"][0] == pytest.approx(want_loss, rel=1e-13)
    np.testing.assert_allclose(model.get_weights()[0], kernel - 0.5 * x.T @ delta, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(model.get_weights()[1], bias - 0.5 * delta.sum(axis=0), rtol=1e-13, atol=1e-15)


def test_weighted_mse_on_the_plain_path_matches_a_hand_computation() -> None:
    x, labels, w = _data()
    y = np.eye(3)[labels]
    model = xpnet.Sequential([Dense(3, "tanh", input_shape=(5,))], seed=4, dtype="float64")
    model.compile(xpnet.optimizers.SGD(0.5), "mse", backend="numpy")
    kernel, bias = model.get_weights()
    h = np.tanh(x @ kernel + bias)
    want_loss = float(np.sum(w * np.mean((h - y) ** 2, axis=1)) / 24)
    du = (2 / 3) * (h - y) * (1 - h * h) * w[:, None] / 24
    loss = model.train_on_batch(x, y, sample_weight=w)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    np.testing.assert_allclose(model.get_weights()[0], kernel - 0.5 * x.T @ du, rtol=1e-13, atol=1e-15)


def test_unit_weights_train_bit_identically_to_no_weights() -> None:
    x, labels, _ = _data(100)
    runs = []
    for sw in (None, np.ones(100)):
        model = xpnet.Sequential([Dense(8, "relu", input_shape=(5,)), Dense(3, "softmax")], seed=7)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
        hist = model.fit(x, labels, sample_weight=sw, batch_size=16, epochs=3, verbose=0)
        runs.append((model.get_weights(), hist.history))
    for a, b in zip(runs[0][0], runs[1][0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1]


@pytest.mark.parametrize("onehot", [False, True])
def test_class_weight_is_the_sample_weight_of_each_sample_class(onehot: bool) -> None:
    x, labels, _ = _data(60)
    table = {0: 0.25, 2: 3.0}  # class 1 left out: weight 1, as Keras
    loss = "categorical_crossentropy" if onehot else "sparse_categorical_crossentropy"
    y = np.eye(3)[labels] if onehot else labels
    a, b = _softmax_regression(loss), _softmax_regression(loss)
    ha = a.fit(x, y, class_weight=table, batch_size=16, epochs=2, verbose=0)
    hb = b.fit(x, y, sample_weight=np.array([table.get(c, 1.0) for c in labels]), batch_size=16, epochs=2, verbose=0)
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
    assert ha.history == hb.history


def test_weighted_metrics_use_the_weights_and_plain_metrics_do_not() -> None:
    x, labels, w = _data()
    model = _softmax_regression(metrics=["accuracy"], weighted_metrics=["accuracy", "mse"])
    assert model.metrics_names == ["loss", "accuracy", "weighted_accuracy", "mse"]
    p = model.predict(x)
    hit = (p.argmax(axis=1) == labels).astype(float)
    se = np.mean((p - np.eye(3)[labels]) ** 2, axis=1)
    got = model.evaluate(x, labels, sample_weight=w, batch_size=7, verbose=0, return_dict=True)
    ce = -np.log(p[np.arange(24), labels])
    assert got["loss"] == pytest.approx(np.sum(w * ce) / 24, rel=1e-12)
    assert got["accuracy"] == pytest.approx(hit.mean(), rel=1e-12)
    assert got["weighted_accuracy"] == pytest.approx(np.sum(w * hit) / np.sum(w), rel=1e-12)
    assert got["mse"] == pytest.approx(np.sum(w * se) / np.sum(w), rel=1e-12)
    plain = model.evaluate(x, labels, batch_size=7, verbose=0, return_dict=True)
    assert plain["weighted_accuracy"] == pytest.approx(hit.mean(), rel=1e-12)  # no weights: w = 1
    zero = model.evaluate(x, labels, sample_weight=np.zeros(24), verbose=0, return_dict=True)
    assert zero["loss"] == 0.0 and zero["weighted_accuracy"] == 0.0  # Keras's divide_no_nan


def test_validation_split_splits_the_sample_weights() -> None:
    x, labels, w = _data(40)
    model = _softmax_regression(weighted_metrics=["accuracy"])
    hist = model.fit(x, labels, sample_weight=w, validation_split=0.25, batch_size=8, epochs=1, verbose=0)
    got = model.evaluate(x[30:], labels[30:], sample_weight=w[30:], verbose=0, return_dict=True)
    assert hist.history["val_loss"][0] == pytest.approx(got["loss"], rel=1e-12)
    assert hist.history["val_accuracy"][0] == pytest.approx(got["accuracy"], rel=1e-12)
    other = _softmax_regression(weighted_metrics=["accuracy"])
    hist2 = other.fit(x[:30], labels[:30], sample_weight=w[:30], validation_data=(x[30:], labels[30:], w[30:]),
                      batch_size=8, epochs=1, verbose=0)  # fmt: skip
    assert hist2.history == hist.history


def test_streamed_batches_carry_the_weights_like_resident_ones() -> None:
    x, labels, w = _data(50)
    results = []
    for limit in (None, 0):
        model = _softmax_regression(weighted_metrics=["accuracy"])
        assert model.ops is not None
        model.ops.max_resident_bytes = limit
        try:
            hist = model.fit(x, labels, sample_weight=w, batch_size=16, epochs=2, verbose=0)
        finally:
            model.ops.max_resident_bytes = None
        results.append((model.get_weights(), hist.history))
    for a, b in zip(results[0][0], results[1][0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert results[0][1] == results[1][1]


def test_bad_weights_raise_errors_that_name_what_was_received() -> None:
    x, labels, w = _data(10)
    model = _softmax_regression()
    with pytest.raises(ValueError, match="pass sample_weight or class_weight, not both"):
        model.fit(x, labels, sample_weight=w, class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(10,\).*received shape \(9,\)"):
        model.fit(x, labels, sample_weight=w[:9], verbose=0)
    with pytest.raises(ValueError, match=r"received shape \(10, 2\)"):
        model.evaluate(x, labels, sample_weight=np.ones((10, 2)), verbose=0)
    with pytest.raises(ValueError, match=r"non-negative, received a minimum of -1\.0"):
        model.fit(x, labels, sample_weight=-np.ones(10), verbose=0)
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(x, labels, sample_weight=np.full(10, np.nan), verbose=0)
    with pytest.raises(ValueError, match=r"class_weight keys must be class indices 0..2 for this model, received 3"):
        model.fit(x, labels, class_weight={3: 2.0}, verbose=0)
    with pytest.raises(ValueError, match=r"class_weight keys.*received 'cat'"):
        model.fit(x, labels, class_weight={"cat": 2.0}, verbose=0)
    with pytest.raises(ValueError, match="non-negative numbers, received -2 for class 1"):
        model.fit(x, labels, class_weight={1: -2}, verbose=0)
    with pytest.raises(TypeError, match=r"class_weight must be a dict.*received list"):
        model.fit(x, labels, class_weight=[1.0, 2.0, 3.0], verbose=0)
    with pytest.raises(ValueError, match="'precision' is not a mean of per-sample values"):
        model.compile("sgd", "sparse_categorical_crossentropy", weighted_metrics=["precision"])
    assert model.weighted_metric_ids == []  # refused at compile, before anything changed
    with pytest.raises(ValueError, match="'auc' is not a mean"):
        model.compile("sgd", "sparse_categorical_crossentropy", weighted_metrics=[xpnet.metrics.AUC()])


def test_weighted_metrics_survive_save_and_load(tmp_path: Any) -> None:
    x, labels, w = _data()
    model = _softmax_regression(metrics=["accuracy"], weighted_metrics=["accuracy"])
    model.save(tmp_path / "m.keras")
    again = xpnet.models.load_model(tmp_path / "m.keras")
    assert again.metrics_names == ["loss", "accuracy", "weighted_accuracy"]
    assert again.evaluate(x, labels, sample_weight=w, verbose=0) == model.evaluate(
        x, labels, sample_weight=w, verbose=0
    )


def test_one_weight_array_weighs_every_output_of_a_two_output_model() -> None:
    """Keras 3 with one sample_weight array and two outputs: each output's loss is Σ wᵢℓᵢ / n (reported without
    its loss weight) and the total is Σ_k loss_weight_k × that; plain metrics ignore the weights."""
    x, labels, w = _data()
    t = x[:, :1] * 0.5
    inp = xpnet.Input((5,))
    h = Dense(4, "tanh", name="h")(inp)
    model = xpnet.Model(inp, [Dense(3, "softmax", name="cls")(h), Dense(1, name="reg")(h)], seed=2, dtype="float64")
    model.compile("sgd", ["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5], metrics=[[], ["mae"]])
    p, o = model.predict(x)
    ce, se = -np.log(p[np.arange(len(x)), labels]), (o - t)[:, 0] ** 2
    logs = model.evaluate(x, [labels, t], sample_weight=w, verbose=0, return_dict=True)
    assert isinstance(logs, dict)
    assert logs["cls_loss"] == pytest.approx(float(np.sum(w * ce) / len(x)), rel=1e-12)
    assert logs["reg_loss"] == pytest.approx(float(np.sum(w * se) / len(x)), rel=1e-12)
    assert logs["loss"] == pytest.approx(logs["cls_loss"] + 0.5 * logs["reg_loss"], rel=1e-12)
    assert logs["reg_mae"] == pytest.approx(float(np.mean(np.abs(o - t))), rel=1e-12)
    with pytest.raises(ValueError, match="class_weight is only supported for models with one output"):
        model.fit(x, [labels, t], class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="per-output sample weights"):
        model.fit(x, [labels, t], sample_weight=[w, w], verbose=0)
    with pytest.raises(ValueError, match="per-output sample weights"):
        model.evaluate(x, [labels, t], sample_weight={"cls": w, "reg": w}, verbose=0)
    with pytest.raises(ValueError, match="weighted_metrics on a model with 2 outputs is not supported"):
        model.compile("sgd", "mse", weighted_metrics=["mae"])
