"""NaN weights follow Keras's one rule everywhere: they are saved and loaded as they are; the CLI fails on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import cli
from xpnet.checkpoint import Checkpoint, list_checkpoints, load
from xpnet.layers import Dense
from xpnet.models import load_model

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _diverged() -> xpnet.Sequential:
    """A model whose training blew up: SGD at a learning rate of 1e6 on unscaled inputs."""
    model = xpnet.Sequential([Dense(16, activation="relu", input_shape=(8,)), Dense(3, activation="softmax")], seed=0)
    model.compile(optimizer=xpnet.optimizers.SGD(learning_rate=1e6), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = (rng.normal(size=(64, 8)) * 1e3).astype(np.float32), rng.integers(0, 3, 64)
    with pytest.warns(RuntimeWarning, match="not finite"):
        model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert not all(np.isfinite(w).all() for w in model.get_weights())
    return model


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)  # NaN equals NaN here


def test_set_weights_of_get_weights_works_on_a_diverged_model() -> None:
    model = _diverged()
    weights = model.get_weights()
    model.set_weights(weights)
    _same(weights, model.get_weights())
    model.layers[0].weights[0].assign(np.full((8, 16), np.nan, np.float32))
    assert np.isnan(model.get_weights()[0]).all()
    with pytest.raises(ValueError, match="must be numbers, received dtype <U1"):
        model.set_weights([np.full(w.shape, "x") for w in weights])


@pytest.mark.parametrize("name", ["w.weights.npz", "w.weights.h5"])
def test_save_weights_and_load_weights_keep_nan(tmp_path: Path, name: str) -> None:
    model = _diverged()
    model.save_weights(tmp_path / name)
    fresh = xpnet.Sequential([Dense(16, activation="relu", input_shape=(8,)), Dense(3, activation="softmax")], seed=1)
    fresh.build((None, 8))
    fresh.load_weights(tmp_path / name)
    _same(model.get_weights(), fresh.get_weights())


def test_save_and_load_model_keep_nan(tmp_path: Path) -> None:
    model = _diverged()
    model.save(tmp_path / "m.keras")
    _same(model.get_weights(), load_model(tmp_path / "m.keras").get_weights())


def test_a_checkpoint_is_never_written_from_non_finite_weights(tmp_path: Path) -> None:
    model = xpnet.Sequential([Dense(16, activation="relu", input_shape=(8,)), Dense(3, activation="softmax")], seed=0)
    model.compile(optimizer=xpnet.optimizers.SGD(learning_rate=1e6), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = (rng.normal(size=(64, 8)) * 1e3).astype(np.float32), rng.integers(0, 3, 64)
    with pytest.warns(RuntimeWarning, match="not finite"):
        model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[Checkpoint(tmp_path, save_freq=1, keep=2)])
    kept = list_checkpoints(tmp_path)
    assert kept, "the first steps were finite and checkpointed"
    for path in kept:
        assert np.isfinite(load(path)[1]["params"]).all()


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not in {FASHION_DIR}")
def test_a_diverged_cli_run_exits_non_zero_in_one_line_and_keeps_the_last_finite_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--quick", "--limit", "300", "--backend", "numpy", "--no-plots", "--verbose", "0"]
    rc = cli.main([*argv, "--learning-rate", "1e4", "--checkpoint-every", "2", "--out", str(out)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith("error: training diverged at epoch 1 (the loss became nan)")
    kept = list_checkpoints(out / "checkpoints")
    assert kept and err[0].endswith(f"the last finite checkpoint is {kept[-1]}")
    assert np.isfinite(load(kept[-1])[1]["params"]).all()
    assert not (out / "weights.npz").exists() and not (out / "history.json").exists()
