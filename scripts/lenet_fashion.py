#!/usr/bin/env python
"""The course's LeNet-5 on Fashion-MNIST with the reference recipe, test accuracy after every epoch.

SGD lr 0.01, batch 32, 10 epochs; training = images 5,000-54,999 of the training file, validation =
the first 5,000 (pixels / 255), Glorot-uniform kernels, zero biases: the recipe PyTorch and Keras
were measured with in ../shared/REFERENCE.md. Writes one JSON per seed and prints a Markdown table.

    python scripts/lenet_fashion.py --seeds 0 1 --out docs/results/lenet
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import xpnet
from xpnet import cli, experiments
from xpnet.datasets import fashion_mnist


class TestEachEpoch(xpnet.Callback):
    """Evaluates the test set after each epoch (outside the timed training) and keeps the numbers."""

    def __init__(self, x: Any, y: Any) -> None:
        super().__init__()
        self.x, self.y = x, y
        self.rows: list[dict[str, float]] = []
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        seconds = time.perf_counter() - self._t0  # training + validation pass
        assert self.model is not None
        test = self.model.evaluate(self.x, self.y, batch_size=1000, verbose=0, return_dict=True)
        assert isinstance(test, dict)
        row = {"epoch": epoch + 1, **(logs or {}), "test_loss": test["loss"], "test_accuracy": test["accuracy"]}
        self.rows.append({**row, "seconds": seconds})
        print(
            f"seed {self.model.seed} epoch {epoch + 1}: loss {row['loss']:.4f} val_acc {row['val_accuracy']:.4f} "
            f"test_acc {row['test_accuracy']:.4f} ({seconds:.0f} s)",
            flush=True,
        )


def run(seed: int, data: dict[str, Any], epochs: int, backend: str) -> dict[str, Any]:
    model = experiments.build_model("lenet", seed=seed)
    model.compile(experiments.make_optimizer("sgd", 0.01), experiments.LOSS, experiments.METRICS, backend=backend)
    (xt, yt), (xv, yv), (xs, ys) = data["train"], data["valid"], data["test"]
    x = [experiments.as_model_input(model, a) for a in (xt, xv, xs)]
    cb = TestEachEpoch(x[2], ys)
    model.fit(x[0], yt, batch_size=32, epochs=epochs, validation_data=(x[1], yv), callbacks=[cb], verbose=0)
    return {"seed": seed, "epochs": cb.rows, "backend": model.ops.describe() if model.ops else backend}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--out", default="docs/results/lenet")
    args = p.parse_args()
    data = experiments.prepare_fashion_mnist(*fashion_mnist.load_data())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        r = run(seed, data, args.epochs, args.backend)
        r["machine"] = cli.machine_info(args.backend)
        r["command"] = f"python scripts/lenet_fashion.py --seeds {seed} --epochs {args.epochs} --backend {args.backend}"
        r["python"] = platform.python_version()
        (out / f"seed{seed}.json").write_text(json.dumps(r, indent=2) + "\n")
        runs.append(r)
    print("\n| epoch | " + " | ".join(f"seed {r['seed']} val acc | seed {r['seed']} test acc" for r in runs) + " |")
    print("|---|" + "---|---|" * len(runs))
    for e in range(args.epochs):
        cells = [f"{r['epochs'][e]['val_accuracy']:.4f} | {r['epochs'][e]['test_accuracy']:.4f}" for r in runs]
        print(f"| {e + 1} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
