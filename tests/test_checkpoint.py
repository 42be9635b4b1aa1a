"""Checkpoints and resume: a run killed mid-epoch and resumed ends with the uninterrupted run's weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Dropout, Sequential
from xpnet.callbacks import Callback
from xpnet.checkpoint import Checkpoint, CheckpointError, list_checkpoints

WORKER = Path(__file__).with_name("resume_worker.py")


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 6)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def model(optimizer: str = "adam", units: int = 16) -> Sequential:
    m = Sequential([Dense(units, "relu", input_shape=(6,)), Dropout(0.2), Dense(2, "softmax")], seed=3)
    m.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


class Crash(Callback):
    """Stands in for a crash: raises after a given number of optimizer steps."""

    def __init__(self, at_step: int) -> None:
        super().__init__()
        self.at_step = at_step

    def on_train_batch_end(self, batch: int, logs: None = None) -> None:
        assert self.model is not None and self.model.optimizer is not None
        if self.model.optimizer.iterations == self.at_step:
            raise KeyboardInterrupt


def test_resume_mid_epoch_is_bit_identical(tmp_path: Path) -> None:
    x, y = data()
    ref = model()
    ref_hist = ref.fit(x, y, batch_size=16, epochs=3, validation_split=0.2, verbose=0)
    crashed = model()
    with pytest.raises(KeyboardInterrupt):  # 15 steps per epoch: dies at step 23, last checkpoint at 20
        crashed.fit(x, y, batch_size=16, epochs=3, validation_split=0.2, verbose=0,
                    callbacks=[Checkpoint(tmp_path, save_freq=4), Crash(23)])  # fmt: skip
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"ckpt-{s:09d}.npz" for s in (12, 16, 20)]
    resumed = model()
    hist = resumed.fit(x, y, batch_size=16, epochs=3, validation_split=0.2, verbose=0, resume_from=tmp_path)
    for a, b in zip(ref.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert hist.history == ref_hist.history
    assert resumed.optimizer.iterations == ref.optimizer.iterations == 45


def test_resume_from_an_epoch_end_checkpoint(tmp_path: Path) -> None:
    x, y = data()
    ref = model("sgd")
    ref.fit(x, y, batch_size=32, epochs=4, verbose=0)
    first = model("sgd")
    first.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Checkpoint(tmp_path)])
    resumed = model("sgd")
    resumed.fit(x, y, batch_size=32, epochs=4, verbose=0, resume_from=tmp_path)
    for a, b in zip(ref.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_empty_folder_starts_from_the_beginning(tmp_path: Path) -> None:
    x, y = data()
    a, b = model(), model()
    a.fit(x, y, epochs=1, verbose=0)
    b.fit(x, y, epochs=1, verbose=0, resume_from=tmp_path)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    x, y = data()
    ref = model()
    ref.fit(x, y, batch_size=16, epochs=2, verbose=0)
    crashed = model()
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[Checkpoint(tmp_path, 5), Crash(27)])
    newest = list_checkpoints(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a partial write
    resumed = model()
    with pytest.warns(RuntimeWarning, match=r"skipping checkpoint.*ckpt-000000025\.npz.*previous one, ckpt-000000020"):
        resumed.fit(x, y, batch_size=16, epochs=2, verbose=0, resume_from=tmp_path)
    for a, b in zip(ref.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_flipped_bits_are_detected(tmp_path: Path) -> None:
    x, y = data()
    m = model()
    m.fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(tmp_path)])
    (path,) = list_checkpoints(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="all 1 are corrupt"), pytest.warns(RuntimeWarning):
        model().fit(x, y, epochs=2, verbose=0, resume_from=tmp_path)


def test_mismatched_model_or_optimizer_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    x, y = data()
    model("adam").fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(tmp_path)])
    other = model("sgd")
    before = other.get_weights()
    with pytest.raises(CheckpointError, match=r"optimizer Adam.*compiled with SGD"):
        other.fit(x, y, epochs=2, verbose=0, resume_from=tmp_path)
    np.testing.assert_array_equal(before[0], other.get_weights()[0])
    with pytest.raises(CheckpointError, match="different architecture"):
        model("adam", units=8).fit(x, y, epochs=2, verbose=0, resume_from=tmp_path)
    with pytest.raises(CheckpointError, match="same data and batch size"):
        model("adam").fit(x, y, batch_size=64, epochs=2, verbose=0, resume_from=tmp_path)


def test_keeps_only_the_newest_checkpoints(tmp_path: Path) -> None:
    x, y = data()
    model().fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[Checkpoint(tmp_path, save_freq=3, keep=2)])
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000027.npz", "ckpt-000000030.npz"]
    with pytest.raises(ValueError, match="save_freq"):
        Checkpoint(tmp_path, save_freq=0)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(WORKER), *args], env=env, capture_output=True, text=True, check=True)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "XPNET_BACKEND": "numpy"}
    _run([str(tmp_path / "ref_ckpt"), str(tmp_path / "ref.npz")], env)
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, str(WORKER), str(ckpt), str(tmp_path / "dead.npz"), "--slow"], env=env)
    deadline = time.monotonic() + 60
    # 34 steps per epoch: wait for a checkpoint inside the second epoch, then kill without warning
    while time.monotonic() < deadline and not any(int(p.name[5:14]) > 40 for p in list_checkpoints(ckpt)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "dead.npz").exists()
    _run([str(ckpt), str(tmp_path / "resumed.npz"), "--resume"], env)
    with np.load(tmp_path / "ref.npz") as ref, np.load(tmp_path / "resumed.npz") as got:
        assert set(ref.files) == set(got.files)
        for k in ref.files:
            np.testing.assert_array_equal(ref[k], got[k])


def test_checkpoint_holds_no_pickle(tmp_path: Path) -> None:
    x, y = data()
    model().fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(tmp_path)])
    (path,) = list_checkpoints(tmp_path)
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    assert xpnet.checkpoint.load(path)[0]["position"] == {"epoch": 1, "step": 0, "n": 300, "batch_size": 32}


def test_a_diverged_epoch_is_not_checkpointed(tmp_path: Path) -> None:
    x, y = data()
    m = model("sgd")
    m.fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(tmp_path)])
    m.optimizer.learning_rate = 1e30
    with pytest.warns(RuntimeWarning, match="no checkpoint written"):
        m.fit(x * 1e3, y, epochs=3, verbose=0, callbacks=[Checkpoint(tmp_path)])
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000010.npz"]


def test_early_stopping_patience_survives_a_resume(tmp_path: Path) -> None:
    from xpnet import EarlyStopping

    x, y = data()

    def run(epochs: int, resume: bool) -> int:
        m = model()
        stop = EarlyStopping(monitor="loss", patience=2, min_delta=0.5)
        cbs = [Checkpoint(tmp_path / ("r" if resume or epochs < 9 else "u")), stop]
        m.fit(x, y, epochs=epochs, verbose=0, callbacks=cbs, resume_from=(tmp_path / "r") if resume else None)
        return len(m.history.epoch)

    full = run(9, False)
    run(2, False)  # stopped after 2 epochs, before patience ran out
    assert run(9, True) == full == 3
