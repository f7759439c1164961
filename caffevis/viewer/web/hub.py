"""The web viewer's shared side: one net, a compute and a draw thread, one :class:`LiveViewer` per tab.

Each browser tab is a :class:`Tab` holding its own :class:`~caffevis.viewer.app.LiveViewer`
(state, input fetcher, digit canvas) built on the shared
:class:`~caffevis.viewer.launch.ViewerParts`. The :class:`Hub`'s compute thread visits
the tabs in turn and gives each at most one compute pass (forward and/or back) per round;
its draw thread visits them in turn and gives each at most one rendered frame per round,
so a busy tab cannot starve another, and one tab's next forward runs while its last
frame is drawn and encoded. The per-tab work that is waiting is one frame slot (newest
wins), which is the bounded compute queue.

Frames are the window image of :func:`caffevis.viewer.render.render`, cut into the panes
that changed since the last frame the tab was sent, JPEG-encoded (:func:`encode_update`).
A tab is rendered only while it has fewer than :data:`MAX_UNACKED` frames not yet drawn
by the page: a slow or backgrounded tab gets the newest frame when it catches up, and
holds at most that many frames in memory.
"""
from __future__ import annotations

import json
import struct
import threading

import cv2
import numpy as np

from .. import render as R
from ..launch import viewer_from_parts
from . import JPEG_QUALITY

#: Frames sent to a tab and not yet acknowledged by the page before rendering for it pauses.
MAX_UNACKED = 2
#: Browser tabs served at once (each holds a viewer state, a canvas and frame buffers).
MAX_TABS = 16


def changed_rects(prev, img, panes):
    """(x, y, w, h) boxes of ``img`` to send so that ``prev`` becomes ``img``.

    The window's panes that differ; the whole window when ``prev`` is None or a pixel
    outside every pane changed (the help overlay darkens everything).
    """
    full = [(0, 0, img.shape[1], img.shape[0])]
    if prev is None or prev.shape != img.shape:
        return full
    changed = np.not_equal(img, prev).reshape(img.shape[0], -1)  # (H, W * C): no reduction over C
    if not changed.any():
        return []
    c = img.shape[2] if img.ndim == 3 else 1
    blocks = [(changed[i:i + h, j * c:(j + w) * c], (j, i, w, h)) for i, j, h, w in panes.values()]
    rects = [rect for block, rect in blocks if block.any()]
    for block, _ in blocks:
        block[...] = False  # what is left is outside every pane
    outside = changed
    return full if outside.any() else rects


def encode_update(header, img, rects, quality=JPEG_QUALITY):
    """One WebSocket message: 4-byte big-endian header length, JSON header, the JPEG of each rect.

    ``header['rects']`` is set to ``[[x, y, w, h, nbytes], ...]`` in the order of the JPEGs.
    """
    blobs, meta = [], []
    for x, y, w, h in rects:
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(img[y:y + h, x:x + w]),
                                [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        blobs.append(data.tobytes())
        meta.append([int(x), int(y), int(w), int(h), len(blobs[-1])])
    head = json.dumps(dict(header, rects=meta), default=_plain).encode("utf-8")
    return struct.pack(">I", len(head)) + head + b"".join(blobs)


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


class Tab:
    """One browser tab: its viewer and what it was last sent.

    ``send`` is called (from the draw thread) with each encoded frame; it must not block.
    """

    def __init__(self, tab_id, viewer, send):
        self.id = tab_id
        self.viewer = viewer
        self.send = send
        self.seq = 0
        self.acked = 0
        self.prev = None  # the window image the page shows (after the frames sent)
        self.closed = False
        self.urgent = False  # a key or click changed the state: redraw before the next tab's turn
        self.drawn_results = (None, None)  # the compute results (forward, back) of the last frame
        self.visited = False  # by the compute thread: its first input has been handed over

    def ready(self):
        """Whether the page can take another frame."""
        return not self.closed and self.seq - self.acked < MAX_UNACKED

    def ack(self, seq):
        if isinstance(seq, int) and self.acked < seq <= self.seq:
            self.acked = seq

    def frame_message(self, provider, quality=JPEG_QUALITY):
        """Render the window; the message with what changed and the state it shows."""
        v = self.viewer
        fps = v.worker.fps()
        self.drawn_results = (v.worker.latest, v.worker.back)  # before drawing: newer ones draw again
        img, state = v.render_with_state(fps)
        rects = changed_rects(self.prev, img, v.config.window_panes)
        self.prev = img
        self.seq += 1
        header = {"t": "frame", "seq": self.seq, "shape": list(img.shape[:2]), "state": state.snapshot(),
                  "status": R.status_text(state, fps), "top5": v.top5(), "input": v.fetcher.describe(),
                  "provider": provider, "compute_fps": fps, "panes": v.config.window_panes}
        return encode_update(header, img, rects, quality)


class Hub:
    """The shared net and the compute and draw threads serving every tab.

    Parameters
    ----------
    parts : ViewerParts
        Opened once (:func:`caffevis.viewer.launch.open_parts`); shared by every tab.
    video : str, optional
        A video file each tab plays as its live input.
    engine : str, optional
        Back-pass engine.
    jpeg_quality : int
        JPEG quality of the frames.
    """

    def __init__(self, parts, video=None, engine=None, jpeg_quality=JPEG_QUALITY):
        self.parts = parts
        self.jpeg_quality = int(jpeg_quality)
        self.video = video
        self.engine = engine
        self.tabs = {}
        self._closed = []  # tabs whose viewers are to be stopped
        self._lock = threading.Lock()  # the tab table
        self._wake = threading.Event()  # the compute thread: new input, a key, a tab opened or closed
        self._wake_draw = threading.Event()  # the draw thread: new results, a key, an acknowledged frame
        self._quit = False
        self._next_id = 0
        self.threads = []

    @property
    def provider(self):
        return self.parts.net.provider

    # -- tabs -----------------------------------------------------------------------------------
    def open_tab(self, send):
        """A new tab with its own viewer; None when :data:`MAX_TABS` are open."""
        with self._lock:
            if len(self.tabs) >= MAX_TABS:
                return None
            self._next_id += 1
            tab_id = self._next_id
        viewer = viewer_from_parts(self.parts, video=self.video, headless=True, engine=self.engine)
        viewer.worker.pause_after_keys = 0.0  # every tab gets its turn; nothing to debounce
        viewer.input_pane_follows_results = True
        if viewer.jpg is not None:
            viewer.jpg.start()
        tab = Tab(tab_id, viewer, send)
        with self._lock:
            self.tabs[tab_id] = tab
        self.wake()
        return tab

    def close_tab(self, tab):
        """Drop a tab; its viewer is stopped by the compute thread (which may be reading its video now)."""
        tab.closed = True
        with self._lock:
            self.tabs.pop(tab.id, None)
            self._closed.append(tab)
        self.wake()

    def _stop_closed(self):
        with self._lock:
            closed, self._closed = self._closed, []
        for tab in closed:
            tab.viewer.stop()

    def wake(self, tab=None):
        """New work: ``tab`` (when given) is redrawn before the next tab's turn."""
        if tab is not None:
            tab.urgent = True
        self._wake.set()
        self._wake_draw.set()

    # -- the engine threads -----------------------------------------------------------------------
    def start(self):
        # Two threads, so that the next frame's forward runs while this one is drawn and encoded.
        self.threads = [threading.Thread(target=loop, name=name, daemon=True)
                        for loop, name in ((self._compute_loop, "caffevis-web-compute"),
                                           (self._draw_loop, "caffevis-web-draw"))]
        for thread in self.threads:
            thread.start()
        return self

    def stop(self, timeout=3.0):
        self._quit = True
        self._wake.set()
        self._wake_draw.set()
        for thread in self.threads:
            thread.join(timeout)
        for tab in list(self.tabs.values()):
            self.close_tab(tab)
        self._stop_closed()

    def _round(self, order):
        """The open tabs, starting at a different one each round."""
        with self._lock:
            tabs = list(self.tabs.values())
        k = order % len(tabs) if tabs else 0
        return tabs[k:] + tabs[:k]

    def _compute_loop(self):
        order = 0
        while not self._quit:
            self._wake.clear()
            self._stop_closed()  # here: this thread is the one reading the viewers' inputs
            order += 1
            did = False
            for tab in self._round(order):
                did = self._visit(tab, self.compute_tab) or did
            if not did:
                self._wake.wait(0.02)

    def _draw_loop(self):
        order = 0
        while not self._quit:
            self._wake_draw.clear()
            order += 1
            tabs = self._round(order)
            did = False
            for tab in tabs:
                for waiting in tabs:  # before each turn: redraw the tabs a key or click changed
                    if waiting.urgent:
                        waiting.urgent = False
                        did = self._visit(waiting, self.draw_tab, True) or did
                did = self._visit(tab, self.draw_tab) or did
            if not did:
                self._wake_draw.wait(0.02)

    @staticmethod
    def _visit(tab, step, *args):
        try:
            return step(tab, *args)
        except Exception as err:  # one tab's failure is its own: report it and go on
            tab.viewer.state.message = f"server error: {type(err).__name__}: {err}"
            return False

    def draw_tab(self, tab, urgent=False):
        """A frame of the tab's newest state and results, when they changed and the page can take one.

        New results are drawn (with the input they came from) even while the next forward
        runs. A change without new results while a forward or back pass is queued or running
        (a new input: its results are coming) waits for them, unless ``urgent`` (a key or click);
        so does a new tab's first frame until the compute thread has had its first look at it.
        """
        v = tab.viewer
        if tab.closed or not (tab.ready() and v.drawing_stale):
            return False
        new_results = any(a is not b for a, b in zip(tab.drawn_results, (v.worker.latest, v.worker.back)))
        pending = not tab.visited or v.worker.busy or v.next_frame is not None
        if pending and not (urgent or new_results):
            return False
        tab.send(tab.frame_message(self.provider, self.jpeg_quality))
        return True

    def compute_tab(self, tab):
        """One round of compute for one tab: new input, one forward and/or back pass. True when work was done."""
        v = tab.viewer
        if tab.closed:
            return False
        v.heartbeat()
        if tab.ready():  # a live source (video) is read only while the page keeps up
            v.fetcher.step()
        v.poll_input()
        did = v.worker.step()
        tab.visited = True
        if did or v.drawing_stale:
            self._wake_draw.set()
        return did
