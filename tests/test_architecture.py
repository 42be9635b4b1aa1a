"""The shape of the code: no import cycles, and a training step that could be recorded once and replayed."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import runpy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import Activation, BatchNormalization, Dense, Dropout, Sequential
from xpnet.parity import synthetic_fashion_like

ROOT = Path(xpnet.__file__).parent
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


# scripts/architecture_figures.py's names: the import scan the figures and these tests share
FIGURES = SimpleNamespace(**runpy.run_path(str(SCRIPTS / "architecture_figures.py")))

# Import circles still allowed while other work breaks them (issue 23): none are left, so every
# circle fails the tests below.
KNOWN_CIRCLES: list[frozenset[str]] = []


def test_no_import_circle_that_runs_among_xpnet_modules() -> None:
    """Imports that run (module level and inside functions, with the package __init__s they run): no circle at all."""
    graph = FIGURES.import_graph(ROOT, type_checking=False)
    assert graph["xpnet.models.functional"] >= {"xpnet.training.trainer", "xpnet.params"}  # the scan sees imports
    assert "xpnet.models.functional" in graph["xpnet.models.sequential"]
    circles = FIGURES.strongly_connected(graph)
    assert not circles, "import circles: " + "; ".join(" ↔ ".join(c) for c in circles)


def test_no_import_circle_counting_type_only_imports() -> None:
    """Every import counted, TYPE_CHECKING ones too (a type-only import is still a dependency): no circle
    beyond the known ones that work in progress is breaking (KNOWN_CIRCLES)."""
    graph = FIGURES.import_graph(ROOT)
    assert (
        graph["xpnet.models.functional"] >= FIGURES.import_graph(ROOT, type_checking=False)["xpnet.models.functional"]
    )
    circles = FIGURES.strongly_connected(graph)
    new = [c for c in circles if not any(set(c) <= known for known in KNOWN_CIRCLES)]
    assert not new, "import circles: " + "; ".join(" ↔ ".join(c) for c in new)


def test_the_scan_finds_a_circle_hidden_in_a_function_or_under_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "xpnet"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .d import h\n")
    (pkg / "sub" / "d.py").write_text("def h():\n    pass\n")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub.d import g\n")
    (pkg / "e.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    from .sub.d import g\n")
    runs = FIGURES.import_graph(pkg, type_checking=False)
    every = FIGURES.import_graph(pkg)
    assert runs["xpnet.b"] == {"xpnet.a"} and runs["xpnet.a"] == {"xpnet.b"}
    assert runs["xpnet.c"] == set()
    assert every["xpnet.c"] == {"xpnet.sub.d"}  # a type-only import runs no package __init__
    assert runs["xpnet.e"] == every["xpnet.e"] == {"xpnet.sub", "xpnet.sub.d"}  # the else branch runs
    assert FIGURES.strongly_connected(every) == [["xpnet.a", "xpnet.b"]]


# Every module path that users and docs imported before the layout by role (3902efb), and the module
# each now is. Their files stay at the old paths as aliases of the new modules.
OLD_PATHS = {
    "callbacks": "training.callbacks",
    "checkpoint": "training.checkpoint",
    "cli": "apps.cli",
    "config": "io.config",
    "distributed": "training.distributed",
    "evaluation": "teaching.evaluation",
    "experiments": "teaching.experiments",
    "file_checks": "io.file_checks",
    "functional": "models.functional",
    "gradcheck": "teaching.gradcheck",
    "h5_model": "io.h5_model",
    "h5_weights": "io.h5_weights",
    "keras_format": "io.keras_format",
    "linear_regression": "teaching.linear_regression",
    "parity": "teaching.parity",
    "perceptron": "teaching.perceptron",
    "plots": "apps.plots",
    "runlock": "training.runlock",
    "saving": "io.saving",
    "search": "apps.search",
    "serialization": "io.serialization",
    "sharing": "models.sharing",
    "summary": "models.summary",
    "threads": "training.threads",
    "trace": "teaching.trace",
    "weights_io": "io.weights_io",
}


@pytest.mark.parametrize(("old", "new"), sorted(OLD_PATHS.items()))
def test_an_old_import_path_is_the_new_module(old: str, new: str) -> None:
    module = importlib.import_module(f"xpnet.{old}")
    assert module is importlib.import_module(f"xpnet.{new}")
    assert getattr(xpnet, old) is module  # `import xpnet.saving; xpnet.saving` too
    assert _alias_target(ROOT / f"{old}.py") == new


def _alias_target(path: Path) -> str | None:
    """The module a pure alias file stands for ("io.saving"), or None when the file is anything else.

    A pure alias: a docstring, `import sys`, `from .pkg import mod as _module`, then
    `sys.modules[__name__] = _module`, and at most a `python -m` entry point before it.
    """
    body = ast.parse(path.read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    main = [n for n in body if isinstance(n, ast.If)]
    rest = [n for n in body if not isinstance(n, ast.If)]
    if len(rest) != 3 or len(main) > 1:
        return None
    sys_import, source, assign = rest
    if ast.unparse(sys_import) != "import sys" or ast.unparse(assign) != "sys.modules[__name__] = _module":
        return None
    if main and ast.unparse(main[0].test) != "__name__ == '__main__'":
        return None
    if not isinstance(source, ast.ImportFrom) or source.level != 1 or len(source.names) != 1:
        return None
    if source.names[0].asname != "_module" or not source.module:
        return None
    return f"{source.module}.{source.names[0].name}"


def test_the_alias_check_refuses_a_file_with_code(tmp_path: Path) -> None:
    alias = '"""Old path."""\n\nimport sys\n\nfrom .io import saving as _module\n\nsys.modules[__name__] = _module\n'
    (tmp_path / "alias.py").write_text(alias)
    assert _alias_target(tmp_path / "alias.py") == "io.saving"
    (tmp_path / "code.py").write_text(alias + "def save():\n    pass\n")
    assert _alias_target(tmp_path / "code.py") is None
    (tmp_path / "star.py").write_text(alias.replace("from .io import saving as _module", "from .io.saving import *"))
    assert _alias_target(tmp_path / "star.py") is None


def test_xpnet_top_level_holds_at_most_16_modules_and_the_rest_are_aliases() -> None:
    sizes = {p: len(p.read_text().splitlines()) for p in ROOT.glob("*.py")}
    modules = sorted(p.name for p, n in sizes.items() if n > 10)
    assert len(modules) <= 16, f"{len(modules)} modules of more than 10 lines directly under xpnet/: {modules}"
    for path in (p for p, n in sizes.items() if n <= 10 and p.name != "__init__.py"):
        target = _alias_target(path)
        assert target is not None, f"xpnet/{path.name} ({sizes[path]} lines) is not a pure alias of a moved module"
        assert importlib.import_module(f"xpnet.{path.stem}") is importlib.import_module(f"xpnet.{target}")


def test_no_banner_comments_in_the_library() -> None:
    found = [
        f"{p.relative_to(ROOT.parent)}:{text[: m.start()].count(chr(10)) + 1}"
        for p in sorted(ROOT.rglob("*.py"))
        for text in [p.read_text()]
        for m in FIGURES.BANNER.finditer(text)
    ]
    assert not found, f"banner comments (house style: none): {found}"
    assert FIGURES.BANNER.search("x = 1\n    # ---- training ----\n")
    assert not FIGURES.BANNER.search("x = 1  # a - b\n")


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


# metric classes whose constructor has required arguments (a metric or a function to wrap)
_NEED_ARGUMENTS = {xpnet.metrics.FunctionMetric, xpnet.metrics.SparseAsDense, xpnet.metrics.WeightedMean}


def test_packages_made_of_old_modules_keep_their_public_names() -> None:
    """xpnet.ops and xpnet.metrics became packages: every name they export is there, and saved configs still
    name a metric's module xpnet.metrics (loading looks the class up there)."""
    from xpnet import metrics, ops

    for module in (ops, metrics):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{module.__name__} lacks {missing}"
    classes = [getattr(metrics, n) for n in metrics.__all__ if isinstance(getattr(metrics, n), type)]
    made = [c() for c in classes if issubclass(c, metrics.Metric) and c not in _NEED_ARGUMENTS]
    # saved configs name the module loading looks the class up in, xpnet.metrics as before the split
    assert len(made) > 20 and {xpnet.saving.serialize_keras_object(m)["module"] for m in made} == {"xpnet.metrics"}
    assert metrics.get("auc", xpnet.losses.get("binary_crossentropy"), 1).__class__ is metrics.AUC
    assert ops.matmul is ops.numeric.matmul and ops.reshape is ops.arrays.reshape


def test_the_classes_of_the_packages_show_their_source() -> None:
    """A student reads a class with `inspect.getsource` (IPython's `Precision??`): each metric class names the
    file it is written in, as it did when xpnet.metrics was one file."""
    from xpnet import metrics

    for name in metrics.__all__:
        obj = getattr(metrics, name)
        if isinstance(obj, type):
            assert f"class {name}" in inspect.getsource(obj), name


def test_the_figures_walk_the_replayed_step_and_the_eager_step_and_compare_with_old_files() -> None:
    """architecture_figures.py walks two steps, each named: the default compile's steady state (a replay of
    the recorded list on NumPy) under the old "walk" key, and one eager step under "walk_eager"; a
    before-file from an older script (only "walk"'s figures) still compares, the eager ones showing —."""
    replayed = FIGURES.walk_of_one_step(*FIGURES.WALKS["walk"])
    eager = FIGURES.walk_of_one_step(*FIGURES.WALKS["walk_eager"])
    assert replayed["what"] == "one step as compiled by default, in steady state"
    assert eager["what"] == "one eager step"
    assert "xpnet/training/replay.py" in replayed["files"] and "xpnet/training/replay.py" not in eager["files"]
    assert "xpnet/layers/dense.py" in eager["files"] and "xpnet/layers/dense.py" not in replayed["files"]
    assert replayed["files_entered"] <= 8 and replayed["switches"] <= 16, replayed
    lost_files = ("numpy_ops", "base", "fused_cpu", "_cblas")
    for lost in lost_files:
        assert f"xpnet/backend/{lost}.py" not in replayed["files"], lost
    assert "xpnet/optimizers.py" not in replayed["files"]
    assert eager["files_entered"] <= 17 and eager["switches"] <= 72, eager
    old = {"step: files entered": 24, "step: switches between files": 216}
    now = {
        "step: files entered": replayed["files_entered"],
        "step: switches between files": replayed["switches"],
        "eager step: files entered": eager["files_entered"],
    }
    lines = FIGURES.compare(old, now)
    assert lines[0].split()[-3:] == ["24", "→", str(replayed["files_entered"])]
    assert lines[2].split()[-3:] == ["—", "→", str(eager["files_entered"])]
