"""MNIST: 70,000 28x28 grayscale images of handwritten digits 0-9.

LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/. See
:mod:`xpnet.datasets._files` for where the files are looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import fashion_mnist
from ._files import Split, load_mnist_like, mnist_like_spec
from ._files import candidate_dirs as _candidate_dirs

__all__ = ["SHA256", "SPEC", "candidate_dirs", "class_names", "load_data"]

class_names: list[str] = [str(digit) for digit in range(10)]

# No SHA-256 of the decompressed MNIST files could be computed or confirmed
# when this was written (no copy was available offline), so MNIST files are
# verified by structure only: IDX header, dtype uint8, exact shapes, and
# labels <= 9. Fill this in (decompressed-bytes hashes, as for
# fashion_mnist.SHA256) to enable checksum verification.
SHA256: dict[str, str] | None = None

MIRRORS: tuple[str, ...] = ("https://storage.googleapis.com/cvdf-datasets/mnist/",)

SPEC = mnist_like_spec(
    name="mnist",
    title="MNIST",
    sha256=SHA256,
    mirrors=MIRRORS,
    debian_dir=Path("/usr/share/datasets/mnist"),
    apt_package=None,  # Debian has no MNIST package
    # Fashion-MNIST's files have MNIST's names and shapes: without checksums, only theirs tell them apart
    foreign={fashion_mnist.SPEC.title: fashion_mnist.SHA256},
)


def candidate_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched, in order, before downloading."""
    return _candidate_dirs(SPEC, data_dir)


def load_data(
    path: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Split:
    """Load MNIST like ``keras.datasets.mnist.load_data``.

    ``path`` and ``data_dir`` are synonyms: a directory holding the four IDX
    files (raw or ``.gz``); if given, no other place is searched.

    Returns ``((x_train, y_train), (x_test, y_test))``, all uint8:
    x_train (60000, 28, 28), y_train (60000,), x_test (10000, 28, 28),
    y_test (10000,); pixels 0..255, labels 0..9.
    """
    return load_mnist_like(SPEC, path, data_dir, download)
