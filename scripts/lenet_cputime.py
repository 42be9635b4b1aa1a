#!/usr/bin/env python
"""LeNet-5 on one BLAS thread: xpnet against PyTorch eager in process CPU time, interleaved.

For a machine shared with other work, where wall-clock times are noise: every measurement is
`time.process_time()` of this process at one thread (XPNET_BLAS_THREADS=1, torch.set_num_threads(1),
threadpoolctl), xpnet and PyTorch alternate within each repeat, and the report gives the median
and range of the per-repeat ratios. Training: `--steps` steps of batch 32 (an epoch is 1,719);
inference: `predict` over the 10,000 test images at batch 32 and 10,000.

    XPNET_BLAS_THREADS=1 python scripts/lenet_cputime.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("XPNET_BLAS_THREADS", "1")

import numpy as np

import xpnet
from xpnet import experiments
from xpnet.datasets import fashion_mnist


def cpu(fn: Callable[[], Any]) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def xpnet_model() -> xpnet.Sequential:
    model = experiments.build_model("lenet", seed=0)
    model.compile(xpnet.optimizers.SGD(0.01), "sparse_categorical_crossentropy", ["accuracy"], backend="numpy")
    return model


def torch_model(torch: Any) -> tuple[Any, Any]:
    nn = torch.nn
    torch.manual_seed(0)
    mods = [nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Conv2d(6, 16, 5, padding=2), nn.ReLU()]
    mods += [nn.MaxPool2d(2, 2), nn.Flatten(), nn.Linear(784, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU()]
    mods += [nn.Linear(84, 10)]
    for m in mods:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    model = nn.Sequential(*mods)
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def torch_epoch(torch: Any, model: Any, opt: Any, X: Any, Y: Any, gen: Any) -> None:
    """The loop of scripts/benchmark.py's TorchContender: shuffled batches of 32, loss and accuracy sums."""
    F = torch.nn.functional
    n = X.shape[0]
    model.train()
    perm = torch.randperm(n, generator=gen)
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.int64)
    for lo in range(0, n, 32):
        idx = perm[lo : lo + 32]
        xb, yb = X.index_select(0, idx), Y.index_select(0, idx)
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            loss_sum += loss.detach() * xb.shape[0]
            correct += (out.argmax(1) == yb).sum()
    float(loss_sum)


def torch_predict(torch: Any, model: Any, x: Any, batch: int) -> None:
    model.eval()
    with torch.inference_mode():
        out = torch.empty((x.shape[0], 10))
        for lo in range(0, x.shape[0], batch):
            out[lo : lo + batch] = torch.softmax(model(x[lo : lo + batch]), dim=1)
        out.numpy()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}–{max(values):.3f}]"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200, help="training steps of batch 32 per measurement")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-predict", action="store_true")
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args()

    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    (xtr, ytr), (xte, _) = fashion_mnist.load_data(download=False)
    n = 32 * args.steps
    x = (xtr[:n] / np.float32(255.0)).astype(np.float32)
    y = ytr[:n].astype(np.int64)
    xt = (xte / np.float32(255.0)).astype(np.float32)
    model = xpnet_model()
    xn, xtn = x.reshape(-1, 28, 28, 1), xt.reshape(-1, 28, 28, 1)
    jobs: dict[str, Callable[[], Any]] = {
        "xpnet train": lambda: model.fit(xn, y, batch_size=32, epochs=1, verbose=0),
    }
    if not args.no_predict:
        jobs["xpnet predict b32"] = lambda: model.predict(xtn, batch_size=32)
        jobs["xpnet predict b10000"] = lambda: model.predict(xtn, batch_size=10000)
    if not args.no_torch:
        import torch

        torch.set_num_threads(1)
        tm, opt = torch_model(torch)
        X, Y = torch.from_numpy(x.reshape(-1, 1, 28, 28)), torch.from_numpy(y)
        XT, gen = torch.from_numpy(xt.reshape(-1, 1, 28, 28)), torch.Generator().manual_seed(0)
        jobs["torch train"] = lambda: torch_epoch(torch, tm, opt, X, Y, gen)
        if not args.no_predict:
            jobs["torch predict b32"] = lambda: torch_predict(torch, tm, XT, 32)
            jobs["torch predict b10000"] = lambda: torch_predict(torch, tm, XT, 10000)
    for fn in jobs.values():  # warm-up: allocations, BLAS and oneDNN first calls
        fn()
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(args.repeats):
        for k, fn in jobs.items():
            times[k].append(cpu(fn))
    print(f"CPU seconds, {args.repeats} repeats, one thread; training: {args.steps} steps of 32")
    for k, v in times.items():
        per = f"{statistics.median(v) / args.steps * 1e3:.2f} ms/step" if "train" in k else ""
        print(f"  {k:22s} median {statistics.median(v):.3f} s  range {min(v):.3f}–{max(v):.3f}  {per}")
    if not args.no_torch:
        print("xpnet ÷ PyTorch (time ratio per repeat; < 1 is faster): median [min–max]")
        for what in ("train", "predict b32", "predict b10000"):
            if f"xpnet {what}" in times:
                r = [a / b for a, b in zip(times[f"xpnet {what}"], times[f"torch {what}"], strict=True)]
                print(f"  {what:16s} {spread(r)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
