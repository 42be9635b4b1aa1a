"""xpnet.search: grid and random search find the known best trial, the same in one process or two."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xpnet import Dense, Dropout, Flatten
from xpnet.callbacks import History
from xpnet.datasets import playground
from xpnet.search import grid_search, loguniform, mlp_builder, randint, random_search, trial_seed


class FakeModel:
    """Scores are known in advance: val_score = 10 − (a − 3)² + b + batch_size / 1000 at every epoch."""

    def __init__(self, a: float, b: float = 0.0) -> None:
        if a < 0:
            raise ValueError("a must be >= 0")
        self.a, self.b = a, b
        self.weights = [np.full(2, a), np.full(1, b)]

    def fit(self, x: Any, y: Any, batch_size: int, epochs: int, **kwargs: Any) -> History:
        h = History()
        score = 10 - (self.a - 3) ** 2 + self.b + batch_size / 1000
        h.history = {"val_score": [score] * epochs, "loss": [1.0] * epochs}
        return h

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.weights = [np.asarray(w) for w in weights]


def fake_build(a: float, b: float = 0.0) -> FakeModel:
    return FakeModel(a, b)


X, Y = np.zeros((4, 1)), np.zeros(4)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_ranks_known_scores(n_jobs: int) -> None:
    space = {"a": [0.0, 3.0, 5.0, -1.0], "b": [0.0, 0.5]}
    result = grid_search(fake_build, space, X, Y, validation_data=(X, Y), metric="val_score", n_jobs=n_jobs, verbose=0)
    assert result.best_params == {"a": 3.0, "b": 0.5}
    assert result.best_score == pytest.approx(10.5 + 0.032)
    order = [(r["params"]["a"], r["params"]["b"]) for r in result.rows]
    assert order[:6] == [(3.0, 0.5), (3.0, 0.0), (5.0, 0.5), (5.0, 0.0), (0.0, 0.5), (0.0, 0.0)]
    # a = −1 fails in build_fn: listed last with the error, the search goes on
    assert [r["error"] is not None for r in result.rows] == [False] * 6 + [True] * 2
    assert "ValueError: a must be >= 0" in result.rows[-1]["error"]
    assert np.isnan(result.rows[-1]["val_score"])
    assert [r["rank"] for r in result.rows] == list(range(1, 9))
    # the best model: kept (n_jobs=1) or rebuilt with the worker's weights (n_jobs=2)
    assert isinstance(result.best_model, FakeModel) and result.best_model.weights[1][0] == 0.5
    table = result.table()
    assert table.splitlines()[0].split() == ["rank", "trial", "a", "b", "val_score", "seconds"]
    assert table.splitlines()[2].split()[:5] == ["1", "3", "3", "0.5", "10.5320"]


def test_mode_min_and_batch_size_as_a_searched_fit_parameter() -> None:
    space = {"a": [3.0], "batch_size": [8, 64, 512]}
    result = grid_search(fake_build, space, X, Y, validation_split=0.5, metric="val_score", mode="min", verbose=0)
    assert [r["params"]["batch_size"] for r in result.rows] == [8, 64, 512]  # smallest score first
    assert result.best_score == pytest.approx(10.008)


def test_random_search_trials_depend_on_seed_and_index_only() -> None:
    space = {"a": loguniform(0.1, 10.0), "b": [0.0, 1.0, 2.0], "batch_size": randint(1, 4)}
    kw: dict[str, Any] = {"validation_data": (X, Y), "metric": "val_score", "verbose": 0}
    r5 = random_search(fake_build, space, X, Y, n_trials=5, seed=11, **kw)
    r8 = random_search(fake_build, space, X, Y, n_trials=8, seed=11, **kw)
    p5 = {r["trial"]: r["params"] for r in r5.rows}
    p8 = {r["trial"]: r["params"] for r in r8.rows}
    assert all(p5[i] == p8[i] for i in range(5))  # more trials extend the same sequence
    assert all(0.1 <= p["a"] <= 10.0 and p["b"] in (0.0, 1.0, 2.0) and 1 <= p["batch_size"] <= 4 for p in p8.values())
    other = random_search(fake_build, space, X, Y, n_trials=5, seed=12, **kw)
    assert [r["params"] for r in other.rows] != [r["params"] for r in r5.rows]
    assert trial_seed(11, 3) == trial_seed(11, 3) != trial_seed(11, 4)


def easy_problem() -> tuple[np.ndarray, np.ndarray]:
    x, y = playground.gaussian(240, noise=0.2, seed=0)
    return x, y


def test_search_finds_the_learning_rate_that_learns_same_in_one_or_two_processes() -> None:
    x, y = easy_problem()
    build = mlp_builder(2, 2)
    space = {"learning_rate": [1e-6, 0.1], "units": [4, 8], "optimizer": ["sgd"]}
    kw: dict[str, Any] = {"validation_split": 0.25, "epochs": 4, "batch_size": 16, "verbose": 0, "seed": 3}
    one = grid_search(build, space, x, y, n_jobs=1, **kw)
    two = grid_search(build, space, x, y, n_jobs=2, **kw)
    assert [r["trial"] for r in one.rows] == [r["trial"] for r in two.rows]
    np.testing.assert_allclose([r["val_accuracy"] for r in one.rows], [r["val_accuracy"] for r in two.rows])
    assert one.best_params["learning_rate"] == 0.1 and one.best_score >= 0.95
    assert all(r["params"]["learning_rate"] == 0.1 for r in one.rows[:2])
    assert max(r["val_accuracy"] for r in one.rows[2:]) < 0.9
    # the rebuilt best model of the 2-process run is the same trained model
    xv, yv = x[180:], y[180:]
    acc1 = one.best_model.evaluate(xv, yv, verbose=0, return_dict=True)["accuracy"]
    acc2 = two.best_model.evaluate(xv, yv, verbose=0, return_dict=True)["accuracy"]
    assert acc1 == pytest.approx(one.best_score) and acc2 == pytest.approx(acc1)
    for a, b in zip(one.best_model.get_weights(), two.best_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert two.best_model.history.history["val_accuracy"] == one.rows[0]["history"]["val_accuracy"]


def test_mlp_builder_builds_the_requested_network() -> None:
    build = mlp_builder((4, 4), 3)
    model = build(units=[8, 6], activation="tanh", optimizer="rmsprop", learning_rate=0.02, dropout=0.1, l2=1e-3)
    kinds = [type(layer) for layer in model.layers]
    assert kinds == [Flatten, Dense, Dropout, Dense, Dropout, Dense]
    assert [layer.units for layer in model.layers if isinstance(layer, Dense)] == [8, 6, 3]
    assert model.layers[1].kernel_regularizer.l2 == 1e-3 and model.layers[5].activation.name == "softmax"
    assert type(model.optimizer).__name__ == "RMSprop" and model.optimizer.learning_rate == 0.02
    plain = build(layers=2, units=5, seed=9)
    assert [type(layer) for layer in plain.layers] == [Flatten, Dense, Dense, Dense] and plain.seed == 9
    assert type(plain.optimizer).__name__ == "Adam" and plain.optimizer.learning_rate == 0.001


def test_search_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="validation"):
        grid_search(fake_build, {"a": [1.0]}, X, Y, metric="val_score")
    with pytest.raises(ValueError, match="random_search"):
        grid_search(fake_build, {"a": loguniform(1, 2)}, X, Y, validation_split=0.5)
    with pytest.raises(ValueError, match="non-empty list"):
        grid_search(fake_build, {"a": []}, X, Y, validation_split=0.5)
    with pytest.raises(TypeError, match="picklable"):
        grid_search(lambda a: FakeModel(a), {"a": [1.0, 2.0]}, X, Y, metric="loss", n_jobs=2, verbose=0)
    with pytest.raises(RuntimeError, match="no trial"):
        grid_search(fake_build, {"a": [-1.0]}, X, Y, metric="loss", verbose=0)
