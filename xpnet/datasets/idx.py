"""Reader for the IDX format used by MNIST and Fashion-MNIST.

Layout: two zero bytes, one dtype-code byte, one ``ndim`` byte, ``ndim``
big-endian uint32 dimensions, then the data in big-endian C order.
Files may be gzip-compressed; compression is detected from the content
(magic bytes ``1f 8b``), not the file name.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "IDX_DTYPES",
    "DatasetError",
    "DatasetNotFoundError",
    "load_idx",
    "parse_idx",
    "read_idx_bytes",
]

GZIP_MAGIC = b"\x1f\x8b"

# dtype code -> big-endian numpy dtype, per the IDX specification.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DatasetError(ValueError):
    """A dataset file is unreadable, malformed or fails verification."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file or directory does not exist where it was looked for."""


def read_idx_bytes(path: str | os.PathLike[str]) -> bytes:
    """Return the (decompressed, if gzip) contents of an IDX file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: file not found") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file: {exc}") from exc
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        # BadGzipFile is an OSError; a truncated stream raises EOFError.
        raise DatasetError(f"{path}: corrupt gzip data: {exc}") from exc


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse decompressed IDX bytes; ``source`` names the file in errors.

    Returns a writable array in native byte order with the file's dtype
    (uint8, int8, int16, int32, float32 or float64) and shape.
    """
    if len(data) < 4:
        raise DatasetError(f"{source}: truncated header: {len(data)} bytes, need at least 4")
    if data[:2] != b"\x00\x00":
        raise DatasetError(
            f"{source}: not an IDX file: magic starts with bytes {data[:4].hex(' ')}, expected 00 00 <dtype> <ndim>"
        )
    code, ndim = data[2], data[3]
    dtype = IDX_DTYPES.get(code)
    if dtype is None:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DatasetError(f"{source}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{source}: truncated header: {len(data)} bytes, need {header} for {ndim} dimensions")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    count = math.prod(shape)  # Python ints: no overflow on bogus dims
    expected = count * dtype.itemsize
    got = len(data) - header
    if got < expected:
        raise DatasetError(
            f"{source}: truncated data: shape {shape} of {dtype.name} needs "
            f"{expected} bytes after the header, got {got}"
        )
    if got > expected:
        raise DatasetError(
            f"{source}: {got - expected} trailing bytes after data of "
            f"shape {shape} ({expected} bytes expected, got {got})"
        )
    # astype copies, so the result is writable and owns native-order memory.
    array = np.frombuffer(data, dtype, count, offset=header)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Load an IDX file (raw or gzip) into a native-byte-order array.

    Raises ``DatasetNotFoundError`` if the file is missing and
    ``DatasetError`` (a ``ValueError``) if it is malformed.
    """
    return parse_idx(read_idx_bytes(path), str(path))
