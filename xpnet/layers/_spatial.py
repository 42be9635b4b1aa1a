"""Argument checks and output geometry shared by the 1-D and 2-D layers (convolutions, pooling, up-sampling).

Keras's rules, channels-last: with padding="valid" a window of k pixels moved by s gives
floor((size − k) / s) + 1 outputs (trailing pixels that do not fill a window are dropped);
with padding="same" it gives ceil(size / s), zero-padding total = max((out − 1)·s + k − size, 0)
pixels split as total // 2 before and the rest after (TensorFlow's convention).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]  # top, bottom, left, right


def keras_name(cls_name: str) -> str:
    """Keras's default layer name: Conv2D → conv2d, MaxPooling1D → max_pooling1d, UpSampling2D → up_sampling2d."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls_name).lower().replace("2_d", "2d").replace("1_d", "1d")


def is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def pair(value: Any, what: str, owner: str) -> Pair:
    """An int or a pair of positive ints -> (int, int); anything else raises naming what was received."""
    items = (value, value) if is_int(value) else value
    try:
        a, b = items
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {what} must be a positive integer or a pair of them, received {value!r}") from None
    if not (is_int(a) and is_int(b) and a > 0 and b > 0):
        raise ValueError(f"{owner}: {what} must be a positive integer or a pair of them, received {value!r}")
    return int(a), int(b)


def single(value: Any, what: str, owner: str) -> int:
    """A positive int, or a sequence of one (Keras stores 1-D sizes as (k,)) -> int; else a ValueError."""
    if not is_int(value) and isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not is_int(value) or value <= 0:
        raise ValueError(f"{owner}: {what} must be a positive integer, received {value!r}")
    return int(value)


def sequence_shape(input_shape: tuple[int, ...], owner: str) -> tuple[int, int]:
    """(steps, channels) from a 1-D layer's input shape, or a ValueError that says how to get there."""
    if len(input_shape) == 2:
        steps, c = input_shape
        return steps, c
    shown = "(None, " + ", ".join(map(str, input_shape)) + ")"
    if len(input_shape) == 1:
        (steps,) = input_shape
        hint = f"add the channel axis: x.reshape(-1, {steps}, 1) (or x[..., None]) and input_shape=({steps}, 1)"
    else:
        hint = "give one sequence per sample as (steps, channels)"
    raise ValueError(
        f"{owner} expects sequences of shape (batch, steps, channels), but its input shape is {shown}; {hint}"
    )


def padding_arg(padding: Any, owner: str) -> str:
    p = str(padding).lower()
    if p not in ("valid", "same"):
        raise ValueError(f"{owner}: padding must be 'valid' or 'same', received {padding!r}")
    return p


def channels_last(data_format: Any, owner: str) -> None:
    if data_format not in (None, "channels_last"):
        raise NotImplementedError(
            f"{owner}: only data_format='channels_last' (batch, height, width, channels) is supported, "
            f"received {data_format!r}; move the channel axis last, e.g. x.transpose(0, 2, 3, 1)"
        )


def image_shape(input_shape: tuple[int, ...], owner: str) -> tuple[int, int, int]:
    """(height, width, channels) from a layer's input shape, or a ValueError that says how to get there."""
    if len(input_shape) == 3:
        h, w, c = input_shape
        return h, w, c
    shown = "(None, " + ", ".join(map(str, input_shape)) + ")"
    if len(input_shape) == 2:
        h, w = input_shape
        hint = (
            f"add the channel axis: x.reshape(-1, {h}, {w}, 1) (or x[..., None]) and input_shape=({h}, {w}, 1), "
            f"or start the model with Reshape(({h}, {w}, 1), input_shape=({h}, {w}))"
        )
    elif len(input_shape) == 1:
        side = math.isqrt(input_shape[0])
        guess = f"({side}, {side}, 1)" if side * side == input_shape[0] else "(height, width, channels)"
        hint = f"reshape the flat vectors into images, e.g. x.reshape(-1, *{guess}), or start with Reshape({guess})"
    else:
        hint = "give one image per sample as (height, width, channels)"
    raise ValueError(
        f"{owner} expects images of shape (batch, height, width, channels), but its input shape is {shown}; {hint}"
    )


def out_and_pads(size: int, window: int, stride: int, padding: str) -> tuple[int, int, int]:
    """-> (output size, padding before, padding after) along one axis; output ≤ 0 means the window does not fit."""
    if padding == "valid":
        return (size - window) // stride + 1 if size >= window else size - window + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def geometry(
    hw: Pair, window: Pair, strides: Pair, padding: str, owner: str, what: str = "kernel"
) -> tuple[Pair, Pads]:
    """Output (height, width) and pads (top, bottom, left, right) for a window over an image of size hw."""
    oh, top, bottom = out_and_pads(hw[0], window[0], strides[0], padding)
    ow, left, right = out_and_pads(hw[1], window[1], strides[1], padding)
    if oh <= 0 or ow <= 0:
        raise ValueError(
            f"{owner}: the {window[0]}×{window[1]} {what} does not fit the {hw[0]}×{hw[1]} input with "
            f"padding='valid' (it would give a {oh}×{ow} output); use padding='same', a smaller {what}, "
            "or fewer pooling/strided layers before this one"
        )
    return (oh, ow), (top, bottom, left, right)


def dropped(hw: Pair, window: Pair, strides: Pair, out: Pair, pads: Pads) -> Pair:
    """Input rows and columns that no window covers (Keras floors: they are silently ignored)."""
    used_h = (out[0] - 1) * strides[0] + window[0] - pads[0] - pads[1]
    used_w = (out[1] - 1) * strides[1] + window[1] - pads[2] - pads[3]
    return max(hw[0] - used_h, 0), max(hw[1] - used_w, 0)
