"""Checkpoints: everything needed to continue a run exactly where it stopped, without pickle.

A checkpoint is an .npz (flat parameters, optimizer slots, the partial epoch's running sums)
with a JSON header (architecture, optimizer and its step count, epoch and step, dropout
counters, history so far, SHA-256 of every array). Shuffles and dropout masks are functions
of (seed, epoch) and (seed, layer, step), so the counters are the whole RNG position. Files
are written atomically; a corrupt or partial one is detected on load and the previous good
one is used, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import argcheck
from .._checks import probably_finite
from ..io.file_checks import FileFormatError, json_member, remove_stale_temps
from ..io.weights_io import atomic_write_bytes, read_xpnet_npz
from .callbacks import HoldingCallback
from .runlock import FolderLock
from .state import set_step_counters, step_counted, step_counters

if TYPE_CHECKING:
    from .distributed import Communicator
    from .protocol import TrainableModel

FORMAT = "xpnet-checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{9})\.npz$")


# files xpnet writes (or reads from Keras) that a user may pass to resume_from by mistake
_OTHER_KINDS = {"xpnet-weights": "weights file (save_weights)", "xpnet-model": "model file (model.save)"}
_LOADERS = {
    "weights file (save_weights)": "model.load_weights",
    "model file (model.save)": "xpnet.models.load_model",
}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _not_a_checkpoint(path: Path, what: str, loader: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is {what}, not a checkpoint: resume_from takes a folder written by "
        f"xpnet.checkpoint.Checkpoint (to start from these weights, use {loader}({str(path)!r}))"
    )


def _other_file_kind(path: Path) -> CheckpointError | None:
    """The error for a Keras-layout file (a .keras zip, an HDF5 .weights.h5) given as a checkpoint; None otherwise."""
    from ..io import keras_format

    if keras_format.is_keras_zip(path):
        try:
            with zipfile.ZipFile(path) as z:
                ours = keras_format.XPNET_HEADER in z.namelist()
        except (OSError, ValueError, zipfile.BadZipFile):
            ours = False
        what = "an xpnet model file (model.save)" if ours else "a Keras .keras model file"
        return _not_a_checkpoint(path, what, "xpnet.models.load_model")
    try:
        with open(path, "rb") as f:
            hdf5 = f.read(len(_HDF5_MAGIC)) == _HDF5_MAGIC
    except OSError:
        return None
    if hdf5:
        return _not_a_checkpoint(path, "a Keras .weights.h5 weights file (save_weights)", "model.load_weights")
    return None


class CheckpointError(ValueError):
    """A checkpoint is unreadable, corrupt, or does not match the model."""


class DamagedCheckpoint(FileFormatError, CheckpointError):
    """A checkpoint file that is damaged or crafted (both a FileFormatError and a CheckpointError)."""


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def save(path: str | os.PathLike[str], header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    header = {**header, "format": FORMAT, "version": VERSION, "sha256": {k: _digest(v) for k, v in arrays.items()}}
    entries = {f"a_{k}": v for k, v in arrays.items()}
    entries["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return atomic_write_bytes(path, lambda f: np.savez(f, **entries))  # type: ignore[arg-type]


def load(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify one checkpoint file; CheckpointError says what is wrong (DamagedCheckpoint: the file)."""
    path = Path(path)
    kind = "xpnet checkpoint"
    if path.is_file() and (foreign := _other_file_kind(path)) is not None:
        raise foreign
    try:
        arrays = read_xpnet_npz(path, kind)
        header = json_member(arrays, "header", path, kind)
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint not found: {path}") from e
    except IsADirectoryError as e:
        raise CheckpointError(str(e)) from e
    except FileFormatError as e:
        raise DamagedCheckpoint(path, kind, e.problem) from e
    arrays = {k[2:]: v for k, v in arrays.items() if k.startswith("a_")}
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        other = _OTHER_KINDS.get(str(header.get("format"))) if isinstance(header, dict) else None
        if other is not None:
            raise _not_a_checkpoint(path, f"an xpnet {other}", _LOADERS[other])
        raise DamagedCheckpoint(path, kind, f"its header does not name format {FORMAT!r}")
    digests = header.get("sha256", {})
    if not isinstance(digests, dict):
        raise DamagedCheckpoint(path, kind, "its checksums are not a {name: sha256} table")
    for k, digest in digests.items():
        if k not in arrays or _digest(arrays[k]) != digest:
            raise DamagedCheckpoint(path, kind, f"array {k!r} is missing or does not match its checksum")
    if "params" not in arrays:
        raise DamagedCheckpoint(path, kind, "it has no parameters")
    return header, arrays


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Checkpoint files in `directory`, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if _NAME.match(p.name)), key=lambda p: p.name)


def load_latest(where: str | os.PathLike[str]) -> tuple[Path, dict[str, Any], dict[str, np.ndarray]] | None:
    """The newest readable checkpoint in a folder (or the given file); None when the folder has none."""
    where = Path(where)
    if not where.exists():
        raise CheckpointError(f"nothing to resume from: {where} does not exist")
    if where.is_file():  # one named file: its own error, not "all 1 checkpoints are corrupt"
        return (where, *load(where))
    remove_stale_temps(where)  # a killed run's half-written checkpoints
    candidates = list(reversed(list_checkpoints(where)))
    newest_problem = ""
    for i, path in enumerate(candidates):
        try:
            header, arrays = load(path)
        except CheckpointError as e:
            newest_problem = newest_problem or str(e)
            nxt = f"trying the previous one, {candidates[i + 1].name}" if i + 1 < len(candidates) else "none left"
            warnings.warn(f"skipping checkpoint: {e}; {nxt}", RuntimeWarning, stacklevel=2)
            continue
        return path, header, arrays
    if candidates:
        raise CheckpointError(
            f"no readable checkpoint in {where}: all {len(candidates)} are corrupt (the newest: {newest_problem})"
        )
    return None


class Checkpoint(HoldingCallback):
    """Write a checkpoint every `save_freq` training steps (an int) or at every epoch end ("epoch").

    Keeps the newest `keep` files in `directory` (ckpt-<optimizer step>.npz). Resume with
    `model.fit(..., resume_from=directory)`. In a data-parallel run only rank 0 writes.
    """

    def __init__(self, directory: str | os.PathLike[str], save_freq: int | str = "epoch", keep: int = 3) -> None:
        super().__init__()
        self.save_freq = argcheck.save_frequency("Checkpoint", save_freq)
        self.keep = argcheck.integer("Checkpoint", "keep", keep, 1)
        self.directory = Path(directory)
        self.saved: list[Path] = []
        self._lock = FolderLock(self.directory, "checkpoint writer")

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # rotation deletes old files: a second writer on the folder would delete this run's
        if self.model is None or self.model.comm.is_root:
            self._lock.acquire()

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        self.release()

    def release(self) -> None:
        """Let another writer use the folder (fit calls this also when training stops on an error)."""
        self._lock.release()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        assert self.model is not None
        opt = self.model.optimizer
        if isinstance(self.save_freq, int) and opt is not None and opt.iterations % self.save_freq == 0:
            self.save()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        loss = (logs or {}).get("loss", 0.0)
        if not math.isfinite(loss):  # never let a diverged state replace the last good checkpoint
            warnings.warn(f"Epoch {epoch + 1}: loss is {loss}; no checkpoint written", RuntimeWarning, stacklevel=2)
            return
        if self.save_freq == "epoch":
            self.save()

    def save(self) -> Path | None:
        model = self.model
        assert model is not None and model.optimizer is not None
        header, arrays = capture(model)
        if not model.comm.is_root:
            return None
        params = arrays["params"]
        # a diverged state must not rotate the last good one away (the sum test may overflow: then look closer)
        if not probably_finite(params) and not np.isfinite(params).all():
            where = f"step {model.optimizer.iterations}"
            warnings.warn(f"{where}: the weights are not finite; no checkpoint written", RuntimeWarning, stacklevel=2)
            return None
        target = self.directory / f"ckpt-{model.optimizer.iterations:09d}.npz"
        try:
            path = save(target, header, arrays)
        except OSError as e:  # a full or read-only disk must not end the run; the previous checkpoint stays
            warnings.warn(f"checkpoint {target} not written ({e.strerror or e}); training goes on", RuntimeWarning, 2)
            return None
        self.saved.append(path)
        for old in list_checkpoints(self.directory)[: -self.keep]:
            old.unlink(missing_ok=True)
        remove_stale_temps(self.directory)  # killed saves' leftovers (never a live writer's)
        return path


def capture(model: TrainableModel) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Everything a resumed fit needs, as a JSON-able header and host arrays (a collective under MPI)."""
    opt, state, ops = model.optimizer, model.train_state, model.ops
    assert opt is not None and ops is not None
    header: dict[str, Any] = {
        "layout": model.store.layout(),
        "trainable": model.store.trainable_labels(),
        "dtype": model.dtype,
        "seed": model.seed,
        "optimizer": {"class": type(opt).__name__, "config": opt.get_config(), "iterations": opt.iterations},
        "position": {"epoch": state.epoch, "step": state.step, "n": state.samples, "batch_size": state.batch_size},
        "dropout": step_counters(model.layers),
        "epochs_trained": state.epochs_trained,
        "history": state.history.history,
        "history_epochs": state.history.epoch,
    }
    arrays = {"params": model.store.host_params()}
    arrays.update({f"slot_{k}": ops.to_numpy(v) for k, v in opt.slots.items()})
    if state.running:
        xp = ops.xp
        flat = [xp.reshape(s, (-1,)) for s in state.running]
        concat = getattr(xp, "concat", None) or xp.concatenate
        # the whole run's partial sums: each rank holds only its shards' share
        arrays["sums"] = model.comm.allreduce_host(ops.to_numpy(concat(flat)))
        header["sums_sizes"] = [int(f.shape[0]) for f in flat]
    return header, arrays


def restore(model: TrainableModel, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Check that a checkpoint fits this model and run, then load it; nothing changes on a mismatch.

    The run's data size and batch size are `model.train_state.samples` / `batch_size`.
    """
    opt, ops = model.optimizer, model.ops
    assert opt is not None and ops is not None
    problems = _mismatches(model, header)
    if problems:
        raise CheckpointError("the checkpoint does not match this run: it has " + "; ".join(problems))
    saved = _read_position(model, header, arrays)
    size = sum(s.size for s in model.store.slots)
    if arrays["params"].shape != (size,) or ("sums" in arrays and sum(saved.sums_sizes) != arrays["sums"].size):
        raise CheckpointError(f"the checkpoint's arrays do not fit the model ({arrays['params'].shape} parameters)")
    if opt.ops is not ops or set(opt.slots) != {k[5:] for k in arrays if k.startswith("slot_")}:
        opt.build(ops, model.store.params)
    for k, v in opt.slots.items():
        if arrays.get(f"slot_{k}", np.zeros(0)).shape != tuple(v.shape):
            raise CheckpointError(f"the checkpoint's optimizer slot {k!r} does not fit the model")
    model.store.set_host_params(arrays["params"])
    with ops.activate():
        for k, v in opt.slots.items():
            v[...] = ops.asarray(arrays[f"slot_{k}"])
    opt.iterations = saved.iterations
    set_step_counters(model.layers, saved.counters)
    _restore_position(model, saved, arrays.get("sums"))


def _mismatches(model: TrainableModel, header: dict[str, Any]) -> list[str]:
    """How the checkpoint differs from this model and run, in words (empty when it fits)."""
    opt, state, store = model.optimizer, model.train_state, model.store
    assert opt is not None
    problems = []
    if header.get("layout") != store.layout():
        problems.append("a different architecture")
    elif header.get("trainable", store.trainable_labels()) != store.trainable_labels():
        problems.append(
            f"trainable weights {header.get('trainable')} (model: {store.trainable_labels()}); "
            "set the layers' `trainable` as in that run and compile again"
        )
    cfg = header.get("optimizer", {})
    if cfg.get("class") != type(opt).__name__ or cfg.get("config") != opt.get_config():
        problems.append(f"optimizer {cfg.get('class')}({cfg.get('config')}) but the model is compiled with {opt!r}")
    if header.get("dtype") != model.dtype:
        problems.append(f"dtype {header.get('dtype')} (model: {model.dtype})")
    pos = header.get("position", {})
    if pos.get("n") != state.samples or pos.get("batch_size") != state.batch_size:
        problems.append(
            f"{pos.get('n')} samples in batches of {pos.get('batch_size')} "
            f"(this fit: {state.samples} in batches of {state.batch_size}); resume with the same data and batch size"
        )
    if header.get("seed") != model.seed:
        problems.append(f"seed {header.get('seed')} (model: {model.seed})")
    return problems


@dataclass
class _Position:
    """A checkpoint's counters and history, read and checked before anything changes."""

    iterations: int
    counters: dict[str, int]
    epoch: int
    step: int
    epochs_trained: int
    history_epochs: list[int]
    history: dict[str, list[float]]
    sums_sizes: list[int]


def _read_position(model: TrainableModel, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> _Position:
    """Every counter the header holds, as numbers; a crafted header fails here, the model untouched."""
    try:
        pos = header["position"]
        epoch = int(pos["epoch"])
        return _Position(
            iterations=int(header["optimizer"]["iterations"]),
            counters={ly.name: int(header["dropout"][ly.name]) for ly in step_counted(model.layers)},
            epoch=epoch,
            step=int(pos["step"]),
            epochs_trained=int(header.get("epochs_trained", epoch)),
            history_epochs=[int(e) for e in header.get("history_epochs", [])],
            history={str(k): [float(x) for x in v] for k, v in dict(header.get("history", {})).items()},
            sums_sizes=[int(n) for n in header.get("sums_sizes", [])] if "sums" in arrays else [],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"the checkpoint's header is damaged ({type(e).__name__}: {e})") from e


def _restore_position(model: TrainableModel, saved: _Position, sums: np.ndarray | None) -> None:
    """The run's position, history and partial-epoch sums from a checked checkpoint."""
    state, ops = model.train_state, model.ops
    assert ops is not None
    state.epoch, state.step = saved.epoch, saved.step
    state.epochs_trained = saved.epochs_trained
    state.history.epoch = saved.history_epochs
    state.history.history = saved.history
    state.running = []
    if sums is None:
        return
    # they hold every rank's share: rank 0 carries them, the others start at 0
    own = sums if model.comm.is_root else np.zeros_like(sums)
    off = 0
    for size in saved.sums_sizes:
        part = own[off : off + size]
        state.running.append(ops.asarray(part.reshape(()) if size == 1 else part))
        off += size


def resume(
    model: TrainableModel, where: str | os.PathLike[str], steps: int, verbose: int | str, epochs: int | None = None
) -> bool:
    """Load the newest checkpoint in `where` into the model and its run (fit's resume_from).

    steps: the fit's steps per epoch (for the message). Returns True when the run stands at
    `epochs` or later (the checkpoint's, or the fit's initial epoch): nothing is left to train.
    Under MPI rank 0 picks the file for every rank.
    """
    state, comm = model.train_state, model.comm
    found = load_latest(where) if comm.size == 1 else _load_chosen_by_root(comm, where)
    if found is None:
        if comm.is_root and verbose:
            print(f"No checkpoint in {where}: starting from the beginning.")
    else:
        restore(model, found[1], found[2])
        if comm.is_root and verbose:
            print(f"Resuming from {found[0]} (epoch {state.epoch + 1}, step {state.step}/{steps})")
    finished = epochs is not None and state.epoch >= epochs
    if finished and comm.is_root and verbose:
        print(f"The run in {where} is complete ({state.epoch} of {epochs} epochs); nothing to resume.")
    return finished


def _load_chosen_by_root(
    comm: Communicator, where: str | os.PathLike[str]
) -> tuple[Path, dict[str, Any], dict[str, np.ndarray]] | None:
    """`load_latest` on every rank of the file rank 0 found.

    Only rank 0 writes checkpoints, so rank 0 chooses the file: another rank looking for itself
    may arrive before rank 0's last write of an earlier fit and resume from an older one.
    """
    chosen: tuple[str | None, str | None] = (None, None)
    found = None
    if comm.is_root:
        try:
            found = load_latest(where)
            chosen = (str(found[0]) if found is not None else None, None)
        except CheckpointError as e:
            chosen = (None, str(e))
    path_or_error = comm.allgather(chosen)[0]
    if path_or_error[1] is not None:
        raise CheckpointError(path_or_error[1])
    failed: str | None = None
    if not comm.is_root and path_or_error[0] is not None:
        try:
            found = load_latest(path_or_error[0])
        except CheckpointError as e:
            failed = f"rank {comm.rank}: {e}"
    # a rank that cannot read rank 0's choice stops every rank (alone, it would leave them waiting)
    failures = [f for f in comm.allgather(failed) if f is not None]
    if failures:
        raise CheckpointError(failures[0])
    return found
