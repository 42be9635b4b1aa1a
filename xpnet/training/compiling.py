"""The compile half of `Trainer`: optimizer, losses (one per output), metrics, backend and
communicator chosen at `compile`, the per-output forms of compile's arguments, and the training
step and its program made for them (`step_program`).

`Trainer` is a chain of classes, each a file: `Compiled` (here) → `on_batch.BatchRunner` (the checked
data of one call, `train_on_batch`, the one read of the running sums) → `evaluation.Evaluator`
(`evaluate`, `test_on_batch`, predict's batch loop) → `trainer.Trainer` (the `fit` loop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import activations
from .. import losses as losses_mod
from .. import metrics as metrics_mod
from .. import optimizers as opt_mod
from ..backend import Ops, get_backend
from ..layers import custom
from ..layers.base import Layer
from ..variables import Variable
from . import distributed
from .callbacks import History
from .capturable import JitRequest, check_jit_compile
from .data import BatchCheck
from .program import StepProgram
from .state import TrainState
from .step import TrainStep

if TYPE_CHECKING:
    from .protocol import TrainableModel

    # the model's structure and the rest of the chain, for the type checker only
    _Model = TrainableModel
else:
    _Model = object

Array = Any


class Compiled(_Model):
    """What `compile` decides, and the step it makes; see the module docstring for the chain."""

    layers: list[Layer]
    ops: Ops | None
    dtype: str
    seed: int
    name: str
    train_state: TrainState

    def _init_trainer(self) -> None:
        self.optimizer: opt_mod.Optimizer | None = None
        self.loss: losses_mod.Loss | None = None
        self.compiled_losses: list[losses_mod.Loss] = []  # one per output; `loss` is the first
        self.loss_weights: list[float] = []
        self.metrics: list[metrics_mod.Metric] = []
        self.output_metrics: list[list[metrics_mod.Metric]] = []  # `metrics` split by output
        self._output_metric_ids: list[list[Any]] = []
        self.weighted_metrics: list[metrics_mod.WeightedMean] = []
        self._weighted_metric_ids: list[Any] = []
        self.stop_training = False
        self.history: History | None = None
        self.train_state = TrainState()
        self._metric_ids: list[Any] = []
        self._backend_request: str | Ops | None = None
        self._comm: distributed.Communicator = distributed.Communicator()
        self._step: TrainStep | None = None
        self._program: StepProgram | None = None
        self._jit_compile: JitRequest = "auto"
        self._trainable = True
        self._batch_check: BatchCheck | None = None  # made by `prepare` once built (training/on_batch.py)

    @property
    def trainable(self) -> bool:
        """Keras's model switch: setting it sets every layer's `trainable` (applied at the next compile)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for layer in self.layers:
            layer.trainable = bool(value)

    @property
    def weights(self) -> list[Variable]:
        """Every weight of every layer, in `get_weights` order (empty until built)."""
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list[Variable]:
        return [w for w in self.weights if w.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        return [w for w in self.weights if not w.trainable]

    @property
    def losses(self) -> list[float]:
        """Keras's `model.losses`: each regularized trainable weight's penalty (floats, read from the
        device; empty without regularizers or before the model is built). The compiled loss
        functions are `compiled_losses`."""
        if not self.built or self.ops is None:
            return []
        store, ops = self.store, self.ops
        xp = ops.xp
        with ops.activate():
            return [float(ops.to_numpy(reg.penalty(xp, s.layer.params[s.spec.name]))) for s, reg in store.regularized()]

    def compile(
        self,
        optimizer: str | opt_mod.Optimizer = "rmsprop",
        loss: str | losses_mod.Loss | Sequence[Any] | dict[str, Any] | None = None,
        metrics: Sequence[Any] | None = None,
        backend: str | Ops | None = None,
        distribute: bool | str | distributed.Communicator | None = "auto",
        loss_weights: Sequence[float] | dict[str, float] | None = None,
        weighted_metrics: Sequence[Any] | None = None,
        jit_compile: bool | str = "auto",
    ) -> None:
        """Choose optimizer, loss, metrics and (optionally) the backend: "auto", "numpy", "cupy", "cupy:N".

        jit_compile: "auto" captures the training step as a CUDA graph on CuPy when every layer,
        loss, metric and optimizer allows it (and says once why not otherwise); True requires the
        capture (a clear error where it cannot be); False runs every step eagerly. On NumPy, True
        records the step once and replays it as a flat list of bound calls; "auto" stays eager there.
        `model.step_program.explain()` says which and why.

        distribute: "auto" trains data-parallel over MPI when the script runs under `mpiexec -n N`
        (N > 1); True requires MPI; False always trains in this process alone.
        With several outputs, loss, loss_weights and metrics may be lists (one entry per output)
        or dicts keyed by output name; one loss applies to every output. A flat metric list with
        one entry per output gives each output its entry, as Keras 3 does; a flat list of another
        length applies to every output (where Keras refuses it).
        The loss minimized is Σ loss_weight × that output's loss.
        weighted_metrics: mean metrics that use fit/evaluate's sample_weight or class_weight
        (Σ wᵢvᵢ / Σ wᵢ); `metrics` ignore the weights, as in Keras. A name in both lists is
        reported as "weighted_<name>" for the weighted one. One-output models only, for now.
        """
        loss = self._default_loss(loss)
        names = self.output_names
        per_loss = _per_output(loss, names, "loss")
        per_weight = _loss_weights(loss_weights, names)
        per_metrics = _per_output_metrics(metrics, names)
        weighted_metrics = _weighted_metric_list(weighted_metrics, per_metrics, len(names))
        jit = check_jit_compile(jit_compile)
        new_losses, new_optimizer = [losses_mod.get(lo) for lo in per_loss], opt_mod.get(optimizer)
        ops = get_backend(backend) if backend is not None else None
        self._comm = distributed.get_communicator(distribute)
        self.loss, self.optimizer = new_losses[0], new_optimizer
        self.compiled_losses, self.loss_weights = new_losses, per_weight
        self._metric_ids = list(metrics) if isinstance(metrics, (list, tuple)) else per_metrics[0]
        self._output_metric_ids = per_metrics
        self._weighted_metric_ids = weighted_metrics
        self.metrics, self.output_metrics, self.weighted_metrics = [], [], []
        self._step, self._program, self._jit_compile = None, None, jit
        self.__dict__.pop("_capture_refused", None)  # a new compile may capture again
        if ops is not None:
            self._backend_request = ops
        if self.built:
            self._recompile_built(jit)

    def _default_loss(self, loss: Any) -> Any:
        """compile's loss, or the added losses alone when none is given and a custom layer may add one."""
        if loss is not None:
            return loss
        if not any(layer.keras_call for layer in self.layers):
            raise ValueError(
                "compile(loss=None): xpnet needs a loss to train and evaluate unless a custom layer calls "
                "add_loss. Pass loss='sparse_categorical_crossentropy' for integer labels, "
                "'categorical_crossentropy' for one-hot rows, 'binary_crossentropy' for 0/1 targets or 'mse' "
                "for regression; predict() needs no compile at all"
            )
        return losses_mod.AddedLossesOnly()  # custom layers may call add_loss: that is the loss then

    def _recompile_built(self, jit: JitRequest) -> None:
        """A built model's compile: move it to the requested backend, or rebuild the optimizer's slots."""
        assert self.ops is not None and self.optimizer is not None
        target = self._backend_request if isinstance(self._backend_request, Ops) else self.ops
        if target is not self.ops or self.store.stale():  # a changed `trainable` flag takes effect here
            self.install(target, self.store.host_params())
        else:
            self.optimizer.build(self.ops, self.store.params)
        self._resolve_metrics()
        if jit is True:  # refused now rather than at the first fit
            self._step_program()

    def _resolve_metrics(self) -> None:
        assert self.loss is not None
        ids = self._output_metric_ids or [list(self._metric_ids)]
        self.output_metrics = [
            [metrics_mod.get(m, loss, width) for m in ms]
            for ms, loss, width in zip(ids, self.compiled_losses or [self.loss], self.output_widths, strict=True)
        ]
        self.metrics = [m for ms in self.output_metrics for m in ms]
        plain = {m.name for m in self.metrics}
        self.weighted_metrics = []
        for m in self._weighted_metric_ids:
            weighted = metrics_mod.WeightedMean(metrics_mod.get(m, self.loss, self.output_widths[0]))
            if weighted.name in plain:  # Keras's name for a metric asked for both ways
                weighted.name = f"weighted_{weighted.name}"
            self.weighted_metrics.append(weighted)
        names = self.metrics_names
        if len(set(names)) != len(names):
            raise ValueError(f"metric names must be unique, received {names}")

    @property
    def comm(self) -> distributed.Communicator:
        """The data-parallel communicator (rank, size); a one-process stand-in without MPI."""
        return self._comm

    @property
    def metric_ids(self) -> list[Any]:
        """The metrics as given to compile (names, Metric instances or functions)."""
        return list(self._metric_ids)

    @property
    def weighted_metric_ids(self) -> list[Any]:
        """The weighted_metrics as given to compile."""
        return list(self._weighted_metric_ids)

    @property
    def metrics_names(self) -> list[str]:
        """The history keys: "loss", then (several outputs) "<output>_loss" each, then "<output>_<metric>"."""
        if self.single_output:
            return ["loss"] + [m.name for m in (*self.metrics, *self.weighted_metrics)]
        names = self.output_names
        return (
            ["loss"]
            + [f"{n}_loss" for n in names]
            + [f"{n}_{m.name}" for n, ms in zip(names, self.output_metrics, strict=True) for m in ms]
        )

    @property
    def fused_loss(self) -> bool:
        """Whether the loss starts backprop from the last layer's pre-activation (softmax + cross-entropy)."""
        return self.fused_outputs[0]

    @property
    def fused_outputs(self) -> list[bool]:
        """Per output, whether its loss starts backprop from its layer's pre-activation (softmax + cross-entropy)."""
        assert self.loss is not None
        return [
            ok and _fuses(loss, layer)
            for loss, layer, ok in zip(
                self.compiled_losses or [self.loss], self.output_layers, self.fusable_outputs, strict=True
            )
        ]

    @property
    def step_program(self) -> StepProgram:
        """How fit runs the training step: captured as a CUDA graph or eager, and why (`explain()`)."""
        if self.optimizer is None or not self.built:
            raise RuntimeError("step_program: compile and build the model first (fit builds it from the data)")
        return self._step_program()

    def _step_program(self) -> StepProgram:
        step = self._train_step()
        program = self._program
        if program is None or program.step is not step:
            program = self._program = StepProgram(self, step, self._jit_compile)
        return program

    def _train_step(self) -> TrainStep:
        """The step for the current optimizer and communicator (made again if a callback compiled anew)."""
        self.hold_layers()  # a callback may have run a model that shares layers with this one
        step = self._step
        if step is None or step.optimizer is not self.optimizer or step.comm is not self._comm:
            step = self._step = TrainStep(self, self._comm)
        return step


def _fuses(loss: losses_mod.Loss, layer: Layer) -> bool:
    """Whether `loss` can start backprop from `layer`'s pre-activation (softmax + cross-entropy gives p − y)."""
    if not isinstance(layer, Layer):  # a nested model as the output: its last layer's φ runs inside it
        return False
    want = loss.fused_activation()
    act = custom.logits_activation(layer, want) if layer.keras_call else layer.activation
    # only layers that define the logits contract themselves (a custom layer may just have an activation)
    own = layer.keras_call or all(
        getattr(type(layer), m) is not getattr(Layer, m) for m in ("forward_preactivation", "backward_preactivation")
    )
    if want is None or act is None or act.name != want or not own:
        return False
    try:
        named = type(activations.get(want))
    except ValueError:  # a user's loss that fuses with an activation of the user's own: the name is the contract
        return True
    # the loss then computes the built-in activation itself (softmax of u), so it must be that very φ: a
    # subclass or a user's function with a φ of its own runs unfused, whatever its name
    return type(act).forward is named.forward


def _per_output(value: Any, names: list[str], what: str) -> list[Any]:
    """compile's loss or loss_weights as one entry per output: from a list, a dict by output name, or one value."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        missing = [n for n in names if n not in value]
        if unknown or missing:
            raise ValueError(
                f"compile: {what} keys must be the output names {names}; "
                + (f"unknown {unknown}" if unknown else f"missing {missing}")
            )
        return [value[n] for n in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"compile: {what} has {len(value)} entries but the model has {len(names)} outputs {names}")
        return list(value)
    return [value] * len(names)


def _loss_weights(loss_weights: Any, names: list[str]) -> list[float]:
    """compile's loss_weights as one finite float per output (1.0 each when not given)."""
    if loss_weights is None:
        return [1.0] * len(names)
    per_weight = _per_output(loss_weights, names, "loss_weights")
    for w in per_weight:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ValueError(f"loss_weights must be finite numbers, received {loss_weights!r}")
    return [float(w) for w in per_weight]


def _weighted_metric_list(weighted_metrics: Any, per_metrics: list[list[Any]], outputs: int) -> list[Any]:
    """compile's weighted_metrics as a list, after every metric identifier is checked."""
    if isinstance(weighted_metrics, (str, metrics_mod.Metric)) or callable(weighted_metrics):
        weighted_metrics = [weighted_metrics]
    for ms in per_metrics:  # everything is checked before anything changes
        for m in ms:
            metrics_mod.check_identifier(m)
    for m in weighted_metrics or []:
        metrics_mod.check_weighted_identifier(m)
    if weighted_metrics and outputs > 1:
        raise ValueError(
            f"weighted_metrics on a model with {outputs} outputs is not supported; "
            "use metrics per output (sample weights still weigh every output's loss)"
        )
    return list(weighted_metrics or [])


def _per_output_metrics(metrics: Any, names: list[str]) -> list[list[Any]]:
    """compile's metrics as one list per output: a dict, a list of lists, a flat list with one entry per
    output (Keras 3's reading), else the same list for every output."""
    if metrics is None:
        return [[] for _ in names]
    if isinstance(metrics, dict):
        return _metrics_by_name(metrics, names)
    if isinstance(metrics, (str, metrics_mod.Metric)) or callable(metrics):
        metrics = [metrics]
    metrics = list(metrics)
    if len(names) > 1 and metrics and all(isinstance(m, (list, tuple)) for m in metrics):
        if len(metrics) != len(names):
            raise ValueError(f"compile: metrics has {len(metrics)} lists but the model has {len(names)} outputs")
        return [list(m) for m in metrics]
    if len(names) > 1 and len(metrics) == len(names):  # Keras 3: a flat list with one entry per output
        return [[m] if m is not None else [] for m in metrics]
    return [list(metrics) for _ in names]


def _metrics_by_name(metrics: dict[str, Any], names: list[str]) -> list[list[Any]]:
    """compile's metrics dict {output name: metric or list} as one list per output."""
    unknown = sorted(set(metrics) - set(names))
    if unknown:
        raise ValueError(f"compile: metrics keys must be output names {names}; unknown {unknown}")
    picked = [metrics.get(n, []) for n in names]
    return [list(m) if isinstance(m, (list, tuple)) else [m] for m in picked]
