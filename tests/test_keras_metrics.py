"""Keras's loss-named metrics and the `Metric` subclass API, against the values Keras documents
for each metric (its docstring's standalone example) and against the losses they are named after."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import metrics as M

P2 = [[0.6, 0.4], [0.4, 0.6]]
Y2 = [[0, 1], [0, 0]]
R2 = [[1, 1], [0, 0]]
P3 = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]

# (metric, y_true, y_pred, sample_weight, the value in Keras's documentation)
DOCUMENTED = [
    (M.BinaryCrossentropy, Y2, P2, None, 0.81492424),
    (M.BinaryCrossentropy, Y2, P2, [1, 0], 0.9162905),
    (M.CategoricalCrossentropy, [[0, 1, 0], [0, 0, 1]], P3, None, 1.1769392),
    (M.CategoricalCrossentropy, [[0, 1, 0], [0, 0, 1]], P3, [0.3, 0.7], 1.6271976),
    (M.SparseCategoricalCrossentropy, [1, 2], P3, None, 1.1769392),
    (M.SparseCategoricalCrossentropy, [1, 2], P3, [0.3, 0.7], 1.6271976),
    (M.MeanSquaredError, Y2, R2, None, 0.25),
    (M.MeanSquaredError, Y2, R2, [1, 0], 0.5),
    (M.MeanAbsoluteError, Y2, R2, None, 0.25),
    (M.MeanAbsoluteError, Y2, R2, [1, 0], 0.5),
    (M.Poisson, Y2, R2, None, 0.49999997),
    (M.Hinge, Y2, P2, None, 1.3),
    (M.SquaredHinge, Y2, P2, None, 1.86),
    (M.CategoricalHinge, Y2, P2, None, 1.4000001),
    (M.KLDivergence, Y2, P2, None, 0.45814306),
    (M.LogCoshError, Y2, R2, None, 0.10844523),
    (M.MeanSquaredLogarithmicError, Y2, R2, None, 0.12011322),
    (M.RootMeanSquaredError, Y2, R2, None, 0.5),
    (M.CosineSimilarity, [[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]], None, 0.49999997),
    (M.SparseCategoricalAccuracy, [[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], None, 0.5),
    (M.Precision, [0, 1, 1, 1], [1, 0, 1, 1], None, 0.6666667),
]


@pytest.mark.parametrize(("cls", "y_true", "y_pred", "weights", "want"), DOCUMENTED)
def test_standalone_values_match_kerass_documentation(
    cls: Any, y_true: Any, y_pred: Any, weights: Any, want: float
) -> None:
    m = cls()
    m.update_state(y_true, y_pred, sample_weight=weights)
    assert m.result() == pytest.approx(want, rel=2e-6)
    m.reset_state()
    assert m.result() == 0.0
    assert m(y_true, y_pred, weights) == pytest.approx(want, rel=2e-6)  # update, then the result


def test_state_accumulates_over_updates_and_names_are_kerass() -> None:
    m = M.MeanSquaredError(name="my_mse")
    m.update_state([[0.0]], [[1.0]])
    m.update_state([[0.0], [0.0]], [[0.0], [0.0]])
    assert m.result() == pytest.approx(1 / 3)
    assert m.name == "my_mse" and M.BinaryCrossentropy().name == "binary_crossentropy"
    assert M.BinaryCrossentropy(label_smoothing=0.2)(Y2, P2) != pytest.approx(0.81492424)
    assert M.BinaryCrossentropy(from_logits=True)([[1.0]], [[0.0]]) == pytest.approx(np.log(2.0), rel=1e-6)
    with pytest.raises(ValueError, match="label_smoothing"):
        M.CategoricalCrossentropy(label_smoothing=2.0)


def _fit_metrics(loss: str, metric: Any, y: np.ndarray, width: int, act: str) -> dict[str, list[float]]:
    rng = np.random.default_rng(0)
    x = rng.random((64, 5)).astype(np.float32)
    model = xpnet.Sequential([xpnet.Dense(6, "relu", input_shape=(5,)), xpnet.Dense(width, act)], seed=0)
    model.compile("sgd", loss, metrics=[metric], backend="numpy")
    return model.fit(x, y, batch_size=64, epochs=2, verbose=0).history


@pytest.mark.parametrize(
    ("loss", "metric", "kind"),
    [
        ("binary_crossentropy", M.BinaryCrossentropy(), "binary"),
        ("categorical_crossentropy", M.CategoricalCrossentropy(), "onehot"),
        ("sparse_categorical_crossentropy", M.SparseCategoricalCrossentropy(), "sparse"),
        ("sparse_categorical_crossentropy", M.CategoricalCrossentropy(name="cce"), "sparse"),
        ("mse", "mean_squared_error", "onehot"),
        ("poisson", M.Poisson(), "onehot"),
    ],
)
def test_a_loss_named_metric_equals_the_loss_it_is_named_after(loss: str, metric: Any, kind: str) -> None:
    labels = np.random.default_rng(1).integers(0, 3, 64)
    if kind == "binary":
        y, width, act = (labels > 0).astype(np.float32)[:, None], 1, "sigmoid"
    elif kind == "onehot":
        y, width, act = np.eye(3, dtype=np.float32)[labels], 3, "softmax"
    else:
        y, width, act = labels, 3, "softmax"
    # one batch per epoch: the metric sees the same predictions as the loss
    hist = _fit_metrics(loss, metric, y, width, act)
    name = metric if isinstance(metric, str) else metric.name
    np.testing.assert_allclose(hist[name], hist["loss"], rtol=1e-5)


class BinaryTruePositives(M.Metric):
    """Keras's guide example, written with array operators and methods instead of `ops`."""

    def __init__(self, name: str = "binary_true_positives", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), initializer="zeros", name="true_positives")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        hits = (y_true > 0.5) & (y_pred > 0.5)
        self.true_positives.assign_add(hits.sum())

    def result(self) -> Any:
        return self.true_positives


class MeanAbsoluteByHand(M.Metric):
    """A mean written as two variables, total and count."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.total = self.add_variable((), name="total")
        self.count = self.add_variable((), name="count")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        self.total.assign_add(abs(y_pred - y_true).mean(axis=-1).sum())
        self.count.assign_add(y_true.shape[0])

    def result(self) -> Any:
        return self.total / self.count


def _regression(backend: str) -> tuple[xpnet.Sequential, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.random((80, 4)).astype(np.float32)
    y = (x[:, :1] > 0.5).astype(np.float32)
    model = xpnet.Sequential([xpnet.Dense(8, "relu", input_shape=(4,)), xpnet.Dense(1, "sigmoid")], seed=3)
    model.compile(
        "adam",
        "binary_crossentropy",
        metrics=["mae", MeanAbsoluteByHand(name="mae_by_hand"), BinaryTruePositives()],
        backend=backend,
    )
    return model, x, y


def test_a_users_keras_style_metric_in_fit_and_evaluate(backend: str) -> None:
    if backend == "strict":
        pytest.skip("the metric uses NumPy/CuPy array methods (.sum, .mean), which the array API leaves out")
    model, x, y = _regression(backend)
    hist = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    np.testing.assert_allclose(hist["mae_by_hand"], hist["mae"], rtol=1e-5)
    result = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    pred = model.predict(x)
    assert result["binary_true_positives"] == float(np.sum((pred > 0.5) & (y > 0.5)))
    assert result["mae_by_hand"] == pytest.approx(float(np.mean(np.abs(pred - y))), rel=1e-5)
    again = model.evaluate(x, y, batch_size=40, verbose=0, return_dict=True)  # reset at the start of each pass
    assert again["binary_true_positives"] == result["binary_true_positives"]


def test_kept_batch_logs_hold_a_keras_style_metric_as_it_was_at_that_batch() -> None:
    # a callback may keep each batch's logs and read them after fit, as with Keras's dicts; the
    # user metric's value was read from its variables at that late time (validation's state)
    model, x, y = _regression("numpy")
    kept: list[Any] = []
    now: list[float] = []
    keep = xpnet.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: kept.append(logs))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[keep], validation_data=(x[:5], y[:5]))
    model2, _, _ = _regression("numpy")
    read = xpnet.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: now.append(logs["mae_by_hand"]))
    model2.fit(
        x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[read], validation_data=(x[:5], y[:5])
    )
    np.testing.assert_allclose([logs["mae_by_hand"] for logs in kept], now, rtol=1e-6)
    np.testing.assert_allclose([logs["mae_by_hand"] for logs in kept], [logs["mae"] for logs in kept], rtol=1e-5)


def test_keras_style_metric_misuse_is_named() -> None:
    with pytest.raises(TypeError, match="pass an instance, BinaryTruePositives"):
        _regression("numpy")[0].compile("sgd", "mse", metrics=[BinaryTruePositives])

    class Half(M.Metric):
        pass

    with pytest.raises(NotImplementedError, match="update_state"):
        Half()([[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="keeps its own state"):
        M.WeightedMean(BinaryTruePositives())
    assert "true_positives" in repr(BinaryTruePositives().variables[0])


@pytest.mark.gpu
def test_a_keras_style_metric_on_cupy_costs_no_extra_read() -> None:
    from xpnet.backend import _cupy_problem

    if _cupy_problem(0):
        pytest.skip("needs the CuPy backend (a GPU or the gpu-sim stand-in)")
    gpusim = pytest.importorskip("gpusim")
    model, x, y = _regression("cupy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    with gpusim.counting() as with_user:
        hist = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    np.testing.assert_allclose(hist["mae_by_hand"], hist["mae"], rtol=1e-5)
    plain = xpnet.Sequential([xpnet.Dense(8, "relu", input_shape=(4,)), xpnet.Dense(1, "sigmoid")], seed=3)
    plain.compile("adam", "binary_crossentropy", metrics=["mae"], backend="cupy")
    plain.fit(x, y, batch_size=16, epochs=1, verbose=0)
    with gpusim.counting() as builtin_only:
        plain.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert with_user.syncs == builtin_only.syncs
