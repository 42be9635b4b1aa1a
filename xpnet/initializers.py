"""Weight initializers, drawn on the host with NumPy so every backend starts from the same numbers."""

from __future__ import annotations

import math

import numpy as np


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras: a (kh, kw, in, out) conv kernel has kh·kw·in and kh·kw·out."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], stddev: float) -> np.ndarray:
    # Keras' truncated normal: redraw beyond 2 sd; 0.8796 undoes the variance the cut removes.
    sd = stddev / 0.87962566103423978
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * sd


class Initializer:
    def __call__(self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        return self.draw(shape, rng).astype(dtype)

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Zeros(Initializer):
    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.zeros(shape)


class Ones(Initializer):
    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.full(shape, self.value)


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05) -> None:
        self.mean, self.stddev = float(mean), float(stddev)

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.normal(self.mean, self.stddev, shape)


class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05) -> None:
        self.minval, self.maxval = float(minval), float(maxval)

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.minval, self.maxval, shape)


class VarianceScaling(Initializer):
    """Var(w) = scale / fan, fan chosen by `mode`; uniform or truncated normal."""

    def __init__(self, scale: float, mode: str, distribution: str) -> None:
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        var = self.scale / max(1.0, fan)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return rng.uniform(-limit, limit, shape)
        return _truncated_normal(rng, shape, math.sqrt(var))

    def __repr__(self) -> str:
        return f"VarianceScaling(scale={self.scale}, mode={self.mode!r}, distribution={self.distribution!r})"


def GlorotUniform() -> VarianceScaling:
    return VarianceScaling(1.0, "fan_avg", "uniform")


def GlorotNormal() -> VarianceScaling:
    return VarianceScaling(1.0, "fan_avg", "normal")


def HeUniform() -> VarianceScaling:
    return VarianceScaling(2.0, "fan_in", "uniform")


def HeNormal() -> VarianceScaling:
    return VarianceScaling(2.0, "fan_in", "normal")


def LecunNormal() -> VarianceScaling:
    return VarianceScaling(1.0, "fan_in", "normal")


def LecunUniform() -> VarianceScaling:
    return VarianceScaling(1.0, "fan_in", "uniform")


_REGISTRY = {
    "zeros": Zeros,
    "ones": Ones,
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform,
    "he_normal": HeNormal,
    "lecun_normal": LecunNormal,
    "lecun_uniform": LecunUniform,
}


def get(identifier: str | Initializer) -> Initializer:
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]()
    raise ValueError(f"Unknown initializer {identifier!r}; known: {sorted(_REGISTRY)}")
