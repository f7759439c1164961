"""Image, label and mean files: readers with one-line errors.

Images are returned as RGB float32 in 0-255 (H, W, 3): the viewer's convention, which
:mod:`caffevis.preprocess` builds on. Means are returned in the net's channel order, as
their files store them (Caffe's ILSVRC mean is BGR).
"""
from __future__ import annotations

import os

import numpy as np

from .errors import InputError
from .limits import MAX_IMAGE_PIXELS

_MEAN_HINT = "null, a number, a per-channel list, or a .npy/.binaryproto mean image"


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Promote a grey (H, W) or (H, W, 1) image to (H, W, 3) and drop an alpha channel."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise InputError(f"image has shape {image.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def read_image(path: str) -> np.ndarray:
    """Read an image file as RGB float32 in 0-255, shape (H, W, 3).

    Decoded as DeepVis does (``cv2.imread`` in colour mode: grey replicated to three
    channels, alpha dropped, EXIF orientation applied), then BGR -> RGB.
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: image file not found")
    # imdecode from bytes: cv2.imread cannot open non-ASCII paths on every platform
    return decode_image(np.fromfile(path, dtype=np.uint8), path)


def decode_image(data, what: str) -> np.ndarray:
    """Decode an encoded image (bytes or a uint8 array) as :func:`read_image` does.

    ``what`` names the image in the error raised when OpenCV cannot decode it.
    """
    import cv2

    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as err:  # OpenCV's pixel limit, checked on the header before decoding
        if "MAX_IMAGE_PIXELS" in str(err):
            limit = os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS)
            raise InputError(f"{what}: image declares more than {limit} pixels (the limit: "
                             f"OPENCV_IO_MAX_IMAGE_PIXELS); not decoded") from None
        raise InputError(f"{what}: not a readable image (OpenCV could not decode it)") from None
    if image is None:
        raise InputError(f"{what}: not a readable image (OpenCV could not decode it)")
    return image[:, :, ::-1].astype(np.float32)


def read_bgr_or_none(path: str):
    """An image file as OpenCV reads it (BGR uint8), or None when it is missing, unreadable
    or over the pixel limit (for optional files such as the viewer's per-unit jpgs)."""
    import cv2

    if not os.path.isfile(path):
        return None
    try:
        return cv2.imread(path, cv2.IMREAD_COLOR)
    except cv2.error:  # over OPENCV_IO_MAX_IMAGE_PIXELS
        return None


def write_image(path: str, image: np.ndarray, quality: int = 95) -> None:
    """Write an image file, format from the name (``.png`` when it has none), atomically.

    The one image writer of caffevis (optimizer images, max patches, montages, figures).

    Parameters
    ----------
    image : ndarray
        (H, W, 3) RGB, (H, W, 4) RGBA (written as RGB), or (H, W[, 1]) grey (written grey);
        uint8, or float in 0-255 (rounded half to even, then clipped). [0, 1] images go
        through :func:`caffevis.imaging.to_uint8` first.
    quality : int
        JPEG quality (95 is OpenCV's default).
    """
    import cv2

    from .io import atomic_path

    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = to_rgb(img)
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]  # OpenCV writes BGR
    ext = (os.path.splitext(path)[1] or ".png").lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img), params)
    if not ok:
        raise InputError(f"{path}: cannot encode an image with extension '{ext}'")
    with atomic_path(path) as tmp:
        buf.tofile(tmp)


def read_labels(path: str) -> list:
    """Label names, one per line; surrounding blanks stripped, blank lines skipped."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: labels file not found")
    try:
        with open(path, "r", encoding="utf-8") as f:
            labels = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable labels text file ({err})") from None
    labels = [name for name in labels if name]
    if not labels:
        raise InputError(f"{path}: labels file holds no labels")
    return labels


def load_mean(spec, dtype=np.float32):
    """Load a mean as DeepVis' ``caffevis_data_mean`` allows.

    Parameters
    ----------
    spec : None, number, sequence of numbers, str or ndarray
        ``None`` (no mean), a scalar or per-channel values (net channel order), an array,
        or a path to a ``.npy`` or ``.binaryproto`` mean image (any other extension is
        read as ``.npy``).
    dtype : numpy dtype
        Of the result. Files and arrays are converted from the precision they hold;
        numbers and sequences are taken at float32 precision (as settings give them to
        Caffe's Transformer) whatever ``dtype``.

    Returns
    -------
    None, ndarray (C,) or ndarray (C, H, W)
    """
    if spec is None:
        return None
    if isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        if not os.path.isfile(path):
            raise InputError(f"{path}: mean file not found")
        arr = _read_binaryproto(path) if path.lower().endswith(".binaryproto") else _read_npy(path)
        arr = np.squeeze(arr)
        if arr.ndim == 2:
            arr = arr[None]  # a one-channel mean image
        if arr.ndim not in (1, 3):
            raise InputError(f"{path}: mean has shape {arr.shape}; expected (C, H, W) or per-channel (C,)")
        return arr.astype(dtype)
    arr = np.asarray(spec, dtype=np.float64)
    if not isinstance(spec, np.ndarray):
        arr = arr.astype(np.float32)
    if arr.ndim == 0:
        return arr.reshape(1).astype(dtype)
    if arr.ndim in (1, 3):
        return arr.astype(dtype)
    raise InputError(f"mean has shape {arr.shape}; expected {_MEAN_HINT}")


def _read_npy(path):
    from .io import check_numeric

    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # numpy raises several types for bad files
        raise InputError(f"{path}: not a readable .npy mean ({str(err).splitlines()[0]})") from None
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{path}: an .npz archive; expected a .npy mean")
    return check_numeric(arr, path)


def _read_binaryproto(path):
    from google.protobuf import message as pb_message

    from .model.caffe.reader import blob_to_array
    from .model.caffe.schema import BlobProto
    from .errors import ModelError

    blob = BlobProto()
    try:
        with open(path, "rb") as f:
            blob.ParseFromString(f.read())
        return blob_to_array(blob)
    except (pb_message.DecodeError, RuntimeError, ValueError, ModelError) as err:
        raise InputError(f"{path}: not a readable .binaryproto mean ({err})") from None


def crop_mean(mean, channels: int, hw, dtype=np.float32) -> np.ndarray | None:
    """Fit a loaded mean to a net input of ``channels`` x ``hw``.

    A per-channel mean becomes (C, 1, 1) (a scalar is repeated over channels); a mean
    image larger than the input is centre-cropped with offset ``(excess // 2)`` per side,
    as DeepVis does (Caffe's 256x256 ILSVRC mean -> 227x227 at offset 14).
    """
    if mean is None:
        return None
    mean = np.asarray(mean, dtype=dtype)
    h, w = (int(v) for v in hw)
    if mean.ndim == 3 and mean.shape[1:] == (1, 1):
        mean = mean.reshape(-1)  # already per channel (C, 1, 1)
    if mean.ndim == 1:
        if mean.size == 1:
            mean = np.repeat(mean, channels)
        if mean.size != channels:
            raise InputError(f"mean has {mean.size} values; the net has {channels} input channels")
        return mean.reshape(channels, 1, 1)
    if mean.shape[0] != channels:
        raise InputError(f"mean image has {mean.shape[0]} channels; the net has {channels}")
    mh, mw = mean.shape[1:]
    if mh < h or mw < w:
        raise InputError(f"mean image is {mh}x{mw}; smaller than the net input {h}x{w}")
    top, left = (mh - h) // 2, (mw - w) // 2
    return np.ascontiguousarray(mean[:, top:top + h, left:left + w])


def square_crop(image: np.ndarray) -> np.ndarray:
    """Centre-crop an (H, W, ...) image to a square (offset floor(excess / 2), as DeepVis)."""
    h, w = image.shape[:2]
    if w > h:
        off = (w - h) // 2
        return image[:, off:off + h]
    off = (h - w) // 2
    return image[off:off + w]


def list_images(directory: str, regexp: str = r".*\.(jpg|jpeg|png)$", ignore_case: bool = True) -> list:
    """Image files in a folder whose names match ``regexp``, sorted by name.

    (DeepVis used the unsorted ``os.listdir`` order; sorting makes runs reproducible.)
    """
    import re

    if not os.path.isdir(directory):
        raise InputError(f"{directory}: image folder not found")
    pattern = re.compile(regexp, re.IGNORECASE if ignore_case else 0)
    return [os.path.join(directory, n) for n in sorted(os.listdir(directory))
            if pattern.match(n) and os.path.isfile(os.path.join(directory, n))]
