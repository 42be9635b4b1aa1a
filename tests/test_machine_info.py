"""machine_info: what `xpnet train` records of the machine and the source it ran."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import xpnet
from xpnet.apps import machine

ROOT = Path(xpnet.__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None, reason="xpnet is not a git checkout")
def test_the_git_revision_of_a_checkout_is_recorded() -> None:
    """The checkout is two folders above xpnet/apps/machine.py (one above, it never found one)."""
    rev = machine.git_revision()
    assert rev is not None and rev.split("-")[0].isalnum()
    assert machine.machine_info()["git"] == rev


def test_machine_info_names_the_cpu_and_numpy() -> None:
    info = machine.machine_info()
    assert info["numpy"] and info["cpu"] and info["xpnet"] == xpnet.__version__


def test_a_numpy_backend_running_mkl_is_named_as_the_blas() -> None:
    """history.json's "blas": the library that ran the GEMMs, MKL when the NumPy backend's were MKL's."""
    from xpnet.backend import _cblas
    from xpnet.backend.numpy_ops import NumpyOps

    own = NumpyOps(blas="openblas")
    assert machine.machine_info(own)["blas"] == machine.blas_name()
    mkl = NumpyOps(blas="openblas")
    mkl.cblas = _cblas.Blas("mkl", "MKL 2099.1 (sequential)", own.cblas.fns)
    assert machine.machine_info(mkl)["blas"] == "MKL 2099.1 (sequential)"
    assert machine.machine_info("numpy")["blas"] == machine.blas_name()
