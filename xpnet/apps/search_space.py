"""The search space of `grid_search` and `random_search`: lists of values, and the distributions
`uniform`, `loguniform` and `randint` random_search draws from; each trial's parameters and seed
depend on (seed, trial index) alone."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Distribution:
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def sample(self, rng: np.random.Generator) -> float | int:
        if self.integer:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def __repr__(self) -> str:
        kind = "randint" if self.integer else ("loguniform" if self.log else "uniform")
        return f"{kind}({self.low:g}, {self.high:g})"


def uniform(low: float, high: float) -> Distribution:
    """For random_search: a float drawn uniformly from [low, high]."""
    if not low < high:
        raise ValueError(f"uniform needs low < high, received {low}, {high}")
    return Distribution(float(low), float(high))


def loguniform(low: float, high: float) -> Distribution:
    """For random_search: a float whose log is uniform in [log low, log high] (learning rates, penalties)."""
    if not 0 < low < high:
        raise ValueError(f"loguniform needs 0 < low < high, received {low}, {high}")
    return Distribution(float(low), float(high), log=True)


def randint(low: int, high: int) -> Distribution:
    """For random_search: an int from low to high inclusive."""
    if not low <= high:
        raise ValueError(f"randint needs low <= high, received {low}, {high}")
    return Distribution(low, high, integer=True)


def check_space(space: dict[str, Any], grid: bool) -> None:
    if not isinstance(space, dict) or not space:
        raise ValueError("space must be a non-empty dict {parameter name: list of values}")
    for k, v in space.items():
        if not isinstance(k, str):
            raise TypeError(f"space keys must be parameter names (str), received {k!r}")
        if isinstance(v, Distribution):
            if grid:
                raise ValueError(f"grid_search needs a list of values for {k!r}, received {v!r}; use random_search")
        elif isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or len(v) == 0:
            raise ValueError(f"space[{k!r}] must be a non-empty list of values, received {v!r}")


def grid_of(space: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(space[k] for k in keys))]


def sample_trial(space: dict[str, Any], seed: int, index: int) -> dict[str, Any]:
    """Trial `index`'s parameters: depend on (seed, index) alone, so more trials extend the same sequence."""
    rng = np.random.default_rng([seed, 0x5EA6C4, index])
    out: dict[str, Any] = {}
    for k, v in space.items():
        out[k] = v.sample(rng) if isinstance(v, Distribution) else v[int(rng.integers(len(v)))]
    return out


def trial_seed(seed: int, index: int) -> int:
    """The seed trial `index` runs with: a function of (seed, index) only."""
    return int(np.random.SeedSequence([seed, 0x7121A1, index]).generate_state(1, np.uint32)[0])
