"""The command line's plumbing: its one-line errors (`CLIError`) and warnings, rank 0 under
mpiexec, and the argument types of `xpnet train`."""

from __future__ import annotations

import argparse
import os
import sys
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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
