"""The shape of the code: no import cycles, and a training step that could be recorded once and replayed."""

from __future__ import annotations

import ast
import inspect
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import Activation, BatchNormalization, Dense, Dropout, Sequential
from xpnet.parity import synthetic_fashion_like

ROOT = Path(xpnet.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """xpnet modules that `path` imports when it runs: at module level and inside functions.

    Imports under `if TYPE_CHECKING:` never run and are left out. Importing a.b.c also runs the
    package a.b's __init__, unless the importer is inside a.b (then that __init__ is running).
    """
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{a.name}" for a in child.names if f"{base}.{a.name}" in modules)
            visit(child)

    visit(ast.parse(path.read_text()))
    edges = set()
    for target in found:
        if target not in modules or me.startswith(target + "."):
            continue  # a package the importer is inside of is already initialising
        edges.add(target)
        parts = target.split(".")
        for i in range(2, len(parts)):
            parent = ".".join(parts[:i])
            if parent in modules and not me.startswith(parent + ".") and me != parent:
                edges.add(parent)
    edges.discard(me)
    edges.discard("xpnet")  # the top package is initialising whenever any xpnet module runs
    return edges


def test_no_import_cycle_among_xpnet_modules() -> None:
    files = sorted(ROOT.rglob("*.py"))
    modules = {_module_name(p) for p in files}
    graph = {_module_name(p): _imports(p, modules) for p in files}
    assert graph["xpnet.models.functional"] >= {"xpnet.training.trainer", "xpnet.params"}  # the scan sees imports
    assert "xpnet.models.functional" in graph["xpnet.models.sequential"]

    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            dfs(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_scan_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    pkg = tmp_path / "xpnet"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import g\n")
    global ROOT
    saved, ROOT = ROOT, pkg
    try:
        modules = {_module_name(p) for p in pkg.rglob("*.py")}
        assert _imports(pkg / "b.py", modules) == {"xpnet.a"}
        assert _imports(pkg / "a.py", modules) == {"xpnet.b"}
        assert _imports(pkg / "c.py", modules) == set()
    finally:
        ROOT = saved


def _describe(a: Any) -> Any:
    """What a recorded GPU graph would bake in from an argument: shapes and dtypes of arrays, values of the rest."""
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return ("array", tuple(a.shape), str(a.dtype))
    if isinstance(a, (tuple, list)):
        return tuple(_describe(v) for v in a)
    if isinstance(a, (bool, int, float, str, type(None))):
        return a
    return type(a).__name__ + ":" + str(getattr(a, "name", ""))


def _graph_model() -> xpnet.Model:
    """A functional model with a residual Add, a shared layer and Dropout: the graph engine's whole step."""
    x = xpnet.Input((784,))
    h = Dense(16, "relu", kernel_regularizer="l2")(x)
    shared = Dense(16, "tanh")
    r = xpnet.layers.Add()([h, shared(Dropout(0.3)(h)), shared(h)])
    return xpnet.Model(x, Dense(10, "softmax")(r), seed=2)


@pytest.mark.parametrize(
    ("kind", "optimizer"),
    [
        *(
            (kind, opt)
            for kind in ("sequential", "functional")
            for opt in ("sgd", "adam", "rmsprop", "momentum", "schedule", "weighted")
        ),
        ("batch_norm", "sgd"),
        ("batch_norm", "adam"),
    ],
)
def test_every_full_training_step_makes_the_same_backend_calls_with_the_same_numbers(kind: str, optimizer: str) -> None:
    """A step recorded once (a CUDA graph) replays its kernels with the arguments of the recording.

    So every Ops call of a full-size step must be the same, with the same Python numbers, as in
    any other step: what changes (learning rate, Adam's t, dropout counters and offsets, the
    batch) must come from device memory. The strict stand-in runs the generic code CuPy runs.
    """
    pytest.importorskip("array_api_strict")
    from xpnet.backend.strict_ops import StrictOps

    log: list[Any] = []

    class Recording(StrictOps):
        def __getattribute__(self, name: str) -> Any:
            attr = super().__getattribute__(name)
            if name.startswith("_") or not inspect.ismethod(attr) or name in ("activate", "describe"):
                return attr

            def call(*args: Any, **kwargs: Any) -> Any:
                log.append((name, _describe(args), _describe(sorted(kwargs.items()))))
                return attr(*args, **kwargs)

            return call

    x, y = synthetic_fashion_like(200)
    opt: Any = {
        "momentum": xpnet.optimizers.SGD(0.05, momentum=0.9),
        "schedule": xpnet.optimizers.Adam(xpnet.optimizers.schedules.ExponentialDecay(0.01, 5, 0.9)),
        "weighted": "adam",  # sample weights ride in a fixed buffer too
    }.get(optimizer, optimizer)
    model: Any = (
        Sequential(
            [Dense(16, "relu", input_shape=(784,), kernel_regularizer="l2"), Dropout(0.3), Dense(10, "softmax")], seed=2
        )
        if kind == "sequential"
        else _graph_model()
    )
    if kind == "batch_norm":  # its moving statistics change every step, on the device, from the batch alone
        model = Sequential(
            [
                Dense(16, input_shape=(784,), kernel_regularizer="l2"),
                BatchNormalization(gamma_regularizer="l2"),
                Activation("relu"),
                Dropout(0.3),
                Dense(10, "softmax"),
            ],
            seed=2,
        )
    weighted = {"weighted_metrics": ["accuracy"]} if optimizer == "weighted" else {}
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend=Recording(), **weighted)
    marks: list[int] = []

    class Mark(xpnet.Callback):
        def on_train_batch_end(self, batch: int, logs: None = None) -> None:
            marks.append(len(log))
            if batch == 2 and optimizer != "schedule":
                model.optimizer.learning_rate *= 0.5  # a callback's new rate reaches the device, not the graph

    sw = np.linspace(0.0, 2.0, len(x)) if optimizer == "weighted" else None
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Mark()], sample_weight=sw)
    steps = [log[a:b] for a, b in itertools.pairwise(marks)]
    full = [
        s for i, s in enumerate(steps) if (i + 1) % 7 not in (0, 6)
    ]  # leave out the short 7th batch and its neighbour
    assert len(full) >= 6 and all(len(s) > 10 for s in full)
    assert not [c for c in full[0] if c[0] == "to_numpy"]  # no device→host read inside a step
    for s in full[1:]:
        assert s == full[0]


def test_each_step_gathers_its_batch_into_the_same_buffers() -> None:
    x, y = synthetic_fashion_like(256)
    model = Sequential([Dense(8, "relu", input_shape=(784,)), Dense(10, "softmax")], seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    seen: list[int] = []
    layer = model.layers[0]
    original = layer.forward

    def forward(xb: Any, training: bool = False) -> Any:
        if training:
            seen.append(xb.__array_interface__["data"][0])
        return original(xb, training)

    layer.forward = forward  # type: ignore[method-assign]
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert len(seen) == 16 and len(set(seen)) == 1


def test_dropout_masks_follow_the_device_counter_as_the_host_keys_say() -> None:
    pytest.importorskip("array_api_strict")
    ops = xpnet.get_backend("strict")
    layer = Dropout(0.25, seed=77)
    for step in (0, 1, 12345, 2**31 + 5):
        counter = ops.asarray(np.asarray(step, dtype=np.uint32))
        keys = ops.dropout_keys(layer.base_key(), counter)
        assert [int(ops.to_numpy(k)) for k in keys] == list(layer.keys(step))
        assert xpnet.get_backend("numpy").dropout_keys(layer.base_key(), np.asarray(step, np.uint32)) == layer.keys(
            step
        )
