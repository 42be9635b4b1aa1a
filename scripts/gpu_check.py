#!/usr/bin/env python3
"""The one prepared run for a lent GPU: the suite with CuPy, GPU↔CPU parity, captured-vs-eager
identity and the epoch benchmark against PyTorch (eager and CUDA-graph) and JAX `lax.scan`.

    python scripts/gpu_check.py                       # on the GPU machine, ~9 minutes
    GPUSIM_CUBLAS_IN_CAPTURE=1 PYTHONPATH=.:../shared/gpu-sim python scripts/gpu_check.py --stand-in

Sections (in order; `--sections` picks some): info, tests, parity, identity, bench, e2e. Each has
a time box (its cap, and never past the overall --budget); a failing or timed-out section is
recorded and the next one runs. Everything goes to $OUT (default ./gpu_check_out, or --out):
`gpu_check.log` (what was printed) and `gpu_check.json` (rewritten after every section, so a
killed run still leaves what it had).

--stand-in installs the CPU stand-in (gpusim) before anything imports cupy, shrinks every size
so the whole run takes a few minutes, and runs every code path; its timings mean nothing and
are reported as such.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# JAX would otherwise take 75% of the GPU's memory at its first call, starving CuPy and PyTorch
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
STAND_IN = "--stand-in" in sys.argv[1:]
if STAND_IN:  # before anything imports cupy: the stand-in must be the module it finds
    os.environ.setdefault("GPUSIM_CUBLAS_IN_CAPTURE", "1")
    import gpusim

    gpusim.install()
    import gpusim.cublas

    # the captured GEMMs go through the stand-in's low-level cuBLAS, as through libcublas on a GPU
    gpusim.cublas.IN_CAPTURE = True

sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import benchmark as bench  # noqa: E402  (scripts/ is on the path only now)
import numpy as np  # noqa: E402

import xpnet  # noqa: E402
from xpnet.backend import _cublas, _cupy_problem  # noqa: E402
from xpnet.parity import compare, synthetic_fashion_like, train_on  # noqa: E402

SECTIONS = ("info", "tests", "parity", "identity", "bench", "e2e")
# seconds each section may take at most on a GPU; a section also leaves the later ones their caps
# within --budget (the suite took 63 s on 2026-11-22 with 523 tests; it has some 1,280 now)
CAPS = {"info": 15, "tests": 220, "parity": 30, "identity": 45, "bench": 200, "e2e": 60}
N_IMAGES = 55_000
PARITY_TOLERANCE = 1e-5


class SectionTimeout(Exception):
    pass


class Run:
    """The log (stdout and $OUT/gpu_check.log, line by line) and the JSON record of one check."""

    def __init__(self, out: Path, budget: float, stand_in: bool) -> None:
        self.out, self.stand_in = out, stand_in
        out.mkdir(parents=True, exist_ok=True)
        self.log_path, self.json_path = out / "gpu_check.log", out / "gpu_check.json"
        self._log = self.log_path.open("w", encoding="utf-8")
        self.t0 = time.perf_counter()
        self.end = self.t0 + budget
        self.quick = False
        self.record: dict[str, Any] = {"stand_in": stand_in, "sections": {}}

    def say(self, line: str = "") -> None:
        stamped = f"[{time.perf_counter() - self.t0:6.1f}s] {line}" if line else ""
        print(stamped, flush=True)
        self._log.write(stamped + "\n")
        self._log.flush()

    def left(self) -> float:
        return self.end - time.perf_counter()

    def save(self) -> None:
        # atomic: a run killed at its limit leaves the previous complete JSON, never half of one
        fd, tmp = tempfile.mkstemp(dir=self.out, prefix=".gpu_check.", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.record, f, indent=2, default=_jsonable)
        os.replace(tmp, self.json_path)

    def close(self) -> None:
        self.save()
        self._log.close()


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


@contextlib.contextmanager
def time_box(seconds: float) -> Iterator[None]:
    """Raise SectionTimeout in the main thread after `seconds` (the host code between GPU calls sees it).

    Nests: an enclosing box's timer is re-armed with what it had left when the inner one ends.
    """

    def expire(signum: int, frame: Any) -> None:
        raise SectionTimeout(f"time box of {seconds:.0f} s exhausted")

    t0 = time.perf_counter()
    old = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.perf_counter() - t0), 0.001))


def run_section(run: Run, name: str, fn: Callable[[Run, float], dict[str, Any]], later: list[str]) -> None:
    scale = 4 if run.stand_in else 1  # the emulation is slower than a GPU
    box = min(CAPS[name] * scale, run.left() - sum(min(CAPS[s], 30) * scale for s in later))
    box = min(max(box, 10), run.left())  # a section squeezed by the reserve still gets a try
    run.say(f"== {name} (time box {box:.0f} s)")
    t = time.perf_counter()
    if box <= 1:
        res: dict[str, Any] = {"status": "skipped", "why": "the run's budget is spent"}
    else:
        try:
            with time_box(box):
                res = {"status": "ok", **fn(run, box)}
        except SectionTimeout as e:
            res = {"status": "timeout", "error": str(e)}
        except Exception as e:  # one section's failure must not stop the others
            res = {"status": "error", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    res["seconds"] = round(time.perf_counter() - t, 2)
    run.record["sections"][name] = res
    run.say(f"-- {name}: {res['status']} in {res['seconds']:.1f} s" + (f": {res['error']}" if "error" in res else ""))
    if "traceback" in res:
        for ln in res["traceback"].rstrip().splitlines()[-12:]:
            run.say("   " + ln)
    run.save()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "-uno"], capture_output=True, text=True
        )
        return out.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "") or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"


def section_info(run: Run, box: float) -> dict[str, Any]:
    import cupy

    ops = xpnet.get_backend("cupy")
    info: dict[str, Any] = dict(ops.info())
    rt = cupy.cuda.runtime
    for key, get in (("cuda_driver", "driverGetVersion"), ("cuda_runtime", "runtimeGetVersion")):
        with contextlib.suppress(Exception):
            info[key] = str(getattr(rt, get)())
    peers = {}
    for mod in ("torch", "jax"):
        try:
            peers[mod] = __import__(mod).__version__
        except Exception as e:
            peers[mod] = f"not importable ({type(e).__name__})"
    info.update(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        commit=git_commit(),
        xpnet=xpnet.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        host=f"{platform.node()} ({os.cpu_count()} CPUs)",
        peers=peers,
    )
    if run.stand_in:
        info["device"] = f"gpusim CPU stand-in ({info.get('device')}); timings meaningless"
    for k, v in info.items():
        run.say(f"{k}: {v}")
    run.record["info"] = info
    return {}


def section_tests(run: Run, box: float) -> dict[str, Any]:
    """The whole suite in a child process: on a CUDA machine "auto" and the `cupy` parameters resolve to CuPy."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider"]
    if run.stand_in:
        cmd += ["-p", "gpusim.pytest_plugin", *run.record["args"]["stand_in_tests"]]
    run.say("$ " + " ".join(cmd[1:]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=max(box - 5, 1))
        timed_out = False
    except (subprocess.TimeoutExpired, SectionTimeout):
        os.killpg(proc.pid, signal.SIGKILL)  # pytest and whatever it started (mpiexec ranks)
        out, _ = proc.communicate()
        timed_out = True
    (run.out / "pytest.log").write_text(out)
    lines = out.strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    notable = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    for ln in notable[:40]:
        run.say("   " + ln)
    run.say(f"pytest: {summary}" + (" (killed at its time box)" if timed_out else ""))
    return {"summary": summary, "returncode": proc.returncode, "timed_out": timed_out, "failures": notable}


def section_parity(run: Run, box: float) -> dict[str, Any]:
    """Model B (784-128-Dropout-10, Adam) trained from one seed on CuPy and on NumPy: weights within 1e-5."""
    n, epochs = (1000, 2) if run.quick else (6000, 5)
    x, y = synthetic_fashion_like(n)
    r = compare(train_on("cupy", x, y, epochs=epochs), train_on("numpy", x, y, epochs=epochs))
    ok = r["max_rel_weight_diff"] <= PARITY_TOLERANCE and r["masks_identical"] == 1.0
    run.say(
        f"model B, batch 100, {int(r['steps'])} Adam steps: max relative weight difference "
        f"{r['max_rel_weight_diff']:.3g} (tolerance {PARITY_TOLERANCE:g}), max abs {r['max_abs_weight_diff']:.3g}, "
        f"max loss difference {r['max_loss_diff']:.3g}, dropout masks identical: {bool(r['masks_identical'])} "
        f"-> {'PASS' if ok else 'FAIL'}"
    )
    return {"pass": ok, **r}


def mlp(wl: bench.Workload, seed: int) -> xpnet.Sequential:
    """The workload's Dense/Dropout stack, not compiled (compile picks the backend and jit_compile)."""
    from xpnet.layers import Dense, Dropout

    layers: list[Any] = [Dense(wl.hidden[0], "relu", input_shape=(bench.IN,))]
    if wl.dropout:
        layers.append(Dropout(wl.dropout))
    layers += [Dense(h, "relu") for h in wl.hidden[1:]]
    return xpnet.Sequential([*layers, Dense(bench.N_CLASSES, "softmax")], seed=seed)


def train_for_identity(
    kind: str, jit: bool, steps: int, routed: bool = True
) -> tuple[xpnet.Sequential, dict[str, Any]]:
    """`steps` full batches of 32 over two epochs plus a short last batch each, as tests/test_program.py does.
    routed=False: the GEMMs as a plain `jit_compile=False` fit makes them (CuPy's own cuBLAS handle for the
    in-place SGD's β = 1 GEMMs, `_cublas.eager_gemm_for`), not through the graph's binding."""
    model = mlp(bench.WORKLOADS[kind], seed=1)
    opt = xpnet.optimizers.SGD(0.01) if kind == "A" else xpnet.optimizers.Adam(0.001)
    rng = np.random.default_rng(7)
    n = 32 * steps // 2 + 8
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=jit)
    # the eager run multiplies through the same cuBLAS binding the graph records, so the bits can agree
    with _cublas.routed(xpnet.get_backend("cupy")) if routed else contextlib.nullcontext():
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    return model, history.history


def section_identity(run: Run, box: float) -> dict[str, Any]:
    steps = 20 if run.quick else 200
    res: dict[str, Any] = {}
    for kind in ("A", "B"):
        eager, h_eager = train_for_identity(kind, False, steps)
        captured, h_captured = train_for_identity(kind, True, steps)
        program = captured.step_program
        same = all(np.array_equal(a, b) for a, b in zip(eager.get_weights(), captured.get_weights(), strict=True)) and (
            h_eager == h_captured
        )
        worst = max(
            float(np.max(np.abs(a - b))) for a, b in zip(eager.get_weights(), captured.get_weights(), strict=True)
        )
        forward = forward_identity(eager, captured)
        res[kind] = {
            "bit_identical": same,
            "max_abs_diff": worst,
            "captured": program.captures,
            "graph_launches": program.launches,
            "explain": program.explain(),
            "steps": int(getattr(captured.optimizer, "iterations", -1)),
            **forward,
        }
        run.say(
            f"model {kind}: {res[kind]['steps']} steps, captured ({program.explain()}) vs eager: "
            f"{'bit-identical' if same else f'DIFFER (max {worst:.3g})'}; evaluate and predict, "
            f"{forward['forward_graph_launches']} graph launches: "
            f"{'bit-identical' if forward['forward_bit_identical'] else 'DIFFER'}"
        )
        if kind == "A":
            # what jit_compile=False runs (plain SGD's β = 1 GEMMs on CuPy's own handle, another workspace):
            # reported, not required, since cuBLAS may pick another kernel there
            plain, _ = train_for_identity(kind, False, steps, routed=False)
            pairs = list(zip(plain.get_weights(), captured.get_weights(), strict=True))
            res[kind]["unrouted_eager_bit_identical"] = all(np.array_equal(a, b) for a, b in pairs)
            res[kind]["unrouted_eager_max_abs_diff"] = max(float(np.max(np.abs(a - b))) for a, b in pairs)
            res[kind]["unrouted_eager_sink"] = plain.plan.sink  # "in backprop": the β = 1 GEMMs ran eagerly
            run.say(
                f"model {kind}: jit_compile=False (CuPy's own cuBLAS handle) vs captured: "
                + (
                    "bit-identical"
                    if res[kind]["unrouted_eager_bit_identical"]
                    else f"DIFFER (max {res[kind]['unrouted_eager_max_abs_diff']:.3g})"
                )
            )
    checks = ("bit_identical", "captured", "forward_bit_identical", "forward_captured")
    res["pass"] = all(res[k][c] for k in "AB" for c in checks)
    return res


def forward_identity(eager: xpnet.Sequential, captured: xpnet.Sequential) -> dict[str, Any]:
    """evaluate and predict, twice each, of the captured model (its forward replayed from CUDA graphs) against
    the eager one with the same weights: the graphs are recorded in the first pass and launched in both."""
    x = np.random.default_rng(8).random((32 * 4 + 8, 784), dtype=np.float32)
    y = np.arange(x.shape[0]) % 10
    captured.set_weights(eager.get_weights())
    runs = []
    for model in (eager, captured):
        with _cublas.routed(xpnet.get_backend("cupy")):
            runs.append(
                [model.evaluate(x, y, batch_size=32, verbose=0) for _ in range(2)]
                + [model.predict(x, batch_size=32) for _ in range(2)]
            )
    same = all(
        np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
        for r in runs
        for a, b in zip(runs[0], r, strict=True)
    )
    programs = captured.__dict__.get("_forward_programs", {})
    launches = sum(entry[-1].launches for entry in programs.values())
    # eager against eager agrees trivially: the check counts only where graphs ran in both passes
    captured_both = set(programs) == {"evaluate", "predict"} and all(e[-1].launches > 0 for e in programs.values())
    return {"forward_bit_identical": bool(same), "forward_graph_launches": launches, "forward_captured": captured_both}


# ------------------------------------------------------------------ the epoch benchmark
BIG = bench.Workload("BIG", "784-4096-4096-10, SGD 0.01, batch 1024", (4096, 4096), None, "sgd", 1024, None)
LENET = bench.Workload("LENET", "LeNet-5 (same padding), SGD 0.01, batch 32", (), None, "sgd", 32, None)
BENCH_ORDER = ("A", "A1024", "B", "LENET", "BIG")


def shrink(wl: bench.Workload) -> bench.Workload:
    """The stand-in's version: the same code paths on sizes a CPU runs in seconds."""
    from dataclasses import replace

    if wl.name == "BIG":
        return replace(wl, hidden=(64, 64), batch=64)
    return replace(wl, batch=min(wl.batch, 64))


def bench_data(wl: bench.Workload, n: int) -> bench.Data:
    """Synthetic images, the last partial batch dropped (every contender runs the same full batches)."""
    x, y = synthetic_fashion_like(n, seed=3)
    keep = n // wl.batch * wl.batch
    x, y = x[:keep], y[:keep].astype(np.int32)
    data = bench.Data(x, y, x[:1], y[:1], f"synthetic {keep:,} images")
    return bench.lenet_images(data) if wl.name == "LENET" else data


def build_xpnet_model(wl: bench.Workload, jit: bool) -> xpnet.Sequential:
    if wl.name == "LENET":
        from xpnet import experiments

        model = experiments.build_model("lenet", seed=0)
    else:
        model = mlp(wl, seed=0)
    opt = xpnet.optimizers.SGD(0.01) if wl.optimizer == "sgd" else xpnet.optimizers.Adam(0.001)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend="cupy", jit_compile=jit)
    return model


class TorchGraphMixin:
    """PyTorch with its whole training step (gather, forward, loss, backward, update) captured in one CUDA graph.

    The batch indices are copied into a static buffer outside the graph; the graph gathers from the
    resident data set, so a replay is the whole step. Adam runs with capturable=True.
    """

    torch: Any
    model: Any
    opt: Any
    X: Any
    Y: Any
    wl: bench.Workload
    gen: Any
    dev: Any

    def _capture(self) -> None:
        torch, b = self.torch, self.wl.batch
        F = torch.nn.functional
        if isinstance(self.opt, torch.optim.Adam):
            self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, eps=1e-7, capturable=True)
        self.idx = torch.arange(b, device=self.dev)
        self.loss_sum = torch.zeros((), device=self.dev)

        def step() -> None:
            xb, yb = self.X.index_select(0, self.idx), self.Y.index_select(0, self.idx)
            loss = F.cross_entropy(self.model(xb), yb)
            loss.backward()
            self.opt.step()
            self.loss_sum.add_(loss.detach())

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up steps (optimizer state, autograd's buffers) before capture
            for _ in range(3):
                self.opt.zero_grad(set_to_none=True)
                step()
        torch.cuda.current_stream().wait_stream(side)
        # gradients None at capture: the captured backward writes them (in the graph's pool), not adds
        self.opt.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            step()

    def train_epochs(self, k: int) -> float:
        torch, b = self.torch, self.wl.batch
        if not hasattr(self, "graph"):
            self.model.train()
            self._capture()
        n = self.X.shape[0]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(k):
            perm = torch.randperm(n, generator=self.gen).to(self.dev)
            self.loss_sum.zero_()
            for lo in range(0, n - b + 1, b):
                self.idx.copy_(perm[lo : lo + b])
                self.graph.replay()
            self._logs = {"loss": float(self.loss_sum) / (n // b)}
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / k


class TorchGraph(TorchGraphMixin, bench.TorchContender):
    pass


class TorchLenetGraph(TorchGraphMixin, bench.TorchLenetContender):
    pass


class JaxScan(bench.Contender):
    """JAX: one jitted epoch, `lax.scan` over the batches of a device-side permutation (SGD or Adam by hand)."""

    def __init__(self, wl: bench.Workload, data: bench.Data) -> None:
        import jax
        import jax.numpy as jnp

        self.jax, self.wl = jax, wl
        self.name = f"JAX {jax.__version__} scan ({jax.default_backend()})"
        rng = np.random.default_rng(0)
        lenet = wl.name == "LENET"

        def glorot(*shape: int) -> Any:
            fan_in = math.prod(shape[:-1])
            fan_out = shape[-1] * (math.prod(shape[:-2]) if len(shape) > 2 else 1)
            lim = math.sqrt(6.0 / (fan_in + fan_out))
            return jnp.asarray(rng.uniform(-lim, lim, shape).astype(np.float32))

        if lenet:
            shapes = [(5, 5, 1, 6), (5, 5, 6, 16), (784, 120), (120, 84), (84, 10)]
        else:
            shapes = list(zip(wl.dims[:-1], wl.dims[1:], strict=True))
        self.params = [(glorot(*s), jnp.zeros((s[-1],), jnp.float32)) for s in shapes]
        dropout = wl.dropout or 0.0

        def forward(params: Any, x: Any, key: Any) -> Any:
            if lenet:
                for w, bias in params[:2]:
                    x = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
                    x = jax.nn.relu(x + bias)
                    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
                x = x.reshape(x.shape[0], -1)
                params = params[2:]
            for i, (w, bias) in enumerate(params):
                x = x @ w + bias
                if i < len(params) - 1:
                    x = jax.nn.relu(x)
                    if i == 0 and dropout:
                        keep = jax.random.bernoulli(key, 1 - dropout, x.shape)
                        x = jnp.where(keep, x / (1 - dropout), 0)
            return x

        def loss_fn(params: Any, x: Any, y: Any, key: Any) -> Any:
            logits = forward(params, x, key)
            return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, y[:, None], 1)[:, 0])

        adam = wl.optimizer == "adam"
        b = wl.batch

        def step(carry: Any, batch: Any) -> Any:
            params, moments, t, key = carry
            xb, yb = batch
            key, sub = jax.random.split(key)
            loss, g = jax.value_and_grad(loss_fn)(params, xb, yb, sub)
            if adam:
                t = t + 1
                m, v = moments
                m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
                v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
                lr = 1e-3 * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
                params = jax.tree.map(lambda p, m, v: p - lr * m / (jnp.sqrt(v) + 1e-7), params, m, v)
                moments = (m, v)
            else:
                params = jax.tree.map(lambda p, g: p - 0.01 * g, params, g)
            return (params, moments, t, key), loss

        def epoch(params: Any, moments: Any, t: Any, key: Any, X: Any, Y: Any) -> Any:
            key, pkey = jax.random.split(key)
            steps = X.shape[0] // b
            perm = jax.random.permutation(pkey, X.shape[0])[: steps * b].reshape(steps, b)

            def gathered(carry: Any, idx: Any) -> Any:  # the batch gather inside the scanned step
                return step(carry, (X[idx], Y[idx]))

            (params, moments, t, key), losses = jax.lax.scan(gathered, (params, moments, t, key), perm)
            return params, moments, t, key, jnp.mean(losses)

        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")  # JAX on a CPU
        self.epoch = jax.jit(epoch, donate_argnums=(0, 1))
        zeros = jax.tree.map(jnp.zeros_like, self.params)
        self.moments = (zeros, jax.tree.map(jnp.zeros_like, self.params)) if adam else ()
        self.t = jnp.zeros((), jnp.float32)
        self.key = jax.random.PRNGKey(0)
        self.X, self.Y = jax.device_put(data.xtr), jax.device_put(data.ytr)
        self._logs: dict[str, float] = {}

    def train_epochs(self, k: int) -> float:
        t0 = time.perf_counter()
        for _ in range(k):
            self.params, self.moments, self.t, self.key, loss = self.epoch(
                self.params, self.moments, self.t, self.key, self.X, self.Y
            )
        self._logs = {"loss": float(loss)}  # waits for the last epoch
        return (time.perf_counter() - t0) / k

    def last_logs(self) -> dict[str, float]:
        return self._logs


def bench_env() -> bench.Env:
    import cupy

    env = bench.Env("cupy", cupy, lambda: cupy.cuda.Device().synchronize(), 0, "cuBLAS")
    try:
        import torch

        if torch.cuda.is_available():
            env.torch, env.torch_device = torch, "cuda"
        else:
            env.torch_note = "PyTorch has no CUDA device here"
    except ImportError:
        env.torch_note = "PyTorch not importable"
    return env


def contenders_for(wl: bench.Workload, data: bench.Data, env: bench.Env, run: Run) -> list[tuple[str, Any]]:
    """(label, factory) in the order they run; a factory that raises is reported and skipped."""
    import cupy

    out: list[tuple[str, Any]] = []
    if wl.name != "LENET":
        out.append(
            (
                "GEMM floor (cupy.matmul)",
                lambda: bench.GemmFloor("floor", cupy, env.sync, wl.dims, wl.batch, cupy.asarray(data.xtr), True),
            )
        )
    for label, jit in (("xpnet eager", False), ("xpnet captured", True)):
        out.append((label, lambda jit=jit: bench.XpnetContender(wl, data, env, model=build_xpnet_model(wl, jit))))
    if env.torch is not None:
        torch_data = bench.lenet_images(data, channels_first=True) if wl.name == "LENET" else data
        if wl.name == "LENET":
            out.append(("PyTorch eager", lambda: bench.TorchLenetContender(torch_data, env)))
            out.append(("PyTorch CUDA graph", lambda: TorchLenetGraph(torch_data, env)))
        else:
            out.append(("PyTorch eager", lambda: bench.TorchContender(wl, data, env)))
            out.append(("PyTorch CUDA graph", lambda: TorchGraph(wl, data, env)))
    else:
        run.say(f"   PyTorch: skipped ({env.torch_note})")
    out.append(("JAX lax.scan", lambda: JaxScan(wl, data)))
    return out


def time_contender(make: Callable[[], Any], reps: int, box: float) -> dict[str, Any]:
    """First epoch (compile, capture, warm-up) timed apart, then up to `reps` epochs while within `box` s."""
    t = time.perf_counter()
    c = make()
    setup = time.perf_counter() - t
    first = c.train_epochs(1)
    times: list[float] = []
    spent = time.perf_counter() - t
    while len(times) < reps and spent + (times[-1] if times else first) < box:
        times.append(c.train_epochs(1))
        spent = time.perf_counter() - t
    res = {"setup_s": setup, "first_epoch_s": first, "epochs_s": times}
    if times:
        res["s_per_epoch"] = float(np.median(times))
    res["logs"] = c.last_logs()
    return res


def section_bench(run: Run, box: float) -> dict[str, Any]:
    env = bench_env()
    reps = 1 if run.stand_in else 3
    res: dict[str, Any] = {"stand_in_timings_meaningless": run.stand_in}
    names = run.record["args"]["workloads"]
    end = time.perf_counter() + box
    for i, name in enumerate(names):
        wl = bench.WORKLOADS.get(name) or {"LENET": LENET, "BIG": BIG}[name]
        if run.stand_in:
            wl = shrink(wl)
        data = bench_data(wl, 4 * wl.batch if run.stand_in else N_IMAGES)
        share = (end - time.perf_counter()) / (len(names) - i)  # what is left, split over the workloads to come
        run.say(f"{wl.name}: {wl.title}; {data.source}; {share:.0f} s")
        rows: dict[str, Any] = {}
        makers = contenders_for(wl, data, env, run)
        for j, (label, make) in enumerate(makers):
            each = (end - time.perf_counter()) / (len(names) - i) / (len(makers) - j)
            if each < 0.5:
                rows[label] = {"status": "skipped: out of time"}
                continue
            try:
                with time_box(each + (30 if run.stand_in else 5)):  # a slack for one slow first epoch
                    rows[label] = time_contender(make, reps, each)
            except (ImportError, ModuleNotFoundError) as e:
                rows[label] = {"status": f"skipped: {e}"}
            except SectionTimeout:
                rows[label] = {"status": f"timeout after {each:.0f} s"}
            except Exception as e:  # a peer that fails must not cost the others
                rows[label] = {"status": f"error: {type(e).__name__}: {e}"}
            r = rows[label]
            if "first_epoch_s" in r:
                per = f"{r['s_per_epoch']:.4f} s/epoch" if "s_per_epoch" in r else "no steady epoch in the box"
                run.say(f"   {label:<26} {per}; first epoch {r['first_epoch_s']:.3f} s, setup {r['setup_s']:.2f} s")
            else:
                run.say(f"   {label:<26} {r['status']}")
        res[wl.name] = {"title": wl.title, "images": int(data.xtr.shape[0]), "batch": wl.batch, "rows": rows}
        run.save()
    summary_table(run, res)
    if run.stand_in:
        run.say("(stand-in: the numbers above are CPU emulation times, not GPU figures)")
        gpusim = bench.gpusim_module()
        if gpusim is not None:  # what the stand-in can show: kernel launches per step
            eager = bench.launches_per_step(gpusim)
            captured = bench.launches_per_step(gpusim, jit_compile=True)
            res["stand_in_launches_per_step"] = {"eager": eager, "captured": captured}
            for k in eager:
                run.say(f"launches per step, {k}: eager {eager[k]}, captured {captured[k]}")
    return res


def summary_table(run: Run, res: dict[str, Any]) -> None:
    """Seconds per epoch (first epoch in brackets), one row per workload, one column per contender."""
    labels: list[str] = []
    for wl in res.values():
        if isinstance(wl, dict) and "rows" in wl:
            labels += [k for k in wl["rows"] if k not in labels]
    run.say("")
    run.say("| workload | " + " | ".join(labels) + " |")
    run.say("|---" * (len(labels) + 1) + "|")
    for name, wl in res.items():
        if not (isinstance(wl, dict) and "rows" in wl):
            continue
        cells = []
        for label in labels:
            r = wl["rows"].get(label, {})
            if "s_per_epoch" in r:
                cells.append(f"{r['s_per_epoch']:.4f} ({r['first_epoch_s']:.2f})")
            elif "first_epoch_s" in r:
                cells.append(f"? ({r['first_epoch_s']:.2f})")
            else:
                cells.append("n/a")
        run.say(f"| {name} b{wl['batch']} | " + " | ".join(cells) + " |")
    run.say("s/epoch, median of up to 3 after the first; (first epoch: compile, capture, warm-up)")


def section_e2e(run: Run, box: float) -> dict[str, Any]:
    """`xpnet train --model A` (30 epochs, a fresh process: imports, data, compile, everything) vs JAX scan's 30."""
    from xpnet.datasets import fashion_mnist

    epochs = 1 if run.quick else 2 if run.stand_in else 30
    res: dict[str, Any] = {"epochs": epochs}
    try:
        fashion_mnist.load_data(download=False)
    except Exception as e:
        run.say(f"xpnet train: skipped, Fashion-MNIST not found locally (carry its four IDX files): {e}")
        res["xpnet_train"] = {"status": "skipped: no Fashion-MNIST"}
    else:
        argv = ["train", "--model", "A", "--epochs", str(epochs), "--backend", "cupy", "--no-plots"]
        argv += ["--verbose", "0", "--out", str(run.out / "e2e-run")]
        if run.stand_in:
            argv += ["--limit", "640"]
        code = "import sys\nfrom xpnet.cli import main\nsys.exit(main(sys.argv[1:]))"
        if run.stand_in:
            code = "import gpusim\ngpusim.install()\n" + code
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        t = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=box / 2
            )
        except subprocess.TimeoutExpired:
            res["xpnet_train"] = {"status": f"timeout after {box / 2:.0f} s"}
            run.say(f"xpnet train --model A: killed after {box / 2:.0f} s")
        else:
            wall = time.perf_counter() - t
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            res["xpnet_train"] = {"wall_s": wall, "returncode": proc.returncode, "tail": tail}
            if proc.returncode:
                res["xpnet_train"]["status"] = "failed"
                del res["xpnet_train"]["wall_s"]
            run.say(f"xpnet train --model A, {epochs} epochs: {wall:.2f} s end to end (exit {proc.returncode})")
            for ln in tail:
                run.say("   " + ln)
    try:
        wl = shrink(bench.WORKLOADS["A"]) if run.stand_in else bench.WORKLOADS["A"]
        t = time.perf_counter()
        j = JaxScan(wl, bench_data(wl, 4 * wl.batch if run.stand_in else N_IMAGES))
        j.train_epochs(epochs)
        wall = time.perf_counter() - t
        res["jax_scan"] = {"wall_s": wall, "note": "compile and data upload included; the jax import is not"}
        run.say(f"JAX lax.scan, model A, {epochs} epochs including compilation: {wall:.2f} s")
    except ImportError as e:
        res["jax_scan"] = {"status": f"skipped: {e}"}
        run.say(f"JAX: skipped ({e})")
    x, jx = res["xpnet_train"].get("wall_s"), res["jax_scan"].get("wall_s")
    if x and jx:
        res["xpnet_over_jax"] = x / jx
        run.say(f"xpnet train / JAX scan: {x / jx:.2f} (target <= 0.5)")
    return res


FUNCS: dict[str, Callable[[Run, float], dict[str, Any]]] = {
    "info": section_info,
    "tests": section_tests,
    "parity": section_parity,
    "identity": section_identity,
    "bench": section_bench,
    "e2e": section_e2e,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out", help="folder for the log and JSON")
    p.add_argument("--stand-in", action="store_true", help="run on the CPU stand-in gpusim, tiny sizes")
    p.add_argument("--quick", action="store_true", help="fewer steps for parity, identity and e2e (a smoke run)")
    p.add_argument(
        "--budget", type=float, default=None, help="seconds for the whole run (default 540; 2160 with --stand-in)"
    )
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    p.add_argument("--workloads", default=",".join(BENCH_ORDER), help=f"comma list of {', '.join(BENCH_ORDER)}")
    p.add_argument(
        "--stand-in-tests",
        default="tests/test_program.py",
        help="what pytest runs under --stand-in (the whole suite takes far longer there than a dry run may)",
    )
    a = p.parse_args(argv)
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    a.workloads = [w.strip().upper() for w in a.workloads.split(",") if w.strip()]
    bad = [s for s in a.sections if s not in SECTIONS] + [w for w in a.workloads if w not in BENCH_ORDER]
    if bad:
        p.error(f"unknown section or workload: {', '.join(bad)}")
    if a.budget is None:
        a.budget = 2160.0 if a.stand_in else 540.0
    if a.budget <= 0:
        p.error(f"--budget must be > 0, received {a.budget}")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = _cupy_problem(0)
    run = Run(Path(args.out), args.budget, args.stand_in)
    run.quick = args.quick
    run.record["args"] = {
        "sections": args.sections,
        "workloads": args.workloads,
        "budget": args.budget,
        "stand_in_tests": args.stand_in_tests.split(),
    }
    run.say(f"xpnet GPU check, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, writing to {run.out}")
    if problem:
        run.say(f"No usable CUDA device: {problem}")
        run.record["error"] = problem
        run.close()
        return 2
    for i, name in enumerate(args.sections):
        run_section(run, name, FUNCS[name], args.sections[i + 1 :])
    statuses = {k: v["status"] for k, v in run.record["sections"].items()}
    run.say(f"done in {time.perf_counter() - run.t0:.0f} s: {statuses}; log {run.log_path}, JSON {run.json_path}")
    run.close()
    return 0 if all(s == "ok" for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
