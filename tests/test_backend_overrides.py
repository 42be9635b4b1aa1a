"""Backend variants by override: activations and losses pick a backend's fast form by calling the method
named after their math (`ops.relu`, `ops.sparse_softmax_crossentropy`), never by a name the backend matches.

Each variant is checked against the plain formula (bit for bit on NumPy and the strict stand-in, to
rounding on CuPy), a subclass with its own formula is checked to run it, and the source is checked to
keep name matching out of `xpnet/backend/`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xpnet import Dense, Sequential, activations, losses
from xpnet.backend import Ops
from xpnet.backend.numpy_ops import NumpyOps
from xpnet.gradcheck import check_gradients

ROOT = Path(__file__).resolve().parents[1] / "xpnet"
BACKEND = ROOT / "backend"
NAMES = set(activations._REGISTRY) | set(losses._REGISTRY)
BUILTIN_ACTS = sorted({cls.name for cls in activations._REGISTRY.values() if cls.differentiable})


def _calls_of(name: str) -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name:
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    return found


def test_builtin_name_is_matched_at_most_at_two_registry_points() -> None:
    sites = _calls_of("builtin_name")
    assert len(sites) <= 2, sites
    assert not [s for s in sites if s.startswith("xpnet/backend/")], sites


def _name_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Activation or loss names used as data in a comparison, a dict's keys or a literal collection."""
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            parts: list[ast.expr] = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            parts = [k for k in node.keys if k is not None]
        elif isinstance(node, (ast.Set, ast.Tuple, ast.List)):
            parts = list(node.elts)
        else:
            continue
        for p in parts:
            for c in ast.walk(p):
                if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value in NAMES:
                    hits.append((c.lineno, c.value))
    return hits


def test_backend_compares_no_activation_or_loss_name() -> None:
    for path in sorted(BACKEND.glob("*.py")):
        text = path.read_text()
        assert not _name_literals(ast.parse(text, str(path))), (path.name, _name_literals(ast.parse(text)))
        for loss_name in losses._REGISTRY:
            assert not re.search(rf"[\"']{loss_name}[\"']", text), (path.name, loss_name)


def test_name_literal_finder_sees_the_old_dispatch() -> None:
    """The check above would have caught d9dd7a7's `builtin_name(loss) != "sparse_categorical_crossentropy"`."""
    old = 'if builtin_name(loss) != "sparse_categorical_crossentropy":\n    pass\nT = {"relu": "h = u;"}\n'
    assert sorted(v for _, v in _name_literals(ast.parse(old))) == ["relu", "sparse_categorical_crossentropy"]


def test_cuda_formulas_live_only_beside_their_activation() -> None:
    cupy_source = (BACKEND / "cupy_ops.py").read_text()
    own = [cls for cls in activations._REGISTRY.values() if cls.cuda_forward or cls.cuda_backward]
    assert {cls.name for cls in own} == {"relu", "sigmoid", "tanh", "elu"}
    for cls in own:
        for body in (cls.cuda_forward, cls.cuda_backward):
            assert body and body not in cupy_source, (cls.name, body)


def _inputs(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    u = (rng.standard_normal((9, 6)) * 3).astype(dtype)
    u[0, :4] = [0.0, -0.0, 1e-30, -1e-30]
    u[1, 0] = np.nan
    dh = rng.standard_normal((9, 6)).astype(dtype)
    dh[2, 1] = np.nan
    return u, dh


@pytest.mark.parametrize("act_name", BUILTIN_ACTS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("in_place", [False, True])
def test_activation_variant_equals_the_formula(ops: Ops, act_name: str, dtype: str, in_place: bool) -> None:
    """`ops.activation_forward/backward` (the variant the activation picks) against its `forward`/`backward`."""
    act = activations.get(act_name)
    u, dh = _inputs(dtype)
    want_h = ops.to_numpy(act.forward(ops.xp, ops.asarray(u)))
    h = ops.to_numpy(ops.activation_forward(act, ops.asarray(u.copy()), in_place=in_place))
    want_du = ops.to_numpy(act.backward(ops.xp, ops.asarray(u), ops.asarray(want_h), ops.asarray(dh)))
    du = ops.to_numpy(ops.activation_backward(act, ops.asarray(u), ops.asarray(want_h), ops.asarray(dh.copy())))
    if ops.name == "cupy":
        tol = 1e-6 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(h, want_h, rtol=tol, atol=tol)
        np.testing.assert_allclose(du, want_du, rtol=tol, atol=tol)
    else:  # the same bits, NaN included
        np.testing.assert_array_equal(h, want_h)
        np.testing.assert_array_equal(du, want_du)
    assert h.dtype == want_h.dtype == np.dtype(dtype)


@pytest.mark.parametrize("act_name", ["relu", "softmax", "sigmoid", "tanh", "elu", "linear", "gelu"])
def test_dense_forward_variant_equals_the_formula(ops: Ops, act_name: str) -> None:
    act = activations.get(act_name)
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((17, 5), (5, 8), (8,)))
    for bias in (b, None):
        bs = None if bias is None else ops.asarray(bias)
        u1, h1 = ops.dense_forward(ops.asarray(x), ops.asarray(w), bs, act)
        u2, h2 = Ops.dense_forward(ops, ops.asarray(x), ops.asarray(w), bs, act)
        if ops.name == "cupy":
            np.testing.assert_allclose(ops.to_numpy(h1), ops.to_numpy(h2), rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(ops.to_numpy(u1), ops.to_numpy(u2))
            np.testing.assert_array_equal(ops.to_numpy(h1), ops.to_numpy(h2))


def test_numpy_relu_and_softmax_run_by_the_backends_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-ins reach NumpyOps.relu / backprop_relu / softmax, which write in place."""
    seen: list[str] = []
    for method in ("relu", "backprop_relu", "softmax", "sparse_softmax_crossentropy"):
        plain = getattr(NumpyOps, method)
        monkeypatch.setattr(
            NumpyOps, method, lambda self, *a, _m=method, _f=plain, **k: seen.append(_m) or _f(self, *a, **k)
        )
    ops = NumpyOps()
    u = np.array([[-1.0, 2.0, 0.5]], np.float32)
    h = ops.activation_forward(activations.ReLU(), u, in_place=True)
    assert h is u and h.tolist() == [[0.0, 2.0, 0.5]]
    dh = np.ones_like(u)
    assert ops.activation_backward(activations.ReLU(), u, h, dh) is dh
    p = ops.activation_forward(activations.Softmax(), u.copy())
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-6)
    ops.fused_loss(losses.get("sparse_categorical_crossentropy"), activations.Softmax(), np.array([1]), u, 1.0)
    assert seen == ["relu", "backprop_relu", "softmax", "sparse_softmax_crossentropy"]
    assert ops.activation_forward(activations.Tanh(), u) is not u  # no variant: the formula


@pytest.mark.parametrize("loss_name", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
@pytest.mark.parametrize("act", [activations.Softmax(), activations.Linear()], ids=["softmax", "from_logits"])
def test_fused_loss_variant_equals_the_formula(ops: Ops, loss_name: str, act: Any) -> None:
    rng = np.random.default_rng(4)
    loss = losses.get(loss_name)
    u = ops.asarray((rng.standard_normal((21, 7)) * 10).astype(np.float32))
    labels = rng.integers(0, 7, 21)
    y = ops.asarray(labels.astype(np.int32) if loss.sparse else np.eye(7, dtype=np.float32)[labels])
    v1, g1, out1 = (ops.to_numpy(a) for a in ops.fused_loss(loss, act, y, u, 1 / 21))
    v2, g2, out2 = (ops.to_numpy(a) for a in Ops.fused_loss(ops, loss, act, y, u, 1 / 21))
    np.testing.assert_allclose(v1, v2, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(g1, g2, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(out1, out2, rtol=2e-6, atol=1e-7)
    if not isinstance(act, activations.Softmax):  # from logits: the model's output is u itself
        np.testing.assert_array_equal(out1, ops.to_numpy(u))


def test_numpy_categorical_crossentropy_has_no_variant_and_keeps_the_formulas_bits() -> None:
    ops = NumpyOps()
    rng = np.random.default_rng(5)
    u = rng.standard_normal((8, 4)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 8)]
    loss, act = losses.CategoricalCrossentropy(), activations.Softmax()
    for a, b in zip(ops.fused_loss(loss, act, y, u, 0.125), Ops.fused_loss(ops, loss, act, y, u, 0.125), strict=True):
        np.testing.assert_array_equal(a, b)


class _LeakyAsRelu(activations.ReLU):
    """A user's relu with its own formula: leaky, so the built-in's variants would give other numbers."""

    def forward(self, xp: Any, u: Any) -> Any:
        return xp.where(u > 0.0, u, 0.5 * u)

    def backward(self, xp: Any, u: Any, h: Any, dh: Any) -> Any:
        return xp.where(u > 0.0, dh, 0.5 * dh)


class _PlainRelu(activations.ReLU):
    """A subclass that keeps the formula, so it keeps the variants."""


class _TanhWithOwnBackward(activations.Tanh):
    def backward(self, xp: Any, u: Any, h: Any, dh: Any) -> Any:
        return 2.0 * dh * (1.0 - h * h)


def test_subclass_with_its_own_formula_runs_it(ops: Ops) -> None:
    act = _LeakyAsRelu()
    assert act.cuda_forward is act.cuda_backward is None and not act.elementwise and not act.builtin
    u = np.array([[-2.0, 3.0, -0.5]], np.float32)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    assert ops.to_numpy(ops.activation_forward(act, ops.asarray(u.copy()), in_place=True)).tolist() == [
        [-1.0, 3.0, -0.25]
    ]
    du = ops.activation_backward(act, ops.asarray(u), ops.asarray(u), ops.asarray(np.ones_like(u)))
    assert ops.to_numpy(du).tolist() == [[0.5, 1.0, 0.5]]
    _, h = ops.dense_forward(ops.asarray(x), ops.asarray(w), None, act)
    xw = ops.to_numpy(Ops.matmul(ops, ops.asarray(x), ops.asarray(w)))
    np.testing.assert_allclose(ops.to_numpy(h), np.where(xw > 0, xw, 0.5 * xw), rtol=1e-6, atol=1e-6)
    # its own backward only: forward's variants stay, φ' is the user's
    tanh2 = _TanhWithOwnBackward()
    assert tanh2.cuda_forward == activations.Tanh.cuda_forward and tanh2.cuda_backward is None
    hu = np.tanh(u)
    got = ops.to_numpy(ops.activation_backward(tanh2, ops.asarray(u), ops.asarray(hu), ops.asarray(np.ones_like(u))))
    np.testing.assert_allclose(got, 2.0 * (1.0 - hu * hu), rtol=1e-6)


def test_subclass_that_keeps_the_formula_keeps_the_variant_and_its_bits() -> None:
    ops = NumpyOps()
    u, dh = _inputs("float32")
    plain, built_in = _PlainRelu(), activations.ReLU()
    assert plain.cuda_forward == built_in.cuda_forward and plain.elementwise and not plain.builtin
    for in_place in (False, True):
        a = ops.activation_forward(plain, u.copy(), in_place=in_place)
        np.testing.assert_array_equal(a, ops.activation_forward(built_in, u.copy(), in_place=in_place))
    np.testing.assert_array_equal(
        ops.activation_backward(plain, u, built_in.forward(np, u), dh.copy()),
        built_in.backward(np, u, built_in.forward(np, u), dh),
    )


class _HalfSparseCE(losses.SparseCategoricalCrossentropy):
    """A user's sparse cross-entropy with its own pre-activation formula (half the built-in's)."""

    def call_and_grad_from_preactivation(self, xp: Any, y_true: Any, u: Any) -> tuple[Any, Any]:
        value, grad = super().call_and_grad_from_preactivation(xp, y_true, u)
        return 0.5 * value, 0.5 * grad


def test_loss_subclass_with_its_own_formula_runs_it(ops: Ops) -> None:
    rng = np.random.default_rng(6)
    u = ops.asarray(rng.standard_normal((5, 3)).astype(np.float32))
    y = ops.asarray(rng.integers(0, 3, 5).astype(np.int32))
    mine, built_in = _HalfSparseCE(), losses.SparseCategoricalCrossentropy()
    v1, g1, _ = ops.fused_loss(mine, activations.Softmax(), y, u, 1.0)
    v2, g2, _ = Ops.fused_loss(ops, built_in, activations.Softmax(), y, u, 1.0)
    np.testing.assert_allclose(ops.to_numpy(v1), 0.5 * ops.to_numpy(v2), rtol=1e-6)
    np.testing.assert_allclose(ops.to_numpy(g1), 0.5 * ops.to_numpy(g2), rtol=1e-6, atol=1e-7)


class _Cube(activations.Activation):
    """An activation that brings its own CUDA C: CuPy fuses it without any table of names."""

    name = "cube"
    cuda_forward = "h = u * u * u;"
    cuda_backward = "du = (T)3 * u * u * dh;"

    def forward(self, xp: Any, u: Any) -> Any:
        return u * u * u

    def backward(self, xp: Any, u: Any, h: Any, dh: Any) -> Any:
        return 3.0 * u * u * dh


def test_activation_with_its_own_cuda_source_gets_a_fused_kernel(ops: Ops) -> None:
    act = _Cube()
    rng = np.random.default_rng(8)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((6, 4), (4, 5), (5,)))
    u1, h1 = ops.dense_forward(ops.asarray(x), ops.asarray(w), ops.asarray(b), act)
    u2, h2 = Ops.dense_forward(ops, ops.asarray(x), ops.asarray(w), ops.asarray(b), act)
    np.testing.assert_allclose(ops.to_numpy(h1), ops.to_numpy(h2), rtol=1e-5, atol=1e-6)
    dh = ops.asarray(rng.standard_normal((6, 5)).astype(np.float32))
    d1 = ops.activation_backward(act, u1, h1, dh)
    np.testing.assert_allclose(ops.to_numpy(d1), ops.to_numpy(act.backward(ops.xp, u2, h2, dh)), rtol=1e-5)
    if ops.name == "cupy":  # the kernels were built from the activation's own source
        assert {"fwd:" + act.cuda_forward, "bwd:" + act.cuda_backward} <= set(vars(ops)["_kernels"])


def test_nan_probe_runs_for_builtins_only() -> None:
    ops = NumpyOps()
    assert ops.carries_nan(activations.ReLU()) and ops.carries_nan(activations.Softmax())
    assert not ops.carries_nan(_PlainRelu()) and not ops.carries_nan(activations.get(lambda u: u))
    assert set(vars(ops)["_carries_nan"]) == {activations.ReLU, activations.Softmax}


@pytest.mark.parametrize(
    ("hidden", "out", "loss"),
    [
        ("relu", "softmax", "sparse_categorical_crossentropy"),
        ("elu", "softmax", "categorical_crossentropy"),
        ("tanh", "sigmoid", "binary_crossentropy"),
        ("sigmoid", "linear", "mse"),
    ],
)
def test_float64_gradients_through_the_variants(backend: str, hidden: str, out: str, loss: str) -> None:
    rng = np.random.default_rng(9)
    model = Sequential([Dense(6, hidden, input_shape=(4,)), Dense(3, out)], seed=3)
    model.compile("sgd", loss, backend=backend)
    x = rng.standard_normal((7, 4))
    labels = rng.integers(0, 3, 7)
    y = {
        "sparse_categorical_crossentropy": labels,
        "categorical_crossentropy": np.eye(3)[labels],
        "binary_crossentropy": rng.integers(0, 2, (7, 3)).astype(float),
        "mse": rng.standard_normal((7, 3)),
    }[loss]
    result = check_gradients(model, x, y)
    assert result.passed, str(result)
    assert result.max_rel_error < 1e-6
