"""Look inside forward and backward propagation, layer by layer, in the course's notation.

    from xpnet.trace import trace
    t = trace(model, x, y)        # forward in training mode, then backward through the model's own code
    print(t)                      # u(l) = h(l-1) W(l) + b(l), h(l) = φ(u(l)), δ(l) = ∂L/∂u(l), ∂L/∂W(l), ∂L/∂b(l)
    t.u(1), t.h(2), t.delta(3), t.grad(3, "kernel"), t.loss, t.to_dict()

The numbers come from running the model itself: its `_forward` (training mode) without y,
`compute_gradients` (→ `_loss_and_grads`) with y. Each layer's `forward`, `backward` and
`backward_preactivation` are wrapped for the duration of the call to copy what flows
through them to the host, and restored afterwards; Dropout step counters are restored too, so
tracing does not change what training does next. Nothing is recomputed here.

Notation (l = 1 … L counts the model's layers, h(0) = x, ŷ = h(L)): the loss L is the mean
over the batch of the per-sample loss (plus any weight penalty), so δ(l) = ∂L/∂u(l) already
carries the 1/n, and ∂L/∂W(l) = h(l-1)ᵀ δ(l) (+ the penalty's gradient), ∂L/∂b(l) = Σ_batch δ(l).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from ..layers.activation import Activation as ActivationLayer
from ..training.data import upload
from ..training.trainer import Trainer
from ._counters import restore_step_counters, step_counters

if TYPE_CHECKING:  # pragma: no cover
    from ..layers.base import Layer

__all__ = ["LayerTrace", "Trace", "trace"]

_MISSING = object()
_SYMBOL = {"kernel": "W", "bias": "b"}


@dataclass
class LayerTrace:
    """What one layer l did. Arrays are host NumPy copies with a leading batch axis.

    input: h(l-1) (batch, in); preactivation: u(l) (batch, units) or None for layers without
    one; output: h(l); grad_output: ∂L/∂h(l) as it arrived at backward (None for a fused
    output layer, whose backward starts from u, or for layers not backpropagated through);
    delta: δ(l) = ∂L/∂u(l); weights / grads: {"kernel": W(l), "bias": b(l)} and their gradients.
    """

    l: int  # noqa: E741 - the course's layer index
    name: str
    kind: str
    activation: str | None
    input: np.ndarray | list[np.ndarray]  # a list for a merge layer
    preactivation: np.ndarray | None
    output: np.ndarray
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    grad_output: np.ndarray | None = None
    delta: np.ndarray | None = None
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    # in a graph: the layers whose outputs this one reads (0: the model's input) and the layers that
    # read its output (empty for an output layer); None in a chain, where they are l − 1 and l + 1
    sources: tuple[int, ...] | None = None
    consumers: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        def arr(a: Any) -> Any:
            if isinstance(a, list):  # a merge layer's inputs
                return [arr(e) for e in a]
            return None if a is None else a.tolist()

        return {
            "l": self.l,
            "name": self.name,
            "kind": self.kind,
            "activation": self.activation,
            "input": arr(self.input),
            "preactivation": arr(self.preactivation),
            "output": arr(self.output),
            "weights": {k: arr(v) for k, v in self.weights.items()},
            "grad_output": arr(self.grad_output),
            "delta": arr(self.delta),
            "grads": {k: arr(v) for k, v in self.grads.items()},
            "sources": None if self.sources is None else list(self.sources),
            "consumers": None if self.consumers is None else list(self.consumers),
        }


@dataclass
class Trace:
    """Forward (and, when y was given, backward) values of every layer; `print(trace)` shows them.

    x: (batch, *input_shape); y: the targets as the loss sees them, or None; output: ŷ = h(L);
    loss: L (mean over the batch, plus weight penalties) or None; fused: the loss started
    backprop from the output layer's u (softmax + cross-entropy: δ(L) = (p − y)/n).
    """

    model: str
    backend: str
    dtype: str
    training: bool
    x: np.ndarray
    layers: list[LayerTrace]
    output: np.ndarray
    y: np.ndarray | None = None
    loss: float | None = None
    loss_name: str | None = None
    fused: bool = False
    output_layer: int | None = None  # the l of ŷ = h(l) (default: the last layer)

    # --- the course's symbols -------------------------------------------------------------
    def layer(self, key: int | str) -> LayerTrace:
        """Layer by course index l (1-based) or by name."""
        if isinstance(key, str):
            for lt in self.layers:
                if lt.name == key:
                    return lt
            raise KeyError(f"no layer named {key!r}; layers are {[lt.name for lt in self.layers]}")
        if not 1 <= key <= len(self.layers):
            raise IndexError(f"layer index l must be in 1..{len(self.layers)}, received {key}")
        return self.layers[key - 1]

    def h(self, l: int) -> np.ndarray:  # noqa: E741
        """h(l); h(0) is x."""
        return self.x if l == 0 else self.layer(l).output

    def u(self, l: int) -> np.ndarray:  # noqa: E741
        u = self.layer(l).preactivation
        if u is None:
            raise ValueError(f"layer {l} ({self.layer(l).kind}) has no pre-activation u")
        return u

    def delta(self, l: int) -> np.ndarray:  # noqa: E741
        d = self.layer(l).delta
        if d is None:
            raise ValueError(f"no δ({l}): trace with y to run backward (or layer {l} has no pre-activation)")
        return d

    def grad(self, l: int, param: str = "kernel") -> np.ndarray:  # noqa: E741
        """∂L/∂W(l) for param="kernel", ∂L/∂b(l) for "bias"."""
        grads = self.layer(l).grads
        if param not in grads:
            raise KeyError(f"layer {l} has no gradient for {param!r}; it has {sorted(grads)} (trace with y?)")
        return grads[param]

    # --- output -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (JSON-serializable)."""
        return {
            "model": self.model,
            "backend": self.backend,
            "dtype": self.dtype,
            "training": self.training,
            "x": self.x.tolist(),
            "y": None if self.y is None else self.y.tolist(),
            "output": self.output.tolist(),
            "loss": self.loss,
            "loss_name": self.loss_name,
            "fused": self.fused,
            "output_layer": self.output_layer,
            "layers": [lt.to_dict() for lt in self.layers],
        }

    def format(self, digits: int = 6, max_items: int = 8) -> str:
        """The table: digits significant figures; arrays over max_items×max_items are elided."""
        fmt = _Formatter(digits, max_items)
        n = self.x.shape[0]
        lines = [
            f"Trace of {self.model!r} ({self.backend}, {self.dtype}), batch of {n} "
            f"{'sample' if n == 1 else 'samples'}, {'training' if self.training else 'inference'} mode",
            "forward:  u(l) = h(l-1) W(l) + b(l)"
            + ("  (Conv2D: h(l-1) ⋆ W(l) + b(l), ⋆ the cross-correlation)" if any(map(_is_conv, self.layers)) else "")
            + ("  (Conv2DTranspose: h(l-1) ⋆ᵀ W(l) + b(l))" if any(map(_is_transpose, self.layers)) else "")
            + ",   h(l) = φ(u(l)),   h(0) = x",
            "",
        ]
        rows: list[tuple[str, str]] = [("h(0) = x", fmt(self.x))]
        for lt in self.layers:
            lines_for = _forward_rows(lt, fmt)
            rows.append(("", ""))
            rows.append((f"[{lt.l}] {lt.name} ({lt.kind}{', ' + lt.activation if lt.activation else ''})", ""))
            rows.extend((f"  {a}", b) for a, b in lines_for)
        rows.append(("", ""))
        rows.append((f"ŷ = h({self.output_layer or len(self.layers)})", fmt(self.output)))
        lines += _align(rows)
        if self.loss is not None:
            lines += [
                "",
                f"loss:  L = mean over the batch of {self.loss_name}(y, ŷ) (+ weight penalties) = "
                f"{fmt.scalar(self.loss)}",
            ]
            rows = [("y", fmt(self.y))] if self.y is not None else []
            lines += _align(rows)
            lines += [
                "",
                "backward:  δ(l) = ∂L/∂u(l) = ∂L/∂h(l) ⊙ φ'(u(l)),   ∂L/∂h(l-1) = δ(l) W(l)ᵀ,",
                "           ∂L/∂W(l) = h(l-1)ᵀ δ(l),   ∂L/∂b(l) = Σ_batch δ(l)   (+ penalty gradients)",
                "",
            ]
            rows = []
            for lt in reversed(self.layers):
                if lt.grad_output is None and lt.delta is None and not lt.grads:
                    continue
                rows.append((f"[{lt.l}] {lt.name}", ""))
                rows.extend((f"  {a}", b) for a, b in _backward_rows(lt, self.layers, fmt, fused=self.fused))
                rows.append(("", ""))
            lines += _align(rows[:-1] if rows else rows)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        loss = "" if self.loss is None else f" loss={self.loss:.6g}"
        return f"<Trace model={self.model!r} layers={len(self.layers)} batch={self.x.shape[0]}{loss}>"


def trace(model: Trainer, x: Any, y: Any = None, training: bool = True) -> Trace:
    """Run `model` on x (and backward on (x, y)) and return what every layer computed.

    x: (batch, *input_shape), or one sample of shape input_shape; y: targets as `fit` takes
    them (needs a compiled model). training=False traces the inference forward pass (no
    dropout); backward needs training mode.
    """
    _check_traceable(model, y, training)
    xa, y = _as_batch(model, x, y)
    if not model.built:
        model.build(xa.shape[1:])
    ops = model.ops
    assert ops is not None
    _refuse_shared_layers(model)
    recorder = _Recorder(model, ops)
    counters = step_counters(model.layers)
    moving = model.store.save_moving()  # a training-mode forward moves BatchNormalization's statistics
    loss_value: float | None = None
    grads: list[np.ndarray] = []
    yy: np.ndarray | None = None
    try:
        with recorder.patched():
            if y is None:
                xc = model.check_inputs(xa, "trace")
                with ops.activate():
                    model.forward(upload(ops, xc, model.dtype), training=training)
            else:
                loss_value, grads = model.compute_gradients(xa, y)
                xc, yy = model.prepare(xa, y, "trace")
    finally:
        restore_step_counters(counters)
        model.store.restore_moving(moving)

    sources, consumers, output_layer = _graph_links(model)
    layers = _layer_traces(model, recorder.records, grads, sources, consumers)
    return Trace(
        model=model.name,
        backend=ops.describe(),
        dtype=model.dtype,
        training=training,
        x=np.asarray(xc),
        layers=layers,
        output=layers[output_layer - 1].output if layers else np.asarray(xc),
        y=None if yy is None else np.asarray(yy),
        loss=loss_value,
        loss_name=None if model.loss is None or y is None else model.loss.name,
        fused=y is not None and model.fused_loss,
        output_layer=output_layer,
    )


def _check_traceable(model: Any, y: Any, training: bool) -> None:
    """Refuse what trace cannot show: not a model, backward without training mode or loss, several inputs/outputs."""
    if not isinstance(model, Trainer):
        raise TypeError(f"trace expects an xpnet model (e.g. Sequential), received {type(model).__name__}")
    if y is not None and not training:
        raise ValueError("trace: backward needs the training-mode forward pass; pass training=True with y")
    if y is not None and model.loss is None:
        raise ValueError("trace with y needs the model's loss: call model.compile(optimizer, loss) first")
    if not model.single_output or (model.built and model.feature_shape is None):  # several inputs or outputs
        raise TypeError(
            "trace follows a model with one input and one output (its table is one chain of h(l)); for this "
            "model use compute_gradients(x, y) and the layers' get_weights()"
        )


def _as_batch(model: Trainer, x: Any, y: Any) -> tuple[np.ndarray, Any]:
    """x as a batch (batch, *input_shape): one sample of shape input_shape gets a batch axis, and so does its y."""
    xa = np.asarray(x)
    if model.feature_shape is not None and tuple(xa.shape) == model.feature_shape:
        xa = xa[None, ...]
        if y is not None:
            y = np.asarray(y)[None, ...]
    return xa, y


def _refuse_shared_layers(model: Trainer) -> None:
    calls = Counter(id(node.layer) for node in getattr(model, "nodes", []))
    shared = [layer.name for layer in model.layers if calls[id(layer)] > 1]
    if shared:  # one row of values per layer: a second call would overwrite the first's
        raise TypeError(
            f"trace shows one h(l) per layer, but layer {shared[0]!r} is called more than once in this model "
            "(a shared layer); for this model use compute_gradients(x, y) and the layers' get_weights()"
        )


class _Recorder:
    """Wraps each layer's forward/backward methods on the instance to copy what flows through them to the host.

    records[i]: for model.layers[i], "input", "output", "u" (the pre-activation or None), and after
    backward "dh" (∂L/∂h as it arrived) and "delta" (∂L/∂u).
    """

    def __init__(self, model: Trainer, ops: Any) -> None:
        self.model, self.ops = model, ops
        self.records: dict[int, dict[str, Any]] = {i: {} for i in range(len(model.layers))}

    @contextmanager
    def patched(self) -> Iterator[None]:
        """The layers' methods wrapped for the length of the block, then put back."""
        with ExitStack() as stack:
            for i, layer in enumerate(self.model.layers):
                stack.enter_context(_patched(layer, "forward", partial(self.wrap_forward, i)))
                stack.enter_context(_patched(layer, "backward", partial(self.wrap_backward, i)))
                stack.enter_context(
                    _patched(layer, "forward_preactivation", partial(self.wrap_forward_preactivation, i))
                )
                stack.enter_context(
                    _patched(layer, "backward_preactivation", partial(self.wrap_backward_preactivation, i))
                )
            yield

    def host(self, a: Any) -> Any:
        # copied at once: later steps update some buffers in place (e.g. NumPy's relu backward);
        # a merge layer's input is a list of device arrays, each downloaded on its own
        if a is None:
            return None
        if isinstance(a, (list, tuple)):
            return [self.host(e) for e in a]
        return np.array(self.ops.to_numpy(a), copy=True)

    def wrap_forward(self, i: int, fn: Callable[..., Any]) -> Callable[..., Any]:
        def forward(inp: Any, training: bool = False) -> Any:
            out = fn(inp, training)
            rec = self.records[i]
            rec["input"], rec["output"] = self.host(inp), self.host(out)
            u = getattr(self.model.layers[i], "preactivation", None)
            rec["u"] = self.host(u) if u is not None else None
            return out

        return forward

    def wrap_forward_preactivation(self, i: int, fn: Callable[..., Any]) -> Callable[..., Any]:
        def forward_preactivation(inp: Any, training: bool = False) -> Any:
            u = fn(inp, training)
            act = getattr(self.model.layers[i], "activation", None)
            rec = self.records[i]
            rec["input"], rec["u"] = self.host(inp), self.host(u)
            rec["output"] = self.host(act.forward(self.ops.xp, u) if act is not None else u)
            return u

        return forward_preactivation

    def wrap_backward(self, i: int, fn: Callable[..., Any]) -> Callable[..., Any]:
        def backward(dy: Any, need_input_grad: bool = True) -> Any:
            self.records[i]["dh"] = self.host(dy)
            out = fn(dy, need_input_grad)
            if isinstance(self.model.layers[i], ActivationLayer) and out is not None:
                self.records[i]["delta"] = self.host(out)  # the Activation layer's u is its input
            return out

        return backward

    def wrap_backward_preactivation(self, i: int, fn: Callable[..., Any]) -> Callable[..., Any]:
        def backward_preactivation(du: Any, need_input_grad: bool = True) -> Any:
            self.records[i]["delta"] = self.host(du)
            return fn(du, need_input_grad)

        return backward_preactivation


def _layer_traces(
    model: Trainer,
    records: dict[int, dict[str, Any]],
    grads: list[np.ndarray],
    sources: dict[int, tuple[int, ...]],
    consumers: dict[int, tuple[int, ...]],
) -> list[LayerTrace]:
    """One LayerTrace per layer from the recorded values; grads: the model's gradients, in weight order."""
    layers: list[LayerTrace] = []
    off = 0
    for i, layer in enumerate(model.layers):
        rec = records[i]
        specs = layer.param_specs()
        weights = dict(zip([s.name for s in specs], layer.get_weights(), strict=True))
        layer_grads: dict[str, np.ndarray] = {}
        trained = [s for s in specs if s.name in layer.grads]  # gradients come for trainable weights only
        if grads:
            layer_grads = {s.name: grads[off + j] for j, s in enumerate(trained)}
        off += len(trained)
        act = getattr(layer, "activation", None)
        layers.append(
            LayerTrace(
                l=i + 1,
                name=str(layer.name),
                kind=type(layer).__name__,
                activation=getattr(act, "name", None),
                input=rec["input"],
                preactivation=rec.get("u"),
                output=rec["output"],
                weights=weights,
                grad_output=rec.get("dh"),
                delta=rec.get("delta"),
                grads=layer_grads,
                sources=sources.get(i),
                consumers=consumers.get(i),
            )
        )
    return layers


def _graph_links(model: Trainer) -> tuple[dict[int, tuple[int, ...]], dict[int, tuple[int, ...]], int]:
    """For a graph that is not a chain: per layer index, the course indices l of the layers it reads
    (0: the input) and of those that read it; and the l of the output layer. Empty for a chain."""
    n = len(model.layers)
    nodes = list(getattr(model, "nodes", []))
    if not nodes:
        return {}, {}, n
    index = {id(layer): i + 1 for i, layer in enumerate(model.layers)}
    reads: dict[int, tuple[int, ...]] = {}
    readers: dict[int, list[int]] = {i: [] for i in range(n)}
    for node in nodes:
        l = index[id(node.layer)]  # noqa: E741
        srcs = tuple(0 if t.node is None else index[id(t.node.layer)] for t in node.inputs)
        reads[l - 1] = srcs  # one call per layer: trace refuses shared layers
        for k in srcs:
            if k and l not in readers[k - 1]:
                readers[k - 1].append(l)
    outputs = list(getattr(model, "outputs", []))
    out = index[id(outputs[0].node.layer)] if outputs and outputs[0].node is not None else n
    chain = all(reads.get(i) == (i,) for i in range(n)) and all(
        readers[i] == ([i + 2] if i + 1 < n else []) for i in range(n)
    )
    if chain and out == n:
        return {}, {}, n
    return reads, {i: tuple(r) for i, r in readers.items()}, out


@contextmanager
def _patched(layer: Layer, attr: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    """Shadow `layer.attr` with make(original) on the instance; put back whatever was there."""
    saved = layer.__dict__.get(attr, _MISSING)
    setattr(layer, attr, make(getattr(layer, attr)))
    try:
        yield
    finally:
        if saved is _MISSING:
            delattr(layer, attr)
        else:
            setattr(layer, attr, saved)


class _Formatter:
    def __init__(self, digits: int, max_items: int) -> None:
        self.digits, self.max_items = digits, max_items

    def scalar(self, v: float) -> str:
        return f"{v:.{self.digits}g}"

    def __call__(self, a: np.ndarray | None, batch: bool = True) -> str:
        if a is None:
            return "—"
        a = np.asarray(a)
        if batch and a.ndim >= 2 and a.shape[0] == 1:  # one sample: show its row, as the course does
            a = a[0]
        return np.array2string(
            a,
            separator=", ",
            formatter={"float_kind": lambda v: f"{v:.{self.digits}g}", "int_kind": str},
            threshold=self.max_items * self.max_items,
            edgeitems=max(1, self.max_items // 2),
            max_line_width=10_000,
        ).replace("\n", "")


def _sym(param: str, l: int) -> str:  # noqa: E741
    return f"{_SYMBOL.get(param, param)}({l})"


def _forward_rows(lt: LayerTrace, fmt: _Formatter) -> list[tuple[str, str]]:
    l = lt.l  # noqa: E741
    prev = ", ".join(map(str, lt.sources)) if lt.sources is not None else str(l - 1)
    rows = [(f"{_sym(k, l)} {tuple(v.shape)}", fmt(v, batch=False)) for k, v in lt.weights.items()]
    if "kernel" in lt.weights:
        # ⋆: cross-correlation, ⋆ᵀ: its adjoint (the transposed convolution)
        product = f"h({prev}) {'⋆ᵀ' if _is_transpose(lt) else '⋆'} W({l})" if _is_conv(lt) else f"h({prev}) W({l})"
        expr = product + (f" + b({l})" if "bias" in lt.weights else "")
        rows.append((f"u({l}) = {expr}", fmt(lt.preactivation)))
        rows.append((f"h({l}) = {lt.activation}(u({l}))", fmt(lt.output)))
    elif lt.kind == "Activation":
        rows.append((f"u({l}) = h({prev})", fmt(lt.preactivation)))
        rows.append((f"h({l}) = {lt.activation}(u({l}))", fmt(lt.output)))
    else:
        args = ", ".join(f"h({k})" for k in lt.sources) if lt.sources is not None else f"h({prev})"
        rows.append((f"h({l}) = {lt.kind.lower()}({args})", fmt(lt.output)))
    return rows


def _is_conv(lt: LayerTrace) -> bool:
    """A convolution layer: its kernel has spatial axes (kh, kw, in, out)."""
    return "kernel" in lt.weights and lt.weights["kernel"].ndim > 2


def _is_transpose(lt: LayerTrace) -> bool:
    """A transposed convolution (Conv2DTranspose): its forward is the input gradient of a convolution."""
    return lt.kind == "Conv2DTranspose"


def _backward_rows(lt: LayerTrace, layers: list[LayerTrace], fmt: _Formatter, fused: bool) -> list[tuple[str, str]]:
    l = lt.l  # noqa: E741
    prev = ", ".join(map(str, lt.sources)) if lt.sources is not None else str(l - 1)
    chain_readers = (l + 1,) if l < len(layers) else ()
    readers = lt.consumers if lt.consumers is not None else chain_readers
    rows: list[tuple[str, str]] = []
    if lt.grad_output is not None:
        rows.append((f"∂L/∂h({l}){_grad_output_source(readers, layers)}", fmt(lt.grad_output)))
    elif not readers and fused:
        rows.append((f"∂L/∂h({l})", "— (fused: the loss gives δ directly from u)"))
    if lt.delta is not None:
        how = f" = ∂L/∂h({l}) ⊙ {lt.activation}'(u({l}))" if lt.grad_output is not None else ""
        rows.append((f"δ({l}) = ∂L/∂u({l}){how}", fmt(lt.delta)))
    rows.extend((_param_grad_label(lt, k, prev), fmt(g, batch=False)) for k, g in lt.grads.items())
    return rows


def _grad_output_source(readers: tuple[int, ...], layers: list[LayerTrace]) -> str:
    """How ∂L/∂h(l) came about, given the course indices of the layers that read h(l): " = …" or ""."""
    if not readers:
        return " = ∂L/∂ŷ"
    if len(readers) > 1:  # a tensor read by several layers gets the sum of what each sends back
        return " = Σ of what " + ", ".join(f"[{k}]" for k in readers) + " send back"
    after = layers[readers[0] - 1]
    if "kernel" not in after.weights or after.delta is None:
        return ""
    c = after.l
    if _is_conv(after):  # a convolution sends back δ ⋆ᵀ W; a transposed one, δ ⋆ W
        return f" = δ({c}) {'⋆' if _is_transpose(after) else '⋆ᵀ'} W({c})"
    return f" = δ({c}) W({c})ᵀ"


def _param_grad_label(lt: LayerTrace, k: str, prev: str) -> str:
    """The row label of ∂L/∂(weight k) of layer lt, with its formula where the course gives one."""
    l = lt.l  # noqa: E741
    if k == "kernel" and _is_transpose(lt):
        return f"∂L/∂W({l}) = Σ patches(δ({l}))ᵀ h({prev})"
    if k == "kernel" and _is_conv(lt):
        return f"∂L/∂W({l}) = Σ patches(h({prev}))ᵀ δ({l})"
    if k == "kernel":
        return f"∂L/∂W({l}) = h({prev})ᵀ δ({l})"
    if k == "bias" and _is_conv(lt):
        return f"∂L/∂b({l}) = Σ_batch,pixels δ({l})"
    if k == "bias":
        return f"∂L/∂b({l}) = Σ δ({l})"
    return f"∂L/∂{_sym(k, l)}"


def _align(rows: list[tuple[str, str]]) -> list[str]:
    width = max((len(a) for a, b in rows if b), default=0)
    out = []
    for a, b in rows:
        out.append(f"  {a.ljust(width)}  {b}".rstrip() if b else (f"  {a}" if a else ""))
    return out
