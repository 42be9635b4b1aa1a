"""Two writers on one run or checkpoint folder: the second is refused with one line naming the holder."""

from __future__ import annotations

import os
import shutil
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


def test_a_callback_failing_at_train_begin_leaves_the_checkpoint_folder_free(tmp_path: Path) -> None:
    folder, (x, y) = tmp_path / "ckpt", _data()
    model = _model()
    broken = xpnet.callbacks.CSVLogger(tmp_path / "no-such-folder" / "log.csv")
    with pytest.raises(FileNotFoundError) as failed:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(folder), broken])
    # the user fixes the path and runs again in the same session, whose last traceback (kept, as an interactive
    # session keeps sys.last_traceback) still holds the failed fit's Checkpoint: the folder is free, not
    # "in use by another xpnet checkpoint writer (pid <this one>)"
    model.fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(folder)])
    assert failed.traceback  # kept alive until here
    assert [p.name for p in list_checkpoints(folder)] == ["ckpt-000000001.npz"]
    assert not (folder / LOCK_NAME).exists()


@needs_fashion
@pytest.mark.parametrize("other_run_finished", [True, False])
def test_resume_reads_the_run_under_the_lock_not_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], other_run_finished: bool
) -> None:
    """`--resume` started while another run holds the folder: by the time it gets the lock (after loading the
    data), the other run has rotated the checkpoint it saw away, and finished (or was killed)."""
    out, side = tmp_path / "run", tmp_path / "side"
    argv = ["train", "--quick", "--limit", "200", "--backend", "numpy", "--no-plots", "--verbose", "0"]
    argv += ["--data-dir", str(FASHION_DIR), "--out", str(out), "--checkpoint-every", "2"]
    assert cli.main(argv) == 0
    history = (out / "history.json").read_bytes()
    # what --resume sees while the first run is still going: no results yet, only its oldest checkpoint
    (out / "history.json").unlink()
    oldest, *newer = list_checkpoints(out / "checkpoints")
    side.mkdir()
    for p in newer:
        shutil.move(p, side / p.name)
    real = cli.DATASETS["fashion_mnist"].load_data

    def load_data(*args: object, **kwargs: object) -> object:  # meanwhile the first run goes on
        oldest.unlink()
        for p in newer:
            shutil.move(side / p.name, p)
        if other_run_finished:
            (out / "history.json").write_bytes(history)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli.DATASETS["fashion_mnist"], "load_data", load_data)
    capsys.readouterr()
    rc = cli.main([*argv, "--resume"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    if other_run_finished:
        assert "is complete" in captured.out and (out / "history.json").read_bytes() == history
    else:  # the first run was killed: this one continues from its newest checkpoint
        assert "wrote to" in captured.out
