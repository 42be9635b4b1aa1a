"""The optional MKL BLAS (`xpnet[mkl]`, backend/_cblas.py): which library `XPNET_BLAS` picks, MKL's GEMM
against np.matmul for every layout it takes or refuses, and replayed steps bit-identical to eager ones
with MKL doing every GEMM. The routing is also checked with NumPy's own CBLAS standing in for MKL, so
it is tested where MKL is not installed; the tests that need MKL itself skip, saying so."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from test_program import _model  # the workloads, shared with the program's tests

import xpnet
from xpnet.backend import _cblas
from xpnet.backend.numpy_ops import NumpyOps
from xpnet.training import threads

MKL = _cblas.mkl_path()
needs_mkl = pytest.mark.skipif(MKL is None, reason="MKL is not installed (pip install 'xpnet[mkl]')")


def _routing() -> list[Any]:
    """The libraries whose `matmul` is a CBLAS GEMM: MKL where installed, and NumPy's CBLAS routed as MKL is."""
    own = _cblas.library("openblas").fns
    out: list[Any] = []
    if own:
        out.append(pytest.param(_cblas.Blas("mkl", "NumPy's CBLAS routed as MKL", own), id="routing"))
    out.append(pytest.param("mkl", id="mkl", marks=needs_mkl))
    return out


def _blas(lib: Any) -> _cblas.Blas:
    return _cblas.library(lib) if isinstance(lib, str) else lib


def _views(rng: np.random.Generator, shape: tuple[int, int], dtype: Any, layout: str) -> np.ndarray:
    """An array of `shape` lying in memory as `layout` says: "rows" (C order), "cols" (a transposed view),
    "sliced" (a row-strided slice of a wider array), "strided" (every other element: no BLAS layout)."""
    r, c = shape
    if layout == "rows":
        return rng.standard_normal(shape).astype(dtype)
    if layout == "cols":
        return rng.standard_normal((c, r)).astype(dtype).T
    if layout == "sliced":
        return rng.standard_normal((r, c + 5)).astype(dtype)[:, 2 : 2 + c]
    return rng.standard_normal((r, 2 * c)).astype(dtype)[:, ::2]


def test_xpnet_blas_is_read_as_auto_openblas_or_mkl_and_anything_else_names_the_variable() -> None:
    assert _cblas.choice({}) == "auto"
    assert _cblas.choice({"XPNET_BLAS": " "}) == "auto"
    assert _cblas.choice({"XPNET_BLAS": "MKL"}) == "mkl"
    assert _cblas.choice({"XPNET_BLAS": "openblas"}) == "openblas"
    with pytest.raises(ValueError, match=r"XPNET_BLAS must be auto, openblas or mkl, received 'blis'"):
        _cblas.choice({"XPNET_BLAS": "blis"})
    with pytest.raises(ValueError, match=r"^blas must be auto, openblas or mkl, received 'atlas'$"):
        NumpyOps(blas="atlas")  # the argument named, not the variable the user did not set


def test_mkl_asked_for_but_missing_is_one_error_naming_the_variable_and_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_cblas, "mkl_path", lambda: None)
    monkeypatch.setattr(_cblas, "_libraries", {})
    with pytest.raises(ImportError, match=r"XPNET_BLAS=mkl, but MKL is not installed: pip install 'xpnet\[mkl\]'"):
        _cblas.library("mkl")
    monkeypatch.setenv("XPNET_BLAS", "mkl")
    with pytest.raises(ImportError, match="XPNET_BLAS=mkl"):
        NumpyOps()
    monkeypatch.setenv("XPNET_BLAS", "auto")  # auto falls back to NumPy's own, silently
    assert NumpyOps().cblas.name == "openblas"


def test_numpys_own_blas_runs_np_matmul_itself_so_the_default_path_is_unchanged() -> None:
    own = _cblas.library("openblas")
    assert own.matmul is np.matmul
    a, b, out = np.ones((3, 4), np.float32), np.ones((4, 5), np.float32), np.empty((3, 5), np.float32)
    bound = own.bound_matmul(a, b, out)
    assert bound.func is np.matmul and bound.args == (a, b, out)  # type: ignore[attr-defined]
    assert NumpyOps(blas="openblas").info()["blas"] == "NumPy's BLAS"
    assert copy.deepcopy(own) is own and pickle.loads(pickle.dumps(own)) is own  # one per library and process


def test_auto_picks_mkl_exactly_when_it_is_installed_and_no_cblas_asks_for_numpys_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _cblas.library("auto").name == ("openblas" if MKL is None else "mkl")
    monkeypatch.setattr(_cblas, "_libraries", {})
    monkeypatch.setenv("XPNET_NO_CBLAS", "1")
    assert _cblas.library("auto").name == "openblas"


def test_the_threading_layer_is_sequential_for_one_thread_else_tbb_and_the_users_own_wins() -> None:
    assert _cblas.mkl_layer({"XPNET_BLAS_THREADS": "1"}, cores=8) == "sequential"
    assert _cblas.mkl_layer({"OMP_NUM_THREADS": "1"}, cores=8) == "sequential"
    assert _cblas.mkl_layer({}, cores=1) == "sequential"
    assert _cblas.mkl_layer({"XPNET_BLAS_THREADS": "2"}, cores=8) == "tbb"
    assert _cblas.mkl_layer({}, cores=2) == "tbb"
    assert _cblas.mkl_layer({"MKL_THREADING_LAYER": "GNU", "XPNET_BLAS_THREADS": "1"}, cores=2) == "gnu"
    assert _cblas.thread_setting({"XPNET_BLAS_THREADS": "x", "MKL_NUM_THREADS": "3"}) == 3


LAYOUTS = ["rows", "cols", "sliced"]


@pytest.mark.parametrize("lib", _routing())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("la", LAYOUTS)
@pytest.mark.parametrize("lb", LAYOUTS)
def test_the_gemm_matches_np_matmul_for_every_layout_it_takes(lib: Any, dtype: Any, la: str, lb: str) -> None:
    blas = _blas(lib)
    rng = np.random.default_rng(3)
    a, b = _views(rng, (33, 70), dtype, la), _views(rng, (70, 21), dtype, lb)
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    out = blas.matmul(a, b)
    assert out.dtype == dtype and out.shape == (33, 21) and out.flags.c_contiguous
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)
    into = np.full((33, 21 + 3), np.nan, dtype)[:, 1:22]  # a row-strided result: written in place
    assert blas.matmul(a, b, out=into) is into
    assert _cblas._gemm_call(blas.fns, a, b, into) is not None  # one GEMM, not np.matmul
    np.testing.assert_allclose(into, want, rtol=tol, atol=tol)
    bound = np.zeros((33, 21), dtype)
    blas.bound_matmul(a, b, bound)()
    np.testing.assert_array_equal(bound, out)  # the replay's call: the eager call's bits


def _refused() -> list[Any]:
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    wide = rng.standard_normal((6, 8)).astype(np.float32)
    return [
        pytest.param(_views(rng, (6, 5), np.float32, "strided"), b, None, id="element-strided"),
        pytest.param(a, b.astype(np.float64), None, id="mixed-dtypes"),
        pytest.param(a.astype(np.int32), b.astype(np.int32), None, id="integers"),
        pytest.param(np.stack([a, a]), b, None, id="a-stack"),
        pytest.param(a[:0], b, None, id="no-rows"),
        pytest.param(a[:, :0], b[:0], None, id="k-zero"),
        pytest.param(a, b[:, :0], None, id="no-columns"),
        pytest.param(wide[:, :5], wide[:5, 4:8], wide[:, 4:8], id="out-overlaps-b"),
        pytest.param(a, b, np.empty((4, 6), np.float32).T, id="out-in-column-layout"),
    ]


@pytest.mark.parametrize("lib", _routing())
@pytest.mark.parametrize(("a", "b", "out"), _refused())
def test_what_the_gemm_refuses_goes_to_np_matmul_with_the_same_result(lib: Any, a: Any, b: Any, out: Any) -> None:
    blas = _blas(lib)
    want = np.matmul(a, b)
    target = out if out is not None else np.empty(want.shape, want.dtype)
    assert _cblas._gemm_call(blas.fns, a, b, target) is None
    got = blas.matmul(a, b, out=out)
    np.testing.assert_array_equal(got, want)
    if out is not None and not np.shares_memory(out, b):
        assert blas.bound_matmul(a, b, out).func is np.matmul  # type: ignore[attr-defined]


@pytest.mark.parametrize("lib", _routing())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_sub_is_c_minus_at_b_with_beta_one(lib: Any, dtype: Any) -> None:
    blas = _blas(lib)
    assert blas.gemm_sub is not None
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((32, 30)).astype(dtype), rng.standard_normal((32, 12)).astype(dtype)
    wide = rng.standard_normal((30, 16)).astype(dtype)
    c, edges = wide[:, 2:14], (wide[:, :2].copy(), wide[:, 14:].copy())
    want = c.astype(np.float64) - a.T.astype(np.float64) @ b.astype(np.float64)
    again = c.copy()
    assert blas.gemm_sub(a, b, c)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(wide[:, :2], edges[0])
    np.testing.assert_array_equal(wide[:, 14:], edges[1])
    bound = blas.bound_gemm_sub(a, b, again)
    assert bound is not None
    bound()
    np.testing.assert_array_equal(again, c)


@needs_mkl
def test_mkl_rounds_differently_from_openblas_but_only_in_the_last_bits() -> None:
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((32, 784)).astype(np.float32), rng.standard_normal((784, 300)).astype(np.float32)
    mkl, own = _cblas.library("mkl").matmul(x, w), np.matmul(x, w)
    np.testing.assert_allclose(mkl, own, rtol=1e-4, atol=1e-3)


def _gemms(model: Any) -> list[Callable[..., Any]]:
    """The C functions of a replayed step's bound calls that are a GEMM of MKL's."""
    mkl = [id(_cblas._RAW.get(id(f), f)) for f in _cblas.library("mkl").fns.values()]
    return [f.func for f in model.step_program._replay.flat if id(getattr(f, "func", None)) in mkl]


@needs_mkl
@pytest.mark.parametrize("kind", ["A", "B", "B_float64", "lenet"])
def test_with_mkl_every_dense_gemm_is_replayed_by_it_and_bit_identical_to_eager(kind: str) -> None:
    runs = []
    for jit in (False, True):
        model, opt, shape = _model(kind, (64,))
        model.compile(opt, "sparse_categorical_crossentropy", backend=NumpyOps(blas="mkl"), jit_compile=jit)
        data = np.random.default_rng(2)
        x, y = data.random((8 * 20, *shape)), data.integers(0, 10, 8 * 20)
        history = model.fit(x.astype(model.dtype), y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        runs.append((model, history.history))
    (eager, h0), (replayed, h1) = runs
    assert replayed.step_program.replayed >= 30
    assert h1 == h0
    for a, b in zip(eager.get_weights(), replayed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    dense = sum(type(layer).__name__ == "Dense" for layer in replayed.layers)
    # per Dense layer: x @ W forward and the weight gradient; ∂x for all but the first layer
    assert len(_gemms(replayed)) >= 3 * dense - 1, replayed.step_program.explain()
    probe = x[:40].astype(replayed.dtype)
    np.testing.assert_array_equal(replayed.predict(probe, batch_size=8), eager.predict(probe, batch_size=8))


@needs_mkl
def test_mkl_and_openblas_train_model_a_to_the_same_weights_within_rounding() -> None:
    weights = []
    for blas in ("mkl", "openblas"):
        model, opt, shape = _model("A", (64,))
        model.compile(opt, "sparse_categorical_crossentropy", backend=NumpyOps(blas=blas))
        data = np.random.default_rng(7)
        model.fit(data.random((160, *shape), dtype=np.float32), data.integers(0, 10, 160), batch_size=16, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@needs_mkl
def test_the_libraries_thread_setting_governs_mkls_threads() -> None:
    from threadpoolctl import threadpool_info

    blas = _cblas.library("mkl")
    model, opt, _ = _model("A", (64,))
    model.compile(opt, "sparse_categorical_crossentropy", backend=NumpyOps(blas="mkl"))

    def mkl_threads() -> int:
        return next(p["num_threads"] for p in threadpool_info() if p.get("internal_api") == "mkl")

    before = mkl_threads()
    with threads.blas_threads_for(threads.macs_per_sample(model), 32, threads=1) as decision:
        assert decision.threads == 1 and mkl_threads() == 1
    assert mkl_threads() == before  # given back with the block
    if "sequential" in blas.label:
        assert before == 1  # the layer was chosen because one thread was all this process asked for
    assert xpnet.backend.get_backend("numpy").info()["blas"] == _cblas.library().label


@needs_mkl
def test_with_mkl_the_convolutions_products_go_through_it_eager_and_replayed(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = NumpyOps(blas="mkl")
    real, shapes = ops.cblas.matmul, []

    def counted(a: Any, b: Any, out: Any = None) -> Any:
        shapes.append((a.shape, b.shape))
        return real(a, b, out=out)

    monkeypatch.setattr(ops.cblas, "matmul", counted)  # the library object itself: the binders read it there
    model, opt, shape = _model("lenet")
    model.compile(opt, "sparse_categorical_crossentropy", backend=ops, jit_compile=True)
    data = np.random.default_rng(8)
    x, y = data.random((8 * 6, *shape), dtype=np.float32), data.integers(0, 10, 8 * 6)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert model.step_program.replayed >= 2
    # the first convolution's [W; b]ᵀ (6, 5·5·1 + 1) times its patches, and its weight gradient: in each of the
    # 6 steps, the replayed ones too (without them: 6 - replayed), and once more in the program's check
    forward = sum(a == (6, 26) for a, _ in shapes)
    weight_grad = sum(a[0] == 26 and b == (8 * 28 * 32, 6) for a, b in shapes)
    assert forward == weight_grad == 7, shapes[:12]


@pytest.mark.parametrize("lib", _routing())
def test_an_eager_step_with_mkl_enters_no_more_files_than_with_numpys_blas(lib: Any) -> None:
    """The eager step's yardstick (test_batch_walk): MKL's GEMMs are called from NumpyOps itself, their layout
    checked once per kind of operands, so the step switches files as often as with NumPy's own BLAS."""
    from test_batch_walk import _walk, _xy

    walks = []
    for blas in ("openblas", _blas(lib)):
        ops = NumpyOps(blas="openblas")
        ops.cblas = _cblas.library(blas) if isinstance(blas, str) else blas
        model = xpnet.Sequential([xpnet.Input((20,)), xpnet.Dense(16, activation="relu"), xpnet.Dense(3)])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend=ops, jit_compile=False)
        x, y = _xy()
        model.train_on_batch(x, y)
        walks.append(_walk(model, x, y))
    assert walks[1] == walks[0], walks


@pytest.mark.parametrize("lib", _routing())
def test_numpy_ops_products_are_the_librarys_for_each_kind_and_overlaps_are_checked_per_call(lib: Any) -> None:
    ops = NumpyOps(blas="openblas")
    ops.cblas = _blas(lib)
    rng = np.random.default_rng(9)
    for la in [*LAYOUTS, "strided"]:
        for dtype in (np.float32, np.float64):
            a, b = _views(rng, (7, 6), dtype, la), _views(rng, (6, 5), dtype, "rows")
            for _ in range(2):  # the kind's check, then the kept one
                np.testing.assert_array_equal(ops.matmul(a, b), ops.cblas.matmul(a, b))
                np.testing.assert_array_equal(ops.affine(a, b, None), ops.cblas.matmul(a, b))
    wide = rng.standard_normal((6, 10)).astype(np.float32)
    a, b, out = wide[:, :6].copy(), wide[:, :5].copy(), np.empty((6, 5), np.float32)
    ops.matmul(a, b, out=out)  # the kind of (a, b, out), kept: suits one GEMM
    want = np.matmul(wide[:, :6], wide[:, 5:10])
    assert ops.matmul(wide[:, :6], wide[:, 5:10], out=wide[:, 5:10]) is not None  # same kind, out overlaps b
    np.testing.assert_array_equal(wide[:, 5:10], want)  # np.matmul's own (it copies what overlaps)
    stack = rng.standard_normal((2, 6, 5)).astype(np.float32)
    np.testing.assert_array_equal(ops.matmul(stack, b[:5, :5]), np.matmul(stack, b[:5, :5]))
    ints = np.arange(6, dtype=np.int64).reshape(2, 3)
    np.testing.assert_array_equal(ops.matmul(ints, ints.T), np.matmul(ints, ints.T))


@pytest.mark.parametrize("lib", _routing())
def test_an_out_of_another_array_type_is_np_matmuls_not_the_kind_of_no_out(lib: Any, tmp_path: Any) -> None:
    ops = NumpyOps(blas="openblas")
    ops.cblas = _blas(lib)
    a, b = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)
    ops.matmul(a, b)  # the kind of (a, b) with no out: one GEMM into a new array
    wide = np.memmap(tmp_path / "out", np.float32, "w+", shape=(4, 5))
    out = wide[:, 1:3]  # a memmap too, its rows 5 apart
    assert ops.matmul(a, b, out=out) is out
    np.testing.assert_array_equal(wide[:, 1:3], np.full((4, 2), 3.0, np.float32))
    np.testing.assert_array_equal(wide[:, [0, 3, 4]], np.zeros((4, 3), np.float32))


_NO_TBB = """
import sys
from xpnet.backend import _cblas
real = _cblas._package_library
_cblas._package_library = lambda dist, prefix: None if dist == "tbb" else real(dist, prefix)
blas = _cblas.library()
import numpy as np
a = np.ones((64, 64), np.float32)
print(blas.name, blas.label, float(blas.matmul(a, a)[0, 0]))
"""


@needs_mkl
@pytest.mark.parametrize(("layer", "want"), [("", "mkl MKL"), ("tbb", "openblas NumPy's BLAS"), ("TBB", "openblas")])
def test_without_libtbb_mkl_runs_intel_openmp_or_is_left_out_where_tbb_was_asked_for(layer: str, want: str) -> None:
    """MKL ends the process at its first call when its threading layer's library is missing ("Intel oneMKL
    FATAL ERROR: Cannot load libmkl_tbb_thread"): auto must then fall back to NumPy's own BLAS, not exit."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("XPNET_BLAS", "XPNET_BLAS_THREADS", "MKL_THREADING_LAYER")}
    env["XPNET_BLAS_THREADS"], env["MKL_THREADING_LAYER"] = "2", layer
    proc = subprocess.run([sys.executable, "-c", _NO_TBB], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(want) and proc.stdout.split()[-1] == "64.0", proc.stdout
    if not layer:
        assert "(intel)" in proc.stdout


@needs_mkl
def test_an_empty_mkl_threading_layer_is_unset_so_one_thread_is_the_sequential_layer_indeed() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np; from threadpoolctl import threadpool_info; from xpnet.backend import _cblas\n"
        "b = _cblas.library(); a = np.ones((8, 8), np.float32); b.matmul(a, a)\n"
        "print(b.label, [p.get('threading_layer') for p in threadpool_info() if p['internal_api'] == 'mkl'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "XPNET_BLAS"}
    env["XPNET_BLAS_THREADS"], env["MKL_THREADING_LAYER"] = "1", ""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "(sequential) ['sequential']" in proc.stdout, proc.stdout


@pytest.mark.parametrize("lib", _routing())
def test_the_kinds_numpy_ops_keeps_are_bounded(lib: Any) -> None:
    ops = NumpyOps(blas="openblas")
    ops.cblas = _blas(lib)
    w = np.ones((3, 2), np.float32)
    for n in range(1, 4200):
        ops.matmul(np.ones((n, 3), np.float32), w)
    assert 0 < len(ops._gemm_kinds) <= 4096
    np.testing.assert_array_equal(ops.matmul(np.ones((5, 3), np.float32), w), np.full((5, 2), 3.0, np.float32))
