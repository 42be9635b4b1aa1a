"""The arrays of a model with several inputs or outputs: a list in the model's order, or a dict by name.

`Model.check_inputs` / `check_targets` hand a list or dict here; each array is then checked as a
one-input model checks its x or y (xpnet/training/data.py), with the input's or output's name
in the error.
"""

from __future__ import annotations

from typing import Any

from ..training import data


def by_name(a: Any, names: list[str], what: str, single: bool) -> list[Any]:
    """One array per name, from a dict keyed by the names or a list in their order (a lone array if single)."""
    if isinstance(a, dict):
        missing = [n for n in names if n not in a]
        if missing or len(a) != len(names):
            raise ValueError(f"{what} must have the keys {names}, received {sorted(a)}")
        return [a[n] for n in names]
    if single or (len(names) == 1 and not isinstance(a, (list, tuple))):  # Model([x], ...) takes x alone too
        return [a]
    if not isinstance(a, (list, tuple)) or len(a) != len(names):
        got = f"a list of {len(a)}" if isinstance(a, (list, tuple)) else type(a).__name__
        raise ValueError(f"{what}: the model has {len(names)} ({', '.join(names)}), received {got}")
    return list(a)


def check_inputs(model: Any, x: Any, what: str, finite: bool) -> Any:
    """The inputs x (a list or dict of (n, *feature_shape) arrays) checked, with as many rows each."""
    single = model.graph.single_input
    xs = by_name(x, model.input_names, f"{what}: x (the inputs)", single)
    checked = [
        data.check_x(a, f"{what} (input {t.name!r})", model.ops, t.feature_shape, finite)
        for a, t in zip(xs, model.inputs, strict=True)
    ]
    counts = {t.name: data.rows(a) for t, a in zip(model.inputs, checked, strict=True)}
    if len(set(counts.values())) > 1:
        raise ValueError(f"{what}: the inputs have different numbers of samples: {counts}")
    return checked[0] if single else checked


def check_targets(model: Any, y: Any, n: int, what: str) -> Any:
    """The targets y (a list or dict with one per output) as each output's loss takes them (`data.check_y`)."""
    single = model.graph.single_output
    names = model.output_names
    ys = by_name(y, names, f"{what}: y (the targets)", single)
    for t, name in zip(model.outputs, names, strict=True):
        data.require_flat_output(t.feature_shape, f"{what} (output {name!r})")
    checked = [
        data.check_y(a, n, f"{what} (output {name!r})", loss, width, model.dtype)
        for a, name, loss, width in zip(ys, names, model.compiled_losses, model.output_widths, strict=True)
    ]
    return checked[0] if single else checked
