"""Compile-time precision / recall / F1 / AUC: counts summed on the device, equal to xpnet.evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Sequential
from xpnet import evaluation as ev
from xpnet import metrics as metrics_mod
from xpnet.losses import BinaryCrossentropy, SparseCategoricalCrossentropy
from xpnet.metrics import AUC, F1Score, Precision, Recall

N = 203  # batch sizes 13 and 16 do not divide it
METRICS = ["accuracy", "precision", "recall", "f1_score", "auc"]


def blobs(n: int = N, k: int = 3, spread: float = 0.8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian clusters in 4-D: (n, 4) float32, labels (n,) int64 in [0, k)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = np.eye(k, 4, dtype=np.float32)
    return (centers[y] + spread * rng.standard_normal((n, 4))).astype(np.float32), y


def trained(output: Dense, loss: Any, y: np.ndarray, x: np.ndarray, backend: str, metrics: list[Any]) -> Sequential:
    model = Sequential([Dense(8, "relu", input_shape=(4,)), output], seed=1)
    model.compile(xpnet.optimizers.Adam(0.02), loss, metrics=metrics, backend=backend)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    return model


def on_device(ops: Any, a: np.ndarray) -> Any:
    return ops.asarray(a)


def state(ops: Any, metric: metrics_mod.Metric, y_true: np.ndarray, y_pred: np.ndarray, parts: int = 1) -> np.ndarray:
    """The metric's summed state over `parts` batches, read back to the host."""
    total = None
    for yt, yp in zip(np.array_split(y_true, parts), np.array_split(y_pred, parts), strict=True):
        s = metric.update(ops.xp, on_device(ops, yt), on_device(ops, yp))
        total = s if total is None else total + s
    return ops.to_numpy(total)


# ---------------------------------------------------------------------------- whole models


def test_softmax_model_metrics_equal_the_host_functions(backend: str) -> None:
    x, y = blobs()
    model = trained(Dense(3, "softmax"), "sparse_categorical_crossentropy", y, x, backend, METRICS)
    assert [type(m).__name__ for m in model.metrics[1:]] == ["Precision", "Recall", "F1Score", "AUC"]
    result = model.evaluate(x, y, batch_size=13, verbose=0, return_dict=True)
    assert isinstance(result, dict)
    p = model.predict(x)
    prec, rec, f1 = ev.precision_recall_f1(y, p.argmax(1), average="macro")
    assert result["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))
    assert result["precision"] == pytest.approx(prec, abs=1e-12)
    assert result["recall"] == pytest.approx(rec, abs=1e-12)
    assert result["f1_score"] == pytest.approx(f1, abs=1e-12)
    assert result["auc"] == pytest.approx(ev.roc_auc(y, p), abs=1e-2)
    assert 0.5 < result["auc"] < 1.0


def test_one_hot_targets_give_the_same_values(backend: str) -> None:
    x, y = blobs()
    onehot = np.eye(3, dtype=np.float32)[y]
    model = trained(Dense(3, "softmax"), "categorical_crossentropy", onehot, x, backend, METRICS)
    result = model.evaluate(x, onehot, batch_size=16, verbose=0, return_dict=True)
    assert isinstance(result, dict)
    p = model.predict(x)
    assert result["f1_score"] == pytest.approx(ev.f1_score(y, p.argmax(1), average="macro"), abs=1e-12)
    assert result["auc"] == pytest.approx(ev.roc_auc(onehot, p), abs=1e-2)


def test_sigmoid_model_metrics_equal_the_host_functions(backend: str) -> None:
    x, labels = blobs()
    y = (labels == 0).astype(np.float32)
    model = trained(Dense(1, "sigmoid"), "binary_crossentropy", y, x, backend, METRICS)
    result = model.evaluate(x, y, batch_size=13, verbose=0, return_dict=True)
    assert isinstance(result, dict)
    p = model.predict(x)[:, 0]
    hard = (p > 0.5).astype(int)
    assert result["accuracy"] == pytest.approx(np.mean(hard == y))
    assert result["precision"] == pytest.approx(ev.precision(y, hard), abs=1e-12)
    assert result["recall"] == pytest.approx(ev.recall(y, hard), abs=1e-12)
    assert result["f1_score"] == pytest.approx(ev.f1_score(y, hard), abs=1e-12)
    assert result["auc"] == pytest.approx(ev.roc_auc(y, p), abs=1e-2)


def test_logit_outputs_use_threshold_zero_and_squash_scores_for_auc(backend: str) -> None:
    x, labels = blobs()
    y = (labels == 1).astype(np.float32)
    metrics = ["precision", "recall", "auc", Precision(threshold=1.0, name="precision_at_1")]
    model = trained(Dense(1), BinaryCrossentropy(from_logits=True), y, x, backend, metrics)
    result = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert isinstance(result, dict)
    logits = model.predict(x)[:, 0]
    assert result["precision"] == pytest.approx(ev.precision(y, (logits > 0).astype(int)), abs=1e-12)
    assert result["recall"] == pytest.approx(ev.recall(y, (logits > 0).astype(int)), abs=1e-12)
    assert result["precision_at_1"] == pytest.approx(ev.precision(y, (logits > 1.0).astype(int)), abs=1e-12)
    assert result["auc"] == pytest.approx(ev.roc_auc(y, logits), abs=1e-2)


def test_softmax_from_logits_auc(backend: str) -> None:
    x, y = blobs()
    model = trained(Dense(3), SparseCategoricalCrossentropy(from_logits=True), y, x, backend, ["auc", "f1_score"])
    result = model.evaluate(x, y, batch_size=13, verbose=0, return_dict=True)
    assert isinstance(result, dict)
    logits = model.predict(x)
    e = np.exp(logits - logits.max(1, keepdims=True))
    probs = e / e.sum(1, keepdims=True)  # the AUC of softmax probabilities, not of raw logit columns
    assert result["auc"] == pytest.approx(ev.roc_auc(y, probs), abs=1e-2)
    assert result["f1_score"] == pytest.approx(ev.f1_score(y, logits.argmax(1), average="macro"), abs=1e-12)


def test_micro_and_weighted_instances(backend: str) -> None:
    x, y = blobs(k=4, spread=1.0)
    metrics = [
        "accuracy",
        Precision(average="micro", name="micro_precision"),
        F1Score(average="weighted", name="weighted_f1"),
        Recall(average="weighted", name="weighted_recall"),
    ]
    model = trained(Dense(4, "softmax"), "sparse_categorical_crossentropy", y, x, backend, metrics)
    result = model.evaluate(x, y, batch_size=13, verbose=0, return_dict=True)
    assert isinstance(result, dict)
    pred = model.predict(x).argmax(1)
    assert result["micro_precision"] == pytest.approx(result["accuracy"])
    assert result["weighted_f1"] == pytest.approx(ev.f1_score(y, pred, average="weighted"), abs=1e-12)
    assert result["weighted_recall"] == pytest.approx(result["accuracy"])  # weighted recall = accuracy


def test_fit_logs_and_validation_values(backend: str) -> None:
    x, y = blobs()
    model = Sequential([Dense(8, "relu", input_shape=(4,)), Dense(3, "softmax")], seed=1)
    model.compile(xpnet.optimizers.Adam(0.02), "sparse_categorical_crossentropy", metrics=METRICS, backend=backend)
    hist = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0)
    names = ["loss", *METRICS]
    assert set(hist.history) == {*names, *(f"val_{k}" for k in names)}
    assert all(0.0 <= v <= 1.0 for k in METRICS for v in hist.history[k] + hist.history[f"val_{k}"])
    split = int(N * 0.75)
    vx, vy = x[split:], y[split:]
    p = model.predict(vx)
    assert hist.history["val_f1_score"][-1] == pytest.approx(ev.f1_score(vy, p.argmax(1), average="macro"))
    assert hist.history["val_auc"][-1] == pytest.approx(ev.roc_auc(vy, p), abs=1e-2)


# ---------------------------------------------------------------------------- update / result by hand


def test_binary_counts_add_up_over_batches(ops: Any) -> None:
    # threshold .5 -> predicted [1, 1, 0, 1, 0]: tp 2 (samples 0, 3), fp 1 (1), fn 1 (2)
    y_true = np.array([[1.0], [0.0], [1.0], [1.0], [0.0]], np.float32)
    y_pred = np.array([[0.9], [0.6], [0.4], [0.7], [0.2]], np.float32)
    loss = metrics_mod.get("precision", BinaryCrossentropy(), 1)
    for parts in (1, 2, 5):
        s = state(ops, loss, y_true, y_pred, parts)
        np.testing.assert_array_equal(s, [2, 1, 1])
    for name, want in (("precision", 2 / 3), ("recall", 2 / 3), ("f1_score", 2 / 3)):
        metric = metrics_mod.get(name, BinaryCrossentropy(), 1)
        assert metric.result(state(ops, metric, y_true, y_pred, 2), 5) == pytest.approx(want)
    strict = Precision(threshold=0.65)  # predicted [1, 0, 0, 1, 0]: tp 2, fp 0
    assert strict.result(state(ops, strict, y_true, y_pred), 5) == 1.0


def test_multiclass_counts_with_a_class_never_predicted(ops: Any) -> None:
    # predicted (argmax) [0, 0, 2, 2]; true [0, 1, 2, 2]: tp (1, 0, 2), fp (1, 0, 0), fn (0, 1, 0)
    y_true = np.array([0, 1, 2, 2], np.int32)
    y_pred = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.3, 0.5]], np.float32)
    loss = SparseCategoricalCrossentropy()
    metric = metrics_mod.get("precision", loss, 3)
    s = state(ops, metric, y_true, y_pred, 3)
    np.testing.assert_array_equal(s, [1, 0, 2, 1, 0, 0, 0, 1, 0])
    # precision (1/2, 0/0 -> 0, 1): macro 1/2; recall (1, 0, 1): 2/3; f1 (2/3, 0, 1): 5/9
    assert metric.result(s, 4) == pytest.approx(0.5)
    assert metrics_mod.get("recall", loss, 3).result(s, 4) == pytest.approx(2 / 3)
    assert metrics_mod.get("f1_score", loss, 3).result(s, 4) == pytest.approx(5 / 9)
    assert Precision(average="micro").result(s, 4) == pytest.approx(0.75)  # accuracy


def test_auc_state_and_value_by_hand(ops: Any) -> None:
    metric = AUC(num_thresholds=5)  # thresholds -ε, .25, .5, .75, 1+ε
    np.testing.assert_allclose(metric.thresholds(), [-1e-7, 0.25, 0.5, 0.75, 1 + 1e-7])
    metric.configure(BinaryCrossentropy(), 1)
    y_true = np.array([[1], [1], [0], [0], [1], [0]], np.float32)
    y_pred = np.array([[0.9], [0.6], [0.6], [0.1], [0.3], [0.28]], np.float32)
    s = state(ops, metric, y_true, y_pred, 2)
    # positives .9 .6 .3 above each threshold: 3, 3, 2, 1, 0; negatives .6 .1 .28: 3, 2, 1, 0, 0
    np.testing.assert_array_equal(s, [3, 3, 2, 1, 0, 3, 2, 1, 0, 0])
    # (fpr, tpr): (1, 1) (2/3, 1) (1/3, 2/3) (0, 1/3) (0, 0): 1/3·1 + 1/3·5/6 + 1/3·1/2 = 7/9
    assert metric.result(s, 6) == pytest.approx(7 / 9)
    # exactly, .3 beats .28, but they share the bin (.25, .5] and count as a tie: half a pair of 9 lost
    # (.9 beats 3, .6 beats 2 and ties 1, .3 beats 2: 7.5 of 9 pairs)
    assert ev.roc_auc(y_true[:, 0], y_pred[:, 0]) == pytest.approx(7.5 / 9)


def test_auc_perfect_inverted_and_undefined(ops: Any) -> None:
    metric = metrics_mod.get("auc", BinaryCrossentropy(), 1)
    y = np.array([[0], [0], [1], [1]], np.float32)
    good = np.array([[0.1], [0.2], [0.8], [0.95]], np.float32)
    assert metric.result(state(ops, metric, y, good), 4) == pytest.approx(1.0)
    assert metric.result(state(ops, metric, y, 1 - good), 4) == pytest.approx(0.0)
    assert np.isnan(metric.result(state(ops, metric, np.ones((4, 1), np.float32), good), 4))
    # scores outside [0, 1] are clipped into the end bins
    wide = np.array([[-3.0], [0.2], [0.8], [7.0]], np.float32)
    assert metric.result(state(ops, metric, y, wide), 4) == pytest.approx(1.0)


def test_multiclass_auc_skips_classes_without_positives(ops: Any) -> None:
    metric = metrics_mod.get("auc", SparseCategoricalCrossentropy(), 3)
    y_true = np.array([0, 1, 0, 1], np.int32)  # class 2 never occurs
    y_pred = np.array([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.3, 0.4, 0.3]], np.float32)
    s = state(ops, metric, y_true, y_pred, 2)
    assert s.shape == (2 * 3 * 200,)
    assert metric.result(s, 4) == pytest.approx(1.0)  # classes 0 and 1 are separated perfectly


# ---------------------------------------------------------------------------- resolution


def test_names_resolve_from_the_loss_and_output_width() -> None:
    def resolved(name: str, loss: str, width: int) -> Any:
        metric = metrics_mod.get(name, xpnet.losses.get(loss), width)
        assert isinstance(metric, (Precision, Recall, F1Score, AUC))
        return metric._is_multiclass(np.zeros((1, width), np.float32))

    assert resolved("precision", "sparse_categorical_crossentropy", 10)
    assert resolved("auc", "categorical_crossentropy", 3)
    assert not resolved("recall", "binary_crossentropy", 1)
    assert not resolved("f1_score", "binary_crossentropy", 4)  # multi-label sigmoid: per element
    assert not resolved("auc", "mse", 1)
    metric = metrics_mod.get("precision", SparseCategoricalCrossentropy(), 10)
    assert isinstance(metric, Precision) and metric.name == "precision"  # no one-hot wrapper
    assert metrics_mod.get("f1_score", BinaryCrossentropy(from_logits=True), 1)._threshold() == 0.0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="'precision', 'recall', 'f1_score', 'auc'"):
        metrics_mod.get("precisoin", BinaryCrossentropy(), 1)
    with pytest.raises(ValueError, match="average"):
        Precision(average="binary")
    with pytest.raises(ValueError, match="num_thresholds"):
        AUC(num_thresholds=2)


def test_an_instance_reused_by_two_models_is_reconfigured() -> None:
    shared = F1Score()
    binary = Sequential([Dense(1, "sigmoid", input_shape=(4,))], seed=0)
    binary.compile("sgd", "binary_crossentropy", metrics=[shared])
    assert shared._multiclass is False
    multi = Sequential([Dense(3, "softmax", input_shape=(4,))], seed=0)
    multi.compile("sgd", "sparse_categorical_crossentropy", metrics=[shared])
    assert shared._multiclass is True
