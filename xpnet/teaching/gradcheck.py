"""Finite-difference gradient checks for your own models, layers, activations and losses.

    from xpnet.gradcheck import check_gradients, check_layer_gradients
    result = check_gradients(model, x, y)        # the model's backprop against central differences
    print(result); assert result.passed

    check_layer_gradients(MyLayer(...), input_shape=(5,))   # one layer, its parameters and its input

Differences are taken in float64: the check always runs on a float64 *copy* of the model
(the same layers, with their configuration, activations, regularizers and current weights,
and the same loss), so a float32 model can be checked too and the model itself is never
touched. Central differences (L(w + εe) − L(w − εe)) / 2ε are compared with the model's
analytic gradient (`compute_gradients`) element by element (all elements of small weights,
a random sample of `max_elements` of larger ones) and along random unit directions through
all weights at once (Chainer's check_backward style).

An element passes when |analytic − numeric| ≤ atol + rtol · scale, scale being the largest
|gradient| of that weight (or of the directional derivative). Dropout layers keep one fixed
mask for every evaluation. Points on a kink (relu or |·| at exactly 0, hinge at 1) have no
derivative and can fail for that reason alone: the report names the worst element.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import Ops, get_backend, use_backend
from ..backend.base import DeviceScalar
from ..layers.base import Layer
from ..params import ParamStore
from ..random import init_rng, layer_seed
from ._counters import restore_step_counters, step_counters

if TYPE_CHECKING:
    from ..training.trainer import Trainer

__all__ = [
    "DirectionCheck",
    "GradCheckResult",
    "LayerGradCheckResult",
    "WeightCheck",
    "check_gradients",
    "check_layer_gradients",
    "float64_copy",
]


@dataclass
class WeightCheck:
    """One weight array: `checked` of its `size` elements compared.

    max_abs_error: max |analytic − numeric|; max_rel_error: that over the weight's gradient
    scale max(|analytic|, |numeric|); worst_index: the element where the error is largest.
    """

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float
    scale: float
    worst_index: tuple[int, ...]
    worst_analytic: float
    worst_numeric: float
    passed: bool

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class DirectionCheck:
    """Directional derivative along a random unit direction d: Σ g·d against the central difference."""

    analytic: float
    numeric: float
    abs_error: float
    rel_error: float
    passed: bool


@dataclass
class GradCheckResult:
    """Outcome of `check_gradients`; `bool(result)` is `result.passed`; `print(result)` shows the table."""

    loss: float
    eps: float
    rtol: float
    atol: float
    dtype_checked: str
    source_dtype: str
    weights: list[WeightCheck] = field(default_factory=list)
    directions: list[DirectionCheck] = field(default_factory=list)
    what: str = "the model"

    @property
    def passed(self) -> bool:
        return all(w.passed for w in self.weights) and all(d.passed for d in self.directions)

    @property
    def max_rel_error(self) -> float:
        errs = [w.max_rel_error for w in self.weights] + [d.rel_error for d in self.directions]
        return max(errs, default=0.0)

    @property
    def failures(self) -> list[str]:
        """Names of the weights (and 'direction k') that failed."""
        out = [w.name for w in self.weights if not w.passed]
        out += [f"direction {k}" for k, d in enumerate(self.directions) if not d.passed]
        return out

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "loss": self.loss,
            "eps": self.eps,
            "rtol": self.rtol,
            "atol": self.atol,
            "dtype_checked": self.dtype_checked,
            "source_dtype": self.source_dtype,
            "max_rel_error": self.max_rel_error,
            "weights": [{**vars(w), "shape": list(w.shape)} for w in self.weights],
            "directions": [vars(d) for d in self.directions],
        }

    def __str__(self) -> str:
        copy_note = "" if self.source_dtype == "float64" else f" (on a copy of the {self.source_dtype} model)"
        head = (
            f"Gradient check of {self.what} in {self.dtype_checked}{copy_note}: L = {self.loss:.6g}, "
            f"eps = {self.eps:g}, pass if |analytic − numeric| ≤ {self.atol:g} + {self.rtol:g}·scale"
        )
        rows = [("weight", "shape", "checked", "max abs err", "max rel err", "worst element", "result")]
        for w in self.weights:
            worst = f"{list(w.worst_index)}: {w.worst_analytic:.6g} vs {w.worst_numeric:.6g}"
            rows.append(
                (
                    w.name,
                    str(w.shape),
                    f"{w.checked}/{w.size}",
                    f"{w.max_abs_error:.2e}",
                    f"{w.max_rel_error:.2e}",
                    worst,
                    "ok" if w.passed else "FAIL",
                )
            )
        for k, d in enumerate(self.directions):
            rows.append(
                (
                    f"direction {k}",
                    "all",
                    "",
                    f"{d.abs_error:.2e}",
                    f"{d.rel_error:.2e}",
                    f"{d.analytic:.6g} vs {d.numeric:.6g}",
                    "ok" if d.passed else "FAIL",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [head] + ["  " + "  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)).rstrip() for r in rows]
        verdict = "PASSED" if self.passed else f"FAILED: {', '.join(self.failures)}"
        lines.append(f"{verdict} (max relative error {self.max_rel_error:.2e})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<GradCheckResult passed={self.passed} max_rel_error={self.max_rel_error:.2e} "
            f"weights={len(self.weights)} directions={len(self.directions)}>"
        )


@dataclass
class LayerGradCheckResult(GradCheckResult):
    """`check_layer_gradients`: the weights plus the layer's input gradient ∂L/∂x (named "input")."""

    what: str = "the layer"


def _clone_layer(layer: Layer) -> Layer:
    """A deep copy of the layer's configuration, unbound: no backend, no views, no cached activations, no calls.

    A model used as a layer is copied as a float64 model of copies of its layers (the checks run in float64).
    """
    if hasattr(layer, "nested_layers"):  # a Model (whose module imports this one)
        return layer.clone_structure(_clone_layer, str(layer.name), "float64")  # type: ignore[attr-defined, no-any-return]
    memo: dict[int, Any] = {}
    for name, value in vars(layer).items():
        if name in ("ops", "params", "grads", "sink", "inbound_nodes"):
            # the calls lead to the rest of the graph, which the copy must not drag along
            memo[id(value)] = [] if name == "inbound_nodes" else {} if name in ("params", "grads") else None
        elif name.startswith("_") and (isinstance(value, DeviceScalar) or hasattr(value, "shape")):
            memo[id(value)] = None  # forward caches (_x, _u, _h, _mask) and device counters: rebuilt on binding
    clone = copy.deepcopy(layer, memo)
    clone.ops = None
    # the copy draws the masks the layer would draw next
    restore_step_counters((clone, steps) for _, steps in step_counters([layer]))
    return clone


def float64_copy(model: Trainer, backend: str | Ops | None = None) -> Trainer:
    """A float64 copy of the model (copies of its layers, its weights and its loss; compiled with SGD).

    backend: where the copy runs (default: the model's own backend). Dropout layers keep their
    seeds and step counters, so the copy draws the masks the model would draw next.
    """
    if not model.built or model.ops is None:
        raise ValueError("float64_copy: build the model first (give the first layer input_shape=..., or call build())")
    ops = get_backend(backend) if backend is not None else model.ops
    with use_backend(ops):
        twin = model.clone_structure(_clone_layer, f"{model.name}_float64", "float64")
        if model.loss is not None:
            twin.compile(
                optimizer="sgd",
                loss=copy.deepcopy(model.compiled_losses or [model.loss])
                if not model.single_output
                else copy.deepcopy(model.loss),
                loss_weights=model.loss_weights or None,
            )
    twin.set_weights([w.astype(np.float64) for w in model.get_weights()])
    return twin


def _compare(
    name: str,
    shape: tuple[int, ...],
    analytic: np.ndarray,
    numeric: np.ndarray,
    idx: np.ndarray,
    rtol: float,
    atol: float,
) -> WeightCheck:
    """analytic: the full gradient (shape); numeric: differences at the flat indices idx."""
    a = np.asarray(analytic, dtype=np.float64).ravel()[idx]
    err = np.abs(a - numeric)
    scale = float(max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0)))
    k = int(np.argmax(err)) if err.size else 0
    max_abs = float(err[k]) if err.size else 0.0
    return WeightCheck(
        name=name,
        shape=tuple(shape),
        checked=int(idx.size),
        max_abs_error=max_abs,
        max_rel_error=max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")),
        scale=scale,
        worst_index=tuple(int(i) for i in np.unravel_index(int(idx[k]), shape)) if idx.size else (),
        worst_analytic=float(a[k]) if err.size else 0.0,
        worst_numeric=float(numeric[k]) if err.size else 0.0,
        passed=bool(np.all(err <= atol + rtol * scale)),
    )


def _indices(size: int, max_elements: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_elements is None or size <= max_elements:
        return np.arange(size)
    return np.sort(rng.choice(size, max_elements, replace=False))


def _unit_directions(shapes: Sequence[tuple[int, ...]], k: int, rng: np.random.Generator) -> list[list[np.ndarray]]:
    out = []
    for _ in range(k):
        d = [rng.standard_normal(s) for s in shapes]
        norm = float(np.sqrt(sum(float(np.sum(v * v)) for v in d))) or 1.0
        out.append([v / norm for v in d])
    return out


def check_gradients(
    model: Trainer,
    x: Any,
    y: Any,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    directions: int = 3,
    max_elements: int | None = 200,
    seed: int = 0,
    backend: str | Ops | None = None,
) -> GradCheckResult:
    """Compare `model.compute_gradients(x, y)` with float64 central differences of the loss.

    model: a compiled Sequential or Model (float32 or float64; the check runs on a float64 copy).
    x, y: one batch, as `fit` takes them; keep it small (each checked element costs two
    forward + backward passes). eps: the difference step. rtol, atol: the pass criterion
    |analytic − numeric| ≤ atol + rtol · scale (atol absorbs the differences' round-off,
    about 1e-16·|L|/eps). directions: random unit directions through all weights.
    max_elements: per weight array, check all elements up to this many, else a random sample
    (None: all). seed: picks the sample and the directions. backend: where the copy runs
    (default: the model's).
    """
    if model.loss is None:
        raise ValueError("check_gradients needs the model's loss: call model.compile(optimizer, loss) first")
    if not model.built:
        model.build(np.asarray(x).shape[1:])
    twin = float64_copy(model, backend)
    return _check_model(twin, x, y, eps, rtol, atol, directions, max_elements, seed, model.dtype)


def _check_model(
    twin: Trainer,
    x: Any,
    y: Any,
    eps: float,
    rtol: float,
    atol: float,
    directions: int,
    max_elements: int | None,
    seed: int,
    source_dtype: str,
) -> GradCheckResult:
    ops, loss_fn = twin.ops, twin.loss
    assert ops is not None and loss_fn is not None
    counters = step_counters(twin.layers)  # one fixed dropout mask for every evaluation
    restore_step_counters(counters)
    loss, analytic = twin.compute_gradients(x, y)  # the public path, for the gradient under test
    # The differences then run the same `loss_at` that compute_gradients runs, on data uploaded
    # once and with single parameters changed in place in the flat buffer: no per-evaluation
    # input checks, weight copies or gradient downloads.
    xc, yy = twin.prepare(x, y, "check_gradients")
    with ops.activate():
        X, Y = twin.upload(xc), twin.upload(yy, targets=True)
    params = twin.store.params  # the trainable weights, the ones with gradients
    base = ops.to_numpy(params).astype(np.float64, copy=True)

    def loss_now() -> float:
        restore_step_counters(counters)
        with ops.activate():
            return twin.loss_at(X, Y)

    def loss_at_element(j: int, value: float) -> float:
        with ops.activate():
            params[j] = value
        try:
            return loss_now()
        finally:
            with ops.activate():
                params[j] = float(base[j])

    def loss_at_vector(flat: np.ndarray) -> float:
        with ops.activate():
            params[...] = ops.asarray(flat)
        try:
            return loss_now()
        finally:
            with ops.activate():
                params[...] = ops.asarray(base)

    names = twin.store.trainable_labels()
    rng = np.random.default_rng(seed)
    result = GradCheckResult(
        loss=loss,
        eps=eps,
        rtol=rtol,
        atol=atol,
        dtype_checked="float64",
        source_dtype=source_dtype,
        what=f"model {twin.name.removesuffix('_float64')!r}",
    )
    off = 0
    for name, g in zip(names, analytic, strict=True):
        idx = _indices(g.size, max_elements, rng)
        numeric = np.empty(idx.size)
        for m, k in enumerate(idx):
            j = off + int(k)
            old = float(base[j])
            numeric[m] = (loss_at_element(j, old + eps) - loss_at_element(j, old - eps)) / (2 * eps)
        result.weights.append(_compare(name, g.shape, g, numeric, idx, rtol, atol))
        off += g.size
    for d in _unit_directions([g.shape for g in analytic], directions, rng):
        flat_d = np.concatenate([v.ravel() for v in d]) if d else np.zeros(0)
        num = (loss_at_vector(base + eps * flat_d) - loss_at_vector(base - eps * flat_d)) / (2 * eps)
        ana = float(sum(float(np.sum(g * v)) for g, v in zip(analytic, d, strict=True)))
        result.directions.append(_direction_check(ana, num, rtol, atol))
    return result


def check_layer_gradients(
    layer: Layer,
    input_shape: Sequence[int] | int,
    batch_size: int = 4,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    directions: int = 2,
    max_elements: int | None = 200,
    seed: int = 0,
    backend: str | Ops | None = None,
    x: Any = None,
) -> LayerGradCheckResult:
    """Check one layer's backward: its parameter gradients and its input gradient ∂L/∂x.

    A copy of the layer is bound to its own float64 parameter store; with a fixed random
    upstream gradient r (batch, *output_shape), L(x, w) = Σ r ⊙ layer.forward(x, training=True),
    so the layer's own `backward(r)` gives ∂L/∂x and fills ∂L/∂w. x defaults to standard
    normal draws of shape (batch_size, *input_shape) kept at least 0.05 away from 0 (relu's
    kink). The layer you pass is not modified.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer_gradients expects an xpnet Layer, received {type(layer).__name__}")
    shape = (int(input_shape),) if isinstance(input_shape, (int, np.integer)) else tuple(int(d) for d in input_shape)
    rng = np.random.default_rng(seed)
    ops = get_backend(backend if backend is not None else "numpy")
    lyr = _bound_float64_copy(layer, shape, seed, ops)
    assert lyr.output_shape is not None
    if x is None:
        xa = rng.standard_normal((batch_size, *shape))
        xa = np.where(np.abs(xa) < 0.05, np.copysign(0.3, xa), xa)
    else:
        xa = np.array(x, dtype=np.float64, order="C", copy=True)
    probe = _LayerProbe(lyr, ops, rng.standard_normal((xa.shape[0], *lyr.output_shape)))
    base = lyr.get_weights()
    loss, dx, analytic = probe.run(xa, base, True)
    result = LayerGradCheckResult(
        loss=loss,
        eps=eps,
        rtol=rtol,
        atol=atol,
        dtype_checked="float64",
        source_dtype="float64",
        what=f"layer {lyr.name!r} ({type(lyr).__name__})",
    )

    def value() -> float:
        return probe.run(xa, base, False)[0]

    if dx is not None:
        idx = _indices(xa.size, max_elements, rng)
        numeric = _differences(xa, value, idx, eps)
        result.weights.append(_compare("input", xa.shape, dx, numeric, idx, rtol, atol))
    for i, (s, j) in enumerate(zip(probe.trained, probe.which, strict=True)):
        name, w = f"{lyr.name}/{s.name}", base[j]
        idx = _indices(w.size, max_elements, rng)
        numeric = _differences(w, value, idx, eps)
        result.weights.append(_compare(name, w.shape, analytic[i], numeric, idx, rtol, atol))
    grads = [dx, *analytic] if dx is not None else analytic
    shapes = [g.shape for g in grads]
    for d in _unit_directions(shapes, directions if shapes else 0, rng):
        dxs, dws = (d[0], d[1:]) if dx is not None else (np.zeros_like(xa), d)
        plus = probe.run(xa + eps * dxs, probe.moved(base, dws, eps), False)[0]
        minus = probe.run(xa - eps * dxs, probe.moved(base, dws, -eps), False)[0]
        ana = float(sum(float(np.sum(g * v)) for g, v in zip(grads, d, strict=True)))
        result.directions.append(_direction_check(ana, (plus - minus) / (2 * eps), rtol, atol))
    return result


def _bound_float64_copy(layer: Layer, shape: tuple[int, ...], seed: int, ops: Ops) -> Layer:
    """A copy of `layer` built for inputs (batch, *shape), bound to its own float64 parameter store."""
    lyr = _clone_layer(layer)
    lyr.name = lyr.name or lyr.default_name
    lyr.build(shape)
    if getattr(lyr, "seed", 0) is None:  # a layer that draws masks (Dropout) needs a seed to draw them
        lyr.seed = layer_seed(seed, 0)  # type: ignore[attr-defined]
    f64 = np.dtype(np.float64)
    chunks = [s.initializer(s.shape, init_rng(seed, 0, j), f64).ravel() for j, s in enumerate(lyr.param_specs())]
    ParamStore(ops, [lyr], np.concatenate(chunks) if chunks else np.zeros(0, f64), "float64")
    return lyr


class _LayerProbe:
    """L(x, w) = Σ r ⊙ layer.forward(x, training=True) for a fixed upstream gradient r (batch, *output_shape).

    Every evaluation starts from the same mask step, so a Dropout layer keeps one mask. Non-trainable
    state (BatchNormalization's moving statistics) has no gradient: it is restored before every
    evaluation (all weights are set) and left out of the comparison.
    """

    def __init__(self, layer: Layer, ops: Ops, r: np.ndarray) -> None:
        self.layer, self.ops, self.r = layer, ops, r
        self.counters = step_counters([layer])
        specs = layer.param_specs()
        self.trained = [s for s in specs if s.name in layer.grads]
        self.which = [i for i, s in enumerate(specs) if s.name in layer.grads]

    def run(self, xh: np.ndarray, weights: list[np.ndarray], backward: bool) -> tuple[float, Any, list[np.ndarray]]:
        """-> (L, ∂L/∂x or None, [∂L/∂w for the trainable weights]); the gradients only when backward."""
        lyr, ops = self.layer, self.ops
        restore_step_counters(self.counters)
        if weights:
            lyr.set_weights(weights)
        with ops.activate():
            out = lyr.forward(ops.asarray(xh), training=True)
            value = float(ops.to_numpy(ops.xp.sum(out * ops.asarray(self.r))))
            if not backward:
                return value, None, []
            dx = lyr.backward(ops.asarray(self.r.copy()), True)  # backward may reuse its argument in place
            grads = [np.array(ops.to_numpy(lyr.grads[s.name]), copy=True) for s in self.trained]
            return value, (None if dx is None else np.array(ops.to_numpy(dx), copy=True)), grads

    def moved(self, base: list[np.ndarray], dws: Sequence[np.ndarray], step: float) -> list[np.ndarray]:
        """The weights base with base[j] + step · v for each trainable weight j and its direction v."""
        out = list(base)
        for j, v in zip(self.which, dws, strict=True):
            out[j] = base[j] + step * v
        return out


def _differences(target: np.ndarray, f: Any, idx: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of f() at the flat indices idx of target, which is changed in place and put back."""
    flat, numeric = target.reshape(-1), np.empty(idx.size)
    for n, k in enumerate(idx):
        old = flat[k]
        flat[k] = old + eps
        plus = f()
        flat[k] = old - eps
        minus = f()
        flat[k] = old
        numeric[n] = (plus - minus) / (2 * eps)
    return numeric


def _direction_check(ana: float, num: float, rtol: float, atol: float) -> DirectionCheck:
    """A directional derivative: analytic Σ g·d against the central difference num."""
    err, scale = abs(ana - num), max(abs(ana), abs(num))
    return DirectionCheck(ana, num, err, err / scale if scale > 0 else 0.0, err <= atol + rtol * scale)
