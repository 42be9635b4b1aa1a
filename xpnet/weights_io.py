"""Weight files: an uncompressed .npz (no pickle) plus a JSON header describing the architecture.

Writes are atomic (temp file in the same folder, fsync, rename), so a crash never leaves a
half-written file in place of a good one. Reads check everything before touching the model.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
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


def open_npz(path: str | os.PathLike[str], what: str) -> Any:
    """np.load of an xpnet .npz (never pickle), with errors that say what the file is not.

    what: "weights" or "checkpoint", for the messages. Raises FileNotFoundError, IsADirectoryError,
    or ValueError "<path> is not an xpnet <what> file (...)".
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an xpnet {what} file")
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    with path.open("rb") as f:
        start = f.read(8)
    if start == _HDF5_MAGIC:
        raise ValueError(
            f"{path} is an HDF5 file, not an xpnet {what} file; Keras 3 weights load when the name ends in "
            f".weights.h5 (e.g. {path.name.split('.')[0]}.weights.h5); Keras 2 .h5 files are not supported"
        )
    start = start[:4]
    if start != _ZIP_MAGIC:  # NumPy would call anything else pickled data and suggest allow_pickle
        kind = "an empty file" if not start else "not an .npz archive"
        raise ValueError(f"{path} is not an xpnet {what} file ({kind})")
    # np.load(path) leaks its file handle when the archive is damaged: open it here and close it on failure
    f = path.open("rb")
    try:
        archive = np.load(f, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        f.close()
        raise ValueError(f"{path} is not a readable xpnet {what} file (a damaged or truncated archive)") from e
    except BaseException:
        f.close()
        raise
    archive.fid = f  # closing the archive (its `with` block) closes the file too
    return archive


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
    path = Path(path)
    try:
        with open_npz(path, "weights") as z:
            if "header" not in z.files:
                raise ValueError(f"{path} is not an xpnet weights file (an .npz without an xpnet header)")
            header = json.loads(bytes(z["header"]).decode())
            n = len(z.files) - 1
            arrays = [z[f"w{i:04d}"] for i in range(n)]
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as e:
        if isinstance(e, FileNotFoundError | IsADirectoryError):
            raise
        raise ValueError(f"{path} is not a readable xpnet weights file (a damaged or truncated archive)") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise ValueError(f"{path} is not an xpnet weights file (format {fmt!r})")
    if header.get("version", 0) > VERSION:
        raise ValueError(f"{path} was written by a newer xpnet (format version {header['version']})")
    return header["layers"], arrays
