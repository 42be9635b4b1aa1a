#!/usr/bin/env python3
"""Run on a CUDA machine: the whole test suite with CuPy, a GPU-vs-CPU parity run, and a short benchmark.

    python scripts/gpu_check.py --out docs/gpu/gpu_check-DATE.md

Prints a summary table and writes it (Markdown) to --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xpnet
from xpnet.backend import _cupy_problem
from xpnet.parity import compare, synthetic_fashion_like, train_on


def run_tests() -> tuple[str, str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    return tail, proc.stdout[-6000:]


def load_data() -> tuple[np.ndarray, np.ndarray, str]:
    try:
        from xpnet.datasets import fashion_mnist

        (x, y), _ = fashion_mnist.load_data(download=False)
        return (x[5000:].reshape(-1, 784) / np.float32(255)).astype(np.float32), y[5000:], "Fashion-MNIST (55,000)"
    except Exception as e:  # no local copy on the GPU box: same shapes, random data
        x, y = synthetic_fashion_like(55000)
        return x, y, f"synthetic 55,000x784 ({type(e).__name__})"


def time_epochs(backend: str, workload: str, x: np.ndarray, y: np.ndarray, epochs: int = 3) -> float:
    """Median seconds per epoch inside one fit (data uploaded once), first epoch discarded as warm-up."""
    from xpnet import Dense, Dropout, Sequential
    from xpnet.callbacks import Callback

    if workload.startswith("A"):
        layers = [Dense(300, "relu", input_shape=(784,)), Dense(100, "relu"), Dense(10, "softmax")]
        opt, bs = "sgd", 1024 if workload == "A1024" else 32
    else:
        layers = [Dense(128, "relu", input_shape=(784,)), Dropout(0.2), Dense(10, "softmax")]
        opt, bs = "adam", 1000
    model = Sequential(layers, seed=0)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend)
    ops = model.ops
    assert ops is not None

    class EpochTimer(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            ops.synchronize()
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            ops.synchronize()
            self.times.append(time.perf_counter() - self.t0)

    timer = EpochTimer()
    model.fit(x, y, batch_size=bs, epochs=epochs + 1, verbose=0, callbacks=[timer])
    return float(np.median(timer.times[1:]))


def time_torch(workload: str, x: np.ndarray, y: np.ndarray, epochs: int = 3) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    dev = torch.device("cuda")
    nn = torch.nn
    if workload.startswith("A"):
        net = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        bs = 1024 if workload == "A1024" else 32
    else:
        net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
        opt = torch.optim.Adam(net.parameters(), lr=0.001, eps=1e-7)
        bs = 1000
    net.to(dev)
    X, Y = torch.from_numpy(x).to(dev), torch.from_numpy(y.astype(np.int64)).to(dev)
    lossf = nn.CrossEntropyLoss()
    n = X.shape[0]

    def epoch() -> None:
        perm = torch.randperm(n, device=dev)
        total = torch.zeros((), device=dev)
        for lo in range(0, n, bs):
            idx = perm[lo : lo + bs]
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(X[idx]), Y[idx])
            loss.backward()
            opt.step()
            total += loss.detach()
        total.item()

    epoch()
    times = []
    for _ in range(epochs):
        torch.cuda.synchronize()
        t = time.perf_counter()
        epoch()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="write the Markdown report here")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of one epoch of B and of A1024")
    args = ap.parse_args()
    problem = _cupy_problem(0)
    if problem:
        print(f"No usable CUDA device: {problem}")
        return 2
    ops = xpnet.get_backend("cupy")
    info = ops.info()
    lines = [
        f"# xpnet GPU check — {dt.date.today().isoformat()}",
        "",
        f"- device: {info.get('device')} ({info.get('memory_gib')} GiB), CUDA runtime {info.get('cuda_runtime')}",
        f"- cupy {info.get('cupy')}, numpy {np.__version__}, Python {platform.python_version()}, "
        f"xpnet {xpnet.__version__}",
        f"- host: {platform.node()} {os.cpu_count()} CPUs",
        "",
    ]
    steps = ["tests", "parity", "benchmark"]
    bar = tqdm(steps, desc="gpu check", unit="part", disable=None)
    for part in bar:
        bar.set_postfix_str(part)
        if part == "tests":
            if args.skip_tests:
                continue
            summary, log = run_tests()
            lines += ["## Test suite (CuPy backend included)", "", f"`pytest -q`: **{summary}**", ""]
            skipped = [ln for ln in log.splitlines() if ln.startswith(("SKIPPED", "FAILED", "ERROR"))]
            if skipped:
                lines += ["```", *skipped[:40], "```", ""]
        elif part == "parity":
            x, y = synthetic_fashion_like(6000)
            t = time.perf_counter()
            r = compare(train_on("cupy", x, y), train_on("numpy", x, y))
            lines += [
                "## GPU vs CPU parity (model B, Adam, batch 100, 300 steps, same seed)",
                "",
                "| quantity | value |",
                "|---|---|",
                *(f"| {k} | {v:.3g} |" for k, v in r.items()),
                f"| seconds | {time.perf_counter() - t:.1f} |",
                "",
            ]
        else:
            x, y, what = load_data()
            lines += [
                f"## Seconds per training epoch ({what}), median of 3 after a warm-up",
                "",
                "| workload | xpnet cupy | PyTorch CUDA | xpnet / PyTorch |",
                "|---|---|---|---|",
            ]
            for w in ("A", "A1024", "B"):
                ours = time_epochs("cupy", w, x, y)
                peer = time_torch(w, x, y)
                ratio = f"{ours / peer:.2f}" if peer else "n/a"
                lines.append(
                    f"| {w} | {ours:.3f} | {peer:.3f} | {ratio} |" if peer else f"| {w} | {ours:.3f} | n/a | n/a |"
                )
            lines.append("")
    if args.profile:
        import cProfile
        import pstats

        x, y, _ = load_data()
        for w in ("B", "A1024"):
            prof = cProfile.Profile()
            prof.enable()
            time_epochs("cupy", w, x, y, epochs=2)
            prof.disable()
            print(f"--- profile {w} (3 epochs in one fit, incl. upload) ---")
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
