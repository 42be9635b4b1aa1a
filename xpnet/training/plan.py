"""Every execution decision of one compiled model, made once and said in words.

A `Plan` is made from the model as it stands (its layers, backend, optimizer, communicator,
losses and `jit_compile` request) the first time `model.plan` is read, and made again when any
of those changes (a recompile, `layer.trainable` applied by compile, a layer added or popped, an
activation or a method replaced on a layer, the optimizer's momentum, schedule or update rule).
It decides:

- where backprop puts the weight gradients: into the gradient buffer for the optimizer's update,
  or, for plain SGD, straight into the weights as backprop reaches each layer (`InPlaceSGD`);
- which outputs start backprop from their pre-activation (softmax + cross-entropy gives p − y);
- which (relu, max pool) pairs run as relu(maxpool(u)), on 4× fewer elements for 2×2 windows;
- how `predict` runs: the layer calls, or the backend's transposed small-batch program for a
  chain of affine layers, and whether NaN inputs are looked for before or after the forward pass;
- whether the training step may be captured as a CUDA graph (training/program.py's criteria).

The model runs what the plan lists: each call of its forward program has a `Form` here (which of
the layer's methods run it), so a layer never carries a switch that changes what its code does.
`model.plan.explain()` gives the decisions as a few sentences.

Why the rewrites are exact: relu and max are monotone, so relu(maxpool(u)) = maxpool(relu(u)) bit
for bit, and a window whose maximum is positive sends its gradient to the same (first) argmax
either way, one whose maximum is ≤ 0 sends nothing either way; a NaN stays NaN in both orders.
The fused loss and the transposed predict are tested against the plain code (tests/test_plan.py,
tests/test_fastpaths.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..activations import ReLU as ReluActivation
from ..backend import _cublas
from ..layers import merge
from ..layers.activation import Activation
from ..layers.base import _STEP_METHODS, Layer
from ..layers.batch_normalization import BatchNormalization
from ..layers.conv import Conv2D
from ..layers.conv1d import Conv1D
from ..layers.conv2d_transpose import Conv2DTranspose
from ..layers.dense import Dense
from ..layers.dropout import Dropout
from ..layers.elementwise import LeakyReLU, Rescaling
from ..layers.elu import ELU
from ..layers.flatten import Flatten
from ..layers.pooling import MaxPooling2D
from ..layers.prelu import PReLU
from ..layers.relu import ReLU
from ..layers.softmax import Softmax
from ..params import GradientSink, InPlaceSGD
from .capturable import capture_obstacle, replay_obstacle

if TYPE_CHECKING:
    from ..backend import Ops


@dataclass(frozen=True)
class Form:
    """How one call of the forward program runs: the layer methods for forward and for backward."""

    name: str
    forward: str
    backward: str


AS_WRITTEN = Form("as written", "forward", "backward")
# the layer stops at u (the loss, or the max pool above, applies the activation) and backward starts from ∂L/∂u
PREACTIVATION = Form("pre-activation", "forward_preactivation", "backward_preactivation")
# a Dense output stops at xW: its fused loss adds the bias as it reads u and gives ∂L/∂b with ∂L/∂u
BIAS_IN_LOSS = Form("pre-activation, its bias added by the loss", "forward_product", "backward_product")
RELU_AFTER_POOL = Form("max pool, then the relu of the layer below", "forward_relu_after", "backward_relu_after")
# predict keeps no pre-activation, so the activation may reuse its memory
IN_PLACE = Form("activation in place", "forward_inference", "backward")

# The classes whose backward hands every weight gradient to `layer.sink` (so plain SGD may update
# them inside backprop). A subclass is not listed: it may compute its gradients otherwise.
SINK_ONLY = frozenset({Dense, Conv2D, Conv1D, Conv2DTranspose, BatchNormalization, PReLU})
# The classes whose output row is NaN when an input row is (given the backend's kernels, probed by
# `Ops.carries_nan` and `Ops.matmul_keeps_nan`): then predict may check its outputs, not its inputs.
KEEP_NAN = frozenset(
    {Activation, Dense, Dropout, Flatten, PReLU, ReLU, LeakyReLU, ELU, Rescaling, Softmax}
    | {merge.Add, merge.Average, merge.Concatenate, merge.Maximum, merge.Minimum, merge.Multiply, merge.Subtract}
)
# the classes that can say when they are h = act(x·kernel + bias) at inference (`inference_affine`)
AFFINE_LAYERS = frozenset({Dense})
# the classes whose `forward_inference` is their inference forward with the activation in place
IN_PLACE_LAYERS = frozenset({Dense, Conv2D, Conv1D, Conv2DTranspose})


@runtime_checkable
class TransposedInference(Protocol):
    """A backend with a program for predict over a chain of affine layers, uᵀ = Wᵀhᵀ (NumPy's; CuPy runs the layers).

    chain: per layer an `Affine` (h = act(xW + b)) or None for an identity at inference."""

    def inference_route(self, chain: list[Any]) -> str | None:
        """The batches the program takes for this chain, in words; None: never."""

    def inference_program(self, chain: list[Any], n: int, rows: int) -> Callable[[Any, Any], None] | None:
        """The program for the logits of n rows in batches of `rows`, or None where it does not pay."""


@dataclass(frozen=True, repr=False)
class Plan:
    """The decisions for one compiled model; see the module docstring. Frozen: a change makes a new one.

    train_forms / predict_forms: one `Form` per call of the model's forward program, in its order
    (train_forms also serve evaluate, with training=False).
    affine_chain: per layer its `Affine` (None for an inference identity), for the transposed predict.
    """

    sink: str  # "in backprop", "gradient buffer" or "none" (not compiled)
    sink_reason: str
    fused: tuple[bool, ...]
    fused_activations: tuple[str, ...]
    relu_pairs: tuple[tuple[str, str], ...]
    train_forms: tuple[Form, ...]
    predict_forms: tuple[Form, ...]
    # "transposed small batches" (an affine chain the backend has a program for, where it takes the batch
    # size: `predict_when` says which) or "layer by layer"
    predict_route: str
    logits_at_end: bool  # predict applies the output activation once over all the logits
    captures: bool
    capture_reason: str
    loss_bias: tuple[bool, ...]  # per output: its fused loss adds the output layer's bias (`BIAS_IN_LOSS`)
    # that loss's kernel also moves the optimizer's device count t: plain SGD inside backprop (`bias_update_in_loss`)
    # leaves no update pass to move it; SGD's own `apply` then moves the host's count only (`counted`)
    count_in_loss: bool = False
    affine_chain: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)
    # (backend, the layers' activations) where every layer passes a NaN row on, else None: the backend's
    # kernels are probed only when predict first asks (a probe reads the device, which fit never needs)
    nan_probe: tuple[Any, tuple[Any, ...]] | None = field(default=None, compare=False, repr=False)
    key: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    predict_when: str = ""  # the backend's condition for the transposed route (`TransposedInference.inference_route`)

    @cached_property
    def nan_check(self) -> str:
        """Where predict looks for NaN: "by output" where a NaN input surely reaches the output on this backend
        (the outputs are checked, the inputs only if one is not finite), else "by input"."""
        if self.nan_probe is None:
            return "by input"
        ops, acts = self.nan_probe
        keeps = ops.matmul_keeps_nan() and all(a is None or ops.carries_nan(a) for a in acts)
        return "by output" if keeps else "by input"

    @property
    def updates_in_backprop(self) -> bool:
        """Whether plain SGD updates each layer's weights as backprop reaches it."""
        return self.sink == "in backprop"

    @property
    def bias_update_in_loss(self) -> bool:
        """Whether the loss kernel that sums an output layer's bias gradient also applies plain SGD's update to
        that bias (b −= the sum; `Ops.fused_loss_with_bias` mode "sub"): the bias is in the loss and the
        weights are updated inside backprop."""
        return self.updates_in_backprop and any(self.loss_bias)

    def batch_logits(self, ops: Ops, n: int, rows: int) -> Callable[[Any, Any], None] | None:
        """How predict computes the logits of n rows in batches of `rows`: a function (x batch, out rows) that
        writes them, the backend's program for this plan's route; or None: the layers' own forward."""
        if self.affine_chain is None or not isinstance(ops, TransposedInference):
            return None
        return ops.inference_program(list(self.affine_chain), n, rows)

    def make_sink(self, ops: Ops) -> GradientSink:
        """The sink this plan sends gradients to, on `ops`."""
        return InPlaceSGD(ops) if self.updates_in_backprop else GradientSink(ops)

    def explain(self) -> str:
        """The decisions as a few plain sentences."""
        if self.sink == "in backprop":
            where = f"weights updated inside backprop: {self.sink_reason}"
        elif self.sink == "none":
            where = "not compiled: predict only"
        else:
            where = f"gradients into the buffer, then the optimizer's update: {self.sink_reason}"
        fused = [a for a, f in zip(self.fused_activations, self.fused, strict=True) if f]
        loss = f"{', '.join(sorted(set(fused)))} fused into the loss" if fused else "no activation fused into the loss"
        if self.count_in_loss:
            loss += " (with the output layer's bias, its gradient, its SGD update and the optimizer's step count)"
        elif self.bias_update_in_loss:
            loss += " (with the output layer's bias, its gradient and its SGD update)"
        elif any(self.loss_bias):
            loss += " (with the output layer's bias and its gradient)"
        pools = ", ".join(f"{a} → {b}" for a, b in self.relu_pairs)
        rewrite = f"relu moved after the max pool: {pools}" if pools else "no relu moved after a max pool"
        end = ", output activation once over all rows" if self.logits_at_end else ""
        when = f" ({self.predict_when})" if self.predict_when else ""
        predict = f"predict: {self.predict_route}{when}{end}, NaN check {self.nan_check}"
        return "; ".join([where, loss, rewrite, predict, f"step: {self.capture_reason}"]) + "."

    def __str__(self) -> str:
        return f"Plan: {self.explain()}"

    def __deepcopy__(self, memo: dict[int, Any]) -> Plan:
        # immutable, and tied to the objects of its key: a copied model's key differs, so it plans again
        return self

    def __repr__(self) -> str:
        return (
            f"Plan(sink={self.sink!r}, fused={self.fused}, relu_pairs={len(self.relu_pairs)}, "
            f"predict={self.predict_route!r}, nan_check={self.nan_check!r}, captures={self.captures})"
        )


def plan_key(model: Any, nodes: Sequence[Any]) -> tuple[Any, ...]:
    """What a plan depends on: the objects themselves (held, so no id is reused), compared by `same_key`.

    Read before every training step, so it calls no methods: the layers' instance dicts are looked at
    directly for replaced step methods (what `Layer.replaces_methods` checks).
    """
    state = model.__dict__
    key = [model.ops, state.get("_store"), model.optimizer, state.get("_comm"), state.get("_jit_compile")]
    # a refused capture, and whether cuBLAS is bound directly now (in-place SGD folds into its GEMM)
    key += [state.get("_capture_refused"), getattr(model.ops, "blas", None) is not None]
    key += model.compiled_losses
    key += [*model.metrics, *model.weighted_metrics]  # made anew by each compile; _capture checks them
    # what _sink and _capture read of the optimizer instance: settable after compile (and after predict planned)
    opt = vars(model.optimizer) if model.optimizer is not None else {}
    key += [opt.get("momentum"), "update" in opt or "apply" in opt, opt.get("_schedule")]
    for n in nodes:
        key += (n.layer, n.layer.activation, any(m in n.layer.__dict__ for m in _STEP_METHODS))
    store = state.get("_store")
    if store is not None:  # the layers of a nested model too: the sink asks each weight's layer
        key += [any(m in s.layer.__dict__ for m in _STEP_METHODS) for s in store.trainable_slots]
        # and each leaf layer's activation: the step checks trainability again when the plan is remade
        key += [layer.activation for layer in store.layers]
    return tuple(key)


def same_key(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether two `plan_key`s hold the same objects (and equal numbers and flags)."""
    if len(a) != len(b):
        return False
    return all(
        x is y or (type(x) in (bool, int, float, str) and type(x) is type(y) and x == y)
        for x, y in zip(a, b, strict=True)
    )


def current_plan(model: Any, plan: Plan | None, nodes: Sequence[Any]) -> Plan:
    """`plan` while what it depends on is unchanged, else a new one for `model` as it stands."""
    key = plan_key(model, nodes)
    if plan is not None and same_key(plan.key, key):
        return plan
    return make_plan(model, key)


def make_plan(model: Any, key: tuple[Any, ...] | None = None) -> Plan:
    """Decide how `model` runs (built models; compiled for the training decisions)."""
    nodes = _nodes(model)
    compiled = model.optimizer is not None and model.loss is not None and model.built
    fused = tuple(model.fused_outputs) if compiled else (False,) * len(model.outputs)
    pairs = _relu_pairs(model, nodes)
    chain, at_end = _affine_chain(model, nodes)
    loss_bias = _loss_bias(model, fused)
    train_forms, predict_forms = _forms(model, nodes, fused, loss_bias, pairs, at_end)
    captures, capture_reason = _capture(model) if compiled else (False, "not compiled")
    sink, reason = _sink(model, captures) if compiled else ("none", "not compiled")
    counts = sink == "in backprop" and any(loss_bias) and _apply_is_sgds(model.optimizer)
    chain, when = _predict_route(model, chain)
    route = "transposed small batches" if chain is not None else "layer by layer"
    return Plan(
        sink=sink,
        sink_reason=reason,
        fused=fused,
        fused_activations=tuple(_activation_name(layer) for layer in _output_layers(model)),
        relu_pairs=tuple((str(a.layer.name), str(b.layer.name)) for a, b in pairs),
        train_forms=train_forms,
        predict_forms=predict_forms,
        predict_route=route,
        logits_at_end=at_end,
        nan_probe=_nan_probe(model, nodes),
        captures=captures,
        capture_reason=capture_reason,
        loss_bias=loss_bias,
        count_in_loss=counts,
        affine_chain=chain,
        predict_when=when,
        key=plan_key(model, nodes) if key is None else key,
    )


def _forms(
    model: Any,
    nodes: list[Any],
    fused: tuple[bool, ...],
    loss_bias: tuple[bool, ...],
    pairs: list[tuple[Any, Any]],
    at_end: bool,
) -> tuple[tuple[Form, ...], tuple[Form, ...]]:
    """Per call, the form training runs it in and the form predict runs it in."""
    paired = {id(n): f for a, b in pairs for n, f in ((a, PREACTIVATION), (b, RELU_AFTER_POOL))}
    ends = {
        id(_node_of(t)): BIAS_IN_LOSS if b else PREACTIVATION
        for t, f, b in zip(model.outputs, fused, loss_bias, strict=True)
        if f
    }
    train = tuple(ends.get(id(n)) or paired.get(id(n), AS_WRITTEN) for n in nodes)
    last = id(nodes[-1]) if at_end and nodes else None
    predict = tuple(PREACTIVATION if id(n) == last else paired.get(id(n), _inference_form(n.layer)) for n in nodes)
    return train, predict


def _loss_bias(model: Any, fused: tuple[bool, ...]) -> tuple[bool, ...]:
    """Per output, whether its fused loss adds the output layer's bias: a plain Dense with a bias whose loss and
    activation the backend has one launch for (`Ops.loss_adds_bias`)."""
    if not any(fused):
        return (False,) * len(fused)
    ops = model.ops
    return tuple(
        f
        and type(layer) is Dense
        and layer.use_bias
        and not layer.replaces_methods()
        and ops.loss_adds_bias(loss, layer.activation)
        for f, loss, layer in zip(fused, model.compiled_losses or [model.loss], _output_layers(model), strict=True)
    )


def _predict_route(model: Any, chain: tuple[Any, ...] | None) -> tuple[tuple[Any, ...] | None, str]:
    """(the affine chain predict takes the transposed route over, or None; the backend's condition for it),
    only where the backend has a program for this chain (NumPy's; CuPy runs the layers)."""
    ops = model.ops
    when = ops.inference_route(list(chain)) if chain is not None and isinstance(ops, TransposedInference) else None
    return (chain if when is not None else None), (when or "")


def _nodes(model: Any) -> list[Any]:
    return list(getattr(model, "nodes", []))


def _node_of(t: Any) -> Any:
    return t.node


def _output_layers(model: Any) -> list[Any]:
    return [_node_of(t).layer for t in model.outputs] if model.outputs else []


def _activation_name(layer: Any) -> str:
    act = getattr(layer, "activation", None)
    return str(getattr(act, "name", "none"))


def _sink(model: Any, captures: bool) -> tuple[str, str]:
    """Plain SGD goes inside backprop where every weight's gradient comes through the sink, nothing is added
    to the gradients after backprop (a penalty, an Allreduce) and the optimizer's own update rule runs."""
    from ..optimizers import SGD

    opt, ops, store = model.optimizer, model.ops, model.store
    assert opt is not None and ops is not None
    if type(opt).update is not SGD.update or any(k in vars(opt) for k in ("update", "apply")):
        return "gradient buffer", f"{type(opt).__name__}"
    if opt.momentum:
        return "gradient buffer", "SGD with momentum"
    if model.comm.size > 1:
        return "gradient buffer", f"plain SGD over {model.comm.size} processes (an Allreduce between)"
    if store.regularized():
        return "gradient buffer", "plain SGD with a weight penalty"
    others = [str(s.layer.name) for s in store.trainable_slots if not _sink_only(s.layer)]
    if others:
        return "gradient buffer", f"plain SGD, but layers {sorted(set(others))} compute their own gradients"
    if model.shares_layers:
        # a shared layer's weights serve several calls: each call's backward needs them unchanged
        return "gradient buffer", "plain SGD, but a layer is called more than once"
    if ops.fuses_launches:
        # where launches count, only a Dense updates in no launch of its own (its GEMM and its bias kernel do it);
        # another layer's update inside backprop is a subtraction per weight, more than the one pass it saves
        apart = sorted({str(s.layer.name) for s in store.trainable_slots if type(s.layer) is not Dense})
        if apart:
            return "gradient buffer", f"plain SGD, but on {ops.describe()} layers {apart} would update apart"
    # w ← w − xᵀ(ηδ) as one GEMM with β = 1 (`gemm_sub`), then a bias pass, beats filling the gradient buffer
    # and a separate pass; on CuPy the GEMM is cuBLAS's: bound directly in a captured step, CuPy's wrappers eagerly
    with _cublas.routed(ops) if captures else nullcontext():
        if not ops.runs_in_one_call("gemm_sub"):
            return "gradient buffer", f"plain SGD, but the {ops.describe()} backend has no in-place GEMM here"
    return "in backprop", "plain SGD, one process, no penalty, every layer sink-only"


def _apply_is_sgds(opt: Any) -> bool:
    """Whether the optimizer's `apply` is SGD's own (which `counted` keeps from moving t a second time)."""
    from ..optimizers import SGD

    return type(opt).apply is SGD.apply and "apply" not in vars(opt)


def _sink_only(layer: Any) -> bool:
    """Whether every gradient of the layer's weights goes through its sink: a built-in of SINK_ONLY, or a
    custom layer whose tape hands each weight gradient to the sink (layers/custom.py), methods not replaced."""
    kind = type(layer)
    return (kind in SINK_ONLY or bool(kind.__dict__.get("grads_via_sink", False))) and not layer.replaces_methods()


def _capture(model: Any) -> tuple[bool, str]:
    request = model.__dict__.get("_jit_compile", "auto")
    if request is False:
        return False, "jit_compile=False: every step runs eagerly"
    assert model.ops is not None
    if getattr(model.ops, "name", "") == "numpy":  # no CUDA graph: the step recorded once and replayed
        obstacle = replay_obstacle(model, model.ops, request)
        if obstacle is None:
            small = ' (with jit_compile="auto", steps small enough for it to pay)' if request == "auto" else ""
            return False, f"replayed: recorded once, then run as a flat list of NumPy calls{small} (model.step_program)"
        return False, f"eager: {obstacle}"
    obstacle = capture_obstacle(model, model.ops)
    if obstacle is not None:
        return False, f"eager: {obstacle}"
    refused = model.__dict__.get("_capture_refused")
    if refused is not None:  # CuPy refused an earlier capture of this model's step
        return False, refused
    return True, "captured: one CUDA graph per batch shape, after one eager warm-up step"


def _defers_relu(layer: Layer) -> bool:
    """A built-in Conv2D or Activation (not a subclass, no replaced methods) whose activation is the built-in relu."""
    return (
        type(layer) in (Conv2D, Activation)
        and type(layer.activation) is ReluActivation
        and not layer.replaces_methods()
    )


def _relu_pairs(model: Any, nodes: list[Any]) -> list[tuple[Any, Any]]:
    """(relu call, max pool call) pairs: a pool whose one input is the relu layer's output and nothing else
    reads that output (not another layer, not the model's outputs); neither layer is called twice. In a
    Sequential model these are neighbours; in a graph, neighbours in `layers` need not be."""
    calls = Counter(id(n.layer) for n in nodes)
    readers = Counter(id(t) for n in nodes for t in n.inputs) + Counter(id(t) for t in model.outputs)
    pairs = []
    for node in nodes:
        pool = node.layer
        if type(pool) is not MaxPooling2D or pool.replaces_methods() or calls[id(pool)] > 1 or len(node.inputs) != 1:
            continue
        t = node.inputs[0]
        below = t.node
        if below is not None and _defers_relu(below.layer) and calls[id(below.layer)] == 1 and readers[id(t)] == 1:
            pairs.append((below, node))
    return pairs


def _inference_form(layer: Any) -> Form:
    """In place where the class's inference forward is its own `forward` with the activation in place."""
    return IN_PLACE if type(layer) in IN_PLACE_LAYERS and not layer.replaces_methods() else AS_WRITTEN


def _affine_chain(model: Any, nodes: list[Any]) -> tuple[tuple[Any, ...] | None, bool]:
    """(per layer its `Affine` or None for an identity, or None if some layer is neither; whether predict
    applies the output activation once at the end). A chain model (Sequential) only."""
    if not getattr(model, "chain", False) or not nodes or model.ops is None:
        return None, False
    layers = [n.layer for n in nodes]
    last = layers[-1]
    # a built-in activation works row by row (not a user's function, which may mix rows)
    at_end = type(last) in AFFINE_LAYERS and getattr(last.activation, "builtin", False)
    at_end = at_end and last.inference_affine() is not None
    if not at_end:
        return None, False
    chain = []
    for layer in layers:
        affine = layer.inference_affine() if type(layer) in AFFINE_LAYERS else None
        if affine is None and not (isinstance(layer, Layer) and layer.is_inference_identity()):
            return None, True
        chain.append(affine)
    return tuple(chain), True


def _nan_probe(model: Any, nodes: Sequence[Any]) -> tuple[Any, tuple[Any, ...]] | None:
    """What `Plan.nan_check` probes: a chain of layers that each pass a NaN row on, given the backend's kernels."""
    if not getattr(model, "chain", False) or model.ops is None:
        return None
    if any(type(n.layer) not in KEEP_NAN for n in nodes):
        return None  # a user's layer may do anything
    return model.ops, tuple(n.layer.activation for n in nodes)
