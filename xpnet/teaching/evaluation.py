"""Evaluation metrics on host arrays: confusion matrix, precision / recall / F1, ROC and AUC, MAPE, reports.

Everything here works on NumPy (any array-like is converted with `np.asarray`; a CuPy array
must be moved to the host first, e.g. with `.get()`), typically on the output of
`model.predict(x)`:

    p = model.predict(x_test)                            # (n, k) float probabilities
    print(classification_report(y_test, p.argmax(1), target_names=class_names))
    roc_auc(y_test, p)                                   # one-vs-rest macro AUC

Conventions, as in scikit-learn:

- class labels are integers; multi-class functions take labels in [0, k) and index classes by
  their label (row/column `c` of a confusion matrix is class `c`);
- precision = tp / (tp + fp), recall = tp / (tp + fn), F1 = 2 tp / (2 tp + fp + fn); a ratio
  whose denominator is 0 (a class never predicted, never present) is `zero_division`;
- "macro" and "weighted" averages run over the classes that occur in y_true or y_pred (a class
  absent from both has no precision, recall or F1 to average) and leave out the classes whose
  score is NaN (with zero_division=nan); "micro" pools the counts of all classes, so for
  single-label data micro precision = recall = F1 = accuracy;
- an ROC curve or AUC of data holding only one class is undefined: NaN, with an
  `UndefinedMetricWarning`.

The same counts streamed on the device during `fit` / `evaluate` are the compile-time metrics
"precision", "recall", "f1_score" and "auc" in :mod:`xpnet.metrics`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = [
    "UndefinedMetricWarning",
    "auc",
    "classification_report",
    "confusion_matrix",
    "f1_score",
    "mape",
    "precision",
    "precision_recall_f1",
    "recall",
    "roc_auc",
    "roc_curve",
]


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for this data (e.g. ROC AUC with one class) and is returned as NaN."""


Average = Literal["binary", "macro", "micro", "weighted"] | None
_AVERAGES = ("binary", "macro", "micro", "weighted", None)
EPSILON = 1e-7  # Keras' epsilon, used by mape


def _to_host(a: Any, what: str) -> np.ndarray:
    if hasattr(a, "get") and type(a).__module__.split(".")[0] == "cupy":
        raise TypeError(f"{what} is a CuPy array; move it to the host first: {what}.get() or cupy.asnumpy({what})")
    try:
        b = np.asarray(a)
    except Exception as e:
        raise TypeError(f"{what} must be an array-like of numbers; could not convert {type(a).__name__}: {e}") from e
    if b.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be numeric; received an array of dtype {b.dtype}")
    return b


def _labels(a: Any, what: str) -> np.ndarray:
    """Class labels -> 1-D array: (n,) or (n, 1); floats must hold whole numbers."""
    b = _to_host(a, what)
    if b.ndim == 2 and b.shape[1] == 1:
        b = b[:, 0]
    if b.ndim != 1:
        hint = " (one-hot rows? pass y.argmax(axis=1))" if b.ndim == 2 else ""
        raise ValueError(f"{what} must be a 1-D array of class labels, received shape {b.shape}{hint}")
    if b.shape[0] == 0:
        raise ValueError(f"{what} is empty: need at least one sample")
    if b.dtype.kind == "f":
        if not np.all(np.isfinite(b)):
            raise ValueError(f"{what} contains NaN or inf; class labels must be integers")
        if not np.all(b == np.round(b)):
            raise ValueError(f"{what} holds non-integer values; class labels must be integers")
        b = b.astype(np.int64)
    return b.astype(np.int64, copy=False)


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true and y_pred have different numbers of samples: {t.shape[0]} and {p.shape[0]}")
    return t, p


def _num_classes(num_classes: int | None, *arrays: np.ndarray) -> int:
    lo = min(int(a.min()) for a in arrays)
    hi = max(int(a.max()) for a in arrays)
    if lo < 0:
        raise ValueError(f"class labels must be non-negative integers (0 .. k-1); found label {lo}")
    if num_classes is None:
        return hi + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, received {num_classes!r}")
    if hi >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}) for num_classes={num_classes}; found label {hi}")
    return int(num_classes)


def _check_zero_division(zero_division: float) -> float:
    z = float(zero_division)
    if not (math.isnan(z) or 0.0 <= z <= 1.0):
        raise ValueError(f"zero_division must be 0.0, 1.0 or nan (a value in [0, 1]); received {zero_division!r}")
    return z


def _nanaverage(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean of the non-NaN values, weighted if given (scikit-learn's `_nanaverage`).

    NaN only when every value is NaN; when the remaining weights sum to 0 the plain mean.
    """
    keep = ~np.isnan(values)
    if not keep.any():
        return math.nan
    if weights is None or not weights[keep].sum() > 0:
        return float(values[keep].mean())
    return float(np.average(values[keep], weights=weights[keep]))


def _ratio(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, zero_division, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    y_true, y_pred: (n,) integer class labels in [0, k) (an (n, 1) column or whole-number floats
    are accepted). num_classes: k; default max label + 1.
    Returns int64 (k, k): entry [i, j] = number of samples of class i predicted as class j
    (rows: true class, columns: predicted class; the diagonal holds the correct predictions).
    """
    t, p = _pair(y_true, y_pred)
    k = _num_classes(num_classes, t, p)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> per-class (tp, fp, fn), each int64 (k,), from a (k, k) confusion matrix."""
    tp = np.diag(cm)
    return tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp


def scores_from_counts(
    tp: Any, fp: Any, fn: Any, average: Average = "macro", zero_division: float = 0.0
) -> tuple[Any, Any, Any]:
    """(precision, recall, f1) from per-class counts tp, fp, fn: each (k,) numbers.

    average: "macro" (mean over classes with tp + fp + fn > 0), "micro" (pooled counts),
    "weighted" (mean weighted by support tp + fn), None (per-class float64 (k,) arrays), or
    "binary" (k must be 1: the scores of that one class). Shared with the streaming metrics.
    Macro and weighted averages skip NaN scores (zero_division=nan), as scikit-learn does.
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {list(_AVERAGES)}; received {average!r}")
    z = _check_zero_division(zero_division)
    tp, fp, fn = (np.asarray(c, dtype=np.float64).reshape(-1) for c in (tp, fp, fn))
    if average == "micro" or average == "binary":
        if average == "binary" and tp.shape[0] != 1:
            raise ValueError(f"average='binary' needs the counts of one class, received {tp.shape[0]} classes")
        tp, fp, fn = tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True)
    prec = _ratio(tp, tp + fp, z)
    rec = _ratio(tp, tp + fn, z)
    f1 = _ratio(2.0 * tp, 2.0 * tp + fp + fn, z)
    if average is None:
        return prec, rec, f1
    if average in ("micro", "binary"):
        return float(prec[0]), float(rec[0]), float(f1[0])
    present = (tp + fp + fn) > 0
    if not present.any():
        return z, z, z
    # a class absent from both arrays has support 0: no weight, and no term of a macro mean
    w = (tp + fn)[present] if average == "weighted" else None
    p_avg, r_avg, f_avg = (_nanaverage(v[present], w) for v in (prec, rec, f1))
    return p_avg, r_avg, f_avg


def precision_recall_f1(
    y_true: Any,
    y_pred: Any,
    average: Average = "binary",
    pos_label: int = 1,
    zero_division: float = 0.0,
    num_classes: int | None = None,
) -> tuple[Any, Any, Any]:
    """Precision, recall and F1 of predicted class labels.

    y_true, y_pred: (n,) integer class labels. Predicted *labels*, not scores: for a sigmoid
    model use `(p[:, 0] > 0.5).astype(int)`, for a softmax model `p.argmax(axis=1)`.

    average:
      "binary"   (default) the scores of class `pos_label`; y_true and y_pred together may hold
                 at most two distinct labels (otherwise pass "macro", "micro" or "weighted");
      "macro"    unweighted mean over the classes occurring in y_true or y_pred;
      "micro"    from the counts pooled over all classes (= accuracy for single-label data);
      "weighted" mean weighted by each class's support (its number of true samples);
      None       per-class float64 arrays of shape (k,), k = num_classes or max label + 1.
    zero_division: the value of a ratio with a zero denominator (precision of a class that is
    never predicted, recall of a class that never occurs); 0.0, 1.0 or nan.

    Returns (precision, recall, f1): three floats, or three float64 (k,) arrays for average=None.
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {list(_AVERAGES)}; received {average!r}")
    t, p = _pair(y_true, y_pred)
    if average == "binary":
        present = np.union1d(t, p)
        if present.shape[0] > 2:
            raise ValueError(
                f"average='binary' needs binary labels but y_true and y_pred hold {present.shape[0]} distinct labels "
                f"{present.tolist()[:10]}; use average='macro', 'micro', 'weighted' or None for multi-class data"
            )
        if present.shape[0] == 2 and pos_label not in present:
            raise ValueError(f"pos_label={pos_label!r} is not one of the labels {present.tolist()}")
        tp = np.sum((t == pos_label) & (p == pos_label))
        fp = np.sum((t != pos_label) & (p == pos_label))
        fn = np.sum((t == pos_label) & (p != pos_label))
        return scores_from_counts([tp], [fp], [fn], "binary", zero_division)
    cm = confusion_matrix(t, p, num_classes)
    return scores_from_counts(*_counts(cm), average, zero_division)


def precision(y_true: Any, y_pred: Any, **kwargs: Any) -> Any:
    """tp / (tp + fp): a float, or float64 (k,) for average=None. Options as `precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, **kwargs)[0]


def recall(y_true: Any, y_pred: Any, **kwargs: Any) -> Any:
    """tp / (tp + fn): a float, or float64 (k,) for average=None. Options as `precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, **kwargs)[1]


def f1_score(y_true: Any, y_pred: Any, **kwargs: Any) -> Any:
    """2 tp / (2 tp + fp + fn): a float, or float64 (k,) for average=None. Options as `precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, **kwargs)[2]


def _scores(a: Any, what: str = "scores") -> np.ndarray:
    s = _to_host(a, what).astype(np.float64)
    if s.size == 0:
        raise ValueError(f"{what} is empty: need at least one sample")
    if np.isnan(s).any():
        raise ValueError(f"{what} contains NaN (at {int(np.isnan(s).sum())} positions); ROC needs ordered scores")
    return s


def roc_curve(y_true: Any, scores: Any, pos_label: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic of a binary classifier.

    y_true: (n,) binary labels (bool, or two integer values of which `pos_label` is the positive
    class). scores: (n,) (or (n, 1)) float, higher = more positive (a probability, a logit, ...).

    Samples are sorted by decreasing score and one point is emitted per *distinct* score, so
    tied scores move the curve diagonally (as scikit-learn does; with drop_intermediate=False).
    Returns (fpr, tpr, thresholds), float64 arrays of shape (m + 1,) for m distinct scores:
    fpr[i], tpr[i] are the rates when predicting positive for score >= thresholds[i];
    thresholds decrease from +inf (the starting point (0, 0)) to the smallest score.
    When y_true holds only one class, the rate with no samples behind it (fpr without
    negatives, tpr without positives) is all NaN, with an `UndefinedMetricWarning`, as in
    scikit-learn (so a loop over folds or batches does not stop at one single-class fold).
    """
    t = _labels(y_true, "y_true")
    s = _scores(scores)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1:
        raise ValueError(
            f"scores must be (n,) for a binary ROC curve, received shape {s.shape}; use roc_auc for (n, k)"
        )
    if s.shape[0] != t.shape[0]:
        raise ValueError(f"y_true and scores have different numbers of samples: {t.shape[0]} and {s.shape[0]}")
    labels = np.unique(t)
    if labels.shape[0] > 2:
        raise ValueError(
            f"roc_curve needs binary y_true; received {labels.shape[0]} classes (use roc_auc for one-vs-rest)"
        )
    if labels.shape[0] == 2 and pos_label not in labels:
        raise ValueError(f"pos_label={pos_label!r} is not one of the labels {labels.tolist()}")
    pos = t == pos_label
    order = np.argsort(-s, kind="stable")
    s_sorted, pos_sorted = s[order], pos[order]
    last_of_run = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s_sorted.shape[0] - 1]  # end of each tie run
    tps = np.cumsum(pos_sorted)[last_of_run].astype(np.float64)
    fps = (last_of_run + 1) - tps
    fpr, tpr = _rate(fps, "negative", "false"), _rate(tps, "positive", "true")
    thresholds = np.r_[np.inf, s_sorted[last_of_run]]
    return fpr, tpr, thresholds


def _rate(counts: np.ndarray, samples: str, rate: str) -> np.ndarray:
    """[0, counts / total] for an ROC curve; all NaN (and a warning) when there is no such sample."""
    if counts[-1] == 0:
        warnings.warn(
            f"no {samples} samples in y_true: the {rate} positive rate is undefined (NaN)",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return np.full(counts.shape[0] + 1, np.nan)
    return np.r_[0.0, counts / counts[-1]]


def auc(x: Any, y: Any) -> float:
    """Area under a curve through the points (x[i], y[i]) by the trapezoidal rule.

    x, y: (m,) floats, m >= 2, x monotonic (increasing or decreasing; e.g. roc_curve's fpr, tpr).
    """
    xs, ys = _scores(x, "x").reshape(-1), _scores(y, "y").reshape(-1)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, received {xs.shape[0]} and {ys.shape[0]}")
    if xs.shape[0] < 2:
        raise ValueError(f"auc needs at least 2 points, received {xs.shape[0]}")
    dx = np.diff(xs)
    if np.all(dx >= 0):
        sign = 1.0
    elif np.all(dx <= 0):
        sign = -1.0
    else:
        raise ValueError("x must be monotonic (increasing or decreasing) to integrate y over it")
    return sign * float(np.sum(dx * (ys[1:] + ys[:-1]) / 2.0))


def _binary_auc(pos: np.ndarray, s: np.ndarray, what: str = "y_true", stacklevel: int = 3) -> float:
    """stacklevel: frames up to the user's call, for the warning."""
    if pos.all() or not pos.any():
        warnings.warn(
            f"only one class is present in {what}: ROC AUC is undefined there (NaN); "
            "it needs at least one positive and one negative sample",
            UndefinedMetricWarning,
            stacklevel=stacklevel,
        )
        return math.nan
    fpr, tpr, _ = roc_curve(pos.astype(np.int64), s)
    return auc(fpr, tpr)


def roc_auc(
    y_true: Any,
    scores: Any,
    multi_class: str = "ovr",
    average: Literal["macro", "micro", "weighted"] | None = "macro",
) -> Any:
    """Area under the ROC curve: binary, or one-vs-rest for k classes.

    Binary: y_true (n,) labels in {0, 1} (or bool), scores (n,) or (n, 1) float for class 1.
    Multi-class, one-vs-rest: scores (n, k) float (e.g. softmax probabilities) and y_true either
    (n,) integer labels in [0, k) or an (n, k) indicator matrix of 0/1 (one-hot, or multi-label).
    Column c is scored as a binary problem "class c vs the rest", then
      "macro"    the unweighted mean of the k AUCs (default);
      "weighted" the mean weighted by each class's number of positives;
      "micro"    one AUC over all n·k (indicator, score) pairs pooled;
      None       the k per-class AUCs, float64 (k,).
    Ties between scores count as half (the ROC curve moves diagonally through them).
    An AUC whose data holds one class only (a binary y_true of one label, an indicator column
    of all 0s or all 1s) is NaN with an `UndefinedMetricWarning`, as in scikit-learn; the macro
    mean is then NaN, the weighted mean skips classes without positives (weight 0). Integer
    labels (n,) that miss one of the k classes raise ValueError instead (scikit-learn raises
    too: the labels do not match the score columns).
    """
    if multi_class != "ovr":
        raise ValueError(f"multi_class={multi_class!r} is not supported; only 'ovr' (one-vs-rest)")
    if average not in ("macro", "micro", "weighted", None):
        raise ValueError(f"average must be 'macro', 'micro', 'weighted' or None; received {average!r}")
    s = _scores(scores)
    if s.ndim == 1 or (s.ndim == 2 and s.shape[1] == 1):
        return _binary_roc_auc(y_true, s.reshape(-1))
    if s.ndim != 2:
        raise ValueError(f"scores must be (n,) or (n, k), received shape {s.shape}")
    onehot = _one_vs_rest_targets(y_true, s.shape[0], s.shape[1])
    if average == "micro":
        return _binary_auc(onehot.reshape(-1), s.reshape(-1))
    per_class = np.empty(s.shape[1])
    for c in range(s.shape[1]):  # a loop, not a comprehension: Python < 3.12 gives that a frame of its own
        per_class[c] = _binary_auc(onehot[:, c], s[:, c], f"y_true column {c}")
    if average is None:
        return per_class
    if average == "weighted":
        npos = onehot.sum(axis=0)
        if npos.sum() == 0:
            return math.nan
        # a class without positives has weight 0: its NaN must not reach the sum (0 · NaN = NaN)
        return float(np.where(npos > 0, per_class, 0.0) @ (npos / npos.sum()))
    return float(per_class.mean())


def _binary_roc_auc(y_true: Any, s: np.ndarray) -> float:
    """roc_auc of (n,) float scores s against labels y_true in {0, 1}."""
    t = _labels(y_true, "y_true")
    if t.shape[0] != s.shape[0]:
        raise ValueError(f"y_true and scores have different numbers of samples: {t.shape[0]} and {s.shape[0]}")
    bad = np.setdiff1d(t, [0, 1])
    if bad.size:
        raise ValueError(f"binary roc_auc needs labels 0 and 1; received label {int(bad[0])} (pass (n, k) scores)")
    return _binary_auc(t == 1, s, stacklevel=4)


def _one_vs_rest_targets(y_true: Any, n: int, k: int) -> np.ndarray:
    """y_true as an (n, k) bool indicator matrix: from (n, k) 0/1 indicators or (n,) labels in [0, k)."""
    yt = _to_host(y_true, "y_true")
    if yt.ndim == 2 and yt.shape[1] == k and k > 1:
        if yt.shape[0] != n:
            raise ValueError(f"y_true and scores have different numbers of samples: {yt.shape[0]} and {n}")
        if not np.all((yt == 0) | (yt == 1)):
            raise ValueError("an (n, k) y_true must be an indicator matrix of 0s and 1s")
        return yt.astype(bool)
    t = _labels(yt, "y_true")
    if t.shape[0] != n:
        raise ValueError(f"y_true and scores have different numbers of samples: {t.shape[0]} and {n}")
    if t.min() < 0 or t.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}) for scores with {k} columns; found labels {t.min()}..{t.max()}")
    missing = np.setdiff1d(np.arange(k), t)
    if missing.size:
        raise ValueError(
            f"class {int(missing[0])} has no sample in y_true, so its one-vs-rest ROC AUC is undefined; "
            "evaluate on data containing every class (or drop that score column)"
        )
    return t[:, None] == np.arange(k)


def mape(y_true: Any, y_pred: Any) -> float:
    """Mean absolute percentage error, as Keras computes it: 100 · mean(|y − ŷ| / max(|y|, 1e-7)).

    y_true, y_pred: float arrays of the same shape ((n,) and (n, 1) are interchangeable).
    The mean runs over every element. Zero targets divide by 1e-7 (huge errors), as in Keras.
    """
    t, p = _to_host(y_true, "y_true").astype(np.float64), _to_host(y_pred, "y_pred").astype(np.float64)
    if t.shape != p.shape:
        if np.squeeze(t).shape != np.squeeze(p).shape:
            raise ValueError(f"y_true and y_pred must have the same shape, received {t.shape} and {p.shape}")
        t, p = np.squeeze(t), np.squeeze(p)
    if t.size == 0:
        raise ValueError("y_true is empty: need at least one sample")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise ValueError("y_true and y_pred must be finite (no NaN or inf)")
    return float(100.0 * np.mean(np.abs(t - p) / np.maximum(np.abs(t), EPSILON)))


def classification_report(
    y_true: Any,
    y_pred: Any,
    target_names: Sequence[str] | None = None,
    digits: int = 4,
    num_classes: int | None = None,
    zero_division: float = 0.0,
) -> str:
    """A text table of per-class precision, recall, F1 and support, laid out like scikit-learn's.

    y_true, y_pred: (n,) integer class labels in [0, k). target_names: k names for the rows
    (default the labels "0", "1", ...); k = num_classes, else len(target_names), else max
    label + 1. Every class gets a row (a class absent from both arrays shows zero_division
    and support 0). Below: accuracy, the macro average (over the classes that occur, see
    `precision_recall_f1`) and the support-weighted average, each with the total support.
    """
    t, p = _pair(y_true, y_pred)
    names = None if target_names is None else [str(name) for name in target_names]
    if num_classes is None and names is not None:
        num_classes = max(len(names), max(int(t.max()), int(p.max())) + 1)
    k = _num_classes(num_classes, t, p)
    names = [str(c) for c in range(k)] if names is None else names
    if len(names) != k:
        raise ValueError(f"target_names has {len(names)} names but there are {k} classes (labels 0..{k - 1})")
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 0:
        raise ValueError(f"digits must be a non-negative integer, received {digits!r}")
    cm = confusion_matrix(t, p, k)
    counts = _counts(cm)
    prec, rec, f1 = scores_from_counts(*counts, None, zero_division)
    support = cm.sum(axis=1)
    n = int(support.sum())

    headers = ["precision", "recall", "f1-score", "support"]
    width = max(max(len(name) for name in names), len("weighted avg"), digits)
    head_fmt = "{:>{width}s} " + " {:>9}" * len(headers)
    row_fmt = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    lines = head_fmt.format("", *headers, width=width) + "\n\n"
    for c in range(k):
        lines += row_fmt.format(names[c], prec[c], rec[c], f1[c], int(support[c]), width=width, digits=digits)
    lines += "\n"
    accuracy = float(np.trace(cm)) / n
    acc_fmt = "{:>{width}s} " + " {:>9}" * 2 + " {:>9.{digits}f}" + " {:>9}\n"
    lines += acc_fmt.format("accuracy", "", "", accuracy, n, width=width, digits=digits)
    for label, average in (("macro avg", "macro"), ("weighted avg", "weighted")):
        avg = scores_from_counts(*counts, average, zero_division)  # type: ignore[arg-type]
        lines += row_fmt.format(label, *avg, n, width=width, digits=digits)
    return lines
