"""The viewer's threads: workers leave when the UI's heartbeats stop, and the UI never
waits for a back pass (it draws the stale colour meanwhile), on LeNet with real weights."""
import os
import threading
import time

import numpy as np
import pytest

from caffevis.viewer.compute import ComputeWorker
from caffevis.viewer.jpgvis import JpgVisLoader
from caffevis.viewer.launch import build_viewer, open_settings
from caffevis.viewer.sources import FileList, InputFetcher
from conftest import REPO, shared_path


class _IdleApp:
    """The little of the app a compute worker reads: no frame, back off."""

    class state:
        back_key = None
        back_stale = False

    def __init__(self):
        self.lock = threading.RLock()
        self.next_frame = None
        self.last_key_time = 0.0

    def on_compute_done(self):
        pass


def _alive_after(workers, seconds, beat):
    end = time.time() + seconds
    while time.time() < end:
        for w in workers if beat else ():
            w.heartbeat()
        time.sleep(0.02)
    return [w.thread.is_alive() for w in workers]


def test_workers_leave_when_heartbeats_stop(tmp_path):
    files = FileList.from_directory(shared_path("data", "images", "dvt_input_images"))
    workers = [InputFetcher(static=files, sleep=0.01, heartbeat_required=0.3),
               JpgVisLoader(str(tmp_path), 10 * 2 ** 20, sleep=0.01, heartbeat_required=0.3),
               ComputeWorker(_IdleApp(), None, idle_sleep=0.01, heartbeat_required=0.3)]
    for w in workers:
        w.heartbeat()
        w.start()
    try:
        assert _alive_after(workers, 0.8, beat=True) == [True] * 3  # beating: they stay
        assert _alive_after(workers, 1.0, beat=False) == [False] * 3  # no beats: they leave
    finally:
        for w in workers:
            w.stop()


@pytest.fixture
def lenet_viewer():
    shared_path("data", "mnist", "t10k-images-idx3-ubyte.gz")
    settings = open_settings(os.path.join(REPO, "settings", "lenet.yaml"))
    if not os.path.isfile(settings.caffevis_network_weights or ""):
        shared_path("models", "lenet_caffe", "lenet_iter_10000.caffemodel")
    return build_viewer(settings, canvas=False, headless=True)


def test_ui_draws_stale_while_the_back_pass_runs(lenet_viewer):
    viewer = lenet_viewer
    viewer.worker.pause_after_keys = 0.0
    computer, release = viewer.computer, threading.Event()
    backward = computer.backward

    def slow_backward(fwd, key):
        release.wait(20)  # held until the UI has drawn
        return backward(fwd, key)

    computer.backward = slow_backward
    viewer.start(input_thread=False)
    try:
        viewer.fetcher.step()
        viewer.poll_input()
        viewer.wait_idle(30)  # the forward pass of the first digit
        viewer.handle_key(ord("k"))
        viewer.handle_key(ord("n"))  # back on: the worker starts the (held) back pass
        deadline = time.time() + 20
        while not viewer.worker.busy and time.time() < deadline:
            viewer.heartbeat()
            time.sleep(0.01)
        assert viewer.worker.busy
        t0 = time.perf_counter()
        win = viewer.render()
        assert time.perf_counter() - t0 < 2.0  # drew without waiting for the back pass
        i, j, h, w = viewer.config.pane("caffevis_back")
        assert (win[i:i + h, j:j + w] == viewer.config.stale_background).all()
        release.set()
        viewer.wait_idle(30)
        back = viewer.render()[i:i + h, j:j + w].astype(float)
        assert back.std() > 3 and not (back == viewer.config.stale_background).all(axis=2).any()
    finally:
        release.set()
        viewer.stop()
        assert np.isfinite(viewer.worker.fps() or 0.0)
