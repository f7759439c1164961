"""Image sources of a scan: a list of image files or an idx file (MNIST), by index."""
from __future__ import annotations

import os

import numpy as np

from ..errors import InputError


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


# -- input sources ---------------------------------------------------------------------
class ImageFiles:
    """Image files (from a directory walk or a list file); ``load(i)`` -> RGB float32 0-255 (H, W, 3)."""

    kind = "images"

    def __init__(self, root, names, labels):
        self.root = root
        self.names = list(names)
        self.labels = np.asarray(labels, np.int64)

    def __len__(self):
        return len(self.names)

    def path(self, i):
        return os.path.join(self.root, self.names[i])

    def load(self, i):
        return read_rgb(self.path(i))


class IdxImages:
    """An idx images file (MNIST); ``load(i)`` -> the uint8 (H, W) digit."""

    kind = "idx"

    def __init__(self, path, labels_path=None):
        from ..lenet import mnist

        self.images = mnist.read_idx(path)
        if self.images.ndim != 3:
            raise InputError(f"{path}: expected idx images (N, H, W); got shape {self.images.shape}")
        base = os.path.basename(path)
        self.names = [f"{base}#{i}" for i in range(len(self.images))]
        if labels_path:
            labels = mnist.read_idx(labels_path)
            if labels.ndim != 1:
                raise InputError(f"{labels_path}: expected idx labels (N,); got shape {labels.shape}")
            if labels.shape != (len(self.images),):
                raise InputError(f"{labels_path}: {labels.shape[0]} labels for {len(self.images)} images in {path}")
            self.labels = labels.astype(np.int64)
        else:
            self.labels = np.full(len(self.images), -1, np.int64)

    def __len__(self):
        return len(self.names)

    def load(self, i):
        return self.images[i]

    def load_many(self, indices):
        return self.images[indices]


def read_rgb(path):
    """An image file as RGB float32 0-255 (H, W, 3); InputError when unreadable."""
    from ..images import read_image

    return read_image(path)


def is_idx(path):
    """Whether ``path`` starts like an idx file (gzip or raw), whatever its dimensions."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    if head[:2] == b"\x1f\x8b":
        import gzip
        import zlib

        try:
            with gzip.open(path, "rb") as f:
                head = f.read(4)
        except (OSError, EOFError, zlib.error):
            return True  # a damaged gzip: reading it as idx data says so in one line
    return len(head) == 4 and head[:2] == b"\0\0" and 1 <= head[3] <= 4


def source_spec(images, labels=None, datadir=None) -> dict:
    """JSON-able description of ``--images`` (a directory, a list file, or an idx file)."""
    if not os.path.exists(images):
        raise InputError(f"{images}: not found (expected an image directory, a list file or an idx images file)")
    path = os.path.abspath(images)
    if os.path.isdir(path):
        if labels:
            raise InputError(f"--labels {labels}: only for idx images files (a list file carries its labels)")
        return {"kind": "dir", "path": path}
    if is_idx(path):
        return {"kind": "idx", "path": path, "labels": os.path.abspath(labels) if labels else None}
    if labels:
        raise InputError(f"--labels {labels}: only for idx images files (a list file carries its labels)")
    return {"kind": "list", "path": path, "root": os.path.abspath(datadir or os.path.dirname(path))}


def open_source(spec: dict):
    """The source of a :func:`source_spec`."""
    kind = spec["kind"]
    if kind == "idx":
        return IdxImages(spec["path"], spec.get("labels"))
    if kind == "dir":
        names = []
        for folder, dirs, files in os.walk(spec["path"]):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    names.append(os.path.relpath(os.path.join(folder, name), spec["path"]).replace(os.sep, "/"))
        if not names:
            raise InputError(f"{spec['path']}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this directory")
        return ImageFiles(spec["path"], names, [-1] * len(names))
    if kind == "list":
        names, labels = [], []
        try:
            with open(spec["path"], encoding="utf-8") as f:
                lines = f.read().splitlines()
        except UnicodeDecodeError:
            raise InputError(f"{spec['path']}: not a text list file, an image directory or an idx images "
                             f"file") from None
        for lineno, line in enumerate(lines, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) > 2 or (len(parts) == 2 and not parts[1].lstrip("-").isdigit()):
                raise InputError(f"{spec['path']}:{lineno}: expected 'FILENAME [LABEL]' (an integer label)")
            names.append(parts[0])
            labels.append(int(parts[1]) if len(parts) == 2 else -1)
        if not names:
            raise InputError(f"{spec['path']}: the list file names no images")
        return ImageFiles(spec["root"], names, labels)
    raise InputError(f"unknown source kind '{kind}'")


def relocated_source(spec: dict, names, datadir):
    """The images of a finished scan (``spec`` from its config, ``names`` its input list)
    read from ``datadir`` instead: the folder the directory or list names are now relative
    to, or the folder now holding the idx images file."""
    datadir = os.path.abspath(datadir)
    if not os.path.isdir(datadir):
        raise InputError(f"--datadir {datadir}: not a directory")
    if spec["kind"] == "idx":
        return IdxImages(os.path.join(datadir, os.path.basename(spec["path"])))
    return ImageFiles(datadir, names, [-1] * len(names))
