"""Seeded fuzzing of damaged archives: every case ends in a correct load or the one FileFormatError line.

Six good files (a Keras-layout .keras, a legacy full-model .h5, an .npz model, .npz and
.weights.h5 weights, a checkpoint) are damaged in seeded ways: byte flips, truncations, swapped or replaced zip
members, hostile JSON headers and HDF5 datasets replaced by links, external storage, strings,
groups or unwritten giants. Loading into the model the file was made from may also end in the
model-mismatch ValueErrors that load_weights documents (a shape changed by a flip: "different
architecture"; values flipped into NaN/inf: "finite"), which say what is wrong in one line too.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import checkpoint
from xpnet.file_checks import FileFormatError
from xpnet.layers import Dense, Dropout
from xpnet.models import Sequential, load_model

# 60 cases per file keep the test at a few seconds; XPNET_FUZZ_CASES / XPNET_FUZZ_SEED run deeper or other cases
CASES_PER_FILE = int(os.environ.get("XPNET_FUZZ_CASES", 60))
SEED = int(os.environ.get("XPNET_FUZZ_SEED", 100))
MISMATCH = re.compile(r"different architecture|finite|must have shape")
HOSTILE: list[Any] = ["x", -1, 10**30, 1.5, None, [], {}, [[[[]]]], {"class_name": "Dense"}, True, "nan"]


def _model() -> Sequential:
    return Sequential([xpnet.Input((5,)), Dense(4, activation="relu"), Dropout(0.1), Dense(3)], seed=1)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 5)).astype("float32"), rng.integers(0, 3, size=24)
    model = _model()
    model.compile("adam", xpnet.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[checkpoint.Checkpoint(folder / "ckpt")])
    files = {"npz_model": folder / "m.npz", "npz_weights": folder / "w.npz"}
    model.save(files["npz_model"])
    model.save_weights(files["npz_weights"])
    files["checkpoint"] = checkpoint.list_checkpoints(folder / "ckpt")[-1]
    if _has_h5py():
        files["keras"] = folder / "m.keras"
        files["h5_weights"] = folder / "w.weights.h5"
        files["h5_model"] = folder / "m.h5"
        model.save(files["keras"])
        model.save(files["h5_model"])
        model.save_weights(files["h5_weights"])
    return files


def _has_h5py() -> bool:
    try:
        import h5py  # noqa: F401
    except ImportError:
        return False
    return True


def _load(kind: str, path: Path) -> None:
    if kind in ("npz_model", "keras", "h5_model"):
        load_model(path)
    elif kind == "checkpoint":
        checkpoint.load(path)
    else:
        _model().load_weights(path)


def _flip(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(len(out)))
        out[i] ^= int(rng.integers(1, 256))
    return bytes(out)


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(len(data)))]


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rezip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, value in members.items():
            z.writestr(name, value)
    return buf.getvalue()


def _swap(data: bytes, rng: np.random.Generator) -> bytes:
    """Two members' contents exchanged, or one member replaced by another's or dropped."""
    members = _members(data)
    names = sorted(members)
    a, b = (names[int(i)] for i in rng.choice(len(names), size=2, replace=len(names) < 2))
    what = int(rng.integers(3))
    if what == 0:
        members[a], members[b] = members[b], members[a]
    elif what == 1:
        members[a] = members[b]
    else:
        del members[a]
    return _rezip(members)


def _mutate_json(doc: Any, rng: np.random.Generator) -> Any:
    """One key of a nested JSON document deleted or set to a hostile value."""
    node, path = doc, []
    while isinstance(node, dict | list) and node and rng.random() < 0.7:
        key = sorted(node)[int(rng.integers(len(node)))] if isinstance(node, dict) else int(rng.integers(len(node)))
        path.append(key)
        node = node[key]
    if not path:
        return HOSTILE[int(rng.integers(len(HOSTILE)))]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[path[-1]]
    else:
        parent[path[-1]] = HOSTILE[int(rng.integers(len(HOSTILE)))]
    return doc


def _npy_json(doc: Any) -> bytes:
    raw = json.dumps(doc).encode()
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.frombuffer(raw, np.uint8))
    return buf.getvalue()


def _hostile_header(data: bytes, rng: np.random.Generator) -> bytes:
    members = _members(data)
    for name in ("header.npy", "config.json", "xpnet/header.json"):
        if name in members and (name == "header.npy" or rng.random() < 0.5):
            if name == "header.npy":
                doc = json.loads(np.load(io.BytesIO(members[name])).tobytes())
                members[name] = _npy_json(_mutate_json(doc, rng))
            else:
                members[name] = json.dumps(_mutate_json(json.loads(members[name]), rng)).encode()
            break
    return _rezip(members)


def _hostile_h5(path: Path, rng: np.random.Generator) -> None:
    """One weight dataset of an HDF5 file (or of a .keras's weights) replaced by something hostile."""
    import h5py

    def damage(f: Any) -> None:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        name = names[int(rng.integers(len(names)))]
        shape = f[name].shape
        del f[name]
        what = int(rng.integers(6))
        if what == 0:
            f.create_dataset(name, shape=shape, dtype="f4", external=[(str(path), 0, 4 * int(np.prod(shape)))])
        elif what == 1:
            f[name] = h5py.SoftLink("/vars")
        elif what == 2:
            f[name] = h5py.ExternalLink(str(path), "/layers")
        elif what == 3:
            f[name] = np.array([b"text"] * max(1, int(np.prod(shape))))
        elif what == 4:
            f.create_group(name)
        else:
            f.create_dataset(name, shape=(40000, 40000), dtype="f8")

    if path.suffix == ".keras":
        members = _members(path.read_bytes())
        buf = io.BytesIO(members["model.weights.h5"])
        with h5py.File(buf, "a") as f:
            damage(f)
        members["model.weights.h5"] = buf.getvalue()
        path.write_bytes(_rezip(members))
    else:
        with h5py.File(path, "a") as f:
            damage(f)


MUTATIONS: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "flip": _flip,
    "truncate": _truncate,
    "swap": _swap,
    "header": _hostile_header,
}


@pytest.mark.parametrize("kind", ["npz_model", "keras", "npz_weights", "h5_weights", "checkpoint", "h5_model"])
def test_damaged_files_end_in_a_load_or_the_one_error(good: dict[str, Path], kind: str, tmp_path: Path) -> None:
    if kind not in good:
        pytest.skip("needs h5py")
    rng = np.random.default_rng(list(good).index(kind) + SEED)
    original = good[kind].read_bytes()
    is_zip = original[:4] == b"PK\x03\x04"
    ops = [m for m in MUTATIONS if is_zip or m in ("flip", "truncate")]
    if kind in ("keras", "h5_weights", "h5_model"):
        ops.append("h5")
    outcomes: dict[str, int] = {}
    for case in range(CASES_PER_FILE):
        op = ops[case % len(ops)]
        path = tmp_path / f"{case:03d}-{good[kind].name}"
        if op == "h5":
            path.write_bytes(original)
            _hostile_h5(path, rng)
        else:
            path.write_bytes(MUTATIONS[op](original, rng))
        try:
            _load(kind, path)
            outcome = "loaded"
        except FileFormatError as e:
            assert str(e).startswith(f"xpnet: {path} is not a valid "), (op, str(e))
            assert "\n" not in str(e), (op, str(e))
            outcome = "refused"
        except ValueError as e:
            if kind not in ("npz_weights", "h5_weights") or not MISMATCH.search(str(e)):
                raise AssertionError(f"case {case} ({op}) raised {type(e).__name__}: {e}") from e
            outcome = "mismatch"
        except Exception as e:
            raise AssertionError(f"case {case} ({op}) raised {type(e).__name__}: {e}") from e
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("refused", 0) >= CASES_PER_FILE // 2, outcomes  # the damage is mostly detected
