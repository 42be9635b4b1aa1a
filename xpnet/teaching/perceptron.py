"""Rosenblatt's perceptron: threshold logic units (TLUs) trained with the perceptron rule.

A TLU computes u = x·w + b and outputs a step of u. `Perceptron(units=k)` is a layer of k
independent TLUs sharing the inputs (one per output column), trained online, one sample at a
time, with

    w ← w + η (y − ŷ) x,        b ← b + η (y − ŷ)

which changes nothing when the prediction ŷ is right. On a linearly separable set the rule
stops after a finite number of updates (Novikoff's convergence theorem); on XOR no line
separates the classes, every epoch makes at least one mistake and training never converges:
the reason multilayer perceptrons (trained by backpropagation, see `Sequential`) exist.

Labels and outputs:

- ``activation="heaviside"`` (or ``"step"``): ŷ = 1 where u ≥ 0, else 0; labels must be 0/1.
- ``activation="sign"``: ŷ = +1 where u ≥ 0, else −1 (never 0, unlike `numpy.sign`); labels
  must be −1/+1. A 0 label is rejected rather than read as −1: it is ambiguous (is it the
  negative class of 0/1 labels, or sgn(0)?). Pass ``2 * y - 1`` or use "heaviside" for 0/1 labels.
  With ±1 labels y − ŷ is ±2 on a mistake, so each update is 2η·y·x.

y is (n,) or (n, 1) for one unit and (n, units) for several (a one-hot / 0-1 matrix, or ±1 for
"sign"); with units > 1 a 1-D integer y is read as class indices 0..units-1 and expanded to
one-hot (heaviside) or one-vs-rest ±1 (sign) targets.

Weights start at zero, so η only scales w and b: the sequence of predictions, hence the number
of updates, is the same for any η > 0 (up to floating-point ties). All math runs on the chosen
backend through `ops.xp`; the host reads one mistake count per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._checks import numeric_array, require_finite
from ..backend import Ops, get_backend
from ..random import next_model_seed, shuffle_rng

__all__ = ["Perceptron"]

Array = Any
_ACTIVATIONS = {"heaviside": "heaviside", "step": "heaviside", "sign": "sign"}


class Perceptron:
    """A layer of `units` threshold logic units trained with Rosenblatt's perceptron rule.

    units: number of TLUs (output columns). activation: "heaviside" (0/1) or "sign" (−1/+1).
    learning_rate: η > 0. max_epochs: passes over the data at most; training stops early after
    an epoch without mistakes. shuffle: visit samples in a new random order each epoch (drawn
    on the host from `seed`, so every backend sees the same order). backend: "numpy", "cupy",
    "strict", "auto", an `Ops`, or None for the current default. dtype: "float32" or "float64".

    After `fit`: ``w`` (n_features, units) and ``b`` (units,) on the backend (`get_weights()`
    gives NumPy copies), ``n_updates_`` (samples that changed the weights), ``epochs_``,
    ``converged_`` (an epoch made no mistake, so every training point is classified correctly)
    and ``errors_per_epoch_`` (misclassified samples met during each epoch, as seen online).
    A sample counts as one mistake (and one update) when any of its units is wrong.
    """

    def __init__(
        self,
        units: int = 1,
        activation: str = "heaviside",
        learning_rate: float = 1.0,
        max_epochs: int = 100,
        shuffle: bool = True,
        seed: int | None = None,
        backend: str | Ops | None = None,
        dtype: str = "float32",
    ) -> None:
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units must be a positive integer, received {units!r}")
        if not isinstance(activation, str) or activation.lower() not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be 'heaviside' (0/1 outputs) or 'sign' (−1/+1 outputs), received {activation!r}"
            )
        lr = float(learning_rate)
        if not np.isfinite(lr) or lr <= 0.0:
            raise ValueError(f"learning_rate must be a positive number, received {learning_rate!r}")
        if isinstance(max_epochs, bool) or not isinstance(max_epochs, (int, np.integer)) or max_epochs < 1:
            raise ValueError(f"max_epochs must be a positive integer, received {max_epochs!r}")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', received {dtype!r}")
        self.units = int(units)
        self.activation = _ACTIVATIONS[activation.lower()]
        self.learning_rate = lr
        self.max_epochs = int(max_epochs)
        self.shuffle = bool(shuffle)
        self.seed = int(seed) if seed is not None else next_model_seed()
        self.dtype = dtype
        self.ops: Ops = get_backend(backend)
        self.w: Array | None = None
        self.b: Array | None = None
        self.n_features_: int | None = None
        self._reset_counters()

    def __repr__(self) -> str:
        return (
            f"Perceptron(units={self.units}, activation={self.activation!r}, learning_rate={self.learning_rate}, "
            f"max_epochs={self.max_epochs}, backend={self.ops.describe()!r})"
        )

    def _reset_counters(self) -> None:
        self.n_updates_ = 0
        self.epochs_ = 0
        self.converged_ = False
        self.errors_per_epoch_: list[int] = []

    def _check_x(self, x: Any, what: str) -> Array:
        """-> x on the backend as (n, n_features) in self.dtype; host input is validated first."""
        ops = self.ops
        if ops.is_native(x) and not isinstance(x, np.ndarray):
            if x.ndim != 2:
                raise ValueError(f"{what}: x must be 2-D (n_samples, n_features), received shape {tuple(x.shape)}")
            a_dev = x if x.dtype == getattr(ops.xp, self.dtype) else ops.xp.astype(x, getattr(ops.xp, self.dtype))
            self._check_features(int(x.shape[1]), what)
            return a_dev
        a = numeric_array(x, what, "x")
        if a.ndim != 2:
            hint = " (for a single feature use x.reshape(-1, 1))" if a.ndim == 1 else ""
            raise ValueError(f"{what}: x must be 2-D (n_samples, n_features), received shape {a.shape}{hint}")
        require_finite(a, what, "x")
        self._check_features(a.shape[1], what)
        return ops.asarray(np.ascontiguousarray(a, dtype=self.dtype))

    def _check_features(self, d: int, what: str) -> None:
        if self.n_features_ is not None and what != "fit" and d != self.n_features_:
            raise ValueError(f"{what}: the perceptron was trained on {self.n_features_} features, x has {d}")

    def _check_y(self, y: Any, n: int, what: str) -> np.ndarray:
        """-> host targets (n, units) in self.dtype, holding 0/1 (heaviside) or −1/+1 (sign)."""
        if y is None:
            raise ValueError(f"{what}: y (the labels) is required")
        if hasattr(y, "get") and type(y).__module__.split(".")[0] == "cupy":
            y = y.get()
        t = numeric_array(y, what, "y")
        if t.shape[0] != n:
            raise ValueError(f"{what}: x has {n} samples but y has {t.shape[0]} labels")
        require_finite(t, what, "y")
        k = self.units
        if t.ndim == 1 and k > 1:
            # class indices -> one-hot (heaviside) or one-vs-rest ±1 (sign)
            if not np.all(t == np.round(t)) or t.min() < 0 or t.max() >= k:
                raise ValueError(
                    f"{what}: a 1-D y with units={k} must hold class indices 0..{k - 1}; "
                    f"received values in [{t.min()}, {t.max()}]. Or pass y as a (n, {k}) matrix."
                )
            onehot = np.zeros((n, k), self.dtype)
            onehot[np.arange(n), t.astype(np.int64)] = 1
            return onehot if self.activation == "heaviside" else 2 * onehot - 1
        if t.ndim == 1:
            t = t.reshape(n, 1)
        if t.ndim != 2 or t.shape[1] != k:
            raise ValueError(
                f"{what}: y must have shape ({n},) or ({n}, 1) for one unit, or ({n}, {k}) for units={k}; "
                f"received {t.shape}"
            )
        allowed = (0, 1) if self.activation == "heaviside" else (-1, 1)
        bad = ~np.isin(t, allowed)
        if bad.any():
            found = np.unique(t[bad])[:5].tolist()
            if self.activation == "heaviside":
                hint = "heaviside labels must be 0 or 1 (use activation='sign' for −1/+1 labels)"
            else:
                hint = "sign labels must be −1 or +1 (for 0/1 labels pass 2 * y - 1, or use activation='heaviside')"
            raise ValueError(f"{what}: {hint}; y contains {found}")
        return t.astype(self.dtype)

    def _step(self, u: Array) -> Array:
        xp = self.ops.xp
        h = xp.astype(u >= 0.0, u.dtype)
        return h if self.activation == "heaviside" else 2.0 * h - 1.0

    def _build(self, n_features: int) -> None:
        xp, ops = self.ops.xp, self.ops
        dt = getattr(xp, self.dtype)
        self.n_features_ = int(n_features)
        self.w = ops.zeros((n_features, self.units), dt)
        self.b = ops.zeros((self.units,), dt)

    def _require_fitted(self, what: str) -> tuple[Array, Array]:
        if self.w is None or self.b is None:
            raise ValueError(f"{what}: the perceptron has no weights yet; call fit(x, y) (or set_weights) first")
        return self.w, self.b

    def get_weights(self) -> list[np.ndarray]:
        """[w (n_features, units), b (units,)] as host NumPy arrays."""
        w, b = self._require_fitted("get_weights")
        return [self.ops.to_numpy(w).copy(), self.ops.to_numpy(b).copy()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set [w (n_features, units), b (units,)]; defines n_features when not trained yet."""
        if len(weights) != 2:
            raise ValueError(f"set_weights expects [w, b], received {len(weights)} arrays")
        w, b = (np.asarray(a, dtype=self.dtype) for a in weights)
        if w.ndim != 2 or w.shape[1] != self.units or b.shape != (self.units,):
            raise ValueError(
                f"set_weights: expected w (n_features, {self.units}) and b ({self.units},), "
                f"received {w.shape} and {b.shape}"
            )
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ValueError("set_weights: weights must be finite")
        self.n_features_ = int(w.shape[0])
        self.w = self.ops.asarray(np.ascontiguousarray(w))
        self.b = self.ops.asarray(np.ascontiguousarray(b))

    def fit(self, x: Any, y: Any, verbose: int = 0) -> Perceptron:
        """Train from zero weights for at most `max_epochs` epochs, stopping after an epoch without mistakes.

        verbose: 1 shows a tqdm bar over epochs with the current epoch's mistakes. Returns self.
        """
        X = self._check_x(x, "fit")
        Y = self.ops.asarray(self._check_y(y, int(X.shape[0]), "fit"))
        self._build(int(X.shape[1]))
        self._reset_counters()
        bar = None
        if verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.max_epochs, desc="perceptron", unit="epoch", leave=True, dynamic_ncols=True)
        try:
            for _ in range(self.max_epochs):
                errors = self._epoch(X, Y)
                if bar is not None:
                    bar.set_postfix_str(f"mistakes {errors}", refresh=False)
                    bar.update(1)
                if errors == 0:
                    break
        finally:
            if bar is not None:
                bar.close()
        return self

    def partial_fit(self, x: Any, y: Any) -> Perceptron:
        """One epoch of the rule from the current weights (zeros if none); the counters accumulate."""
        X = self._check_x(x, "partial_fit")
        Y = self.ops.asarray(self._check_y(y, int(X.shape[0]), "partial_fit"))
        if self.w is None:
            self._build(int(X.shape[1]))
        self._epoch(X, Y)
        return self

    def _epoch(self, X: Array, Y: Array) -> int:
        """One online pass; returns the number of samples with a mistake (one host read)."""
        ops, xp = self.ops, self.ops.xp
        w, b = self._require_fitted("fit")
        n = int(X.shape[0])
        if self.shuffle:
            perm = shuffle_rng(self.seed, self.epochs_).permutation(n)
            idx = ops.asarray(perm.astype(np.int64))
            X, Y = ops.take_rows(X, idx), ops.take_rows(Y, idx)
        eta = self.learning_rate
        mistakes = ops.zeros((), xp.int64)
        for i in range(n):
            xi, yi = X[i, :], Y[i, :]
            delta = yi - self._step(xi @ w + b)  # (units,): 0 where right, ±1 (heaviside) or ±2 (sign) where wrong
            w += eta * (xi[:, None] * delta[None, :])
            b += eta * delta
            mistakes += xp.astype(xp.any(delta != 0.0), xp.int64)
        errors = int(ops.to_numpy(mistakes))
        self.epochs_ += 1
        self.n_updates_ += errors
        self.errors_per_epoch_.append(errors)
        self.converged_ = errors == 0
        return errors

    def _decision(self, x: Any, what: str) -> Array:
        w, b = self._require_fitted(what)
        X = self._check_x(x, what)
        return X @ w + b

    def decision_function(self, x: Any) -> np.ndarray:
        """u = x·w + b as NumPy: (n,) for one unit, else (n, units). Its sign gives the class."""
        u = self.ops.to_numpy(self._decision(x, "decision_function"))
        return u[:, 0] if self.units == 1 else u

    def predict(self, x: Any) -> np.ndarray:
        """Step of u as NumPy int64: 0/1 (heaviside) or −1/+1 (sign); (n,) for one unit, else (n, units)."""
        h = self.ops.to_numpy(self._step(self._decision(x, "predict"))).astype(np.int64)
        return h[:, 0] if self.units == 1 else h

    def score(self, x: Any, y: Any) -> float:
        """Fraction of samples whose every unit is right."""
        X = self._check_x(x, "score")
        t = self._check_y(y, int(X.shape[0]), "score")
        w, b = self._require_fitted("score")
        h = self.ops.to_numpy(self._step(X @ w + b))
        return float(np.mean(np.all(h == t, axis=1)))
