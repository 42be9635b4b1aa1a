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
    np.testing.assert_allclose(maps, model.layers[0].forward(image.reshape(1, 28, 28, 1))[0], rtol=1e-6)
    with pytest.raises(ValueError, match="needs a model with a Conv2D layer"):
        plots.conv_filters(experiments.build_model("A"), image, tmp_path / "g.png")
