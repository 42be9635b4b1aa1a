"""Checks of hyperparameters and call arguments, at construction: one line naming the argument and value.

Every optimizer, schedule, regularizer, callback and `fit` takes its numbers through these, so the
ranges (Keras's) and the wording live in one place. NumPy scalars pass as their Python kind
(`np.int64(2)` is an integer, `np.float32(0.9)` a number); `bool` is not a number, and a number
is not a bool.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "finite"


def number(
    owner: str,
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """`value` as a finite float within the interval, else a ValueError "owner: name must be … received …".

    low/high: the bounds (None: unbounded); low_open/high_open: exclude the bound itself.
    """
    where = _interval(low, high, low_open, high_open)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{owner}: {name} must be a number {where}, received {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float's range (10**400)
        v = math.inf
    bad = (
        not math.isfinite(v)
        or (low is not None and (v <= low if low_open else v < low))
        or (high is not None and (v >= high if high_open else v > high))
    )
    if bad:
        raise ValueError(f"{owner}: {name} must be a number {where}, received {value!r}")
    return v


def integer(owner: str, name: str, value: Any, low: int = 0) -> int:
    """`value` as an int ≥ `low` (Python or NumPy integer, not bool), else a ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, received {value!r}")
    return int(value)


def boolean(owner: str, name: str, value: Any) -> bool:
    """`value` when it is True or False (a NumPy bool too), else a ValueError: "no" or 1 is not a switch."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False, received {value!r}")
    return bool(value)


def verbosity(owner: str, value: Any, allowed: tuple[Any, ...] = (0, 1, 2)) -> Any:
    """A verbose setting among `allowed` (0/1/2, or also "auto" where the caller says); True is 1, as in Keras."""
    if isinstance(value, (list, dict, set)) or value not in allowed:
        raise ValueError(f"{owner}: verbose must be one of {', '.join(map(repr, allowed))}, received {value!r}")
    return int(value) if not isinstance(value, str) else value


def save_frequency(owner: str, value: Any) -> int | str:
    """A checkpoint frequency: "epoch" or a positive number of steps."""
    if value == "epoch":
        return "epoch"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}: save_freq must be 'epoch' or a positive number of steps, received {value!r}")
    return int(value)


def _flag_number(kind: type, low: float, low_open: bool, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, received {text!r}") from None
        if not math.isfinite(value) or (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"must be {what}, received {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


# argparse `type=` checks for the scripts' flags: the range is refused at parse time, in one line
positive_int = _flag_number(int, 0, True, "a positive integer")
natural_int = _flag_number(int, 0, False, "an integer >= 0")
positive_float = _flag_number(float, 0.0, True, "a positive number")
natural_float = _flag_number(float, 0.0, False, "a number >= 0")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line ("prog: error: …"), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def run_script(main: Callable[[], int], prog: str) -> int:
    """Run a script's main(): a failure prints one line "prog: error: …" and exits 1.

    XPNET_DEBUG=1 shows the traceback instead.
    """
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("XPNET_DEBUG"):
            raise
        print(f"{prog}: error: {e} (XPNET_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
