"""The training-call counters of layers that draw random masks, saved and put back.

A layer that draws a new random mask on every training call (Dropout) counts those calls in
its public `iterations`; the teaching tools run extra forward passes and must leave the
counters where they were, so that training draws the same masks afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["restore_step_counters", "step_counters"]


def step_counters(layers: Iterable[Any]) -> list[tuple[Any, int]]:
    """(layer, its training-call count) for each layer that keeps one (reading it is a device→host copy)."""
    return [(layer, int(layer.iterations)) for layer in layers if hasattr(layer, "iterations")]


def restore_step_counters(saved: Iterable[tuple[Any, int]]) -> None:
    """Set each layer's counter back to what `step_counters` read."""
    for layer, steps in saved:
        layer.iterations = steps
