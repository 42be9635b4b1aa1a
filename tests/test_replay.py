"""The NumPy replay of a training step with convolutions and pooling (backend/fused_conv.py, training/replay.py):
each bound call gives the plain method's bits, a replayed LeNet step re-runs no Python layer code and
allocates nothing, and whole fits replay bit for bit as they run eagerly, with and without numba."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import numpy as np
import pytest
from test_program import _model  # the workloads, shared with the program's tests

import xpnet
from xpnet.backend import _jit, fused_conv
from xpnet.backend.numpy_ops import NumpyOps

JITS = [False, True]


def _ops(jit: bool) -> NumpyOps:
    if jit and _jit.kernels() is None:
        pytest.skip("numba is not installed")
    return NumpyOps(jit=jit)


def _conv_pool_step(ops: NumpyOps, x: Any, kernel: Any, bias: Any, pads: Any, dy: Any) -> list[Any]:
    """conv (stride 1) → relu(2×2 max pool), then back: [u, y, ∂x of the pool, ∂W, ∂b, ∂x] as copies."""
    u, ctx = ops.conv2d_forward(x, kernel, bias, (1, 1), pads, need_ctx=True)
    y, halves = ops.max_pool_relu_forward(u, (2, 2), (2, 2), (0, 0, 0, 0), "relu", True)
    du = ops.max_pool_relu_backward(dy, halves, u.shape, (2, 2), (2, 2), (0, 0, 0, 0), "relu")
    dk, db, dx = ops.conv2d_backward(du, ctx, kernel, x.shape, (1, 1), pads, True)
    return [np.array(a) for a in (u, y, du, dk, db, dx)]


@pytest.mark.parametrize("jit", JITS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("bias", "pads", "n"), [(True, (2, 2, 2, 2), 3), (False, (0, 0, 0, 0), 2)])
def test_bound_convolution_and_pooling_are_the_plain_methods(
    jit: bool, dtype: Any, bias: bool, pads: tuple[int, ...], n: int
) -> None:
    ops, rng = _ops(jit), np.random.default_rng(0)
    shapes = {"x": (n, 12, 12, 3), "kernel": (5, 5, 3, 4), "bias": (4,)}

    def draw() -> dict[str, Any]:
        return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}

    first = draw()
    b = first["bias"] if bias else None
    tape = xpnet.training.replay.Tape()
    with xpnet.training.listing.recording(ops, tape):
        u, ctx = ops.conv2d_forward(first["x"], first["kernel"], b, (1, 1), pads, need_ctx=True)
        y, halves = ops.max_pool_relu_forward(u, (2, 2), (2, 2), (0, 0, 0, 0), "relu", True)
    dy = rng.standard_normal(y.shape).astype(dtype)
    with xpnet.training.listing.recording(ops, tape):
        du = ops.max_pool_relu_backward(dy, halves, u.shape, (2, 2), (2, 2), (0, 0, 0, 0), "relu")
        dk, db, dx = ops.conv2d_backward(du, ctx, first["kernel"], first["x"].shape, (1, 1), pads, True)
    bound = [fused_conv.BINDERS[name](ops, args, kw, r) for name, _, args, kw, r in tape.calls]
    assert all(f is not None for f in bound), [c[0] for c in tape.calls]
    for _ in range(2):  # new values in the same arrays, twice: nothing of the first draw is left over
        fresh = draw()
        for k in ("x", "kernel", "bias"):
            first[k][...] = fresh[k]
        dy[...] = rng.standard_normal(dy.shape)
        want = _conv_pool_step(NumpyOps(jit=jit), *(first[k].copy() for k in ("x", "kernel")), b, pads, dy.copy())
        for f in bound:
            f()
        got = [u, y, du, dk, db if bias else None, dx]
        for g, w in zip(got, want, strict=True):
            if g is not None:
                np.testing.assert_array_equal(g, w)


def test_bound_subtract_is_plain_sgd() -> None:
    p, g = np.arange(5.0, dtype=np.float32), np.full(5, 0.25, np.float32)
    run = fused_conv.bind_subtract(NumpyOps(), (p, g), {}, None)
    assert run is not None
    run()
    run()
    np.testing.assert_array_equal(p, np.arange(5.0, dtype=np.float32) - 0.5)
    assert fused_conv.bind_subtract(NumpyOps(), (p, g), {"extra": 1}, None) is None


def _fit(kind: str, jit: bool | str, ops: NumpyOps, steps: int) -> tuple[Any, Any]:
    model, opt, shape = _model(kind, (64,))
    rng = np.random.default_rng(3)
    n = 8 * (steps // 2 - 1) + 3  # two epochs of batches of 8, each ending on a short batch
    x, y = rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend=ops, jit_compile=jit)
    return model, model.fit(x, y, batch_size=8, epochs=2, verbose=0)


@pytest.mark.parametrize("jit", JITS)
def test_lenet_replays_every_call_bound_and_bit_identical_to_eager(jit: bool) -> None:
    eager, h0 = _fit("lenet", False, _ops(jit), 60)
    replayed, h1 = _fit("lenet", True, _ops(jit), 60)
    program = replayed.step_program
    replay = program._replay
    assert replay is not None and replay.verified, program.explain()
    assert replay.rerun == [] and replay.bound == len(replay.calls) > 25, replay.rerun
    assert "0 re-run" in program.explain()
    assert program.replayed >= 2 * (30 - 5)
    assert h1.history == h0.history
    for a, b in zip(eager.get_weights(), replayed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# A leak of 16 B per step keeps 3,200 B over 200 steps; what is not a leak stays flat: the last step's
# 0-d sums and argmax results (a few hundred bytes, alive until the next step) and, on a loaded machine,
# up to ~1 KiB of blocks the interpreter's free lists hand over (544-952 B over 100 steps in loaded
# full-suite runs).
_STEPS, _GROWTH = 200, 1536


@pytest.mark.parametrize("jit", JITS)
def test_a_replayed_lenet_step_allocates_nothing(jit: bool) -> None:
    model, opt, shape = _model("lenet")
    rng = np.random.default_rng(0)
    x, y = rng.random((96, *shape), dtype=np.float32), rng.integers(0, 10, 96)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend=_ops(jit), jit_compile=True)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    program = model.step_program
    replay = program._replay
    assert replay is not None and replay.verified and replay.rerun == []
    running = program.run(replay.xb, replay.yb, 32, None, [])

    def measured(running: list[Any]) -> tuple[list[Any], int, int]:
        tracemalloc.start(64)  # deep tracebacks: a block is this loop's if its stack passes through this file
        try:
            running = program.run(replay.xb, replay.yb, 32, None, running)  # the first, outside the count
            start, _ = tracemalloc.get_traced_memory()
            before = _this_files_blocks()
            tracemalloc.reset_peak()
            for _ in range(_STEPS):
                running = program.run(replay.xb, replay.yb, 32, None, running)
            _, peak = tracemalloc.get_traced_memory()
            kept = sum(d.size_diff for d in _this_files_blocks().compare_to(before, "filename"))
        finally:
            tracemalloc.stop()
        return running, kept, peak - start

    # tracemalloc counts every thread's allocations: the growth counts only blocks allocated under this
    # test's frames (a thread an earlier test left running added 0.5-6 KiB to whole-process counts in CI);
    # the peak is the whole process's, so the least of three rounds is taken
    counts = []
    for _ in range(3):
        running, growth, peak = measured(running)
        counts.append((growth, peak))
    growth, peak = min(counts)
    assert growth <= _GROWTH, counts  # nothing kept from one step to the next
    # no array: NumPy's own iterator buffers (64 KiB where the NumPy pooling pairs rows of two strided
    # operands, 32 KiB for a broadcast add), the 0-d sums handed back and Python's frames
    assert peak <= (70 if not jit else 40) * 1024, counts
    eager = xpnet.training.step.TrainStep(model, model.comm)
    tracemalloc.start()
    eager(replay.xb, replay.yb, 32)
    _, eager_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert eager_peak > 20 * peak, (peak, eager_peak)


@pytest.mark.parametrize("kind", ["A", "B", "lenet"])
def test_train_on_batch_in_a_loop_replays_bit_identically_to_eager(kind: str) -> None:
    runs = []
    for jit in (False, True):
        model, opt, shape = _model(kind, (64,))
        model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy", jit_compile=jit)
        data = np.random.default_rng(1)
        x, y = data.random((8 * 24 + 5, *shape), dtype=np.float32), data.integers(0, 10, 8 * 24 + 5)
        logs = [model.train_on_batch(x[k : k + 8], y[k : k + 8]) for k in range(0, 8 * 12, 8)]
        logs.append(model.train_on_batch(x[-5:], y[-5:]))  # another shape: eager, then back to the list
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        logs += [model.train_on_batch(x[k : k + 8], y[k : k + 8]) for k in range(0, 8 * 12, 8)]
        runs.append((model, logs))
    (eager, logs0), (replayed, logs1) = runs
    assert logs1 == logs0
    # the first loop: the listing, the recording and the check run eagerly, 9 replay; fit the same on its
    # own buffers (21 of 24); the second loop records on train_on_batch's buffers again (10 of 12)
    assert replayed.step_program.replayed == 9 + 21 + 10, replayed.step_program.replayed
    assert eager.step_program.replayed == 0
    for a, b in zip(eager.get_weights(), replayed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["A", "B", "lenet", "functional_bn"])
def test_evaluate_and_predict_replay_a_recorded_forward_bit_identically(kind: str) -> None:
    from xpnet.training.forward_program import forward_program

    data = np.random.default_rng(9)
    got = {}
    for jit in (False, True):
        model, opt, shape = _model(kind, (64,))
        model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy", jit_compile=jit)
        x = data.random((32 * 3 + 8, *shape), dtype=np.float32) if jit is False else got[False][0]
        y = data.integers(0, 10, x.shape[0]) if jit is False else got[False][1]
        model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
        scores = [model.evaluate(x, y, batch_size=32, verbose=0) for _ in range(3)]
        outputs = [model.predict(x, batch_size=32, verbose=0) for _ in range(3)]
        got[jit] = (x, y, scores, outputs, model)
    _, _, scores, outputs, model = got[True]
    evaluate = forward_program(model, "evaluate", True)
    assert evaluate.replays and evaluate.replayed >= 4, evaluate.explain()  # 3 of 32 rows, 1 of 8: record, check
    assert scores == got[False][2]
    for a, b in zip(outputs, got[False][3], strict=True):
        np.testing.assert_array_equal(a, b)
    predict = forward_program(model, "predict", False)
    if kind == "lenet":  # A and B predict by the plan's transposed small-batch route, not the layer walk
        assert predict.replays and predict.replayed >= 4, predict.explain()
    assert forward_program(got[False][4], "evaluate", True).replayed == 0


def test_auto_runs_a_forward_batch_past_the_replay_limit_eagerly_and_true_replays_it() -> None:
    from xpnet.training.forward_program import forward_program
    from xpnet.training.program import REPLAY_MAX_MACS

    data = np.random.default_rng(4)
    x, y = data.random((512, 784), dtype=np.float32), data.integers(0, 10, 512)
    assert 256 * 266_200 > REPLAY_MAX_MACS > 32 * 266_200  # model A: 266,200 multiply-adds a row
    got = {}
    for jit in ("auto", True, False):
        model, opt, _ = _model("A")
        model.compile(opt, "sparse_categorical_crossentropy", backend="numpy", jit_compile=jit)
        scores, replayed = [], []
        for rows in (32, 256):
            for _ in range(3):
                scores.append(model.evaluate(x, y, batch_size=rows, verbose=0))
                replayed.append(forward_program(model, "evaluate", True).replayed)
        got[jit] = scores
        if jit == "auto":
            assert replayed[2] > 0 and replayed[3:] == [replayed[2]] * 3, replayed  # 256 rows: eager
            why = forward_program(model, "evaluate", True).explain()
            assert why == "eager for batches of 256 rows: past the replay's 5e+07 multiply-adds"
        elif jit is True:
            assert replayed[3:] == [replayed[2], replayed[2] + 2, replayed[2] + 4], replayed  # record, check, run
    assert got["auto"] == got[True] == got[False]


def test_after_a_replayed_step_the_dropout_layer_shows_that_steps_mask() -> None:
    masks = []
    for jit in (False, True):
        model, opt, _ = _model("B", (64,))
        model.compile(opt, "sparse_categorical_crossentropy", backend="numpy", jit_compile=jit)
        data = np.random.default_rng(2)
        model.fit(data.random((80, 64), dtype=np.float32), data.integers(0, 10, 80), batch_size=8, verbose=0)
        masks.append(np.array(model.layers[1].mask))
        assert model.step_program.replayed == (10 - 3 if jit else 0)
    np.testing.assert_array_equal(masks[1], masks[0])


@pytest.mark.parametrize("jit", JITS)
@pytest.mark.parametrize(("block_bytes", "bias"), [(640 << 10, True), (30_000, True), (30_000, False)])
def test_bound_inference_convolution_and_pooling_are_the_plain_methods(jit: bool, block_bytes: int, bias: bool) -> None:
    # inference copies the patches block by block (30,000 bytes: 2 of the 5 images a block, the last one short)
    ops, rng = _ops(jit), np.random.default_rng(1)
    ops.conv_block_bytes = block_bytes
    x, kernel = rng.standard_normal((5, 10, 10, 3)).astype(np.float32), rng.standard_normal((3, 3, 3, 4))
    kernel, b = kernel.astype(np.float32), rng.standard_normal(4).astype(np.float32) if bias else None
    pads = (1, 1, 1, 1)
    tape = xpnet.training.replay.Tape()
    with xpnet.training.listing.recording(ops, tape):
        u, _ = ops.conv2d_forward(x, kernel, b, (1, 1), pads, False)
        y, _ = ops.max_pool_relu_forward(u, (2, 2), (2, 2), (0, 0, 0, 0), "relu", False)
    bound = [fused_conv.BINDERS[name](ops, args, kw, r) for name, _, args, kw, r in tape.calls]
    assert all(f is not None for f in bound), [c[0] for c in tape.calls]
    x[...] = rng.standard_normal(x.shape)
    kernel[...] = rng.standard_normal(kernel.shape)
    plain = NumpyOps(jit=jit)
    plain.conv_block_bytes = block_bytes
    want_u, _ = plain.conv2d_forward(x.copy(), kernel.copy(), b, (1, 1), pads, False)
    want_y, _ = plain.max_pool_relu_forward(want_u, (2, 2), (2, 2), (0, 0, 0, 0), "relu", False)
    for f in bound:
        f()
    np.testing.assert_array_equal(u, want_u)
    np.testing.assert_array_equal(y, want_y)


def test_auto_keeps_a_forward_pass_eager_where_calls_would_only_be_re_run() -> None:
    from xpnet.training.forward_program import forward_program

    x = np.random.default_rng(0).random((96, 64), dtype=np.float32)
    model, _, _ = _model("activations_rmsprop", (64,))  # tanh and sigmoid: no binder, re-run and copied
    model.build(backend="numpy")
    want = [model.predict(x, batch_size=32) for _ in range(3)]
    program = forward_program(model, "predict", False)
    assert program.replayed == 0 and "of its calls would be re-run (dense_forward)" in program.explain()
    np.testing.assert_array_equal(want[2], want[0])
    lenet, _, shape = _model("lenet")
    lenet.build(backend="numpy")
    images = np.random.default_rng(1).random((96, *shape), dtype=np.float32)
    outs = [lenet.predict(images, batch_size=32) for _ in range(2)]
    # the first pass records, checks, then replays its third batch; the second pass replays all three
    assert forward_program(lenet, "predict", False).replayed == 1 + 3
    np.testing.assert_array_equal(outs[1], outs[0])


def test_a_recording_in_one_thread_neither_records_nor_outlives_another_threads_calls() -> None:
    """NumpyOps is one object shared by every NumPy model: a step recorded in one thread (the replay's
    tape, the listing) must not record a step another thread runs meanwhile, nor, when two recordings
    overlap, leave a finished recording's wrappers installed on the backend for good."""
    import threading

    from xpnet.backend import get_backend

    ops = get_backend("numpy")
    xp = ops.xp
    tapes = [xpnet.training.replay.Tape(), xpnet.training.replay.Tape()]
    a_in, b_started, a_may_leave, b_in = (threading.Event() for _ in range(4))

    def first() -> None:
        with xpnet.training.listing.recording(ops, tapes[0]):
            ops.xp.add(np.ones(2), np.ones(2))
            a_in.set()
            b_started.wait(5)
            ops.xp.multiply(np.ones(2), 2.0)  # another thread's calls meanwhile: not in this tape
            assert a_may_leave.wait(5)

    def second() -> None:
        b_started.set()
        with xpnet.training.listing.recording(ops, tapes[1]):
            b_in.set()
            ops.xp.subtract(np.ones(2), 1.0)

    a = threading.Thread(target=first)
    a.start()
    assert a_in.wait(5)
    b = threading.Thread(target=second)
    b.start()
    assert b_started.wait(5)
    ops.xp.negative(np.ones(2))  # this thread's call while the first records
    b_in.wait(0.3)  # the second recording may begin while the first runs, or wait for it
    a_may_leave.set()
    a.join(5)
    b.join(5)
    assert [c[0] for c in tapes[0].calls] == ["add", "multiply"]
    assert [c[0] for c in tapes[1].calls] == ["subtract"]
    assert ops.xp is xp  # no recording's namespace left behind
    assert not any(n in ops.__dict__ for n in ("dense_forward", "relu", "adam_step"))


def test_train_on_batch_with_many_batch_sizes_holds_the_buffers_of_one() -> None:
    """train_on_batch replays through fixed buffers of the program's own; a loop whose batches change size
    (ragged data, a custom loop's last batch) must not keep a copy of every size it ever saw."""
    model = xpnet.Sequential([xpnet.Dense(32, "relu", input_shape=(784,)), xpnet.Dense(10, "softmax")], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")  # jit_compile="auto": replays
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((120, 784)).astype(np.float32), rng.integers(0, 10, 120)
    for _ in range(4):  # one size, several calls: the replay runs
        model.train_on_batch(x[:16], y[:16])
    assert model.step_program.replayed >= 1
    tracemalloc.start()
    try:
        for n in range(1, 121):
            model.train_on_batch(x[:n], y[:n])
        gc.collect()  # the lists dropped on the way hold reference cycles
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one pair of 120-row buffers is 0.4 MB; a pair for every size seen would be 23 MB
    assert held < 3_000_000, held
    for _ in range(4):  # and a loop of one size still replays
        model.train_on_batch(x[:16], y[:16])
    assert model.step_program.replayed >= 2


def test_a_predict_in_another_thread_does_not_overwrite_a_replayed_batch_before_it_is_copied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Several predicts may run at once on one model (training/guard.py). A replayed batch's outputs are
    the list's own buffers: a second thread that replays the same list between the first thread's run
    and its copy of those buffers must not hand it the second thread's batch."""
    import threading

    from xpnet.training.forward_program import ForwardProgram

    model, _, shape = _model("lenet")
    model.build(backend="numpy")
    rng = np.random.default_rng(4)
    xa, xb = rng.random((32, *shape), dtype=np.float32), rng.random((32, *shape), dtype=np.float32)
    for _ in range(3):  # recorded, checked, replayed
        model.predict(xa, batch_size=32)
    want_a, want_b = model.predict(xa, batch_size=32), model.predict(xb, batch_size=32)
    paused, b_done = threading.Event(), threading.Event()
    plain = ForwardProgram._replayed
    first = threading.get_ident()

    def replayed(self: Any, fn: Any, inputs: Any) -> Any:
        got = plain(self, fn, inputs)
        if threading.get_ident() == first and not paused.is_set():  # the interpreter switches threads here
            paused.set()
            b_done.wait(5)
        return got

    monkeypatch.setattr(ForwardProgram, "_replayed", replayed)
    got_b: list[Any] = []

    def second() -> None:
        assert paused.wait(5)
        got_b.append(model.predict(xb, batch_size=32))
        b_done.set()

    b = threading.Thread(target=second)
    b.start()
    got_a = model.predict(xa, batch_size=32)
    b.join(5)
    np.testing.assert_array_equal(got_b[0], want_b)
    np.testing.assert_array_equal(got_a, want_a)


def _this_files_blocks() -> tracemalloc.Snapshot:
    """The live blocks whose allocating stack passes through this file (this thread's test code)."""
    mine = tracemalloc.Filter(True, __file__, all_frames=True)
    snapshots = tracemalloc.Filter(False, tracemalloc.__file__, all_frames=True)  # the snapshots themselves
    return tracemalloc.take_snapshot().filter_traces([mine, snapshots])
