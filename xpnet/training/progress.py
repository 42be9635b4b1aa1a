"""The Keras-style progress display of `fit`: a bar per epoch on a terminal, else a line per epoch."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def format_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


def _fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}ms" if seconds < 1.0 else f"{seconds:.0f}s"


class Progress:
    """Keras-style progress: a tqdm bar per epoch on a terminal, else one line per epoch.

    The loop calls `due()` every step; only when it returns True (a few times a second) does
    the model read the running loss and metrics from the device, so the bar never forces a
    sync per step.
    """

    interval = 0.25

    def __init__(self, verbose: int | str, epochs: int, steps: int, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if verbose == "auto":
            verbose = 1 if tty else 2
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto', received {verbose!r}")
        self.mode = 0 if verbose == 0 else (1 if verbose == 1 and tty else 2)
        self.epochs, self.steps = epochs, steps
        self.bar: Any = None
        self._next = 0.0

    def epoch_begin(self, epoch: int) -> None:
        self.t0 = time.perf_counter()
        self._next = self.t0 + self.interval
        if self.mode == 1:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.steps,
                desc=f"Epoch {epoch + 1}/{self.epochs}",
                unit="step",
                file=self.stream,
                leave=True,
                dynamic_ncols=True,
                bar_format="{desc} {n_fmt}/{total_fmt} |{bar:20}| {elapsed}<{remaining}{postfix}",
            )

    def due(self) -> bool:
        if self.mode != 1:
            return False
        now = time.perf_counter()
        if now < self._next:
            return False
        self._next = now + self.interval
        return True

    def update(self, step: int, logs: dict[str, float]) -> None:
        """Show progress after `step` steps with running values `logs`."""
        per_step = (time.perf_counter() - self.t0) / max(step, 1)
        self.bar.set_postfix_str(f"{_fmt_time(per_step)}/step - {format_logs(logs)}", refresh=False)
        self.bar.update(step - self.bar.n)

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        elapsed = time.perf_counter() - self.t0
        per_step = elapsed / max(self.steps, 1)
        if self.mode == 1:
            self.bar.total = self.steps  # a stream of unknown length learns it at the epoch's end
            self.bar.set_postfix_str(f"{_fmt_time(per_step)}/step - {format_logs(logs)}", refresh=False)
            self.bar.update(self.steps - self.bar.n)
            self.bar.close()
        elif self.mode == 2:
            print(
                f"Epoch {epoch + 1}/{self.epochs} - {self.steps}/{self.steps} - {elapsed:.0f}s - "
                f"{_fmt_time(per_step)}/step - {format_logs(logs)}",
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
