"""The output folder of `xpnet train`: is the run there finished or resumable (and on which
dataset), its newest good checkpoint, a write probe before training, and the results moved in
atomically (history.json last)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ..training import checkpoint
from ..training.checkpoint import CheckpointError
from .cli_args import CLIError, show_warning

RUN_FILE = "run.json"  # in the checkpoint folder: the model and dataset its checkpoints were trained on


def resume_command(args: argparse.Namespace, out: Path) -> str:
    """The command that continues this run: the same arguments plus --resume and --out."""
    tokens = [t for t in args.argv if t != "--resume"]
    if not args.out:
        tokens += ["--out", str(out)]
    return "xpnet " + shlex.join([*tokens, "--resume"])


def finished_run(out: Path, cfg: dict[str, Any]) -> str | None:
    """A line saying the run in `out` is complete, when its results show it; None when it is not."""
    try:
        record = json.loads((out / "history.json").read_text())
        model, epochs, n = record["model"], record["config"]["epochs"], len(record["epoch"])
    except FileNotFoundError:
        check_dataset(out, checkpointed_dataset(out / "checkpoints"), cfg)  # an unfinished run: its checkpoints'
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CLIError(f"cannot read {out / 'history.json'} ({e}); choose another --out") from e
    if model != cfg["model"]:
        raise CLIError(f"{out} holds a run of model {model}: resume it with --model {model}, or choose another --out")
    check_dataset(out, record["config"].get("dataset", "fashion_mnist"), cfg)  # before --dataset: Fashion-MNIST
    if epochs < cfg["epochs"]:
        return None  # asked for more epochs than the finished run had: continue it
    acc = record.get("test_accuracy")
    score = f", test accuracy {acc:.4f}" if isinstance(acc, float) else ""
    return f"the run in {out} is complete ({n} of {epochs} epochs{score}); nothing to resume, nothing changed"


def check_dataset(out: Path, dataset: str | None, cfg: dict[str, Any]) -> None:
    if dataset is not None and dataset != cfg["dataset"]:
        raise CLIError(f"{out} holds a run on {dataset}: resume it with --dataset {dataset}, or choose another --out")


def checkpointed_dataset(ckpt_dir: Path) -> str | None:
    """The dataset the checkpoints in ckpt_dir were trained on (RUN_FILE, written as they start); None if unknown."""
    try:
        dataset = json.loads((ckpt_dir / RUN_FILE).read_text()).get("dataset")
    except (OSError, ValueError, AttributeError):
        return None
    return dataset if isinstance(dataset, str) else None


def latest_checkpoint(ckpt_dir: Path, quiet: bool = False) -> Path | None:
    """The checkpoint --resume will start from; skipped corrupt ones print a warning line each (unless quiet)."""
    if not ckpt_dir.is_dir():
        raise CLIError(f"nothing to resume: {ckpt_dir} does not exist (drop --resume to start a new run)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            found = checkpoint.load_latest(ckpt_dir)
        except CheckpointError as e:
            raise CLIError(f"cannot resume: {e}; delete {ckpt_dir} or choose another --out to start over") from e
    for w in caught if not quiet else ():
        show_warning(w.message, w.category)
    return found[0] if found is not None else None


def check_writable(out: Path, nbytes: int) -> None:
    """Create `out` and write (then delete) `nbytes` there, so that a read-only or full folder fails now."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".xpnet-probe-", dir=out)
        try:
            with os.fdopen(fd, "wb") as f:
                for _ in range(0, nbytes, 1 << 20):
                    f.write(b"\0" * min(1 << 20, nbytes))
                f.flush()
                os.fsync(f.fileno())
        finally:
            os.unlink(probe)
    except OSError as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        reason = e.strerror or str(e)
        raise CLIError(f"cannot write to {out}: {reason}; choose another --out (checked before training)") from e


def write_results(out: Path, write: Any) -> None:
    """Run write(folder) into a temp folder inside `out`, then move each file into `out`, history.json last.

    A failure (disk full, Ctrl-C) leaves `out` as it was: history.json, the mark of a finished
    run, only appears once every other result file is in place.
    """
    staging = Path(tempfile.mkdtemp(prefix=".results-", dir=out))
    try:
        write(staging)
        names = sorted((p.name for p in staging.iterdir()), key=lambda n: n == "history.json")
        for name in names:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
