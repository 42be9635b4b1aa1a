"""A conv model as a course user meets it: (n, 28, 28) images, the summary table, the trace's formulas."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.layers import Conv2D, Dense, Flatten, MaxPooling2D


def _small(seed: int = 0) -> xpnet.Sequential:
    conv = Conv2D(3, (3, 3), padding="same", activation="relu", input_shape=(8, 8, 1))
    model = xpnet.Sequential([conv, MaxPooling2D(), Flatten(), Dense(4, "softmax")], seed=seed)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    return model


def test_images_without_the_channel_axis_get_it_as_in_keras() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 8, 8)).astype(np.float32), rng.integers(0, 4, 40)
    a, b = _small(), _small()
    a.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    b.fit(x[..., None], y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.predict(x), a.predict(x[..., None]))
    with pytest.raises(ValueError, match=r"expects input of shape \(None, 8, 8, 1\), received x of shape \(40, 64\)"):
        a.predict(x.reshape(40, 64))


def test_summary_columns_make_room_for_long_names() -> None:
    lines: list[str] = []
    model = _small()
    model.summary(print_fn=lines.append)
    row = next(line for line in lines if "max_pooling2d (MaxPooling2D)" in line)
    name_end = row.index("(MaxPooling2D)") + len("(MaxPooling2D)")
    assert row[name_end : name_end + 2] == "  "  # at least two spaces before the shape column
    assert "(None, 4, 4, 3)" in row and row.endswith(" 0 │")
    assert any(line.startswith(" Total params: ") for line in lines)


def test_trace_writes_the_convolution_with_its_own_formulas() -> None:
    rng = np.random.default_rng(1)
    model = _small()
    text = str(model.trace(rng.random((2, 8, 8, 1)).astype(np.float32), np.array([0, 3])))
    assert "u(1) = h(0) ⋆ W(1) + b(1)" in text
    assert "∂L/∂W(1) = Σ patches(h(0))ᵀ δ(1)" in text
    assert "u(4) = h(3) W(4) + b(4)" in text  # the Dense layer keeps the matrix form
