"""Tests for xpnet.datasets: IDX reader, MNIST-style lookup/download, playground.

Never touches the network: urlopen is replaced for every test.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from xpnet.datasets import (
    DatasetError,
    DatasetNotFoundError,
    _files,
    fashion_mnist,
    load_idx,
    mnist,
    playground,
)

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

# Written independently of the reader so the round trip means something.
CODES = {
    "uint8": 0x08,
    "int8": 0x09,
    "int16": 0x0B,
    "int32": 0x0C,
    "float32": 0x0D,
    "float64": 0x0E,
}


def idx_bytes(array: np.ndarray, code: int | None = None) -> bytes:
    code = CODES[array.dtype.name] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No network, no real user cache, no XPNET_DATA_DIR from the caller."""

    def no_network(*args, **kwargs):
        raise AssertionError("tests must not access the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


# --------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", list(CODES))
def test_idx_round_trip(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write(tmp_path / "a.idx", idx_bytes(array), gz)
    loaded = load_idx(path)
    assert loaded.dtype == np.dtype(dtype) and loaded.dtype.isnative
    assert loaded.shape == (3, 4, 5)
    np.testing.assert_array_equal(loaded, array)
    assert loaded.flags.writeable


@pytest.mark.parametrize("shape", [(0,), (7,), (2, 3), (1, 1, 1, 2)])
def test_idx_shapes(tmp_path, shape):
    array = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    np.testing.assert_array_equal(load_idx(write(tmp_path / "a", idx_bytes(array))), array)


def test_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    gz_no_suffix = write(tmp_path / "labels-idx1-ubyte", idx_bytes(array), gz=True)
    raw_with_suffix = write(tmp_path / "labels-idx1-ubyte.gz", idx_bytes(array))
    np.testing.assert_array_equal(load_idx(gz_no_suffix), array)
    np.testing.assert_array_equal(load_idx(raw_with_suffix), array)


def test_missing_file(tmp_path):
    path = tmp_path / "nope-idx1-ubyte"
    with pytest.raises(DatasetNotFoundError, match="nope-idx1-ubyte") as info:
        load_idx(path)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, ValueError)


GOOD = idx_bytes(np.arange(12, dtype=np.int16).reshape(3, 4))


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (b"\x01\x02" + GOOD[2:], r"magic.*01 02 0b 02"),
        (GOOD[:2] + b"\x0a" + GOOD[3:], r"unknown IDX dtype code 0x0A"),
        (GOOD[:-1], r"truncated data.*needs 24 bytes.*got 23"),
        (GOOD + b"\x00\x00", r"2 trailing bytes"),
        (GOOD[:9], r"truncated header"),
        (b"\x00\x00", r"truncated header"),
        (b"", r"truncated header"),
        # dims claim 4x4 but data holds 3x4
        (
            GOOD[:4] + struct.pack(">I", 4) + GOOD[8:],
            r"shape \(4, 4\).*truncated|truncated.*\(4, 4\)",
        ),
    ],
    ids=["magic", "dtype", "truncated", "trailing", "header", "tiny", "empty", "dims"],
)
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_malformed_idx(tmp_path, data, pattern, gz):
    path = write(tmp_path / "bad-file", data, gz)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(GOOD)[:-6],  # stream cut short
        b"\x1f\x8b" + b"not gzip at all" * 3,  # magic but garbage
        gzip.compress(GOOD)[:-8] + b"\xde\xad\xbe\xef" + gzip.compress(GOOD)[-4:],  # bad CRC
    ],
    ids=["truncated", "garbage", "crc"],
)
def test_corrupt_gzip(tmp_path, blob):
    path = write(tmp_path / "x.gz", blob)
    with pytest.raises(DatasetError, match="corrupt gzip") as info:
        load_idx(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------- fake MNIST layout

N_TRAIN, N_TEST = 6, 4
NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def fake_arrays(marker: int) -> dict[str, np.ndarray]:
    """Tiny dataset whose image pixels all equal ``marker`` (tells dirs apart)."""
    return {
        "x_train": np.full((N_TRAIN, 2, 3), marker, np.uint8),
        "y_train": np.arange(N_TRAIN, dtype=np.uint8) % 10,
        "x_test": np.full((N_TEST, 2, 3), marker, np.uint8),
        "y_test": np.arange(N_TEST, dtype=np.uint8) % 10,
    }


def fake_dir(directory: Path, marker: int = 0, gz: bool = True, skip: str = "") -> Path:
    for key, array in fake_arrays(marker).items():
        if key != skip:
            write(directory / (NAMES[key] + (".gz" if gz else "")), idx_bytes(array), gz)
    return directory


def sha_table(marker: int) -> dict[str, str]:
    return {NAMES[key]: hashlib.sha256(idx_bytes(a)).hexdigest() for key, a in fake_arrays(marker).items()}


@pytest.fixture
def fake_spec(monkeypatch, tmp_path):
    """Make fashion_mnist expect the tiny fake files; debian dir in tmp.

    Checksums are off by default so directories can hold different markers;
    tests that need them replace the spec again via ``use_checksums``.
    """
    spec = _files.mnist_like_spec(
        name="fashion-mnist",
        title="Fashion-MNIST",
        sha256=None,
        mirrors=("https://mirror-a.invalid/", "https://mirror-b.invalid/"),
        debian_dir=tmp_path / "debian" / "fashion-mnist",
        apt_package="dataset-fashion-mnist",
    )
    files = {key: dataclasses.replace(f, shape=fake_arrays(0)[key].shape) for key, f in spec.files.items()}
    spec = dataclasses.replace(spec, files=files)
    monkeypatch.setattr(fashion_mnist, "SPEC", spec)
    return spec


def use_checksums(monkeypatch, spec, table: dict[str, str]) -> None:
    files = {key: dataclasses.replace(f, sha256=table[f.filename]) for key, f in spec.files.items()}
    monkeypatch.setattr(fashion_mnist, "SPEC", dataclasses.replace(spec, files=files))


def marker_of(result) -> int:
    (x_train, y_train), (x_test, y_test) = result
    assert x_train.shape == (N_TRAIN, 2, 3) and x_test.shape == (N_TEST, 2, 3)
    assert y_train.dtype == np.uint8 and y_test.shape == (N_TEST,)
    return int(x_train[0, 0, 0])


def test_candidate_dirs_order(fake_spec, monkeypatch, tmp_path):
    env = tmp_path / "env"
    monkeypatch.setenv("XPNET_DATA_DIR", str(env))
    cache = tmp_path / "xdg" / "xpnet" / "fashion-mnist"
    assert fashion_mnist.candidate_dirs() == [
        env,
        env / "fashion-mnist",
        cache,
        fake_spec.debian_dir,
    ]
    assert fashion_mnist.candidate_dirs(tmp_path / "x") == [tmp_path / "x"]
    monkeypatch.delenv("XPNET_DATA_DIR")
    assert fashion_mnist.candidate_dirs() == [cache, fake_spec.debian_dir]


def test_real_spec_locations(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fashion_mnist.candidate_dirs() == [
        tmp_path / "home" / ".cache" / "xpnet" / "fashion-mnist",
        DEBIAN_FASHION,
    ]
    assert mnist.candidate_dirs()[-1] == Path("/usr/share/datasets/mnist")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # XDG: must be absolute
    assert mnist.candidate_dirs()[0] == tmp_path / "home" / ".cache" / "xpnet" / "mnist"


def test_lookup_order(fake_spec, monkeypatch, tmp_path):
    explicit = fake_dir(tmp_path / "explicit", marker=1)
    env = fake_dir(tmp_path / "env", marker=2)
    fake_dir(env / "fashion-mnist", marker=3, gz=False)
    cache = fake_dir(tmp_path / "xdg" / "xpnet" / "fashion-mnist", marker=4)
    fake_dir(fake_spec.debian_dir, marker=5)
    monkeypatch.setenv("XPNET_DATA_DIR", str(env))

    assert marker_of(fashion_mnist.load_data(data_dir=explicit)) == 1
    assert marker_of(fashion_mnist.load_data(path=explicit)) == 1
    assert marker_of(fashion_mnist.load_data()) == 2
    (env / "train-labels-idx1-ubyte.gz").unlink()  # incomplete dirs are skipped
    assert marker_of(fashion_mnist.load_data()) == 3
    monkeypatch.delenv("XPNET_DATA_DIR")
    assert marker_of(fashion_mnist.load_data()) == 4
    for f in cache.iterdir():
        f.unlink()
    assert marker_of(fashion_mnist.load_data(download=False)) == 5


def test_explicit_dir_does_not_fall_through(fake_spec, monkeypatch, tmp_path):
    monkeypatch.setenv("XPNET_DATA_DIR", str(fake_dir(tmp_path / "env")))
    partial = fake_dir(tmp_path / "partial", skip="y_test")
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mnist.load_data(data_dir=partial)
    msg = str(info.value)
    assert str(partial) in msg and "t10k-labels-idx1-ubyte" in msg
    assert "train-images" not in msg  # only what is actually missing
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        fashion_mnist.load_data(data_dir=tmp_path / "absent")


def test_path_and_data_dir_must_agree(fake_spec, tmp_path):
    with pytest.raises(ValueError, match="disagree"):
        fashion_mnist.load_data(path=tmp_path / "a", data_dir=tmp_path / "b")


def test_checksum_ok_and_mismatch(fake_spec, monkeypatch, tmp_path):
    directory = fake_dir(tmp_path / "d", marker=7)
    use_checksums(monkeypatch, fake_spec, sha_table(7))
    assert marker_of(fashion_mnist.load_data(data_dir=directory)) == 7

    use_checksums(monkeypatch, fake_spec, sha_table(8))
    with pytest.raises(DatasetError, match="SHA-256 mismatch") as info:
        fashion_mnist.load_data(data_dir=directory)
    msg = str(info.value)
    assert str(directory / "train-images-idx3-ubyte.gz") in msg
    assert sha_table(7)["train-images-idx3-ubyte"] in msg  # actual
    assert sha_table(8)["train-images-idx3-ubyte"] in msg  # expected
    assert "Delete" in msg


def test_checksum_is_of_decompressed_bytes(fake_spec, monkeypatch, tmp_path):
    # Same content, different compression levels -> different .gz bytes.
    directory = tmp_path / "d"
    for key, array in fake_arrays(0).items():
        level = 1 if key.startswith("x") else 9
        (directory / f"{NAMES[key]}.gz").parent.mkdir(exist_ok=True)
        (directory / f"{NAMES[key]}.gz").write_bytes(gzip.compress(idx_bytes(array), compresslevel=level, mtime=123))
    use_checksums(monkeypatch, fake_spec, sha_table(0))
    assert marker_of(fashion_mnist.load_data(data_dir=directory)) == 0


def test_wrong_shape_and_label_range(fake_spec, tmp_path):
    directory = fake_dir(tmp_path / "d", skip="x_test")
    write(
        directory / "t10k-images-idx3-ubyte",
        idx_bytes(np.zeros((N_TEST, 3, 2), np.uint8)),
    )
    with pytest.raises(DatasetError, match=r"shape \(4, 2, 3\)"):
        fashion_mnist.load_data(data_dir=directory)

    directory = fake_dir(tmp_path / "e", skip="y_train")
    write(directory / "train-labels-idx1-ubyte", idx_bytes(np.full(N_TRAIN, 10, np.uint8)))
    with pytest.raises(DatasetError, match="at most 9"):
        fashion_mnist.load_data(data_dir=directory)


def test_offline_not_found_lists_everything(fake_spec, monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    env = tmp_path / "env"
    monkeypatch.setenv("XPNET_DATA_DIR", str(env))
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mnist.load_data()
    msg = str(info.value)
    for directory in fashion_mnist.candidate_dirs():
        assert str(directory) in msg
    for needle in [
        "apt-get install dataset-fashion-mnist",
        "XPNET_DATA_DIR",
        "download",
        "no network (test)",
        "mirror-a.invalid",
        "mirror-b.invalid",
    ]:
        assert needle in msg
    assert isinstance(info.value.__cause__, OSError)
    cache = tmp_path / "xdg" / "xpnet" / "fashion-mnist"
    assert not any(cache.iterdir())  # no partial downloads left behind

    with pytest.raises(DatasetNotFoundError, match="download=False"):
        fashion_mnist.load_data(download=False)


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def serve(monkeypatch, files: dict[str, bytes], down: tuple[str, ...] = ()) -> list[str]:
    """Fake urlopen serving ``files`` by name; hosts in ``down`` fail."""
    requested: list[str] = []

    def urlopen(url, timeout=None):
        requested.append(url)
        if any(host in url for host in down):
            raise urllib.error.URLError("host down")
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return FakeResponse(files[name])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requested


def test_download_into_cache(fake_spec, monkeypatch, tmp_path):
    use_checksums(monkeypatch, fake_spec, sha_table(6))
    served = {NAMES[k] + ".gz": gzip.compress(idx_bytes(a)) for k, a in fake_arrays(6).items()}
    requested = serve(monkeypatch, served, down=("mirror-a",))
    assert marker_of(fashion_mnist.load_data()) == 6
    assert len(requested) == 8  # each file: mirror-a failed, mirror-b served
    cache = tmp_path / "xdg" / "xpnet" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(served)  # no temp files

    serve(monkeypatch, {})  # now everything comes from the cache
    assert marker_of(fashion_mnist.load_data()) == 6


def test_download_only_missing_files(fake_spec, monkeypatch, tmp_path):
    fake_dir(tmp_path / "xdg" / "xpnet" / "fashion-mnist", marker=0, skip="y_test")
    served = {"t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(fake_arrays(0)["y_test"]))}
    requested = serve(monkeypatch, served)
    assert marker_of(fashion_mnist.load_data()) == 0
    assert requested == ["https://mirror-a.invalid/t10k-labels-idx1-ubyte.gz"]


def test_download_with_bad_checksum_is_not_saved(fake_spec, monkeypatch, tmp_path):
    use_checksums(monkeypatch, fake_spec, sha_table(1))
    served = {NAMES[k] + ".gz": gzip.compress(idx_bytes(a)) for k, a in fake_arrays(2).items()}
    serve(monkeypatch, served)
    with pytest.raises(DatasetError, match=r"mirror-a.invalid.*SHA-256 mismatch"):
        fashion_mnist.load_data()
    assert not any((tmp_path / "xdg" / "xpnet" / "fashion-mnist").iterdir())


def test_mnist_module():
    assert mnist.class_names == [str(i) for i in range(10)]
    assert mnist.SPEC.name == "mnist"
    shapes = [f.shape for f in mnist.SPEC.files.values()]
    assert shapes == [(60000, 28, 28), (60000,), (10000, 28, 28), (10000,)]
    # MNIST is checked by structure only (no checksum constants are published).
    assert all(f.sha256 is None for f in mnist.SPEC.files.values())


def test_fashion_constants():
    assert fashion_mnist.class_names == [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]  # fmt: skip
    assert {f.sha256 for f in fashion_mnist.SPEC.files.values()} == set(fashion_mnist.SHA256.values())
    assert all(len(h) == 64 for h in fashion_mnist.SHA256.values())


@pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist():
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(data_dir=DEBIAN_FASHION)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert y_train.min() == 0 and y_train.max() == 9
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert x_train.max() == 255


# --------------------------------------------------------------- playground

GENERATORS = ["circle", "xor", "gaussian", "spiral"]


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_playground_shapes_and_labels(name, noise):
    x, y = getattr(playground, name)(n_samples=301, noise=noise, seed=0)
    assert x.shape == (301, 2) and x.dtype == np.float32
    assert y.shape == (301,) and y.dtype == np.int64
    assert set(np.unique(y)) <= {0, 1}
    assert np.isfinite(x).all()
    if name != "xor" and noise == 0.0:
        assert np.bincount(y).tolist() == [150, 151]
    else:
        assert 0.35 < y.mean() < 0.65


@pytest.mark.parametrize("name", GENERATORS)
def test_playground_deterministic(name):
    make = getattr(playground, name)
    a, b, c = make(seed=1), make(seed=1), make(seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert make(seed=np.random.default_rng(3))[0].shape == (500, 2)


def test_playground_geometry_without_noise():
    x, y = playground.circle(seed=0)
    r = np.hypot(x[:, 0], x[:, 1])
    assert (r[y == 1] < 2.5).all() and (r[y == 0] >= 3.5 - 1e-5).all() and r.max() <= 5 + 1e-5
    x, y = playground.xor(seed=0)
    assert (np.abs(x) >= 0.3).all() and (np.abs(x) <= 5.3 + 1e-5).all()
    np.testing.assert_array_equal(y, (x[:, 0] * x[:, 1] >= 0).astype(np.int64))
    x, y = playground.gaussian(n_samples=4000, seed=0)
    np.testing.assert_allclose(x[y == 1].mean(0), [2, 2], atol=0.1)
    np.testing.assert_allclose(x[y == 0].mean(0), [-2, -2], atol=0.1)
    x, y = playground.spiral(seed=0)
    assert np.hypot(x[:, 0], x[:, 1]).max() < 5


def test_playground_noise_flips_labels():
    x, y = playground.circle(n_samples=2000, noise=0.5, seed=0)
    r = np.hypot(x[:, 0], x[:, 1])
    assert (y != (r < 2.5)).any()  # label noise near the boundary


def test_playground_load_data():
    (x_tr, y_tr), (x_te, y_te) = playground.load_data("spiral", 200, 0.1, test_ratio=0.25, seed=5)
    assert x_tr.shape == (150, 2) and x_te.shape == (50, 2)
    assert y_tr.shape == (150,) and y_te.shape == (50,)
    x, y = playground.spiral(200, 0.1, seed=5)
    np.testing.assert_array_equal(np.concatenate([x_tr, x_te]), x)
    np.testing.assert_array_equal(np.concatenate([y_tr, y_te]), y)
    assert 0 < y_tr.mean() < 1 and 0 < y_te.mean() < 1  # shuffled, not sorted by class


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_samples": 0},
        {"n_samples": -3},
        {"n_samples": 2.5},
        {"n_samples": True},
        {"noise": -0.1},
        {"noise": 1.5},
        {"noise": float("nan")},
        {"noise": "0.1"},
        {"noise": None},
    ],
)
@pytest.mark.parametrize("name", GENERATORS)
def test_playground_validation(name, kwargs):
    with pytest.raises((ValueError, TypeError)):
        getattr(playground, name)(**kwargs)


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (("moons",), "unknown playground dataset"),
        (("xor", 500, 0.0, 0.0), "test_ratio"),
        (("xor", 500, 0.0, 1.0), "test_ratio"),
        (("xor", 1, 0.0, 0.5), "empty"),
        (("xor", 10, 0.0, 0.01), "empty"),
        (("xor", 10, 0.0, "0.5"), "test_ratio"),
    ],
)
def test_playground_load_data_validation(args, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        playground.load_data(*args)


def test_mnist_refuses_fashion_mnist_files(monkeypatch, tmp_path):
    """The two datasets share file names and shapes and MNIST has no checksums: a folder of Fashion-MNIST
    files (say $XPNET_DATA_DIR itself, searched first) loaded as MNIST, under digit class names."""
    assert {h for f in mnist.SPEC.files.values() for h, _ in f.foreign} == set(fashion_mnist.SHA256.values())
    fashion = {name: h if "images" in name else "0" * 64 for name, h in sha_table(7).items()}  # fakes' labels agree
    spec = _files.mnist_like_spec("mnist", "MNIST", None, (), tmp_path / "debian", foreign={"Fashion-MNIST": fashion})
    files = {key: dataclasses.replace(f, shape=fake_arrays(0)[key].shape) for key, f in spec.files.items()}
    monkeypatch.setattr(mnist, "SPEC", dataclasses.replace(spec, files=files))
    assert marker_of(mnist.load_data(data_dir=fake_dir(tmp_path / "digits", marker=3))) == 3
    with pytest.raises(DatasetError, match="is Fashion-MNIST's train-images-idx3-ubyte, not this dataset's"):
        mnist.load_data(data_dir=fake_dir(tmp_path / "fashion", marker=7))
