"""Each fused hot spot against the plain code it replaces, on every backend (CuPy on a GPU or the stand-in).

The fused paths cut the launches of a CuPy training step: the dropout keys derived inside the mask
kernel, Adam's bias correction inside its update kernel, the batch gather straight into its buffer,
an activation's backward with the bias gradient, relu inside max pooling. Bit-identical where the
arithmetic is the same; within rounding where only the summation order differs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import activations
from xpnet.backend import Ops
from xpnet.layers import Dense


@pytest.mark.parametrize(("step", "offset"), [(0, 0), (7, 1000), (2**32 - 1, 2**31 + 5)])
def test_dropout_step_is_bit_identical_to_keys_then_mask(ops: Ops, step: int, offset: int) -> None:
    x = ops.asarray(np.random.default_rng(0).standard_normal((33, 70)).astype(np.float32))
    counter = ops.asarray(np.asarray(step, dtype=np.uint32))
    off = ops.asarray(np.asarray(offset, dtype=np.uint32))
    base = 0x9E3779B9
    y1, m1 = ops.dropout_step(x, base, counter, 0.3, off)
    with np.errstate(over="ignore"):  # uint32 wrap-around is the hash (NumPy warns on 0-d values)
        y2, m2 = Ops.dropout_forward(ops, x, Ops.dropout_keys(ops, base, counter), 0.3, off)
    np.testing.assert_array_equal(ops.to_numpy(m1), ops.to_numpy(m2))
    np.testing.assert_array_equal(ops.to_numpy(y1), ops.to_numpy(y2))
    kept = float(np.mean(ops.to_numpy(m1) > 0))
    assert 0.6 < kept < 0.8


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adam_step_matches_the_correction_computed_apart(ops: Ops, dtype: str) -> None:
    rng = np.random.default_rng(1)
    host = [rng.standard_normal(257).astype(dtype) for _ in range(2)]
    runs = []
    for fused in (True, False):
        p, g = (ops.asarray(a.copy()) for a in host)
        m, v = ops.zeros(257, p.dtype), ops.zeros(257, p.dtype)
        lr = ops.asarray(np.asarray(0.01, np.float64))
        for t in (1, 2, 3, 50, 1000):
            tt = ops.asarray(np.asarray(float(t), np.float64))
            (ops.adam_step if fused else lambda *a: Ops.adam_step(ops, *a))(p, g, m, v, lr, tt, 0.9, 0.999, 1e-7)
        runs.append([ops.to_numpy(a) for a in (p, m, v)])
    tol = 1e-6 if dtype == "float32" else 1e-13  # the device's pow may differ from the host's by an ulp
    for a, b in zip(*runs, strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_take_rows_into_a_buffer_matches_plain_take(ops: Ops) -> None:
    rng = np.random.default_rng(2)
    a = ops.asarray(rng.standard_normal((50, 3, 4)).astype(np.float32))
    labels = ops.asarray(rng.integers(0, 10, 50).astype(np.int32))
    idx = ops.asarray(rng.permutation(50)[:17].astype(np.int64))
    buf, ybuf = ops.zeros((20, 3, 4), a.dtype), ops.zeros(20, labels.dtype)
    got = ops.take_rows(a, idx, out=buf[:17, ...])
    ops.take_rows(labels, idx, out=ybuf[:17])
    want = Ops.take_rows(ops, a, idx)
    np.testing.assert_array_equal(ops.to_numpy(got), ops.to_numpy(want))
    np.testing.assert_array_equal(ops.to_numpy(buf[:17, ...]), ops.to_numpy(want))
    np.testing.assert_array_equal(ops.to_numpy(ybuf[:17]), ops.to_numpy(Ops.take_rows(ops, labels, idx)))
    assert not ops.to_numpy(buf[17:, ...]).any()


@pytest.mark.parametrize("act_name", ["relu", "elu", "sigmoid", "tanh", "gelu"])
# 300 and 1000: past the serial kernel's 256 rows, blocks of 64 rows (the last one short) on CuPy
@pytest.mark.parametrize("rows", [1, 32, 300, 1000])
@pytest.mark.parametrize("mode", ["set", "sub"])
def test_activation_backward_with_bias_sum_matches_plain_code(ops: Ops, act_name: str, rows: int, mode: str) -> None:
    act = activations.get(act_name)
    rng = np.random.default_rng(3)
    u = ops.asarray(rng.standard_normal((rows, 37)).astype(np.float32))
    h = act.forward(ops.xp, u)
    dh = ops.asarray(rng.standard_normal((rows, 37)).astype(np.float32))
    b0 = rng.standard_normal(37).astype(np.float32)
    out1, out2 = ops.asarray(b0.copy()), ops.asarray(b0.copy())
    du1 = ops.activation_backward_sum(act, u, h, dh, out1, mode)
    du2 = Ops.activation_backward(ops, act, u, h, dh)
    if mode == "set":
        Ops.bias_grad(ops, du2, out2)
    else:
        Ops.bias_sub(ops, du2, out2)
    np.testing.assert_array_equal(ops.to_numpy(du1), ops.to_numpy(du2))
    # a serial or blockwise column sum against a tree reduction: equal to rounding, which grows with the rows
    tol = 1e-5 * max(1.0, rows / 100)
    np.testing.assert_allclose(ops.to_numpy(out1), ops.to_numpy(out2), rtol=tol, atol=tol)


@pytest.mark.parametrize("rows", [32, 1000])
def test_activation_backward_sum_keeps_nan_and_repeats_its_bits(ops: Ops, rows: int) -> None:
    relu = activations.get("relu")
    rng = np.random.default_rng(5)
    u_host = rng.standard_normal((rows, 9)).astype(np.float32)
    dh_host = rng.standard_normal((rows, 9)).astype(np.float32)
    u_host[rows - 1, 2] = np.nan  # an inactive NaN unit: its gradient is NaN · 0 as NumPy computes it
    dh_host[0, 5] = np.nan
    u, dh = ops.asarray(u_host), ops.asarray(dh_host)
    h = relu.forward(ops.xp, u)
    sums = []
    for _ in range(3):  # every call leaves the kernel's ticket words ready for the next
        out = ops.zeros(9, u.dtype)
        du = ops.to_numpy(ops.activation_backward_sum(relu, u, h, dh, out, "set"))
        sums.append(ops.to_numpy(out))
    want = Ops.activation_backward(ops, relu, u, h, dh)
    want_sum = ops.zeros(9, u.dtype)
    Ops.bias_grad(ops, want, want_sum)
    np.testing.assert_array_equal(du, ops.to_numpy(want))
    assert np.isnan(sums[0]).tolist() == [j == 5 for j in range(9)]
    np.testing.assert_allclose(sums[0], ops.to_numpy(want_sum), rtol=1e-5, atol=1e-5)  # NaN where NaN
    for s in sums[1:]:
        np.testing.assert_array_equal(s, sums[0])


@pytest.mark.parametrize(
    ("which", "ticket", "read"),
    [
        ("column_chunks", "atomicAdd(&tick[j]", "ps[(long long)q * k + j]"),
        ("sce_bias", "atomicAdd(ticket", "d[(size_t)r * k + j]"),
    ],
)
def test_a_ticket_kernels_last_thread_fences_before_it_reads_the_other_threads_writes(
    which: str, ticket: str, read: str
) -> None:
    # what the stand-in cannot show (its threads run one after another): under CUDA's memory model the
    # writers' fence before the ticket orders their writes only for a reader that fences after drawing the
    # last ticket (fence-fence synchronization); without it the last thread's loads may see stale sums
    from xpnet.backend import cuda_kernels

    src = cuda_kernels.column_chunks_source("du = dh;") if which == "column_chunks" else cuda_kernels.row_source("f32")
    drawn, fence = src.index(ticket), "__threadfence();"  # the statement, not the stand-in's #define
    assert src.index(fence) < drawn  # the writers publish before they draw
    assert drawn < src.find(fence, drawn) < src.index(read, drawn)  # and the last one fences before it reads


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [1, 32, 1000])  # 1000 × 10 scores: the kernel's ticket tail sums 10,000
def test_loss_with_the_output_bias_matches_bias_add_then_loss(ops: Ops, dtype: str, rows: int) -> None:
    from xpnet import losses

    loss, act = losses.get("sparse_categorical_crossentropy"), activations.get("softmax")
    rng = np.random.default_rng(6)
    u_host = (3 * rng.standard_normal((rows, 10))).astype(dtype)
    u_host[0, 4] = np.nan  # a NaN logit: its row's loss, probabilities and gradient are NaN, as u + b then sce
    b_host = rng.standard_normal(10).astype(dtype)
    y = ops.asarray(rng.integers(0, 10, rows).astype(np.int32))
    b = ops.asarray(b_host)
    scale = ops.asarray(np.asarray(0.01 / rows, dtype))
    u_plain, db_plain = ops.asarray(u_host.copy()), ops.zeros(10, b.dtype)
    # copies: NumPy's fused loss may hand back buffers the next call reuses
    want = [
        ops.to_numpy(a).copy()
        for a in (u_plain, *Ops.fused_loss_with_bias(ops, loss, act, y, u_plain, b, scale, db_plain))
    ]
    for _ in range(2):  # the ticket word is left ready for the next launch: the same bits again
        u, db = ops.asarray(u_host.copy()), ops.zeros(10, b.dtype)
        got = ops.fused_loss_with_bias(loss, act, y, u, b, scale, db)
        for a, w in zip((u, *got), want, strict=True):  # the same arithmetic per row
            np.testing.assert_array_equal(ops.to_numpy(a), w)
        # ∂L/∂b summed in row order against a tree reduction: equal to rounding, NaN where the plain sum is
        tol = 1e-6 if dtype == "float32" else 1e-14
        np.testing.assert_allclose(ops.to_numpy(db), ops.to_numpy(db_plain), rtol=tol, atol=tol)
        assert np.isnan(ops.to_numpy(db)).all()  # row 0's NaN reaches every column
    u = ops.asarray(u_host.copy())
    value = ops.fused_loss_with_bias(loss, act, y, u, b, scale)[0]  # evaluate's form: no gradient sum
    np.testing.assert_array_equal(ops.to_numpy(value), want[1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [1, 32, 1000])
def test_loss_with_the_bias_update_matches_the_sum_then_subtract(ops: Ops, dtype: str, rows: int) -> None:
    """Mode "sub" (plain SGD inside backprop): b −= Σ_rows du in the loss's launch, the bits of "set" into a
    buffer then `subtract_` (the sink's `put`, the step's path before), NaN columns staying NaN."""
    from xpnet import losses

    loss, act = losses.get("sparse_categorical_crossentropy"), activations.get("softmax")
    rng = np.random.default_rng(7)
    u_host = (3 * rng.standard_normal((rows, 10))).astype(dtype)
    b_host = rng.standard_normal(10).astype(dtype)
    b_host[3] = np.nan  # a NaN bias: its column's logits, and so every row's loss and gradient, are NaN
    y = ops.asarray(rng.integers(0, 10, rows).astype(np.int32))
    scale = ops.asarray(np.asarray(0.01 / rows, dtype))
    b_plain = ops.asarray(b_host.copy())
    db = ops.zeros(10, b_plain.dtype)
    u_plain = ops.asarray(u_host.copy())
    want = [ops.to_numpy(a).copy() for a in ops.fused_loss_with_bias(loss, act, y, u_plain, b_plain, scale, db)]
    ops.subtract_(b_plain, db)
    b = ops.asarray(b_host.copy())
    u = ops.asarray(u_host.copy())
    got = ops.fused_loss_with_bias(loss, act, y, u, b, scale, b, None, "sub")
    np.testing.assert_array_equal(ops.to_numpy(b), ops.to_numpy(b_plain))
    np.testing.assert_array_equal(ops.to_numpy(u), ops.to_numpy(u_plain))
    for a, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(ops.to_numpy(a), w)
    # without the NaN every bias moved by the (finite) gradient sum
    b_host[3] = 0.5
    b = ops.asarray(b_host.copy())
    ops.fused_loss_with_bias(loss, act, y, ops.asarray(u_host.copy()), b, scale, b, None, "sub")
    assert np.isfinite(ops.to_numpy(b)).all() and not np.array_equal(ops.to_numpy(b), b_host)
    with pytest.raises(ValueError, match="mode must be 'set' or 'sub', got 'add'"):
        Ops.fused_loss_with_bias(ops, loss, act, y, ops.asarray(u_host.copy()), b, scale, b, None, "add")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [1, 32, 1000])
def test_loss_moving_the_step_count_changes_nothing_else(ops: Ops, dtype: str, rows: int) -> None:
    """counter (the optimizer's device t, 0-d float64): t + 1 from the loss's launch (CuPy: its last row's
    thread), every other output the bits of the call without it; NaN rows change nothing of that."""
    from xpnet import losses

    loss, act = losses.get("sparse_categorical_crossentropy"), activations.get("softmax")
    rng = np.random.default_rng(9)
    u_host = (3 * rng.standard_normal((rows, 10))).astype(dtype)
    u_host[0, 2] = np.nan
    b_host = rng.standard_normal(10).astype(dtype)
    y = ops.asarray(rng.integers(0, 10, rows).astype(np.int32))
    scale = ops.asarray(np.asarray(0.01 / rows, dtype))
    outs = []
    for counted in (False, True):
        b, u = ops.asarray(b_host.copy()), ops.asarray(u_host.copy())
        t = ops.asarray(np.asarray(41.0, np.float64))
        totals: list = []
        running = [ops.asarray(np.asarray(v, dtype)) for v in (2.5, 3.0)]
        got = ops.fused_loss_with_bias(loss, act, y, u, b, scale, b, totals, "sub", running, t if counted else None)
        assert float(ops.to_numpy(t)) == (42.0 if counted else 41.0)
        outs.append([ops.to_numpy(a).copy() for a in (*got, b, u, *totals)])
        # every call moves it once more: the ticket word is left ready, the count read from memory each time
        if counted:
            ops.fused_loss_with_bias(loss, act, y, u, b, scale, None, None, "set", None, t)
            assert float(ops.to_numpy(t)) == 43.0
    for a, w in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, w)
    # the plain code (the base's order: the update, then t + 1) gives the same bits and the same count
    b, u, t = ops.asarray(b_host.copy()), ops.asarray(u_host.copy()), ops.asarray(np.asarray(7.0, np.float64))
    plain = Ops.fused_loss_with_bias(ops, loss, act, y, u, b, scale, b, None, "sub", None, t)
    assert float(ops.to_numpy(t)) == 8.0
    for a, w in zip([*plain, b, u], outs[0][:5], strict=True):
        np.testing.assert_array_equal(ops.to_numpy(a), w)
    # a count the kernel cannot read (not float64): the plain code runs, and moves it after the update
    t32 = ops.asarray(np.asarray(5.0, np.float32))
    ops.fused_loss_with_bias(
        loss, act, y, ops.asarray(u_host.copy()), ops.asarray(b_host.copy()), scale, None, None, "set", None, t32
    )
    assert float(ops.to_numpy(t32)) == 6.0


@pytest.mark.parametrize("rows", [32, 1000])
@pytest.mark.parametrize("act_name", ["softmax", "linear"])  # linear: from_logits, the hits counted on u
def test_loss_with_the_output_bias_counts_the_batch_loss_and_hits_as_the_plain_sums(
    ops: Ops, rows: int, act_name: str
) -> None:
    from xpnet import losses

    loss, act = losses.get("sparse_categorical_crossentropy"), activations.get(act_name)
    rng = np.random.default_rng(7)
    u_host = rng.standard_normal((rows, 10)).astype(np.float32)
    u_host[1, 6] = np.nan  # NumPy's argmax: the first NaN is the maximum (a hit where the label is 6)
    u_host[2, :] = 0.0  # ties: the first maximum
    y_host = rng.integers(0, 10, rows).astype(np.int32)
    y_host[1], y_host[2] = 6, 0
    y, b = ops.asarray(y_host), ops.asarray(np.zeros(10, np.float32))
    scale = ops.asarray(np.asarray(1.0 / rows, np.float32))
    for _ in range(2):  # the ticket word is left ready for the next launch
        totals: list = []
        _, _, out = ops.fused_loss_with_bias(loss, act, y, ops.asarray(u_host.copy()), b, scale, None, totals)
        if ops.name != "cupy":
            assert totals == []  # the plain sums run instead
            return
        hits = float(np.sum(np.argmax(ops.to_numpy(out), axis=-1) == y_host))
        assert float(ops.to_numpy(totals[1])) == hits and hits >= 1  # row 2's tie is a hit
        assert np.isnan(float(ops.to_numpy(totals[0])))  # row 1's loss is NaN, and so is the sum
        u2 = u_host.copy()
        u2[1, 6] = 0.0
        totals = []
        value = ops.fused_loss_with_bias(loss, act, y, ops.asarray(u2), b, scale, None, totals)[0]
        want = np.float32(0)
        for x in ops.to_numpy(value):  # in the rows' order, as the kernel
            want = np.float32(want + x)
        assert float(ops.to_numpy(totals[0])) == float(want)


@pytest.mark.parametrize("rows", [32, 1000])
def test_loss_with_the_output_bias_adds_the_running_sums_as_add_sums(ops: Ops, rows: int) -> None:
    """With the fit's running [Σ loss, count], the kernel's sums are running + batch: the bits of its batch sums
    then `metric_kernels.add_sums` (the fit loop's add, one launch fewer); NaN running sums stay NaN."""
    from xpnet import losses
    from xpnet.backend import metric_kernels

    loss, act = losses.get("sparse_categorical_crossentropy"), activations.get("softmax")
    rng = np.random.default_rng(8)
    u_host = (2 * rng.standard_normal((rows, 10))).astype(np.float32)
    y, b = (
        ops.asarray(rng.integers(0, 10, rows).astype(np.int32)),
        ops.asarray(rng.standard_normal(10).astype(np.float32)),
    )
    scale = ops.asarray(np.asarray(1.0 / rows, np.float32))
    for run_host in ([123.456, 17.0], [np.nan, 3.0]):
        running = [ops.asarray(np.asarray(v, np.float32)) for v in run_host]
        batch: list = []
        ops.fused_loss_with_bias(loss, act, y, ops.asarray(u_host.copy()), b, scale, None, batch)
        added: list = []
        ops.fused_loss_with_bias(loss, act, y, ops.asarray(u_host.copy()), b, scale, None, added, "set", running)
        if ops.name != "cupy":
            assert batch == added == []  # the plain sums and adds run instead
            return
        want = metric_kernels.add_sums(running, batch)
        assert want is not None
        np.testing.assert_array_equal([ops.to_numpy(a) for a in added], [ops.to_numpy(a) for a in want])
        np.testing.assert_array_equal([ops.to_numpy(a) for a in running], np.asarray(run_host, np.float32))
    # running sums the kernel cannot read (another dtype): nothing appended, the plain sums and adds run
    wrong = [ops.asarray(np.asarray(1.0, np.float64)), ops.asarray(np.asarray(1.0, np.float64))]
    none: list = []
    ops.fused_loss_with_bias(loss, act, y, ops.asarray(u_host.copy()), b, scale, None, none, "set", wrong)
    assert none == []


def test_fit_adds_the_running_sums_in_the_loss_kernel_as_the_plain_adds(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An eager fit (jit_compile=False) whose loss kernel adds the running sums logs what the plain adds give."""
    from xpnet.training.step import TrainStep

    step = TrainStep.__call__

    def plain(self: TrainStep, xb: Any, yb: Any, g: int, wb: Any = None, running: Any = None) -> list:
        return step(self, xb, yb, g, wb)  # the running sums withheld: the batch's sums, then `accumulate`

    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((100, 6)).astype(np.float32), rng.integers(0, 3, 100)

    def history() -> dict:
        layers = [Dense(8, activation="relu", input_shape=(6,)), Dense(3, activation="softmax")]
        model = xpnet.Sequential(layers, seed=0)
        model.compile(
            "sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend, jit_compile=False
        )
        return model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False).history

    folded = history()
    monkeypatch.setattr(TrainStep, "__call__", plain)
    assert history() == folded


def test_plan_has_the_loss_add_the_output_bias_only_where_the_backend_fuses_it(backend: str) -> None:
    model = xpnet.Sequential([Dense(8, activation="relu", input_shape=(4,)), Dense(3, activation="softmax")], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy", backend=backend)
    plan = model.plan
    fuses = model.ops.loss_adds_bias(model.compiled_losses[0], model.layers[-1].activation)
    assert plan.loss_bias == (fuses,) and fuses == (model.ops.name == "cupy")
    assert plan.train_forms[-1].forward == ("forward_product" if fuses else "forward_preactivation")
    assert ("output layer's bias" in plan.explain()) == fuses


def test_max_pool_relu_matches_pool_then_relu(ops: Ops) -> None:
    rng = np.random.default_rng(4)
    x = ops.asarray(rng.standard_normal((3, 7, 6, 4)).astype(np.float32))
    relu = activations.get("relu")
    for size, strides, pads in [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 2), (1, 1, 1, 1))]:
        y1, ctx1 = ops.max_pool_relu_forward(x, size, strides, pads, relu)
        y2, ctx2 = Ops.max_pool_relu_forward(ops, x, size, strides, pads, relu)
        np.testing.assert_array_equal(ops.to_numpy(y1), ops.to_numpy(y2))
        dy = ops.asarray(rng.standard_normal(tuple(y1.shape)).astype(np.float32))
        g1 = ops.max_pool_relu_backward(dy, ctx1, tuple(x.shape), size, strides, pads, relu)
        g2 = Ops.max_pool_relu_backward(ops, dy, ctx2, tuple(x.shape), size, strides, pads, relu)
        np.testing.assert_array_equal(ops.to_numpy(g1), ops.to_numpy(g2))


def test_sgd_factor_is_the_devices_own_rounding_and_follows_the_rate(backend: str) -> None:
    from xpnet.training.step import TrainStep

    model = xpnet.Sequential([Dense(3, input_shape=(4,))], seed=0)
    model.compile(xpnet.optimizers.SGD(0.07), "mse", backend=backend)
    ops = model.ops
    model.fit(np.ones((8, 4), np.float32), np.zeros((8, 3), np.float32), epochs=1, verbose=0)
    step = TrainStep(model, model.comm if hasattr(model, "comm") else _one_process())
    for rate, batch in [(0.07, 32), (0.07, 7), (0.3, 32)]:
        model.optimizer.learning_rate = rate
        coef, _ = step.factors(batch)
        plain = ops.cast(ops.asarray(np.asarray(rate, np.float64)) / batch, model.dtype)
        assert ops.to_numpy(coef).tobytes() == ops.to_numpy(plain).tobytes()
    assert step.factors(32)[0] is step.factors(32)[0]  # kept per batch size, not made per step


def _one_process() -> object:
    from xpnet.distributed import Communicator

    return Communicator()


def test_a_dense_subclass_overriding_backward_preactivation_still_gets_du(backend: str) -> None:
    # the fused activation-backward-with-bias-sum path must not skip a subclass's backward_preactivation
    seen: list[tuple[int, ...]] = []

    class ZeroGradDense(Dense):
        def backward_preactivation(self, du, need_input_grad=True):  # type: ignore[no-untyped-def]
            seen.append(tuple(du.shape))
            return super().backward_preactivation(du * 0.0, need_input_grad)

    model = xpnet.Sequential([ZeroGradDense(4, "relu", input_shape=(3,)), Dense(2)], seed=0)
    model.compile(xpnet.optimizers.SGD(0.1), "mse", backend=backend)
    before = model.layers[0].get_weights()
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal((8, 2)), epochs=1, verbose=0)
    assert seen == [(8, 4)]
    for a, b in zip(before, model.layers[0].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # its override zeroed ∂L/∂u: no update reached its weights


def test_sgd_factor_cache_leaves_a_subclass_gradient_scale_in_force(backend: str) -> None:
    # the per-batch-size η/batch cache stands for SGD's own gradient_scale (η) only: an override is kept
    class HalfSGD(xpnet.optimizers.SGD):
        def gradient_scale(self):  # type: ignore[no-untyped-def]
            return self.lr(dtype64=True) * 0.5

    weights = []
    for opt in (HalfSGD(0.2), xpnet.optimizers.SGD(0.1)):
        model = xpnet.Sequential([Dense(2, input_shape=(3,))], seed=0)
        model.compile(opt, "mse", backend=backend)
        x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("label_dtype", ["int64", "int32", "uint8", "float32"])
@pytest.mark.parametrize("serial_limit", [4096, 0])  # one thread walks the rows; a thread per row
def test_sparse_accuracy_count_is_the_plain_count_with_ties_and_nan(
    ops: Ops, dtype: str, label_dtype: str, serial_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xpnet.backend import metric_kernels
    from xpnet.metrics import SparseCategoricalAccuracy

    if label_dtype == "float32" and ops.name == "strict":
        pytest.skip("the array API promotes no integer with a float: float labels are a NumPy/CuPy liberty")
    monkeypatch.setattr(metric_kernels, "SERIAL_LIMIT", serial_limit)
    rng = np.random.default_rng(5)
    p = rng.integers(0, 3, (41, 7)).astype(dtype)  # small integers: many tied maxima
    p[3, 2] = p[4, 0] = p[5, 6] = np.nan  # a NaN is the maximum, the first NaN the argmax
    p[5, 1] = np.nan
    p[6, :] = -np.inf
    y = rng.integers(0, 7, 41).astype(label_dtype)
    y[3], y[4], y[5], y[6] = 2, 0, 1, 0
    xp = ops.xp
    want = np.count_nonzero(np.argmax(p, axis=-1) == y)
    got = SparseCategoricalAccuracy().update(xp, ops.asarray(y), ops.asarray(p))
    assert ops.to_numpy(got).dtype == np.dtype(dtype) and float(ops.to_numpy(got)) == want
    assert want >= 4  # the NaN and -inf rows are hits: the fused scan must find them
    fused = metric_kernels.sparse_hits(xp, ops.asarray(y), ops.asarray(p))
    assert (fused is not None) == (ops.name == "cupy")
    # a sequence model's (batch, time, classes) scores, and a shape the kernel leaves to the plain code
    p3, y3 = ops.asarray(p[:40].reshape(4, 10, 7)), ops.asarray(y[:40].reshape(4, 10))
    got3 = SparseCategoricalAccuracy().update(xp, y3, p3)
    assert float(ops.to_numpy(got3)) == np.count_nonzero(np.argmax(p[:40], axis=-1) == y[:40])
    assert metric_kernels.sparse_hits(xp, ops.asarray(y[:, None]), ops.asarray(p)) is None
    empty = SparseCategoricalAccuracy().update(xp, ops.asarray(y[:0]), ops.asarray(p[:0]))
    assert float(ops.to_numpy(empty)) == 0.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_subtract_counting_is_the_subtraction_and_one_more_step(ops: Ops, dtype: str) -> None:
    rng = np.random.default_rng(6)
    p0, g0 = (rng.standard_normal(301).astype(dtype) for _ in range(2))
    g0[5] = np.nan
    runs = []
    for fused in (True, False):
        p, g = ops.asarray(p0.copy()), ops.asarray(g0)
        t = ops.asarray(np.asarray(41.0, np.float64))
        for _ in range(3):
            (ops.subtract_counting if fused else lambda *a: Ops.subtract_counting(ops, *a))(p, g, t)
        runs.append((ops.to_numpy(p), float(ops.to_numpy(t))))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][0], p0 - g0 - g0 - g0)
    assert runs[0][1] == runs[1][1] == 44.0


def test_plain_sgd_counts_its_steps_on_the_device(backend: str) -> None:
    model = xpnet.Sequential([Dense(3, input_shape=(4,))], seed=0)
    model.compile(xpnet.optimizers.SGD(0.1), "mse", backend=backend)
    model.fit(np.ones((12, 4), np.float32), np.zeros((12, 3), np.float32), batch_size=4, epochs=2, verbose=0)
    opt = model.optimizer
    assert opt.iterations == 6 and float(model.ops.to_numpy(opt._t)) == 6.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("label_dtype", ["int64", "int32", "float32"])
@pytest.mark.parametrize("serial_limit", [4096, 41 * 7 - 1])  # one thread walks the rows; a thread per row
def test_loss_and_hits_is_the_ordered_loss_sum_and_the_plain_count(
    ops: Ops, dtype: str, label_dtype: str, serial_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xpnet.backend import metric_kernels

    # the 41 losses stay under the limit; with 286 the 41 × 7 scores take the per-row form
    monkeypatch.setattr(metric_kernels, "SERIAL_LIMIT", serial_limit)
    rng = np.random.default_rng(8)
    p = rng.integers(0, 3, (41, 7)).astype(dtype)  # ties
    p[3, 2] = p[5, 6] = np.nan
    y = rng.integers(0, 7, 41).astype(label_dtype)
    v = rng.standard_normal(41).astype(dtype)
    xp = ops.xp
    got = metric_kernels.loss_and_hits(xp, ops.asarray(v), ops.asarray(y), ops.asarray(p))
    assert (got is not None) == (ops.name == "cupy")
    if got is None:
        return
    for _ in range(2):  # the per-row form's ticket word is back at 0 after each launch
        loss, hits = (ops.to_numpy(a) for a in got)
        assert loss.dtype == hits.dtype == np.dtype(dtype)
        assert loss == np.cumsum(v)[-1]  # in row order, bit for bit
        assert hits == np.count_nonzero(np.argmax(p, axis=-1) == y)
        got = metric_kernels.loss_and_hits(xp, ops.asarray(v), ops.asarray(y), ops.asarray(p))
        assert got is not None
    v[7] = np.nan  # a NaN loss stays NaN, as the plain sum
    nan = metric_kernels.loss_and_hits(xp, ops.asarray(v), ops.asarray(y), ops.asarray(p))
    assert nan is not None and np.isnan(ops.to_numpy(nan[0]))
    assert metric_kernels.loss_and_hits(xp, ops.asarray(v[:0]), ops.asarray(y[:0]), ops.asarray(p[:0])) is None
    assert metric_kernels.loss_and_hits(xp, ops.asarray(v[:, None]), ops.asarray(y), ops.asarray(p)) is None


def test_training_sums_on_the_fused_kernel_match_the_plain_sums(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from xpnet.backend import metric_kernels

    rng = np.random.default_rng(9)
    x = rng.standard_normal((96, 5)).astype(np.float32)
    y = rng.integers(0, 3, 96)
    logs = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(metric_kernels, "loss_and_hits", lambda *a: None)
        model = xpnet.Sequential(
            [Dense(8, activation="relu", input_shape=(5,)), Dense(3, activation="softmax")], seed=0
        )
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
        h = model.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
        logs.append((h.history, model.get_weights()))
    for a, b in zip(logs[0][1], logs[1][1], strict=True):
        np.testing.assert_array_equal(a, b)  # the sums never feed back into training
    assert logs[0][0]["accuracy"] == logs[1][0]["accuracy"]
    np.testing.assert_allclose(logs[0][0]["loss"], logs[1][0]["loss"], rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_add_sums_is_the_plain_adds(ops: Ops, dtype: str) -> None:
    from xpnet.backend import metric_kernels

    running = [ops.asarray(np.asarray(v, dtype)) for v in (0.1, np.nan, 3.0)]
    batch = [ops.asarray(np.asarray(v, dtype)) for v in (0.7, 1.0, 2.0**-30)]
    got = metric_kernels.add_sums(running, batch)
    assert (got is not None) == (ops.name == "cupy")
    if got is None:
        return
    for g, r, b in zip(got, running, batch, strict=True):
        np.testing.assert_array_equal(ops.to_numpy(g), ops.to_numpy(r + b))  # NaN stays NaN
        assert g is not r and ops.to_numpy(g).dtype == np.dtype(dtype)
    vector = [ops.asarray(np.ones(2, dtype))]
    assert metric_kernels.add_sums(vector, vector) is None
    other = ops.asarray(np.asarray(1.0, "float64" if dtype == "float32" else "float32"))
    assert metric_kernels.add_sums([running[0]], [other]) is None
    assert metric_kernels.add_sums([np.float32(1.0)], [np.float32(2.0)]) is None


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "y_dtype"),
    [
        ((50, 4, 3), (50,), "int64"),
        ((50, 3), (50, 10), "float32"),
        ((50,), (50, 6), "int32"),
        ((50, 2), (50, 2), "int8"),
    ],
)
def test_take_rows_into_is_take_rows_of_each(
    ops: Ops, x_shape: tuple[int, ...], y_shape: tuple[int, ...], y_dtype: str
) -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal(x_shape).astype(np.float32)
    x[7] = np.nan
    y = rng.integers(0, 9, y_shape).astype(y_dtype)
    idx = ops.asarray(rng.permutation(50)[:17])
    outs = [ops.asarray(np.zeros((17, *a.shape[1:]), a.dtype)) for a in (x, y)]
    ops.take_rows_into([ops.asarray(x), ops.asarray(y)], idx, outs)
    for out, a in zip(outs, (x, y), strict=True):
        np.testing.assert_array_equal(ops.to_numpy(out), a[ops.to_numpy(idx)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [1, 257, 3000])
def test_adam_counting_is_the_count_then_the_step(ops: Ops, dtype: str, n: int) -> None:
    rng = np.random.default_rng(11)
    host = [rng.standard_normal(n).astype(dtype) for _ in range(2)]
    host[1][0] = np.nan  # a NaN gradient poisons its own weight only, as in the plain step
    runs = []
    for fused in (True, False):
        p, g = ops.asarray(host[0].copy()), ops.asarray(host[1])
        m, v = ops.asarray(np.zeros(n, dtype)), ops.asarray(np.zeros(n, dtype))
        lr = ops.asarray(np.asarray(0.01, np.float64))
        t = ops.asarray(np.asarray(4.0, np.float64))
        for _ in range(3):  # the last thread's ticket word is back at 0 after each launch
            if fused:
                ops.adam_counting(p, g, m, v, lr, t, 0.9, 0.999, 1e-7)
            else:
                Ops.adam_counting(ops, p, g, m, v, lr, t, 0.9, 0.999, 1e-7)
        runs.append([ops.to_numpy(a) for a in (p, m, v, t)])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(runs[0][3]) == 7.0 and np.isnan(runs[0][0][0]) and not np.isnan(runs[0][0][1:]).any()


@pytest.mark.parametrize("need_input_grad", [True, False])
@pytest.mark.parametrize("use_bias", [True, False])
def test_conv2d_backward_into_writes_the_plain_gradients(ops: Ops, need_input_grad: bool, use_bias: bool) -> None:
    rng = np.random.default_rng(12)
    x = ops.asarray(rng.standard_normal((3, 7, 6, 2)).astype(np.float32))
    kernel = ops.asarray(rng.standard_normal((3, 2, 2, 4)).astype(np.float32))
    geometry = ((2, 1), (1, 0, 1, 1))
    u, ctx = ops.conv2d_forward(x, kernel, None, *geometry, need_ctx=True)
    du_host = rng.standard_normal(tuple(u.shape)).astype(np.float32)
    du_host[1, 2, 3, 0] = np.nan
    du = ops.asarray(du_host)
    dk, db, dx = ops.conv2d_backward(du, ctx, kernel, tuple(x.shape), *geometry, need_input_grad)
    flat = ops.asarray(np.zeros(kernel.size + 4, np.float32))  # the layer's views of the gradient buffer
    views = (ops.xp.reshape(flat[: kernel.size], tuple(kernel.shape)), flat[kernel.size :] if use_bias else None)
    dx2 = ops.conv2d_backward_into(views, du, ctx, kernel, tuple(x.shape), *geometry, need_input_grad)
    np.testing.assert_array_equal(ops.to_numpy(views[0]), ops.to_numpy(dk))
    if use_bias:
        np.testing.assert_array_equal(ops.to_numpy(views[1]), ops.to_numpy(db))
    else:
        assert not ops.to_numpy(flat[kernel.size :]).any()
    assert (dx2 is None) == (not need_input_grad)
    if dx is not None and dx2 is not None:
        np.testing.assert_array_equal(ops.to_numpy(dx2), ops.to_numpy(dx))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("need_input_grad", [True, False])
def test_conv2d_with_the_bias_after_the_kernel_matches_the_plain_code(
    ops: Ops, dtype: str, need_input_grad: bool
) -> None:
    # a layer's kernel and bias as views of one flat buffer, bias right after kernel: CuPy adds the bias in
    # the GEMM through a column of ones in the patches, and gets ∂bias as that GEMM's last row
    rng = np.random.default_rng(14)
    x = ops.asarray(rng.standard_normal((3, 7, 6, 2)).astype(dtype))
    shape, f = (3, 2, 2, 4), 4
    host = rng.standard_normal(int(np.prod(shape)) + f).astype(dtype)
    host[-2] = np.nan  # filter 2's bias: its outputs and only those are NaN, as in u + b
    flat = ops.asarray(host)
    kernel, bias = ops.xp.reshape(flat[: host.size - f], shape), flat[host.size - f :]
    geometry = ((2, 1), (1, 0, 1, 1))
    u, ctx = ops.conv2d_forward(x, kernel, bias, *geometry, need_ctx=True)
    u_plain, ctx_plain = Ops.conv2d_forward(ops, x, kernel, bias, *geometry, need_ctx=True)
    if ops.name == "cupy":  # the patches carry the column of ones
        assert tuple(ctx.shape) == (*ctx_plain.shape[:3], ctx_plain.shape[3] + 1)
    tol = 1e-5 if dtype == "float32" else 1e-12  # the bias summed inside the GEMM: equal to rounding
    np.testing.assert_allclose(ops.to_numpy(u), ops.to_numpy(u_plain), rtol=tol, atol=tol)
    assert np.isnan(ops.to_numpy(u)[..., 2]).all() and not np.isnan(ops.to_numpy(u)[..., [0, 1, 3]]).any()
    du_host = rng.standard_normal(tuple(u.shape)).astype(dtype)
    du_host[1, 2, 3, 0] = np.nan
    du = ops.asarray(du_host)
    got = ops.conv2d_backward(du, ctx, kernel, tuple(x.shape), *geometry, need_input_grad)
    want = Ops.conv2d_backward(ops, du, ctx_plain, kernel, tuple(x.shape), *geometry, need_input_grad)
    assert (got[2] is None) == (want[2] is None) == (not need_input_grad)
    for a, b in zip(got, want, strict=True):
        if a is not None:
            np.testing.assert_allclose(ops.to_numpy(a), ops.to_numpy(b), rtol=tol, atol=tol)  # NaN where NaN
    grads = ops.zeros(host.size, x.dtype)  # the gradient buffer's views, as a layer has them
    views = (ops.xp.reshape(grads[: host.size - f], shape), grads[host.size - f :])
    dx = ops.conv2d_backward_into(views, du, ctx, kernel, tuple(x.shape), *geometry, need_input_grad)
    for a, b in zip((*views, dx), got, strict=True):
        if a is not None:
            np.testing.assert_array_equal(ops.to_numpy(a), ops.to_numpy(b))
    apart = (ops.zeros(shape, x.dtype), ops.zeros(f, x.dtype))  # not one buffer: the same numbers another way
    ops.conv2d_backward_into(apart, du, ctx, kernel, tuple(x.shape), *geometry, need_input_grad)
    for a, b in zip(apart, got[:2], strict=True):
        np.testing.assert_array_equal(ops.to_numpy(a), ops.to_numpy(b))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("step", "offset"), [(0, 0), (7, 1000), (2**32 - 1, 2**31 + 5)])
def test_dropout_counting_is_the_step_then_the_count(ops: Ops, dtype: str, step: int, offset: int) -> None:
    x_host = np.random.default_rng(13).standard_normal((33, 70)).astype(dtype)
    x_host[4, 5] = np.nan  # dropped or kept, NaN × mask as the plain product
    runs = []
    for fused in (True, False):
        x = ops.asarray(x_host)
        counter = ops.asarray(np.asarray(step, dtype=np.uint32))
        off = ops.asarray(np.asarray(offset, dtype=np.uint32))
        outs = []
        with np.errstate(over="ignore"):  # uint32 wrap-around of the count (NumPy warns on 0-d values)
            for _ in range(3):  # the ticket word is back at 0 after each launch; each call a new mask
                call = ops.dropout_counting if fused else lambda *a: Ops.dropout_counting(ops, *a)
                outs += [ops.to_numpy(a) for a in call(x, 0x9E3779B9, counter, 0.3, off)]
        runs.append((outs, int(ops.to_numpy(counter))))
    for a, b in zip(runs[0][0], runs[1][0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1] == (step + 3) % 2**32
    assert not np.array_equal(runs[0][0][1], runs[0][0][3])  # the count moved between calls


def test_ticket_words_are_one_per_device_and_stream(ops: Ops, monkeypatch: pytest.MonkeyPatch) -> None:
    # the legacy stream's ptr is 0 on every device: keyed by the stream alone, a model on cupy:1 drew its
    # tickets on a word of device 0 (an illegal address there, or counts shared across devices)
    from xpnet.backend import metric_kernels

    if ops.name != "cupy":
        pytest.skip("ticket words are CuPy's")
    xp = ops.xp
    monkeypatch.setattr(metric_kernels, "_ticket_words", {})
    first = metric_kernels.ticket_word(xp)
    assert metric_kernels.ticket_word(xp) is first and not ops.to_numpy(first).any()
    monkeypatch.setattr(xp.cuda.runtime, "getDevice", lambda: 1)
    assert metric_kernels.ticket_word(xp) is not first


@pytest.mark.parametrize("weighted", [False, True])
# SGD: ∂L/∂b to the in-place SGD sink through a scratch array; Adam: written by the kernel into the gradient
# buffer; frozen: the output layer has no gradient, and its bias must stay as it is
@pytest.mark.parametrize("setting", ["sgd", "adam", "frozen"])
def test_training_with_the_bias_in_the_loss_matches_the_numpy_backend(
    backend: str, weighted: bool, setting: str
) -> None:
    # sample weights scale the gradient rows after the loss kernel: ∂L/∂b is then summed from those rows
    rng = np.random.default_rng(8)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    w = rng.random(40).astype(np.float32) if weighted else None
    runs = []
    for name in (backend, "numpy"):
        model = xpnet.Sequential(
            [Dense(8, activation="relu", input_shape=(5,)), Dense(3, activation="softmax")], seed=0
        )
        model.layers[-1].trainable = setting != "frozen"
        opt = xpnet.optimizers.Adam(0.01) if setting == "adam" else xpnet.optimizers.SGD(0.1)
        model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend=name)
        bias = model.layers[-1].get_weights()[1]
        h = model.fit(x, y, batch_size=16, epochs=3, sample_weight=w, verbose=0, shuffle=False)
        assert model.plan.loss_bias == (model.ops.name == "cupy",)  # the path under test runs where it should
        assert np.array_equal(model.layers[-1].get_weights()[1], bias) == (setting == "frozen")
        runs.append((model.get_weights(), h.history))
    for a, b in zip(runs[0][0], runs[1][0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(runs[0][1][key], runs[1][1][key], rtol=1e-5)
