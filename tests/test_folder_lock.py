"""Two writers on one run or checkpoint folder: the second is refused with one line naming the holder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import cli
from xpnet.checkpoint import Checkpoint, list_checkpoints
from xpnet.layers import Dense
from xpnet.runlock import LOCK_NAME, FolderLock, FolderLockedError

ROOT = Path(__file__).resolve().parents[1]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not in {FASHION_DIR}")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

_HOLDER = """
import sys
from xpnet.runlock import FolderLock
lock = FolderLock(sys.argv[1], "checkpoint writer").acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def _holder(folder: Path) -> subprocess.Popen[str]:
    """A second process that takes the folder's lock and keeps it until killed or its stdin closes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _model() -> xpnet.Sequential:
    model = xpnet.Sequential([Dense(3, activation="softmax", input_shape=(4,))], seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 4)).astype(np.float32), rng.integers(0, 3, 32)


def test_a_checkpoint_folder_held_by_another_process_is_refused_until_it_dies(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    proc = _holder(folder)
    model, (x, y) = _model(), _data()
    try:
        with pytest.raises(FolderLockedError) as info:
            model.fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(folder)])
        message = str(info.value)
        assert "\n" not in message
        assert f"{folder} is in use by another xpnet checkpoint writer (pid {proc.pid} on host" in message
        assert socket.gethostname() in message and "since 20" in message
        assert list_checkpoints(folder) == []  # the refused run wrote nothing there
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: the kernel drops the lock, the file stays behind
        proc.wait(30)
    assert (folder / LOCK_NAME).exists()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[Checkpoint(folder)])
    assert [p.name for p in list_checkpoints(folder)] == ["ckpt-000000001.npz", "ckpt-000000002.npz"]
    assert not (folder / LOCK_NAME).exists()  # released at the end of fit


def test_two_checkpoints_on_one_folder_in_one_process_and_release_after_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    first, (x, y) = Checkpoint(folder), _data()
    first.set_model(_model())
    first.on_train_begin()
    with pytest.raises(FolderLockedError, match=f"pid {os.getpid()} on host"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(folder)])
    first.on_train_end()

    def boom(epoch: int, logs: dict[str, float]) -> None:
        raise KeyboardInterrupt

    ckpt = Checkpoint(folder)
    with pytest.raises(KeyboardInterrupt):
        _model().fit(x, y, epochs=3, verbose=0, callbacks=[ckpt, xpnet.callbacks.LambdaCallback(on_epoch_end=boom)])
    assert not ckpt._lock.held  # fit's error path freed the folder for the next run
    with FolderLock(folder) as lock:
        assert lock.held and repr(lock).endswith("held)")


@needs_fashion
def test_a_second_cli_run_on_the_same_out_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    proc = _holder(out)
    try:
        argv = ["train", "--quick", "--limit", "200", "--backend", "numpy", "--no-plots", "--verbose", "0"]
        rc = cli.main([*argv, "--data-dir", str(FASHION_DIR), "--out", str(out)])
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"error: {out} is in use by another xpnet checkpoint writer (pid {proc.pid} on host")
    assert not (out / "history.json").exists()
