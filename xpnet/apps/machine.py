"""What the numbers were measured on: CPU, cores, NumPy and its BLAS, the git revision, the GPU
(`machine_info`, recorded with every `xpnet train` run and benchmark)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..backend import Ops, get_backend


def blas_name() -> str:
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]  # type: ignore[index]
        blas = deps["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy has no mode="dicts"; this is informational only
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count()


def git_revision() -> str | None:
    """The source checkout's commit (+ "-dirty" with local edits), when xpnet runs from a git checkout."""
    root = Path(__file__).resolve().parents[2]  # xpnet/apps/machine.py → the checkout
    if not (root / ".git").exists():
        return None

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *cmd], capture_output=True, text=True, timeout=10, check=True)
        return done.stdout.strip()

    try:
        return git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain", "--", "xpnet") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(backend: str | Ops | None = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, NumPy/BLAS, and the GPU when CuPy ran them. backend: the
    spec or the backend that ran them; a NumPy backend whose GEMMs ran in MKL (`xpnet[mkl]`) names MKL as the BLAS."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_name(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "xpnet": __version__,
        "git": git_revision(),
    }
    cblas = getattr(backend, "cblas", None)
    if cblas is not None and cblas.name == "mkl":
        info["blas"] = cblas.label
    spec = backend.describe() if isinstance(backend, Ops) else backend
    if spec and spec.startswith("cupy"):
        try:
            info.update(get_backend(backend).info())
        except Exception as e:  # informational: never fail a finished run over it
            info["gpu"] = f"unknown ({e})"
    return info
