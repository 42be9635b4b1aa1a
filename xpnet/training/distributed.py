"""Data-parallel training over MPI: one Allreduce of the flat gradient buffer per step.

Launch the same script with `mpiexec -n N ...`: each rank holds the whole model and takes its
shard of every global batch (N × the batch size given to `fit`). The shuffle comes from the
model's seed and dropout masks are keyed by the sample's row in the global batch, so N ranks
follow the trajectory of one process with the global batch, up to float32 rounding of the
reduction order. Without `mpiexec` (or without mpi4py) the same script runs as one process.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from ..backend import Ops

_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_NTASKS")


class DistributedError(RuntimeError):
    """MPI is missing, or the ranks disagree."""


class Communicator:
    """A single process: every collective is the identity."""

    rank = 0
    size = 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce_sum(self, ops: Ops, buf: Any) -> None:
        """Sum `buf` (a device array) over ranks, in place."""

    def allreduce_host(self, a: np.ndarray) -> np.ndarray:
        return a

    def bcast_from_root(self, ops: Ops, buf: Any) -> None:
        """Overwrite `buf` on every rank with rank 0's copy."""

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class MPICommunicator(Communicator):
    """MPI_COMM_WORLD through mpi4py; device buffers go through `Ops.allreduce_sum` (NCCL on CuPy when present)."""

    def __init__(self, comm: Any = None) -> None:
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise DistributedError(
                f"distributed training needs mpi4py and an MPI library ({e}). "
                "Install both with: pip install 'xpnet[mpi]' (mpi4py + the mpich wheel), then run "
                "mpiexec -n 2 xpnet train ..."
            ) from e
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def allreduce_sum(self, ops: Ops, buf: Any) -> None:
        ops.allreduce_sum(self.comm, buf)

    def allreduce_host(self, a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a)
        self.comm.Allreduce(np.ascontiguousarray(a), out, op=self.MPI.SUM)
        return out

    def bcast_from_root(self, ops: Ops, buf: Any) -> None:
        host = np.ascontiguousarray(ops.to_numpy(buf))
        self.comm.Bcast(host, root=0)
        buf[...] = ops.asarray(host)

    def allgather(self, obj: Any) -> list[Any]:
        return list(self.comm.allgather(obj))


def launched_by_mpiexec() -> bool:
    return any(int(os.environ.get(v, "1") or 1) > 1 for v in _SIZE_VARS)


def get_communicator(spec: bool | str | Communicator | None = "auto") -> Communicator:
    """Resolve `distribute`: "auto"/None is MPI when started by mpiexec with more than one rank, else
    one process; True/"mpi" is MPI or an error; False is one process."""
    if isinstance(spec, Communicator):
        return spec
    if spec in (False, "none", "off"):
        return Communicator()
    if spec in (True, "mpi"):
        return MPICommunicator()
    if spec in (None, "auto"):
        if not launched_by_mpiexec():
            return Communicator()
        comm = MPICommunicator()  # started by mpiexec: a missing mpi4py is an error, not a silent 1-rank run
        return comm if comm.size > 1 else Communicator()
    raise ValueError(f"distribute must be 'auto', True, False or a Communicator, received {spec!r}")


def shard(lo: int, hi: int, rank: int, size: int) -> tuple[int, int]:
    """This rank's rows [a, b) of the global batch [lo, hi), split as evenly as possible."""
    n = hi - lo
    return lo + (n * rank) // size, lo + (n * (rank + 1)) // size


def check_same_model(comm: Communicator, layout: Any, seed: int, optimizer: Any) -> None:
    """Every rank must hold the same architecture, optimizer and seed; raise on all ranks if not."""
    if comm.size == 1:
        return
    mine = hashlib.sha256(json.dumps([layout, seed, optimizer], sort_keys=True, default=str).encode()).hexdigest()
    digests = comm.allgather(mine)
    if len(set(digests)) != 1:
        bad = [r for r, d in enumerate(digests) if d != digests[0]]
        raise DistributedError(
            f"ranks disagree on the model (architecture, optimizer or seed): ranks {bad} differ from rank 0. "
            "Build the same model with the same seed on every rank."
        )
