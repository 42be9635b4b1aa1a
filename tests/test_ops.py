"""`xpnet.ops`: Keras's values, and every op's VJP against central finite differences in float64,
on NumPy and on CuPy (the stand-in or a GPU)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import ops
from xpnet.backend import _cupy_problem
from xpnet.tape import Tape, Tensor, recording

BACKENDS = [pytest.param("numpy", id="numpy"), pytest.param("cupy", id="cupy", marks=pytest.mark.gpu)]


@pytest.fixture(params=BACKENDS)
def xp(request: pytest.FixtureRequest) -> Any:
    if request.param == "cupy":
        problem = _cupy_problem(0)
        if problem:
            pytest.skip(f"cupy unavailable: {problem.split(' (')[0]}")
    return xpnet.get_backend(request.param).xp


def _rand(rng: np.random.Generator, *shape: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return rng.uniform(low, high, shape)


def _pos(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape)


def _distinct(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Values at least 0.1 apart and away from 0 (no ties, no kinks for max, relu, abs)."""
    n = int(np.prod(shape))
    v = (np.arange(n) - n / 2 + 0.5) * 0.1 + 0.03
    return rng.permutation(v).reshape(shape)


def _check(xp: Any, fn: Callable[..., Any], inputs: list[np.ndarray], seed: int = 0) -> None:
    """Σ r·fn(inputs) differentiated by the tape vs central differences, for a random direction r."""
    dev = [xp.asarray(a) for a in inputs]
    leaves = [Tensor(a) for a in dev]
    tape = Tape(xp)
    with recording(tape):
        out = fn(*leaves)
    assert isinstance(out, Tensor), f"the op did not record: {type(out).__name__}"
    r = np.random.default_rng(seed).normal(size=out.shape)
    grads = tape.backward([(out, xp.asarray(r))], leaves)

    def value(args: list[np.ndarray]) -> float:
        return float(np.sum(r * ops.convert_to_numpy(fn(*[xp.asarray(a) for a in args]))))

    eps = 1e-6
    for k, a in enumerate(inputs):
        num = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            up = [b.copy() for b in inputs]
            dn = [b.copy() for b in inputs]
            up[k][i] += eps
            dn[k][i] -= eps
            num[i] = (value(up) - value(dn)) / (2 * eps)
        got = ops.convert_to_numpy(grads[k])
        assert got.shape == a.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8, err_msg=f"input {k}")


R = np.random.default_rng(7)
CASES: dict[str, tuple[Callable[..., Any], list[np.ndarray]]] = {
    "add_broadcast": (ops.add, [_rand(R, 3, 4), _rand(R, 4)]),
    "subtract_broadcast": (ops.subtract, [_rand(R, 3, 1), _rand(R, 3, 4)]),
    "multiply": (ops.multiply, [_rand(R, 2, 3), _rand(R, 3)]),
    "divide": (ops.divide, [_rand(R, 2, 3), _pos(R, 2, 3)]),
    "negative": (ops.negative, [_rand(R, 5)]),
    "power": (ops.power, [_pos(R, 2, 3), _rand(R, 3)]),
    "exp": (ops.exp, [_rand(R, 2, 3)]),
    "log": (ops.log, [_pos(R, 2, 3)]),
    "sqrt": (ops.sqrt, [_pos(R, 2, 3)]),
    "square": (ops.square, [_rand(R, 2, 3)]),
    "abs": (ops.abs, [_distinct(R, 2, 3)]),
    "maximum": (ops.maximum, [_distinct(R, 2, 3), _distinct(R, 3)]),
    "minimum": (ops.minimum, [_distinct(R, 2, 3), _distinct(R, 2, 3)]),
    "where": (lambda a, b: ops.where(np.array([[True, False, True]]), a, b), [_rand(R, 2, 3), _rand(R, 2, 1)]),
    "clip": (lambda a: ops.clip(a, -0.45, 0.45), [_distinct(R, 3, 4)]),
    "tanh": (ops.tanh, [_rand(R, 2, 3)]),
    "sigmoid": (ops.sigmoid, [_rand(R, 2, 3, low=-4, high=4)]),
    "relu": (ops.relu, [_distinct(R, 2, 3)]),
    "softmax": (ops.softmax, [_rand(R, 3, 4)]),
    "softmax_axis0": (lambda a: ops.softmax(a, axis=0), [_rand(R, 3, 4)]),
    "log_softmax": (ops.log_softmax, [_rand(R, 3, 4)]),
    "sum_all": (ops.sum, [_rand(R, 2, 3)]),
    "sum_axis_keepdims": (lambda a: ops.sum(a, axis=1, keepdims=True), [_rand(R, 2, 3, 2)]),
    "mean_axes": (lambda a: ops.mean(a, axis=(0, 2)), [_rand(R, 2, 3, 2)]),
    "mean_all": (ops.mean, [_rand(R, 4)]),
    "max_axis": (lambda a: ops.max(a, axis=1), [_distinct(R, 3, 4)]),
    "min_all": (ops.min, [_distinct(R, 3, 4)]),
    "logsumexp_axis": (lambda a: ops.logsumexp(a, axis=-1), [_rand(R, 3, 4)]),
    "logsumexp_keepdims": (lambda a: ops.logsumexp(a, axis=0, keepdims=True), [_rand(R, 3, 4)]),
    "matmul": (ops.matmul, [_rand(R, 3, 4), _rand(R, 4, 2)]),
    "matmul_batched_broadcast": (ops.matmul, [_rand(R, 2, 3, 4), _rand(R, 4, 5)]),
    "matmul_vector_matrix": (ops.matmul, [_rand(R, 4), _rand(R, 4, 3)]),
    "matmul_matrix_vector": (ops.matmul, [_rand(R, 3, 4), _rand(R, 4)]),
    "dot": (ops.dot, [_rand(R, 2, 3), _rand(R, 3, 2)]),
    "matmul_vector_vector": (ops.matmul, [_rand(R, 4), _rand(R, 4)]),
    "dot_vector_vector": (ops.dot, [_rand(R, 3), _rand(R, 3)]),
    "reshape": (lambda a: ops.reshape(a, (3, -1)), [_rand(R, 2, 3, 2)]),
    "transpose_axes": (lambda a: ops.transpose(a, (2, 0, 1)), [_rand(R, 2, 3, 4)]),
    "transpose": (ops.transpose, [_rand(R, 2, 3)]),
    "expand_dims": (lambda a: ops.expand_dims(a, -1), [_rand(R, 2, 3)]),
    "squeeze": (lambda a: ops.squeeze(a, 1), [_rand(R, 2, 1, 3)]),
    "concatenate": (lambda a, b: ops.concatenate([a, b], axis=1), [_rand(R, 2, 3), _rand(R, 2, 1)]),
    "stack": (lambda a, b: ops.stack([a, b], axis=1), [_rand(R, 2, 3), _rand(R, 2, 3)]),
    "take_rows_repeated": (lambda a: ops.take(a, np.array([2, 0, 2]), axis=0), [_rand(R, 3, 2)]),
    "take_axis1": (lambda a: ops.take(a, np.array([[1, 1], [0, 2]]), axis=1), [_rand(R, 2, 3)]),
    "take_flat": (lambda a: ops.take(a, np.array([5, 0, 5])), [_rand(R, 2, 3)]),
    "take_one_index": (lambda a: ops.take(a, -1, axis=1), [_rand(R, 2, 3)]),
    "getitem": (lambda a: a[1:, ::2], [_rand(R, 3, 4)]),
    "where_on_a_comparison": (lambda a: ops.where(a > 0.05, a, 0.1 * a), [_distinct(R, 2, 3)]),
    "reflected_power": (lambda a: 2.0**a, [_rand(R, 2, 3)]),
    "cast": (lambda a: ops.cast(a, "float64"), [_rand(R, 3)]),
    "operators": (lambda a, b: -((a @ b + 1.0) * 2.0 - 0.5) / 3.0 + a[:, :1] ** 2, [_rand(R, 2, 3), _rand(R, 3, 2)]),
    "reflected_operators": (lambda a: 1.0 - 2.0 / (3.0 + a * a), [_rand(R, 2, 3)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_vjp_matches_finite_differences_float64(xp: Any, name: str) -> None:
    fn, inputs = CASES[name]
    host = [np.asarray(a, dtype=np.float64) for a in inputs]
    if name == "where":  # the condition must live where the operands do
        cond = xp.asarray(np.array([[True, False, True]]))
        fn = lambda a, b: ops.where(cond, a, b)  # noqa: E731
    if name.startswith("take") and name != "take_one_index":
        idx = {"take_rows_repeated": [2, 0, 2], "take_axis1": [[1, 1], [0, 2]], "take_flat": [5, 0, 5]}[name]
        dev_idx = xp.asarray(np.array(idx))
        axis = {"take_rows_repeated": 0, "take_axis1": 1, "take_flat": None}[name]
        fn = lambda a: ops.take(a, dev_idx, axis=axis)  # noqa: E731
    _check(xp, fn, host)


def test_ops_outside_a_model_return_plain_arrays_with_keras_values() -> None:
    with xpnet.use_backend("numpy"):
        _keras_values()


def test_creation_ops_use_the_default_backend(xp: Any) -> None:
    backend = "numpy" if xp is np else "cupy"
    with xpnet.use_backend(backend):
        for made in (ops.ones(2), ops.zeros((1, 2)), ops.full(3, 1.0), ops.eye(2), ops.arange(3)):
            assert xpnet.get_backend(backend).is_native(made)
        np.testing.assert_array_equal(ops.convert_to_numpy(ops.eye(2, 3, 1)), np.eye(2, 3, 1))


def _keras_values() -> None:
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], dtype=np.float32)
    assert type(ops.matmul(x, x.T)) is np.ndarray
    np.testing.assert_allclose(ops.softmax(x)[0], np.exp(x[0]) / np.exp(x[0]).sum(), rtol=1e-6)
    np.testing.assert_allclose(ops.log_softmax(x), np.log(ops.softmax(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.logsumexp(x, axis=1), np.log(np.exp(x).sum(1)), rtol=1e-6)
    assert ops.softmax(x).dtype == np.float32 and ops.sigmoid(x).dtype == np.float32
    assert ops.ones((2, 3)).dtype == np.float32 and ops.zeros(4).shape == (4,)
    assert ops.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert ops.arange(4).dtype == np.int32 and ops.arange(0.0, 1.0, 0.5).dtype == np.float32
    np.testing.assert_array_equal(ops.eye(2, 3, 1), np.eye(2, 3, 1))
    np.testing.assert_array_equal(ops.one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    assert ops.one_hot(np.array([1]), 2).dtype == np.float32
    assert ops.argmax(x, axis=1).tolist() == [2, 2] and ops.argmax(x).dtype == np.int32
    assert ops.shape(x) == (2, 3)
    assert ops.convert_to_tensor([1.0, 2.0]).dtype == np.float32
    assert ops.cast(x, "int32").dtype == np.int32
    assert ops.stack([x, x], axis=0).shape == (2, 2, 3)
    assert ops.squeeze(ops.expand_dims(x, 0)).shape == (2, 3)
    np.testing.assert_array_equal(ops.relu(np.array([-1.0, 2.0])), [0.0, 2.0])
    np.testing.assert_array_equal(ops.clip(np.array([-3.0, 0.5, 3.0]), -1.0, 1.0), [-1.0, 0.5, 1.0])


def test_ops_refuse_bad_arguments_with_the_value_received() -> None:
    with pytest.raises(ValueError, match=r"num_classes must be a positive integer, received 0"):
        ops.one_hot(np.array([0]), 0)
    with pytest.raises(ValueError, match=r"dtype must be .* received 'float99'"):
        ops.ones(2, dtype="float99")
    with pytest.raises(ValueError, match="axis 0 has length 2"):
        ops.squeeze(np.zeros((2, 1)), 0)
    with pytest.raises(ValueError, match="needs both x1 and x2"):
        ops.where(np.array([True]))


def test_a_recorded_tensor_refuses_a_truth_value_and_array_indices() -> None:
    tape = Tape(np)
    with recording(tape):
        t = ops.add(Tensor(np.ones(3)), 1.0)
        with pytest.raises(TypeError, match=r"device-to-host read"):
            bool(t)
        with pytest.raises(TypeError, match=r"ops\.take"):
            _ = t[np.array([0, 1])]


def test_unused_leaves_get_no_gradient_and_shared_leaves_add_up() -> None:
    a, b = Tensor(np.array([1.0, 2.0])), Tensor(np.array([3.0, 4.0]))
    tape = Tape(np)
    with recording(tape):
        out = ops.sum(a * a + a)
    ga, gb = tape.backward([(out, 1.0)], [a, b])
    np.testing.assert_array_equal(ga, [3.0, 5.0])
    assert gb is None


def test_arange_takes_step_without_stop_and_comparisons_give_plain_conditions() -> None:
    """Keras: arange(10, step=3) is [0, 3, 6, 9]; `x > 0` on a recorded tensor is a boolean array for where."""
    with xpnet.use_backend("numpy"):
        assert ops.arange(10, step=3).tolist() == [0, 3, 6, 9]
        assert ops.arange(2, 8, 2).tolist() == [2, 4, 6] and ops.arange(3).tolist() == [0, 1, 2]
    t = Tensor(np.array([-1.0, 0.0, 2.0]))
    with recording(Tape(np)):
        assert (t > 0).tolist() == [False, False, True] and (t >= 0).tolist() == [False, True, True]
        assert (t < 0).tolist() == [True, False, False] and (t <= 0).tolist() == [True, True, False]
        assert ops.greater(t, t).dtype == np.bool_


def test_ints_meeting_floats_take_keras_dtypes_so_float32_stays_float32() -> None:
    """Keras (not NumPy): int32 with float32 or a Python float gives float32; exp/log/mean/divide of ints float32."""
    f = np.ones((2, 3), np.float32)
    i = np.arange(6, dtype=np.int32).reshape(2, 3)
    with xpnet.use_backend("numpy"):
        for got in (
            ops.add(f, i),
            ops.multiply(i, 0.5),
            ops.divide(i, i + 1),
            ops.maximum(i, 1.5),
            ops.where(i > 2, i, f),
            ops.clip(i, 0.5, 2.5),
            ops.exp(i),
            ops.sqrt(i),
            ops.mean(i),
            ops.softmax(i),
        ):
            assert got.dtype == np.float32, got.dtype
        assert ops.add(i, i).dtype == np.int32 and ops.add(f, f.astype(np.float64)).dtype == np.float64
    t = Tensor(f)
    with recording(Tape(np)):
        assert (t * ops.arange(3)).dtype == np.float32


def test_take_gradient_of_a_large_table_needs_no_indices_by_rows_matrix() -> None:
    """An embedding-style lookup: 10⁶ indices into a 10⁶-row table. The one-hot VJP built an (indices × rows)
    matrix (here ~1 TB: MemoryError; for a 20000-word vocabulary and 32×100 tokens, 256 MB and 5 s per step);
    on NumPy the gradient is a scatter-add."""
    rng = np.random.default_rng(0)
    table = Tensor(rng.normal(size=(10**6, 1)))
    idx = rng.integers(0, 10**6, 10**6)
    tape = Tape(np)
    with recording(tape):
        out = ops.take(table, idx, axis=0)
    (g,) = tape.backward([(out, 1.0)], [table])
    np.testing.assert_array_equal(g[:, 0], np.bincount(idx, minlength=10**6))
