#!/usr/bin/env python
"""The web page next to the OpenCV window, after the same keys: docs/serve_page_vs_window.png.

    python tools/serve_screenshots.py [--out docs/serve_page_vs_window.png] [--keys "Down Right b"]

The window runs under Xvfb (``caffevis live``, keys sent with xdotool, read back with
ImageMagick's ``import`` from the screen); the page is ``caffevis serve`` in headless chromium
(Playwright). Both on LeNet, the embedded default. Needs xvfb, xdotool, imagemagick, chromium.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
XDOTOOL_NAMES = {"Down": "Down", "Right": "Right", "Left": "Left", "Up": "Up"}
BROWSER_NAMES = {"Down": "ArrowDown", "Right": "ArrowRight", "Left": "ArrowLeft", "Up": "ArrowUp"}


def window_shot(keys, path, display=":97"):
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, DISPLAY=display, QT_LOGGING_RULES="*.debug=false;qt.qpa.*=false")
    app = None
    try:
        time.sleep(2)
        app = subprocess.Popen([sys.executable, "-m", "caffevis", "live", "--max-seconds", "120"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wid = subprocess.run(["xdotool", "search", "--sync", "--name", "caffevis live"], env=env, capture_output=True,
                             text=True, timeout=120).stdout.split()[0]
        time.sleep(4)
        for key in keys:
            subprocess.run(["xdotool", "key", "--window", wid, XDOTOOL_NAMES.get(key, key)], env=env, check=True)
            time.sleep(1.0)
        time.sleep(2)
        geom = dict(line.split("=") for line in subprocess.run(
            ["xdotool", "getwindowgeometry", "--shell", wid], env=env, capture_output=True, text=True,
            check=True).stdout.split())
        x, y, w, h = (int(geom[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
        subprocess.run(["import", "-window", "root", "-crop", f"{w}x{h}+{x}+{y}", "+repage", path], env=env,
                       check=True)
    finally:
        if app is not None:
            app.terminate()
            app.wait(10)
        xvfb.terminate()
        xvfb.wait(10)


def page_shot(keys, path):
    from playwright.sync_api import sync_playwright

    from caffevis.viewer.web import serve
    from caffevis.viewer.web.bench import CHROMIUM, CHROMIUM_ARGS

    url = serve(port=0)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 960})
            page.goto(url)
            page.wait_for_function("window.caffevis && caffevis.frames > 0", timeout=60000)
            for key in keys:
                page.keyboard.press(BROWSER_NAMES.get(key, key))
                time.sleep(1.0)
            time.sleep(2)
            page.screenshot(path=path)
            browser.close()
    finally:
        url.stop()


def titled(img, title, width):
    img = cv2.copyMakeBorder(img, 0, 0, 0, width - img.shape[1], cv2.BORDER_CONSTANT, value=(32, 32, 32))
    bar = np.full((40, width, 3), 255, np.uint8)
    cv2.putText(bar, title, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    return np.vstack([bar, img])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "serve_page_vs_window.png"))
    parser.add_argument("--keys", default="Down Right b", help="keys, space-separated (Down Right Left Up or a character)")
    args = parser.parse_args()
    keys = args.keys.split()
    with tempfile.TemporaryDirectory() as tmp:
        win, page = os.path.join(tmp, "window.png"), os.path.join(tmp, "page.png")
        window_shot(keys, win)
        page_shot(keys, page)
        a, b = cv2.imread(win), cv2.imread(page)
    width = max(a.shape[1], b.shape[1])
    a = titled(a, f"OpenCV window (caffevis live), keys: {args.keys}", width)
    b = titled(b, f"web page (caffevis serve, headless chromium), keys: {args.keys}", width)
    out = np.vstack([a, np.full((12, width, 3), 255, np.uint8), b])
    out = cv2.resize(out, (out.shape[1] * 2 // 3, out.shape[0] * 2 // 3), interpolation=cv2.INTER_AREA)
    cv2.imwrite(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
