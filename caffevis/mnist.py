"""MNIST in the standard idx format (gzip-compressed or raw).

The four files are looked up by their usual names (``train-images-idx3-ubyte`` …), with
or without ``.gz``, in a directory given by the caller, else ``$CAFFEVIS_MNIST``, else
``../shared/data/mnist`` beside the repository.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from .errors import InputError
from .limits import element_count
from .paths import REPO_ROOT

#: Caffe's LeNet input scale (``transform_param { scale: 0.00390625 }``): 1/256.
LENET_SCALE = 0.00390625
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# idx type byte -> numpy dtype (big-endian on disk)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def default_directory() -> str:
    """``$CAFFEVIS_MNIST`` if set, else ``../shared/data/mnist`` relative to the repository."""
    env = os.environ.get("CAFFEVIS_MNIST")
    if env:
        return env
    return os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "mnist"))


def find_file(directory: str, stem: str) -> str:
    """Path of ``stem`` or ``stem.gz`` in ``directory``; InputError naming both when absent."""
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise InputError(f"{os.path.join(directory, stem)}[.gz]: MNIST file not found "
                     f"(give the MNIST directory with --mnist, mnist_dir in the settings or $CAFFEVIS_MNIST)")


def available(directory: str | None = None, split: str = "test") -> bool:
    """Whether both files of ``split`` are present."""
    directory = directory or default_directory()
    try:
        for stem in FILES[split]:
            find_file(directory, stem)
    except InputError:
        return False
    return True


def read_idx(path: str) -> np.ndarray:
    """Read one idx file (gzip detected by its magic bytes, not by the name).

    The header's dimensions are checked (element count in Python ints, at most
    :data:`caffevis.limits.MAX_ELEMENTS`) before any data is read or decompressed.
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: idx file not found")
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            return _read_idx_stream(f, path)
    except (OSError, EOFError, zlib.error) as err:  # gzip raises all three for damaged data
        what = "damaged gzip data" if gzipped else "cannot read"
        raise InputError(f"{path}: {what} ({err})") from None


def _read_idx_stream(f, path):
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES:
        raise InputError(f"{path}: not an idx file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_TYPES[magic[2]]), magic[3]
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise InputError(f"{path}: idx header truncated")
    shape = struct.unpack(f">{ndim}I", dims)
    try:
        count = element_count(shape, "idx header")
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None
    need = count * dtype.itemsize
    data = f.read(need + 1)  # one byte more tells a file that is too long
    if len(data) != need:
        held = f"{len(data)}" if len(data) <= need else "more than"
        raise InputError(f"{path}: idx data holds {held} bytes; shape {list(shape)} needs {need}")
    return np.frombuffer(data, dtype, count).reshape(shape).astype(dtype.newbyteorder("="))


def load(split: str = "test", directory: str | None = None):
    """Images and labels of one split.

    Parameters
    ----------
    split : {'train', 'test'}
        ``'test'`` is the official 10k set (``t10k-*``).
    directory : str, optional
        Where the idx files are; see :func:`default_directory`.

    Returns
    -------
    images : ndarray, uint8, (N, 28, 28)
    labels : ndarray, int64, (N,)
    """
    if split not in FILES:
        raise InputError(f"MNIST split '{split}': expected one of {', '.join(FILES)}")
    directory = directory or default_directory()
    img_path, lab_path = (find_file(directory, stem) for stem in FILES[split])
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise InputError(f"{img_path}: expected images (N, H, W) and labels (N,), got {images.shape} and "
                         f"{labels.shape}")
    if len(images) != len(labels):
        raise InputError(f"{img_path}: {len(images)} images but {lab_path} has {len(labels)} labels")
    return images.astype(np.uint8, copy=False), labels.astype(np.int64)


def to_net_input(images) -> np.ndarray:
    """uint8 digits (N, 28, 28) or (28, 28) -> LeNet input (N, 1, 28, 28) float32 × 1/256."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    return (images[:, None].astype(np.float32) * np.float32(LENET_SCALE))


def first_of_class(labels, digit: int) -> int:
    """Index of the first example of ``digit``; InputError when there is none."""
    hits = np.flatnonzero(np.asarray(labels) == digit)
    if not len(hits):
        raise InputError(f"digit {digit}: no example of this class in the data")
    return int(hits[0])
