"""LeNet-5 fit and predict seconds on one checkout, for A/B runs of two checkouts in alternating processes.

    PYTHONPATH=<checkout> python scripts/lenet_timing.py

Prints two numbers: the best of 3 one-epoch fits over 6,400 synthetic 28x28 images at batch 32 (200
steps, after a warm-up fit), and one predict over 3,200 images at batch 32, in seconds. Uses only
the public API, so it runs on older checkouts too.
"""

from __future__ import annotations

import time

import numpy as np

import xpnet
from xpnet import Conv2D, Dense, Flatten, MaxPooling2D, Sequential


def main() -> None:
    model = Sequential(
        [
            Conv2D(6, 5, padding="same", activation="relu", input_shape=(28, 28, 1)),
            MaxPooling2D(2),
            Conv2D(16, 5, padding="same", activation="relu"),
            MaxPooling2D(2),
            Flatten(),
            Dense(120, activation="relu"),
            Dense(84, activation="relu"),
            Dense(10, activation="softmax"),
        ],
        seed=0,
    )
    model.compile(xpnet.optimizers.SGD(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    rng = np.random.default_rng(0)
    x = rng.random((6400, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 6400)
    model.fit(x[:640], y[:640], batch_size=32, epochs=1, verbose=0)
    fits = []
    for _ in range(3):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        fits.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    model.predict(x[:3200], batch_size=32)
    print(f"{min(fits):.3f} {time.perf_counter() - t0:.3f}")


if __name__ == "__main__":
    main()
