"""The live viewer: threads, keys, mouse, and the OpenCV window or the headless driver.

Threads as DeepVis: the UI loop (this module; OpenCV window, keys, drawing), the input
thread (:class:`~caffevis.viewer.sources.InputFetcher`), the compute thread
(:class:`~caffevis.viewer.compute.ComputeWorker`) and the jpg loader
(:class:`~caffevis.viewer.jpgvis.JpgVisLoader`). Each worker stops by itself when the UI
stops sending heartbeats. The UI never waits for compute: it draws the newest results,
and back results that no longer match the selection are drawn stale.

Headless (:meth:`LiveViewer.run_headless`) drives the same objects from a key script:
per frame it applies one event, reads one input frame, waits until compute and the jpg
loader are idle, renders and saves the window as PNG.
"""
from __future__ import annotations

import copy
import json
import os
import threading
import time

import cv2
import numpy as np

from ..errors import InputError
from . import render as R
from .compute import Computer, ComputeWorker
from .jpgvis import NOT_FOUND, JpgVisLoader
from .keys import KeyTable, parse_key_script
from .state import ViewerState

WINDOW_TITLE = "caffevis live"
BASE_TAGS = ("freeze_cam", "toggle_input_mode", "static_file_increment", "static_file_decrement",
             "stretch_mode")


class LiveViewer:
    """The viewer application.

    Parameters
    ----------
    config : ViewerConfig
    net : caffevis.model.Net
    preprocessor : caffevis.preprocess.Preprocessor
    fetcher : InputFetcher
    labels : list of str, optional
    canvas : DigitCanvas, optional
        Drawn on with the mouse in the input pane.
    engine : str, optional
        Back-pass engine for :func:`caffevis.backward.backward` (None: its default).
    """

    def __init__(self, config, net, preprocessor, fetcher, labels=None, canvas=None, engine=None):
        self.config = config
        self.net = net
        self.fetcher = fetcher
        self.labels = labels
        self.canvas = canvas
        self.keys = KeyTable()
        layers = config.visible_layers(net.blob_names)
        units = {b: int(net.blob_shapes[b][1]) if len(net.blob_shapes[b]) > 1 else 1 for b in layers}
        self.state = ViewerState(layers, units, config)
        self.lock = threading.RLock()
        self.next_frame = None
        self.last_key_time = 0.0
        self.drawing_stale = True
        # DeepVis shows a new input at once, before its results; the web viewer draws the input
        # the shown results came from (its frames are drawn while the next forward runs).
        self.input_pane_follows_results = False
        self.quit = False
        self.layout = R.Layout()
        self.computer = Computer(net, preprocessor, lrn=config.caffevis_back_lrn, engine=engine)
        self.worker = ComputeWorker(self, self.computer, pause_after_keys=config.caffevis_pause_after_keys,
                                    idle_sleep=config.caffevis_frame_wait_sleep,
                                    heartbeat_required=config.caffevis_heartbeat_required)
        self.jpg = None
        if config.caffevis_unit_jpg_dir:
            self.jpg = JpgVisLoader(config.caffevis_unit_jpg_dir, config.caffevis_jpg_cache_size,
                                    stack_vert=config.caffevis_jpgvis_stack_vert,
                                    sleep=config.caffevis_jpg_load_sleep,
                                    heartbeat_required=config.caffevis_heartbeat_required,
                                    on_loaded=lambda key: self.mark_stale())
        self._drawing = False  # pen down on the canvas
        self._frame_seen = 0
        self._pending_frame = None

    # -- events -----------------------------------------------------------------------------------
    def mark_stale(self):
        self.drawing_stale = True

    def on_compute_done(self):
        self.drawing_stale = True

    def handle_key(self, code):
        """Apply one OpenCV key code. Returns the tag (None when ignored or unbound)."""
        tag = self.keys.decode(code)
        if tag is None:
            if not self.keys.is_ignored(code):
                with self.lock:
                    self.state.message = f"key {code:#x} is not bound (h for help)"
                    self.drawing_stale = True
            return None
        with self.lock:
            self.last_key_time = time.time()
            self.state.message = None
            if tag == "quit":
                self.quit = True
            elif tag == "help_mode":
                self.state.help_mode = not self.state.help_mode
            elif tag == "debug_level":
                self.state.debug_level = (self.state.debug_level + 1) % 3
            elif tag == "clear_canvas":
                if self.canvas is not None:
                    self.canvas.clear()
                    self.fetcher.use_live()
                else:
                    self.state.message = "no digit canvas (a 1-channel net has one)"
            elif tag in BASE_TAGS:
                self.state.message = self.fetcher.handle(tag)
            else:
                self.state.handle(tag)
            self.drawing_stale = True
        return tag

    def handle_mouse(self, event, x, y, flags=0):
        """Mouse: click a layer name or a tile to select it; draw on the canvas in the input pane."""
        inp = self.config.pane("input")
        in_input = inp is not None and inp[0] <= y < inp[0] + inp[2] and inp[1] <= x < inp[1] + inp[3]
        with self.lock:
            if self.canvas is not None and (in_input or self._drawing):
                cx = (x - inp[1]) * self.canvas.size / float(inp[3])
                cy = (y - inp[0]) * self.canvas.size / float(inp[2])
                if event == cv2.EVENT_LBUTTONDOWN:
                    self.fetcher.use_live()
                    self.canvas.pen_down(cx, cy)
                    self._drawing = True
                elif event == cv2.EVENT_MOUSEMOVE and self._drawing and flags & cv2.EVENT_FLAG_LBUTTON:
                    self.canvas.pen_move(cx, cy)
                elif event == cv2.EVENT_LBUTTONUP:
                    self.canvas.pen_up()
                    self._drawing = False
                elif event == cv2.EVENT_RBUTTONDOWN and in_input:
                    self.canvas.clear()
                    self.fetcher.use_live()
                self.drawing_stale = True
                return
            if event != cv2.EVENT_LBUTTONDOWN:
                return
            hit = R.hit_test(self.layout, self.state, x, y)
            if hit is None:
                return
            kind, idx = hit
            if kind == "layer":
                self.state.select_layer(idx)
            else:
                self.state.select_unit(idx)
            self.last_key_time = time.time()
            self.drawing_stale = True

    # -- frames -----------------------------------------------------------------------------------
    def poll_input(self, since_keypress=None):
        """Hand a new input frame to the compute thread (after DeepVis's keypress pause)."""
        idx, frame = self.fetcher.get_frame()
        with self.lock:
            if idx != self._frame_seen and frame is not None:
                self._frame_seen = idx
                self._pending_frame = frame
                self.drawing_stale = True  # the input pane shows it right away
            wait = self.config.keypress_pause_handle_iterations
            if self._pending_frame is not None and (since_keypress is None or since_keypress >= wait
                                                    or self.worker.latest is None):
                self.next_frame = self._pending_frame
                self._pending_frame = None

    def pane_images(self):
        """The images the renderer needs now; queues jpg loads that are missing."""
        _, frame = self.fetcher.get_frame()
        latest = self.worker.latest
        if self.input_pane_follows_results and latest is not None and latest.frame is not None:
            frame = latest.frame
        images = {"input": None if frame is None else frame.image}
        st = self.state
        if self.jpg is not None:
            cfg = self.config
            layer = cfg.caffevis_jpgvis_remap.get(st.layer, st.layer)
            if R.jpgvis_shown(st, cfg) and cfg.pane("caffevis_jpgvis"):
                hw = tuple(cfg.pane("caffevis_jpgvis")[2:])
                images["jpgvis"] = self.jpg.lookup(("unit", layer, st.selected_unit, hw))
            if st.pattern_mode:
                if layer in cfg.caffevis_jpgvis_layers:
                    images["pattern"] = self.jpg.lookup(("pattern", layer, st.n_units))
                else:
                    images["pattern"] = NOT_FOUND
        elif st.pattern_mode:
            images["pattern"] = NOT_FOUND
        return images

    def status_message(self):
        """Errors of the input and compute threads take the status line's message slot."""
        for err in (self.fetcher.error, self.worker.error):
            if err:
                return err
        return None

    def _state_for_drawing(self):
        """A copy of the state with thread errors added to its message (call under the lock)."""
        state = copy.copy(self.state)
        err = self.status_message()
        if err:
            state.message = f"{state.message} | {err}" if state.message else err
        return state

    def render(self, fps=None):
        """The window image now (the newest results; never waits for compute)."""
        return self.render_with_state(fps)[0]

    def render_with_state(self, fps=None):
        """(window image, the state copy it was drawn from)."""
        with self.lock:
            images = self.pane_images()
            latest, back = self.worker.latest, self.worker.back
            state = self._state_for_drawing()
            self.drawing_stale = False
        blobs = None if latest is None else {k: v[0] for k, v in latest.blobs.items()}
        img = R.render(state, blobs, back, images, self.config, labels=self.labels, fps=fps, layout=self.layout)
        return img, state

    def top5(self):
        """[(label, probability)] of the prob layer for the newest frame ([] without one)."""
        layer, latest = self.config.caffevis_prob_layer, self.worker.latest
        if not layer or latest is None or layer not in latest.blobs:
            return []
        return [(name, round(p, 4)) for name, p in R.top_classes(latest.blobs[layer][0], self.labels)]

    def heartbeat(self):
        for worker in (self.fetcher, self.worker, self.jpg):
            if worker is not None:
                worker.heartbeat()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, input_thread=True):
        self.heartbeat()
        if input_thread:
            self.fetcher.start()
        self.worker.start()
        if self.jpg is not None:
            self.jpg.start()

    def stop(self):
        self.quit = True
        self.worker.stop()
        self.fetcher.stop()
        if self.jpg is not None:
            self.jpg.stop()

    def check_workers(self):
        """End the run (InputError) when a worker thread died: its work would never come."""
        for worker in (self.fetcher, self.worker, self.jpg):
            if worker is not None:
                worker.check_running()

    def idle(self):
        """No frame waiting, no compute running or needed, no jpg load pending."""
        with self.lock:
            busy = self.next_frame is not None or self._pending_frame is not None or self.worker.busy
            back_needed = self.state.back_key is not None and self.state.back_stale and self.worker.latest is not None
        jpg_busy = self.jpg is not None and not self.jpg.idle
        return not (busy or back_needed or jpg_busy)

    def wait_idle(self, timeout=300.0):
        """Block until :meth:`idle` (the headless driver's "wait for compute to finish")."""
        end = time.time() + timeout
        while not self.idle():
            self.check_workers()
            if time.time() > end:
                raise InputError(f"viewer: compute did not finish within {timeout:.0f} s")
            self.heartbeat()
            time.sleep(0.002)

    # -- the window -------------------------------------------------------------------------------
    def run_window(self, save_dir=None, max_seconds=None):
        """The interactive loop (DeepVis's main loop) until ``q``, Esc-less window close, or time-out."""
        cfg = self.config
        cv2.namedWindow(WINDOW_TITLE, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        cv2.setMouseCallback(WINDOW_TITLE, lambda e, x, y, f, p: self.handle_mouse(e, x, y, f))
        self.start()
        since_keypress, since_redraw, first = 999, 999, True
        started, shown = time.time(), 0
        try:
            while not self.quit:
                self.heartbeat()
                self.check_workers()
                code = cv2.waitKeyEx(max(1, int(cfg.main_loop_sleep_ms)))
                if code != -1 and self.handle_key(code) is not None:
                    since_keypress = 0
                self.poll_input(since_keypress)
                if self.drawing_stale and (first or since_keypress >= cfg.keypress_pause_redraw_iterations
                                           or since_redraw >= cfg.redraw_at_least_every):
                    t0 = time.perf_counter()
                    img = self.render(fps=self.worker.fps())
                    cv2.imshow(WINDOW_TITLE, img)
                    if self.state.debug_level:  # key 5: timing prints, as DeepVis
                        fps = self.worker.fps()
                        print(f"render+show {1000 * (time.perf_counter() - t0):.1f} ms"
                              + (f", compute {fps:.1f} fps" if fps else ""), flush=True)
                    if save_dir:
                        cv2.imwrite(os.path.join(save_dir, f"window_{shown:05d}.png"), img)
                    shown += 1
                    since_redraw, first = 0, False
                since_keypress += 1
                since_redraw += 1
                if cv2.getWindowProperty(WINDOW_TITLE, cv2.WND_PROP_VISIBLE) < 1 and not first:
                    break  # the window was closed
                if max_seconds is not None and time.time() - started > max_seconds:
                    break
        finally:
            self.stop()
            cv2.destroyWindow(WINDOW_TITLE)
        return shown

    # -- headless ---------------------------------------------------------------------------------
    def apply_event(self, event):
        kind = event[0]
        if kind == "key":
            self.handle_key(event[1])
        elif kind in ("click", "rclick"):
            down, up = ((cv2.EVENT_LBUTTONDOWN, cv2.EVENT_LBUTTONUP) if kind == "click"
                        else (cv2.EVENT_RBUTTONDOWN, cv2.EVENT_RBUTTONUP))
            self.handle_mouse(down, event[1], event[2])
            self.handle_mouse(up, event[1], event[2])
        elif kind == "draw":
            pts = event[1]
            self.handle_mouse(cv2.EVENT_LBUTTONDOWN, *pts[0], cv2.EVENT_FLAG_LBUTTON)
            for x, y in pts[1:]:
                self.handle_mouse(cv2.EVENT_MOUSEMOVE, x, y, cv2.EVENT_FLAG_LBUTTON)
            self.handle_mouse(cv2.EVENT_LBUTTONUP, *pts[-1])

    def run_headless(self, keys="", frames=None, save_dir=None, show_fps=False, progress=None):
        """Drive the viewer from a key script; return one record per frame.

        Parameters
        ----------
        keys : str
            Key script (see :func:`caffevis.viewer.keys.parse_key_script`).
        frames : int, optional
            Frames to render: frame 0 before any event, then one per event; more frames
            than events add frames with no event (live sources advance). Default: one
            more than the number of events.
        save_dir : str, optional
            Where ``frame_NNNN.png`` and ``frames.json`` (state and status per frame) go.
        show_fps : bool
            Put the measured FPS in the status line (off by default: reproducible images).
        progress : callable, optional
            Called with the frame index after each frame.

        Returns
        -------
        list of dict
            ``image`` (BGR uint8), ``state`` (:meth:`ViewerState.snapshot`), ``status``
            (the status text), ``input`` (the input's description), ``top5`` ([(label, p)]
            of ``caffevis_prob_layer``).
        """
        events = parse_key_script(keys) if isinstance(keys, str) else list(keys)
        n = len(events) + 1 if frames is None else int(frames)
        self.worker.pause_after_keys = 0.0  # scripted keys come all at once; nothing to debounce
        if save_dir:
            os.makedirs(save_dir, exist_ok=True)
        records = []
        self.start(input_thread=False)
        try:
            for i in range(n):
                self.heartbeat()
                if 0 < i <= len(events):
                    self.apply_event(events[i - 1])
                if self.quit:
                    break
                self.fetcher.step()
                self.poll_input()
                self.wait_idle()
                self.render()  # queues the jpg loads this frame needs
                self.wait_idle()
                fps = self.worker.fps() if show_fps else None
                img = self.render(fps=fps)
                with self.lock:
                    state = self._state_for_drawing()
                status, snap = R.status_text(state, fps), state.snapshot()
                rec = {"image": img, "state": snap, "status": status, "input": self.fetcher.describe(),
                       "top5": self.top5()}
                records.append(rec)
                if save_dir:
                    cv2.imwrite(os.path.join(save_dir, f"frame_{i:04d}.png"), img)
                if progress:
                    progress(i)
        finally:
            self.stop()
        if save_dir:
            meta = [{k: v for k, v in r.items() if k != "image"} for r in records]
            with open(os.path.join(save_dir, "frames.json"), "w", encoding="utf-8") as f:
                json.dump({"window_panes": self.config.window_panes, "frames": meta}, f, indent=1, default=_jsonable)
        return records


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)
