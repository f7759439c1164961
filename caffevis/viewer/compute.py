"""The viewer's model work: forward on each new frame, back pass of the selected unit.

As DeepVis's Caffe thread: the back pass is seeded with the unit's own activation map
(:meth:`caffevis.backward.Seed.channel_map`) at the layer named like the blob
(``start='layer'``), in backprop, deconv or guided mode; the diffs of every blob below
the seed come back for the layers pane (``a``), blobs above it are zero.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..backward import Seed, backward
from .render import BackResult
from .state import BACK_MODES
from .worker import HeartbeatWorker


@dataclass
class ForwardResult:
    """The blobs of one frame (batch of one), the input blob and the frame they came from."""

    data: np.ndarray  # (1, C, H, W) preprocessed input
    blobs: dict  # blob -> array with the batch axis
    frame: object = None  # the Frame (sources.Frame) preprocessed into ``data``


class Computer:
    """Forward and back passes for the viewer (no threads, no state)."""

    def __init__(self, net, preprocessor, lrn="derivative", engine=None):
        self.net = net
        self.preprocessor = preprocessor
        self.lrn = lrn
        self.engine = engine

    def forward(self, frame):
        """Preprocess a :class:`~caffevis.viewer.sources.Frame` and run the net."""
        image = frame.net_image if frame.net_image is not None else frame.image
        data = self.preprocessor.preprocess(image, mode="stretch")
        return ForwardResult(data, self.net.forward(data), frame)

    def backward(self, fwd, key):
        """Back pass for ``key`` = (back mode, layer, unit); a :class:`BackResult`."""
        mode, layer, unit = key
        seed = Seed.channel_map(layer, fwd.blobs[layer], unit)
        grad, diffs = backward(self.net, fwd.data, seed, mode=BACK_MODES[mode], lrn=self.lrn,
                               start="layer", engine=self.engine, blob_diffs=True)
        return BackResult(key, np.asarray(grad)[0], {k: np.asarray(v)[0] for k, v in diffs.items()})


class ComputeWorker(HeartbeatWorker):
    """DeepVis's compute thread: takes the newest frame, runs forward and back, publishes.

    The app owns ``lock``, ``state`` and the hand-over slot ``next_frame``; results go to
    ``latest`` (:class:`ForwardResult`) and ``back`` (:class:`BackResult`), then
    ``on_done()`` is called (the app marks the drawing stale).
    """

    def __init__(self, app, computer, pause_after_keys=0.1, idle_sleep=0.01, heartbeat_required=15.0):
        self.app = app
        self.computer = computer
        self.pause_after_keys = float(pause_after_keys)
        self.idle_sleep = float(idle_sleep)
        self.latest = None
        self.back = None
        self.busy = False
        self.error = None
        self.done_times = []
        self._init_worker(heartbeat_required)

    def step(self):
        """One compute pass if there is work; True when something was computed."""
        app = self.app
        with app.lock:
            if time.time() - app.last_key_time < self.pause_after_keys:
                return False
            frame = app.next_frame
            state = app.state
            back_key = state.back_key
            run_fwd = frame is not None
            run_back = back_key is not None and (run_fwd or state.back_stale) and \
                (run_fwd or self.latest is not None)
            if not (run_fwd or run_back):
                return False
            app.next_frame = None
            self.busy = True
        latest, back, error = self.latest, None, None
        try:
            if run_fwd:
                latest = self.computer.forward(frame)
            if run_back:
                back = self.computer.backward(latest, back_key)
        except Exception as err:  # a bad frame or an engine failure: report it and go on
            error = f"compute failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        with app.lock:
            self.latest = latest
            if back is not None:
                self.back = back
            if run_back and app.state.back_key == back_key:
                app.state.back_stale = False  # a failed pass is not retried until something changes
            self.error = error
            self.busy = False
            self.done_times = (self.done_times + [time.time()])[-2:]
        app.on_compute_done()
        return True

    def fps(self):
        """1 / (time between the last two computations), while the last is under 2 s old."""
        t = self.done_times
        if len(t) < 2 or time.time() - t[-1] > 2.0 or t[-1] <= t[-2]:
            return None
        return 1.0 / (t[-1] - t[-2])

    thread_name = "caffevis-compute"

    def stop(self, timeout=3.0):
        super().stop(timeout)

    def _run(self):
        while not self._quit:
            if self.beats_missed():
                break
            if not self.step():
                time.sleep(self.idle_sleep)
