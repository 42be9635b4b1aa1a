"""Data from Python: a `PyDataset` or an iterator of batches, streamed through fixed device buffers.

For data that does not fit in memory: each batch is checked at the boundary as arrays are,
then copied into buffers allocated once (sized by the largest batch seen), so the training
step reads its batch from the same device memory every time, as it does for array data.
A batch is `(x, y)` or `(x, y, sample_weight)` (`(x,)` or `x` alone for predict).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..backend import Ops
from . import data

if TYPE_CHECKING:
    from .protocol import TrainableModel

Array = Any


def is_stream(x: Any) -> bool:
    """Whether x is a PyDataset or an iterator/generator of batches (not an array, list or dict of arrays)."""
    from ..utils import PyDataset

    return isinstance(x, PyDataset) or (isinstance(x, Iterator) and not hasattr(x, "shape"))


def split_batch(batch: Any, what: str) -> tuple[Any, Any, Any]:
    """(x, y, sample_weight) of one batch; y and sample_weight are None when absent."""
    if isinstance(batch, tuple):
        if not 1 <= len(batch) <= 3:
            raise ValueError(
                f"{what}: a batch must be (x, y) or (x, y, sample_weight), received a tuple of {len(batch)} items"
            )
        x, y, w = (*batch, None, None)[:3]
        return x, y, w
    return batch, None, None


class Stream:
    """The batches of a PyDataset (its `len` per epoch, or `steps`) or of an iterator (`steps` per
    epoch, else until it runs out).

    `peek()` gives the first batch without consuming it (to build the model); `epoch()` yields one
    epoch's batches, and `end_epoch()` calls the PyDataset's `on_epoch_end` after them, as Keras does.
    """

    def __init__(self, source: Any, steps: int | None, what: str) -> None:
        from ..utils import PyDataset

        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
            raise ValueError(f"{what}: steps must be a positive integer or None, received {steps!r}")
        self.source, self.what = source, what
        self.dataset = source if isinstance(source, PyDataset) else None
        if self.dataset is not None:
            count = self.dataset.num_batches
            if count is None and steps is None:
                raise ValueError(f"{what}: the PyDataset has no __len__; pass steps (or steps_per_epoch)")
            self.steps: int | None = min(steps, count) if steps is not None and count is not None else steps or count
            self._iter: Iterator[Any] | None = None
        else:
            self.steps = steps
            self._iter = iter(source)
        self._held: list[Any] = []
        self.yielded = 0  # batches given out over all epochs (an iterator that gave some and now none ran out)

    def peek(self) -> Any:
        if self.dataset is not None:
            return self.dataset[0]
        if not self._held:
            try:
                self._held.append(next(self._iter))  # type: ignore[arg-type]
            except StopIteration:
                raise ValueError(f"{self.what}: the data iterator yielded no batches") from None
        return self._held[0]

    def end_epoch(self) -> None:
        """After an epoch's last batch: the PyDataset's `on_epoch_end` (where it reshuffles)."""
        if self.dataset is not None:
            self.dataset.on_epoch_end()

    def epoch(self) -> Iterator[Any]:
        """One epoch's batches (an iterator without `steps` runs until it is exhausted); `end_epoch` after."""
        if self.dataset is not None:
            self.dataset.on_epoch_begin()
            assert self.steps is not None
            for i in range(self.steps):
                self.yielded += 1
                yield self.dataset[i]
            return
        assert self._iter is not None
        source = itertools.chain(self._held, self._iter)
        self._held = []
        for batch in itertools.islice(source, self.steps) if self.steps is not None else source:
            self.yielded += 1
            yield batch


class StreamBatches:
    """One fit's streamed training data, with the interface of `data.Batches` for the training loop.

    `bounds(step)` takes the next batch (StopIteration when the epoch's data ends) and returns its
    (lo, hi, lo, hi) sample positions in the epoch; `gather` checks it, uploads it into the fixed
    buffers and returns views of them.
    """

    def __init__(self, model: TrainableModel, stream: Stream, class_weight: Any) -> None:
        self.model, self.stream, self.class_weight = model, stream, class_weight
        self.global_batch = 0  # unknown ahead: a stream's batches may differ in size
        self.steps = stream.steps
        self._epoch: Iterator[Any] = iter(())
        self._seen = 0
        self._batch: tuple[Any, Any, Any] = (None, None, None)
        self._buffers: dict[int, Array] = {}

    def shuffle(self, seed: int, epochs_trained: int, shuffle: bool) -> None:
        """Start an epoch (a PyDataset orders its own batches; `shuffle` does not apply, as in Keras)."""
        self._epoch, self._seen = self.stream.epoch(), 0

    def end_epoch(self) -> None:
        self.stream.end_epoch()

    def bounds(self, step: int) -> tuple[int, int, int, int]:
        raw = next(self._epoch)
        model, what = self.model, self.stream.what
        x, y, w = split_batch(raw, what)
        x, y = model.prepare(x, y, what)
        if y is None:
            raise ValueError(f"{what}: each batch must hold targets, (x, y) or (x, y, sample_weight)")
        class_weight = self.class_weight if w is None else None
        self._batch = (x, y, model.sample_weights_for(w, class_weight, y, what))
        lo = self._seen
        self._seen += data.rows(x)
        return lo, self._seen, lo, self._seen

    def gather(self, a: int, b: int) -> tuple[Any, Any, Array | None]:
        model = self.model
        assert model.ops is not None
        x, y, w = self._batch
        xb = self._into(0, model.ops, x, model.dtype)
        yb = self._into(1, model.ops, y, model.target_dtypes())
        wb = None if w is None else self._into(2, model.ops, w, model.dtype)
        return xb, yb, wb

    def _into(self, slot: int, ops: Ops, a: Any, dtype: Any) -> Any:
        """Host array a (or list of them) copied into slot's fixed buffer(s); views of its first rows."""
        if isinstance(a, list):
            dtypes = dtype if isinstance(dtype, list) else [dtype] * len(a)
            return [
                self._into(slot * 1000 + 1 + k, ops, ak, d) for k, (ak, d) in enumerate(zip(a, dtypes, strict=True))
            ]
        n = int(a.shape[0])
        buf = self._buffers.get(slot)
        shape = tuple(a.shape[1:])
        if buf is None or buf.shape[0] < n or tuple(buf.shape[1:]) != shape:
            # sized by the largest batch so far: a stream's first batch is usually its largest
            dt = getattr(ops.xp, dtype) if dtype is not None else getattr(ops.xp, a.dtype.name)
            buf = self._buffers[slot] = ops.zeros((n, *shape), dt)
        out = buf[:n, ...]
        out[...] = data.upload(ops, a, dtype)
        return out


def cycle(x: Any, y: Any, sample_weight: Any, batch_size: int, shuffle: bool, seed: int | None) -> Iterator[Any]:
    """Array data as Keras reads it under `steps_per_epoch`: batches that run on across epochs,
    starting over (reshuffled when `shuffle`) each time the data is used up."""
    import numpy as np

    def take(a: Any, idx: np.ndarray) -> Any:
        if isinstance(a, list):
            return [np.asarray(v)[idx] for v in a]
        if isinstance(a, dict):
            return {k: np.asarray(v)[idx] for k, v in a.items()}
        return np.asarray(a)[idx]

    n = data.rows(x)
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n) if shuffle else np.arange(n)
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            batch = (take(x, idx), take(y, idx))
            yield batch if sample_weight is None else (*batch, take(sample_weight, idx))


def predict_inputs(batch: Any) -> Any:
    """The x of a predict batch: `x`, `(x,)`, or the x of `(x, y[, w])`."""
    return batch[0] if isinstance(batch, tuple) else batch
