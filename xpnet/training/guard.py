"""One training call at a time per model, and no predict beside it: a second thread gets ModelBusyError.

Two threads running `fit` on one model would share its parameter buffer, optimizer state, running
sums and recorded step, and silently mix them. `predict` runs the same layers, which keep the
forward state their backward reads (pre-activations, a Conv2D's and a pooling layer's saved
inputs, the fused relu flags): a predict between a training step's forward and backward broke
the step, so predict is refused while another thread trains, and training while another thread
predicts. Several predicts may run together. The guard is re-entrant within one thread (a
callback may call `model.evaluate` or `model.predict` from inside `fit`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class ModelBusyError(RuntimeError):
    """A model was asked to train (or predict) while another thread trains (or predicts) with it."""


class RunGuard:
    """Which thread runs a training call on a model now, which call, and which threads predict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._call = ""
        self._depth = 0
        self._predicting: dict[int, int] = {}  # thread id -> predict calls in flight there

    def _busy(self, call: str, running: str) -> ModelBusyError:
        return ModelBusyError(
            f"{call}: this model is running {running}() in another thread; xpnet runs one training call at a "
            "time per model, and predict only while none runs: wait for it, or use a copy of the model"
        )

    @contextmanager
    def hold(self, call: str) -> Iterator[None]:
        """For a training call (fit, evaluate, train_on_batch, compute_gradients): this thread alone."""
        me = threading.get_ident()
        with self._lock:
            if self._owner is not None and self._owner != me:
                raise self._busy(call, self._call)
            if any(thread != me for thread in self._predicting):
                raise self._busy(call, "predict")
            self._owner, self._depth = me, self._depth + 1
            if self._depth == 1:
                self._call = call
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._owner, self._call = None, ""

    @contextmanager
    def share(self, call: str) -> Iterator[None]:
        """For predict: with other predicts, or inside this thread's own training call, never beside another's."""
        me = threading.get_ident()
        with self._lock:
            if self._owner is not None and self._owner != me:
                raise self._busy(call, self._call)
            self._predicting[me] = self._predicting.get(me, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._predicting.pop(me) - 1
                if left:
                    self._predicting[me] = left

    def __deepcopy__(self, memo: dict[int, Any]) -> RunGuard:
        return RunGuard()  # a copy is idle, whatever the original is doing

    def __repr__(self) -> str:
        return f"RunGuard({self._call or ('predict' if self._predicting else 'idle')})"


def exclusive(call: str, shared: bool = False) -> Callable[[F], F]:
    """Run the decorated method under its model's RunGuard (made on first use); shared: as a predict."""

    def wrap(method: F) -> F:
        @wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            guard = self.__dict__.get("_run_guard")
            if guard is None:
                # setdefault is atomic under the GIL: two first callers get the same guard
                guard = self.__dict__.setdefault("_run_guard", RunGuard())
            with guard.share(call) if shared else guard.hold(call):
                return method(self, *args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap
