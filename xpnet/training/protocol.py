"""What the training machinery needs of a compiled model, as `typing.Protocol`s.

`xpnet.models.Model` (through its `Trainer` base) is the one class that has all of it; the
step, its program, the callbacks, checkpoints and model files are typed against these
protocols rather than against `Trainer`, so none of them imports the trainer that imports them.
The model's structure (layers, parameter store, traversals, per-output hooks) comes from the
model class; the compiled settings (optimizer, losses, metrics, communicator) and the run's
state from `Trainer`.
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


class TrainableModel(Protocol):
    """A model the trainer can compile and fit: its structure, and its compiled settings.

    Shapes: x is (batch, *feature_shape), or a list with one array per input; the per-output
    lists (`output_layers`, `output_names`, ...) have one entry per output.
    """

    layers: list[Layer]
    ops: Ops | None
    dtype: str
    seed: int
    name: str
    optimizer: Optimizer | None
    loss: Loss | None
    compiled_losses: list[Loss]
    loss_weights: list[float]
    metrics: list[Metric]
    output_metrics: list[list[Metric]]
    weighted_metrics: list[WeightedMean]
    stop_training: bool
    train_state: RunState

    @property
    def built(self) -> bool: ...

    @property
    def store(self) -> ParamStore:
        """The flat parameter, gradient and slot buffers."""
        ...

    @property
    def comm(self) -> Communicator: ...

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
    def fused_outputs(self) -> list[bool]: ...

    @property
    def shares_layers(self) -> bool:
        """Whether some layer runs more than once per step."""
        ...

    @property
    def metric_ids(self) -> list[Any]: ...

    @property
    def weighted_metric_ids(self) -> list[Any]: ...

    def build(self, input_shape: Any = None, backend: str | Ops | None = None) -> None: ...

    def install(self, ops: Ops, host_params: np.ndarray) -> None:
        """Move the model to `ops` with these (flat, host) parameters."""
        ...

    def hold_layers(self) -> None:
        """Make the layers read this model's own buffers (models may share layers)."""
        ...

    def check_inputs(self, x: Any, what: str, finite: bool = True) -> Any: ...

    def check_targets(self, y: Any, n: int, what: str) -> Any: ...

    def prepare(self, x: Any, y: Any, what: str) -> tuple[Any, Any]: ...

    def sample_weights_for(self, sample_weight: Any, class_weight: Any, yy: Any, what: str) -> np.ndarray | None: ...

    def target_dtypes(self) -> Any: ...

    def forward_outputs(self, x: Array, training: bool, logits: Sequence[bool]) -> list[Array]:
        """Each output for batch x: its layer's pre-activation where `logits[k]`, else the output."""
        ...

    def backward_outputs(self, grads: Sequence[Array], from_logits: Sequence[bool]) -> None: ...

    def step_added_losses(self) -> list[Array]: ...

    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int | str = 0,
        steps: int | None = None,
        callbacks: Any = None,
    ) -> Any: ...

    def forward(self, x: Array, training: bool = False) -> Array:
        """The model's output for batch x."""
        ...

    def clone_structure(self, copy_layer: Callable[[Layer], Layer], name: str, dtype: str) -> Self:
        """The same architecture over copy_layer(each layer), with this model's seed, in `dtype`."""
        ...

    def compile(self, *args: Any, **kwargs: Any) -> None: ...

    def fit(self, *args: Any, **kwargs: Any) -> Any: ...

    def get_weights(self) -> list[np.ndarray]: ...

    def set_weights(self, weights: Sequence[Any]) -> None: ...

    def get_config(self) -> dict[str, Any]: ...

    def to_json(self, **kwargs: Any) -> str: ...

    def save(self, filepath: str | os.PathLike[str]) -> None: ...

    def save_weights(self, filepath: str | os.PathLike[str]) -> None: ...

    def load_weights(self, filepath: str | os.PathLike[str]) -> None: ...
