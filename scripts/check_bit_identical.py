"""Seeded training is bit-identical to a reference checkout, on NumPy at one BLAS thread.

    git worktree add /work/ref 3902efb              # the reference commit, once
    python scripts/check_bit_identical.py --baseline /work/ref
    python scripts/check_bit_identical.py --baseline . --tiny     # the script checking itself (CI)

Five seeded runs on small synthetic data, each in a fresh subprocess per checkout (so that
OPENBLAS_NUM_THREADS=1 and friends are set before NumPy loads, and each side imports its own
xpnet): model A (SGD), model B (Adam + Dropout), LeNet (SGD), a functional residual model
(RMSprop) and a float64 regression with SGD + momentum + L2. Each run's final weights, its
per-epoch losses and its predictions (batch 32, and one small batch) are compared byte for
byte. One line per model: "identical", or the first differing array with its max |diff|.
Exit status 1 on any difference, 2 when a side fails to run.

Only public names that exist on both sides are used: xpnet.Sequential, xpnet.Model,
xpnet.Input, layers, optimizers, regularizers, compile, fit, get_weights, predict.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MODELS = ("A", "B", "lenet", "residual", "sgd_momentum_l2_f64")
_ONE_THREAD = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
ROOT = Path(__file__).resolve().parent.parent


def _sizes(tiny: bool) -> dict[str, int]:
    """Samples, batch size and epochs: 2048 / 32 / 4 is 256 steps per model; tiny is 6 steps."""
    return {"n": 48, "batch": 16, "epochs": 2} if tiny else {"n": 2048, "batch": 32, "epochs": 4}


def _run_model(name: str, tiny: bool) -> dict[str, Any]:
    """Train model `name` with fixed seeds on NumPy; -> {array name: array} (weights, losses, predictions)."""
    import numpy as np

    import xpnet

    size = _sizes(tiny)
    rng = np.random.default_rng(1234)
    n = size["n"]
    if name in ("A", "B", "lenet"):
        x = rng.random((n, 28, 28), dtype=np.float32)
        teacher = rng.standard_normal((28 * 28, 10)).astype(np.float32)
        y: Any = np.argmax((x.reshape(n, -1) - 0.5) @ teacher, axis=1)
        if name == "lenet":
            x = x[..., None]
    else:
        x = rng.standard_normal((n, 20)).astype(np.float32)
        y = np.argmax(x @ rng.standard_normal((20, 3)).astype(np.float32), axis=1)
    if name == "sgd_momentum_l2_f64":
        x = x.astype(np.float64)
        y = (np.sin(x[:, :1]) + 0.5 * x[:, 1:2]).astype(np.float64)
    model, optimizer, loss = _build(name, xpnet)
    model.compile(optimizer, loss, backend="numpy")
    history = model.fit(x, y, batch_size=size["batch"], epochs=size["epochs"], verbose=0)
    out: dict[str, Any] = {f"weights[{i}]": w for i, w in enumerate(model.get_weights())}
    out["loss per epoch"] = np.asarray(history.history["loss"], dtype=np.float64)
    out["predict (batch 32)"] = model.predict(x, batch_size=32, verbose=0)
    out["predict (5 rows)"] = model.predict(x[:5], verbose=0)
    return out


def _build(name: str, xpnet: Any) -> tuple[Any, Any, str]:
    """-> (the model, its optimizer, its loss) of model `name`, seeded."""
    sparse = "sparse_categorical_crossentropy"
    if name == "A":
        middle = [xpnet.Dense(300, activation="relu"), xpnet.Dense(100, activation="relu")]
        return _classifier(xpnet, middle, 11), xpnet.optimizers.SGD(learning_rate=0.01), sparse
    if name == "B":
        middle = [xpnet.Dense(128, activation="relu"), xpnet.Dropout(0.2)]
        return _classifier(xpnet, middle, 12), xpnet.optimizers.Adam(learning_rate=0.001), sparse
    if name == "lenet":
        middle = [
            xpnet.Conv2D(6, (5, 5), padding="same", activation="relu", input_shape=(28, 28, 1)),
            xpnet.MaxPool2D(pool_size=(2, 2), strides=(2, 2)),
            xpnet.Conv2D(16, (5, 5), padding="same", activation="relu"),
            xpnet.MaxPool2D(pool_size=(2, 2), strides=(2, 2)),
            xpnet.Flatten(),
            xpnet.Dense(120, activation="relu"),
            xpnet.Dense(84, activation="relu"),
        ]
        return _classifier(xpnet, middle, 13, flatten=False), xpnet.optimizers.SGD(learning_rate=0.01), sparse
    if name == "residual":
        return _residual(xpnet)
    layers = [
        xpnet.Dense(32, activation="relu", kernel_regularizer=xpnet.regularizers.L2(1e-3), input_shape=(20,)),
        xpnet.Dense(1, kernel_regularizer=xpnet.regularizers.L2(1e-3)),
    ]
    optimizer = xpnet.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    return xpnet.Sequential(layers, seed=15, dtype="float64"), optimizer, "mse"


def _classifier(xpnet: Any, middle: list[Any], seed: int, flatten: bool = True) -> Any:
    """Flatten (28, 28) images (unless the first layer takes images), the middle layers, Dense 10 softmax."""
    head = [xpnet.Flatten(input_shape=(28, 28))] if flatten else []
    return xpnet.Sequential([*head, *middle, xpnet.Dense(10, activation="softmax")], seed=seed)


def _residual(xpnet: Any) -> tuple[Any, Any, str]:
    """Input 20 → Dense 32 relu → Dense 32 relu, added to its input → Dense 3 softmax."""
    inp = xpnet.Input(shape=(20,))
    h1 = xpnet.Dense(32, activation="relu")(inp)
    h2 = xpnet.Dense(32, activation="relu")(h1)
    out = xpnet.Dense(3, activation="softmax")(xpnet.Add()([h1, h2]))
    return (
        xpnet.Model(inp, out, seed=14),
        xpnet.optimizers.RMSprop(learning_rate=0.001),
        "sparse_categorical_crossentropy",
    )


def _worker(out_path: Path, models: list[str], tiny: bool) -> None:
    """Run in the checkout under test: train each model and save every array to one .npz (atomically)."""
    import numpy as np

    import xpnet

    arrays: dict[str, Any] = {"xpnet file": np.asarray(str(Path(xpnet.__file__).resolve()))}
    for name in models:
        for key, value in _run_model(name, tiny).items():
            arrays[f"{name}/{key}"] = np.asarray(value)
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out_path)


def run_side(root: Path, models: list[str], tiny: bool, out_dir: Path, label: str) -> dict[str, Any]:
    """Train the models with the xpnet of checkout `root` in a fresh one-thread process; -> the saved arrays."""
    import numpy as np

    out = out_dir / f"{label}.npz"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPNET_")}
    env.update({k: "1" for k in _ONE_THREAD})
    env.update({"PYTHONPATH": str(root), "PYTHONHASHSEED": "0", "XPNET_BACKEND": "numpy"})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(out), "--models", ",".join(models)]
    proc = subprocess.run(cmd + (["--tiny"] if tiny else []), cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"the {label} run ({root}) failed with exit status {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    with np.load(out, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    imported = Path(str(arrays.pop("xpnet file")))
    if not imported.is_relative_to(root.resolve()):
        raise RuntimeError(f"the {label} run imported xpnet from {imported}, not from {root}")
    return arrays


def first_difference(model: str, a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """None when every array of `model` is byte-identical in a and b; else what differs first, in words."""
    import numpy as np

    prefix = f"{model}/"
    names_a = [k.removeprefix(prefix) for k in a if k.startswith(prefix)]
    names_b = [k.removeprefix(prefix) for k in b if k.startswith(prefix)]
    if names_a != names_b:
        return f"different arrays: {names_a} vs {names_b}"
    for name in names_a:
        u, v = a[prefix + name], b[prefix + name]
        if u.dtype != v.dtype or u.shape != v.shape:
            return f"{name}: {u.dtype}{list(u.shape)} vs {v.dtype}{list(v.shape)}"
        if u.tobytes() != v.tobytes():
            diff = np.abs(u.astype(np.float64) - v.astype(np.float64))
            return f"{name}: max |diff| {float(np.nanmax(diff)) if diff.size else 0.0:.3g}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="root of the reference checkout (a git worktree)")
    parser.add_argument(
        "--current", type=Path, default=ROOT, help="root of the checkout under test (default: this one)"
    )
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {','.join(MODELS)}")
    parser.add_argument("--tiny", action="store_true", help="48 samples, 2 epochs of 3 steps (a quick self-check)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"--models: unknown model {unknown[0] if unknown else args.models!r}; choose from {MODELS}")
    if args.worker is not None:
        _worker(args.worker, models, args.tiny)
        return 0
    if args.baseline is None:
        parser.error("--baseline PATH is required (e.g. git worktree add /work/ref 3902efb)")
    for flag, root in (("--baseline", args.baseline), ("--current", args.current)):
        if not (root / "xpnet" / "__init__.py").is_file():
            parser.error(f"{flag}: {root} is not an xpnet checkout (no xpnet/__init__.py)")
    with tempfile.TemporaryDirectory(prefix="bit-identical-") as tmp:
        try:
            current = run_side(args.current.resolve(), models, args.tiny, Path(tmp), "current")
            baseline = run_side(args.baseline.resolve(), models, args.tiny, Path(tmp), "baseline")
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    differ = 0
    for model in models:
        what = first_difference(model, current, baseline)
        differ += what is not None
        count = sum(k.startswith(f"{model}/") for k in current)
        print(f"{model:22s} {f'identical ({count} arrays)' if what is None else 'DIFFERS: ' + what}")
    print(f"{len(models) - differ} of {len(models)} identical ({args.current} vs {args.baseline})")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
