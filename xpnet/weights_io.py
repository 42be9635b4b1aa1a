"""Weight files: an uncompressed .npz (no pickle) plus a JSON header describing the architecture.

Writes are atomic (temp file in the same folder, fsync, rename), so a crash never leaves a
half-written file in place of a good one. Reads check everything before touching the model.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "xpnet-weights"
VERSION = 1


def atomic_write_bytes(path: str | os.PathLike[str], writer: Any) -> Path:
    """Call writer(fileobj) on a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save(path: str | os.PathLike[str], layout: list[dict[str, Any]], arrays: list[np.ndarray]) -> Path:
    header = {"format": FORMAT, "version": VERSION, "layers": layout}
    entries = {f"w{i:04d}": a for i, a in enumerate(arrays)}
    entries["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return atomic_write_bytes(path, lambda f: np.savez(f, **entries))  # type: ignore[arg-type]


def load(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as z:
            if "header" not in z.files:
                raise ValueError("no 'header' entry")
            header = json.loads(bytes(z["header"]).decode())
            n = len(z.files) - 1
            arrays = [z[f"w{i:04d}"] for i in range(n)]
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable xpnet weights file ({type(e).__name__}: {e})") from e
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not an xpnet weights file (format {header.get('format')!r})")
    if header.get("version", 0) > VERSION:
        raise ValueError(f"{path} was written by a newer xpnet (format version {header['version']})")
    return header["layers"], arrays
