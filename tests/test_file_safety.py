"""Crafted and damaged files: bounded reads, refused HDF5 layouts, one error line, and stale temp files cleaned.

The memory cases run in a child process whose address space is capped (RLIMIT_AS) at what it
uses after importing xpnet plus twice the largest array the file legitimately declares plus
64 MiB of slack: the crafted files below would need 128 MiB to 1.6 GB if read or built before
their checks, so they end in MemoryError unless xpnet refuses them first.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import checkpoint
from xpnet.file_checks import FileFormatError, remove_stale_temps
from xpnet.layers import Dense
from xpnet.models import Sequential, load_model

ROOT = Path(__file__).resolve().parent.parent
SLACK = 64 << 20


def _small() -> Sequential:
    return Sequential([xpnet.Input((6,)), Dense(4, activation="relu"), Dense(3)], seed=0)


def _npy(shape: tuple[int, ...], data: bytes = b"", descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def _header(obj: object) -> bytes:
    raw = json.dumps(obj).encode()
    return _npy((len(raw),), raw, "|u1")


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def crafted_model_npz(path: Path) -> Path:
    """An xpnet model file (main's .keras layout) declaring Dense(20000) on 20000 inputs with 10 stored numbers."""
    spec = {
        "class_name": "Sequential",
        "name": "m",
        "seed": 0,
        "dtype": "float32",
        "input_shape": [20000],
        "layers": [{"class_name": "Dense", "config": {"units": 20000, "name": "d"}}],
    }
    header = {"format": "xpnet-model", "version": 1, "model": spec, "compile": None}
    header["layout"] = [{"name": "d", "class": "Dense", "params": {"kernel": [2, 4], "bias": [2]}}]
    return _zip(path, {"header.npy": _header(header), "a_params.npy": _npy((10,), bytes(40))})


def crafted_keras_zip(path: Path) -> Path:
    """A Keras-layout .keras whose config declares Dense(20000) on 20000 inputs; its weights file holds 4 numbers."""
    import h5py

    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros((2, 2), np.float32))
    layers = [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 20000]}},
        {"class_name": "Dense", "config": {"units": 20000, "name": "dense"}},
    ]
    config = {"class_name": "Sequential", "config": {"name": "m", "layers": layers}}
    return _zip(path, {"config.json": json.dumps(config).encode(), "model.weights.h5": weights.getvalue()})


def deflate_bomb(path: Path, header: bytes | None = None) -> Path:
    """A few hundred KB of deflated zeros that an .npy header declares as 128 MiB of float32."""
    with zipfile.ZipFile(path, "w", compresslevel=1) as z:
        if header is not None:
            z.writestr("header.npy", header)
        info = zipfile.ZipInfo("w0000.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w") as m:
            m.write(_npy((1 << 25,)))
            zeros = bytes(1 << 24)
            for _ in range(8):
                m.write(zeros)
    return path


def huge_npy_header(path: Path) -> Path:
    """An .npz whose weight array's header declares 10**12 float32 over 40 bytes of data."""
    header = {"format": "xpnet-weights", "version": 1, "layers": []}
    return _zip(path, {"header.npy": _header(header), "w0000.npy": _npy((10**12,), bytes(40))})


def h5_with_extra_gzip(path: Path) -> Path:
    """The small model's .weights.h5 plus a gzip dataset of 128 MiB of zeros (a few hundred KB stored)."""
    import h5py

    _small().save_weights(path)
    with h5py.File(path, "a") as f:
        zeros = np.zeros((1 << 13, 1 << 12), np.float32)
        f.create_dataset("layers/extra/vars/0", data=zeros, chunks=(1024, 1024), compression="gzip")
    return path


def h5_with_unwritten_dataset(path: Path) -> Path:
    """An extra dataset of 1.6 GB never written: h5py would hand back that much fill value."""
    import h5py

    _small().save_weights(path)
    with h5py.File(path, "a") as f:
        f.create_dataset("layers/dense/vars/2", shape=(20000, 20000), dtype="f4")
    return path


def crafted_legacy_h5(path: Path) -> Path:
    """A legacy full-model .h5 (Keras 2's layout) declaring Dense(20000) on 20000 inputs, with no weights."""
    import h5py

    layers = [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 20000]}},
        {"class_name": "Dense", "config": {"units": 20000, "name": "d"}},
    ]
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"name": "m", "layers": layers}})
        f.create_group("model_weights").attrs["layer_names"] = [b"d"]
    return path


def legacy_h5_with_extra_gzip(path: Path) -> Path:
    """The small model's legacy .h5 with a gzip dataset of 128 MiB of zeros as one layer's weight."""
    import h5py

    _small().save(path)
    with h5py.File(path, "a") as f:
        g = f["model_weights/dense"]
        g.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0", b"extra"]
        zeros = np.zeros((1 << 13, 1 << 12), np.float32)
        g.create_dataset("extra", data=zeros, chunks=(1024, 1024), compression="gzip")
    return path


def keras_gzip_in_deflate(path: Path) -> Path:
    """A ~0.5 MB .keras whose deflated model.weights.h5 (~38x) holds gzip datasets (~15x) declaring 256 MiB.

    Each layer bounds its own ratio, but the two multiply: the datasets' budget must come from the
    archive's size, not from the inflated member's.
    """
    import h5py

    raw = np.zeros(1 << 18, np.uint8)
    raw[::32] = np.random.default_rng(1).integers(1, 256, raw[::32].size)
    chunk = zlib.compress(raw.tobytes(), 1)  # identical chunks: the zip's deflate finds each one again
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        for i, w in enumerate(_small().get_weights()):
            f.create_dataset(f"layers/{'dense' if i < 2 else 'dense_1'}/vars/{i % 2}", data=w)
        for k in range(16):
            ds = f.create_dataset(
                f"layers/extra_{k}/vars/0",
                shape=(64, raw.size // 4),
                dtype="f4",
                chunks=(1, raw.size // 4),
                compression="gzip",
            )
            for i in range(64):
                ds.id.write_direct_chunk((i, 0), chunk, filter_mask=0)
        noise = np.random.default_rng(0).integers(0, 256, len(chunk) * 64 * 16 // 60, np.uint8)
        f.create_dataset("noise", data=noise)  # brings the zip's ratio under its cap
    layers = [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 6]}},
        {"class_name": "Dense", "config": {"units": 4, "name": "dense", "activation": "relu"}},
        {"class_name": "Dense", "config": {"units": 3, "name": "dense_1"}},
    ]
    config = {"class_name": "Sequential", "config": {"name": "m", "layers": layers}}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", weights.getvalue())
    return path


def h5_with_short_chunks(path: Path, how: str) -> Path:
    """The small model's .weights.h5 plus a chunked dataset whose chunks hold fewer bytes than a chunk:
    HDF5 copies a whole chunk out of them, reading past its buffer (garbage weights, or a segmentation
    fault that kills the process, as 18 KB chunks of 256 KB ones did)."""
    import h5py

    _small().save_weights(path)
    with h5py.File(path, "a") as f:
        gzip = "gzip" if how != "unfiltered" else None
        ds = f.create_dataset("layers/extra/vars/0", shape=(4, 65536), dtype="f4", chunks=(1, 65536), compression=gzip)
        for i in range(4):
            if how == "unfiltered":
                ds.id.write_direct_chunk((i, 0), bytes(1000))
            elif how == "inflates_short":
                ds.id.write_direct_chunk((i, 0), zlib.compress(bytes(1000)))
            else:  # "filter_skipped": the chunk says its deflate was not applied
                ds.id.write_direct_chunk((i, 0), bytes(1000), filter_mask=1)
    return path


def keras_config_of_empty_dicts(path: Path) -> Path:
    """A ~0.35 MB .keras whose deflated config.json (12 MB, under the 64x cap) lists 4 million {}: parsed,
    256 MB of Python dicts."""
    import base64

    import h5py

    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros((2, 2), np.float32))
    pad = base64.b64encode(np.random.default_rng(0).bytes(260_000))  # brings the ratio under the zip cap
    junk = b"[" + b"{}," * (4 << 20) + b"{}]"
    config = b'{"class_name": "Sequential", "config": {"name": "m", "pad": "' + pad + b'", "junk": ' + junk
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", config + b', "layers": []}}')
        z.writestr("model.weights.h5", weights.getvalue())
    return path


def keras_config_with_a_long_string(path: Path) -> Path:
    """A ~0.2 MB .keras whose deflated config.json holds one 8 MB string: the JSON depth check's regex
    (`(?:[^"\\\\]|\\\\.)*`) kept backtracking state per character, about 1 GB."""
    import base64

    import h5py

    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros((2, 2), np.float32))
    text = base64.b64encode(np.random.default_rng(0).bytes(150_000)) + b"a" * (8 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", b'{"class_name": "Sequential", "config": {"name": "' + text + b'", "layers": []}}')
        z.writestr("model.weights.h5", weights.getvalue())
    return path


CHILD = textwrap.dedent(
    """
    import os, re, resource, sys
    import numpy as np, h5py, xpnet
    from xpnet.layers import Dense
    from xpnet.models import Sequential, load_model
    from xpnet import checkpoint
    from xpnet.file_checks import FileFormatError
    model = Sequential([xpnet.Input((6,)), Dense(4, activation="relu"), Dense(3)], seed=0)
    model.predict(np.zeros((1, 6), np.float32))
    def vm():
        return int(re.search(r"VmSize:\\s+(\\d+) kB", open("/proc/self/status").read())[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm() + int(sys.argv[1]), resource.RLIM_INFINITY))
    for arg in sys.argv[2:]:
        kind, path = arg.split("=", 1)
        try:
            if kind == "model":
                load_model(path)
            elif kind == "weights":
                model.load_weights(path)
            else:
                checkpoint.load(path)
            print("loaded")
        except BaseException as e:
            name = "FileFormatError" if isinstance(e, FileFormatError) else type(e).__name__
            print(f"{name}: {e}".splitlines()[0])
    """
)


def _load_capped(cases: list[tuple[str, Path]], largest_legit: int = 0) -> list[str]:
    allow = 2 * largest_legit + SLACK
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", CHILD, str(allow), *(f"{k}={p}" for k, p in cases)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def test_crafted_files_are_refused_before_allocating_what_they_declare(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    cases = [
        ("model", crafted_model_npz(tmp_path / "dense20000.keras")),
        ("model", crafted_keras_zip(tmp_path / "dense20000-keras-layout.keras")),
        ("model", deflate_bomb(tmp_path / "bomb.keras", _header({"format": "xpnet-model"}))),
        ("weights", deflate_bomb(tmp_path / "bomb.npz", _header({"format": "xpnet-weights", "layers": []}))),
        ("checkpoint", deflate_bomb(tmp_path / "ckpt-000000001.npz")),
        ("weights", huge_npy_header(tmp_path / "huge.npz")),
        ("weights", h5_with_extra_gzip(tmp_path / "extra.weights.h5")),
        ("weights", h5_with_unwritten_dataset(tmp_path / "unwritten.weights.h5")),
        ("model", keras_gzip_in_deflate(tmp_path / "gzip-in-deflate.keras")),
    ]
    assert (tmp_path / "dense20000.keras").stat().st_size < 2000
    assert (tmp_path / "gzip-in-deflate.keras").stat().st_size < 600_000
    lines = _load_capped(cases)
    assert len(lines) == len(cases)
    for (kind, path), line in zip(cases, lines, strict=True):
        assert line.startswith(f"FileFormatError: xpnet: {path} is not a valid "), (kind, line)
    assert "20,000" in lines[0] or "400,020,000" in lines[0]
    assert "zip bomb" in lines[2] and "zip bomb" in lines[3]
    assert "1000000000000" in lines[5]
    assert "stored bytes" in lines[6] and "stored bytes" in lines[7] and "stored bytes" in lines[8]


def test_crafted_legacy_h5_models_are_refused_before_building_or_reading(tmp_path: Path) -> None:
    """The legacy .h5 path (load_model("m.h5")) has the same bounds: main built Dense(20000) on 20000
    inputs (4.6 GB, 50 s) before finding no weights, and read a gzip bomb whole."""
    pytest.importorskip("h5py")
    cases = [
        ("model", crafted_legacy_h5(tmp_path / "dense20000.h5")),
        ("model", legacy_h5_with_extra_gzip(tmp_path / "extra.h5")),
    ]
    lines = _load_capped(cases)
    for (_, path), line in zip(cases, lines, strict=True):
        assert line.startswith(f"FileFormatError: xpnet: {path} is not a valid Keras .h5 model file: "), line
    assert "needs 400,020,000 parameters but the file stores only 0" in lines[0]
    assert "stored bytes" in lines[1]


def test_chunks_that_hold_less_than_a_chunk_are_refused_not_a_crash(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    hows = ["unfiltered", "inflates_short", "filter_skipped"]
    cases = [("weights", h5_with_short_chunks(tmp_path / f"{how}.weights.h5", how)) for how in hows]
    lines = _load_capped(cases)  # in a child: on main, reading these may crash the process
    assert len(lines) == len(cases)
    for (_, path), line in zip(cases, lines, strict=True):
        assert line.startswith(f"FileFormatError: xpnet: {path} is not a valid Keras .weights.h5 file: "), line
        assert "/layers/extra/vars/0" in line and "of 1,000 bytes, not 262,144" in line, line


def test_json_of_millions_of_values_is_refused_before_parsing(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    path = keras_config_of_empty_dicts(tmp_path / "dicts.keras")
    assert path.stat().st_size < 400_000
    (line,) = _load_capped([("model", path)])  # main: MemoryError
    assert line.startswith(f"FileFormatError: xpnet: {path} is not a valid Keras .keras file: its config.json holds ")
    assert "values (at most 2,000,000)" in line


def test_a_long_json_string_is_scanned_in_bounded_memory(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    path = keras_config_with_a_long_string(tmp_path / "string.keras")
    assert path.stat().st_size < 300_000
    (line,) = _load_capped([("model", path)])  # main: MemoryError in the nesting check
    assert line.startswith(f"FileFormatError: xpnet: {path} is not a valid Keras .keras file: "), line
    assert "no InputLayer" in line  # the JSON was read; the model it describes is what is wrong


def test_a_legitimate_file_loads_under_the_same_cap(tmp_path: Path) -> None:
    """The cap is not what refuses the crafted files: a real 16 MiB model loads under it."""
    pytest.importorskip("h5py")
    big = Sequential([xpnet.Input((2048,)), Dense(2048), Dense(3)], seed=0)
    big.compile("adam", "mse")
    big.save(tmp_path / "big.keras")
    big.save(tmp_path / "big.npz")
    big.save(tmp_path / "big.h5")
    cases = [("model", tmp_path / "big.keras"), ("model", tmp_path / "big.npz"), ("model", tmp_path / "big.h5")]
    # the file's arrays: parameters and Adam's two slots; the weights drawn at build come on top
    legit = (tmp_path / "big.npz").stat().st_size
    for case in cases:  # one child each: a first load's freed memory may stay mapped
        assert _load_capped([case], largest_legit=legit) == ["loaded"], case


def test_the_declared_architecture_is_checked_before_weights_are_drawn(tmp_path: Path) -> None:
    path = crafted_model_npz(tmp_path / "m.keras")
    start = time.perf_counter()
    with pytest.raises(FileFormatError, match=r"needs 400,020,000 parameters but the file stores only 10"):
        load_model(path)
    assert time.perf_counter() - start < 5  # main drew 1.6 GB of weights for 20 s first


@pytest.mark.parametrize("kind", ["external", "virtual", "soft", "external_link"])
def test_weights_h5_must_keep_its_data_inside_the_file(tmp_path: Path, kind: str) -> None:
    h5py = pytest.importorskip("h5py")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(24, dtype=np.float32).tobytes())
    model = _small()
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    shape = model.layers[0].get_weights()[0].shape
    with h5py.File(path, "a") as f:
        del f["layers/dense/vars/0"]
        g = f["layers/dense/vars"]
        if kind == "external":
            g.create_dataset("0", shape=shape, dtype="f4", external=[(str(secret), 0, 96)])
        elif kind == "virtual":
            other = tmp_path / "other.h5"
            with h5py.File(other, "w") as o:
                o["x"] = np.ones(shape, np.float32)
            layout = h5py.VirtualLayout(shape=shape, dtype="f4")
            layout[...] = h5py.VirtualSource(str(other), "x", shape=shape)
            g.create_virtual_dataset("0", layout)
        elif kind == "soft":
            f["elsewhere"] = np.ones(shape, np.float32)
            g["0"] = h5py.SoftLink("/elsewhere")
        else:
            other = tmp_path / "other.h5"
            with h5py.File(other, "w") as o:
                o["x"] = np.ones(shape, np.float32)
            g["0"] = h5py.ExternalLink(str(other), "/x")
    before = model.get_weights()
    words = {"external": "external files", "virtual": "virtual dataset", "soft": "soft link"}
    word = words.get(kind, "an external link")
    with pytest.raises(FileFormatError, match=rf"w\.weights\.h5 is not a valid Keras \.weights\.h5 file: .*{word}"):
        model.load_weights(path)
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["external", "soft"])
def test_a_legacy_h5_model_must_keep_its_data_inside_the_file(tmp_path: Path, kind: str) -> None:
    """load_model("m.h5") read an external-storage dataset, i.e. any local file, into the weights."""
    h5py = pytest.importorskip("h5py")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(24, dtype=np.float32).tobytes())
    path = tmp_path / "m.h5"
    _small().save(path)
    with h5py.File(path, "a") as f:
        g = f["model_weights/dense"]
        del g["dense/kernel:0"]
        if kind == "external":
            g.create_dataset("dense/kernel:0", shape=(6, 4), dtype="f4", external=[(str(secret), 0, 96)])
        else:
            f["elsewhere"] = np.ones((6, 4), np.float32)
            g["dense/kernel:0"] = h5py.SoftLink("/elsewhere")
    word = "external files" if kind == "external" else "soft link"
    with pytest.raises(FileFormatError, match=rf"m\.h5 is not a valid Keras \.h5 model file: .*{word}"):
        load_model(path)


def test_a_soft_linked_group_is_refused(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    model = _small()
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        f.move("layers/dense", "hidden")
        f["layers/dense"] = h5py.SoftLink("/hidden")
    with pytest.raises(FileFormatError, match="layers/dense is a soft link"):
        model.load_weights(path)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("[" * 5000 + "]" * 5000, "nests 5000 levels"),
        ('{"format": "xpnet-model", "version": "1"}', "model format version '1'"),
        ('{"format": "xpnet-model", "version": 1}', "no model description"),
        ('{"format": "xpnet-model", "version": 1, "model": {}, "layout": [1]}', "layout entry 1"),
        (b"\xff\xfe", "not UTF-8"),
        ("{", "not valid JSON"),
    ],
    ids=["nested", "string-version", "no-model", "bad-layout", "not-utf8", "bad-json"],
)
def test_hostile_model_headers_give_one_line(tmp_path: Path, header: str | bytes, problem: str) -> None:
    raw = header.encode() if isinstance(header, str) else header
    path = _zip(tmp_path / "m.keras", {"header.npy": _npy((len(raw),), raw, "|u1"), "a_params.npy": _npy((0,))})
    with pytest.raises(FileFormatError, match=r"^xpnet: .*m\.keras is not a valid xpnet model file: ") as info:
        load_model(path)
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_wrong_config_values_are_a_file_error(tmp_path: Path) -> None:
    model = _small()
    model.save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        members = {n: z.read(n) for n in z.namelist()}
    header = json.loads(np.load(io.BytesIO(members["header.npy"])).tobytes())
    header["model"]["layers"][0]["config"]["units"] = "four"
    members["header.npy"] = _header(header)
    with pytest.raises(FileFormatError, match="its architecture cannot be used"):
        load_model(_zip(tmp_path / "bad.npz", members))


def test_the_cli_prints_the_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from xpnet import cli

    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "ckpt-000000005.npz").write_bytes(b"PK\x03\x04 not really")
    code = cli.main(["train", "--quick", "--backend", "numpy", "--out", str(tmp_path / "run"), "--resume"])
    err = capsys.readouterr().err
    assert code != 0
    assert f"xpnet: {folder / 'ckpt-000000005.npz'} is not a valid xpnet checkpoint file" in err
    assert "Traceback" not in err and "BadZipFile" not in err


def _temp(folder: Path, name: str, age_s: float) -> Path:
    path = folder / name
    path.write_bytes(b"half a file")
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_stale_temp_files_of_the_target_are_removed_on_the_next_save(tmp_path: Path) -> None:
    dead, me = _dead_pid(), os.getpid()
    killed = _temp(tmp_path, f".w.npz.{dead}-abc12345.tmp", 120)
    just_killed = _temp(tmp_path, f".w.npz.{dead}-def45678.tmp", 1)  # might still be another host's live write
    live = _temp(tmp_path, f".w.npz.{me}-ghi78901.tmp", 3600)
    old_style = _temp(tmp_path, ".w.npz.k2j4h5g6.tmp", 2 * 24 * 3600)
    old_style_recent = _temp(tmp_path, ".w.npz.a1b2c3d4.tmp", 600)
    other_target = _temp(tmp_path, f".v.npz.{dead}-abc12345.tmp", 120)
    users_own = [_temp(tmp_path, name, 2 * 24 * 3600) for name in (".w.npz.old.tmp", ".w.npz.Backup_Copy.tmp")]
    _small().save_weights(tmp_path / "w.npz")
    assert not killed.exists() and not old_style.exists()
    assert just_killed.exists() and live.exists() and old_style_recent.exists() and other_target.exists()
    assert all(p.exists() for p in users_own)  # not mkstemp's names: a user's files, kept


def test_a_killed_save_leaves_a_temp_file_that_the_next_save_removes(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, numpy as np, xpnet
        from xpnet.layers import Dense
        from xpnet.models import Sequential
        m = Sequential([xpnet.Input((6,)), Dense(4)], seed=0)
        real = np.savez
        def savez(f, **kw):
            f.write(b"partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        np.savez = savez
        m.save_weights({str(tmp_path / "w.npz")!r})
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert done.returncode == -9
    left = list(tmp_path.glob(".w.npz.*.tmp"))
    assert len(left) == 1 and not (tmp_path / "w.npz").exists()
    t = time.time() - 120
    os.utime(left[0], (t, t))
    _small().save_weights(tmp_path / "w.npz")
    assert not list(tmp_path.glob(".w.npz.*.tmp")) and (tmp_path / "w.npz").is_file()


def test_checkpoint_rotation_and_resume_clean_the_folder(tmp_path: Path) -> None:
    dead = _dead_pid()
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=32)
    model = _small()
    model.compile("sgd", xpnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    stale = _temp(tmp_path, f".ckpt-000000002.npz.{dead}-zz11zz11.tmp", 300)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[checkpoint.Checkpoint(tmp_path)])
    assert not stale.exists()
    stale = _temp(tmp_path, f".ckpt-000000004.npz.{dead}-zz22zz22.tmp", 300)
    found = checkpoint.load_latest(tmp_path)
    assert found is not None and not stale.exists()
    assert remove_stale_temps(tmp_path) == []


def _nested_weights(tmp_path: Path) -> tuple[Sequential, Path]:
    inner = Sequential([xpnet.Input((6,)), Dense(4, activation="relu"), Dense(3)], name="inner", seed=0)
    outer = Sequential([inner, Dense(2)], name="outer", seed=1)
    path = tmp_path / "w.weights.h5"
    outer.save_weights(path)
    return outer, path


@pytest.mark.parametrize("kind", ["soft", "unwritten"])
def test_a_nested_models_weight_groups_are_checked_like_the_outer_ones(tmp_path: Path, kind: str) -> None:
    h5py = pytest.importorskip("h5py")
    outer, path = _nested_weights(tmp_path)
    with h5py.File(path, "a") as f:
        assert f["layers/sequential/vars"].attrs["name"] == "inner"
        del f["layers/sequential/layers/dense_1/vars/0"]
        g = f["layers/sequential/layers/dense_1/vars"]
        if kind == "soft":
            f["elsewhere"] = np.ones((4, 3), np.float32)
            g["0"] = h5py.SoftLink("/elsewhere")
        else:  # 4 GB declared, nothing stored: all fill value
            g.create_dataset("0", shape=(1 << 15, 1 << 15), dtype="f4")
    before = outer.get_weights()
    word = {"soft": "layers/sequential/layers/dense_1/vars/0 is a soft link", "unwritten": "declares shape"}[kind]
    with pytest.raises(FileFormatError, match=rf"w\.weights\.h5 is not a valid Keras \.weights\.h5 file: .*{word}"):
        outer.load_weights(path)
    for a, b in zip(outer.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_model_groups_that_loop_back_are_refused(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    outer, path = _nested_weights(tmp_path)
    with h5py.File(path, "a") as f:
        f["layers/sequential/layers/sequential"] = f["layers/sequential"]  # a hard link to its own ancestor
    with pytest.raises(FileFormatError, match=r"nests models more than 32 deep"):
        outer.load_weights(path)
