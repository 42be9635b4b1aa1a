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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .callbacks import Callback
from .weights_io import atomic_write_bytes, open_npz

if TYPE_CHECKING:
    from .models import Sequential

FORMAT = "xpnet-checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{9})\.npz$")


class CheckpointError(ValueError):
    """A checkpoint is unreadable, corrupt, or does not match the model."""


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def save(path: str | os.PathLike[str], header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    header = {**header, "format": FORMAT, "version": VERSION, "sha256": {k: _digest(v) for k, v in arrays.items()}}
    entries = {f"a_{k}": v for k, v in arrays.items()}
    entries["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return atomic_write_bytes(path, lambda f: np.savez(f, **entries))  # type: ignore[arg-type]


def load(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify one checkpoint file; CheckpointError says what is wrong."""
    path = Path(path)
    try:
        with open_npz(path, "checkpoint") as z:
            header = json.loads(bytes(z["header"]).decode())
            arrays = {k[2:]: z[k] for k in z.files if k.startswith("a_")}
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint not found: {path}") from e
    except IsADirectoryError as e:
        raise CheckpointError(str(e)) from e
    except ValueError as e:
        raise CheckpointError(str(e) if str(path) in str(e) else f"{path} is not an xpnet checkpoint file") from e
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as e:
        raise CheckpointError(f"{path} is not an xpnet checkpoint file (a damaged or truncated archive)") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an xpnet checkpoint file")
    for k, digest in header.get("sha256", {}).items():
        if k not in arrays or _digest(arrays[k]) != digest:
            raise CheckpointError(f"{path}: array {k!r} is missing or does not match its checksum")
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
    candidates = [where] if where.is_file() else list(reversed(list_checkpoints(where)))
    if not where.exists():
        raise CheckpointError(f"nothing to resume from: {where} does not exist")
    for i, path in enumerate(candidates):
        try:
            header, arrays = load(path)
        except CheckpointError as e:
            nxt = f"trying the previous one, {candidates[i + 1].name}" if i + 1 < len(candidates) else "none left"
            warnings.warn(f"skipping checkpoint: {e}; {nxt}", RuntimeWarning, stacklevel=2)
            continue
        return path, header, arrays
    if candidates:
        raise CheckpointError(f"no readable checkpoint in {where}: all {len(candidates)} are corrupt")
    return None


class Checkpoint(Callback):
    """Write a checkpoint every `save_freq` training steps (an int) or at every epoch end ("epoch").

    Keeps the newest `keep` files in `directory` (ckpt-<optimizer step>.npz). Resume with
    `model.fit(..., resume_from=directory)`. In a data-parallel run only rank 0 writes.
    """

    def __init__(self, directory: str | os.PathLike[str], save_freq: int | str = "epoch", keep: int = 3) -> None:
        super().__init__()
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ValueError(f"save_freq must be 'epoch' or a positive number of steps, received {save_freq!r}")
        if keep < 1:
            raise ValueError(f"keep must be at least 1, received {keep}")
        self.directory, self.save_freq, self.keep = Path(directory), save_freq, keep
        self.saved: list[Path] = []

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def on_train_batch_end(self, batch: int, logs: None = None) -> None:
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
        header, arrays = model._checkpoint_state()
        if not model._comm.is_root:
            return None
        path = save(self.directory / f"ckpt-{model.optimizer.iterations:09d}.npz", header, arrays)
        self.saved.append(path)
        for old in list_checkpoints(self.directory)[: -self.keep]:
            old.unlink(missing_ok=True)
        return path


def restore(model: Sequential, header: dict[str, Any], arrays: dict[str, np.ndarray], n: int, batch_size: int) -> None:
    """Check that a checkpoint fits this model and run, then load it; nothing changes on a mismatch."""
    assert model.optimizer is not None
    problems = []
    if header.get("layout") != model._layout():
        problems.append("a different architecture")
    opt = header.get("optimizer", {})
    if opt.get("class") != type(model.optimizer).__name__ or opt.get("config") != model.optimizer.get_config():
        problems.append(
            f"optimizer {opt.get('class')}({opt.get('config')}) but the model is compiled with {model.optimizer!r}"
        )
    if header.get("dtype") != model.dtype:
        problems.append(f"dtype {header.get('dtype')} (model: {model.dtype})")
    pos = header.get("position", {})
    if pos.get("n") != n or pos.get("batch_size") != batch_size:
        problems.append(
            f"{pos.get('n')} samples in batches of {pos.get('batch_size')} (this fit: {n} in batches of {batch_size}); "
            "resume with the same data and batch size"
        )
    if header.get("seed") != model.seed:
        problems.append(f"seed {header.get('seed')} (model: {model.seed})")
    if problems:
        raise CheckpointError("the checkpoint does not match this run: it has " + "; ".join(problems))
    model._restore_checkpoint(header, arrays)
