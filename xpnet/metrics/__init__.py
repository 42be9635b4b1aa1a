"""Metrics as device-side running states read back only when a value is shown.

The common case is a mean of per-sample values: `call(xp, y_true, y_pred) -> (n,)`, and the
state is their running sum. Metrics that are not means (precision, recall, AUC, ...) override
`update` to return any fixed-size state array that adds up over batches (e.g. confusion
counts) and `result` to turn the summed state into the value on the host.

`Precision`, `Recall`, `F1Score` and `AUC` are such metrics: their states are confusion
counts (per class, or per score threshold) computed on the device with array-API calls only,
and their values match :mod:`xpnet.evaluation` on `model.predict` output (AUC up to the
binning of scores into `num_thresholds` bins).

The protocol is in `base.py`; the mean metrics in `means.py`, the confusion-count ones in
`confusion.py`, the wrappers (a function, sparse targets, weights) in `wrappers.py`; `get` here
resolves names as `compile(metrics=[...])` gives them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..losses import Loss
from .base import EPSILON as EPSILON
from .base import Array, Metric, MetricVariable, _binary_losses
from .confusion import AUC, F1Score, Precision, Recall, _ConfusionCounts
from .means import (
    BinaryAccuracy,
    BinaryCrossentropy,
    CategoricalAccuracy,
    CategoricalCrossentropy,
    CategoricalHinge,
    CosineSimilarity,
    Hinge,
    KLDivergence,
    LogCoshError,
    LossMetric,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    Poisson,
    RootMeanSquaredError,
    SparseCategoricalAccuracy,
    SparseCategoricalCrossentropy,
    SquaredHinge,
)
from .wrappers import FunctionMetric, SparseAsDense, WeightedMean

__all__ = [
    "AUC",
    "BinaryAccuracy",
    "BinaryCrossentropy",
    "CategoricalAccuracy",
    "CategoricalCrossentropy",
    "CategoricalHinge",
    "CosineSimilarity",
    "F1Score",
    "FunctionMetric",
    "Hinge",
    "KLDivergence",
    "LogCoshError",
    "LossMetric",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredError",
    "MeanSquaredLogarithmicError",
    "Metric",
    "MetricVariable",
    "Poisson",
    "Precision",
    "Recall",
    "RootMeanSquaredError",
    "SparseAsDense",
    "SparseCategoricalAccuracy",
    "SparseCategoricalCrossentropy",
    "SquaredHinge",
    "WeightedMean",
    "check_identifier",
    "check_weighted_identifier",
    "get",
]


_REGISTRY: dict[str, type[Metric]] = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "precision": Precision,
    "recall": Recall,
    "f1_score": F1Score,
    "auc": AUC,
    "msle": MeanSquaredLogarithmicError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "root_mean_squared_error": RootMeanSquaredError,
    "logcosh": LogCoshError,
    "log_cosh_error": LogCoshError,
    "cosine_similarity": CosineSimilarity,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "poisson": Poisson,
    "hinge": Hinge,
    "squared_hinge": SquaredHinge,
    "categorical_hinge": CategoricalHinge,
    "kld": KLDivergence,
    "kl_divergence": KLDivergence,
}


def check_identifier(identifier: Any) -> None:
    """Raise at compile time for a metric that `get` could never resolve (a misspelt name, a wrong type)."""
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in ("accuracy", "acc") and key not in _REGISTRY:
            raise ValueError(f"Unknown metric {identifier!r}; known: ['accuracy', {', '.join(map(repr, _REGISTRY))}]")
    elif isinstance(identifier, type) and issubclass(identifier, Metric):
        raise TypeError(f"metrics: received the class {identifier.__name__}; pass an instance, {identifier.__name__}()")
    elif not (isinstance(identifier, Metric) or callable(identifier)):
        raise TypeError(f"metrics must be names, Metric instances or functions; received {identifier!r}")


def check_weighted_identifier(identifier: Any) -> None:
    """Raise at compile time for a weighted metric that is not a mean (its state counts confusions)."""
    check_identifier(identifier)
    counts = isinstance(identifier, _ConfusionCounts) or (
        isinstance(identifier, str) and issubclass(_REGISTRY.get(identifier.lower(), Metric), _ConfusionCounts)
    )
    if counts:
        name = identifier if isinstance(identifier, str) else identifier.name
        raise ValueError(
            f"weighted_metrics: {name!r} is not a mean of per-sample values, and xpnet weights only "
            "those (accuracy, mse, mae, ...); pass it in metrics=[...] instead"
        )


def get(identifier: str | Metric | Callable[..., Array], loss: Loss, n_outputs: int) -> Metric:
    """Resolve a metric; 'accuracy' picks the variant matching the loss, as Keras does.

    'precision', 'recall', 'f1_score' and 'auc' (and such instances) likewise learn from the
    loss and the output width whether the model is binary (threshold) or multi-class (argmax).
    """
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        raise TypeError(f"metrics: received the class {identifier.__name__}; pass an instance, {identifier.__name__}()")
    if isinstance(identifier, Metric):
        metric = identifier
    elif isinstance(identifier, str):
        key = identifier.lower()
        if key in ("accuracy", "acc"):
            if loss.sparse:
                metric = SparseCategoricalAccuracy()
            elif n_outputs == 1 or isinstance(loss, _binary_losses()):
                metric = BinaryAccuracy(threshold=0.0 if loss.from_logits else 0.5)
            else:
                metric = CategoricalAccuracy()
        elif key in _REGISTRY:
            metric = _REGISTRY[key]()
        else:
            raise ValueError(f"Unknown metric {identifier!r}; known: ['accuracy', {', '.join(map(repr, _REGISTRY))}]")
        metric.name = identifier
    elif callable(identifier):
        metric = FunctionMetric(identifier)
    else:
        raise TypeError(f"metrics must be names, Metric instances or functions; received {identifier!r}")
    if isinstance(metric, _ConfusionCounts):
        metric.configure(loss, n_outputs)
    elif loss.sparse and not (
        isinstance(metric, (SparseCategoricalAccuracy, FunctionMetric))
        or getattr(metric, "sparse_targets", False)
        or metric.stateful  # a Keras-style metric reads the targets as the model gets them, as in Keras
    ):
        metric = SparseAsDense(metric)
    return metric
