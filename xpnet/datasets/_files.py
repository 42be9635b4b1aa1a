"""Locate, download and verify the four IDX files of MNIST-style datasets.

Shared by :mod:`xpnet.datasets.mnist` and :mod:`xpnet.datasets.fashion_mnist`.
Search order (first directory holding all four files wins):

1. an explicit ``data_dir`` -- if given, it is the *only* place looked at;
2. ``$XPNET_DATA_DIR`` and ``$XPNET_DATA_DIR/<name>``;
3. the user cache ``${XDG_CACHE_HOME:-~/.cache}/xpnet/<name>``;
4. the Debian location ``/usr/share/datasets/<name>``;
5. a download from the mirrors into the user cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .idx import DatasetError, DatasetNotFoundError, parse_idx, read_idx_bytes

__all__ = [
    "DatasetSpec",
    "FileSpec",
    "cache_dir",
    "candidate_dirs",
    "load_dataset",
    "load_mnist_like",
    "mnist_like_spec",
]

ENV_VAR = "XPNET_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 60.0

_UINT8 = np.dtype(np.uint8)

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class FileSpec:
    """One expected file: its name (without ``.gz``) and what it must hold."""

    filename: str
    shape: tuple[int, ...]
    sha256: str | None  # of the *decompressed* bytes; None: structure only
    dtype: np.dtype = _UINT8
    max_value: int | None = None  # labels: catches wrong files w/o checksum
    # w/o checksum: (SHA-256, title) of another dataset's file of the same name and shape, refused
    foreign: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """Where to look for a dataset and how to recognise its files."""

    name: str  # directory name under the cache / data dir, e.g. "mnist"
    title: str  # for messages, e.g. "MNIST"
    files: Mapping[str, FileSpec]  # key ("x_train", ...) -> file
    mirrors: tuple[str, ...]  # base URLs ending in "/", tried in order
    debian_dir: Path
    apt_package: str | None = None


def mnist_like_spec(
    name: str,
    title: str,
    sha256: Mapping[str, str] | None,
    mirrors: tuple[str, ...],
    debian_dir: Path,
    apt_package: str | None = None,
    foreign: Mapping[str, Mapping[str, str]] | None = None,
) -> DatasetSpec:
    """Spec for the standard 60k/10k 28x28 uint8 IDX quadruple; foreign: {title: sha256} of datasets it is not."""
    layout = {
        "x_train": ("train-images-idx3-ubyte", (60000, 28, 28), None),
        "y_train": ("train-labels-idx1-ubyte", (60000,), 9),
        "x_test": ("t10k-images-idx3-ubyte", (10000, 28, 28), None),
        "y_test": ("t10k-labels-idx1-ubyte", (10000,), 9),
    }
    files = {
        key: FileSpec(
            fname,
            shape,
            sha256[fname] if sha256 else None,
            max_value=vmax,
            foreign=tuple((hashes[fname], title) for title, hashes in (foreign or {}).items()),
        )
        for key, (fname, shape, vmax) in layout.items()
    }
    return DatasetSpec(name, title, files, mirrors, debian_dir, apt_package)


def cache_dir(name: str) -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/xpnet/<name>``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "xpnet" / name


def candidate_dirs(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched for ``spec``'s files, in order (see module doc)."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    dirs: list[Path] = []
    env = os.environ.get(ENV_VAR, "")
    if env:
        base = Path(env).expanduser()
        dirs += [base, base / spec.name]
    dirs += [cache_dir(spec.name), spec.debian_dir]
    return list(dict.fromkeys(dirs))  # drop duplicates, keep order


def load_dataset(
    spec: DatasetSpec,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> dict[str, np.ndarray]:
    """Find (or download), verify and load every file of ``spec``.

    Returns ``{key: array}`` in ``spec.files`` order. Raises
    ``DatasetNotFoundError`` when the files cannot be found or fetched and
    ``DatasetError`` when a file is corrupt or fails its checksum.
    """
    searched: list[str] = []  # one "dir (why not)" line per directory
    for directory in candidate_dirs(spec, data_dir):
        found, missing = _locate(spec, directory)
        if not missing:
            return {key: _load_file(path, spec.files[key]) for key, path in found.items()}
        searched.append(f"  {directory}  ({_why_not(spec, directory, missing)})")

    if data_dir is not None:
        # An explicit location must not silently fall back to somewhere else.
        raise DatasetNotFoundError(f"{spec.title} files not found in the given directory:\n" + "\n".join(searched))
    if not download:
        raise DatasetNotFoundError(_not_found_message(spec, searched, "download=False, so no download was tried."))

    target = cache_dir(spec.name)
    found, missing = _locate(spec, target)
    # A partially filled cache keeps its good files; corrupt ones raise.
    arrays = {key: _load_file(path, spec.files[key]) for key, path in found.items()}
    for key in missing:
        try:
            arrays[key] = _download(spec, spec.files[key], target)
        except (OSError, HTTPException) as exc:
            # URLError, timeouts, refused connections, unwritable cache, ...
            reason = f"Download failed: {exc}"
            raise DatasetNotFoundError(_not_found_message(spec, searched, reason)) from exc
    return {key: arrays[key] for key in spec.files}


def load_mnist_like(
    spec: DatasetSpec,
    path: str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str] | None,
    download: bool,
) -> Split:
    """``load_data`` body shared by mnist and fashion_mnist."""
    if path is not None and data_dir is not None and Path(path) != Path(data_dir):
        raise ValueError(f"path={path!r} and data_dir={data_dir!r} disagree; give one")
    arrays = load_dataset(spec, path if path is not None else data_dir, download)
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _locate(spec: DatasetSpec, directory: Path) -> tuple[dict[str, Path], list[str]]:
    """Split ``spec.files`` keys into found (with their path) and missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, fspec in spec.files.items():
        for candidate in (fspec.filename, fspec.filename + ".gz"):
            if (directory / candidate).is_file():
                found[key] = directory / candidate
                break
        else:
            missing.append(key)
    return found, missing


def _load_file(path: Path, fspec: FileSpec) -> np.ndarray:
    hint = f"Delete or replace {path} (a fresh copy will be searched for or downloaded)."
    return _check(read_idx_bytes(path), str(path), fspec, hint)


def _check(data: bytes, source: str, fspec: FileSpec, hint: str) -> np.ndarray:
    """Parse and verify decompressed bytes: structure first (better messages)."""
    array = parse_idx(data, source)
    if array.shape != fspec.shape or array.dtype != fspec.dtype:
        raise DatasetError(
            f"{source}: expected {fspec.dtype.name} array of shape {fspec.shape}, "
            f"got {array.dtype.name} {array.shape}. {hint}"
        )
    if fspec.sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != fspec.sha256:
            raise DatasetError(
                f"{source}: SHA-256 mismatch of the decompressed data: expected {fspec.sha256}, got {actual}. {hint}"
            )
    if fspec.foreign:
        actual = hashlib.sha256(data).hexdigest()
        for digest, title in fspec.foreign:
            if actual == digest:
                raise DatasetError(
                    f"{source} is {title}'s {fspec.filename}, not this dataset's (the two use the same file names): "
                    "keep each dataset's files in a folder of its own"
                )
    if fspec.max_value is not None and array.size and array.max() > fspec.max_value:
        raise DatasetError(f"{source}: values up to {array.max()}, expected at most {fspec.max_value}. {hint}")
    return array


def _download(spec: DatasetSpec, fspec: FileSpec, target: Path) -> np.ndarray:
    """Fetch ``<filename>.gz`` into ``target``; try each mirror in turn."""
    target.mkdir(parents=True, exist_ok=True)
    name = fspec.filename + ".gz"
    errors: list[str] = []
    for base in spec.mirrors:
        url = base + name
        try:
            return _fetch(url, target / name, fspec)
        except (OSError, HTTPException) as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
    raise OSError("; ".join(errors) or "no download mirror is configured")


def _fetch(url: str, dest: Path, fspec: FileSpec) -> np.ndarray:
    # Written to a temp file in the same directory and renamed only once
    # verified, so an interrupted or bad download never looks like a good copy.
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        ):
            total = int(response.headers.get("Content-Length") or 0) or None
            # disable=None: show the bar on a terminal, stay quiet in logs.
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=None,
            ) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
        hint = f"The mirror served a bad file; it was not saved to {dest.parent}."
        array = _check(read_idx_bytes(tmp), url, fspec, hint)
        os.replace(tmp, dest)
        return array
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _why_not(spec: DatasetSpec, directory: Path, missing: list[str]) -> str:
    if not directory.exists():
        return "does not exist"
    if not directory.is_dir():
        return "not a directory"
    if len(missing) == len(spec.files):
        return "has none of the files"
    return "missing " + ", ".join(f"{spec.files[key].filename}[.gz]" for key in missing)


def _not_found_message(spec: DatasetSpec, searched: list[str], reason: str) -> str:
    names = ", ".join(f.filename for f in spec.files.values())
    howto = []
    if spec.apt_package:
        howto.append(
            f"  - install the Debian/Ubuntu package: sudo apt-get install "
            f"{spec.apt_package}  (files go to {spec.debian_dir})"
        )
    howto += [
        (f"  - put the files ({names}, optionally .gz) in a directory and set {ENV_VAR} to it, or pass data_dir="),
        (
            f"  - or allow download=True with internet access (mirror: "
            f"{spec.mirrors[0] if spec.mirrors else 'none'}; saved to "
            f"{cache_dir(spec.name)})"
        ),
    ]
    return (
        f"{spec.title} not found. Searched:\n" + "\n".join(searched) + f"\n{reason}\n"
        "To get the files:\n" + "\n".join(howto)
    )
