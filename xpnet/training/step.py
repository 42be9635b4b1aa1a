"""The training step, written once as plain array code.

    batch (fixed buffers) → layers forward → loss (from the logits where fused) → layers backward
    hand gradients to the sink → [Allreduce] → optimizer update → metric sums on the device

Every decision about how it runs is the model's plan (training/plan.py: `model.plan.explain()`):
the form each layer call runs in (an output stopping at its pre-activation for the fused loss, a
relu moved after its max pool), the sink (plain SGD may update each layer inside backprop). Backend
variants sit behind the calls: `ops.fused_loss` (one CuPy kernel per row block, in-place NumPy),
the optimizer rule (one fused kernel on CuPy). Every number that
changes from step to step is read from device memory (the learning rate, the optimizer's t, the
dropout counters and row offsets), so on CuPy the whole step can be recorded once and replayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..activations import NotDifferentiableError
from ..backend import metric_kernels
from ..backend.base import DeviceScalar
from ..layers import custom
from ..params import GradientSink, ParamStore
from . import data
from .plan import Form, Plan

if TYPE_CHECKING:
    from ..optimizers import Optimizer
    from .distributed import Communicator
    from .protocol import TrainableModel as Trainer


class Planned(Protocol):
    """What the step needs of the model beyond `Trainer`: its plan and the program runs (models/functional.py)."""

    @property
    def plan(self) -> Plan: ...

    def run_forward(self, x: Any, training: bool, forms: Sequence[Form]) -> list[Any]: ...

    def run_backward(self, grads: Sequence[Any], forms: Sequence[Form]) -> None: ...


Array = Any


def loss_and_grads(
    model: Trainer,
    xb: Array,
    yb: Array,
    coef: Array,
    scale: Any = 1.0,
    add_penalty_grad: bool = True,
    plan: Plan | None = None,
    wb: Array | None = None,
) -> tuple[Array, list[Array], list[Array]]:
    """Forward and backward on one batch: the sink receives scale × ∂(mean loss + penalty)/∂w.

    xb, yb: arrays, or lists with one per input / output of a multi-input / multi-output model.
    scale: the optimizer's `gradient_scale()` (η for plain SGD) or 1, in the model's dtype;
    coef: scale / (global batch size), the factor on the per-sample loss gradients.
    Returns (Σ per-sample loss + batch size × weight penalty, [each output's unweighted Σ loss],
    [each output]), on the device. The total is Σ_k loss_weight_k × Σ loss_k; each output's own
    loss is reported without its loss weight, as Keras 3's history does.
    plan: `model.plan`, when the caller already has it.
    wb: (batch,) sample weights or None, for every output. Keras's reduction: the batch loss is
    Σ wᵢℓᵢ / batch size (not / Σ wᵢ), so each sample's gradient row (p − y on the fused path) is
    scaled by wᵢ.
    """
    loss_sum, sums, preds = forward_backward(model, xb, yb, coef, plan, wb)
    store = model.store
    if store.regularized():
        loss_sum = add_penalty(store, loss_sum, scale, add_penalty_grad, data.rows(xb))
    return loss_sum, sums, preds


def forward_backward(
    model: Trainer, xb: Array, yb: Array, coef: Array, plan: Plan | None = None, wb: Array | None = None
) -> tuple[Array, list[Array], list[Array]]:
    """`loss_and_grads` without the weight penalty: (Σ loss, [each output's Σ loss], [each output])."""
    sums, preds, added = _backprop(model, xb, yb, coef, plan, wb, True)
    return _loss_total(model, xb, sums, added), sums, preds


def _backprop(
    model: Trainer,
    xb: Array,
    yb: Array,
    coef: Array,
    plan: Plan | None,
    wb: Array | None,
    summed: bool,
    totals: list[Array] | None = None,
    running: list[Array] | None = None,
    counter: Array | None = None,
) -> tuple[list[Array], list[Array], list[Array]]:
    """The forward and backward of `forward_backward`: ([each output's Σ loss, or with summed=False its
    per-sample loss (batch,)], [each output], [the add_loss values]). totals, running: see `_loss_with_bias`;
    counter: the optimizer's device count t, moved by the first output's loss that adds its bias (there is
    one where the step passes it: `Plan.count_in_loss`)."""
    ops = model.ops
    assert ops is not None
    xp = ops.xp
    runner = cast(Planned, model)
    plan = runner.plan if plan is None else plan
    # where fused, an output layer stops at u and the loss applies the activation and gives p − y directly
    fused = plan.fused
    ys = [yb] if model.single_output else list(yb)
    outs = runner.run_forward(xb, True, plan.train_forms)
    grads, preds, sums = [], [], []
    for k, (loss, w) in enumerate(zip(model.compiled_losses, model.loss_weights, strict=True)):
        # a weight of 1 multiplies nothing, so a one-output model computes exactly what it always did
        c = coef if w == 1.0 else coef * w
        if fused[k] and plan.loss_bias[k]:  # the output layer stopped at xW: the loss adds its bias
            layer = model.output_layers[k]
            value, grad, out = _loss_with_bias(
                ops, layer, loss, ys[k], outs[k], c, wb is None, totals, running, counter
            )
            counter = None
        elif fused[k]:
            value, grad, out = ops.fused_loss(loss, model.output_layers[k].activation, ys[k], outs[k], c)
        else:
            out = outs[k]
            value, grad = loss.call(xp, ys[k], out), loss.grad(xp, ys[k], out) * c
        if wb is not None:  # unweighted runs skip this entirely, so they stay bit-identical
            value = value * wb
            grad = grad * xp.reshape(wb, (-1,) + (1,) * (grad.ndim - 1))
            if fused[k] and plan.loss_bias[k]:  # ∂L/∂b of the weighted rows (the output layer's, from above)
                assert layer.sink is not None
                layer.sink.column_sum(layer, "bias", grad)
        grads.append(grad)
        preds.append(out)
        sums.append(xp.sum(value) if summed else value)
    # add_loss values join the mean loss: each is seeded with scale / global batch × this rank's rows
    added = model.step_added_losses()
    if added:
        with custom.added_loss_seed(coef * data.rows(xb)):
            runner.run_backward(grads, plan.train_forms)
    else:  # no layer added a loss in this forward pass: backward reads no seed
        runner.run_backward(grads, plan.train_forms)
    return sums, preds, added


def _loss_total(model: Trainer, xb: Array, sums: list[Array], added: list[Array]) -> Array:
    """Σ_k loss_weight_k × Σ loss_k + the add_loss values × this rank's rows (the penalty is `add_penalty`'s)."""
    loss_sum = _weighted_total(sums, model.loss_weights)
    for value in added:
        term = value * data.rows(xb)
        loss_sum = term if loss_sum is None else loss_sum + term
    return loss_sum


def add_penalty(store: ParamStore, loss_sum: Array, scale: Any, add_grad: bool, rows: int) -> Array:
    """The weight penalty's gradient (× scale) into the sink, and loss_sum + rows × penalty.

    add_grad: False on every rank but one of a data-parallel run (the Allreduce shares its gradient).
    """
    if add_grad:
        store.add_penalty_grads(scale)
    return loss_sum + store.penalty() * rows


def require_trainable(store: ParamStore) -> None:
    """Refuse to train the store's layers through a step activation (no useful gradient) or with no trainable weight."""
    for layer in store.layers:  # the leaf layers, as the store was laid out for them
        act = layer.activation
        if act is not None and not act.differentiable:
            raise NotDifferentiableError(
                f"layer {layer.name!r} uses the {act.name!r} activation, a step function with no useful "
                "gradient, so fit() cannot backpropagate through it. Use 'sigmoid' or 'tanh' (smooth steps), "
                "or train a perceptron with the perceptron learning rule."
            )
    if store.trainable_size == 0:
        raise ValueError(
            "fit: the model has no trainable parameters"
            + (" (every layer with weights has trainable=False)" if store.size else "")
        )


def _weighted_total(sums: list[Array], weights: list[float]) -> Array:
    """Σ loss_weight_k × (output k's Σ loss); a weight of 1 multiplies nothing (one-output runs stay bit-identical)."""
    total: Array = None
    for s, w in zip(sums, weights, strict=True):
        term = s if w == 1.0 else s * w
        total = term if total is None else total + term
    return total


def batch_sums(
    model: Trainer, loss_sum: Array, sums: list[Array], yb: Array, preds: list[Array], wb: Array | None = None
) -> list[Array]:
    """[Σ loss, (each output's Σ loss, with several outputs), *each output's metric states,
    *weighted metric states] of one batch: plain metrics ignore sample weights, `weighted_metrics`
    (one-output models) use them, as Keras."""
    assert model.ops is not None
    xp = model.ops.xp
    ys = [yb] if model.single_output else list(yb)
    states = [_update(xp, m, ys[k], preds[k]) for k, metrics in enumerate(model.output_metrics) for m in metrics]
    states += [m.update(xp, ys[0], preds[0], wb) for m in model.weighted_metrics]
    return [loss_sum, *([] if model.single_output else sums), *states]


def _update(xp: Any, metric: Any, y: Array, pred: Array) -> Array:
    """A metric's contribution to the running sums; a Keras-style metric updates its own variables
    on the device instead and contributes nothing (its `result()` is read with the sums)."""
    if metric.stateful:
        metric.update_state(y, pred)
        return xp.zeros((0,), dtype=pred.dtype)
    return metric.update(xp, y, pred)


class TrainStep:
    """One mini-batch update of `model`, for the optimizer and communicator it was made with.

    Call it with this rank's batch (views of the fixed buffers) and the global batch size;
    it returns the device sums [loss, *metric states] of the batch, without a host read.
    """

    def __init__(self, model: Trainer, comm: Communicator) -> None:
        assert model.optimizer is not None and model.ops is not None
        self.model, self.comm = model, comm
        self.optimizer: Optimizer = model.optimizer
        self.plan: Plan = cast(Planned, model).plan
        # the store, its penalty and this rank's part stay for the step's life: a new store (install,
        # layers taken back from another model) or communicator makes a new step
        self.store: ParamStore = model.store
        self.trainable_under: Plan | None = None  # the plan the model was last found trainable under
        self.regularized = bool(self.store.regularized())
        self.adds_penalty_grad = comm.is_root  # data-parallel: one rank adds the penalty's gradient
        self.sink: GradientSink = self.choose_sink()
        self._denoms: dict[int, DeviceScalar] = {}
        self._coefs: dict[int, DeviceScalar] = {}  # η / batch of a constant-rate optimizer, per batch size
        moving = int(self.store.moving.shape[0])
        self.average_moving = bool(moving) and comm.size > 1
        self.added_running = False  # whether the last call's sums include the running sums it was given

    def choose_sink(self) -> GradientSink:
        """The sink the plan names: the gradient buffer, or plain SGD inside backprop (the plan as it stands now)."""
        self.plan = cast(Planned, self.model).plan
        return self.plan.make_sink(self.model.store.ops)

    def factors(self, global_batch: int) -> tuple[Array, Any]:
        """(scale / global batch, scale) in the model's dtype, scale from the optimizer (float64, then cast)."""
        ops, model = self.model.ops, self.model
        assert ops is not None
        scale = self.optimizer.gradient_scale()
        if scale is None:
            d = self._denoms.get(global_batch)
            if d is None:
                d = self._denoms[global_batch] = DeviceScalar(ops, 1.0 / global_batch, model.dtype)
            return d.array, 1.0
        if self.optimizer.has_constant_rate() and _scale_is_the_rate(self.optimizer):
            # η / batch computed once per (batch size, η) on the host, exactly as the device would
            # (float64 division, then rounded to the model's dtype), and kept in device memory
            rate = self.optimizer.learning_rate
            d = self._coefs.get(global_batch)
            if d is None:
                d = self._coefs[global_batch] = DeviceScalar(ops, rate / global_batch, model.dtype)
            penalty = self.optimizer.lr() if self.regularized else 1.0
            return d.set(rate / global_batch), penalty
        penalty = ops.cast(scale, model.dtype) if self.regularized else 1.0
        # a namespace call, not an operator: a captured step keeps the results of those (see program.py)
        return ops.cast(ops.xp.divide(scale, global_batch), model.dtype), penalty

    def refresh_factors(self, global_batch: int) -> None:
        """Bring the kept η / batch up to date outside a captured step, which reads it but never recomputes it
        (a callback may have changed η since the graph was recorded)."""
        d = self._coefs.get(global_batch)
        if d is not None and self.optimizer.has_constant_rate() and _scale_is_the_rate(self.optimizer):
            d.set(self.optimizer.learning_rate / global_batch)

    def _fused_sums(
        self, fused: bool, totals: list[Array], values: list[Array], yb: Array, preds: list[Array], running: Any
    ) -> list[Array] | None:
        """The batch's [Σ loss, hits] from the loss kernel (`totals`, running + batch where it was given the
        running sums: `added_running` says so) or from `loss_and_hits`; None where the plain sums run."""
        self.added_running = fused and running is not None and bool(totals)
        if not fused:
            return None
        return totals or _loss_and_hits(self.model, values, yb, preds)

    def __call__(
        self, xb: Array, yb: Array, global_batch: int, wb: Array | None = None, running: list[Array] | None = None
    ) -> list[Array]:
        model, comm = self.model, self.comm
        ops = model.ops
        assert ops is not None
        model.hold_layers()  # a callback may have run a model that shares layers: their values come back first
        plan = cast(Planned, model).plan
        if plan is not self.trainable_under:  # the first step, or a layer changed (its activation, a method)
            require_trainable(self.store)
            self.trainable_under = plan
        if plan is not self.plan:  # remade since the last step (a momentum set from 0 among the causes)
            self.plan = plan
            self.sink = self.choose_sink()
            self.optimizer.add_missing_slots()
        store = self.store
        store.use_sink(self.sink)
        coef, scale = self.factors(global_batch)
        # one launch for the loss sum and the accuracy count where the backend has the kernel
        fuse = ops.fuses_launches and wb is None and not self.regularized and _hits_metric(model) is not None
        totals: list[Array] = []  # [Σ loss, hits] where the loss kernel counted them as well
        # the optimizer's device count t for the loss kernel to move (`Plan.count_in_loss`); None: `apply` moves it
        counter = self.optimizer.device_count if plan.count_in_loss else None
        sums, preds, added = _backprop(
            model, xb, yb, coef, plan, wb, not fuse, totals if fuse else None, running, counter
        )
        fused_sums = self._fused_sums(fuse and not added, totals, sums, yb, preds, running)
        if fused_sums is None:
            if fuse:
                sums = [ops.xp.sum(v) for v in sums]
            loss_sum = _loss_total(model, xb, sums, added)
            if self.regularized:
                loss_sum = add_penalty(store, loss_sum, scale, self.adds_penalty_grad, data.rows(xb))
        if comm.size > 1:
            comm.allreduce_sum(ops, store.grads)
            if self.average_moving:
                # each rank normalised with its own shard's batch statistics (Keras's default,
                # synchronized=False); the moving statistics are averaged so every rank keeps the same,
                # over the ranks that had rows: a last global batch smaller than the number of ranks
                # leaves some shards empty (shard gives min(size, global_batch) ranks one row or more)
                if data.rows(xb) == 0:
                    store.moving[...] = 0
                comm.allreduce_sum(ops, store.moving)
                store.moving[...] *= 1.0 / min(comm.size, global_batch)
        if counter is None:  # the signature a subclass's own `apply` may have (before `counted`)
            self.optimizer.apply(store, self.sink)
        else:  # SGD's own apply (`Plan.count_in_loss` checks): the loss kernel moved t
            self.optimizer.apply(store, self.sink, counted=True)
        if fused_sums is not None:
            return fused_sums
        return batch_sums(model, loss_sum, sums, yb, preds, wb)


def _loss_with_bias(
    ops: Any,
    layer: Any,
    loss: Any,
    y: Array,
    u: Array,
    scale: Any,
    bias_grad: bool,
    totals: list[Array] | None,
    running: list[Array] | None = None,
    counter: Array | None = None,
) -> Any:
    """The fused loss of an output whose layer stopped at u = xW (`Plan.loss_bias`): (per-sample loss,
    scale · ∂ℓ/∂u, the output), u becoming the logits. With bias_grad, ∂L/∂b goes to the layer's sink from
    the same launch (plain SGD inside backprop: b −= it there, `Plan.bias_update_in_loss`); where the backend
    has them from it too, the batch's [Σ loss, sparse accuracy count] are appended to `totals` (with `running`,
    the fit's [Σ loss, count] so far, the running sums plus the batch's: the add of `replay.accumulate`).
    counter: None or the optimizer's device count t, moved to t + 1 by the same launch."""
    sink = layer.sink if bias_grad and "bias" in layer.grads else None
    bias = layer.params["bias"]
    target, mode = None if sink is None else sink.put_target(layer, "bias"), "set"
    if target is None and sink is not None and sink.applies_update:
        column = sink.column_target(layer, "bias")
        if column is not None and column[0] is bias:  # the update b −= Σ_rows du, as `put` would do it
            target, mode = column
    if sink is not None and target is None:  # a sink that adds, or updates otherwise: the sum goes there after
        target = ops.xp.empty_like(bias)
        out = ops.fused_loss_with_bias(
            loss, layer.activation, y, u, bias, scale, target, totals, "set", running, counter
        )
        sink.put(layer, "bias", target)
        return out
    return ops.fused_loss_with_bias(loss, layer.activation, y, u, bias, scale, target, totals, mode, running, counter)


def _hits_metric(model: Trainer) -> Any:
    """The model's one metric where it is the sparse accuracy and the loss its one loss of weight 1, else None."""
    from ..metrics import SparseCategoricalAccuracy

    metrics = model.output_metrics
    if not model.single_output or model.loss_weights != [1.0] or model.weighted_metrics or len(metrics[0]) != 1:
        return None
    m = metrics[0][0]
    return m if type(m) is SparseCategoricalAccuracy and not m.stateful else None


def _loss_and_hits(model: Trainer, values: list[Array], yb: Array, preds: list[Array]) -> list[Array] | None:
    """[Σ loss, accuracy count] of the batch in one launch (`metric_kernels.loss_and_hits`), None where the
    backend or the layout has no such kernel (the plain sums then run)."""
    assert model.ops is not None
    return metric_kernels.loss_and_hits(model.ops.xp, values[0], yb, preds[0])


def _scale_is_the_rate(opt: Optimizer) -> bool:
    """Whether `opt.gradient_scale()` is SGD's own η (not a subclass's or an instance's override of it or of lr)."""
    from ..optimizers import SGD

    cls = type(opt)
    return (
        cls.gradient_scale is SGD.gradient_scale
        and cls.lr is SGD.lr
        and not any(k in vars(opt) for k in ("gradient_scale", "lr"))
    )


def forward_sums(model: Trainer, xb: Array, yb: Array, one: Array, wb: Array | None = None) -> list[Array]:
    """Inference-mode loss and metric sums of one batch, in `batch_sums`'s order, on the device."""
    ops = model.ops
    assert ops is not None
    xp = ops.xp
    runner = cast(Planned, model)
    plan = runner.plan
    fused = plan.fused
    ys = [yb] if model.single_output else list(yb)
    outs = runner.run_forward(xb, False, plan.train_forms)
    preds, sums = [], []
    for k, loss in enumerate(model.compiled_losses):
        if fused[k] and plan.loss_bias[k]:
            value, _, out = _loss_with_bias(ops, model.output_layers[k], loss, ys[k], outs[k], one, False, None)
        elif fused[k]:
            value, _, out = ops.fused_loss(loss, model.output_layers[k].activation, ys[k], outs[k], one)
        else:
            out = outs[k]
            value = loss.call(xp, ys[k], out)
        if wb is not None:
            value = value * wb
        preds.append(out)
        sums.append(xp.sum(value))
    loss_sum = _weighted_total(sums, model.loss_weights)
    for added in model.step_added_losses():  # add_loss values count in evaluation too, as in Keras
        loss_sum = loss_sum + added * data.rows(xb)
    return batch_sums(model, loss_sum, sums, yb, preds, wb)
