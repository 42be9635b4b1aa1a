"""Fashion-MNIST: 70,000 28x28 grayscale images of 10 clothing classes.

Xiao, Rasul & Vollgraf (2017), https://github.com/zalandoresearch/fashion-mnist.
Same file layout as MNIST; see :mod:`xpnet.datasets._files` for where the
files are looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._files import Split, load_mnist_like, mnist_like_spec
from ._files import candidate_dirs as _candidate_dirs

__all__ = ["SHA256", "SPEC", "candidate_dirs", "class_names", "load_data"]

class_names: list[str] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

# SHA-256 of the *decompressed* files. Debian's dataset-fashion-mnist
# re-compresses the .gz files, so hashes of the .gz bytes would differ
# between sources while the content is identical. Computed from the Debian
# package files, whose content is the original data.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

# The official S3 "website" endpoint serves plain HTTP only, so the HTTPS
# copy used by Keras is tried first; the checksum protects both.
MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)

SPEC = mnist_like_spec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    sha256=SHA256,
    mirrors=MIRRORS,
    debian_dir=Path("/usr/share/datasets/fashion-mnist"),
    apt_package="dataset-fashion-mnist",
)


def candidate_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched, in order, before downloading."""
    return _candidate_dirs(SPEC, data_dir)


def load_data(
    path: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Split:
    """Load Fashion-MNIST like ``keras.datasets.fashion_mnist.load_data``.

    ``path`` and ``data_dir`` are synonyms: a directory holding the four IDX
    files (raw or ``.gz``); if given, no other place is searched.

    Returns ``((x_train, y_train), (x_test, y_test))``, all uint8:
    x_train (60000, 28, 28), y_train (60000,), x_test (10000, 28, 28),
    y_test (10000,); pixels 0..255, labels 0..9 (see ``class_names``).
    """
    return load_mnist_like(SPEC, path, data_dir, download)
