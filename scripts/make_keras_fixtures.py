"""Regenerate tests/data/keras_*: weight files and numbers written by Keras 3 itself.

The tests check xpnet against these without needing Keras. Run in an environment with Keras 3,
h5py and a backend, e.g.

    python -m venv /work/venv-keras && /work/venv-keras/bin/pip install keras h5py torch
    KERAS_BACKEND=torch /work/venv-keras/bin/python scripts/make_keras_fixtures.py

Writes, for an MLP (Dense layers), a small LeNet (Conv2D, MaxPooling2D, Flatten, Dense) and a
functional model with branches of different depths joined by Concatenate ("branches"):
  keras_<name>.weights.h5   model.save_weights after one epoch of training
  keras_<name>.json         model.to_json(), which xpnet.models.model_from_json reads
  keras_<name>.keras        model.save of the same weights (Keras 3's .keras zip), compiled with
                            Adam and sparse categorical cross-entropy; `--keras-files` writes
                            only these, from the committed .weights.h5 (any Keras backend)
  keras_<name>.npz          x, Keras's predict(x), the Keras version; for the MLP also
                            evaluate(..., sample_weight) numbers, one class-weighted SGD step
                            and the gelu activation on a grid
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def mlp() -> keras.Sequential:
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="mlp",
    )


def lenet() -> keras.Sequential:
    return keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(4, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="lenet",
    )


def branches() -> keras.Model:
    """Two branches of unequal depth: Keras lists the layers deepest first (d1, short, d2, ...), not in call order."""
    x = keras.Input((4,), name="x")
    short = keras.layers.Dense(3, name="short")(x)
    deep = keras.layers.Dense(3, name="d2")(keras.layers.Dense(3, activation="tanh", name="d1")(x))
    joined = keras.layers.Concatenate(name="joined")([short, deep])
    return keras.Model(x, keras.layers.Dense(3, activation="softmax", name="out")(joined), name="branches")


def write_branches(rng: np.random.Generator) -> None:
    xb = rng.normal(size=(16, 4)).astype("float32")
    write("branches", branches(), xb, rng.integers(0, 3, size=16), {})


def write(name: str, model: keras.Model, x: np.ndarray, y: np.ndarray, extra: dict[str, np.ndarray]) -> None:
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # trained, so the biases are not all zero
    model.save_weights(DATA / f"keras_{name}.weights.h5")
    (DATA / f"keras_{name}.json").write_text(model.to_json(indent=1) + "\n")
    pred = model.predict(x, verbose=0)
    np.savez(DATA / f"keras_{name}.npz", x=x, y=y, pred=pred, keras_version=np.array(keras.__version__), **extra)


def mlp_extras(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Keras's sample_weight / class_weight numbers for the MLP, from its saved weights."""
    model = mlp()
    model.load_weights(DATA / "keras_mlp.weights.h5")
    sw = np.linspace(0.0, 2.0, len(x)).astype("float32")
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], weighted_metrics=["accuracy"])
    weighted = model.evaluate(x, y, sample_weight=sw, batch_size=len(x), verbose=0, return_dict=True)
    plain = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    class_weight = {0: 0.5, 1: 2.0, 2: 1.0}
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    model.fit(x, y, class_weight=class_weight, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    grid = np.linspace(-8.0, 8.0, 161)
    as_keras = keras.ops.convert_to_tensor
    return {
        "sample_weight": sw,
        "weighted_eval": np.array([weighted[k] for k in ("loss", "accuracy", "weighted_accuracy")]),
        "plain_eval": np.array([plain["loss"], plain["accuracy"]]),
        "class_weight": np.array([class_weight[k] for k in range(3)]),
        "after_class_weighted_step": np.concatenate([w.ravel() for w in model.get_weights()]),
        "gelu_x": grid,
        "gelu_exact": keras.ops.convert_to_numpy(keras.activations.gelu(as_keras(grid), approximate=False)),
        "gelu_tanh": keras.ops.convert_to_numpy(keras.activations.gelu(as_keras(grid), approximate=True)),
    }


def check_xpnet_file(path: Path, kind: str, x: np.ndarray) -> np.ndarray:
    """Keras reads a .weights.h5 (or, for kind "model", a whole .keras) written by xpnet; its predictions for x."""
    if kind == "model":
        return keras.models.load_model(path).predict(x, verbose=0)
    model = {"mlp": mlp, "lenet": lenet}[kind]()
    model.load_weights(path)
    return model.predict(x, verbose=0)


def write_keras_files() -> None:
    """keras_<name>.keras for each fixture, from its committed .weights.h5: Keras's own model.save."""
    for name, make in (("mlp", mlp), ("lenet", lenet), ("branches", branches)):
        model = make()
        model.load_weights(DATA / f"keras_{name}.weights.h5")
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.save(DATA / f"keras_{name}.keras")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", nargs=3, metavar=("FILE", "KIND", "X_NPY"), help="Keras predicts from xpnet's file")
    parser.add_argument("--branches", action="store_true", help="write only the functional 'branches' fixture")
    parser.add_argument("--keras-files", action="store_true", help="write only the .keras files")
    args = parser.parse_args()
    if args.keras_files:
        write_keras_files()
        return
    if args.branches:
        keras.utils.set_random_seed(1)
        write_branches(np.random.default_rng(1))
        return
    if args.check:
        out = check_xpnet_file(Path(args.check[0]), args.check[1], np.load(args.check[2]))
        np.save(Path(args.check[0]).with_suffix(".pred.npy"), out)
        return
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 3, size=32)
    write("mlp", mlp(), x, y, {})
    extras = mlp_extras(x, y)
    np.savez(DATA / "keras_mlp.npz", **dict(np.load(DATA / "keras_mlp.npz")), **extras)
    xi = rng.normal(size=(16, 12, 12, 1)).astype("float32")
    yi = rng.integers(0, 3, size=16)
    write("lenet", lenet(), xi, yi, {})
    keras.utils.set_random_seed(1)
    write_branches(np.random.default_rng(1))
    write_keras_files()
    print(f"wrote keras_mlp, keras_lenet and keras_branches fixtures in {DATA} with Keras {keras.__version__}")


if __name__ == "__main__":
    main()
