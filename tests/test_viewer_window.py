"""The REAL OpenCV window under Xvfb: keys and a click sent with xdotool, the screen read back
with XGetImage (libX11 through ctypes), compared with what the viewer rendered.

Needs the apt packages xvfb and xdotool (installed by .ci/run); skipped only when they are
missing outside CI.
"""
import ctypes
import ctypes.util
import os
import select
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from test_viewer_headless import tile_pixel
from conftest import REPO, shared_path

SCREEN = (1000, 1600)
GREEN = (128, 255, 128)
BG = (51, 51, 51)


def _need(tool):
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing in CI (apt-get install xvfb xdotool)")
        pytest.skip(f"{tool} not installed (apt-get install xvfb xdotool)")


class _XImage(ctypes.Structure):
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("xoffset", ctypes.c_int),
                ("format", ctypes.c_int), ("data", ctypes.POINTER(ctypes.c_ubyte)), ("byte_order", ctypes.c_int),
                ("bitmap_unit", ctypes.c_int), ("bitmap_bit_order", ctypes.c_int), ("bitmap_pad", ctypes.c_int),
                ("depth", ctypes.c_int), ("bytes_per_line", ctypes.c_int), ("bits_per_pixel", ctypes.c_int),
                ("red_mask", ctypes.c_ulong), ("green_mask", ctypes.c_ulong), ("blue_mask", ctypes.c_ulong)]


class Screen:
    """Screenshots of an X display: XGetImage on the root window (24-bit TrueColor, BGRX)."""

    def __init__(self, display):
        lib = ctypes.util.find_library("X11") or "libX11.so.6"
        self.x11 = x11 = ctypes.cdll.LoadLibrary(lib)
        x11.XOpenDisplay.restype = ctypes.c_void_p
        x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x11.XDefaultRootWindow.restype = ctypes.c_ulong
        x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        x11.XGetImage.restype = ctypes.POINTER(_XImage)
        x11.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                                  ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]
        x11.XDestroyImage = None  # a macro in Xlib; the image is freed with XFree on its fields
        x11.XFree.argtypes = [ctypes.c_void_p]
        x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        self.display = x11.XOpenDisplay(display.encode())
        if not self.display:
            raise RuntimeError(f"cannot open X display {display}")
        self.root = x11.XDefaultRootWindow(self.display)

    def grab(self):
        h, w = SCREEN
        ptr = self.x11.XGetImage(self.display, self.root, 0, 0, w, h, 0xFFFFFFFF, 2)  # ZPixmap
        im = ptr.contents
        assert im.bits_per_pixel == 32 and im.red_mask == 0xff0000 and im.byte_order == 0
        buf = np.ctypeslib.as_array(im.data, shape=(im.height * im.bytes_per_line,))
        img = buf.reshape(im.height, im.bytes_per_line)[:, :im.width * 4]
        out = img.reshape(im.height, im.width, 4)[..., :3].copy()
        self.x11.XFree(ctypes.cast(im.data, ctypes.c_void_p))
        self.x11.XFree(ctypes.cast(ptr, ctypes.c_void_p))
        return out

    def close(self):
        self.x11.XCloseDisplay(self.display)


def _wait(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value is not None and value is not False:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def xvfb():
    """A private Xvfb. It picks its own free display number (-displayfd) and reports it when ready:
    a number chosen here from the absent lock files could be taken by another test run in the
    meantime, and this test would then search and screenshot that run's window."""
    _need("Xvfb")
    _need("xdotool")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{SCREEN[1]}x{SCREEN[0]}x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        number = b""
        end = time.time() + 20
        while not number.endswith(b"\n") and time.time() < end:
            if select.select([read_fd], [], [], 0.5)[0]:
                chunk = os.read(read_fd, 16)
                if not chunk:
                    break
                number += chunk
        if not number.strip().isdigit():
            raise AssertionError(f"Xvfb did not report a display (exit code {proc.poll()})")
        yield f":{int(number)}"
    finally:
        os.close(read_fd)
        proc.terminate()
        proc.wait(10)


def _xdotool(display, *args, timeout=30):
    env = dict(os.environ, DISPLAY=display)
    out = subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"xdotool {' '.join(args)}: {out.stderr.strip()}"
    return out.stdout.strip()


def test_real_window_keys_click_and_screenshot(xvfb, tmp_path):
    shared_path("data", "mnist", "t10k-images-idx3-ubyte.gz")
    frames = tmp_path / "frames"
    env = dict(os.environ, DISPLAY=xvfb, QT_LOGGING_RULES="*.debug=false;qt.qpa.*=false")
    log = open(tmp_path / "app.log", "w")
    app = subprocess.Popen([sys.executable, "-m", "caffevis", "live", "--settings",
                            os.path.join(REPO, "settings", "lenet.yaml"), "--max-seconds", "120",
                            "--save-frames", str(frames)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    screen = None
    try:
        # this run's window (by its process id), whatever else the display shows
        wid = _xdotool(xvfb, "search", "--sync", "--all", "--pid", str(app.pid), "--name", "caffevis live",
                       timeout=90).splitlines()[0]
        def geometry():
            g = dict(line.split("=") for line in _xdotool(xvfb, "getwindowgeometry", "--shell", wid).splitlines())
            return g if (int(g["WIDTH"]), int(g["HEIGHT"])) == (1500, 930) else None

        # DeepVis' default window; the window manager-less X server maps it before the first resize
        geom = _wait(geometry, 60, "the 1500x930 window")
        x0, y0 = int(geom["X"]), int(geom["Y"])
        screen = Screen(xvfb)

        def window():
            return screen.grab()[y0:y0 + 930, x0:x0 + 1500]

        def status_lit(img):
            return (img[905:925, 5:400].astype(int).sum(axis=2) > 400).sum() > 50

        shot0 = _wait(lambda: (lambda w: w if status_lit(w) else None)(window()), 60, "the first frame")
        time.sleep(1.0)
        shot0 = window()
        # the window shows exactly what the viewer rendered (one of its saved frames)
        saved = [cv2.imread(str(p)) for p in sorted(frames.glob("window_*.png"))]
        assert any(np.array_equal(shot0, s) for s in saved), "the window does not show a rendered frame"
        assert (shot0[600:900, 0:300] == BG).all()  # back pane: off

        _xdotool(xvfb, "windowfocus", "--sync", wid)
        # One key at a time, each after the window showed the previous one's effect: OpenCV's Qt
        # backend keeps one pending key between cv2.waitKeyEx calls, so keys that arrive while the
        # UI thread is drawing replace each other (xdotool's "key k n", 12 ms apart, lost the k
        # whenever a redraw took longer: then n turned the back pass on with the cursor still on
        # the layer list, where the back pane stays off).
        _xdotool(xvfb, "key", "k")  # cursor to conv1's units: the status line's hint goes away
        after_k = _wait(lambda: (lambda w: w if not np.array_equal(w[900:930], shot0[900:930]) else None)(window()),
                        60, "the status line after k")
        _xdotool(xvfb, "key", "n")
        # back pane fills with the backprop image of conv1 unit 0
        shot1 = _wait(lambda: (lambda w: w if w[600:900, 0:300].std() > 3 else None)(window()), 60,
                      "the back pane after k n")
        assert not np.array_equal(shot1[900:930], after_k[900:930])  # the status line says Back: bprop

        # click the middle of conv1's tile 7 (LeNet conv1: 20 units of 24x24), where the
        # settings' layers pane and aspect ratio put it
        from caffevis.settings import load_settings

        cfg = load_settings(os.path.join(REPO, "settings", "lenet.yaml"))
        box, aspect = cfg.window_panes["caffevis_layers"], cfg.caffevis_layers_aspect_ratio

        def at(ty, tx):
            y, x, _ = tile_pixel(box, 20, (24, 24), 7, ty, tx, aspect)
            return y, x

        cy, cx = at(13, 13)
        _xdotool(xvfb, "mousemove", "--sync", str(x0 + cx), str(y0 + cy))
        _xdotool(xvfb, "click", "1")
        ring = at(0, 13)
        shot2 = _wait(lambda: (lambda w: w if tuple(w[ring]) == GREEN else None)(window()), 60,
                      "the clicked tile's green border")
        assert tuple(shot2[at(13, 0)]) == GREEN and tuple(shot0[ring]) != GREEN

        _xdotool(xvfb, "key", "q")
        assert app.wait(30) == 0
    finally:
        if screen is not None:
            screen.close()
        if app.poll() is None:
            app.kill()
            app.wait(10)
        log.close()
