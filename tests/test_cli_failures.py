"""`xpnet train` failures: one line on stderr, a non-zero exit, no traceback, the run folder left consistent.

Real-data tests need Fashion-MNIST in /usr/share/datasets/fashion-mnist and skip otherwise.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xpnet import checkpoint, cli, experiments

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not in {FASHION_DIR}")
QUICK = ["train", "--quick", "--limit", "300", "--backend", "numpy", "--no-plots", "--verbose", "0"]


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = cli.main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture
def finished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A finished quick run of model A with checkpoints every 3 steps (300 images, batch 32: 10 steps)."""
    out = tmp_path / "run"
    assert cli.main([*QUICK, "--checkpoint-every", "3", "--out", str(out)]) == 0
    capsys.readouterr()
    return out


# ------------------------------------------------------------------------------------ command line
def test_negative_seed_is_one_line_in_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xpnet.cli", "train", "--seed", "-5"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "--seed" in line and "-5" in line and ">= 0" in line


def test_resume_without_out(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = _run(["train", "--resume"], capsys)
    assert rc == 2
    assert "--resume needs --out" in _one_error_line(err)


def test_resume_of_a_folder_without_checkpoints(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = _run([*QUICK, "--resume", "--out", str(tmp_path / "new")], capsys)
    assert rc == 1
    assert "nothing to resume" in _one_error_line(err)
    assert not (tmp_path / "new").exists()


def test_unexpected_errors_are_one_line_and_debug_shows_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(experiments, "build_model", boom)
    rc, _, err = _run([*QUICK, "--out", str(tmp_path / "o")], capsys)
    assert rc == 1
    assert _one_error_line(err) == "error: RuntimeError: boom (run again with --debug for the traceback)"
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["--debug", *QUICK, "--out", str(tmp_path / "o")])


# ------------------------------------------------------------------------------------ --out
@needs_fashion
@pytest.mark.parametrize(
    ("code", "reason"), [(errno.EACCES, "Permission denied"), (errno.ENOSPC, "No space left on device")]
)
def test_unwritable_out_fails_before_training(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, code: int, reason: str
) -> None:
    def refuse(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", refuse)  # the probe's fsync fails as on a read-only or full disk
    out = tmp_path / "o"
    rc, stdout, err = _run([*QUICK, "--out", str(out)], capsys)
    assert rc == 1
    line = _one_error_line(err)
    assert line.startswith(f"error: cannot write to {out}: {reason}") and "before training" in line
    assert "epoch" not in stdout  # nothing was trained
    assert not out.exists()  # the folder it created for the check is gone again


@needs_fashion
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_really(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        rc, _, err = _run([*QUICK, "--out", str(out)], capsys)
    finally:
        out.chmod(0o755)
    assert rc == 1 and "cannot write to" in _one_error_line(err)
    assert list(out.iterdir()) == []


@needs_fashion
def test_failed_result_write_leaves_no_half_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def full(folder: Path, record: dict[str, object]) -> None:
        (folder / "history.csv").write_text("epoch\n")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "_write_history", full)  # weights.npz is already written when this fails
    out = tmp_path / "o"
    rc, _, err = _run([*QUICK, "--checkpoint-every", "5", "--out", str(out)], capsys)
    assert rc == 1
    line = _one_error_line(err)
    assert "could not write the results" in line and "No space left on device" in line and "--resume" in line
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]  # no weights, no history, no temp folder


# ------------------------------------------------------------------------------------ --resume
@needs_fashion
def test_resume_of_a_finished_run_changes_nothing(capsys: pytest.CaptureFixture[str], finished_run: Path) -> None:
    before = _snapshot(finished_run)
    for _ in range(2):  # a second resume is no different
        rc, stdout, err = _run([*QUICK, "--checkpoint-every", "3", "--resume", "--out", str(finished_run)], capsys)
        assert rc == 0 and err == ""
        assert "is complete (1 of 1 epochs" in stdout and "nothing changed" in stdout
    assert _snapshot(finished_run) == before


@needs_fashion
def test_resume_against_a_run_of_another_model(capsys: pytest.CaptureFixture[str], finished_run: Path) -> None:
    before = _snapshot(finished_run)
    rc, _, err = _run([*QUICK, "--model", "B", "--resume", "--out", str(finished_run)], capsys)
    assert rc == 1
    assert "holds a run of model A: resume it with --model A" in _one_error_line(err)
    # the same once history.json is gone (a run interrupted before its results): the checkpoint says it
    (finished_run / "history.json").unlink()
    before.pop("history.json")
    rc, _, err = _run([*QUICK, "--model", "B", "--resume", "--out", str(finished_run)], capsys)
    assert rc == 1
    line = _one_error_line(err)
    assert "cannot resume from" in line and "does not match this run" in line and "architecture" in line
    assert _snapshot(finished_run) == before


@needs_fashion
def test_every_checkpoint_corrupt(capsys: pytest.CaptureFixture[str], finished_run: Path) -> None:
    (finished_run / "history.json").unlink()
    ckpts = checkpoint.list_checkpoints(finished_run / "checkpoints")
    for p in ckpts:
        p.write_bytes(np.random.default_rng(0).bytes(500))
    before = _snapshot(finished_run)
    rc, _, err = _run([*QUICK, "--resume", "--out", str(finished_run)], capsys)
    assert rc == 1
    line = _one_error_line(err)
    assert f"all {len(ckpts)} are corrupt" in line and "pickle" not in line
    assert _snapshot(finished_run) == before


@needs_fashion
def test_corrupt_newest_checkpoint_is_one_warning_line(capsys: pytest.CaptureFixture[str], finished_run: Path) -> None:
    (finished_run / "history.json").unlink()
    newest = checkpoint.list_checkpoints(finished_run / "checkpoints")[-1]
    newest.write_text("print('not a checkpoint')\n")
    rc, _, err = _run([*QUICK, "--resume", "--out", str(finished_run)], capsys)
    assert rc == 0
    line = _one_error_line(err)
    assert line.startswith(f"warning: skipping checkpoint: xpnet: {newest} is not a valid xpnet checkpoint file")
    assert "pickle" not in line
    assert (finished_run / "history.json").is_file()


# ------------------------------------------------------------------------------------ Ctrl-C
@needs_fashion
def test_ctrl_c_prints_how_to_resume_and_resuming_works(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["train", "--limit", "3000", "--epochs", "150", "--backend", "numpy", "--no-plots", "--verbose", "0"]
    argv += ["--checkpoint-every", "20", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpnet.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not checkpoint.list_checkpoints(out / "checkpoints") and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    line = _one_error_line(err)
    assert line.startswith("interrupted; continue with: xpnet train ")
    assert not (out / "history.json").exists() and checkpoint.list_checkpoints(out / "checkpoints")

    resume = shlex.split(line.split("continue with: ", 1)[1])
    assert resume[:2] == ["xpnet", "train"] and resume[-1] == "--resume"
    done = subprocess.run([sys.executable, "-m", "xpnet.cli", *resume[1:]], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "history.json").read_text())["epoch"] == list(range(1, 151))
    assert (out / "weights.npz").is_file()


# ------------------------------------------------------------------------------------ garbage files
@pytest.mark.parametrize("content", [np.random.default_rng(1).bytes(4000), b"import os\nprint(os.name)\n", b""])
def test_garbage_is_not_an_xpnet_weights_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "w.npz"
    path.write_bytes(content)
    model = experiments.build_model("B", seed=0)
    with pytest.raises(ValueError, match="is not a valid xpnet weights file") as info:
        model.load_weights(path)
    assert "pickle" not in str(info.value)
    with pytest.raises(checkpoint.CheckpointError, match="is not a valid xpnet checkpoint file") as info2:
        checkpoint.load(path)
    assert "pickle" not in str(info2.value)


def test_load_weights_of_a_folder_says_folder(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a folder, not an xpnet weights file"):
        experiments.build_model("B", seed=0).load_weights(tmp_path)


@pytest.mark.parametrize("name", ["w.h5", "w.hdf5", "model.keras"])
def test_save_weights_refuses_other_formats_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"xpnet writes weights as \.npz.*use a name ending in \.npz"):
        experiments.build_model("B", seed=0).save_weights(tmp_path / name)
    assert list(tmp_path.iterdir()) == []
