"""Input sources of the live viewer and the fetcher that switches between them.

Static sources (one image at a time, next/previous): an image directory (sorted), an
image list file, MNIST digits. Live sources (a stream, freezable): a webcam, a video
file, the mouse-drawn digit canvas. :class:`InputFetcher` is DeepVis's input updater:
it starts on the static files, ``c`` toggles live/static, ``e``/``w`` step through the
files, ``f`` freezes the live stream, ``0`` toggles crop/stretch. A frame that cannot be
read is reported (``fetcher.error``, shown in the status line) and skipped.
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError
from ..images import list_images, read_image, square_crop
from .worker import HeartbeatWorker


@dataclass
class Frame:
    """One input frame.

    ``image`` is RGB (or grey) in 0-255, square (as shown in the input pane and fed to
    the net); ``net_image``, when set, is fed to the net instead (the digit canvas gives
    its MNIST-normalised digit there).
    """

    image: np.ndarray
    name: str
    net_image: np.ndarray | None = None


def _squared(image, stretch):
    return image if stretch else square_crop(image)


# -- static sources ------------------------------------------------------------------------------
class FileList:
    """Image files (a directory listing or a list file), read on demand.

    ``lister`` re-reads the listing: :meth:`refresh` calls it, and the input fetcher does
    on every next/previous key, as DeepVis re-listed its folder (images added meanwhile appear).
    """

    live = False

    def __init__(self, paths, what, lister=None):
        self.paths = list(paths)
        self.what = what
        self._lister = lister
        if not self.paths:
            raise InputError(f"{what}: no images found")

    def refresh(self):
        """Re-read the listing; keep the old one if the folder or list is gone or empty."""
        if self._lister is None:
            return
        try:
            paths = list(self._lister())
        except (InputError, OSError):
            return
        if paths:
            self.paths = paths

    def __len__(self):
        return len(self.paths)

    def name(self, idx):
        return os.path.basename(self.paths[idx % len(self.paths)])

    def load(self, idx, stretch=False):
        path = self.paths[idx % len(self.paths)]
        return Frame(_squared(read_image(path), stretch), os.path.basename(path))

    @classmethod
    def from_directory(cls, directory, regexp=r".*\.(jpg|jpeg|png)$", ignore_case=True):
        def lister():
            return list_images(directory, regexp, ignore_case)

        return cls(lister(), directory, lister)

    @classmethod
    def from_list_file(cls, list_file, base_dir=None):
        """First token of each line (split on space, comma or tab); relative names are looked
        up in ``base_dir`` (``static_files_dir``), else beside the list file."""
        def lister():
            return _read_list_file(list_file, base_dir)

        return cls(lister(), list_file, lister)


def _read_list_file(list_file, base_dir):
    if not os.path.isfile(list_file):
        raise InputError(f"{list_file}: image list file not found")
    paths = []
    with open(list_file, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            tokens = [t for t in re.split(r"[ ,\t]+", line.strip()) if t]
            if not tokens:
                continue
            name = tokens[0]
            if not os.path.isabs(name):
                cands = [os.path.join(d, name) for d in (base_dir, os.path.dirname(os.path.abspath(list_file))) if d]
                name = next((c for c in cands if os.path.isfile(c)), cands[0])
            paths.append(name)
    return paths


class ArrayImages:
    """In-memory images (MNIST digits): (N, H, W) or (N, H, W, 3) uint8 with names."""

    live = False

    def __init__(self, images, names, what="images"):
        self.images, self.names, self.what = images, list(names), what
        if not len(images):
            raise InputError(f"{what}: no images")

    def __len__(self):
        return len(self.images)

    def name(self, idx):
        return self.names[idx % len(self.names)]

    def load(self, idx, stretch=False):
        img = np.asarray(self.images[idx % len(self.images)], np.float32)
        return Frame(_squared(img, stretch), self.name(idx))

    @classmethod
    def mnist_test(cls, directory=None, count=None):
        from .. import mnist

        images, labels = mnist.load("test", directory)
        count = len(images) if count is None else min(count, len(images))
        names = [f"mnist test {i} (label {labels[i]})" for i in range(count)]
        return cls(images[:count], names, "MNIST test set")


# -- live sources ----------------------------------------------------------------------------------
class Camera:
    """A webcam: mirrored, per-frame min-max stretched to 0-255, centre-cropped (DeepVis)."""

    live = True

    def __init__(self, device=0, capture=None):
        self.device = device
        self.capture = capture if capture is not None else cv2.VideoCapture(device)
        if not self.capture.isOpened():
            raise InputError(f"camera {device}: cannot be opened")
        self.name = f"camera {device}"

    def read(self):
        ok, frame = self.capture.read()
        if not ok or frame is None:
            raise InputError(f"camera {self.device}: no frame (camera gone?)")
        return Frame(camera_frame(frame), self.name)

    def close(self):
        self.capture.release()


def camera_frame(bgr):
    """A raw camera frame (BGR, grey or BGRA) -> the viewer's RGB float square frame."""
    frame = np.asarray(bgr)
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    rgb = frame[:, ::-1, 2::-1].astype(np.float32)  # BGR -> RGB and mirror left-right
    lo, hi = float(rgb.min()), float(rgb.max())
    rgb = (rgb - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(rgb)
    return square_crop(rgb)


class VideoFile:
    """A video file played frame by frame, looping at the end."""

    live = True

    def __init__(self, path):
        if not os.path.isfile(path):
            raise InputError(f"{path}: video file not found")
        self.path = path
        self.capture = cv2.VideoCapture(path)
        if not self.capture.isOpened():
            raise InputError(f"{path}: not a readable video (OpenCV could not open it)")
        self.index = 0
        self.name = os.path.basename(path)

    def read(self):
        ok, frame = self.capture.read()
        if not ok:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self.index = 0
            ok, frame = self.capture.read()
            if not ok:
                raise InputError(f"{self.path}: no readable frame")
        self.index += 1
        rgb = square_crop(np.asarray(frame)[:, :, 2::-1].astype(np.float32))
        return Frame(rgb, f"{self.name} #{self.index}")

    def close(self):
        self.capture.release()


class DigitCanvas:
    """A black square drawn on with the mouse (white strokes), for digit nets like LeNet.

    The net sees the drawing normalised as MNIST digits are: the ink's bounding box
    scaled to fit 20/28 of the input, centred by its centre of mass.
    """

    live = True

    def __init__(self, size=300, net_hw=(28, 28), stroke=None):
        self.size = int(size)
        self.net_hw = tuple(int(v) for v in net_hw)
        self.stroke_width = int(stroke or max(3, round(self.size / 13)))
        self.canvas = np.zeros((self.size, self.size), np.uint8)
        self.version = 0
        self.last = None
        self.name = "digit canvas"

    def clear(self):
        self.canvas[...] = 0
        self.last = None
        self.version += 1

    def pen_down(self, x, y):
        self.last = (int(x), int(y))
        cv2.circle(self.canvas, self.last, self.stroke_width // 2, 255, -1, cv2.LINE_AA)
        self.version += 1

    def pen_move(self, x, y):
        if self.last is None:
            return self.pen_down(x, y)
        point = (int(x), int(y))
        cv2.line(self.canvas, self.last, point, 255, self.stroke_width, cv2.LINE_AA)
        self.last = point
        self.version += 1

    def pen_up(self):
        self.last = None

    def read(self):
        image = self.canvas.astype(np.float32)
        return Frame(np.repeat(image[:, :, None], 3, axis=2), self.name, net_image=mnist_normalise(self.canvas, self.net_hw))


def mnist_normalise(canvas, net_hw=(28, 28)):
    """A drawing (grey uint8, white ink) -> a digit framed like MNIST, (H, W) float 0-255."""
    h, w = net_hw
    out = np.zeros((h, w), np.float32)
    ys, xs = np.nonzero(canvas > 0)
    if not len(ys):
        return out
    crop = canvas[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    box = 20.0 / 28.0 * min(h, w)
    scale = box / max(crop.shape)
    nh, nw = max(1, int(round(crop.shape[0] * scale))), max(1, int(round(crop.shape[1] * scale)))
    small = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA)
    total = float(small.sum())
    if total <= 0:
        return out
    cy = float((small.sum(axis=1) * np.arange(nh)).sum()) / total
    cx = float((small.sum(axis=0) * np.arange(nw)).sum()) / total
    top = int(round(h / 2.0 - 0.5 - cy))
    left = int(round(w / 2.0 - 0.5 - cx))
    top, left = min(max(0, top), h - nh), min(max(0, left), w - nw)
    out[top:top + nh, left:left + nw] = small
    return out


# -- the fetcher -------------------------------------------------------------------------------------
class InputFetcher(HeartbeatWorker):
    """DeepVis's input updater: static files or a live source, with freeze/next/previous.

    Call :meth:`step` (the input thread does it every ``sleep`` seconds, the headless
    driver once per frame); read the newest frame with :meth:`get_frame`.
    """

    def __init__(self, static=None, live=None, stretch=False, sleep=1.0 / 20, heartbeat_required=15.0):
        self.static = static
        self.live = live
        self.static_mode = static is not None or live is None
        self.stretch = bool(stretch)
        self.sleep = float(sleep)
        self.frozen = False
        self.static_idx = 0
        self.error = None
        self._loaded = None  # (idx, stretch) of the loaded static file
        self._live_version = None
        self._last_live = None  # the newest live frame, shown again when returning to a frozen input
        self._repush = False
        self._frame = None
        self._frame_idx = 0
        self._shown = None  # the name of an image given to show(), while it is the frame
        self._lock = threading.Lock()  # the published frame
        self._keys_lock = threading.Lock()  # mode, index, freeze
        self._init_worker(heartbeat_required)

    # -- keys --------------------------------------------------------------------------------
    def handle(self, tag):
        """Apply a base key tag; return a message for the status line (or None)."""
        with self._keys_lock:
            return self._handle(tag)

    def _handle(self, tag):
        if tag == "freeze_cam":
            if self.live is None:
                return "no live input to freeze"
            self.frozen = not self.frozen
            return "live input frozen" if self.frozen else "live input running"
        if tag == "toggle_input_mode":
            if self.live is None:
                return "no live input (camera, video or canvas)"
            if self.static is None and not self.static_mode:
                return "no static files to switch to"
            self.static_mode = not self.static_mode
            self._loaded = None
            self._live_version = None
            self._repush = not self.static_mode
            return None
        if tag in ("static_file_increment", "static_file_decrement"):
            if self.static is None:
                return "no static files"
            if not self.static_mode:
                self.static_mode = True  # from live input: just switch, as DeepVis
            else:
                refresh = getattr(self.static, "refresh", None)
                if refresh is not None:
                    refresh()  # DeepVis re-listed the folder on every step
                self.static_idx += 1 if tag == "static_file_increment" else -1
                self.static_idx %= len(self.static)
            self._loaded = None
            return None
        if tag == "stretch_mode":
            self.stretch = not self.stretch
            self._loaded = None
            return "stretch static files" if self.stretch else "crop static files"
        return None

    def use_live(self):
        """Switch to the live source (drawing on the canvas does this)."""
        with self._keys_lock:
            if self.live is not None and self.static_mode:
                self.static_mode = False
                self._live_version = None
                self._repush = True

    def show(self, image, name):
        """Publish an image from outside the sources (an upload), squared as static files are.

        It stays until the next static-file key, a new live frame or a mode switch.
        """
        frame = Frame(_squared(image, self.stretch), name)
        with self._keys_lock:
            if not self.static_mode and getattr(self.live, "version", None) is None:
                self.frozen = True  # a camera or video would replace it at once (a canvas: at the next stroke)
        with self._lock:
            self._frame = frame
            self._frame_idx += 1
            self._shown = name

    # -- frames --------------------------------------------------------------------------------
    def step(self):
        """Read one frame if there is something new; errors go to ``self.error`` and are skipped."""
        with self._keys_lock:  # decide under the lock, read the file or device outside it
            static_mode, idx, stretch = self.static_mode, self.static_idx, self.stretch
            repush = False
            if static_mode:
                if self.static is None or self._loaded == (idx, stretch):
                    return False
                self._loaded = (idx, stretch)  # even on failure: do not retry a bad file in a loop
            else:
                # back on a frozen live input: its frozen frame is shown again (DeepVis)
                repush, self._repush = self._repush and self.frozen and self._last_live is not None, False
                version = getattr(self.live, "version", None)
                if not repush and (self.frozen or (version is not None and version == self._live_version)):
                    return False
                self._live_version = version
        if repush:
            frame = self._last_live
        else:
            try:
                frame = self.static.load(idx, stretch) if static_mode else self.live.read()
            except (InputError, cv2.error, OSError, ValueError) as err:
                self.error = str(err).splitlines()[0] if str(err) else type(err).__name__
                return False
            if not static_mode:
                self._last_live = frame
        self.error = None
        with self._lock:
            self._frame = frame
            self._frame_idx += 1
            self._shown = None
        return True

    def get_frame(self):
        """(index, Frame) of the newest frame; the index grows with every new frame."""
        with self._lock:
            return self._frame_idx, self._frame

    def describe(self):
        if self._shown is not None:
            return self._shown
        if self.static_mode and self.static is not None:
            return f"{self.static.name(self.static_idx)} ({self.static_idx + 1}/{len(self.static)})"
        if self.live is not None:
            frame = self.get_frame()[1]
            name = frame.name if frame is not None else self.live.name
            return name + (" (frozen)" if self.frozen else "")
        return ""

    # -- thread ------------------------------------------------------------------------------------
    thread_name = "caffevis-input"

    def stop(self, timeout=1.0):
        super().stop(timeout)
        for src in (self.live,):
            close = getattr(src, "close", None)
            if close:
                close()

    def _run(self):
        while not self._quit:
            if self.beats_missed():
                break  # the UI stopped beating: leave
            self.step()
            time.sleep(self.sleep)
