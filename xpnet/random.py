"""Seeds. All random draws that must agree across backends happen on the host with NumPy.

`set_random_seed(s)` makes every model built afterwards reproducible; a model's own
`seed=` overrides it. Each model derives independent streams for initial weights, per-epoch
shuffles and dropout from its seed.
"""

from __future__ import annotations

import itertools

import numpy as np

_global_seed: int | None = None
_counter = itertools.count()


def set_random_seed(seed: int) -> None:
    """Seed every model created from now on (each gets its own stream: seed, 0), (seed, 1), ..."""
    global _global_seed, _counter
    _global_seed = int(seed)
    _counter = itertools.count()


def seed_state() -> tuple[int | None, itertools.count[int]]:
    """The global seed and its model counter, to put back later with `restore_seed_state`."""
    return _global_seed, _counter


def restore_seed_state(state: tuple[int | None, itertools.count[int]]) -> None:
    global _global_seed, _counter
    _global_seed, _counter = state


def next_model_seed() -> int:
    if _global_seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    ss = np.random.SeedSequence([_global_seed, next(_counter)])
    return int(ss.generate_state(1, np.uint64)[0])


def init_rng(seed: int, layer_index: int, param_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0x1, layer_index, param_index])


def shuffle_rng(seed: int, epoch: int) -> np.random.Generator:
    # one stream per epoch: an epoch's order depends on (seed, epoch) alone, so a resumed run matches
    return np.random.default_rng([seed, 0x2, epoch])


def layer_seed(seed: int, layer_index: int) -> int:
    return int(np.random.SeedSequence([seed, 0x3, layer_index]).generate_state(1, np.uint32)[0])
