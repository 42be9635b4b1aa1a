"""What another model reads of a model used as one of its layers: `Sequential([model, Softmax()])`, `model(x)`.

A one-input, one-output model is one call in the outer graph (a `Node` whose layer is the model);
the outer graph asks it what it asks of any layer (its activation, whether it is affine at
inference, whether it carries NaN), and its forward and backward run its own graph on the weights
the outer store holds (xpnet/models/sharing.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..layers.base import Shape
from ..layers.node import KerasTensor, Node
from .graph import check_model_call

if TYPE_CHECKING:
    from ..layers.base import Layer


class ModelAsLayer:
    """The layer side of `Model`: called on arrays it predicts, called on a symbolic tensor it becomes a call."""

    # what another model's graph reads of its layers (a model used as a layer has no activation of its own)
    activation = None
    multi_input = False
    identity_at_inference = False

    def __call__(self, x: Any, training: bool | None = None) -> Any:
        """Outputs for arrays x as one batch; on a symbolic tensor, this model as one call of a new graph.

        x: (batch, *input_shape) arrays → NumPy outputs; or a `KerasTensor` (Input(...), a layer's
        output) → the output tensor of this model's call, so the model is a layer of the model built
        from it (one input and one output; see xpnet/models/sharing.py for the weights).
        training=False (Keras's fine-tuning `base_model(inputs, training=False)`): that call always
        runs in inference mode (Dropout off, BatchNormalization on its moving statistics), also
        while the outer model trains.
        """
        model: Any = self  # a Model (whose module imports this one)
        if training not in (None, True, False):
            raise ValueError(f"training must be None, True or False, received {training!r}")
        parts = x if isinstance(x, (list, tuple)) else [x]
        if any(isinstance(t, KerasTensor) for t in parts):
            return self.call_symbolic(x, training)
        return model.predict_on_batch(x)

    def call_symbolic(self, x: Any, training: bool | None = None) -> KerasTensor:
        """Record a call of this model on the symbolic tensor x (as `Layer.__call__` does for a layer)."""
        model: Any = self  # a Model (whose module imports this one)
        if not model.inputs and model.layers and isinstance(x, KerasTensor):  # a Sequential without an input shape
            model.build((None, *x.feature_shape))
        check_model_call(model.name, model.graph, x)
        _ = model.store  # the inner model's weights are what the outer model starts from: it must be built
        node = Node(model, [x], False, model.outputs[0].feature_shape)
        node.training = training
        return node.output

    @property
    def nested_layers(self) -> list[Layer]:
        """This model's layers, as the model of which it is a layer sees them (`sharing.leaves`)."""
        return self.layers  # type: ignore[attr-defined, no-any-return]

    @property
    def requested_input_shape(self) -> Shape | None:
        """The input shape a `Sequential` that starts with this model takes (its own input's, once known)."""
        inputs = self.inputs  # type: ignore[attr-defined]
        return inputs[0].feature_shape if len(inputs) == 1 else None

    def is_inference_identity(self) -> bool:
        return False

    def replaces_methods(self) -> bool:
        return False
