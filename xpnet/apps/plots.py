"""Figures for training runs: learning curves, sample predictions, confusion matrix, 2-D decision boundaries.

matplotlib is optional (`pip install 'xpnet[plot]'`); it is imported inside each function so that
`import xpnet.plots` always works and only drawing needs it. Figures are written with the Agg
backend (a bare `Figure`, not pyplot), so no display is needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..teaching.evaluation import confusion_matrix

__all__ = [
    "INSTALL_HINT",
    "confusion",
    "confusion_matrix",
    "conv_filters",
    "curves",
    "decision_boundary",
    "have_matplotlib",
    "samples",
]

INSTALL_HINT = "pip install 'xpnet[plot]'"
PathLike = str | os.PathLike[str]


class Predictor(Protocol):
    """Anything with `predict(x (m, 2) float32) -> (m, k)`, e.g. a `Sequential`."""

    def predict(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray: ...


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(figsize: tuple[float, float]) -> Any:
    """A bare `Figure`: no pyplot, so no global state, no window and no backend switch."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"plotting needs matplotlib: {INSTALL_HINT}") from e
    return Figure(figsize=figsize)


def _save(fig: Any, path: PathLike) -> None:
    fig.savefig(os.fspath(path), dpi=120, bbox_inches="tight")


def curves(history: Mapping[str, Sequence[float]], path: PathLike, title: str | None = None) -> None:
    """Loss and accuracy per epoch, train vs validation, side by side.

    history: {"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]} (any subset).
    """
    fig = _figure((10, 4))  # first: raises the install hint when matplotlib is missing
    from matplotlib.ticker import MaxNLocator

    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for name, label, style in ((key, "train", "o-"), (f"val_{key}", "validation", "s--")):
            values = history.get(name)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(True, alpha=0.3)
        ax.legend()
        # Integer epochs only; a 1-epoch run would otherwise get ticks like 0.96, 0.98, ...
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def samples(
    x: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    path: PathLike,
    rows: int = 4,
    cols: int = 8,
    title: str | None = None,
) -> None:
    """Grid of the first rows*cols images with "pred (true)" labels; wrong predictions in red.

    x: (n, 28, 28) floats in [0, 1] or uint8; y_true, y_pred: (n,) class indices.
    """
    n = min(rows * cols, len(x))
    rows = max(1, -(-n // cols))
    fig = _figure((1.6 * cols, 1.9 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(x[i], cmap="binary")
        ok = int(y_pred[i]) == int(y_true[i])
        pred, true = class_names[int(y_pred[i])], class_names[int(y_true[i])]
        text = pred if ok else f"{pred}\n(true: {true})"
        ax.set_title(text, fontsize=8, color="black" if ok else "red")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def confusion(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], path: PathLike, title: str | None = None
) -> np.ndarray:
    """Draw the confusion matrix with counts in each cell; returns the (k, k) int64 counts."""
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, num_classes=k)
    fig = _figure((8, 7))
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            color = "white" if cm[i, j] > threshold else "black"  # legible on dark cells too
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color=color)
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(title or f"confusion matrix (accuracy {acc:.4f})")
    fig.tight_layout()
    _save(fig, path)
    return cm


def decision_boundary(
    model: Predictor,
    x: np.ndarray,
    y: np.ndarray,
    path: PathLike,
    title: str | None = None,
    resolution: int = 300,
) -> None:
    """Shade the model's P(class 1) over the plane with the 0.5 contour, and scatter the points.

    model: maps (m, 2) → (m, 1) sigmoid probabilities or (m, 2) softmax probabilities.
    x: float (n, 2); y: (n,) labels in {0, 1}.
    """
    fig = _figure((6, 6))
    ax = fig.subplots()
    x = np.asarray(x, dtype=np.float64)
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = 0.1 * (hi - lo) + 1e-3
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    xx, yy = np.meshgrid(gx, gy)
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
    out = model.predict(grid, batch_size=4096)
    if out.ndim != 2 or out.shape[1] not in (1, 2):
        raise ValueError(f"decision_boundary needs a binary model with 1 or 2 outputs, it gives shape {out.shape}")
    prob = out[:, -1].reshape(xx.shape)
    ax.contourf(xx, yy, prob, levels=np.linspace(0, 1, 21), cmap="RdBu", alpha=0.6)
    ax.contour(xx, yy, prob, levels=[0.5], colors="black", linewidths=1)
    labels = np.asarray(y).ravel()
    from matplotlib import colormaps

    cmap = colormaps["RdBu"]
    for cls in (0, 1):  # one scatter per class, so the legend names them
        pts = x[labels == cls]
        color = cmap(float(cls))
        ax.scatter(pts[:, 0], pts[:, 1], color=color, edgecolors="white", linewidths=0.5, s=18, label=f"class {cls}")
    ax.plot([], [], color="black", linewidth=1, label="P(class 1) = 0.5")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def conv_filters(model: Any, image: np.ndarray, path: PathLike, title: str | None = None) -> np.ndarray:
    """The first Conv2D layer's filters (top row) and the feature maps they give for one image (bottom row).

    model: a built `Sequential` with a Conv2D layer; image: one sample as the model takes it,
    e.g. (28, 28, 1), or (28, 28). Filters are drawn for the first input channel (kh, kw), each
    on its own symmetric color scale (red +, blue −); feature maps are the layer's output h
    (after its activation). Returns the feature maps (out_h, out_w, filters) float32.
    """
    from ..layers.conv import Conv2D

    index = next((i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)), None)
    if index is None:
        raise ValueError("conv_filters needs a model with a Conv2D layer")
    ops = model.ops
    x = np.asarray(image, dtype=model.dtype).reshape(1, *model.input_shape[1:])
    with ops.activate():
        h = ops.asarray(x)
        for layer in model.layers[: index + 1]:
            h = layer.forward(h, training=False)
        maps = np.array(ops.to_numpy(h)[0], dtype=np.float32)
    kernel = model.layers[index].get_weights()[0]  # (kh, kw, in, filters)
    k = kernel.shape[3]
    fig = _figure((1.5 * (k + 1), 3.9))
    axes = fig.subplots(2, k + 1, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].imshow(x[0].reshape(x.shape[1], x.shape[2], -1)[:, :, 0], cmap="binary")
    axes[0, 0].set_title("input", fontsize=8)
    axes[1, 0].axis("off")
    for f in range(k):
        w = kernel[:, :, 0, f]
        lim = float(np.abs(w).max()) or 1.0
        axes[0, f + 1].imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[0, f + 1].set_title(f"filter {f + 1}", fontsize=8)
        axes[1, f + 1].imshow(maps[:, :, f], cmap="viridis")
        axes[1, f + 1].set_title(f"feature map {f + 1}", fontsize=8)
    name = model.layers[index].name
    fig.suptitle(title or f"{name}: {k} filters {kernel.shape[0]}×{kernel.shape[1]} and their feature maps")
    fig.tight_layout()
    _save(fig, path)
    return maps
