"""Helpers shared by the ntkdyn.data tests: an independent H^inf, and MNIST IDX files written by
hand (big-endian int32 magic 2051 / 2049 and dims, then unsigned bytes), so no download is ever
needed (the ``mnist_arrays`` fixture is in conftest.py).
"""

from __future__ import annotations

import gzip
import struct

import numpy as np


def h_inf(X: np.ndarray) -> np.ndarray:
    """docs/mathematics.md §1.2, written out independently of the package: x_i.x_j (pi - theta_ij) / (2 pi)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    U = X / np.where(norms > 0, norms, 1.0)
    # theta = 2 atan2(|u - v|, |u + v|): arccos(cos) would lose ~8 digits near theta = 0, pi.
    diff = np.linalg.norm(U[:, None, :] - U[None, :, :], axis=2)
    summ = np.linalg.norm(U[:, None, :] + U[None, :, :], axis=2)
    theta = 2.0 * np.arctan2(diff, summ)
    return (X @ X.T) * (np.pi - theta) / (2 * np.pi)


IMG_SHAPE = (28, 28)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">i{array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_mnist(folder, images, labels, *, gz=False, stem="train-{}-idx{}-ubyte"):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, dim, arr, magic in (("images", 3, images, 2051), ("labels", 1, labels, 2049)):
        raw = idx_bytes(arr, magic)
        path = folder / (stem.format(kind, dim) + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(raw) if gz else raw)
        paths.append(path)
    return paths
