"""What a training step (and a forward pass) may be recorded with: the checked classes, and why not.

Captured as a CUDA graph on CuPy or recorded and replayed on NumPy, a step may contain only code
whose every call the stand-in's capture checks (tests/test_program.py) found free of host reads and
of temporaries a graph would lose. The plan (training/plan.py) reads these answers; the programs
(training/program.py, training/forward_program.py) act on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..backend import Ops
    from .protocol import TrainableModel as Trainer

JitRequest = bool | str


def check_jit_compile(value: Any) -> JitRequest:
    """compile's `jit_compile`: "auto", True or False, else a clear error."""
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f'jit_compile must be "auto", True or False, received {value!r}')


# What a captured step may contain: the classes whose step code the stand-in's capture checks
# (tests/test_program.py) found free of host reads and of temporaries a graph would lose. A class
# joins the list with such a test; a subclass is not on it (it may override anything).
CAPTURABLE_LAYERS = frozenset(
    {"Dense", "Dropout", "Activation", "BatchNormalization", "Conv2D", "MaxPooling2D", "Flatten", "Add"}
)
CAPTURABLE_ACTIVATIONS = frozenset({"relu", "sigmoid", "tanh", "softmax", "linear"})
CAPTURABLE_LOSSES = frozenset({"SparseCategoricalCrossentropy", "CategoricalCrossentropy"})
CAPTURABLE_METRICS = frozenset({"SparseCategoricalAccuracy"})
CAPTURABLE_OPTIMIZERS = frozenset({"SGD", "Adam", "RMSprop"})


def _own(obj: Any, names: frozenset[str]) -> bool:
    cls = type(obj)
    return cls.__name__ in names and cls.__module__.startswith("xpnet.")


def capture_obstacle(model: Trainer, ops: Ops) -> str | None:
    """Why the model's training step cannot be captured as a CUDA graph, or None when it can."""
    if getattr(ops, "name", "") != "cupy":
        return f"the {ops.describe()} backend runs the step eagerly (CUDA graphs are a CuPy feature)"
    return _step_obstacle(model) or width_obstacle(model, ops)


def width_obstacle(model: Trainer, ops: Ops) -> str | None:
    """Why the loss of a model this wide cannot be captured: past the fused kernels' width the loss runs
    its plain code, whose temporaries (`a == b`, `p - y`) the graph would read after they are freed."""
    limit = getattr(ops, "max_fused_classes", None)
    shape = getattr(model, "output_shape", None)
    width = shape[-1] if isinstance(shape, tuple) and shape else None
    if limit is None or not isinstance(width, int) or width <= limit:
        return None
    return f"{width} output classes: past {limit} the loss runs plain CuPy code, not yet checked for capture"


def replay_obstacle(model: Trainer, ops: Ops, request: JitRequest) -> str | None:
    """Why the model's training step is not recorded and replayed on NumPy, or None when it is.

    Asked for with `jit_compile="auto"` (the default) or True; it takes the same checked classes as
    a CUDA graph. Later, per step, the program itself runs a step eagerly where the batch differs
    from the recorded one (the last partial batch) or, under "auto", where the step is too large
    for the replay to pay (training/program.py's REPLAY_MAX_MACS), records anew where a setting the
    list holds changed, and gives up where a replayed step differs from the eager one.
    """
    if getattr(ops, "name", "") != "numpy":
        return f"the {ops.describe()} backend has no NumPy replay"
    return _step_obstacle(model)


def _step_obstacle(model: Trainer) -> str | None:
    """What in the model keeps its step from being recorded once and replayed, on either backend."""
    if model.comm.size > 1:
        return f"data-parallel training over {model.comm.size} ranks exchanges gradients between steps"
    problem = model_obstacle(model, with_loss=True)
    if problem is not None:
        return problem
    opt = model.optimizer
    if opt is None or not _own(opt, CAPTURABLE_OPTIMIZERS):
        return f"the optimizer {type(opt).__name__} is not among those checked for capture"
    if opt.schedule is not None:
        return "a learning-rate schedule is not yet checked for capture"
    return None


def model_obstacle(model: Trainer, with_loss: bool) -> str | None:
    """Why the model's layers (and with_loss: its losses, metrics and penalties) keep a step from capture."""
    if not model.single_output:
        return "a model with several outputs is not yet checked for capture"
    from ..backend.base import builtin_name

    for layer in model.layers:
        if not _own(layer, CAPTURABLE_LAYERS):
            return f"layer {layer.name!r} ({type(layer).__name__}) is not among the layers checked for capture"
        act = layer.activation
        if act is not None and builtin_name(act) not in CAPTURABLE_ACTIVATIONS:
            return f"layer {layer.name!r} uses the activation {act.name!r}, not among those checked for capture"
    if not with_loss:
        return None
    for loss, fused in zip(model.compiled_losses, model.fused_outputs, strict=True):
        if not _own(loss, CAPTURABLE_LOSSES) or not fused:
            return f"the loss {loss.name!r} (on a softmax output only: {fused}) is not checked for capture"
    for m in [*model.metrics, *model.weighted_metrics]:
        if not _own(m, CAPTURABLE_METRICS):
            return f"the metric {m.name!r} is not among those checked for capture"
    if model.store.regularized():
        return "weight penalties (regularizers) are not yet checked for capture"
    return None


def capture_decision(request: JitRequest, obstacle: str | None, what: str, unit: str) -> tuple[bool, str]:
    """(captures, the reason in words) for `what` ("the training step"), run once per `unit` ("step").

    jit_compile=True with an obstacle raises a ValueError naming it."""
    if request is True and obstacle is not None:
        raise ValueError(f"compile(jit_compile=True): {what} cannot be captured: {obstacle}")
    if request is False:
        return False, f"jit_compile=False: every {unit} runs eagerly"
    if obstacle is not None:
        return False, f"eager: {obstacle}"
    return True, f"captured: one CUDA graph per batch shape, after one eager warm-up {unit}"
