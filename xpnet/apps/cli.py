"""Command line: `xpnet train` runs the course's Fashion-MNIST (or MNIST) experiments, `xpnet info` the setup.

    xpnet train --model A                  # 30 epochs of SGD, as in the course
    xpnet train --model B --out runs/B     # the exercise: Dropout, Adam, batch 1000
    xpnet train --model lenet              # the course's LeNet-5 CNN: 10 epochs of SGD
    xpnet train --model lenet --dataset mnist   # its original task: handwritten digits (your MNIST files)
    xpnet train --quick                    # a few hundred images, 1 epoch: smoke test
    xpnet info

`python -m xpnet.cli ...` works too. The command line's errors and argument types are in cli_args.py,
the machine record in machine.py, the output folder's checks, resume and atomic results in run_folder.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..backend import BackendUnavailableError, available_backends, get_backend, use_backend
from ..datasets import DatasetError, DatasetNotFoundError, fashion_mnist, mnist
from ..io.file_checks import FileFormatError
from ..teaching import experiments
from ..training import checkpoint, threads
from ..training.callbacks import Callback
from ..training.checkpoint import Checkpoint, CheckpointError
from ..training.runlock import FolderLock, FolderLockedError
from . import plots
from .cli_args import CLIError, Parser, is_root, positive_float, positive_int, show_warning, whole_number
from .machine import machine_info
from .run_folder import (
    RUN_FILE,
    check_writable,
    finished_run,
    latest_checkpoint,
    resume_command,
    write_results,
)

QUICK_LIMIT = 500
QUICK_EPOCHS = 1
EVAL_BATCH = 1000  # evaluation only runs forward passes: a big batch is faster and gives the same numbers
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
PNGS = ("curves.png", "samples.png", "confusion.png")


class EpochTimer(Callback):
    """Wall seconds per epoch: `seconds` (training + validation pass) and `train_seconds` (training only).

    Synchronizes the device only at epoch edges, so GPU timings are real without a per-step sync.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.train_seconds: list[float] = []
        self._t0 = 0.0

    def _sync(self) -> None:
        if self.model is not None and self.model.ops is not None:
            self.model.ops.synchronize()

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if batch == self.params.get("steps", 0) - 1:
            self._sync()
            self.train_seconds.append(time.perf_counter() - self._t0)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._sync()
        self.seconds.append(time.perf_counter() - self._t0)


def cmd_info(args: argparse.Namespace) -> int:
    info = machine_info()
    print(f"xpnet {__version__}")
    print(f"backends available: {', '.join(available_backends())}")
    print(f"python {info['python']} on {info['platform']}")
    print(f"numpy {info['numpy']} (BLAS: {info['blas']})")
    print(f"cpu: {info['cpu']} ({info['usable_cpus']} usable of {info['cpu_count']} cores)")
    print(
        f"plots: {'matplotlib available' if plots.have_matplotlib() else 'matplotlib missing: ' + plots.INSTALL_HINT}"
    )
    return 0


DATASETS = {"fashion_mnist": fashion_mnist, "mnist": mnist}
DATASET_TITLES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST"}


def _dataset_name(text: str) -> str:
    """--dataset as typed: fashion_mnist, fashion-mnist, Fashion-MNIST, fashion, mnist, MNIST."""
    name = text.strip().lower().replace("-", "_")
    return "fashion_mnist" if name == "fashion" else name


def _dataset_not_found(dataset: str, data_dir: str | None, detail: str) -> str:
    """One short line for missing dataset files, in the command line's words (--data-dir, not data_dir=)."""
    spec = DATASETS[dataset].SPEC
    names = ", ".join(f.filename for f in spec.files.values())
    # the loader lists each place it looked as "  <folder>  (<why not>)"; the folder itself may hold "(" or spaces
    searched = [ln[2:].rsplit("  (", 1) for ln in detail.splitlines() if ln.startswith("  ") and ln.strip()[:1] != "-"]
    searched = [pair for pair in searched if len(pair) == 2]
    if data_dir is not None:
        why = searched[0][1].removesuffix(")") if searched else "not found"
        return f"could not load {spec.title}: --data-dir {data_dir} {why}; it must hold {names} (or .gz)"
    looked = "; ".join(f"{folder} ({why}" for folder, why in searched) or "nowhere"
    return (
        f"could not load {spec.title}: not found (looked in {looked}) and not downloaded; "
        f"pass --data-dir FOLDER holding {names} (or .gz)"
    )


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line values over the model's course defaults; --quick only fills what was not given."""
    d = experiments.DEFAULTS[args.model]
    limit = args.limit if args.limit is not None else (QUICK_LIMIT if args.quick else None)
    epochs = args.epochs if args.epochs is not None else (QUICK_EPOCHS if args.quick else d.epochs)
    optimizer = args.optimizer or d.optimizer
    if args.learning_rate is not None:
        lr = args.learning_rate
    elif optimizer == d.optimizer:
        lr = d.learning_rate
    else:  # another optimizer than the course's: use its Keras default step size
        lr = {"sgd": 0.01, "adam": 0.001, "rmsprop": 0.001}[optimizer]
    return {
        "model": args.model,
        "dataset": args.dataset,
        "optimizer": optimizer,
        "learning_rate": lr,
        "batch_size": args.batch_size or d.batch_size,
        "epochs": epochs,
        "limit": limit,
        "seed": args.seed,
    }


def _default_out(model: str) -> Path:
    return Path("runs") / f"{model}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _fmt(v: float | None, width: int = 8, digits: int = 4) -> str:
    return f"{v:>{width}.{digits}f}" if v is not None else " " * width


def _at(values: Sequence[float] | None, i: int) -> float | None:
    # A run stopped on a non-finite loss logs no validation values for its last epoch.
    return values[i] if values is not None and i < len(values) else None


def epoch_table(
    history: dict[str, list[float]], seconds: Sequence[float], course: dict[int, dict[str, float]] | None
) -> str:
    """Per-epoch table, at most 80 columns; with `course`, the course's Keras numbers beside the epochs it lists."""
    cols = (("loss", 6), ("accuracy", 6), ("val_loss", 8), ("val_accuracy", 7))
    names = {"loss": "loss", "accuracy": "acc", "val_loss": "val_loss", "val_accuracy": "val_acc"}
    values = " ".join(f"{names[k]:>{w}}" for k, w in cols)
    head = f"{'epoch':>5} {values} {'s':>6}"
    if course:
        head += f" | {values}"
        title = f"{'this run':^{len(head) - len(values) - 3}} | {'course (Keras)':^{len(values)}}"
    lines = ([title.rstrip()] if course else []) + [head, "-" * len(head)]
    for i in range(len(history.get("loss", []))):
        cells = " ".join(_fmt(_at(history.get(k), i), w) for k, w in cols)
        line = f"{i + 1:>5} {cells} {_fmt(_at(seconds, i), 6, 2)}"
        if course and (i + 1) in course:
            line += " | " + " ".join(_fmt(course[i + 1][k], w) for k, w in cols)
        lines.append(line)
    return "\n".join(lines)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _write_history(out: Path, record: dict[str, Any]) -> None:
    _write_text(out / "history.json", json.dumps(record, indent=2) + "\n")
    cols = ["epoch", *HISTORY_KEYS, "seconds", "train_seconds"]
    rows = [",".join(cols)]
    for i, epoch in enumerate(record["epoch"]):
        values = (_at(record[k], i) for k in cols[1:])
        rows.append(",".join([str(epoch), *("" if v is None else f"{v:.6f}" for v in values)]))
    _write_text(out / "history.csv", "\r\n".join(rows) + "\r\n")


def _write_plots(
    out: Path, record: dict[str, Any], x_test: np.ndarray, y_test: np.ndarray, y_pred: np.ndarray
) -> list[Path]:
    """curves.png, samples.png, confusion.png. x_test (n, 28, 28) float32; y_test, y_pred (n,) class indices."""
    names = DATASETS[record["config"].get("dataset", "fashion_mnist")].class_names
    label = f"model {record['model']}, {record['config']['optimizer']} lr {record['config']['learning_rate']:g}"
    label += f", batch {record['config']['batch_size']}, test acc {record['test_accuracy']:.4f}"
    paths = [out / "curves.png", out / "samples.png", out / "confusion.png"]
    plots.curves({k: record[k] for k in HISTORY_KEYS}, paths[0], title=label)
    plots.samples(x_test, y_test, y_pred, names, paths[1], rows=4, cols=8, title="test images: prediction (red: wrong)")
    acc = record["test_accuracy"]
    plots.confusion(y_test, y_pred, names, paths[2], title=f"test set confusion matrix (accuracy {acc:.4f})")
    return paths


@contextmanager
def _threads_while_loading(count: int | None) -> Iterator[None]:
    """`--threads` as XPNET_BLAS_THREADS while the backend is made: MKL fixes its threading layer when it loads
    (sequential for one thread, backend/_cblas.py), before `blas_threads_for` limits its pool around fit."""
    if count is None:
        yield
        return
    saved = os.environ.get(threads.XPNET_VAR)
    os.environ[threads.XPNET_VAR] = str(min(count, threads.usable_cores()))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(threads.XPNET_VAR, None)
        else:
            os.environ[threads.XPNET_VAR] = saved


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _settings(args)
    if args.resume and not args.out:
        raise CLIError("--resume needs --out, the folder of the run to continue (e.g. --resume --out runs/a)", 2)
    out = Path(args.out) if args.out else _default_out(cfg["model"])
    if args.resume:
        done = finished_run(out, cfg)
        if done is not None:
            print(done)
            return 0
    try:  # before loading data, so that a wrong --backend fails at once
        with _threads_while_loading(args.threads):
            ops = get_backend(args.backend)
    except (BackendUnavailableError, ValueError) as e:
        raise CLIError(str(e), 2) from e
    with use_backend(ops):  # build the weights where they will be trained
        model = experiments.build_model(cfg["model"], seed=cfg["seed"])
    optimizer = experiments.make_optimizer(cfg["optimizer"], cfg["learning_rate"])
    model.compile(optimizer=optimizer, loss=experiments.LOSS, metrics=experiments.METRICS, backend=ops)
    ckpt_dir = out / "checkpoints"
    resume_from = latest_checkpoint(ckpt_dir) if args.resume else None
    try:
        train, test = DATASETS[cfg["dataset"]].load_data(data_dir=args.data_dir)
    except DatasetNotFoundError as e:
        raise CLIError(_dataset_not_found(cfg["dataset"], args.data_dir, str(e))) from e
    except DatasetError as e:
        where = " ".join(str(e).split())  # a damaged file: its name and what is wrong, on one line
        raise CLIError(f"could not load {DATASET_TITLES[cfg['dataset']]}: {where}") from e
    check_writable(out, model.count_params() * np.dtype(model.dtype).itemsize + (2 << 20))
    if is_root():  # two runs writing one folder would delete each other's checkpoints and results
        args.run_lock = FolderLock(out, "training run")
        try:
            args.run_lock.acquire()
        except FolderLockedError as e:
            raise CLIError(str(e)) from e
        # read the run again under the lock: another run may have finished or rotated its checkpoints since
        # (under MPI every rank must start from the same file: they keep the one they read alike above)
        if args.resume and model.comm.size == 1:
            done = finished_run(out, cfg)
            if done is not None:
                print(done)
                return 0
            resume_from = latest_checkpoint(ckpt_dir, quiet=True)
    data = experiments.prepare_fashion_mnist(train, test, limit=cfg["limit"])
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = data["train"], data["valid"], data["test"]
    images = x_test  # (n, 28, 28) for the pictures
    x_train, x_valid, x_test = (experiments.as_model_input(model, x) for x in (x_train, x_valid, x_test))

    assert model.ops is not None
    backend = model.ops.describe()
    root = model.comm.is_root
    blas = threads.blas_threads_for(threads.macs_per_sample(model), cfg["batch_size"], model.comm.size, args.threads)
    with blas as decision:
        if model.comm.size > 1 and root:
            print(f"data-parallel over {model.comm.size} MPI ranks: global batch {cfg['batch_size'] * model.comm.size}")
        if root:
            print(
                f"model {cfg['model']} on {backend}: {len(x_train):,} training / {len(x_valid):,} validation / "
                f"{len(x_test):,} test images; {cfg['optimizer']} lr {cfg['learning_rate']:g}, "
                f"batch {cfg['batch_size']}, {cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''}, "
                f"seed {cfg['seed']}; {decision}"
            )
        if args.verbose not in ("auto", "0") and root:
            model.summary()

        timer = EpochTimer()
        callbacks: list[Callback] = [timer]
        checkpointing = bool(args.checkpoint_every or args.resume)
        if checkpointing:
            callbacks.append(Checkpoint(ckpt_dir, save_freq=args.checkpoint_every or "epoch"))
            if root and resume_from is None:  # what the checkpoints are of, for a --resume before history.json
                ckpt_dir.mkdir(parents=True, exist_ok=True)
                _write_text(ckpt_dir / RUN_FILE, json.dumps({"model": cfg["model"], "dataset": cfg["dataset"]}) + "\n")
            args.on_interrupt = f"interrupted; continue with: {resume_command(args, out)}"
        else:
            args.on_interrupt = "interrupted; nothing was written (add --checkpoint-every STEPS to be able to resume)"
        verbose: int | str = args.verbose if args.verbose == "auto" else int(args.verbose)
        t_start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # a divergence is reported once, as the error below, not also by fit and Checkpoint
                warnings.filterwarnings("ignore", r"(Epoch \d+: (the )?loss |step \d+: the weights are not finite)")
                hist = model.fit(
                    x_train,
                    y_train,
                    batch_size=cfg["batch_size"],
                    epochs=cfg["epochs"],
                    validation_data=(x_valid, y_valid),
                    callbacks=callbacks,
                    verbose=verbose,
                    resume_from=resume_from if args.resume else None,
                )
        except CheckpointError as e:
            raise CLIError(f"cannot resume from {ckpt_dir}: {e}; or choose another --out") from e
        except FolderLockedError as e:
            raise CLIError(str(e)) from e
        wall = time.perf_counter() - t_start
        _check_diverged(hist.history.get("loss", []), hist.epoch, ckpt_dir if checkpointing else None)
        scores = model.evaluate(x_test, y_test, batch_size=EVAL_BATCH, verbose=0, return_dict=True)  # all ranks
        assert isinstance(scores, dict)
        if not root:  # only rank 0 writes files and prints the report
            return 0
        y_pred = model.predict(x_test, batch_size=EVAL_BATCH).argmax(axis=1)

    epochs_run = len(hist.epoch)
    record: dict[str, Any] = {
        "model": cfg["model"],
        "epoch": [e + 1 for e in hist.epoch],
        **{k: [float(v) for v in hist.history.get(k, [])] for k in HISTORY_KEYS},
        # epochs finished before a --resume were not timed in this process
        "seconds": [None] * (epochs_run - len(timer.seconds)) + timer.seconds[:epochs_run],
        "train_seconds": [None] * (epochs_run - len(timer.train_seconds)) + timer.train_seconds[:epochs_run],
        "test_loss": float(scores["loss"]),
        "test_accuracy": float(scores["accuracy"]),
        "train_wall_seconds": wall,
        "backend": backend,
        "seed": cfg["seed"],
        "blas_threads": decision.threads if decision.threads is not None else threads.current_threads(),
        "config": {
            **{k: cfg[k] for k in ("dataset", "optimizer", "learning_rate", "batch_size", "epochs", "limit")},
            "loss": experiments.LOSS,
            "n_train": len(x_train),
            "n_valid": len(x_valid),
            "n_test": len(x_test),
            "params": model.count_params(),
            "dtype": model.dtype,
        },
        "machine": machine_info(model.ops if model.ops is not None else backend),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "xpnet " + shlex.join(args.argv),
    }

    course = experiments.course_reference() if cfg["model"] == "A" and cfg["dataset"] == "fashion_mnist" else None
    print()
    print(epoch_table(record, record["seconds"], course))
    if course and not _course_settings(cfg):
        print("(the course's numbers are for SGD lr 0.01, batch 32 on all 55,000 images; this run differs)")
    print(f"\ntest: loss {record['test_loss']:.4f}, accuracy {record['test_accuracy']:.4f}")
    if cfg["model"] == "LENET" and cfg["dataset"] == "fashion_mnist":
        lo, hi = experiments.LENET_PEER_TEST_ACCURACY
        print(f"(PyTorch and Keras reach {lo:.3f}–{hi:.3f} with SGD 0.01, batch 32, 10 epochs on all 55,000 images)")
    secs = sorted(s for s in record["seconds"] if s is not None)
    if secs:
        print(f"time: {wall:.1f} s training, median {secs[len(secs) // 2]:.2f} s/epoch on {backend}")

    notes: list[str] = []

    def write(folder: Path) -> None:
        model.save_weights(folder / "weights.npz")
        _write_history(folder, record)
        if args.no_plots:
            return
        if not plots.have_matplotlib():
            notes.append(f"plots skipped: matplotlib is not installed ({plots.INSTALL_HINT})")
        else:
            _write_plots(folder, record, images, y_test, y_pred)
            if cfg["model"] == "LENET":
                plots.conv_filters(model, x_test[0], folder / "filters.png")

    args.on_interrupt = f"interrupted while writing the results; {out} is as it was before"
    try:
        write_results(out, write)
    except OSError as e:
        kept = f"; the checkpoints in {ckpt_dir} are kept: free space, then {resume_command(args, out)}"
        raise CLIError(
            f"could not write the results to {out}: {e.strerror or e}; nothing of them was written"
            + (kept if checkpointing else "")
        ) from e
    for note in notes:
        print(note)
    written = ["history.csv", "history.json", "weights.npz"]
    written += (
        [] if args.no_plots or notes else [p.name for p in (out / n for n in (*PNGS, "filters.png")) if p.exists()]
    )
    print(f"\nwrote to {out}/: " + ", ".join(written))
    return 0


def _check_diverged(losses: Sequence[float], epochs: Sequence[int], ckpt_dir: Path | None) -> None:
    """A run whose loss became NaN or inf fails (exit 1) in one line; its weights are not written as results."""
    bad = [(e, v) for e, v in zip(epochs, losses, strict=False) if not math.isfinite(v)]
    if not bad:
        return
    epoch, value = bad[0]
    kept = checkpoint.list_checkpoints(ckpt_dir) if ckpt_dir is not None else []
    where = f"; the last finite checkpoint is {kept[-1]}" if kept else "; no results written"
    raise CLIError(f"training diverged at epoch {epoch + 1} (the loss became {value}): lower --learning-rate{where}")


def _course_settings(cfg: dict[str, Any]) -> bool:
    d = experiments.DEFAULTS["A"]
    return (cfg["optimizer"], cfg["learning_rate"], cfg["batch_size"], cfg["limit"]) == (
        d.optimizer,
        d.learning_rate,
        d.batch_size,
        None,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="xpnet", description="xpnet: Keras-style MLPs on NumPy or CuPy.")
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,info}")

    t = sub.add_parser(
        "train",
        help="train the course's model A, B or lenet on Fashion-MNIST (or MNIST)",
        description="Train model A (300-100-10, SGD), B (128-Dropout-10, Adam) or lenet (LeNet-5 CNN, SGD) on "
        "Fashion-MNIST (or MNIST with --dataset mnist), "
        "evaluate on the test set and write history.csv/json, weights.npz and plots.",
    )
    t.add_argument("--model", choices=experiments.MODELS, default="A", type=str.upper, help="A (default), B or lenet")
    t.add_argument("--epochs", type=positive_int, help="default: A 30, B 15, lenet 10 (1 with --quick)")
    t.add_argument("--batch-size", type=positive_int, help="default: A 32, B 1000, lenet 32 (per rank under mpiexec)")
    t.add_argument("--optimizer", choices=["sgd", "adam", "rmsprop"], type=str.lower, help="default: A sgd, B adam")
    t.add_argument("--learning-rate", "--lr", type=positive_float, help="default: A 0.01, B 0.001")
    t.add_argument("--backend", default="auto", help="auto (default), numpy, cupy or cupy:N")
    t.add_argument("--seed", type=whole_number, default=42, help="weights, shuffling and dropout (default 42)")
    t.add_argument(
        "--threads",
        type=positive_int,
        help="BLAS threads, at most the usable CPUs (default: xpnet chooses from cores, MPI ranks, load and layer "
        f"sizes, unless {', '.join(threads.USER_VARS)} is set); the same count repeats a run exactly on the same "
        "machine: results also depend on the CPU model and the NumPy/BLAS build",
    )
    t.add_argument("--out", help="output folder (default runs/<model>-<timestamp>)")
    t.add_argument(
        "--dataset",
        choices=list(DATASETS),
        default="fashion_mnist",
        type=_dataset_name,
        help="fashion_mnist (default, the course's) or mnist (handwritten digits, when you have the files)",
    )
    t.add_argument("--data-dir", help="folder holding the dataset's four IDX files (default: search, then download)")
    t.add_argument("--limit", type=positive_int, help="train on the first N of the 55,000 training images")
    t.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK_LIMIT} images, {QUICK_EPOCHS} epoch")
    t.add_argument("--no-plots", action="store_true", help="do not draw curves.png, samples.png, confusion.png")
    t.add_argument(
        "--checkpoint-every", type=positive_int, metavar="STEPS", help="write <out>/checkpoints every STEPS steps"
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest good checkpoint (a finished run is left as it is)",
    )
    t.add_argument(
        "--verbose",
        nargs="?",
        const="1",
        default="auto",
        choices=["auto", "0", "1", "2"],
        help="progress: 0 silent, 1 bars (one line per epoch when the output is not a terminal), "
        "2 one line per epoch (1 and 2 also print the model summary); default auto (bars on a terminal, else lines)",
    )
    t.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of a failure")
    t.set_defaults(func=cmd_train)

    i = sub.add_parser("info", help="version, backends, NumPy and BLAS")
    i.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `xpnet` command; returns the exit status.

    A failure prints one line on stderr (the traceback only with --debug) and returns non-zero:
    2 for a wrong command line, 1 for anything else, 130 on Ctrl-C.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    args.on_interrupt = "interrupted"
    args.run_lock = None
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            return int(args.func(args))
        except KeyboardInterrupt:
            if args.debug:
                traceback.print_exc()
            if is_root():
                print(f"\n{args.on_interrupt}" if sys.stdout.isatty() else args.on_interrupt, file=sys.stderr)
            return 130
        except CLIError as e:
            if args.debug:
                traceback.print_exc()
            print(f"error: {e}", file=sys.stderr)
            return e.code
        except FileFormatError as e:  # already one line that names the file and what is wrong with it
            if args.debug:
                raise
            print(e, file=sys.stderr)
            return 1
        except Exception as e:  # anything unforeseen: still one line, the traceback on request
            if args.debug:
                raise
            print(f"error: {type(e).__name__}: {e} (run again with --debug for the traceback)", file=sys.stderr)
            return 1
        finally:
            if args.run_lock is not None:
                args.run_lock.release()


if __name__ == "__main__":
    sys.exit(main())
