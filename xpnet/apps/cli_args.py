"""The command line's plumbing: its one-line errors (`CLIError`) and warnings, rank 0 under
mpiexec, and the argument types of `xpnet train`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


class CLIError(Exception):
    """A failure the user can act on: printed as one line on stderr, exit status `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def is_root() -> bool:
    """Rank 0 under mpiexec (from the launcher's environment), or a single process."""
    return all(os.environ.get(v, "0") == "0" for v in _RANK_VARS)


def show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """warnings.showwarning for the command line: one line, no source echo, rank 0 only."""
    if is_root():
        print(f"warning: {message}", file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str, parse: Callable[[str], Any], ok: Callable[[Any], bool], wanted: str) -> Any:
    """text parsed as a number that `ok` accepts, else argparse's one-line error naming what was wanted."""
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
    return value


def positive_int(text: str) -> int:
    return int(_number(text, int, lambda v: v >= 1, "a positive integer"))


def whole_number(text: str) -> int:
    return int(_number(text, int, lambda v: v >= 0, "a whole number >= 0"))


def positive_float(text: str) -> float:
    return float(_number(text, float, lambda v: 0 < v < float("inf"), "a positive number"))
