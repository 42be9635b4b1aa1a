"""The training step, written once as plain array code.

    batch (fixed buffers) → layers forward → loss (from the logits where fused) → layers backward
    hand gradients to the sink → [Allreduce] → optimizer update → metric sums on the device

Backend variants sit behind the calls: `ops.fused_loss` (one CuPy kernel per row block, in-place
NumPy), the sink (`InPlaceSGD` updates each layer inside backprop on NumPy), the optimizer rule
(one fused kernel on CuPy). They are chosen once, when the step is made. Every number that
changes from step to step is read from device memory (the learning rate, the optimizer's t, the
dropout counters and row offsets), so on CuPy the whole step can be recorded once and replayed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..backend.base import DeviceScalar
from ..layers.fusion import ReluAfterMaxPool
from ..params import GradientSink

if TYPE_CHECKING:
    from ..distributed import Communicator
    from ..optimizers import Optimizer
    from .trainer import Trainer

Array = Any


def loss_and_grads(
    model: Trainer, xb: Array, yb: Array, coef: Array, scale: Any = 1.0, add_penalty_grad: bool = True
) -> tuple[Array, Array]:
    """Forward and backward on one batch: the sink receives scale × ∂(mean loss + penalty)/∂w.

    scale: the optimizer's `gradient_scale()` (η for plain SGD) or 1, in the model's dtype;
    coef: scale / (global batch size), the factor on the per-sample loss gradients.
    Returns (Σ per-sample loss + batch size × weight penalty, the model's output), on the device.
    """
    ops, loss = model.ops, model.loss
    assert ops is not None and loss is not None
    xp = ops.xp
    if model.fused_loss:  # the last layer stops at u; the loss applies the activation and gives p − y directly
        u = model.forward_logits(xb, training=True)
        value, grad, out = ops.fused_loss(loss, model.layers[-1].activation, yb, u, coef)
    else:
        out = model.forward(xb, training=True)
        value, grad = loss.call(xp, yb, out), loss.grad(xp, yb, out) * coef
    model.backward(grad, from_logits=model.fused_loss)
    loss_sum = xp.sum(value)
    if model.store.regularized():
        if add_penalty_grad:  # data-parallel: one rank adds it, the Allreduce shares it
            model.store.add_penalty_grads(scale)
        loss_sum = loss_sum + model.store.penalty() * xb.shape[0]
    return loss_sum, out


class TrainStep:
    """One mini-batch update of `model`, for the optimizer and communicator it was made with.

    Call it with this rank's batch (views of the fixed buffers) and the global batch size;
    it returns the device sums [loss, *metric states] of the batch, without a host read.
    """

    def __init__(self, model: Trainer, comm: Communicator) -> None:
        assert model.optimizer is not None and model.ops is not None
        self.model, self.comm = model, comm
        self.optimizer: Optimizer = model.optimizer
        self.sink: GradientSink = self.optimizer.gradient_sink(model.store, comm.size == 1)
        self._denoms: dict[int, DeviceScalar] = {}
        self.plan = ReluAfterMaxPool(model.layers)  # exact rewrites, on while the step runs

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
        penalty = ops.cast(scale, model.dtype) if model.store.regularized() else 1.0
        return ops.cast(scale / global_batch, model.dtype), penalty

    def __call__(self, xb: Array, yb: Array, global_batch: int) -> list[Array]:
        model, comm = self.model, self.comm
        ops = model.ops
        assert ops is not None
        model.store.use_sink(self.sink)
        coef, scale = self.factors(global_batch)
        with self.plan:
            loss_sum, out = loss_and_grads(model, xb, yb, coef, scale, add_penalty_grad=comm.is_root)
        if comm.size > 1:
            comm.allreduce_sum(ops, model.store.grads)
        self.optimizer.apply(model.store, self.sink)
        return [loss_sum, *(m.update(ops.xp, yb, out) for m in model.metrics)]


def forward_sums(model: Trainer, xb: Array, yb: Array, one: Array) -> list[Array]:
    """Inference-mode loss and metric sums of one batch: [Σ loss, *metric states] on the device."""
    ops, loss = model.ops, model.loss
    assert ops is not None and loss is not None
    xp = ops.xp
    with ReluAfterMaxPool(model.layers):
        if model.fused_loss:
            u = model.forward_logits(xb, training=False)
            value, _, out = ops.fused_loss(loss, model.layers[-1].activation, yb, u, one)
        else:
            out = model.forward(xb, training=False)
            value = loss.call(xp, yb, out)
    return [xp.sum(value), *(m.update(xp, yb, out) for m in model.metrics)]
