"""Datasets: MNIST, Fashion-MNIST (IDX files) and TF-Playground 2-D toys.

Self-contained: depends only on NumPy, tqdm and the standard library.
"""

from . import fashion_mnist, mnist, playground
from .idx import DatasetError, DatasetNotFoundError, load_idx

__all__ = [
    "DatasetError",
    "DatasetNotFoundError",
    "fashion_mnist",
    "load_idx",
    "mnist",
    "playground",
]
