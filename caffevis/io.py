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


def save_npz(path: str, arrays) -> str:
    """Write ``arrays`` (name -> array) as an uncompressed ``.npz``, atomically.

    Each array is stored as the member ``<name>.npy``, as ``np.savez`` does, but any name
    works: ``np.savez(path, **arrays)`` fails on a name ``file`` and silently drops one
    called ``allow_pickle``.
    """
    import zipfile

    try:
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
    except OSError as err:
        raise InputError(f"{path}: cannot write ({err.strerror or err})") from None
    return path


def check_numeric(arr: np.ndarray, path: str) -> np.ndarray:
    """``arr`` when it holds real numbers (bool, integer or float); InputError otherwise."""
    if arr.dtype.kind not in "biuf" or arr.dtype.fields is not None:
        raise InputError(f"{path}: array of dtype {arr.dtype}; expected numbers (integer or float)")
    return arr


def load_npy(path: str) -> np.ndarray:
    """A numeric ``.npy`` array (never unpickled); InputError naming the file otherwise."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:
        raise InputError(f"{path}: not a readable .npy array ({str(err).splitlines()[0]})") from None
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{path}: an .npz archive; expected a single .npy array")
    return check_numeric(arr, path)


def file_digest(path: str, algorithm: str, chunk: int = 1 << 20) -> str:
    """The hex digest of a file by a :mod:`hashlib` algorithm (``'sha1'``, ``'sha256'``), read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha1_of(path: str) -> str:
    """The sha1 hex digest of a file."""
    return file_digest(path, "sha1")


def sha256_of(path: str) -> str:
    """The sha256 hex digest of a file."""
    return file_digest(path, "sha256")
