"""Evaluate the course's model A on the Fashion-MNIST test set: per-class report, ROC AUC, ROC curves.

python scripts/evaluate_fashion.py                          # train 2 epochs (SGD lr 0.01, batch 32), then evaluate
python scripts/evaluate_fashion.py --epochs 30 --save-weights runs/A.weights.npz
python scripts/evaluate_fashion.py --weights runs/A.weights.npz   # no training: load, evaluate
python scripts/evaluate_fashion.py --help

Prints the streaming metrics of `model.evaluate` (accuracy, macro precision / recall / F1, AUC
from 200 score bins), then scikit-learn-style `classification_report` and the exact one-vs-rest
macro ROC AUC computed on `model.predict` output, and writes into --out: `report.txt` and
`roc.png` (one-vs-rest ROC curve per class; needs matplotlib, skipped with a note otherwise).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import xpnet
from xpnet import evaluation, experiments
from xpnet.datasets import DatasetError, fashion_mnist

METRICS = ["accuracy", "precision", "recall", "f1_score", "auc"]
EVAL_BATCH = 1000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="load these weights (from save_weights) instead of training")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    ap.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32, as in the course)")
    ap.add_argument("--learning-rate", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    ap.add_argument("--limit", type=int, default=None, help="train on only the first N training images")
    ap.add_argument("--backend", default="auto", help="auto | numpy | cupy | cupy:N (default auto)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--save-weights", help="write the trained weights here")
    ap.add_argument("--data-dir", help="folder holding the Fashion-MNIST files (else the usual places)")
    ap.add_argument("--out", default="runs/evaluate-fashion", help="folder for report.txt and roc.png")
    return ap.parse_args(argv)


def plot_roc(y_true: np.ndarray, probs: np.ndarray, names: Sequence[str], path: Path, title: str) -> bool:
    """One-vs-rest ROC curve of every class, whole and zoomed on the top-left corner; False without matplotlib."""
    try:  # lazily: plotting is optional
        from matplotlib import colormaps
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(12, 5.4))
    full, zoom = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    cmap = colormaps["tab10"]
    for c, name in enumerate(names):
        fpr, tpr, _ = evaluation.roc_curve(y_true == c, probs[:, c])
        area = evaluation.auc(fpr, tpr)
        for ax in (full, zoom):
            ax.plot(fpr, tpr, color=cmap(c % 10), lw=1.3, label=f"{name} (AUC {area:.4f})")
    full.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="chance (AUC 0.5)")
    full.set_xlim(-0.01, 1.0)
    full.set_ylim(0.0, 1.01)
    full.set_title("one-vs-rest ROC per class")
    zoom.set_xlim(0.0, 0.2)
    zoom.set_ylim(0.6, 1.0)
    zoom.set_title("zoom: false positive rate ≤ 0.2")
    zoom.legend(loc="lower right", fontsize=8)
    for ax in (full, zoom):
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(os.fspath(path), dpi=110, bbox_inches="tight")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = experiments.prepare_fashion_mnist(*fashion_mnist.load_data(data_dir=args.data_dir), limit=args.limit)
    x_test, y_test = data["test"]

    model = experiments.build_model("A", seed=args.seed)
    model.compile(
        optimizer=experiments.make_optimizer("sgd", args.learning_rate),
        loss=experiments.LOSS,
        metrics=METRICS,
        backend=args.backend,
    )
    if args.weights:
        model.load_weights(args.weights)
        source = f"weights {args.weights}"
    else:
        t0 = time.perf_counter()
        model.fit(
            *data["train"],
            batch_size=args.batch_size,
            epochs=args.epochs,
            validation_data=data["valid"],
            verbose=2,
        )
        n_train = data["train"][0].shape[0]
        source = f"{args.epochs} epochs of SGD lr {args.learning_rate}, batch {args.batch_size}, on {n_train} images"
        print(f"trained in {time.perf_counter() - t0:.1f} s", flush=True)
        if args.save_weights:
            model.save_weights(args.save_weights)

    streamed = model.evaluate(x_test, y_test, batch_size=EVAL_BATCH, verbose=0, return_dict=True)
    assert isinstance(streamed, dict)
    probs = model.predict(x_test, batch_size=EVAL_BATCH)
    y_pred = probs.argmax(axis=1)
    names = fashion_mnist.class_names
    report = evaluation.classification_report(y_test, y_pred, target_names=names)
    per_class_auc = evaluation.roc_auc(y_test, probs, average=None)
    macro_auc = float(np.mean(per_class_auc))

    lines = [
        f"model A ({source}), backend {model.ops.describe() if model.ops else '?'}, seed {args.seed}",
        f"Fashion-MNIST test set: {x_test.shape[0]} images",
        "",
        "model.evaluate (streamed on the device; AUC from 200 score bins):",
        "  " + "  ".join(f"{k} {v:.4f}" for k, v in streamed.items()),
        "",
        report,
        f"one-vs-rest ROC AUC (exact, from predict): macro {macro_auc:.4f}",
        "  " + "  ".join(f"{n}: {a:.4f}" for n, a in zip(names, per_class_auc, strict=True)),
    ]
    text = "\n".join(lines)
    print(text)
    (out / "report.txt").write_text(text + "\n", encoding="utf-8")
    roc_path = out / "roc.png"
    if plot_roc(
        y_test, probs, names, roc_path, f"Model A, Fashion-MNIST test: one-vs-rest ROC (macro AUC {macro_auc:.4f})"
    ):
        print(f"wrote {out / 'report.txt'} and {roc_path}")
    else:
        print(f"wrote {out / 'report.txt'}; no ROC plot: matplotlib is not installed (pip install 'xpnet[plot]')")
    return 0


def _entry() -> int:
    try:
        return main()
    except (DatasetError, xpnet.BackendUnavailableError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_entry())
