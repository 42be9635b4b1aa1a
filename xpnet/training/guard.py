"""One training call at a time per model: fit/evaluate/train_on_batch from a second thread is refused.

Two threads running `fit` on one model would share its parameter buffer, optimizer state, running
sums and recorded step, and silently mix them. The guard is re-entrant within the owning thread
(a callback may call `model.evaluate` from inside `fit`); `predict` does not take it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class ModelBusyError(RuntimeError):
    """A model already running fit/evaluate/train_on_batch in another thread was asked to run another."""


class RunGuard:
    """Which thread runs a training call on a model now, and which call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._call = ""
        self._depth = 0

    @contextmanager
    def hold(self, call: str) -> Iterator[None]:
        me = threading.get_ident()
        with self._lock:
            if self._owner is not None and self._owner != me:
                raise ModelBusyError(
                    f"{call}: this model is running {self._call}() in another thread; xpnet trains one call "
                    "at a time per model (predict may run alongside): wait for it, or use a copy of the model"
                )
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

    def __deepcopy__(self, memo: dict[int, Any]) -> RunGuard:
        return RunGuard()  # a copy is idle, whatever the original is doing

    def __repr__(self) -> str:
        return f"RunGuard({self._call or 'idle'})"


def exclusive(call: str) -> Callable[[F], F]:
    """Run the decorated method under its model's RunGuard (made on first use)."""

    def wrap(method: F) -> F:
        @wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            guard = self.__dict__.get("_run_guard")
            if guard is None:
                # setdefault is atomic under the GIL: two first callers get the same guard
                guard = self.__dict__.setdefault("_run_guard", RunGuard())
            with guard.hold(call):
                return method(self, *args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap
