"""Small file helpers with one-line errors."""
import contextlib
import hashlib
import os

import numpy as np

from .errors import InputError


def output_path(path: str, suffix: str = "") -> str:
    """``path`` (with ``suffix`` appended when missing), its folder created."""
    if suffix and not path.endswith(suffix):
        path += suffix
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise InputError(f"{path}: cannot create the output folder ({err.strerror})") from None
    return path


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary name beside ``path`` to write; it becomes ``path`` only when the
    block succeeds (readers never see half a file), else it is removed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_stale_temporaries(path: str):
    """Delete the ``<path>.tmpPID`` files of :func:`atomic_path` left by a killed process."""
    import glob

    for tmp in glob.glob(glob.escape(path) + ".tmp*"):
        if tmp[len(path) + 4:].isdigit():
            try:
                os.remove(tmp)
            except OSError:
                pass


def save_onnx(model, path: str) -> str:
    """``onnx.save`` through :func:`atomic_path`."""
    import onnx

    with atomic_path(path) as tmp:
        onnx.save(model, tmp)
    return path


def load_npy(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:
        raise InputError(f"{path}: not a readable .npy array ({err})") from None


def sha1_of(path: str, chunk: int = 1 << 20) -> str:
    """The sha1 hex digest of a file, read in chunks."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
