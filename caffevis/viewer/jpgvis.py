"""Per-unit images from the ``unit_jpg_vis`` tree, loaded off the UI thread into a FIFO cache.

Layout (DeepVis's, produced by caffevis's optimizer and max-mining tools)::

    <unit_jpg_dir>/regularized_opt/<L>/<L>_NNNN_montage.jpg   2x2 montages of 3x3; bottom-left used
    <unit_jpg_dir>/regularized_opt/<L>/whole_layer.jpg         square sprite sheet (pattern mode)
    <unit_jpg_dir>/max_im/<L>/<L>_NNNN.jpg                     top-9 image patches (3x3 montage)
    <unit_jpg_dir>/max_deconv/<L>/<L>_NNNN.jpg                 their deconvs (3x3 montage)
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict

import cv2
import numpy as np

from ..images import read_bgr_or_none
from ..paths import blob_file_name
from . import tiles as T
from .worker import HeartbeatWorker

#: an empty array: "looked for, not found" (drawn as the window background)
NOT_FOUND = np.zeros((0,), np.uint8)


class FIFOLimitedArrayCache:
    """Thread-safe cache of arrays evicted in insertion order once ``max_bytes`` is exceeded."""

    def __init__(self, max_bytes):
        self.max_bytes = int(max_bytes)
        self._items = OrderedDict()  # key -> (value, nbytes)
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key, default=None):
        with self._lock:
            item = self._items.get(key)
        return default if item is None else item[0]

    def __contains__(self, key):
        with self._lock:
            return key in self._items

    def set(self, key, value):
        nbytes = int(value.nbytes)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size

    @property
    def nbytes(self):
        return self._bytes

    def __len__(self):
        return len(self._items)


def unit_paths(root, layer, unit):
    """The three files of a unit: optimized montage, top-9 patches, their deconvs."""
    name = blob_file_name(layer)
    return (os.path.join(root, "regularized_opt", name, f"{name}_{unit:04d}_montage.jpg"),
            os.path.join(root, "max_im", name, f"{name}_{unit:04d}.jpg"),
            os.path.join(root, "max_deconv", name, f"{name}_{unit:04d}.jpg"))


def whole_layer_path(root, layer):
    return os.path.join(root, "regularized_opt", blob_file_name(layer), "whole_layer.jpg")


def load_unit_stack(root, layer, unit, pane_hw, stack_vert=True):
    """The jpgvis pane image of a unit (BGR uint8), or NOT_FOUND when no file exists.

    Each found file is resized to a third of the pane (the optimized montage is cropped
    to its bottom-left quadrant first), the parts are stacked and fitted to the pane.
    """
    ph, pw = pane_hw
    part_hw = (ph // 3, pw) if stack_vert else (ph, pw // 3)
    parts = []
    for k, path in enumerate(unit_paths(root, layer, unit)):
        img = read_bgr_or_none(path)
        if img is None:
            continue
        if k == 0:
            try:
                img = T.crop_to_corner(img, 2)
            except ValueError:
                pass  # not a 2x2 montage: show it whole
        parts.append(cv2.resize(img, (part_hw[1], part_hw[0]), interpolation=cv2.INTER_AREA))
    if not parts:
        return NOT_FOUND
    stacked = np.concatenate(parts, axis=0 if stack_vert else 1)
    return T.resize_to_fit(stacked, pane_hw)


def load_pattern_sprites(root, layer, n_units):
    """Sprites (n, h, w, 3) BGR of ``whole_layer.jpg``, or NOT_FOUND when missing or malformed."""
    path = whole_layer_path(root, layer)
    img = read_bgr_or_none(path)
    if img is None:
        return NOT_FOUND
    try:
        return T.split_square_sprites(img, n_units)
    except ValueError:
        return NOT_FOUND


class JpgVisLoader(HeartbeatWorker):
    """Loads requested unit stacks and sprite sheets in a background thread.

    The UI calls :meth:`lookup` with a key; a miss returns None (draw stale) and queues
    the key; the thread loads it, caches it and calls ``on_loaded``.

    Keys: ``('unit', layer, unit, pane_hw)`` and ``('pattern', layer, n_units)``.
    """

    def __init__(self, root, cache_bytes, stack_vert=True, sleep=0.01, heartbeat_required=15.0, on_loaded=None):
        self.root = root
        self.cache = FIFOLimitedArrayCache(cache_bytes)
        self.stack_vert = stack_vert
        self.sleep = sleep
        self.on_loaded = on_loaded
        self._wanted = None
        self._lock = threading.Condition()
        self._busy = False
        self._init_worker(heartbeat_required)

    def lookup(self, key):
        """Cached value for ``key``; None (and a load request) on a miss."""
        value = self.cache.get(key)
        if value is not None:
            return value
        with self._lock:
            self._wanted = key
            self._lock.notify_all()
        return None

    def load(self, key):
        """Load one key now (the thread's work; also usable synchronously)."""
        if key[0] == "unit":
            _, layer, unit, pane_hw = key
            return load_unit_stack(self.root, layer, unit, pane_hw, self.stack_vert)
        _, layer, n_units = key
        return load_pattern_sprites(self.root, layer, n_units)

    def step(self):
        """Load the pending key, if any; return True when something was loaded."""
        with self._lock:
            key = self._wanted
            if key is None or key in self.cache:
                self._wanted = None
                return False
            self._busy = True
        try:
            try:
                value = self.load(key)
            except (OSError, ValueError, cv2.error):  # an unreadable tree: show nothing, keep running
                value = NOT_FOUND
            self.cache.set(key, value)
        finally:
            with self._lock:
                if self._wanted == key:
                    self._wanted = None
                self._busy = False
                self._lock.notify_all()
        if self.on_loaded:
            self.on_loaded(key)
        return True

    @property
    def idle(self):
        with self._lock:
            return self._wanted is None and not self._busy

    thread_name = "caffevis-jpgvis"

    def _request_quit(self):
        with self._lock:  # wake the thread waiting for a request
            self._quit = True
            self._lock.notify_all()

    def _run(self):
        while not self._quit:
            if self.beats_missed():
                break  # the UI is gone
            if not self.step():
                with self._lock:
                    if self._wanted is None and not self._quit:
                        self._lock.wait(self.sleep)
