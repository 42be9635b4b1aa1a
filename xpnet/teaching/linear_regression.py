"""Linear regression two ways: the normal equations solved directly, and gradient descent on the MSE.

Model ŷ = x·w + b, loss MSE(w, b) = mean((ŷ − y)²) over samples (and outputs). Its minimiser
solves the normal equations XᵀX w = Xᵀy. `closed_form` solves them on the host without ever
forming (XᵀX)⁻¹: the data are centred (which takes the intercept out), then a least-squares
solver based on the SVD (`numpy.linalg.lstsq`) works on X itself, whose condition number is the
square root of XᵀX's. `gradient_descent` walks downhill on the same loss with
∇_w = (2/m) Xᵀ(ŷ − y), ∇_b = (2/m) Σ(ŷ − y) over batches of m samples, on any xpnet backend:

- "batch": every step uses all n samples (one step per epoch): a smooth, deterministic descent;
- "minibatch": steps on shuffled batches of `batch_size` samples;
- "stochastic": one sample per step (SGD), n steps per epoch.

On a convex quadratic like this one they all reach the closed-form weights: batch GD for any
learning rate below 2/λ_max (λ_max the largest eigenvalue of the Hessian (2/n) XᵀX); mini-batch
and SGD exactly when the data are noiseless, and otherwise to within a noise floor that shrinks
with the learning rate (use `lr_decay`). Standardising the features (zero mean, unit variance)
makes the Hessian well conditioned and convergence fast.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .._checks import numeric_array, require_finite
from ..backend import Ops, get_backend
from ..random import next_model_seed, shuffle_rng

__all__ = ["MODES", "closed_form", "gradient_descent", "mse"]

MODES = ("batch", "minibatch", "stochastic")
_ALIASES = {"batch": "batch", "minibatch": "minibatch", "mini-batch": "minibatch", "stochastic": "stochastic"}
_ALIASES["sgd"] = "stochastic"


def _check_xy(x: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """-> (x (n, d) float64, y (n, k) float64, y_was_1d)."""
    a, t = numeric_array(x, what, "x"), numeric_array(y, what, "y")
    if a.ndim != 2:
        hint = " (for a single feature use x.reshape(-1, 1))" if a.ndim == 1 else ""
        raise ValueError(f"{what}: x must be 2-D (n_samples, n_features), received shape {a.shape}{hint}")
    if t.ndim not in (1, 2) or t.shape[0] != a.shape[0] or (t.ndim == 2 and t.shape[1] == 0):
        raise ValueError(
            f"{what}: y must have shape ({a.shape[0]},) or ({a.shape[0]}, n_outputs) to match x {a.shape}, "
            f"received {t.shape}"
        )
    require_finite(a, what, "x")
    require_finite(t, what, "y")
    y1d = t.ndim == 1
    return a.astype(np.float64), (t.reshape(-1, 1) if y1d else t).astype(np.float64), y1d


def _shape_out(w: np.ndarray, b: np.ndarray, y1d: bool) -> tuple[np.ndarray, np.ndarray | float]:
    return (w[:, 0], float(b[0])) if y1d else (w, b)


def closed_form(x: Any, y: Any, fit_intercept: bool = True) -> tuple[np.ndarray, np.ndarray | float]:
    """Least-squares weights from the normal equations, solved stably: -> (w, b), float64 NumPy.

    x: (n, d); y: (n,) gives w (d,) and a float b; y: (n, k) gives w (d, k) and b (k,).
    fit_intercept=False fits ŷ = x·w (b = 0). When x is rank deficient (collinear features,
    d > n) the minimum-norm solution is returned with a warning.
    """
    a, t, y1d = _check_xy(x, y, "closed_form")
    if fit_intercept:
        x_mean, y_mean = a.mean(axis=0), t.mean(axis=0)
        a, t = a - x_mean, t - y_mean
    w, _res, rank, _sv = np.linalg.lstsq(a, t, rcond=None)
    if rank < a.shape[1]:
        warnings.warn(
            f"closed_form: x has rank {rank} < {a.shape[1]} features (collinear or too few samples); "
            "returning the minimum-norm least-squares solution",
            RuntimeWarning,
            stacklevel=2,
        )
    b = (y_mean - x_mean @ w) if fit_intercept else np.zeros(t.shape[1])
    return _shape_out(w, b, y1d)


def mse(x: Any, y: Any, w: Any, b: Any = 0.0) -> float:
    """Mean squared error of ŷ = x·w + b on (x, y), on the host (float64)."""
    a, t, _ = _check_xy(x, y, "mse")
    w2 = np.asarray(w, dtype=np.float64).reshape(a.shape[1], -1)
    return float(np.mean((a @ w2 + np.asarray(b, dtype=np.float64) - t) ** 2))


def _check_descent(
    mode: Any, learning_rate: Any, epochs: Any, batch_size: Any, lr_decay: Any, dtype: Any
) -> tuple[str, float]:
    """gradient_descent's settings checked: -> (the canonical mode name, the learning rate as a float)."""
    if not isinstance(mode, str) or mode.lower() not in _ALIASES:
        raise ValueError(f"mode must be one of {MODES}, received {mode!r}")
    mode = _ALIASES[mode.lower()]
    lr = float(learning_rate)
    if not math.isfinite(lr) or lr <= 0.0:
        raise ValueError(f"learning_rate must be a positive number, received {learning_rate!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, received {epochs!r}")
    if mode == "minibatch" and (
        isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, received {batch_size!r}")
    if not math.isfinite(float(lr_decay)) or lr_decay < 0.0:
        raise ValueError(f"lr_decay must be >= 0, received {lr_decay!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', received {dtype!r}")
    return mode, lr


def _descent_epoch(xp: Any, X: Any, Y: Any, w: Any, b: Any, eta: float, m: int, fit_intercept: bool) -> None:
    """One pass over X (n, d), Y (n, k) in batches of m rows, updating w (d, k) and b (k,) in place."""
    n, k = int(X.shape[0]), int(Y.shape[1])
    for start in range(0, n, m):
        stop = min(start + m, n)  # the array API leaves out-of-bounds slice stops unspecified
        xb, yb = X[start:stop, :], Y[start:stop, :]
        r = xb @ w + b - yb  # (m, k) residuals
        scale = 2.0 / (int(xb.shape[0]) * k)  # d mean(r²) / d ŷ
        w -= (eta * scale) * (xb.T @ r)
        if fit_intercept:
            b -= (eta * scale) * xp.sum(r, axis=0)


def gradient_descent(
    x: Any,
    y: Any,
    mode: str = "batch",
    learning_rate: float = 0.1,
    epochs: int = 100,
    batch_size: int = 32,
    seed: int | None = None,
    fit_intercept: bool = True,
    backend: str | Ops | None = None,
    dtype: str = "float64",
    lr_decay: float = 0.0,
    verbose: int = 0,
) -> tuple[np.ndarray, np.ndarray | float, np.ndarray]:
    """Minimise the MSE from w = 0, b = 0 by gradient descent: -> (w, b, loss history), NumPy.

    mode: "batch", "minibatch" (batches of `batch_size`) or "stochastic" (one sample per step).
    learning_rate: the step η; epoch e (from 0) uses η / (1 + lr_decay · e). epochs: passes over
    the data. seed: the per-epoch shuffles (drawn on the host, the same on every backend).
    backend / dtype: where and in what precision the math runs (float64 by default, so that the
    result can match `closed_form` closely; float32 rounds at about 1e-7 relative).
    verbose: 1 shows a tqdm bar over epochs with the loss (one host read per epoch).

    w, b are shaped as in `closed_form`; history: (epochs + 1,) float64, the full-data MSE before
    training and after each epoch. A diverging run (learning rate too large) warns.
    """
    a, t, y1d = _check_xy(x, y, "gradient_descent")
    mode, lr = _check_descent(mode, learning_rate, epochs, batch_size, lr_decay, dtype)

    ops = get_backend(backend)
    xp = ops.xp
    dt = getattr(xp, dtype)
    n, d = a.shape
    k = t.shape[1]
    m = {"batch": n, "minibatch": min(int(batch_size), n), "stochastic": 1}[mode]
    seed = int(seed) if seed is not None else next_model_seed()

    X = ops.asarray(np.ascontiguousarray(a, dtype=dtype))
    Y = ops.asarray(np.ascontiguousarray(t, dtype=dtype))
    w = ops.zeros((d, k), dt)
    b = ops.zeros((k,), dt)

    def loss() -> Any:
        r = X @ w + b - Y
        return xp.mean(r * r)

    losses = [loss()]
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=f"GD {mode}", unit="epoch", leave=True, dynamic_ncols=True)
    try:
        for epoch in range(epochs):
            eta = lr / (1.0 + float(lr_decay) * epoch)
            Xe, Ye = X, Y
            if mode != "batch":
                idx = ops.asarray(shuffle_rng(seed, epoch).permutation(n).astype(np.int64))
                Xe, Ye = ops.take_rows(X, idx), ops.take_rows(Y, idx)
            _descent_epoch(xp, Xe, Ye, w, b, eta, m, fit_intercept)
            losses.append(loss())
            if bar is not None:
                bar.set_postfix_str(f"mse {float(ops.to_numpy(losses[-1])):.3g}", refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    history = ops.to_numpy(xp.stack(losses)).astype(np.float64)
    w_host, b_host = ops.to_numpy(w).astype(np.float64), ops.to_numpy(b).astype(np.float64)
    if not np.all(np.isfinite(history)):
        warnings.warn(
            f"gradient_descent ({mode}) diverged: the loss became {history[-1]}. Lower learning_rate "
            f"(now {lr:g}) or standardise the features",
            RuntimeWarning,
            stacklevel=2,
        )
    w_out, b_out = _shape_out(w_host, b_host, y1d)
    return w_out, b_out, history
