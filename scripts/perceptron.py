"""Rosenblatt's perceptron: converges on a linearly separable set, never on XOR.

    python scripts/perceptron.py                       # 100 points, margin 0.1: converges in a few epochs
    python scripts/perceptron.py --activation sign --learning-rate 0.1 --out runs/perceptron-sign

Part 1 draws points in [-1, 1]² labelled by a line (keeping only points at least --margin from
it), trains `xpnet.perceptron.Perceptron` and prints the updates and epochs it took, next to
Novikoff's bound (R/γ)² on the number of updates. Part 2 trains the same unit on XOR's four
points: every epoch makes mistakes, it never converges. Writes perceptron_separable.png and
perceptron_xor.png (decision regions + mistakes per epoch) into --out (default runs/perceptron;
plots need matplotlib: pip install 'xpnet[plot]').
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import trange

from xpnet.perceptron import Perceptron

INSTALL_HINT = "pip install 'xpnet[plot]'"
TRUE_W, TRUE_B = np.array([1.0, -2.0]), 0.3  # the separating line x1 - 2 x2 + 0.3 = 0
XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0, 1, 1, 0])


def separable_data(n: int = 100, margin: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform in [-1, 1]², labelled 1 above-right of TRUE line, 0 below; none within `margin` of it."""
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    count = 0
    for _ in range(100):
        if count >= n:
            break
        x = rng.uniform(-1.0, 1.0, size=(2 * n, 2))
        dist = (x @ TRUE_W + TRUE_B) / np.linalg.norm(TRUE_W)
        x = x[np.abs(dist) >= margin]
        keep.append(x)
        count += len(x)
    if count < n:
        raise ValueError(f"margin {margin} leaves too few points of [-1, 1]² away from the line; try a smaller one")
    x = np.concatenate(keep)[:n]
    y = (x @ TRUE_W + TRUE_B >= 0).astype(np.int64)
    return x.astype(np.float32), y


def novikoff_bound(x: np.ndarray, y01: np.ndarray) -> float:
    """(R/γ)² for the true separator (TRUE_W, TRUE_B) on inputs augmented with a constant 1 (the bias)."""
    xa = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    wa = np.append(TRUE_W, TRUE_B)
    signs = 2 * y01 - 1
    gamma = float(np.min(signs * (xa @ wa)) / np.linalg.norm(wa))
    radius = float(np.max(np.linalg.norm(xa, axis=1)))
    return (radius / gamma) ** 2


def plot(
    p: Perceptron,
    x: np.ndarray,
    y: np.ndarray,
    path: str,
    title: str,
    true_line: bool,
) -> None:
    """Decision regions and line of `p` over the points, and mistakes per epoch as bars."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    lo, hi = x.min(axis=0) - 0.4, x.max(axis=0) + 0.4
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = np.column_stack([g1.ravel(), g2.ravel()]).astype(np.float32)
    u = p.decision_function(grid).reshape(g1.shape)
    pos = y == y.max()

    fig = Figure(figsize=(10, 4.2))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.15]})
    ax.contourf(g1, g2, (u >= 0).astype(float), levels=[-0.5, 0.5, 1.5], cmap=ListedColormap(["#f6c9c9", "#c9daf6"]))
    if u.min() < 0 < u.max():
        ax.contour(g1, g2, u, levels=[0.0], colors="black", linewidths=2)
    ax.plot([], [], color="black", lw=2, label="learned line")
    if true_line:
        xs = np.array([lo[0], hi[0]])
        ax.plot(xs, (TRUE_W[0] * xs + TRUE_B) / -TRUE_W[1], color="0.3", ls="--", lw=1.5, label="true line")
    ax.scatter(x[~pos, 0], x[~pos, 1], c="tab:red", marker="o", s=30, edgecolor="white", label=f"class {y.min()}")
    ax.scatter(x[pos, 0], x[pos, 1], c="tab:blue", marker="s", s=30, edgecolor="white", label=f"class {y.max()}")
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xlabel="x1", ylabel="x2", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)

    errors = p.errors_per_epoch_
    epochs = np.arange(1, len(errors) + 1)
    ax2.bar(epochs, errors, color=["tab:green" if e == 0 else "tab:orange" for e in errors])
    for e, v in zip(epochs, errors, strict=True):
        if v == 0:
            ax2.annotate("0: converged", (e, 0), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8)
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set(xlabel="epoch", ylabel="misclassified samples (online)", title="mistakes per epoch")
    ax2.set_xticks(epochs if len(epochs) <= 20 else np.linspace(1, len(epochs), 10).round())
    ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def plot_xor(snapshots: Sequence[list[np.ndarray]], errors: Sequence[int], path: str, title: str) -> None:
    """The XOR points classified by the weights after each of the last 4 epochs, and mistakes per epoch."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    g1, g2 = np.meshgrid(np.linspace(-0.5, 1.5, 200), np.linspace(-0.5, 1.5, 200))
    grid = np.column_stack([g1.ravel(), g2.ravel()])
    pos = XOR_Y == 1
    fig = Figure(figsize=(10, 5.6))
    gs = fig.add_gridspec(2, 4, height_ratios=[1, 0.9])
    first = len(snapshots) - min(4, len(snapshots))
    for col, epoch in enumerate(range(first, len(snapshots))):
        w, b = snapshots[epoch]
        ax = fig.add_subplot(gs[0, col])
        u = (grid @ w[:, 0].astype(np.float64) + float(b[0])).reshape(g1.shape)
        cmap = ListedColormap(["#f6c9c9", "#c9daf6"])
        ax.contourf(g1, g2, (u >= 0).astype(float), levels=[-0.5, 0.5, 1.5], cmap=cmap)
        if u.min() < 0 < u.max():
            ax.contour(g1, g2, u, levels=[0.0], colors="black", linewidths=1.5)
        wrong = ((XOR_X @ w[:, 0] + b[0]) >= 0) != pos
        ax.scatter(XOR_X[~pos, 0], XOR_X[~pos, 1], c="tab:red", s=60, edgecolor="white", zorder=3)
        ax.scatter(XOR_X[pos, 0], XOR_X[pos, 1], c="tab:blue", marker="s", s=60, edgecolor="white", zorder=3)
        ax.scatter(XOR_X[wrong, 0], XOR_X[wrong, 1], facecolors="none", edgecolors="black", s=260, lw=1.5, zorder=4)
        ax.set(xlim=(-0.5, 1.5), ylim=(-0.5, 1.5), xticks=[0, 1], yticks=[0, 1])
        ax.set_title(f"after epoch {epoch + 1}: {int(wrong.sum())} wrong", fontsize=9)
        ax.set_aspect("equal")
    ax2 = fig.add_subplot(gs[1, :])
    epochs = np.arange(1, len(errors) + 1)
    ax2.bar(epochs, errors, color="tab:orange")
    ax2.set(xlabel="epoch", ylabel="misclassified (online)", title="mistakes per epoch: never 0")
    ax2.set_xticks(epochs if len(epochs) <= 30 else np.linspace(1, len(epochs), 10).round())
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.grid(axis="y", alpha=0.3)
    fig.suptitle(title + "  (red ●: 0, blue ■: 1, ○: misclassified)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sign = args.activation == "sign"

    def labels(y01: np.ndarray) -> np.ndarray:
        return 2 * y01 - 1 if sign else y01

    x, y = separable_data(args.samples, args.margin, args.seed)
    sep = Perceptron(
        activation=args.activation,
        learning_rate=args.learning_rate,
        max_epochs=args.max_epochs,
        seed=args.seed,
        backend=args.backend,
    ).fit(x, labels(y), verbose=1)
    bound = novikoff_bound(x, y)
    w, b = sep.get_weights()
    print(
        f"separable ({args.samples} points, margin {args.margin:g}): "
        f"{'converged' if sep.converged_ else 'NOT converged'} after {sep.n_updates_} updates in {sep.epochs_} epochs "
        f"(Novikoff bound (R/γ)² = {bound:.0f} updates); training accuracy {sep.score(x, labels(y)):.3f}"
    )
    print(f"  mistakes per epoch: {sep.errors_per_epoch_}")
    print(
        f"  w = {[round(float(v), 3) for v in w[:, 0]]}, b = {b[0]:.3f}  "
        f"(the true line: w ∝ {TRUE_W.tolist()}, b ∝ {TRUE_B})"
    )

    # XOR one epoch at a time (partial_fit from zero weights is exactly fit), keeping the line after each epoch
    xor = Perceptron(
        activation=args.activation,
        learning_rate=args.learning_rate,
        max_epochs=args.xor_epochs,
        seed=args.seed,
        backend=args.backend,
    )
    snapshots = []
    for _ in trange(args.xor_epochs, desc="perceptron XOR", unit="epoch", disable=None):
        xor.partial_fit(XOR_X, labels(XOR_Y))
        snapshots.append(xor.get_weights())
        if xor.converged_:
            break
    print(
        f"XOR: {'converged' if xor.converged_ else 'NOT converged'} after {xor.epochs_} epochs "
        f"({xor.n_updates_} updates); final accuracy {xor.score(XOR_X, labels(XOR_Y)):.2f} "
        "(one line gets at most 3 of the 4 points right)"
    )
    print(f"  mistakes per epoch: {xor.errors_per_epoch_}")
    return {
        "separable": (sep, x, labels(y)),
        "xor": (xor, XOR_X, labels(XOR_Y)),
        "bound": bound,
        "snapshots": snapshots,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--margin", type=float, default=0.1, help="minimum distance of a point to the true line")
    p.add_argument("--activation", choices=["heaviside", "sign"], default="heaviside")
    p.add_argument("--learning-rate", type=float, default=1.0)
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--xor-epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default=None, help="numpy, cupy, strict, auto (default: XPNET_BACKEND or auto)")
    p.add_argument("--out", default=os.path.join("runs", "perceptron"), help="folder for the PNGs")
    args = p.parse_args(argv)

    try:
        res = run(args)
    except ValueError as e:
        p.error(str(e))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"plots skipped: matplotlib is not installed ({INSTALL_HINT})")
        return 0
    os.makedirs(args.out, exist_ok=True)
    sep, x, y = res["separable"]
    path1 = os.path.join(args.out, "perceptron_separable.png")
    title = f"separable: converged, {sep.n_updates_} updates, {sep.epochs_} epochs"
    plot(sep, x, y, path1, title if sep.converged_ else "separable: not converged", true_line=True)
    xor = res["xor"][0]
    path2 = os.path.join(args.out, "perceptron_xor.png")
    title = f"XOR: no line separates it, {xor.epochs_} epochs without converging"
    plot_xor(res["snapshots"], xor.errors_per_epoch_, path2, title)
    print(f"wrote {path1}\nwrote {path2}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
