"""Weight files: an uncompressed .npz (no pickle) plus a JSON header describing the architecture.

Writes are atomic (temp file in the same folder, fsync, rename), so a crash never leaves a
half-written file in place of a good one. Reads check everything before touching the model.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .file_checks import FileFormatError, json_member, read_npz, remove_stale_temps, temp_prefix

FORMAT = "xpnet-weights"
VERSION = 1


def atomic_write_bytes(path: str | os.PathLike[str], writer: Any) -> Path:
    """Call writer(fileobj) on a temp file beside `path`, then rename it over `path`."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            writer(f)

    return atomic_write_path(path, write)


def atomic_write_path(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call write(temp path) for a temp file beside `path`, fsync it, then rename it over `path`.

    For writers that open the file themselves (h5py); a failure leaves `path` as it was.
    """
    if not str(path) or Path(path).name in ("", ".", ".."):
        raise ValueError(f"cannot write to {str(path)!r}: give a file name, e.g. 'model.weights.npz'")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    remove_stale_temps(folder, path.name)  # what killed writes of this file left behind
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=folder)
    except OSError as e:  # name the file the user asked for, not the hidden temp file beside it
        raise type(e)(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename == tmp:  # the user named `path`, not the temp file
            raise type(e)(e.errno, e.strerror, str(path)) from None
        raise
    return path


_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_OTHER_FORMATS = {
    ".h5": "HDF5",
    ".hdf5": "HDF5",
    ".keras": "Keras",
    ".pt": "PyTorch",
    ".pth": "PyTorch",
    ".pkl": "pickle",
}


def read_xpnet_npz(path: str | os.PathLike[str], kind: str) -> dict[str, np.ndarray]:
    """The arrays of an xpnet .npz (never pickle), read within `file_checks`' bounds.

    kind: "xpnet weights", "xpnet model" or "xpnet checkpoint", for the messages. Raises
    FileNotFoundError, IsADirectoryError, or FileFormatError "xpnet: <path> is not a valid <kind> file: ...".
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an {kind} file")
    if not path.exists():
        raise FileNotFoundError(f"{kind} file not found: {path}")
    with path.open("rb") as f:
        start = f.read(8)
    if start == _HDF5_MAGIC:
        raise FileFormatError(
            path,
            kind,
            "it is an HDF5 file; Keras 3 weights load when the name ends in "
            f".weights.h5 (e.g. {path.name.split('.')[0]}.weights.h5); Keras 2 .h5 files are not supported",
        )
    if start[:4] != _ZIP_MAGIC:  # NumPy would call anything else pickled data and suggest allow_pickle
        raise FileFormatError(path, kind, "an empty file" if not start else "not an .npz archive")
    return read_npz(path, kind)


def save(path: str | os.PathLike[str], layout: list[dict[str, Any]], arrays: list[np.ndarray]) -> Path:
    suffix = Path(path).suffix.lower()
    if suffix in _OTHER_FORMATS:
        keras_h5 = " (or .weights.h5 for Keras 3's HDF5 layout)" if _OTHER_FORMATS[suffix] == "HDF5" else ""
        raise ValueError(
            f"xpnet writes weights as .npz, not {_OTHER_FORMATS[suffix]}: {str(path)!r} would hold a zip "
            f"under a {suffix} name; use a name ending in .npz{keras_h5}, e.g. {Path(path).stem}.npz"
        )
    header = {"format": FORMAT, "version": VERSION, "layers": layout}
    entries = {f"w{i:04d}": a for i, a in enumerate(arrays)}
    entries["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return atomic_write_bytes(path, lambda f: np.savez(f, **entries))  # type: ignore[arg-type]


def load(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """The layout and arrays of a file written by `save`; FileFormatError says what is wrong."""
    kind = "xpnet weights"
    arrays = read_xpnet_npz(path, kind)
    header = json_member(arrays, "header", path, kind)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise FileFormatError(path, kind, f"its header names format {fmt!r}, not {FORMAT!r}")
    version = header.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise FileFormatError(path, kind, f"format version {version!r} (this xpnet reads up to {VERSION})")
    layers = header.get("layers")
    if not isinstance(layers, list) or not all(
        isinstance(ly, dict) and isinstance(ly.get("class"), str) and isinstance(ly.get("params", {}), dict)
        for ly in layers
    ):
        raise FileFormatError(path, kind, "its header's layer list is not [{'class', 'params'}, ...]")
    names = [f"w{i:04d}" for i in range(len(arrays) - 1)]
    if sorted(names) != sorted(k for k in arrays if k != "header"):
        raise FileFormatError(path, kind, "its arrays are not w0000, w0001, ... as its header lists them")
    listed = [list(shape) for ly in layers for shape in ly.get("params", {}).values()]
    found = [list(arrays[k].shape) for k in names]
    if listed != found:
        raise FileFormatError(path, kind, f"its header lists arrays of shapes {listed} but it holds {found}")
    return layers, [arrays[k] for k in names]
