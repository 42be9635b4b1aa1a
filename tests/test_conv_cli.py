"""`xpnet train --model lenet` and the filters / feature-maps picture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xpnet import cli, experiments, plots


def test_build_lenet_is_the_course_model() -> None:
    model = experiments.build_model("lenet", seed=0)
    assert model.count_params() == 107_786
    assert model.input_shape == (None, 28, 28, 1)
    assert experiments.DEFAULTS["LENET"] == experiments.Defaults("sgd", 0.01, 32, 10)
    x = np.zeros((3, 28, 28), np.float32)
    assert experiments.as_model_input(model, x).shape == (3, 28, 28, 1)
    assert np.shares_memory(experiments.as_model_input(model, x), x)


def test_parser_accepts_lenet_in_any_case() -> None:
    args = cli.build_parser().parse_args(["train", "--model", "lenet"])
    assert args.model == "LENET"
    assert cli._settings(args)["epochs"] == 10


def test_train_lenet_quick_writes_the_filters_picture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    from xpnet.datasets import fashion_mnist

    try:
        fashion_mnist.load_data(download=False)
    except Exception as e:
        pytest.skip(f"Fashion-MNIST not available: {e}")
    code = cli.main(
        ["train", "--model", "lenet", "--limit", "64", "--epochs", "1", "--out", str(tmp_path), "--verbose", "0"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "PyTorch and Keras reach 0.871–0.882" in out
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["config"]["params"] == 107_786 and record["model"] == "LENET"
    for name in ("curves.png", "samples.png", "confusion.png", "filters.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_conv_filters_returns_the_first_layer_feature_maps(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    model = experiments.build_model("lenet", seed=0)
    image = np.random.default_rng(0).random((28, 28), dtype=np.float32)
    maps = plots.conv_filters(model, image, tmp_path / "f.png")
    assert maps.shape == (28, 28, 6)
    ops = model.ops  # the layer computes on the model's backend: device arrays in and out
    direct = ops.to_numpy(model.layers[0].forward(ops.asarray(image.reshape(1, 28, 28, 1))))
    np.testing.assert_allclose(maps, direct[0], rtol=1e-6)
    with pytest.raises(ValueError, match="needs a model with a Conv2D layer"):
        plots.conv_filters(experiments.build_model("A"), image, tmp_path / "g.png")


def _fake_mnist(folder: Path) -> None:
    """The four MNIST IDX files (gzip), with the exact shapes MNIST has: blank images, digits cycling 0-9."""
    import gzip
    import struct

    def idx(name: str, a: np.ndarray) -> None:
        head = struct.pack(">HBB", 0, 8, a.ndim) + b"".join(struct.pack(">I", d) for d in a.shape)
        with gzip.open(folder / f"{name}.gz", "wb", compresslevel=1) as f:
            f.write(head + a.tobytes())

    for prefix, n in (("train", 60000), ("t10k", 10000)):
        images = np.zeros((n, 28, 28), np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        images[np.arange(n), labels * 2 + 3, 3:25] = 255  # a stroke whose row says the digit
        idx(f"{prefix}-images-idx3-ubyte", images)
        idx(f"{prefix}-labels-idx1-ubyte", labels)


def test_train_lenet_on_mnist_files_the_user_has(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    data = tmp_path / "mnist"
    data.mkdir()
    _fake_mnist(data)
    out = tmp_path / "run"
    argv = ["train", "--model", "lenet", "--dataset", "MNIST", "--data-dir", str(data), "--limit", "64"]
    code = cli.main([*argv, "--epochs", "1", "--out", str(out), "--verbose", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "PyTorch and Keras reach" not in printed  # the Fashion-MNIST reference is not this task's
    record = json.loads((out / "history.json").read_text())
    assert record["config"]["dataset"] == "mnist" and record["model"] == "LENET"
    assert (out / "filters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same folder cannot be resumed as a Fashion-MNIST run
    code = cli.main(["train", "--model", "lenet", "--epochs", "1", "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code != 0 and "holds a run on mnist: resume it with --dataset mnist" in err and "Traceback" not in err


def test_mnist_missing_is_one_line_naming_where_it_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "none"
    empty.mkdir()
    code = cli.main(["train", "--model", "lenet", "--dataset", "mnist", "--data-dir", str(empty), "--quick"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "could not load MNIST" in err and str(empty) in err


def test_an_interrupted_mnist_run_is_not_resumed_on_fashion_mnist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before history.json exists (an interrupted run: checkpoints only) --resume still refuses the other dataset."""
    data = tmp_path / "mnist"
    data.mkdir()
    _fake_mnist(data)
    out = tmp_path / "run"
    argv = ["train", "--model", "A", "--data-dir", str(data), "--limit", "64", "--out", str(out), "--no-plots"]
    assert cli.main([*argv, "--dataset", "mnist", "--epochs", "1", "--checkpoint-every", "1", "--verbose", "0"]) == 0
    (out / "history.json").unlink()  # as if interrupted after its checkpoints
    capsys.readouterr()
    code = cli.main([*argv, "--epochs", "2", "--resume"])
    err = capsys.readouterr().err
    assert code != 0 and "holds a run on mnist: resume it with --dataset mnist" in err and "Traceback" not in err
    assert cli.main([*argv, "--dataset", "mnist", "--epochs", "2", "--resume", "--verbose", "0"]) == 0
