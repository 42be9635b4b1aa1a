"""Bounded, checked reads of untrusted files, and the one error every damaged or crafted file raises.

A model or weights file may come from anyone. Nothing here allocates more than the file's own
size can justify: a zip member's declared size is checked against the archive's size (stored
members) or against a deflate ratio cap (compressed ones) before it is opened, an `.npy`
member's shape is read from its header and checked against the member's size before its data
is read, and an HDF5 dataset must keep its data inside the file (no external storage, virtual
datasets or links) in an amount its stored bytes justify. Every problem becomes one
`FileFormatError` line: "xpnet: <file> is not a valid <kind> file: <what is wrong>".
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import re
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# Trained float weights compress by well under 2x; only long runs of equal bytes (a zip bomb,
# or all-zero arrays nobody needs compressed) go beyond 64x. The slack admits small arrays
# (biases, zero-initialized slots) whose ratio means nothing.
MAX_DEFLATE_RATIO = 64
DEFLATE_SLACK = 1 << 20
# JSON headers nest a few levels per layer; far deeper nesting is only there to crash the parser.
MAX_JSON_DEPTH = 200
# Parsed JSON takes 30-70 bytes per value from as little as 2 bytes of text ("0,"), which a deflated
# member multiplies again: a header of a few KB of ":0," would become gigabytes of Python objects.
# A model config or a checkpoint's history holds thousands of values; this caps the parse near 100 MB.
MAX_JSON_VALUES = 2_000_000
_NUMERIC_KINDS = "biuf"
# what zipfile and numpy's header parser raise on damaged input (an unknown zip version is
# NotImplementedError, an encrypted member RuntimeError, a bad .npy header ValueError/SyntaxError)
READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    SyntaxError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
)


class FileFormatError(ValueError):
    """A damaged or crafted file: "xpnet: <file> is not a valid <kind> file: <what is wrong>".

    path, kind and problem are kept as attributes; it is a ValueError, so code that caught
    ValueError for a bad file still does.
    """

    def __init__(self, path: str | os.PathLike[str], kind: str, problem: str) -> None:
        self.path, self.kind, self.problem = str(path), kind, problem
        super().__init__(f"xpnet: {path} is not a valid {kind} file: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with its three arguments (MPI, multiprocessing)
        return (type(self), (self.path, self.kind, self.problem))


_expected_params: contextvars.ContextVar[tuple[str, str, int] | None] = contextvars.ContextVar(
    "xpnet_expected_params", default=None
)


@contextlib.contextmanager
def parameter_budget(path: str | os.PathLike[str], kind: str, limit: int) -> Iterator[None]:
    """While loading `path`, a model whose architecture needs more than `limit` parameters is refused
    before its weights are drawn (`check_parameter_count`, called by `Model.build`)."""
    token = _expected_params.set((str(path), kind, int(limit)))
    try:
        yield
    finally:
        _expected_params.reset(token)


def check_parameter_count(count: int) -> None:
    """Raise FileFormatError if a model file being loaded declares more parameters than it stores."""
    budget = _expected_params.get()
    if budget is not None and count > budget[2]:
        path, kind, limit = budget
        raise FileFormatError(
            path, kind, f"its architecture needs {count:,} parameters but the file stores only {limit:,}"
        )


def loads_json(data: bytes, path: str | os.PathLike[str], kind: str, what: str) -> Any:
    """JSON from `data`, or FileFormatError (bad bytes, bad JSON, nesting deeper than MAX_JSON_DEPTH)."""
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise FileFormatError(path, kind, f"its {what} is not UTF-8 text") from e
    # brackets and commas inside strings do not count; possessive, so that a long string costs no
    # backtracking state (the plain `(?:[^"\\]|\\.)*` took 1.2 GB for a 10 MB string)
    bare = re.sub(r'"(?:[^"\\]++|\\.)*+"', "", text)
    values = bare.count(",") + bare.count("[") + bare.count("{")
    if values > MAX_JSON_VALUES:
        raise FileFormatError(path, kind, f"its {what} holds {values:,} values (at most {MAX_JSON_VALUES:,})")
    depth = deepest = 0
    for ch in bare:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    if deepest > MAX_JSON_DEPTH:
        raise FileFormatError(path, kind, f"its {what} nests {deepest} levels deep (at most {MAX_JSON_DEPTH})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise FileFormatError(path, kind, f"its {what} is not valid JSON ({e})") from e


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize  # Python ints: no overflow for a crafted shape


def check_numeric_dtype(dtype: Any, path: str | os.PathLike[str], kind: str, name: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject or dtype.fields is not None or dtype.subdtype:
        raise FileFormatError(path, kind, f"array {name!r} has dtype {dtype}, not plain numbers")
    return dtype


def check_zip_members(z: zipfile.ZipFile, archive_size: int, path: str | os.PathLike[str], kind: str) -> None:
    """Refuse a member whose declared size the archive cannot hold (stored) or justify (deflated)."""
    seen = set()
    for info in z.infolist():
        if info.filename in seen:
            raise FileFormatError(path, kind, f"member {info.filename!r} appears twice")
        seen.add(info.filename)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FileFormatError(path, kind, f"member {info.filename!r} uses compression method {info.compress_type}")
        if info.compress_size > archive_size:
            raise FileFormatError(
                path,
                kind,
                f"member {info.filename!r} claims {info.compress_size:,} bytes of a {archive_size:,}-byte file",
            )
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise FileFormatError(path, kind, f"stored member {info.filename!r} declares two different sizes")
        cap = info.compress_size * MAX_DEFLATE_RATIO + DEFLATE_SLACK
        if info.file_size > cap:
            raise FileFormatError(
                path,
                kind,
                f"member {info.filename!r} would inflate {info.compress_size:,} bytes to {info.file_size:,} "
                f"(more than {MAX_DEFLATE_RATIO}x: a zip bomb?)",
            )


def read_member(z: zipfile.ZipFile, name: str, path: str | os.PathLike[str], kind: str) -> bytes:
    """The bytes of one (already size-checked) zip member; damage becomes FileFormatError."""
    try:
        with z.open(name) as m:
            return m.read()
    except KeyError as e:
        raise FileFormatError(path, kind, f"it has no {name}") from e
    except READ_ERRORS as e:
        raise FileFormatError(path, kind, f"member {name!r} is damaged ({e})") from e


def _read_npy(m: Any, info: zipfile.ZipInfo, path: str | os.PathLike[str], kind: str) -> np.ndarray:
    """One .npy member: header first, its shape checked against the member's size, then exactly that data."""
    fmt = np.lib.format
    version = fmt.read_magic(m)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(m)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(m)
    else:
        raise FileFormatError(path, kind, f"member {info.filename!r} is .npy version {version}")
    name = info.filename
    dtype = check_numeric_dtype(dtype, path, kind, name)
    if any(d < 0 for d in shape):
        raise FileFormatError(path, kind, f"array {name!r} declares shape {shape}")
    n = _nbytes(shape, dtype)
    if m.tell() + n != info.file_size:
        raise FileFormatError(
            path,
            kind,
            f"array {name!r} declares shape {shape} {dtype} ({n:,} bytes) but its member holds "
            f"{info.file_size - m.tell():,} bytes",
        )
    buf = np.empty(n, np.uint8)
    view, got = memoryview(buf.data), 0
    while got < n:
        k = m.readinto(view[got:])
        if not k:
            raise FileFormatError(path, kind, f"array {name!r} is truncated")
        got += k
    m.read(1)  # reaching the end makes zipfile compare the CRC
    return buf.view(dtype).reshape(shape, order="F" if fortran else "C")


def read_npz_member(z: zipfile.ZipFile, name: str, path: str | os.PathLike[str], kind: str) -> np.ndarray:
    """One .npy member of a (size-checked) zip, header checked before data."""
    try:
        info = z.getinfo(name)
        with z.open(info) as m:
            return _read_npy(m, info, path, kind)
    except FileFormatError:
        raise
    except READ_ERRORS as e:
        raise FileFormatError(path, kind, f"member {name!r} is damaged ({e})") from e


def read_npz(path: str | os.PathLike[str], kind: str) -> dict[str, np.ndarray]:
    """Every array of an .npz (names without ".npy"), read within the bounds above; never pickle.

    Raises FileNotFoundError / IsADirectoryError for a missing path, FileFormatError for
    anything wrong inside. Peak memory: the arrays themselves (at most the file's size for
    stored members, MAX_DEFLATE_RATIO times it for deflated ones).
    """
    path = Path(path)
    size = path.stat().st_size
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as z:
            check_zip_members(z, size, path, kind)
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    raise FileFormatError(path, kind, f"member {info.filename!r} is not an .npy array")
                with z.open(info) as m:
                    arrays[info.filename[:-4]] = _read_npy(m, info, path, kind)
    except FileFormatError:
        raise
    except READ_ERRORS as e:
        raise FileFormatError(path, kind, f"a damaged or truncated archive ({e})") from e
    return arrays


def json_member(arrays: dict[str, np.ndarray], key: str, path: str | os.PathLike[str], kind: str) -> Any:
    """A JSON document stored as a uint8 array (how xpnet's .npz files keep their header)."""
    a = arrays.get(key)
    if a is None:
        raise FileFormatError(path, kind, f"it has no {key}")
    if a.dtype != np.uint8 or a.ndim != 1:
        raise FileFormatError(path, kind, f"its {key} is a {a.dtype} array of shape {a.shape}, not JSON bytes")
    return loads_json(a.tobytes(), path, kind, key)


def h5_dataset(group: Any, name: str, path: str | os.PathLike[str], kind: str, budget: list[int]) -> np.ndarray:
    """The array of dataset `group[name]`, read only if its data lies plainly inside the file.

    Refuses soft and external links, external storage, virtual datasets, layouts other than
    contiguous, chunked or compact, non-numeric dtypes, and more data than the bytes the file
    stores for it can justify (an unwritten dataset is all fill value; a filtered one may
    inflate). budget: [bytes left], the most this file may still make us allocate.
    """
    import h5py

    where = f"{group.name.rstrip('/')}/{name}"
    _plain_link(group, name, path, kind)
    ds = group[name]
    if not isinstance(ds, h5py.Dataset):
        raise FileFormatError(path, kind, f"{where} is a group, not a dataset")
    if ds.is_virtual:
        raise FileFormatError(path, kind, f"{where} is a virtual dataset (its data would come from other files)")
    if ds.external:
        raise FileFormatError(path, kind, f"{where} keeps its data in external files {ds.external}")
    layout = ds.id.get_create_plist().get_layout()
    if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED, h5py.h5d.COMPACT):
        raise FileFormatError(path, kind, f"{where} has storage layout {layout}, not data inside the file")
    dtype = check_numeric_dtype(ds.dtype, path, kind, where)
    shape = tuple(int(d) for d in ds.shape) if ds.shape is not None else ()
    n = _nbytes(shape, dtype)
    stored = int(ds.id.get_storage_size())
    if n > stored * MAX_DEFLATE_RATIO + DEFLATE_SLACK or n > budget[0]:
        raise FileFormatError(
            path, kind, f"{where} declares shape {shape} {dtype} ({n:,} bytes) from {stored:,} stored bytes"
        )
    if layout == h5py.h5d.CHUNKED and n:
        _check_chunks(ds, dtype, where, path, kind)
    budget[0] -= n
    out = np.empty(shape, dtype)
    if n:
        ds.read_direct(out)
    return out


def _check_chunks(ds: Any, dtype: np.dtype, where: str, path: str | os.PathLike[str], kind: str) -> None:
    """Refuse chunks that would not decode to exactly one chunk's bytes.

    HDF5 copies a whole chunk out of whatever the stored bytes (or its filters' output) hold: a
    chunk stored or inflating short crashes the process (a segmentation fault) instead of raising.
    So each chunk is decoded here first, as far as its size goes: deflate (bounded), shuffle and
    fletcher32, the filters h5py and Keras write; a file with other filters is refused.
    """
    import h5py

    full = math.prod(ds.chunks) * dtype.itemsize
    plist = ds.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    known = (h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32)
    unknown = [f for f in filters if f not in known]
    if unknown:
        raise FileFormatError(path, kind, f"{where} uses HDF5 filters {unknown} (xpnet reads deflate and shuffle)")

    def check(info: Any) -> None:
        size = info.size
        if any(f != h5py.h5z.FILTER_SHUFFLE for f in filters):  # the size changes: decode to see it
            data = ds.id.read_direct_chunk(info.chunk_offset)[1]
            for i in reversed(range(len(filters))):
                if info.filter_mask & (1 << i):
                    continue  # skipped for this chunk when it was written
                if filters[i] == h5py.h5z.FILTER_FLETCHER32:
                    data = data[:-4]
                elif filters[i] == h5py.h5z.FILTER_DEFLATE:
                    try:
                        data = zlib.decompressobj().decompress(data, full + 1)
                    except zlib.error as e:
                        raise FileFormatError(
                            path, kind, f"{where} has a damaged chunk at {info.chunk_offset} ({e})"
                        ) from e
            size = len(data)
        if size != full:
            raise FileFormatError(
                path, kind, f"{where} stores a chunk at {info.chunk_offset} of {size:,} bytes, not {full:,}"
            )

    if hasattr(ds.id, "chunk_iter"):  # h5py >= 3.8: one pass over the chunk index
        ds.id.chunk_iter(check)
    else:
        for i in range(ds.id.get_num_chunks()):
            check(ds.id.get_chunk_info(i))


def _plain_link(group: Any, name: str, path: str | os.PathLike[str], kind: str) -> None:
    import h5py

    link = group.get(name, getlink=True)
    if link is None:
        raise FileFormatError(path, kind, f"{group.name.rstrip('/')}/{name} is missing")
    if not isinstance(link, h5py.HardLink):
        what = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
        raise FileFormatError(path, kind, f"{group.name.rstrip('/')}/{name} is {what}; xpnet reads only plain data")


def h5_group(group: Any, name: str, path: str | os.PathLike[str], kind: str) -> Any:
    """group[name] when it is a plain (hard-linked) group; None when absent."""
    import h5py

    if group.get(name, getlink=True) is None:  # the link itself, not what it points to
        return None
    _plain_link(group, name, path, kind)
    g = group[name]
    if not isinstance(g, h5py.Group):
        raise FileFormatError(path, kind, f"{g.name} is a dataset, not a group")
    return g


# Temp files of an interrupted write: ".<target>.<pid>-<random>.tmp" (or main's ".<target>.<random>.tmp"),
# <random> being mkstemp's 8 characters: a user's own ".<target>.old.tmp" is not ours to delete
_TEMP = re.compile(r"^\.(?P<target>.+)\.(?:(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp$")
STALE_AFTER_S = 60.0  # a live writer touches its temp file far more often than this
ORPHAN_AFTER_S = 24 * 3600.0  # names without a pid (older xpnet) or from another machine's process


def temp_prefix(target: Path) -> str:
    """The prefix of this process's temp file for `target` (the pid lets others tell it is live)."""
    return f".{target.name}.{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0  # someone else's process (or an impossible pid, then not alive)
    return True


def remove_stale_temps(
    folder: str | os.PathLike[str], target: str | None = None, now: float | None = None
) -> list[Path]:
    """Delete temp files that interrupted writes left in `folder` (only `target`'s when given).

    A temp file is stale when it has not changed for STALE_AFTER_S and the process named in it
    is gone, or when it has not changed for ORPHAN_AFTER_S (no pid, or another machine's). A live
    writer's file is never touched. Returns what was removed; errors (a read-only folder, a race
    with another cleaner) leave files in place.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or (target is not None and m["target"] != target):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if not entry.is_file(follow_symlinks=False) or age < STALE_AFTER_S:
                continue
            pid = m["pid"]
            if age < ORPHAN_AFTER_S and (pid is None or _pid_alive(int(pid))):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed
