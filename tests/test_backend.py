"""Backend selection, the strict stand-in, the counter-based dropout hash and the sync budget."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import backend as B
from xpnet.backend.base import Ops, hash_u32, mix_int
from xpnet.layers import Dense, Dropout


def test_named_backends_resolve_and_are_shared() -> None:
    assert xpnet.get_backend("numpy").name == "numpy"
    assert xpnet.get_backend("NumPy") is xpnet.get_backend("numpy")
    auto = xpnet.get_backend("auto")
    assert auto.name == ("cupy" if B._cupy_problem(0) is None else "numpy")


def test_unknown_backend_spec_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"Unknown backend 'tpu'.*'cupy:N'"):
        xpnet.get_backend("tpu")


def test_environment_variable_and_context_choose_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("array_api_strict")
    monkeypatch.setenv("XPNET_BACKEND", "strict")
    assert xpnet.get_backend().name == "strict"
    with xpnet.use_backend("numpy"):
        assert xpnet.get_backend().name == "numpy"
        model = xpnet.Sequential([Dense(2, input_shape=(3,))])
        assert model.ops.name == "numpy"
    assert xpnet.Sequential([Dense(2, input_shape=(3,))]).ops.name == "strict"


def test_cupy_request_without_cupy_says_why_and_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    monkeypatch.setattr(B, "_cache", {})
    with pytest.raises(B.BackendUnavailableError, match=r"cupy is not installed.*pip install 'xpnet\[cuda12\]'"):
        xpnet.get_backend("cupy:0")
    assert xpnet.get_backend("auto").name == "numpy"  # auto falls back silently


def test_cupy_without_a_device_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    class Runtime:
        @staticmethod
        def getDeviceCount() -> int:
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = type(sys)("cupy")
    fake.cuda = type(sys)("cupy.cuda")  # type: ignore[attr-defined]
    fake.cuda.runtime = Runtime  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(B, "_cache", {})
    with pytest.raises(B.BackendUnavailableError, match=r"no CUDA device is usable.*nvidia-smi"):
        xpnet.get_backend("cupy")


def test_importing_xpnet_never_imports_cupy() -> None:
    code = "import sys, xpnet; m = xpnet.Sequential([xpnet.Dense(2, input_shape=(3,))]); print('cupy' in sys.modules)"
    env = {"XPNET_BACKEND": "numpy", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


def test_only_the_backend_package_mentions_cupy_imports() -> None:
    from pathlib import Path

    root = Path(xpnet.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "import cupy" in p.read_text() and p.parent.name != "backend"
    ]
    assert offenders == []


def test_strict_stand_in_refuses_implicit_host_conversion() -> None:
    pytest.importorskip("array_api_strict")
    ops = xpnet.get_backend("strict")
    a = ops.asarray(np.ones(3, np.float32))
    with pytest.raises(RuntimeError, match="Can't convert"):
        np.asarray(a)
    with pytest.raises(TypeError):
        _ = a + np.ones(3, np.float32)
    np.testing.assert_array_equal(ops.to_numpy(a), np.ones(3))


def test_hash_matches_the_python_integer_reference() -> None:
    keys = (0xFFFFFF00, 0x9ABCDEF0)  # the first key makes c + k0 wrap around 2**32
    counters = np.arange(1000, dtype=np.uint32)
    got = hash_u32(np, counters, keys)
    expected = [mix_int(((int(c) + keys[0]) & 0xFFFFFFFF) ^ keys[1]) for c in counters]
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.uint32))


def test_dropout_masks_are_identical_on_every_backend(ops: Ops) -> None:
    reference = Ops.dropout_mask(xpnet.get_backend("numpy"), (64, 33), (7, 11), 0.2, np.float32)
    got = ops.to_numpy(ops.dropout_mask((64, 33), (7, 11), 0.2, ops.xp.float32))
    np.testing.assert_array_equal(got, reference)


def test_dropout_mask_statistics() -> None:
    layer = Dropout(0.2, seed=123)
    ops = xpnet.get_backend("numpy")
    masks = [ops.dropout_mask((1000, 100), layer.keys(step), 0.2, np.float32) > 0 for step in range(3)]
    for m in masks:
        assert m.mean() == pytest.approx(0.8, abs=0.005)  # 100k draws: sd of the mean is 0.0013
    # consecutive steps and other layers are independent: agreement rate p² + (1-p)² = 0.68
    other = ops.dropout_mask((1000, 100), Dropout(0.2, seed=124).keys(0), 0.2, np.float32) > 0
    for a, b in [(masks[0], masks[1]), (masks[1], masks[2]), (masks[0], other)]:
        assert np.mean(a == b) == pytest.approx(0.68, abs=0.006)
    # neighbouring elements are not correlated
    flat = masks[0].ravel().astype(np.float64)
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.01


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "rmsprop", "adam"])
def test_backend_optimizer_kernels_match_the_generic_code(ops: Ops, name: str) -> None:
    rng = np.random.default_rng(0)
    p0, g = rng.standard_normal(1001).astype(np.float32), rng.standard_normal(1001).astype(np.float32)
    generic = xpnet.get_backend("numpy")

    def run(o: Ops, use_generic: bool) -> np.ndarray:
        p, gg = o.asarray(p0.copy()), o.asarray(g)
        s1, s2 = o.asarray(np.full(1001, 0.1, np.float32)), o.asarray(np.full(1001, 0.2, np.float32))

        def lr(v: float) -> Any:  # learning rates arrive as 0-d device values in the parameters' dtype
            return o.asarray(np.asarray(v, np.float32))

        for _ in range(3):
            f = (lambda m: getattr(Ops, m).__get__(o)) if use_generic else (lambda m: getattr(o, m))
            if name == "sgd":
                f("subtract_")(p, gg)
                f("sgd_update")(p, gg, None, lr(0.1), 0.0, False)
            elif name == "sgd_momentum":
                f("sgd_update")(p, gg, s1, lr(0.1), 0.9, True)
            elif name == "rmsprop":
                f("rmsprop_update")(p, gg, s1, None, lr(0.01), 0.9, 0.0, 1e-7)
            else:
                f("adam_update")(p, gg, s1, s2, lr(0.001), 0.9, 0.999, 1e-7)
        return o.to_numpy(p)

    np.testing.assert_allclose(run(ops, False), run(generic, True), rtol=2e-6, atol=1e-7)


def test_host_sync_budget_per_epoch_does_not_grow_with_steps() -> None:
    """fit() reads from the device a fixed number of times per epoch, however many steps it takes."""
    pytest.importorskip("array_api_strict")
    from array_api_strict._array_object import Array

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((512, 8)).astype(np.float32), rng.integers(0, 3, 512)
    counts = {}
    for bs in (256, 8):  # 2 vs 64 steps per epoch
        model = xpnet.Sequential([Dense(16, "relu", input_shape=(8,)), Dropout(0.1), Dense(3, "softmax")], seed=0)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="strict")
        ops = model.ops
        before = ops.syncs
        hidden = []
        originals = {k: getattr(Array, k) for k in ("__float__", "__bool__", "__int__", "__index__")}
        try:
            for k in originals:  # any implicit scalar read in the loop would be a hidden sync
                setattr(Array, k, lambda self, k=k, seen=hidden, orig=originals: seen.append(k) or orig[k](self))
            model.fit(x, y, batch_size=bs, epochs=3, validation_split=0.25, verbose=0)
        finally:
            for k, f in originals.items():
                setattr(Array, k, f)
        counts[bs] = ops.syncs - before
        assert hidden == [], f"implicit device reads in fit: {hidden[:5]}"
    assert counts[256] == counts[8] <= 3 * 3  # per epoch: a shuffle upload is free; reads: train + validation


# Each backend hot spot (fused CuPy kernels, in-place NumPy code) against the generic array-API method.
ACTS = [
    "linear",
    "relu",
    "sigmoid",
    "tanh",
    "elu",
    "selu",
    "softplus",
    "softsign",
    "swish",
    "leaky_relu",
    "gelu",
    "softmax",
]


def _pair(ops: Ops, a: np.ndarray) -> tuple[object, object]:
    return ops.asarray(a.copy()), ops.asarray(a.copy())


@pytest.mark.parametrize("act_name", ACTS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_forward_hot_spot_matches_generic(ops: Ops, act_name: str, dtype: str) -> None:
    rng = np.random.default_rng(1)
    act = xpnet.activations.get(act_name)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((33, 7), (7, 10), (10,)))
    xs, ws, bs = ops.asarray(x), ops.asarray(w), ops.asarray(b)
    u1, h1 = ops.dense_forward(xs, ws, bs, act)
    u2, h2 = Ops.dense_forward(ops, xs, ws, bs, act)
    tol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(ops.to_numpy(u1), ops.to_numpy(u2), rtol=tol, atol=tol)
    np.testing.assert_allclose(ops.to_numpy(h1), ops.to_numpy(h2), rtol=tol, atol=tol)
    dh = ops.asarray(rng.standard_normal((33, 10)).astype(dtype))
    d1 = ops.activation_backward(act, u1, h1, dh)
    d2 = Ops.activation_backward(ops, act, u2, h2, dh)
    np.testing.assert_allclose(ops.to_numpy(d1), ops.to_numpy(d2), rtol=tol, atol=tol)
    g1, g2 = ops.zeros(10, getattr(ops.xp, dtype)), ops.zeros(10, getattr(ops.xp, dtype))
    ops.bias_grad(d1, g1)
    Ops.bias_grad(ops, d1, g2)
    np.testing.assert_allclose(ops.to_numpy(g1), ops.to_numpy(g2), rtol=tol, atol=tol)


def test_dropout_forward_hot_spot_is_bit_identical(ops: Ops) -> None:
    x = ops.asarray(np.random.default_rng(2).standard_normal((50, 40)).astype(np.float32))
    y1, m1 = ops.dropout_forward(x, (5, 6), 0.3)
    y2, m2 = Ops.dropout_forward(ops, x, (5, 6), 0.3)
    np.testing.assert_array_equal(ops.to_numpy(m1), ops.to_numpy(m2))
    np.testing.assert_array_equal(ops.to_numpy(y1), ops.to_numpy(y2))


@pytest.mark.parametrize("loss_name", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_loss_hot_spot_matches_generic(ops: Ops, loss_name: str, dtype: str) -> None:
    rng = np.random.default_rng(3)
    loss = xpnet.losses.get(loss_name)
    u = ops.asarray((rng.standard_normal((65, 10)) * 20).astype(dtype))
    labels = rng.integers(0, 10, 65)
    y = ops.asarray(labels.astype(np.int32) if loss.sparse else np.eye(10, dtype=dtype)[labels])
    softmax = xpnet.activations.Softmax()
    v1, g1, p1 = ops.fused_loss(loss, softmax, y, u, 1 / 65)
    v2, g2, p2 = Ops.fused_loss(ops, loss, softmax, y, u, 1 / 65)
    np.testing.assert_allclose(ops.to_numpy(p1), ops.to_numpy(p2), rtol=2e-6, atol=1e-7)
    tol = 2e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(ops.to_numpy(v1), ops.to_numpy(v2), rtol=tol, atol=tol)
    np.testing.assert_allclose(ops.to_numpy(g1), ops.to_numpy(g2), rtol=tol, atol=tol)


def test_dropout_mask_offset_continues_the_global_batch(ops: Ops) -> None:
    """A rank holding rows 3..12 of a global batch draws exactly those rows of the global mask."""
    f32 = ops.xp.float32
    whole = ops.to_numpy(ops.dropout_mask((13, 5), (9, 4), 0.5, f32))
    part = ops.to_numpy(ops.dropout_mask((10, 5), (9, 4), 0.5, f32, offset=3 * 5))
    np.testing.assert_array_equal(part, whole[3:])


def test_a_user_subclass_of_a_builtin_activation_runs_its_own_backward(ops: Ops) -> None:
    class LeakyishReLU(xpnet.activations.ReLU):
        def backward(self, xp, u, h, dh):
            return dh * 0.5

    u = ops.asarray(np.array([[1.0, -1.0]], np.float32))
    dh = ops.asarray(np.array([[2.0, 2.0]], np.float32))
    got = ops.to_numpy(ops.activation_backward(LeakyishReLU(), u, u, dh))
    np.testing.assert_array_equal(got, [[1.0, 1.0]])
