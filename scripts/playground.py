"""TensorFlow-Playground-style demo: train a small MLP on a 2-D toy set and draw its decision boundary.

    python scripts/playground.py --dataset spiral            # tanh 32-32, Adam 0.003, 300 epochs: ~1 s, acc > 0.95
    python scripts/playground.py --dataset xor --noise 0.2 --activation relu --out xor.png
    (default output: runs/playground-<dataset>.png)

Writes a PNG (needs matplotlib: pip install 'xpnet[plot]') and prints train/test accuracy.
Inputs are used as drawn (about [-6, 6]): shrinking them to [-1, 1] leaves the first tanh
layer nearly linear, and the spiral then stalls near 60 % for hundreds of epochs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import xpnet
from xpnet import plots
from xpnet.datasets import playground

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def build(hidden: Sequence[int], activation: str, seed: int) -> xpnet.Sequential:
    """2 inputs → hidden layers → 1 sigmoid output (P(class 1))."""
    layers: list[xpnet.layers.Layer] = [xpnet.Dense(hidden[0], activation=activation, input_shape=(2,))]
    layers += [xpnet.Dense(h, activation=activation) for h in hidden[1:]]
    layers.append(xpnet.Dense(1, activation="sigmoid"))
    return xpnet.Sequential(layers, name="playground", seed=seed)


def train(
    dataset: str = "spiral",
    noise: float = 0.0,
    epochs: int = 300,
    samples: int = 1000,
    activation: str = "tanh",
    hidden: Sequence[int] = (32, 32),
    learning_rate: float = 0.003,
    batch_size: int = 16,
    seed: int = 0,
) -> tuple[xpnet.Sequential, dict[str, float], Split]:
    """Fit on half of `samples` points; returns (model, scores, data).

    scores: train_accuracy, test_accuracy, seconds; data: ((x_train, y_train), (x_test, y_test)),
    x float32 (n, 2), y int64 (n,) in {0, 1}.
    """
    data = playground.load_data(dataset, n_samples=samples, noise=noise, seed=seed)
    (x_train, y_train), (x_test, y_test) = data
    model = build(hidden, activation, seed)
    model.compile(optimizer=xpnet.optimizers.Adam(learning_rate), loss="binary_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - t0
    tr = model.evaluate(x_train, y_train, verbose=0, return_dict=True)
    te = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    assert isinstance(tr, dict) and isinstance(te, dict)
    scores = {"train_accuracy": tr["accuracy"], "test_accuracy": te["accuracy"], "seconds": seconds}
    return model, scores, data


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(playground.DATASETS), default="spiral")
    p.add_argument("--noise", type=float, default=0.0, help="0 to 0.5, as the playground's slider (default 0)")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--samples", type=int, default=1000, help="points in all; half are kept for testing")
    p.add_argument("--activation", choices=["tanh", "relu"], default="tanh")
    p.add_argument("--hidden", default="32,32", help="hidden layer widths, comma-separated (default 32,32)")
    p.add_argument("--learning-rate", type=float, default=0.003, help="Adam step size (default 0.003)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG path (default runs/playground-<dataset>.png)")
    args = p.parse_args(argv)

    hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    model, scores, (_, (x_test, y_test)) = train(
        args.dataset,
        args.noise,
        args.epochs,
        args.samples,
        args.activation,
        hidden,
        args.learning_rate,
        args.batch_size,
        args.seed,
    )
    acc = scores["test_accuracy"]
    print(
        f"{args.dataset} (noise {args.noise:g}), {args.activation} {hidden}, {args.epochs} epochs in "
        f"{scores['seconds']:.1f} s: train accuracy {scores['train_accuracy']:.3f}, test accuracy {acc:.3f}"
    )
    out = Path(args.out or f"runs/playground-{args.dataset}.png")  # runs/ is git-ignored, like xpnet train's
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"{args.dataset}, noise {args.noise:g}: {args.activation} {hidden}, test acc {acc:.3f}"
    try:
        plots.decision_boundary(model, x_test, y_test, out, title=title)
    except ImportError as e:
        print(f"no plot: {e}", file=sys.stderr)
        return 0
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
