"""Universal approximation: an MLP with tanh hidden layers and a linear output fits y = sin(x) on [-π, π].

    python scripts/regression_mlp.py                # tanh 32-32 → linear, full-batch Adam, mse, 2000 epochs: < 1 s
    python scripts/regression_mlp.py --noise 0.1 --hidden 8 --out runs/sin-noisy

Prints the MSE against the true curve on a dense grid and writes regression_mlp.png (fit vs
truth, loss per epoch) into --out (default runs/regression_mlp; plots need matplotlib:
pip install 'xpnet[plot]'). A sum of enough shifted, scaled tanh steps approximates any continuous
function on an interval; one hidden layer suffices in theory, two make the fit easier.
Full-batch Adam (one step per epoch on all 200 points) reaches an MSE of about 1e-6 against
sin (seeds 0-5: 1e-6 to 1e-5, < 1 s); mini-batches of 32 for 300 epochs stall near 1e-4. The
spikes in the loss curve are Adam's: as the gradient shrinks its step, normalised by √v, stays
near the learning rate, overshoots, and the loss recovers within a few dozen epochs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import xpnet
from xpnet import argcheck
from xpnet.backend import get_backend

INSTALL_HINT = "pip install 'xpnet[plot]'"


class EpochBar(xpnet.Callback):
    """One tqdm bar over all epochs (the model's own verbose=1 draws a bar per epoch)."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self.bar: Any = None

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.epochs, desc="fit sin(x)", unit="epoch", dynamic_ncols=True, disable=None)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.bar.set_postfix_str(f"mse {(logs or {}).get('loss', float('nan')):.2e}", refresh=False)
        self.bar.update(1)

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        self.bar.close()


def make_data(n: int = 200, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n points x ~ U[-π, π] as (n, 1) float32 and y = sin(x) + N(0, noise²) as (n, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-math.pi, math.pi, size=(n, 1)).astype(np.float32)
    y = np.sin(x) + noise * rng.standard_normal((n, 1)).astype(np.float32)
    return x, y.astype(np.float32)


def build_model(hidden: Sequence[int] = (32, 32), seed: int = 0) -> xpnet.Sequential:
    """1 input → tanh hidden layers → 1 linear output."""
    layers: list[xpnet.layers.Layer] = [xpnet.Dense(hidden[0], activation="tanh", input_shape=(1,))]
    layers += [xpnet.Dense(h, activation="tanh") for h in hidden[1:]]
    layers.append(xpnet.Dense(1, activation="linear"))
    return xpnet.Sequential(layers, name="sin_mlp", seed=seed)


def train(
    hidden: Sequence[int] = (32, 32),
    epochs: int = 2000,
    n: int = 200,
    noise: float = 0.0,
    learning_rate: float = 0.005,
    batch_size: int | None = None,
    seed: int = 0,
    verbose: int = 0,
    backend: str | None = None,
) -> tuple[xpnet.Sequential, dict[str, Any]]:
    """Fit sin on n points with Adam and the MSE loss; batch_size None: all n points per step. -> (model, result).

    result: "mse_truth" (MSE against sin on 1,000 grid points in [-π, π]), "train_mse", "seconds",
    "loss" (per-epoch training loss), "x", "y" (the training data).
    """
    x, y = make_data(n, noise, seed)
    model = build_model(hidden, seed)
    model.compile(optimizer=xpnet.optimizers.Adam(learning_rate), loss="mse", backend=backend)
    callbacks = [EpochBar(epochs)] if verbose else []
    t0 = time.perf_counter()
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size or n, verbose=0, callbacks=callbacks)
    seconds = time.perf_counter() - t0
    grid = np.linspace(-math.pi, math.pi, 1000, dtype=np.float32).reshape(-1, 1)
    mse_truth = float(np.mean((model.predict(grid)[:, 0] - np.sin(grid[:, 0])) ** 2))
    result = {
        "mse_truth": mse_truth,
        "train_mse": float(history.history["loss"][-1]),
        "seconds": seconds,
        "loss": history.history["loss"],
        "x": x,
        "y": y,
    }
    return model, result


def plot(model: xpnet.Sequential, result: dict[str, Any], path: str, title: str) -> None:
    from matplotlib.figure import Figure

    grid = np.linspace(-math.pi, math.pi, 400, dtype=np.float32).reshape(-1, 1)
    fig = Figure(figsize=(10, 3.8))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    ax.scatter(result["x"][:, 0], result["y"][:, 0], s=8, color="0.6", label="training points")
    ax.plot(grid[:, 0], np.sin(grid[:, 0]), color="black", lw=2, label="sin(x)")
    ax.plot(grid[:, 0], model.predict(grid)[:, 0], color="tab:red", lw=2, ls="--", label="MLP")
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3)
    ax2.semilogy(np.arange(1, len(result["loss"]) + 1), result["loss"], color="tab:blue")
    ax2.set(xlabel="epoch", ylabel="training MSE (log)", title="loss per epoch")
    ax2.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _widths(text: str) -> list[int]:
    """--hidden: comma-separated positive layer widths, e.g. 32,32."""
    try:
        widths = [int(h) for h in text.split(",") if h.strip()]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"must be positive widths separated by commas (e.g. 32,32), received {text!r}")
    return widths


def main(argv: Sequence[str] | None = None) -> int:
    p = argcheck.OneLineParser(prog="regression_mlp.py", description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=_widths, default="32,32", help="hidden tanh layer widths, comma-separated (32,32)")
    p.add_argument("--epochs", type=argcheck.positive_int, default=2000)
    p.add_argument("--samples", type=argcheck.positive_int, default=200)
    p.add_argument(
        "--noise", type=argcheck.natural_float, default=0.0, help="standard deviation of noise added to sin(x)"
    )
    p.add_argument("--learning-rate", type=argcheck.positive_float, default=0.005, help="Adam step size (0.005)")
    p.add_argument("--batch-size", type=argcheck.positive_int, default=None, help="default: all samples (full-batch)")
    p.add_argument("--seed", type=argcheck.natural_int, default=0)
    p.add_argument("--backend", default=None, help="numpy, cupy, auto, ... (default: XPNET_BACKEND or auto)")
    p.add_argument("--out", default=os.path.join("runs", "regression_mlp"), help="folder for the PNG")
    args = p.parse_args(argv)
    if args.backend is not None:
        get_backend(args.backend)  # a wrong --backend fails before training

    hidden = args.hidden
    model, res = train(
        hidden,
        args.epochs,
        args.samples,
        args.noise,
        args.learning_rate,
        args.batch_size,
        args.seed,
        verbose=1,
        backend=args.backend,
    )
    arch = " → ".join(["1", *(f"{h} tanh" for h in hidden), "1 linear"])
    print(f"{arch}: {model.count_params()} parameters, {args.epochs} epochs in {res['seconds']:.1f} s")
    print(f"training MSE {res['train_mse']:.2e}; MSE against sin(x) on [-π, π]: {res['mse_truth']:.2e}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"plots skipped: matplotlib is not installed ({INSTALL_HINT})")
        return 0
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "regression_mlp.png")
    noise = f", noise {args.noise:g}" if args.noise else ""
    plot(model, res, path, f"MLP {hidden} tanh fit of sin(x){noise}: MSE vs sin {res['mse_truth']:.1e}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(argcheck.run_script(main, "regression_mlp.py"))
