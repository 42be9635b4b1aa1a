"""Messages that used to mislead (issue 29, item 10): each failure is one line naming what the user gave."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import cli
from xpnet.checkpoint import Checkpoint, CheckpointError, list_checkpoints, load
from xpnet.layers import Dense

ROOT = Path(__file__).resolve().parents[1]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _model() -> xpnet.Sequential:
    model = xpnet.Sequential([Dense(3, activation="softmax", input_shape=(4,))], seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def _data() -> tuple[np.ndarray, np.ndarray]:
    return np.ones((8, 4), np.float32), np.zeros(8, np.int64)


def test_resume_from_a_weights_file_says_what_it_is_and_what_to_call(tmp_path: Path) -> None:
    model, (x, y) = _model(), _data()
    model.save_weights(tmp_path / "w.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipping checkpoint … all 1 are corrupt" detour
        with pytest.raises(CheckpointError) as info:
            model.fit(x, y, verbose=0, resume_from=tmp_path / "w.npz")
    assert str(info.value) == (
        f"{tmp_path / 'w.npz'} is an xpnet weights file (save_weights), not a checkpoint: resume_from takes a "
        "folder written by xpnet.checkpoint.Checkpoint (to start from these weights, use "
        f"model.load_weights({str(tmp_path / 'w.npz')!r}))"
    )
    model.save(tmp_path / "m.keras")
    with pytest.raises(CheckpointError, match=r"is an xpnet model file \(model.save\).*xpnet.models.load_model"):
        model.fit(x, y, verbose=0, resume_from=tmp_path / "m.keras")


def test_resume_from_a_keras_file_says_what_it_is_and_what_to_call(tmp_path: Path) -> None:
    """Keras's own .keras zip and a .weights.h5 (HDF5) are named as such, not as damaged checkpoints."""
    pytest.importorskip("h5py")
    model, (x, y) = _model(), _data()
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        members = {n: z.read(n) for n in z.namelist() if not n.startswith("xpnet/")}
    with zipfile.ZipFile(tmp_path / "k.keras", "w") as z:  # as Keras writes it: no xpnet members
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(CheckpointError, match=r"is a Keras \.keras model file, not a checkpoint.*models.load_model"):
        model.fit(x, y, verbose=0, resume_from=tmp_path / "k.keras")
    model.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(CheckpointError, match=r"is a Keras \.weights\.h5 weights file.*model.load_weights\("):
        model.fit(x, y, verbose=0, resume_from=tmp_path / "w.weights.h5")


def test_save_weights_to_an_empty_name_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^cannot write to '': give a file name, e.g. 'model.weights.npz'$"):
        _model().save_weights("")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_names_the_target_not_the_hidden_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".w.npz.abc123.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as info:
        _model().save_weights(tmp_path / "w.npz")
    assert str(info.value) == f"[Errno 13] Permission denied: '{tmp_path / 'w.npz'}'"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_names_the_target(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as info:
            _model().save_weights(ro / "w.npz")
    finally:
        ro.chmod(0o755)
    assert info.value.filename == str(ro / "w.npz") and ".tmp" not in str(info.value)


def _open_files() -> list[str]:
    """What this process's file descriptors point at (Linux; empty elsewhere)."""
    if not Path("/proc/self/fd").is_dir():
        return []
    names = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used is closed by now
            names.append(os.readlink(f"/proc/self/fd/{fd}"))
    return names


def test_a_truncated_checkpoint_leaves_no_open_file(tmp_path: Path) -> None:
    model, (x, y) = _model(), _data()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(tmp_path)])
    (path,) = list_checkpoints(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match="damaged or truncated archive"):
            load(path)
        open_now = _open_files()
        gc.collect()
    assert str(path.resolve()) not in open_now
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not in {FASHION_DIR}")
def test_cli_missing_dataset_is_one_short_line_naming_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = cli.main(["train", "--quick", "--data-dir", str(empty), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert err.startswith(
        f"error: could not load Fashion-MNIST: --data-dir {empty} has none of the files; it must hold"
    )
    assert "data_dir=" not in err and "download=True" not in err and len(err) < 300


def test_cli_dataset_not_found_keeps_a_data_dir_with_parentheses_whole() -> None:
    detail = "Fashion-MNIST files not found in the given directory:\n  /d/my (copy)/data  (has none of the files)"
    line = cli._dataset_not_found("fashion_mnist", "/d/my (copy)/data", detail)
    assert line.startswith("could not load Fashion-MNIST: --data-dir /d/my (copy)/data has none of the files; it must")
    detail = (
        "MNIST not found. Searched:\n  /d/a (b)  (does not exist)\n  /e  (has none of the files)\nDownload failed: x"
    )
    assert "(looked in /d/a (b) (does not exist); /e (has none of the files)) and not downloaded" in (
        cli._dataset_not_found("mnist", None, detail)
    )


def test_cli_dataset_not_found_without_data_dir_points_to_the_flag() -> None:
    detail = (
        "MNIST not found. Searched:\n  /c/mnist  (has none of the files)\n  /usr/share/datasets/mnist  (does not exist)"
        "\nDownload failed: URLError\nTo get the files:\n  - put the files in a directory … or pass data_dir=\n"
    )
    line = cli._dataset_not_found("mnist", None, detail)
    assert line.startswith(
        "could not load MNIST: not found (looked in /c/mnist (has none of the files); "
        "/usr/share/datasets/mnist (does not exist)) and not downloaded; pass --data-dir FOLDER holding"
    )
    assert "\n" not in line and "data_dir=" not in line


@pytest.mark.parametrize("script", ["search", "regression_mlp"])
@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--epochs", "x"], "error: argument --epochs: must be a positive integer, received 'x'"),
        (["--epochs", "0"], "error: argument --epochs: must be a positive integer, received '0'"),
        (["--seed", "-1"], "error: argument --seed: must be an integer >= 0, received '-1'"),
        (["--bogus"], "error: unrecognized arguments: --bogus"),
        (["--backend", "foo"], "error: Unknown backend 'foo'"),
    ],
)
def test_course_scripts_report_bad_flags_in_one_line(script: str, flags: list[str], expected: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("XPNET_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{script}.py"), *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode in (1, 2) and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{script}.py: {expected}") and "Traceback" not in proc.stderr
