"""The data path of fit / evaluate / predict: checks at the boundary, upload or streaming, shuffle, shard, batches.

Checked host arrays cross to the device once per fit when they fit there (else each batch is
uploaded as it is used). Each training step gathers its rows into the same fixed device
buffers, so a recorded step reads its batch from memory it already knows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import numeric_array, probably_finite, require_finite
from ..backend import Ops
from ..backend.base import host_dtype
from ..losses import SparseCategoricalCrossentropy
from ..random import shuffle_rng
from . import distributed

if TYPE_CHECKING:
    from ..losses import Loss

Array = Any
_SPARSE_TARGETS = SparseCategoricalCrossentropy.prepare_targets  # integer labels, checked by `_plain` too
_DEVICE_MODULES = {"cupy", "torch", "jax", "jaxlib", "tensorflow", "array_api_strict", "dask"}


def check_x(x: Any, what: str, ops: Ops | None, input_shape: tuple[int, ...] | None, finite: bool = True) -> Any:
    """Host arrays -> validated float NumPy array; arrays already on `ops`'s device pass through.

    input_shape: the model's input shape without the batch axis (None: not known yet).
    finite=False leaves the NaN/inf check to the caller.
    """
    if ops is not None and not isinstance(x, np.ndarray) and ops.is_native(x):
        return x
    mod = type(x).__module__.split(".")[0]
    if mod in _DEVICE_MODULES:
        where = ops.describe() if ops is not None else "numpy"
        raise TypeError(
            f"{what}: x is a {mod}.{type(x).__name__} (device {getattr(x, 'device', '?')}) but this model runs "
            f"on the {where!r} backend. Move it to the host first (for CuPy: x.get() or cupy.asnumpy(x)), or "
            f"compile(..., backend=...) for that device."
        )
    a = numeric_array(x, what, "x")
    if input_shape is not None:
        a = _adjust_rank(a, input_shape)
    if input_shape is not None and tuple(a.shape[1:]) != input_shape:
        raise ValueError(
            f"{what}: the model expects input of shape {(None, *input_shape)}, received x of shape {a.shape} "
            f"(features {tuple(a.shape[1:])} instead of {input_shape})"
        )
    if finite:
        require_finite(a, what, "x")
    return a


def _adjust_rank(a: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """As Keras: add a missing size-1 last axis ((n, 28, 28) for (28, 28, 1)), or drop an extra one."""
    got = tuple(a.shape[1:])
    if (*got, 1) == input_shape:
        return a[..., None]
    if got == (*input_shape, 1):
        return a[..., 0]
    return a


def require_flat_output(feature_shape: tuple[int | None, ...] | None, what: str) -> None:
    """The losses compare (batch, k) outputs with (batch, k) targets: a clear error for an output with more axes."""
    if feature_shape is not None and len(feature_shape) > 1:
        shown = "(None, " + ", ".join(map(str, feature_shape)) + ")"
        raise ValueError(
            f"{what}: the model's output has shape {shown}, but xpnet's losses take outputs of shape (batch, k); "
            "end the model with Flatten() (or a global pooling layer) and give y as y.reshape(len(y), -1)"
        )


@dataclass(frozen=True)
class BatchCheck:
    """The checks of one batch (x, y) of a built one-input, one-output model, with what they read of
    the model read once per build and compile: its backend, input shape (no batch axis), loss, output
    width (the classes the targets may name) and dtype. Calling it is `check_x` then `check_y`, the
    checks the model's `check_inputs` and `check_targets` make, without asking the model again."""

    ops: Ops
    feature_shape: tuple[int, ...]
    loss: Loss
    width: int
    dtype: str

    def __call__(self, x: Any, y: Any, what: str) -> tuple[Any, np.ndarray | None]:
        """x: (n, *feature_shape) numbers; y: the targets or None. Returns them checked, as `check_x`/`check_y`."""
        plain = self._plain(x, y)
        if plain is not None:
            return plain
        x = check_x(x, what, self.ops, self.feature_shape)
        if y is None:
            return x, None
        return x, check_y(y, rows(x), what, self.loss, self.width, self.dtype)

    def _plain(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """The common case in one pass: x a C-ordered float32/float64 host array (n, *feature_shape) with no
        NaN/inf, y (n,) integer labels in [0, width) for sparse categorical cross-entropy. Returns what
        `check_x`/`check_y` return for them (x itself, y as int32), or None for anything else, which the
        full checks then accept or refuse with their own message."""
        if type(x) is not np.ndarray or type(y) is not np.ndarray or y.ndim != 1 or y.dtype.kind not in "iu":
            return None
        if x.shape[1:] != self.feature_shape or x.dtype.kind != "f" or x.dtype.itemsize < 4 or not x.flags.c_contiguous:
            return None
        targets = getattr(self.loss.prepare_targets, "__func__", None)  # a class's or an instance's own: asked
        if not x.size or y.shape[0] != x.shape[0] or targets is not _SPARSE_TARGETS:
            return None
        if not probably_finite(x) or y.min() < 0 or y.max() >= self.width:
            return None
        return x, y.astype(np.int32)


def check_y(y: Any, n: int, what: str, loss: Loss, n_outputs: int, dtype: str) -> np.ndarray:
    """Targets as the loss takes them: (n,) int labels for sparse losses, else (n, outputs) in `dtype`."""
    if y is None:
        raise ValueError(f"{what}: y (the targets) is required")
    mod = type(y).__module__.split(".")[0]
    if mod in _DEVICE_MODULES:
        y = y.get() if hasattr(y, "get") else np.asarray(y)
    b = numeric_array(y, what, "y")
    if b.shape[0] != n:
        raise ValueError(f"{what}: x and y have different numbers of samples: x has {n}, y has {b.shape[0]}")
    require_finite(b, what, "y")
    b = loss.prepare_targets(b, n_outputs)
    return b if loss.sparse else b.astype(dtype, copy=False)


def sample_weights(
    sample_weight: Any, class_weight: Any, y: np.ndarray, what: str, n_outputs: int, dtype: str
) -> np.ndarray | None:
    """Keras's per-sample loss weights as (n,) `dtype`, or None for an unweighted run.

    sample_weight: (n,) or (n, 1) non-negative numbers. class_weight: {class index: weight} for
    the checked targets y, (n,) int labels or (n, k) one-hot rows (the argmax; one column: the
    rounded value), as Keras's `class_weight_to_sample_weights`; classes left out weigh 1.
    """
    if sample_weight is not None and class_weight is not None:
        raise ValueError(f"{what}: pass sample_weight or class_weight, not both (Keras refuses them together too)")
    if class_weight is not None:
        return _class_weights(class_weight, y, what, n_outputs, dtype)
    if sample_weight is None:
        return None
    n = int(y.shape[0])
    mod = type(sample_weight).__module__.split(".")[0]
    if mod in _DEVICE_MODULES:
        sample_weight = sample_weight.get() if hasattr(sample_weight, "get") else np.asarray(sample_weight)
    w = numeric_array(sample_weight, what, "sample_weight")
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(
            f"{what}: sample_weight must have shape ({n},), one weight per sample, received shape {w.shape}"
        )
    require_finite(w, what, "sample_weight")
    if w.size and w.min() < 0:
        raise ValueError(f"{what}: sample_weight must be non-negative, received a minimum of {w.min()}")
    return w.astype(dtype)


def _class_weights(class_weight: Any, y: np.ndarray, what: str, n_outputs: int, dtype: str) -> np.ndarray:
    """class_weight {class index: weight} as (n,) `dtype` weights, one per row of targets y."""
    if not isinstance(class_weight, dict):
        raise TypeError(
            f"{what}: class_weight must be a dict {{class index: weight}}, received {type(class_weight).__name__}"
        )
    classes = max(n_outputs, 2)  # one sigmoid output still has the classes 0 and 1
    table = np.ones(classes, np.float64)
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < classes:
            raise ValueError(
                f"{what}: class_weight keys must be class indices 0..{classes - 1} for this model, received {key!r}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0:
            raise ValueError(
                f"{what}: class_weight values must be non-negative numbers, received {value!r} for class {key}"
            )
        table[int(key)] = float(value)
    if y.ndim == 1:
        labels = y
    elif y.shape[-1] == 1:
        labels = np.round(y[:, 0])
    else:
        labels = np.argmax(y, axis=-1)
    labels = np.clip(labels.astype(np.int64), 0, classes - 1)
    return table[labels].astype(dtype)


def upload(ops: Ops, a: Any, dtype: str | None) -> Array:
    """A host array on the device (as `dtype` when given); device arrays pass through."""
    if not isinstance(a, np.ndarray) and ops.is_native(a):
        return a if dtype is None or host_dtype(a.dtype) == np.dtype(dtype) else ops.cast(a, dtype)
    return ops.asarray(np.ascontiguousarray(a, dtype=dtype) if dtype is not None else a)


def nbytes(a: Any, dtype: Any) -> int:
    """Bytes of array a (or of each array of a list) stored as `dtype` (one per array for a list; None: as is)."""
    if a is None:
        return 0
    if isinstance(a, list):
        dtypes = dtype if isinstance(dtype, list) else [dtype] * len(a)
        return sum(nbytes(ai, d) for ai, d in zip(a, dtypes, strict=True))
    itemsize = np.dtype(dtype).itemsize if dtype is not None else a.dtype.itemsize
    return int(a.size) * itemsize


# A multi-input or multi-output model's data is a list of arrays with the same rows; these treat
# one array and such a list alike.
def rows(a: Any) -> int:
    """The number of samples in array a (or in the arrays of list a)."""
    return int(a[0].shape[0] if isinstance(a, list) else a.shape[0])


def select(a: Any, lo: int, hi: int) -> Any:
    """Rows [lo, hi) of array a, or of every array of list a."""
    return [ai[lo:hi, ...] for ai in a] if isinstance(a, list) else a[lo:hi, ...]


def upload_all(ops: Ops, a: Any, dtype: Any) -> Any:
    """`upload` of array a, or of every array of list a (dtype: one, or a list with one per array)."""
    if isinstance(a, list):
        dtypes = dtype if isinstance(dtype, list) else [dtype] * len(a)
        return [upload(ops, ai, d) for ai, d in zip(a, dtypes, strict=True)]
    return upload(ops, a, dtype)


Validation = tuple[Any, Any, np.ndarray | None]


@dataclass
class FitData:
    """One fit's checked host data: training rows, their weights, and the validation set if any.

    x: (n, ...) or a list of such per input; y: as `check_y` makes it (a list per output);
    w: (n,) weights in the model's dtype or None; val: (x, y, w) for validation, or None.
    """

    x: Any
    y: Any
    w: np.ndarray | None = None
    val: Validation | None = None

    def nbytes(self, dtype: str) -> int:
        """Bytes of everything fit would upload (x in `dtype`, the rest as they are)."""
        vx, vy, vw = self.val if self.val is not None else (None, None, None)
        pairs = ((self.x, dtype), (self.y, None), (vx, dtype), (vy, None), (self.w, None), (vw, None))
        return sum(nbytes(a, dt) for a, dt in pairs)

    def on_device(
        self, ops: Ops, batch_size: int, comm: distributed.Communicator, dtype: str, y_dtype: Any
    ) -> tuple[Batches, Validation | None]:
        """The training batches and the validation set, resident on the device when all of it fits there
        (else each batch is uploaded as it is used)."""
        resident = ops.fits_on_device(self.nbytes(dtype))
        batches = Batches(ops, self.x, self.y, batch_size, comm, dtype, y_dtype, resident, self.w)
        if self.val is None or not resident:
            return batches, self.val
        vx, vy, vw = self.val
        val = (upload_all(ops, vx, dtype), upload_all(ops, vy, y_dtype), None if vw is None else upload(ops, vw, dtype))
        return batches, val


def split_validation(data: FitData, validation_split: float, split_weights: bool) -> FitData:
    """Keras's validation_split: the last fraction of the rows validates (unshuffled).

    split_weights: the weights are sample weights, which validation keeps for its rows (class
    weights are for training only).
    """
    n = rows(data.x)
    split = int(n * (1.0 - validation_split))
    if split == 0 or split == n:
        raise ValueError(f"validation_split={validation_split} leaves an empty training or validation set")
    w, vw = (None, None) if data.w is None else (data.w[:split], data.w[split:])
    return FitData(
        select(data.x, 0, split),
        select(data.y, 0, split),
        w,
        (select(data.x, split, n), select(data.y, split, n), vw if split_weights else None),
    )


class Batches:
    """One fit's training data: on the device when it fits, shuffled per epoch, sharded over ranks.

    x: (n, ...) checked host or device array; y: (n,) labels or (n, k) targets; w: (n,) sample
    weights or None. `gather(a, b)` writes this rank's share of a global batch into fixed buffers
    and returns views of them. A multi-input or multi-output model gives lists of x and y arrays
    (y_dtype: one per output); each array then has its own buffer, and `gather` returns lists.
    """

    def __init__(
        self,
        ops: Ops,
        x: Any,
        y: Any,
        batch_size: int,
        comm: distributed.Communicator,
        dtype: str,
        y_dtype: Any,
        resident: bool,
        w: np.ndarray | None = None,
    ) -> None:
        self.ops, self.comm, self.dtype, self.y_dtype = ops, comm, dtype, y_dtype
        self.n = rows(x)
        self.global_batch = batch_size * comm.size  # each rank takes its shard of every global batch
        self.steps = math.ceil(self.n / self.global_batch)
        self.resident = resident
        if resident:
            self.x, self.y = upload_all(ops, x, dtype), upload_all(ops, y, y_dtype)
            self.w: Any = upload(ops, w, dtype) if w is not None else None
        else:
            self.x, self.y, self.w = x, y, w
        width = math.ceil(min(self.global_batch, self.n) / comm.size)  # the largest share of a global batch
        xp = ops.xp

        def buffer(a: Any, dt: str | None) -> Array:
            return ops.zeros((width, *a.shape[1:]), getattr(xp, dt) if dt else _like(ops, a))

        if isinstance(x, list):
            self.xbuf: Any = [buffer(a, dtype) for a in x]
        else:
            self.xbuf = buffer(x, dtype)
        if isinstance(y, list):
            dts = y_dtype if isinstance(y_dtype, list) else [y_dtype] * len(y)
            self.ybuf: Any = [buffer(a, d) for a, d in zip(y, dts, strict=True)]
        else:
            self.ybuf = buffer(y, y_dtype)
        # the weights ride along in a fixed buffer too, so a weighted step stays recordable
        self.wbuf = ops.zeros((width,), getattr(xp, dtype)) if w is not None else None
        self.order: Array = None

    def shuffle(self, seed: int, epochs_trained: int, shuffle: bool) -> None:
        """Fix this epoch's order: a permutation keyed by (seed, epochs over the model's life)."""
        perm = shuffle_rng(seed, epochs_trained).permutation(self.n) if shuffle else None
        self.order = self.ops.asarray(perm) if perm is not None and self.resident else perm

    def end_epoch(self) -> None:
        """Nothing to close at an epoch's end (a stream's batches close their pass here)."""

    def bounds(self, step: int) -> tuple[int, int, int, int]:
        """(lo, hi) of global batch `step` and this rank's rows [a, b) within it."""
        lo, hi = step * self.global_batch, min((step + 1) * self.global_batch, self.n)
        a, b = distributed.shard(lo, hi, self.comm.rank, self.comm.size)
        return lo, hi, a, b

    def gather(self, a: int, b: int) -> tuple[Any, Any, Array | None]:
        """Rows [a, b) of this epoch's order in the fixed buffers: (x, y, w) views of b − a rows (w None unweighted)."""
        wb = None if self.wbuf is None else self._gather(self.w, self.wbuf, self.dtype, a, b)
        if not isinstance(self.x, list) and not isinstance(self.y, list):
            if self.resident and self.order is not None:  # both in one pass where the backend can
                # a full batch is the buffers themselves: the same objects every step, as the replay recorded
                full = b - a == self.xbuf.shape[0]
                xb, yb = (self.xbuf, self.ybuf) if full else (self.xbuf[: b - a, ...], self.ybuf[: b - a, ...])
                self.ops.take_rows_into([self.x, self.y], self.order[a:b], [xb, yb])
                return xb, yb, wb
            xb = self._gather(self.x, self.xbuf, self.dtype, a, b)
            return xb, self._gather(self.y, self.ybuf, self.y_dtype, a, b), wb
        xs = self.x if isinstance(self.x, list) else [self.x]
        xbufs = self.xbuf if isinstance(self.xbuf, list) else [self.xbuf]
        ys = self.y if isinstance(self.y, list) else [self.y]
        ybufs = self.ybuf if isinstance(self.ybuf, list) else [self.ybuf]
        ydts = self.y_dtype if isinstance(self.y_dtype, list) else [self.y_dtype] * len(ys)
        xb = [self._gather(s, buf, self.dtype, a, b) for s, buf in zip(xs, xbufs, strict=True)]
        yb = [self._gather(s, buf, d, a, b) for s, buf, d in zip(ys, ybufs, ydts, strict=True)]
        return (xb if isinstance(self.x, list) else xb[0]), (yb if isinstance(self.y, list) else yb[0]), wb

    def _gather(self, source: Any, buf: Array, dtype: str | None, a: int, b: int) -> Array:
        ops = self.ops
        out = buf[: b - a, ...]
        if self.resident and self.order is not None:
            ops.take_rows(source, self.order[a:b], out=out)
        elif self.resident:
            out[...] = source[a:b, ...]
        else:
            picked = self.order[a:b] if self.order is not None else slice(a, b)
            out[...] = upload(ops, source[picked], dtype)
        return out


def _like(ops: Ops, y: Any) -> Any:
    """The device dtype of integer labels y."""
    return getattr(ops.xp, np.dtype(y.dtype).name) if isinstance(y, np.ndarray) else y.dtype
