"""Training: the Trainer (compile, fit, evaluate, compute_gradients), its state, the data path and the step."""

from .state import TrainState
from .step import TrainStep
from .trainer import Trainer

__all__ = ["TrainState", "TrainStep", "Trainer"]
