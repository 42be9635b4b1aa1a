"""Random hyperparameter search for a Fashion-MNIST MLP, on a subset, with a progress bar over trials.

    python scripts/search.py                                  # 8 trials, 1 process, 10,000 training images
    python scripts/search.py --trials 16 --jobs 2 --limit 5000 --epochs 3
    python scripts/search.py --out search.json                # also write every trial (params, scores, history)

Data as in the course: pixels / 255 (float32), validation = the first `--val` training images
(5,000 in the course), training = the next `--limit` images. The space: units, layers,
activation, optimizer, learning rate (log-uniform), dropout, L2 and batch size. The best
model is then evaluated on the 10,000 test images. Trial i is seeded from (--seed, i), so
the same command gives the same table with any --jobs.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from xpnet import argcheck
from xpnet.backend import get_backend
from xpnet.datasets import fashion_mnist
from xpnet.search import loguniform, mlp_builder, random_search

SPACE = {
    "units": [64, 128, 256],
    "layers": [1, 2],
    "activation": ["relu", "elu", "tanh"],
    "optimizer": ["sgd", "adam", "rmsprop"],
    "learning_rate": loguniform(1e-4, 1e-1),
    "dropout": [0.0, 0.2],
    "l2": [0.0, 1e-4],
    "batch_size": [32, 128],
}


def _jobs(text: str) -> int:
    """--jobs: a positive count, or -1 for one per CPU."""
    return -1 if text.strip() == "-1" else argcheck.positive_int(text)


def main(argv: list[str] | None = None) -> int:
    p = argcheck.OneLineParser(prog="search.py", description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=argcheck.positive_int, default=8, help="number of random trials (default 8)")
    p.add_argument("--jobs", type=_jobs, default=1, help="worker processes (default 1; -1: one per CPU)")
    p.add_argument(
        "--limit", type=argcheck.natural_int, default=10_000, help="training images used (default 10,000; 0: all)"
    )
    p.add_argument("--val", type=argcheck.positive_int, default=5_000, help="validation images (default 5,000)")
    p.add_argument("--epochs", type=argcheck.positive_int, default=3, help="epochs per trial (default 3)")
    p.add_argument("--seed", type=argcheck.natural_int, default=0, help="search seed (default 0)")
    p.add_argument("--backend", default="numpy", help="backend for every trial (default numpy)")
    p.add_argument("--out", metavar="PATH", help="write all trials as JSON")
    args = p.parse_args(argv)
    get_backend(args.backend)  # a wrong --backend fails now, once, not in every trial
    if args.out and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise ValueError(f"--out {args.out}: folder {os.path.dirname(os.path.abspath(args.out))} does not exist")

    (x_full, y_full), (x_test, y_test) = fashion_mnist.load_data()
    x_valid, y_valid = x_full[: args.val].astype(np.float32) / 255.0, y_full[: args.val]
    end = args.val + args.limit if args.limit > 0 else None
    x_train, y_train = x_full[args.val : end].astype(np.float32) / 255.0, y_full[args.val : end]
    print(
        f"Fashion-MNIST: {len(x_train):,} training / {len(x_valid):,} validation images; "
        f"{args.trials} trials × {args.epochs} epochs on {args.jobs} process(es)",
        flush=True,
    )

    t0 = time.perf_counter()
    result = random_search(
        mlp_builder((28, 28), 10, backend=args.backend),
        SPACE,
        x_train,
        y_train,
        n_trials=args.trials,
        validation_data=(x_valid, y_valid),
        epochs=args.epochs,
        n_jobs=args.jobs,
        seed=args.seed,
    )
    wall = time.perf_counter() - t0
    print(result.table())
    print(
        f"\n{args.trials} trials in {wall:.1f} s wall ({sum(r['seconds'] for r in result.rows):.1f} s of trials); "
        f"best val_accuracy {result.best_score:.4f} (trial {result.best['trial']}): {result.best_params}"
    )
    test = result.best_model.evaluate(x_test.astype(np.float32) / 255.0, y_test, verbose=0, return_dict=True)
    print(f"best model on the 10,000 test images: loss {test['loss']:.4f}, accuracy {test['accuracy']:.4f}")
    if args.out:
        rows = [{k: v for k, v in r.items()} for r in result.rows]
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "seconds": wall, "test": test, "rows": rows}, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(argcheck.run_script(main, "search.py"))
