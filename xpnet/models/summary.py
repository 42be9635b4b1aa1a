"""`model.summary()` in Keras 3's layout: a boxed table, then parameter counts with their memory sizes.

`table(headers, rows)` draws any table of text cells, so a model with more columns (a functional
model's "Connected to") reuses it; `print_summary(model)` builds Sequential's rows and the totals.
Widths follow Keras (88 characters, or the terminal's width less 4, split at 45% and 80%), and a
column widens for a longer cell instead of cutting it.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Keras's default column boundaries (fractions of the width) and line lengths, by column count
_POSITIONS = {3: (0.45, 0.80, 1.0), 4: (0.30, 0.56, 0.74, 1.0)}
_LINE_LENGTH = {3: 88, 4: 108}


def readable_size(nbytes: float) -> str:
    """A byte count as Keras prints it: 1024-based units with two decimals ("1.02 MB", "0.00 B")."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1024:
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.2f} PB"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    line_length: int | None = None,
    align: Sequence[str] | None = None,
    positions: Sequence[float] | None = None,
) -> list[str]:
    """The lines of a boxed table: a heavy header, then each row, rows separated by thin rules.

    A cell may hold several lines, separated by "\\n".

    align: "left" or "right" per column (default: left; Keras right-aligns "Param #").
    line_length: the whole table's width, borders included (default: Keras's for this many columns).
    """
    n = len(headers)
    if any(len(r) != n for r in rows):
        raise ValueError(
            f"every row needs {n} cells (one per header), received rows of {sorted({len(r) for r in rows})}"
        )
    align = list(align or ["left"] * n)
    if line_length is None:
        line_length = min(_LINE_LENGTH.get(n, 30 * n), shutil.get_terminal_size().columns - 4)
    if isinstance(line_length, bool) or not isinstance(line_length, int) or line_length <= 0:
        raise ValueError(f"line_length must be a positive integer, received {line_length!r}")
    bounds = positions or _POSITIONS.get(n) or [(i + 1) / n for i in range(n)]
    inner = max(line_length - (n + 1) - 2 * n, n)  # less the n + 1 borders and a space either side of each cell
    edges = [0, *(int(p * inner) for p in bounds)]
    longest = [max((len(part) for r in rows for part in r[i].split("\n")), default=0) for i in range(n)]
    widths = [max(edges[i + 1] - edges[i], len(headers[i]), longest[i], 1) for i in range(n)]

    def line(cells: Sequence[str], bars: str) -> str:
        parts = [(c.rjust(w) if a == "right" else c.ljust(w)) for c, w, a in zip(cells, widths, align, strict=True)]
        return bars[0] + " " + f" {bars[1]} ".join(parts) + " " + bars[2]

    def lines(cells: Sequence[str], bars: str) -> list[str]:
        """A row whose cells may hold several lines ("Connected to" lists one input per line)."""
        split = [c.split("\n") for c in cells]
        height = max(len(p) for p in split)
        return [line([p[k] if k < len(p) else "" for p in split], bars) for k in range(height)]

    def rule(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    out = [rule("┏", "━", "┳", "┓"), line(headers, "┃┃┃"), rule("┡", "━", "╇", "┩")]
    for i, r in enumerate(rows):
        if i:
            out.append(rule("├", "─", "┼", "┤"))
        out += lines(r, "│││")
    out.append(rule("└", "─", "┴", "┘"))
    return out


def layer_cells(layer: Any, built: bool) -> list[str]:
    """A layer's "Layer (type)", "Output Shape" and "Param #" cells ("?" and "0 (unbuilt)" before a build)."""
    name = f"{layer.name} ({type(layer).__name__})"
    if not built or layer.output_shape is None:
        return [name, "?", "0 (unbuilt)"]
    dims = tuple(layer.output_shape)
    if not dims or dims[0] is not None:  # a layer's shape has no batch axis; a nested model's has one
        dims = (None, *dims)
    shape = "(" + ", ".join(map(str, dims)) + ")"
    return [name, shape, f"{layer.count_params():,}"]


def _count(weights: Sequence[Any]) -> tuple[int, int]:
    """(number of values, bytes) of some weights."""
    sizes = [(math.prod(w.shape), np.dtype(w.dtype).itemsize) for w in weights]
    return sum(n for n, _ in sizes), sum(n * b for n, b in sizes)


def optimizer_counts(optimizer: Any) -> tuple[int, int] | None:
    """Keras's "Optimizer params": the step counter (int64), the learning rate unless a schedule gives it
    (float32), and every slot; None until the optimizer has taken a step: Keras builds it in fit, so a
    model just compiled shows no optimizer params (xpnet allocates the slots earlier, at compile)."""
    if optimizer is None or not getattr(optimizer, "built", False) or not getattr(optimizer, "iterations", 0):
        return None
    slots = list(optimizer.slots.values())
    count = 1 + sum(int(np.prod(s.shape)) for s in slots)
    nbytes = 8 + sum(int(np.prod(s.shape)) * np.dtype(str(s.dtype).split(".")[-1]).itemsize for s in slots)
    if isinstance(optimizer.get_config().get("learning_rate"), (int, float)):  # not a schedule
        count, nbytes = count + 1, nbytes + 4
    return count, nbytes


def totals(model: Any) -> list[str]:
    """The lines under the table: total, trainable, non-trainable (and optimizer) parameters with sizes."""
    trainable = _count(model.trainable_weights) if model.built else (0, 0)
    frozen = _count(model.non_trainable_weights) if model.built else (0, 0)
    opt = optimizer_counts(getattr(model, "optimizer", None)) if model.built else None
    parts = [trainable, frozen, *([opt] if opt is not None else [])]
    total = (sum(p[0] for p in parts), sum(p[1] for p in parts))
    lines = [
        f" Total params: {total[0]:,} ({readable_size(total[1])})",
        f" Trainable params: {trainable[0]:,} ({readable_size(trainable[1])})",
        f" Non-trainable params: {frozen[0]:,} ({readable_size(frozen[1])})",
    ]
    if opt is not None:
        lines.append(f" Optimizer params: {opt[0]:,} ({readable_size(opt[1])})")
    return lines


def print_summary(
    model: Any,
    print_fn: Callable[[str], Any] | None = None,
    line_length: int | None = None,
    headers: Sequence[str] = ("Layer (type)", "Output Shape", "Param #"),
    rows: Sequence[Sequence[str]] | None = None,
) -> None:
    """Print `Model: "name"`, the table and the totals, one line per `print_fn` call.

    rows: the table's cells (default: one row per layer from `layer_cells`); a model with more
    columns passes its headers and rows. "Param #" is right-aligned wherever it stands.
    """
    out = print_fn or print
    if rows is None:
        rows = [layer_cells(layer, model.built) for layer in model.layers]
    align = ["right" if h == "Param #" else "left" for h in headers]
    for text in [f'Model: "{model.name}"', *table(headers, rows, line_length, align), *totals(model)]:
        out(text)


def print_functional(model: Any, print_fn: Callable[[str], Any] | None = None, line_length: int | None = None) -> None:
    """Print a functional model's table: Sequential's columns and "Connected to", each call's input tensors
    named as Keras names them ("dense[1][0]": the output of dense's second call)."""
    index: dict[int, str] = {id(t): f"{t.name}[0][0]" for t in model.inputs}
    calls: dict[int, int] = {}
    links: dict[int, list[str]] = {id(layer): [] for layer in model.layers}
    for node in model.graph.calls_as_made():
        k = calls.get(id(node.layer), 0)
        calls[id(node.layer)] = k + 1
        index[id(node.output)] = f"{node.layer.name}[{k}][0]"
        links[id(node.layer)] += [index[id(t)] for t in node.inputs]
    rows = [[f"{t.name} (InputLayer)", str(t.shape), "0", "-"] for t in model.inputs]
    rows += [[*layer_cells(layer, model.built), ",\n".join(links[id(layer)])] for layer in model.layers]
    headers = ("Layer (type)", "Output Shape", "Param #", "Connected to")
    print_summary(model, print_fn, line_length, headers, rows)
