"""What the training machinery needs of a model, as `typing.Protocol`s.

`ModelStructure` is what a model class gives `Trainer` (layers, parameter store, checks,
traversals, per-output hooks); `TrainableModel` adds what `Trainer` itself provides (optimizer,
losses, metrics, communicator, the run's state). `xpnet.models.Model` is the one class with
all of it. The step, its program, the callbacks, checkpoints and model files are typed against
`TrainableModel` rather than `Trainer`, so none of them imports the trainer that imports them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    import numpy as np

    from ..backend import Ops
    from ..layers.base import Layer
    from ..losses import Loss
    from ..metrics import Metric, WeightedMean
    from ..optimizers import Optimizer
    from ..params import ParamStore
    from ..variables import Variable
    from .distributed import Communicator

Array = Any


class HistoryRecord(Protocol):
    """A fit's History as its state holds it: {key: one value per epoch} and the epoch numbers."""

    history: dict[str, list[float]]
    epoch: list[int]


class RunState(Protocol):
    """Where a fit stands (`TrainState`): epoch, step, data and batch size, running sums, history."""

    epoch: int
    step: int
    epochs_trained: int
    samples: int
    batch_size: int
    running: list[Array]

    @property
    def history(self) -> HistoryRecord:
        """The fit's History (callbacks.py; a Callback, which names this protocol)."""
        ...


class ModelStructure(Protocol):
    """What a model class gives `Trainer`: its layers and buffers, the input and target checks,
    and the traversals, with one entry per output in the per-output lists.

    Shapes: x is (batch, *feature_shape), or a list with one array per input.
    """

    layers: list[Layer]
    ops: Ops | None
    dtype: str
    seed: int
    name: str

    @property
    def built(self) -> bool: ...

    @property
    def store(self) -> ParamStore:
        """The flat parameter, gradient and slot buffers."""
        ...

    @property
    def feature_shape(self) -> tuple[int, ...] | None:
        """The input shape without the batch axis (None until known)."""
        ...

    @property
    def output_shape(self) -> Any: ...

    @property
    def leaf_layers(self) -> list[Layer]:
        """The layers whose weights the store holds (a nested model's layers in its place)."""
        ...

    @property
    def weights(self) -> list[Variable]: ...

    # the outputs, as lists
    @property
    def single_output(self) -> bool:
        """True when y is one array (else a list, one per output)."""
        ...

    @property
    def output_layers(self) -> list[Layer]: ...

    @property
    def output_names(self) -> list[str]: ...

    @property
    def output_widths(self) -> list[int]:
        """Each output's last axis: the classes its metrics and targets see."""
        ...

    @property
    def fusable_outputs(self) -> list[bool]:
        """Per output, whether its layer may stop at the logits (nothing else reads its activation)."""
        ...

    @property
    def shares_layers(self) -> bool:
        """Whether some layer runs more than once per step."""
        ...

    def build(self, input_shape: Any = None, backend: str | Ops | None = None) -> None: ...

    def install(self, ops: Ops, host_params: np.ndarray) -> None:
        """Move the model to `ops` with these (flat, host) parameters."""
        ...

    def hold_layers(self) -> None:
        """Make the layers read this model's own buffers (models may share layers)."""
        ...

    def check_inputs(self, x: Any, what: str, finite: bool = True) -> Any: ...

    def check_targets(self, y: Any, n: int, what: str) -> Any: ...

    def forward(self, x: Array, training: bool = False) -> Array:
        """The model's output for batch x."""
        ...

    def forward_outputs(self, x: Array, training: bool, logits: Sequence[bool]) -> list[Array]:
        """Each output for batch x: its layer's pre-activation where `logits[k]`, else the output."""
        ...

    def backward_outputs(self, grads: Sequence[Array], from_logits: Sequence[bool]) -> None: ...

    def step_added_losses(self) -> list[Array]: ...

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """The model's outputs for x as host arrays (Keras's `predict` arguments)."""
        ...

    def clone_structure(self, copy_layer: Callable[[Layer], Layer], name: str, dtype: str) -> Self:
        """The same architecture over copy_layer(each layer), with this model's seed, in `dtype`."""
        ...

    def get_weights(self) -> list[np.ndarray]: ...

    def set_weights(self, weights: Sequence[Any]) -> None: ...

    def get_config(self) -> dict[str, Any]: ...

    def to_json(self, **kwargs: Any) -> str: ...

    def save(self, filepath: str | os.PathLike[str]) -> None: ...

    def save_weights(self, filepath: str | os.PathLike[str]) -> None: ...

    def load_weights(self, filepath: str | os.PathLike[str]) -> None: ...


class TrainableModel(ModelStructure, Protocol):
    """A compiled model (`Trainer` over a `ModelStructure`), as the step, its program, the
    callbacks, checkpoints and model files use it."""

    optimizer: Optimizer | None
    loss: Loss | None
    compiled_losses: list[Loss]
    loss_weights: list[float]
    metrics: list[Metric]
    output_metrics: list[list[Metric]]
    weighted_metrics: list[WeightedMean]
    stop_training: bool

    @property
    def train_state(self) -> RunState:
        """Where the current (or last) fit stands."""
        ...

    @property
    def comm(self) -> Communicator: ...

    @property
    def fused_outputs(self) -> list[bool]: ...

    @property
    def metric_ids(self) -> list[Any]: ...

    @property
    def weighted_metric_ids(self) -> list[Any]: ...

    def prepare(self, x: Any, y: Any, what: str) -> tuple[Any, Any]: ...

    def sample_weights_for(self, sample_weight: Any, class_weight: Any, yy: Any, what: str) -> np.ndarray | None: ...

    def target_dtypes(self) -> Any: ...

    def compile(self, *args: Any, **kwargs: Any) -> None: ...

    def fit(self, *args: Any, **kwargs: Any) -> Any: ...
