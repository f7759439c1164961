"""Frames per second and key-to-frame latency of the web viewer, measured in a real browser.

:func:`measure_serve` opens tabs of a running server in headless chromium (Playwright),
plays a video in each (a new forward every frame, as with a webcam), and reads what the
page itself counts: frames drawn per second, and the time from sending a key to drawing
the first frame whose state shows it (``caffevis.keyLatency``).
"""
from __future__ import annotations

import statistics
import time

import cv2
import numpy as np

#: Debian's chromium (Playwright drives it; no browser is downloaded).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def write_noise_video(path, size=256, frames=60, seed=0):
    """A short MJPEG video of smooth random frames (the live input of the benchmark)."""
    rng = np.random.default_rng(seed)
    out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (size, size))
    if not out.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write an MJPEG video here")
    for _ in range(frames):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        out.write(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC))
    out.release()
    return path


def _open(browser, url, play=True):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(url)
    page.wait_for_function("window.caffevis && caffevis.frames > 0", timeout=60000)
    if play and "#" not in page.evaluate("caffevis.input"):  # on the static files: c switches to the video
        page.evaluate("caffevis.keyLatency('c')")
        page.wait_for_function("caffevis.input.includes('#')", timeout=60000)
    return page


def _select(page, layer):
    """Select ``layer`` with the ``o`` key, then its unit 0 (cursor on the units)."""
    for _ in range(32):
        if page.evaluate("caffevis.state.layer") == layer:
            break
        page.evaluate("caffevis.keyLatency('o')")
    page.evaluate("caffevis.keyLatency('ArrowDown')")


def _fps(page, seconds):
    f0, t0 = page.evaluate("[caffevis.frames, performance.now()]")
    time.sleep(seconds)
    f1, t1 = page.evaluate("[caffevis.frames, performance.now()]")
    return 1000.0 * (f1 - f0) / (t1 - t0)


def measure_serve(url, layer="conv5", seconds=5.0, tabs=4, presses=30, chromium=CHROMIUM):
    """Measure a running web viewer whose tabs play a video.

    Returns
    -------
    dict
        ``fps_forward`` (frames/s drawn by one tab, back pass off), ``fps_backprop``
        (live backprop of the selected unit), ``latency_ms`` (key-to-frame latencies in
        one playing tab of ``tabs`` open tabs, all playing), ``latency_idle_ms`` (the same,
        the other tabs on a still image), and their medians ``latency_median_ms``,
        ``latency_idle_median_ms``.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = _open(browser, url)
            _select(page, layer)
            _fps(page, 1.0)  # warm-up
            fwd = _fps(page, seconds)
            page.evaluate("caffevis.keyLatency('b')")  # live backprop of the selected unit
            _fps(page, 1.0)
            back = _fps(page, seconds)
            page.evaluate("caffevis.keyLatency('Escape')")
            _select(page, layer)
            lat = {}
            for play in (False, True):  # the other tabs on a still image, then all playing
                others = [_open(browser, url, play) for _ in range(tabs - 1)]
                time.sleep(1.0)
                lat[play] = [page.evaluate(f"caffevis.keyLatency('{'ArrowRight' if i % 2 == 0 else 'ArrowLeft'}')")
                             for i in range(presses)]
                for other in others:
                    other.close()
            page.close()
        finally:
            browser.close()
    return {"fps_forward": fwd, "fps_backprop": back, "latency_ms": lat[True], "latency_idle_ms": lat[False],
            "latency_median_ms": statistics.median(lat[True]),
            "latency_idle_median_ms": statistics.median(lat[False])}
