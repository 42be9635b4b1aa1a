"""Model-side safety: bad seeds and metric names fail at once, a failed checkpoint write does not end
the run, a finished run resumes to nothing, and predict never swallows a NaN a backend's kernel drops."""

from __future__ import annotations

import errno
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xpnet import Dense, Dropout, Sequential, checkpoint
from xpnet.backend.numpy_ops import NumpyOps
from xpnet.checkpoint import Checkpoint


def _data(n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 6)).astype(np.float32), rng.integers(0, 3, n)


def _model(**kw: Any) -> Sequential:
    model = Sequential([Dense(8, "relu", input_shape=(6,)), Dropout(0.2), Dense(3, "softmax")], seed=1, **kw)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    return model


@pytest.mark.parametrize("seed", [-5, 1.5, True, "7"])
def test_a_bad_seed_is_refused_when_the_model_is_made(seed: Any) -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        Sequential([Dense(2, input_shape=(3,))], seed=seed)


def test_a_misspelt_metric_is_refused_at_compile() -> None:
    model = Sequential([Dense(2, "softmax")])  # not built: the name is still checked
    with pytest.raises(ValueError, match=r"Unknown metric 'acuracy'"):
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["acuracy"])


def test_a_failed_checkpoint_write_warns_and_training_goes_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def full(*args: Any, **kwargs: Any) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save", full)
    x, y = _data()
    model = _model()
    with pytest.warns(RuntimeWarning, match="not written .*No space left on device.*training goes on"):
        hist = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Checkpoint(tmp_path, save_freq=2)])
    assert len(hist.history["loss"]) == 2 and model.optimizer.iterations == 6


def test_resuming_a_finished_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Checkpoint(tmp_path)])
    again = _model()
    hist = again.fit(x, y, batch_size=32, epochs=2, verbose=1, resume_from=tmp_path)
    assert "is complete (2 of 2 epochs); nothing to resume" in capsys.readouterr().out
    assert again.optimizer.iterations == model.optimizer.iterations == 6
    assert hist.history == model.history.history
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_predict_checks_inputs_when_the_backends_relu_drops_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    """CuPy's fused relu is `u > 0 ? u : 0`, which maps NaN to 0: then the outputs cannot tell."""
    plain_forward = NumpyOps.activation_forward
    plain_dense = NumpyOps.dense_forward

    def forward(self: NumpyOps, act: Any, u: Any, in_place: bool = False) -> Any:
        return np.where(u > 0, u, 0).astype(u.dtype) if act.name == "relu" else plain_forward(self, act, u, in_place)

    def dense(self: NumpyOps, x: Any, w: Any, b: Any, act: Any, keep_u: bool = True) -> Any:
        u, _ = plain_dense(self, x, w, b, _linear(), True)
        return u, forward(self, act, u.copy())

    monkeypatch.setattr(NumpyOps, "activation_forward", forward)
    monkeypatch.setattr(NumpyOps, "dense_forward", dense)
    ops = NumpyOps()  # a fresh backend: its NaN probes run on the patched kernels
    assert not ops.carries_nan(_relu()) and ops.carries_nan(_linear())
    model = Sequential([Dense(8, "relu", input_shape=(6,)), Dense(3, "softmax")], seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy", backend=ops)
    x = np.random.default_rng(2).random((40, 6)).astype(np.float32)
    model.predict(x)
    x[5, 0] = -np.nan  # relu(NaN) -> 0 here: without an input check the answer would look finite
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"NaN or inf values \(first at index \(5, 0\)\)"):
            model.predict(x)


def _relu() -> Any:
    from xpnet.activations import get

    return get("relu")


def _linear() -> Any:
    from xpnet.activations import get

    return get("linear")
