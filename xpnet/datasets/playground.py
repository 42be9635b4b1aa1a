"""Two-class 2-D toy datasets from the TensorFlow Playground.

Ports of ``classify*Data`` in playground.tensorflow.org's ``dataset.ts``.
Every generator returns ``(x, y)`` with ``x`` float32 of shape
``(n_samples, 2)`` and ``y`` int64 of shape ``(n_samples,)`` in {0, 1}
(the playground's label -1 becomes 0), rows shuffled.

``noise`` is a fraction in [0, 1]; the playground's slider goes to 0.5
(50 %). As in the playground, for ``circle`` and ``xor`` the noise only
perturbs the point used to decide the label, so it shows up as label noise
near the boundary while the points stay where they were drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["DATASETS", "circle", "gaussian", "load_data", "spiral", "xor"]

Seed = int | np.random.Generator | None
XY = tuple[np.ndarray, np.ndarray]


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_args(n_samples: int, noise: float) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise TypeError(f"n_samples must be an int, got {n_samples!r}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if not _is_real(noise):
        raise TypeError(f"noise must be a number, got {noise!r}")
    if not 0.0 <= noise <= 1.0:  # also rejects NaN
        raise ValueError(f"noise must be in [0, 1], got {noise!r}")


def _finish(x: np.ndarray, positive: np.ndarray, rng: np.random.Generator) -> XY:
    order = rng.permutation(len(x))
    return x[order].astype(np.float32), positive[order].astype(np.int64)


def _halves(n_samples: int) -> tuple[int, int]:
    # The playground assumes an even count; give the odd one to class 1.
    return n_samples - n_samples // 2, n_samples // 2


def circle(n_samples: int = 500, noise: float = 0.0, seed: Seed = None) -> XY:
    """Disc of radius 2.5 (label 1) inside a ring 3.5..5 (label 0)."""
    _check_args(n_samples, noise)
    rng = np.random.default_rng(seed)
    radius = 5.0
    n_in, n_out = _halves(n_samples)
    r = np.concatenate([rng.uniform(0, radius * 0.5, n_in), rng.uniform(radius * 0.7, radius, n_out)])
    angle = rng.uniform(0, 2 * math.pi, n_samples)
    x = np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1)
    jitter = rng.uniform(-radius, radius, (n_samples, 2)) * noise
    positive = np.hypot(*(x + jitter).T) < radius * 0.5
    return _finish(x, positive, rng)


def xor(n_samples: int = 500, noise: float = 0.0, seed: Seed = None) -> XY:
    """Uniform in [-5, 5]^2 pushed 0.3 off the axes; label 1 where x*y >= 0."""
    _check_args(n_samples, noise)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 5, (n_samples, 2))
    x += np.where(x > 0, 0.3, -0.3)  # the padding keeps a gap along the axes
    jitter = rng.uniform(-5, 5, (n_samples, 2)) * noise
    noisy = x + jitter
    positive = noisy[:, 0] * noisy[:, 1] >= 0
    return _finish(x, positive, rng)


def gaussian(n_samples: int = 500, noise: float = 0.0, seed: Seed = None) -> XY:
    """Gaussians at (2, 2) (label 1) and (-2, -2) (label 0).

    The variance grows linearly with noise: 0.5 at 0, 4 at 0.5, 7.5 at 1.
    """
    _check_args(n_samples, noise)
    rng = np.random.default_rng(seed)
    std = math.sqrt(0.5 + noise * 7.0)
    n_pos, n_neg = _halves(n_samples)
    x = np.concatenate([rng.normal(2.0, std, (n_pos, 2)), rng.normal(-2.0, std, (n_neg, 2))])
    positive = np.arange(n_samples) < n_pos
    return _finish(x, positive, rng)


def spiral(n_samples: int = 500, noise: float = 0.0, seed: Seed = None) -> XY:
    """Two interleaved spirals (1.75 turns, radius 0..5), labels 1 and 0."""
    _check_args(n_samples, noise)
    rng = np.random.default_rng(seed)
    n_pos, n_neg = _halves(n_samples)
    arms = []
    for count, delta in ((n_pos, 0.0), (n_neg, math.pi)):
        i = np.arange(count) / count
        r = i * 5.0
        t = 1.75 * i * 2 * math.pi + delta
        arms.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
    x = np.concatenate(arms) + rng.uniform(-1, 1, (n_samples, 2)) * noise
    positive = np.arange(n_samples) < n_pos
    return _finish(x, positive, rng)


DATASETS: dict[str, Callable[..., XY]] = {
    "circle": circle,
    "xor": xor,
    "gaussian": gaussian,
    "spiral": spiral,
}


def load_data(
    name: str,
    n_samples: int = 500,
    noise: float = 0.0,
    test_ratio: float = 0.5,
    seed: Seed = None,
) -> tuple[XY, XY]:
    """Generate dataset ``name`` and split it into train and test parts.

    Returns ``((x_train, y_train), (x_test, y_test))``: x float32 (n, 2),
    y int64 (n,) in {0, 1}; the test part has ``round(n_samples *
    test_ratio)`` rows and both parts are non-empty.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown playground dataset {name!r}; choose from {sorted(DATASETS)}")
    if not _is_real(test_ratio):
        raise TypeError(f"test_ratio must be a number, got {test_ratio!r}")
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in (0, 1), got {test_ratio!r}")
    x, y = DATASETS[name](n_samples, noise, seed)  # rows come shuffled
    n_test = round(n_samples * test_ratio)
    if not 0 < n_test < n_samples:
        raise ValueError(f"n_samples={n_samples} with test_ratio={test_ratio} leaves an empty train or test set")
    n_train = n_samples - n_test
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])
