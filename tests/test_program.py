"""The step program: `compile(jit_compile=...)`, its decision and explanation, and on CuPy the
training step captured as a CUDA graph, replayed bit for bit as the eager step computes it.

The CuPy tests run on a GPU or on the CPU stand-in (`-p gpusim.pytest_plugin`); without either
they skip. On the stand-in, the capture's cuBLAS calls go through CuPy's low-level wrappers,
which it lets record (as the direct libcublas binding does on a GPU) when IN_CAPTURE is set.
"""

from __future__ import annotations

import gc
import itertools
import sys
import warnings
import weakref
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet.backend import Ops, _cublas, _cupy_problem
from xpnet.layers import Activation, BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D


def _model(kind: str, features: tuple[int, ...] = (784,)) -> tuple[Any, Any, tuple[int, ...]]:
    """(model, optimizer, input shape) of the issue's workloads, small where the test needs only the structure;
    `features`: the input shape of the dense workloads."""
    if kind == "A":
        layers = [Dense(300, "relu", input_shape=features), Dense(100, "relu"), Dense(10, "softmax")]
        return xpnet.Sequential(layers, seed=1), xpnet.optimizers.SGD(0.01), features
    if kind == "B":
        layers = [Dense(128, "relu", input_shape=features), Dropout(0.2), Dense(10, "softmax")]
        return xpnet.Sequential(layers, seed=1), "adam", features
    if kind == "lenet":
        layers = [
            Conv2D(6, 5, activation="relu", padding="same", input_shape=(28, 28, 1)),
            MaxPooling2D(2),
            Conv2D(16, 5, activation="relu"),
            MaxPooling2D(2),
            Flatten(),
            Dense(120, "relu"),
            Dense(84, "relu"),
            Dense(10, "softmax"),
        ]
        return xpnet.Sequential(layers, seed=1), xpnet.optimizers.SGD(0.05), (28, 28, 1)
    if kind == "frozen_bn":  # statistics given, not learned: BatchNormalization's inference branch in training
        layers = [Dense(32, input_shape=features), BatchNormalization(trainable=False), Activation("relu")]
        layers.append(Dense(10, "softmax"))
        return xpnet.Sequential(layers, seed=1), xpnet.optimizers.SGD(0.05), features
    if kind == "B_float64":
        layers = [Dense(128, "relu", input_shape=features), Dropout(0.2), Dense(10, "softmax")]
        return xpnet.Sequential(layers, seed=1, dtype="float64"), "adam", features
    if kind in ("activations_rmsprop", "activations_momentum"):
        layers = [Dense(64, "tanh", input_shape=features), Dense(32, "sigmoid"), Dense(16), Activation("relu")]
        layers.append(Dense(10, "softmax"))
        opt = "rmsprop" if kind == "activations_rmsprop" else xpnet.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
        return xpnet.Sequential(layers, seed=1), opt, features
    # a functional model with BatchNormalization, Dropout and one Dense layer called twice
    i = xpnet.Input(features)
    h = Activation("relu")(BatchNormalization()(Dense(32)(i)))
    shared = Dense(32, "relu")
    a = shared(h)
    b = shared(Dropout(0.3)(a))
    return xpnet.Model(i, Dense(10, "softmax")(xpnet.layers.Add()([a, b])), seed=1), "adam", features


def test_jit_compile_takes_auto_true_or_false_only() -> None:
    model, opt, _ = _model("A")
    with pytest.raises(ValueError, match=r"jit_compile must be \"auto\", True or False, received 'yes'"):
        model.compile(opt, "sparse_categorical_crossentropy", jit_compile="yes")


def test_numpy_runs_the_step_eagerly_and_says_why() -> None:
    # jit_compile=False, and "auto" (the default) where a step is too large for the replay to pay
    model, opt, _ = _model("A")
    model.compile(opt, "sparse_categorical_crossentropy", backend="numpy", jit_compile=False)
    assert model.step_program.explain() == "jit_compile=False: every step runs eagerly"
    assert repr(model.step_program) == "StepProgram(eager, graphs=0)"
    rng = np.random.default_rng(0)
    model.fit(rng.random((96, 784), dtype=np.float32), rng.integers(0, 10, 96), batch_size=32, verbose=0)
    assert model.step_program.replayed == 0
    model.compile(opt, "sparse_categorical_crossentropy", backend="numpy")
    model.fit(rng.random((2000, 784), dtype=np.float32), rng.integers(0, 10, 2000), batch_size=1000, verbose=0)
    assert model.step_program.replayed == 0
    assert "steps of 1000 rows (2.7e+08 multiply-adds) run eagerly" in model.step_program.explain()


def test_auto_replays_a_small_numpy_step_and_runs_a_large_one_eagerly_saying_why() -> None:
    model, opt, _ = _model("A")
    model.compile(opt, "sparse_categorical_crossentropy", backend="numpy")
    program = model.step_program
    assert not program.captures and program.replays
    assert (
        program.explain().startswith("replayed: ") and 'with jit_compile="auto" steps of more than' in program.explain()
    )
    assert "replayed: recorded once" in model.plan.capture_reason and "small enough" in model.plan.capture_reason
    assert repr(program) == "StepProgram(replayed, graphs=0)"
    rng = np.random.default_rng(0)
    x, y = rng.random((320, 784), dtype=np.float32), rng.integers(0, 10, 320)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert program.replayed == 10 - 3  # the listing, the recording and the check ran eagerly
    # B at batch 1000: 1e8 multiply-adds a step, the GEMMs dominate, "auto" keeps it eager
    big, opt, _ = _model("B")
    big.compile(opt, "sparse_categorical_crossentropy", backend="numpy")
    x, y = rng.random((3000, 784), dtype=np.float32), rng.integers(0, 10, 3000)
    big.fit(x, y, batch_size=1000, epochs=1, verbose=0)
    assert big.step_program.replayed == 0
    assert "this fit's steps of 1000 rows (1.0e+08 multiply-adds) run eagerly" in big.step_program.explain()
    big.compile(opt, "sparse_categorical_crossentropy", backend="numpy", jit_compile=True)  # asked for: replayed
    big.fit(np.concatenate([x, x[:2000]]), np.concatenate([y, y[:2000]]), batch_size=1000, epochs=1, verbose=0)
    assert big.step_program.replayed == 5 - 3
    model.compile(opt, "sparse_categorical_crossentropy", backend="numpy", jit_compile=False)
    assert model.step_program.explain() == "jit_compile=False: every step runs eagerly"


def test_jit_compile_true_refuses_a_step_it_cannot_replay() -> None:
    model = xpnet.Sequential([Dense(10, "softmax", kernel_regularizer="l2", input_shape=(4,))], seed=1)
    with pytest.raises(
        ValueError, match=r"compile\(jit_compile=True\): the training step cannot be recorded and replayed: weight pen"
    ):
        model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy", jit_compile=True)


def _fit_numpy(kind: str, jit: bool, steps: int, batch: int = 8, **fit: Any) -> tuple[Any, Any]:
    """`steps` steps of `batch` rows over 4 epochs, each ending on a short batch; small inputs."""
    model, opt, shape = _model(kind, (64,))
    rng = np.random.default_rng(3)
    per_epoch = steps // 4
    n = batch * (per_epoch - 1) + 3
    x = rng.random((n, *shape), dtype=np.float32)
    y = rng.integers(0, 10, n)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy", jit_compile=jit)
    return model, model.fit(x, y, batch_size=batch, epochs=4, verbose=0, **fit)


# steps of batch 8 per workload: the 200 for its five, 100 for the rest
_REPLAY_STEPS = {"A": 200, "B": 200, "lenet": 200, "functional_bn": 200, "B_float64": 200, "frozen_bn": 100}
_REPLAY_STEPS |= {"activations_rmsprop": 100, "activations_momentum": 100}


@pytest.mark.parametrize("kind", list(_REPLAY_STEPS))
def test_numpy_replay_is_bit_identical_to_eager(kind: str) -> None:
    steps = _REPLAY_STEPS[kind]
    eager, h_eager = _fit_numpy(kind, False, steps)
    replayed, h_replayed = _fit_numpy(kind, True, steps)
    program = replayed.step_program
    assert program.replays, program.explain()
    assert "rows: " in program.explain() and " calls, " in program.explain()
    # per epoch: the listing, the recording and the check run eagerly, so does the short last batch
    assert program.replayed >= 4 * (steps // 4 - 5), program.replayed
    assert h_replayed.history == h_eager.history
    for a, b in zip(eager.get_weights(), replayed.get_weights(), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert replayed.optimizer.iterations == eager.optimizer.iterations


def test_numpy_replay_records_anew_when_a_callback_changes_the_rate() -> None:
    class Halve(xpnet.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch == 20:
                self.model.optimizer.learning_rate = self.model.optimizer.learning_rate / 2

    eager, _ = _fit_numpy("B", False, 120, callbacks=[Halve()])
    replayed, _ = _fit_numpy("B", True, 120, callbacks=[Halve()])
    assert replayed.step_program.replays and replayed.step_program.replayed > 60
    for a, b in zip(eager.get_weights(), replayed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_numpy_replay_resumes_from_a_checkpoint_mid_program_bit_identically(tmp_path: Any) -> None:
    from xpnet.callbacks import Callback
    from xpnet.training.checkpoint import Checkpoint

    class Crash(Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if self.model.optimizer.iterations == 57:
                raise KeyboardInterrupt

    ref, h_ref = _fit_numpy("B", False, 100)
    with pytest.raises(KeyboardInterrupt):  # 25 steps an epoch: the last checkpoint at step 55, mid-epoch
        _fit_numpy("B", True, 100, callbacks=[Checkpoint(tmp_path, save_freq=5), Crash()])
    resumed, h_resumed = _fit_numpy("B", True, 100, resume_from=tmp_path)
    assert resumed.step_program.replayed > 20
    for a, b in zip(ref.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h_resumed.history == h_ref.history


@pytest.mark.parametrize("kind", ["A", "B"])
def test_a_replayed_numpy_step_allocates_nothing_that_lasts(kind: str) -> None:
    import tracemalloc

    model, opt, _ = _model(kind)
    rng = np.random.default_rng(0)
    x, y = rng.random((320, 784), dtype=np.float32), rng.integers(0, 10, 320)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy", jit_compile=True)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    program = model.step_program
    replay = program._replay
    assert replay is not None and replay.verified

    def steps(n: int, running: list[Any]) -> tuple[list[Any], int, int]:
        tracemalloc.start()
        try:
            running = program.run(replay.xb, replay.yb, 32, None, running)  # the first, outside the count
            start, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            for _ in range(n):
                running = program.run(replay.xb, replay.yb, 32, None, running)
            end, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return running, end - start, peak - start

    # the least growth of three rounds of 200 steps: tracemalloc counts every thread, and another thread's
    # blocks (or a loaded machine's free-list churn, up to ~1 KiB) land in one round, not in all three;
    # a leak of 16 B per step keeps 3,200 B in every round
    rounds, running = [], []
    for _ in range(3):
        running, growth, peak = steps(200, running)
        rounds.append((growth, peak))
    growth, peak = min(rounds)
    eager = xpnet.training.step.TrainStep(model, model.comm)
    tracemalloc.start()
    eager(replay.xb, replay.yb, 32)
    _, eager_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert growth <= 1536, rounds  # nothing kept from one step to the next
    # the transient peak: NumPy's own 32 KiB ufunc buffer (a broadcast bias add, a bool mask's cast), no array
    assert peak <= 40 * 1024, (peak, eager_peak)
    assert eager_peak > 4 * peak, (peak, eager_peak)
    assert program.replayed >= 600


def test_step_program_needs_a_compiled_built_model() -> None:
    model = xpnet.Sequential([Dense(3)], seed=1)
    with pytest.raises(RuntimeError, match="step_program: compile and build the model first"):
        _ = model.step_program


def _stand_in_or_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _cupy_problem(0)
    if problem:
        pytest.skip(f"cupy backend unavailable: {problem.split(' (')[0]}")
    gpusim = sys.modules.get("gpusim")
    if gpusim is not None:
        import gpusim.cublas as emulated

        # the stand-in's low-level cuBLAS records into the graph as the direct libcublas binding would
        monkeypatch.setattr(emulated, "IN_CAPTURE", True)
        # its GEMMs are NumPy's BLAS, whose sums follow the thread count the policy picks from the
        # machine's load at each fit: one thread, so two fits compare bit for bit
        monkeypatch.setenv("XPNET_BLAS_THREADS", "1")


def _train(kind: str, jit: bool | str, steps: int, callbacks: list[Any] | None = None) -> tuple[Any, Any]:
    model, opt, shape = _model(kind)
    rng = np.random.default_rng(7)
    n = 32 * steps // 2 + 8  # two epochs of `steps // 2` full batches and a short last one
    x = rng.random((n, *shape), dtype=np.float32)
    y = rng.integers(0, 10, n)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=jit)
    route = _cublas.routed(xpnet.get_backend("cupy"))
    with route:  # the eager run multiplies through the same cuBLAS binding as the graph
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=callbacks)
    return model, history


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("kind", "steps"),
    [
        ("A", 200),
        ("B", 200),
        pytest.param("lenet", 200, marks=pytest.mark.slow),  # ~4 minutes of C-run kernels on the stand-in
        ("functional_bn", 200),
        ("B_float64", 20),
        ("frozen_bn", 20),
        ("activations_rmsprop", 20),
        ("activations_momentum", 20),
    ],
)
def test_captured_training_is_bit_identical_to_eager(kind: str, steps: int, monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_or_gpu(monkeypatch)
    eager, h_eager = _train(kind, False, steps)
    captured, h_captured = _train(kind, True, steps)
    program = captured.step_program
    assert program.captures and not eager.step_program.captures
    if kind == "A":  # plain SGD: folded into each weight-gradient GEMM (β = 1), eagerly too
        assert type(program.step.sink).__name__ == type(eager.step_program.step.sink).__name__ == "InPlaceSGD"
    if kind == "lenet":  # a conv layer's update inside backprop would be launches of its own
        assert type(program.step.sink).__name__ == "GradientSink"
    # epoch 1: a warm-up step eager, the other full batches launched, the short batch eager (its warm-up);
    # epoch 2 launches every batch (the short one captured in a graph of its own)
    assert program.launches == (steps // 2 - 1) + (steps // 2 + 1)
    assert program.explain().endswith("(graphs for 32 rows, 8 rows)")
    for a, b in zip(eager.get_weights(), captured.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h_eager.history == h_captured.history
    assert captured.get_weights()[0].dtype == (np.float64 if kind.endswith("float64") else np.float32)
    assert eager.optimizer.iterations == captured.optimizer.iterations == 2 * (steps // 2 + 1)
    for d_e, d_c in zip(eager.layers, captured.layers, strict=True):
        if isinstance(d_e, Dropout):
            assert d_e.iterations == d_c.iterations == 2 * (steps // 2 + 1)


@pytest.mark.gpu
def test_a_new_learning_rate_from_a_callback_reaches_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_or_gpu(monkeypatch)

    def halve() -> Any:
        class Halve(xpnet.Callback):
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                # before the step that is captured (batch 1), and after
                if batch in (0, 5):
                    self.model.optimizer.learning_rate = self.model.optimizer.learning_rate * 0.5

        return Halve()

    eager, _ = _train("A", False, 20, [halve()])
    captured, _ = _train("A", True, 20, [halve()])
    unchanged, _ = _train("A", True, 20)
    for a, b in zip(eager.get_weights(), captured.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(captured.get_weights()[0], unchanged.get_weights()[0])
    assert captured.step_program.launches == unchanged.step_program.launches  # no new capture for a new rate


@pytest.mark.gpu
def test_a_hyperparameter_the_graph_holds_makes_it_record_again(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_or_gpu(monkeypatch)

    def calmer() -> Any:
        class Calmer(xpnet.Callback):
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                if batch == 4:
                    self.model.optimizer.beta_1 = 0.5

        return Calmer()

    eager, _ = _train("B", False, 20, [calmer()])
    captured, _ = _train("B", True, 20, [calmer()])
    for a, b in zip(eager.get_weights(), captured.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # one launch fewer than without the change: step 5 is a new warm-up, step 6 is captured again
    assert captured.step_program.launches == 20 - 1


@pytest.mark.gpu
def test_a_replayed_step_is_one_graph_launch_and_one_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_or_gpu(monkeypatch)
    gpusim = pytest.importorskip("gpusim", reason="launch counts need the CPU stand-in")
    marks: list[tuple[int, int, int, int]] = []
    counts: list[Any] = []

    class Mark(xpnet.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            c = counts[0]
            marks.append((c.total_launches, c.graph_launches, c.syncs, c.uploads))

    with gpusim.counting(keep_events=False) as c:
        counts.append(c)
        _train("B", True, 12, [Mark()])
    steady = [(b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3]) for a, b in itertools.pairwise(marks[2:6])]
    assert steady == [(1, 1, 0, 0)] * 3  # x and y gathered into the fixed buffers in one launch, then the graph
    assert c.captured > 20


def test_print_step_program_lists_one_training_step_in_order() -> None:
    model, opt, _ = _model("A")
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy", jit_compile=False)
    assert "(no step recorded yet" in str(model.step_program)
    rng = np.random.default_rng(0)
    model.fit(rng.random((64, 784), dtype=np.float32), rng.integers(0, 10, 64), batch_size=32, verbose=0)
    lines = str(model.step_program).splitlines()
    assert lines[0].startswith("StepProgram: jit_compile=False")
    body = [" ".join(line.split()) for line in lines[1:]]
    # the SGD factor η/batch (made once per batch size), then forward, loss, backward with the update folded in
    assert [line.split()[0] for line in body[:9]] == [
        "asarray", "gemm", "relu", "gemm", "relu", "gemm", "softmax", "xent", "xent_grad"
    ]  # fmt: skip
    # the factor is a number made outside the step: shown by its value, not as a nameless `[]`
    assert body[0] == f"asarray t1[] = asarray({np.float32(0.01 / 32):g})"
    assert body[1] == "gemm t2[32,300] = x[32,784] @ dense.kernel[784,300] + dense.bias[300]"
    assert body[2] == "relu t3[32,300] = relu(t2)"
    assert body[8] == "xent_grad t8[32,10] = t1 · (t9 − onehot y)"
    assert "sgd_gemm dense_2.kernel -= t5ᵀ @ t8" in body
    assert body.index("sgd_gemm dense.kernel -= xᵀ @ t12") > body.index("relu_grad t12 ·= relu'(t3)")
    # arrays not of the model's dtype say theirs
    assert body[-1] == "astype t16[] = astype(t15[]:i64, float32)"


@pytest.mark.parametrize("kind", ["B", "lenet"])
def test_print_step_program_names_every_operation_of_b_and_lenet(kind: str) -> None:
    model, opt, shape = _model(kind)
    model.compile(opt, "sparse_categorical_crossentropy", backend="numpy", jit_compile=False)
    rng = np.random.default_rng(0)
    model.fit(rng.random((32, *shape), dtype=np.float32), rng.integers(0, 10, 32), batch_size=32, verbose=0)
    body = [" ".join(line.split()) for line in str(model.step_program).splitlines()[1:]]
    ops = [line.split()[0] for line in body]
    if kind == "B":
        assert (
            "dropout t5[32,128] = (hash(seed, dropout.counter) ≥ 0.2) / (1 − 0.2); t4[32,128] = t3[32,128] · t5" in body
        )
        assert "gemm ∇dense_1.kernel[128,10] = t4ᵀ[128,32] @ t8[32,10]" in body
        assert body[ops.index("adam")] == "adam params -= adam(grads; adam.m, adam.v, β=0.9,0.999, ε=1e-07)"
    else:
        assert ops[:3] == ["asarray", "conv2d", "pool_relu"]
        assert body[1].startswith(
            "conv2d t2[32,28,28,6] = conv(x[32,28,28,1], conv2d.kernel[5,5,1,6]) + conv2d.bias[6]"
        )
        assert ops.count("conv2d_grad") == 2 and ops.count("sgd") == 4


@pytest.mark.parametrize(("pool", "strides", "shown"), [(3, None, "maxpool3x3"), (2, 1, "maxpool2x2 stride 1x1")])
def test_print_step_program_gives_the_pooling_window_and_strides(pool: int, strides: Any, shown: str) -> None:
    layers = [Conv2D(4, 3, activation="relu", input_shape=(12, 12, 1)), MaxPooling2D(pool, strides), Flatten()]
    model = xpnet.Sequential([*layers, Dense(10, "softmax")], seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy", jit_compile=False)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 3×3 windows on 10×10 leave a row out: said at build
        model.fit(rng.random((8, 12, 12, 1), dtype=np.float32), rng.integers(0, 10, 8), batch_size=8, verbose=0)
    body = [" ".join(line.split()) for line in str(model.step_program).splitlines()[1:]]
    forward = next(line for line in body if line.startswith("pool_relu "))
    backward = next(line for line in body if line.startswith("pool_relu_grad "))
    assert f"relu({shown}(t2[8,10,10,4]))" in forward
    assert f"∂{shown}(relu'·" in backward


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_cublas_binding_matches_cupy_matmul_and_the_sgd_fold_the_plain_update(
    dtype: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stand_in_or_gpu(monkeypatch)
    ops = xpnet.get_backend("cupy")
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((32, 300)).astype(dtype), rng.standard_normal((32, 100)).astype(dtype)
    w = rng.standard_normal((300, 100)).astype(dtype)
    da, db = ops.asarray(a), ops.asarray(b)
    plain_w, fold_w, eager_w = ops.asarray(w), ops.asarray(w), ops.asarray(w)
    plain = ops.to_numpy(ops.matmul(da.T, db))
    Ops.gemm_sub(ops, da, db, plain_w)  # c -= aᵀb: a GEMM, then a subtraction
    eager = _cublas.eager_gemm_for(ops)  # outside a capture: CuPy's own low-level wrappers, never the ctypes binding
    assert eager is not None and eager.lib.kind == "cupy_backends.cuda.libs.cublas" and eager.handle
    assert ops.runs_in_one_call("gemm_sub") and ops.blas is None
    ops.gemm_sub(da, db, eager_w)  # one GEMM with α = −1, β = 1, through those
    with _cublas.routed(ops) as gemm:
        assert gemm is not None and ops.runs_in_one_call("gemm_sub") and ops.blas is gemm
        bound = ops.to_numpy(ops.matmul(da.T, db))  # a transposed operand: cuBLAS's op T, no copy
        ops.gemm_sub(da, db, fold_w)  # one GEMM with α = −1, β = 1, through the capturable binding
    assert ops.blas is None
    np.testing.assert_allclose(bound, a.T @ b, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert bound.dtype == dtype and plain.dtype == dtype
    # the fold rounds once, as w − aᵀb does (on a GPU this also checks cuBLAS keeps its kernel for β = 1)
    np.testing.assert_array_equal(ops.to_numpy(fold_w), w - bound)
    np.testing.assert_array_equal(ops.to_numpy(eager_w), ops.to_numpy(fold_w))
    np.testing.assert_array_equal(ops.to_numpy(plain_w), w - plain)
    with pytest.raises(
        ValueError, match=r"gemm: out must be a C-contiguous .* \(32, 100\) array, received \(100, 32\)"
    ):
        gemm(da, ops.asarray(w), ops.asarray(np.zeros((100, 32), dtype)))


@pytest.mark.gpu
def test_a_captured_run_resumed_from_a_checkpoint_mid_epoch_is_bit_identical(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stand_in_or_gpu(monkeypatch)
    from xpnet.checkpoint import Checkpoint

    class Crash(xpnet.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if self.model.optimizer.iterations == 17:
                raise KeyboardInterrupt

    reference, h_reference = _train("B", True, 24)
    with pytest.raises(KeyboardInterrupt):  # 13 steps per epoch: dies at step 17, the last checkpoint at 15
        _train("B", True, 24, [Checkpoint(tmp_path, save_freq=5), Crash()])
    model, opt, shape = _model("B")
    rng = np.random.default_rng(7)
    x, y = rng.random((32 * 12 + 8, *shape), dtype=np.float32), rng.integers(0, 10, 32 * 12 + 8)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=True)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, resume_from=tmp_path)
    assert model.step_program.launches > 0
    for a, b in zip(reference.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert history.history == h_reference.history
    assert model.optimizer.iterations == reference.optimizer.iterations == 26


@pytest.mark.gpu
def test_a_captured_fit_keeps_none_of_its_buffers_once_the_model_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    # Adam's and Dropout's counting kernels draw tickets on a word per stream; keyed by the `xp` in use,
    # which during the recording and the capture is a wrapper holding every array the step made, the
    # words' table kept all of those for the life of the process, one more set per captured fit
    from xpnet.backend import metric_kernels
    from xpnet.training import program

    _stand_in_or_gpu(monkeypatch)
    cp = xpnet.get_backend("cupy").xp

    def arrays(x: Any) -> list[Any]:
        if isinstance(x, (list, tuple)):
            return [a for v in x for a in arrays(v)]
        return [x] if isinstance(x, cp.ndarray) else []

    kept: list[Any] = []
    made = program._Graph.__init__

    def init(graph: Any, *args: Any) -> None:
        made(graph, *args)
        kept.extend(weakref.ref(a) for a in arrays(graph.keep))

    monkeypatch.setattr(program._Graph, "__init__", init)

    def fit_and_drop() -> list[Any]:
        kept.clear()
        model, history = _train("B", True, 4)
        assert model.step_program.captures and kept
        del model, history
        gc.collect()
        return [r for r in kept if r() is not None]

    fit_and_drop()
    assert fit_and_drop() == []
    assert all(isinstance(key[0], type) for key in metric_kernels._ticket_words)  # no namespace wrapper


@pytest.mark.gpu
def test_auto_says_once_why_a_step_is_not_captured(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_or_gpu(monkeypatch)
    model = xpnet.Sequential([Dense(8, "relu", input_shape=(4,)), Dense(3, "softmax")], seed=1)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["mae"], backend="cupy")
    x, y = np.random.default_rng(0).random((64, 4), dtype=np.float32), np.arange(64) % 3
    with pytest.warns(UserWarning, match="not captured as a CUDA graph: eager: the metric 'mae' is not among those"):
        model.fit(x, y, batch_size=16, verbose=0)
    assert not model.step_program.captures and model.step_program.launches == 0
    with pytest.raises(ValueError, match="the metric 'mae' is not among those checked for capture"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["mae"], backend="cupy", jit_compile=True)


@pytest.mark.gpu
def test_a_refused_capture_runs_eagerly_under_auto_and_fails_under_true(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_or_gpu(monkeypatch)
    pytest.importorskip("gpusim", reason="CuPy 14.2's refusal of cuBLAS during capture is modelled by the stand-in")
    import gpusim.cublas as emulated

    monkeypatch.setattr(emulated, "IN_CAPTURE", False)  # CuPy's own wrappers: refused while capturing
    eager, _ = _train("A", False, 6)
    with pytest.warns(UserWarning, match=r"eager: the capture was refused \(calling cuBLAS API during stream capture"):
        auto, _ = _train("A", "auto", 6)
    assert not auto.step_program.captures and auto.step_program.launches == 0
    for a, b in zip(eager.get_weights(), auto.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # the next fit runs as jit_compile=False does: the in-place sink through CuPy's own cuBLAS wrappers
    assert type(auto.step_program.step.sink).__name__ == "InPlaceSGD"
    x = np.random.default_rng(8).random((64, 784), dtype=np.float32)
    auto.fit(x, np.arange(64) % 10, batch_size=32, epochs=1, verbose=0)
    eager.fit(x, np.arange(64) % 10, batch_size=32, epochs=1, verbose=0)
    assert type(auto.step_program.step.sink).__name__ == type(eager.step_program.step.sink).__name__ == "InPlaceSGD"
    assert auto.optimizer.iterations == eager.optimizer.iterations == 10
    assert float(auto.optimizer.device_count) == float(eager.optimizer.device_count) == 10.0
    for a, b in zip(eager.get_weights(), auto.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError, match="jit_compile=True: the training step could not be captured"):
        _train("A", True, 6)


@pytest.mark.gpu
def test_more_classes_than_the_fused_loss_takes_run_eagerly_under_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    # past 1024 classes the loss runs plain CuPy code whose temporaries a graph would read after they
    # are freed (the stand-in refused the replay: "uses a bool (32, 1100) buffer ... freed since")
    _stand_in_or_gpu(monkeypatch)
    rng = np.random.default_rng(3)
    x, y = rng.random((72, 20), dtype=np.float32), rng.integers(0, 1100, 72)
    runs = []
    for jit in ("auto", False):
        model = xpnet.Sequential([Dense(16, "relu", input_shape=(20,)), Dense(1100, "softmax")], seed=1)
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=jit)
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0).history
        runs.append((history, model.evaluate(x, y, batch_size=32, verbose=0), model.get_weights()))
        if jit == "auto":
            why = "eager: 1100 output classes: past 1024 the loss runs plain CuPy code, not yet checked for capture"
            assert not model.step_program.captures and model.step_program.explain().startswith(why)
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][2], runs[1][2], strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"jit_compile=True.*cannot be captured: 1100 output classes: past 1024"):
        model.compile("sgd", "sparse_categorical_crossentropy", backend="cupy", jit_compile=True)


def _evaluate_and_predict(kind: str, jit: bool | str) -> tuple[Any, list[Any], list[Any]]:
    model, opt, shape = _model(kind)
    rng = np.random.default_rng(9)
    x = rng.random((32 * 2 + 8, *shape), dtype=np.float32)  # two full batches and a short one
    y = rng.integers(0, 10, x.shape[0])
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=jit)
    with _cublas.routed(xpnet.get_backend("cupy")):  # the eager run multiplies through the graph's cuBLAS binding
        model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
        scores = [model.evaluate(x, y, batch_size=32, verbose=0) for _ in range(2)]
        outputs = [model.predict(x, batch_size=32) for _ in range(2)]
    return model, scores, outputs


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["B", "lenet", "functional_bn"])
def test_captured_evaluate_and_predict_are_bit_identical_to_eager(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_or_gpu(monkeypatch)
    _, eager_scores, eager_outputs = _evaluate_and_predict(kind, False)
    model, scores, outputs = _evaluate_and_predict(kind, True)
    programs = {k: v[-1] for k, v in model.__dict__["_forward_programs"].items()}
    assert all(p.captures for p in programs.values()), {k: p.explain() for k, p in programs.items()}
    # the first pass warms up 32 and 8 rows eagerly and launches the second full batch; the second pass all 3
    assert programs["evaluate"].launches == programs["predict"].launches == 1 + 3
    assert scores[0] == scores[1] == eager_scores[0] == eager_scores[1]
    for got in [*outputs, *eager_outputs[1:]]:
        np.testing.assert_array_equal(got, eager_outputs[0])


@pytest.mark.gpu
def test_forward_capture_follows_jit_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_or_gpu(monkeypatch)
    from xpnet.training.forward_program import ForwardProgram, forward_program

    model, _, _ = _evaluate_and_predict("B", False)
    assert forward_program(model, "evaluate", True).explain() == "jit_compile=False: every batch runs eagerly"
    assert forward_program(model, "predict", False).launches == 0
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["mae"], backend="cupy")
    assert "the metric 'mae' is not among those checked for capture" in forward_program(model, "evaluate", True).reason
    assert forward_program(model, "predict", False).captures  # predict computes no metric
    refused = r"compile\(jit_compile=True\): the forward pass cannot be captured: the metric 'mae'"
    with pytest.raises(ValueError, match=refused):
        ForwardProgram(model, model.ops, True, with_loss=True)


@pytest.mark.gpu
def test_a_refused_forward_capture_runs_eagerly_under_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_or_gpu(monkeypatch)
    pytest.importorskip("gpusim", reason="CuPy 14.2's refusal of cuBLAS during capture is modelled by the stand-in")
    import gpusim.cublas as emulated

    _, eager_scores, eager_outputs = _evaluate_and_predict("B", False)
    monkeypatch.setattr(emulated, "IN_CAPTURE", False)  # CuPy's own wrappers: refused while capturing
    model, scores, outputs = _evaluate_and_predict("B", "auto")
    program = model.__dict__["_forward_programs"]["evaluate"][-1]
    assert not program.captures and "the capture was refused" in program.explain() and program.launches == 0
    assert scores[1] == eager_scores[1]
    np.testing.assert_array_equal(outputs[1], eager_outputs[1])


@pytest.mark.gpu
def test_forward_graphs_stop_at_a_bound_and_further_shapes_run_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_or_gpu(monkeypatch)
    from xpnet.training import forward_program as fp

    monkeypatch.setattr(fp, "MAX_GRAPHS", 2)
    model = xpnet.Sequential([Dense(8, "relu", input_shape=(4,)), Dense(3, "softmax")], seed=1)
    x = np.random.default_rng(0).random((6, 4), dtype=np.float32)
    want = [model.predict(x[:rows], batch_size=rows) for rows in (1, 2, 3, 4, 5, 6)]
    for _ in range(2):
        for rows, expected in zip((1, 2, 3, 4, 5, 6), want, strict=True):
            np.testing.assert_array_equal(model.predict(x[:rows], batch_size=rows), expected)
    program = model.__dict__["_forward_programs"]["predict"][-1]
    assert program.captures and len(program._graphs) == 2 and program.launches == 2 + 2


@pytest.mark.gpu
def test_a_copy_of_a_model_with_forward_graphs_starts_without_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import copy
    import pickle

    _stand_in_or_gpu(monkeypatch)
    model, opt, _ = _model("B")  # not fitted: a captured training step is not copyable yet (its own graphs)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=True)
    x = np.random.default_rng(3).random((40, 784), dtype=np.float32)
    with _cublas.routed(xpnet.get_backend("cupy")):
        for _ in range(2):
            model.evaluate(x, np.arange(40) % 10, batch_size=32, verbose=0)
            model.predict(x, batch_size=32)
    assert model.__dict__["_forward_programs"]["predict"][-1].launches == 2
    twin = copy.deepcopy(model)
    assert dict(twin.__dict__["_forward_programs"]) == {}
    assert pickle.loads(pickle.dumps(model.__dict__["_forward_programs"])) == {}
    with _cublas.routed(xpnet.get_backend("cupy")):
        np.testing.assert_array_equal(twin.predict(x, batch_size=32), model.predict(x, batch_size=32))


@pytest.mark.gpu
def test_batch_logs_kept_by_a_callback_keep_their_batch_when_the_pass_is_captured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a graph adds into the same accumulators at every launch: logs read after the pass must still
    # give each batch's running values, as they do eagerly
    _stand_in_or_gpu(monkeypatch)

    class Keep(xpnet.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.logs: list[Any] = []

        def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
            self.logs.append(logs)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.logs.append(logs)

    x = np.random.default_rng(4).random((64, 8), dtype=np.float32)
    y = np.arange(64) % 3
    got = {}
    for jit in (False, True):
        model = xpnet.Sequential([Dense(6, "relu", input_shape=(8,)), Dense(3, "softmax")], seed=1)
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=jit)
        with _cublas.routed(xpnet.get_backend("cupy")):
            model.evaluate(x, y, batch_size=16, verbose=0)  # the warm-up pass: the next one launches graphs
            evaluated, fitted = Keep(), Keep()
            model.evaluate(x, y, batch_size=16, verbose=0, callbacks=[evaluated])
            model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[fitted])
        got[jit] = [[(logs["loss"], logs["accuracy"]) for logs in k.logs] for k in (evaluated, fitted)]
    assert len(got[True][0]) == 4 and len(got[True][1]) == 8
    assert got[True] == got[False]


@pytest.mark.gpu
def test_a_recompile_with_the_same_loss_object_drops_the_evaluate_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    # the loss instance is reused, but weighted_metrics and loss_weights change what the graph sums
    _stand_in_or_gpu(monkeypatch)
    x = np.random.default_rng(5).random((40, 8), dtype=np.float32)
    y = np.arange(40) % 3
    loss = xpnet.losses.SparseCategoricalCrossentropy()
    model = xpnet.Sequential([Dense(6, "relu", input_shape=(8,)), Dense(3, "softmax")], seed=1)
    with _cublas.routed(xpnet.get_backend("cupy")):
        model.compile("sgd", loss, backend="cupy", jit_compile="auto")
        plain = [model.evaluate(x, y, batch_size=16, verbose=0) for _ in range(2)]
        assert model.__dict__["_forward_programs"]["evaluate"][-1].launches > 0
        model.compile("sgd", loss, loss_weights=[2.0], backend="cupy", jit_compile="auto")
        doubled = [model.evaluate(x, y, batch_size=16, verbose=0) for _ in range(2)]
        model.compile("sgd", loss, weighted_metrics=["accuracy"], backend="cupy", jit_compile="auto")
        weighted = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert plain[0] == plain[1] and doubled[0] == doubled[1] == pytest.approx(2 * plain[0], rel=1e-6)
    hits = np.mean(model.predict(x).argmax(1) == y)
    assert weighted["loss"] == plain[0] and weighted["accuracy"] == pytest.approx(hits)


def test_numpy_replay_fit_with_validation_evaluate_and_predict_run_their_forward_eagerly() -> None:
    # jit_compile=True on NumPy asks for the training step's replay; the forward pass has none there,
    # so validation, evaluate and predict run eagerly instead of refusing the model
    rng = np.random.default_rng(3)
    x, y = rng.random((83, 64), dtype=np.float32), rng.integers(0, 10, 83)
    runs = []
    for jit in (True, False):
        model, opt, _ = _model("B", (64,))
        model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy", jit_compile=jit)
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x[:20], y[:20]))
        runs.append((model, history.history, model.evaluate(x, y, verbose=0), model.predict(x[:10], verbose=0)))
    (replayed, h1, e1, p1), (eager, h0, e0, p0) = runs
    assert replayed.step_program.replayed > 10
    assert h1 == h0 and e1 == e0
    np.testing.assert_array_equal(p1, p0)
    for a, b in zip(replayed.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["B", "activations_rmsprop", "activations_momentum"])
def test_numpy_replay_follows_a_setting_a_callback_sets_to_a_numpy_scalar(kind: str) -> None:
    # a NumPy scalar is no buffer the step holds (it cannot be restored in place), and a change from
    # one NumPy scalar to another is a changed setting all the same: the list is recorded anew
    from xpnet.callbacks import Callback

    class Set(Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch in (2, 6):
                value = np.float32(1e-3 if batch == 2 else 0.3)
                name = "momentum" if kind == "activations_momentum" else "epsilon"
                setattr(self.model.optimizer, name, value if name == "epsilon" else np.float64(value))

    eager, h0 = _fit_numpy(kind, False, 60, callbacks=[Set()])
    replayed, h1 = _fit_numpy(kind, True, 60, callbacks=[Set()])
    assert replayed.step_program.replayed > 20
    for a, b in zip(eager.get_weights(), replayed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h0.history == h1.history


def test_numpy_replay_records_anew_when_a_callback_replaces_a_layers_activation() -> None:
    # a replaced activation object is a change of the layer the list holds as recorded calls
    from xpnet.callbacks import Callback

    class Swap(Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch == 4 and self.model.optimizer.iterations < 10:
                self.model.layers[0].activation = xpnet.activations.get("tanh")

    eager, h0 = _fit_numpy("A", False, 60, callbacks=[Swap()])
    replayed, h1 = _fit_numpy("A", True, 60, callbacks=[Swap()])
    assert replayed.step_program.replayed > 20
    for a, b in zip(eager.get_weights(), replayed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h0.history == h1.history


def test_numpy_replay_explain_says_sample_weighted_steps_run_eagerly() -> None:
    # a class-weighted fit replays no step: explain must not claim the replay without saying so
    eager_fit, _ = _fit_numpy("A", True, 40, class_weight={k: 1.0 + k / 10 for k in range(10)})
    program = eager_fit.step_program
    assert program.replayed == 0
    assert "sample-weighted steps (sample_weight, class_weight) run eagerly" in program.explain()


@pytest.mark.gpu
@pytest.mark.parametrize("jit", [False, True])
def test_the_step_count_moved_by_the_loss_kernel_stays_the_number_of_steps(
    jit: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Plain SGD inside backprop on CuPy: the loss kernel moves the device's t, `apply` the host's count only;
    both equal the steps taken, eager and captured, through `train_on_batch`, a recompile and a resume."""
    _stand_in_or_gpu(monkeypatch)
    model, opt, shape = _model("A", (20,))
    rng = np.random.default_rng(4)
    x, y = rng.random((72, *shape), dtype=np.float32), rng.integers(0, 10, 72)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=jit)
    assert model.plan.count_in_loss and "its SGD update and the optimizer's step count" in model.plan.explain()
    assert "weights updated inside backprop" in model.plan.explain()

    def counts() -> tuple[int, float]:
        return opt.iterations, float(model.ops.to_numpy(opt.device_count))

    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[xpnet.checkpoint.Checkpoint(tmp_path, 7, keep=1)])
    assert counts() == (10, 10.0)  # 2 epochs of 4 full batches and a short one
    assert model.step_program.captures == jit and (model.step_program.launches > 0) == jit
    model.train_on_batch(x[:16], y[:16])
    assert counts() == (11, 11.0)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=jit)
    model.fit(x[:32], y[:32], batch_size=16, epochs=1, verbose=0)
    assert counts() == (13, 13.0)
    # resuming from the checkpoint of step 7 (in epoch 2) sets both counts there; the steps after move both again
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, resume_from=tmp_path)
    assert counts() == (10, 10.0)
    opt.iterations = 3
    assert counts() == (3, 3.0)
    model.fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0)
    assert counts() == (4, 4.0)


@pytest.mark.gpu
def test_jit_compile_false_never_loads_the_ctypes_cublas_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The safe fallback on a GPU: a jit_compile=False fit, evaluate and predict update inside backprop through
    CuPy's own cuBLAS wrappers and never load the direct libcublas binding that only a capture needs."""
    _stand_in_or_gpu(monkeypatch)

    def refuse(cp: Any) -> Any:
        raise AssertionError("the ctypes cuBLAS binding was loaded by a jit_compile=False model")

    monkeypatch.setattr(_cublas, "_load", refuse)
    monkeypatch.setattr(_cublas, "_BINDINGS", {})
    model, opt, shape = _model("A", (20,))
    rng = np.random.default_rng(5)
    x, y = rng.random((40, *shape), dtype=np.float32), rng.integers(0, 10, 40)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x, y))
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert type(model.step_program.step.sink).__name__ == "InPlaceSGD" and model.plan.count_in_loss
    assert opt.iterations == 3 and not _cublas._BINDINGS


class _MomentumAt(xpnet.callbacks.Callback):
    """Sets the optimizer's momentum after batch `at` of the first epoch (from 0: the velocity slot is new)."""

    def __init__(self, at: int, value: float) -> None:
        super().__init__()
        self.at, self.value, self.done = at, value, False

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if batch == self.at and not self.done:
            self.model.optimizer.momentum = self.value
            self.done = True


def _momentum_run(backend: str, jit: Any, change: bool) -> list[np.ndarray]:
    model, _, shape = _model("A", (20,))
    opt = xpnet.optimizers.SGD(0.05)
    rng = np.random.default_rng(7)
    x, y = rng.random((96, *shape), dtype=np.float32), rng.integers(0, 10, 96)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend, jit_compile=jit)
    cbs = [_MomentumAt(2, 0.9)] if change else []
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False, callbacks=cbs)
    assert opt.iterations == 18 and float(model.ops.to_numpy(opt.device_count)) == 18.0
    if change:
        assert "momentum" in opt.slots and float(np.abs(model.ops.to_numpy(opt.slots["momentum"])).max()) > 0
    return [np.asarray(w) for w in model.get_weights()]


def _momentum_reference() -> list[np.ndarray]:
    """The same 18 steps by `train_on_batch`, eagerly on NumPy, the momentum set between steps 3 and 4."""
    model, _, shape = _model("A", (20,))
    opt = xpnet.optimizers.SGD(0.05)
    rng = np.random.default_rng(7)
    x, y = rng.random((96, *shape), dtype=np.float32), rng.integers(0, 10, 96)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    for step in range(18):
        lo = (step % 6) * 16
        model.train_on_batch(x[lo : lo + 16], y[lo : lo + 16])
        if step == 2:
            opt.momentum = 0.9
    return [np.asarray(w) for w in model.get_weights()]


def test_momentum_set_from_zero_mid_fit_takes_effect_with_a_zero_velocity(monkeypatch: pytest.MonkeyPatch) -> None:
    """A callback setting SGD's momentum from 0 mid-fit: the velocity slot is made between steps (PyTorch's
    rule: it starts at zero), and the eager and replayed fits train with it, bit for bit alike and as
    train_on_batch does; before, the update silently left the momentum out."""
    monkeypatch.setenv("XPNET_BLAS_THREADS", "1")  # the fits and the reference sum in one order
    eager, replayed = _momentum_run("numpy", False, True), _momentum_run("numpy", "auto", True)
    plain, ref = _momentum_run("numpy", "auto", False), _momentum_reference()
    assert any(not np.array_equal(a, b) for a, b in zip(replayed, plain, strict=True))
    for a, b, c in zip(eager, replayed, ref, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.parametrize("jit", [False, "auto"])
def test_momentum_set_from_zero_mid_fit_on_cupy(jit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CuPy the same: the captured step ran the plain SGD update's temporaries after the change (the stand-in
    refused the graph: a buffer freed while the graph used it); now the velocity slot exists before the new
    capture, and eager and captured agree with NumPy's eager run."""
    _stand_in_or_gpu(monkeypatch)
    changed, ref = _momentum_run("cupy", jit, True), _momentum_reference()
    for a, b in zip(changed, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
