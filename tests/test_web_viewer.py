"""The web viewer (``caffevis serve``) in a real browser: Debian's chromium driven by Playwright.

LeNet (the embedded default) with the digit canvas. Each test opens its own tabs, so each
starts from a fresh viewer state; the server and the browser are shared by the module.
Checks read the page's state (``window.caffevis``) and the screenshot's pixels.
"""
import json
import os
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from caffevis.viewer.config import ViewerConfig
from caffevis.viewer.keys import BINDINGS, KeyTable, browser_code
from caffevis.viewer.web import is_loopback, resolve_token, serve
from caffevis.viewer.web.bench import CHROMIUM, CHROMIUM_ARGS
from caffevis.viewer.web.hub import changed_rects
from caffevis.errors import InputError
from conftest import REPO

LENET = os.path.join(REPO, "settings", "lenet.yaml")
VIEWPORT = {"width": 1600, "height": 1000}  # the 1500x930 window at 1:1
TIMEOUT_MS = 20000


def _require_browser():
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e .[test])"
    if reason is None and not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server():
    import caffevis

    url = caffevis.serve(LENET, port=0)  # the notebook entry: a URL that shows as an IFrame in Jupyter
    assert url.startswith("http://127.0.0.1:") and f'<iframe src="{url}"' in url._repr_html_()
    yield url
    url.stop()


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def config():
    return ViewerConfig.from_settings(LENET)


def open_tab(browser, url):
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    page.wait_for_function("window.caffevis && caffevis.frames > 0", timeout=TIMEOUT_MS)
    return page


def settle(page, condition="true"):
    """Wait until ``condition`` holds and the server has nothing newer to draw."""
    page.wait_for_function(condition, timeout=TIMEOUT_MS)
    frames = -1
    while True:  # no new frame for 300 ms: the page shows the current state
        now = page.evaluate("caffevis.frames")
        if now == frames:
            return page.evaluate("caffevis.state")
        frames = now
        time.sleep(0.3)


def window_pixels(page):
    """The canvas as drawn by the page, BGR (one CSS pixel = one window pixel)."""
    png = page.locator("#window").screenshot()
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def near(img, bgr, tol=40):
    return np.all(np.abs(img.astype(int) - np.array(bgr, int)) < tol, axis=2)


def cursor_box(img, config):
    """(x0, y0, x1, y1) of the green cursor ring in the layers pane."""
    i, j, h, w = config.pane("caffevis_layers")
    ys, xs = np.nonzero(near(img[i:i + h, j:j + w], config.caffevis_layer_clr_cursor))
    assert len(xs) > 100, "no cursor ring drawn"
    return xs.min() + j, ys.min() + i, xs.max() + j, ys.max() + i


def server_tabs(url):
    """The server's tabs, oldest first (a tab's viewer layout says where the renderer drew things)."""
    hub = url.viewer.hub
    with hub._lock:
        return sorted(hub.tabs.values(), key=lambda t: t.id)


def ws_url(url):
    """The WebSocket address of the page at ``url`` (without its query: add a token yourself)."""
    return url.split("?")[0].replace("http://", "ws://").rstrip("/") + "/ws"


# -- without a browser ---------------------------------------------------------------------------------
def test_browser_keys_decode_to_the_window_table():
    table = KeyTable()
    assert table.decode(browser_code("ArrowLeft")) == "sel_left"
    assert table.decode(browser_code("PageDown")) == "static_file_increment"
    assert table.decode(browser_code("Escape")) == "reset_state"
    for b in BINDINGS:  # every bound character key reaches its tag
        for k in b.keys:
            if len(k) == 1:
                assert table.decode(browser_code(k)) == b.tag
    assert browser_code("Shift") is None and browser_code(None) is None and browser_code("\u00e9") is None


def test_only_changed_panes_are_sent():
    panes = {"a": (0, 0, 10, 10), "b": (0, 10, 10, 10)}
    prev = np.zeros((12, 20, 3), np.uint8)
    img = prev.copy()
    assert changed_rects(None, img, panes) == [(0, 0, 20, 12)]
    assert changed_rects(prev, img, panes) == []
    img[3, 14] = 9
    assert changed_rects(prev, img, panes) == [(10, 0, 10, 10)]
    img[11, 0] = 9  # outside every pane: the whole window
    assert changed_rects(prev, img, panes) == [(0, 0, 20, 12)]


def test_token_is_required_off_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert resolve_token("127.0.0.1", None) is None
    assert len(resolve_token("0.0.0.0", None)) >= 24
    assert resolve_token("0.0.0.0", None) != resolve_token("0.0.0.0", None)
    assert resolve_token("0.0.0.0", "my-secret-token") == "my-secret-token"
    for bad in ("", "short", "has space in it"):
        with pytest.raises(InputError):
            resolve_token("0.0.0.0", bad)


# -- in the browser ----------------------------------------------------------------------------------
def test_page_loads_on_lenet(server, browser, config):
    page = open_tab(browser, server)
    try:
        view = page.evaluate("({provider: caffevis.provider, top5: caffevis.top5, state: caffevis.state})")
        assert view["provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider")
        assert page.locator("#provider").inner_text() == view["provider"]
        assert len(view["top5"]) == 5 and view["state"]["layer"] == "conv1"
        img = window_pixels(page)
        assert img.shape[:2] == config.window_shape
        i, j, h, w = config.pane("caffevis_layers")
        assert img[i:i + h, j:j + w].std() > 10  # the conv1 tiles are drawn
        page.keyboard.press("o")
        page.wait_for_function("caffevis.fps > 0", timeout=TIMEOUT_MS)  # frames/s of the last 2 s
    finally:
        page.close()


def _stroke(page, points, touch=False):
    """Draw through window pixels ``points`` with the mouse, or with touch pointer events."""
    box = page.locator("#window").bounding_box()
    pts = [(box["x"] + x, box["y"] + y) for x, y in points]
    if not touch:
        page.mouse.move(*pts[0])
        page.mouse.down()
        for p in pts[1:]:
            page.mouse.move(*p, steps=4)
        page.mouse.up()
        return
    page.evaluate("""(pts) => {
        const c = document.getElementById('window');
        const ev = (type, [x, y], buttons) => c.dispatchEvent(new PointerEvent(type, {pointerId: 7,
            pointerType: 'touch', clientX: x, clientY: y, button: 0, buttons: buttons, bubbles: true}));
        ev('pointerdown', pts[0], 1);
        for (const p of pts.slice(1)) ev('pointermove', p, 1);
        ev('pointerup', pts[pts.length - 1], 0);
    }""", pts)


def test_drawn_strokes_change_the_top5(server, browser, config):
    page = open_tab(browser, server)
    try:
        page.keyboard.press("x")  # clear the canvas: the net sees an empty drawing
        settle(page, "caffevis.input === 'digit canvas'")
        empty = page.evaluate("caffevis.top5")
        _stroke(page, [(150, 40), (150, 260)])  # a "1" with the mouse
        page.wait_for_function(f"JSON.stringify(caffevis.top5) !== {json.dumps(json.dumps(empty))}",
                               timeout=TIMEOUT_MS)
        settle(page)
        one = page.evaluate("caffevis.top5")
        assert one[0][0] == "1" and one[0][1] > 0.5
        img = window_pixels(page)
        i, j, h, w = config.pane("input")
        assert img[i + 150, j + 150].min() > 200 and img[i + 150, j + 40].max() < 50  # white ink, black canvas
        _stroke(page, [(60, 150), (240, 150)], touch=True)  # a touch stroke across it
        page.wait_for_function(f"JSON.stringify(caffevis.top5) !== {json.dumps(json.dumps(one))}",
                               timeout=TIMEOUT_MS)
        settle(page)
        assert window_pixels(page)[i + 150, j + 60].min() > 200
    finally:
        page.close()


def test_arrow_keys_and_clicks_select(server, browser, config):
    page = open_tab(browser, server)
    try:
        page.keyboard.press("ArrowDown")
        st = settle(page, "caffevis.state.cursor_area === 'bottom'")
        assert st["selected_unit"] == 0
        x0, y0, x1, _ = cursor_box(window_pixels(page), config)
        page.keyboard.press("ArrowRight")
        st = settle(page, "caffevis.state.selected_unit === 1")
        sent = {tuple(r[:4]) for r in page.evaluate("caffevis.rects")}
        i, j, h, w = config.pane("input")
        assert (j, i, w, h) not in sent and sent  # only what changed: the input pane was not re-sent
        nx0, ny0, _, _ = cursor_box(window_pixels(page), config)
        assert ny0 == pytest.approx(y0, abs=2) and nx0 > x1  # the ring moved one tile right
        # a click on a tile: the renderer's layout says where tile 9 lies
        viewer = server_tabs(server)[-1].viewer
        tx, ty, scale, th, tw, rows, cols, n = viewer.layout.tiles
        r, c = divmod(9, cols)
        cx, cy = tx + (c * (tw + 2) + tw / 2) * scale, ty + (r * (th + 2) + th / 2) * scale
        box = page.locator("#window").bounding_box()
        page.mouse.click(box["x"] + cx, box["y"] + cy)
        settle(page, "caffevis.state.selected_unit === 9")
        bx0, by0, bx1, by1 = cursor_box(window_pixels(page), config)
        assert bx0 < cx < bx1 and by0 < cy < by1
        # a click on a layer name
        idx, lx, ly, lw, lh = viewer.layout.control_boxes[2]
        page.mouse.click(box["x"] + lx + lw / 2, box["y"] + ly + lh / 2)
        st = settle(page, "caffevis.state.layer_idx === 2")
        assert st["layer"] == "conv2" and st["cursor_area"] == "top"
    finally:
        page.close()


def test_b_and_n_turn_the_back_pane_on(server, browser, config):
    i, j, h, w = config.pane("caffevis_back")
    for key, mode in (("b", "grad"), ("n", "grad")):
        page = open_tab(browser, server)
        try:
            page.keyboard.press("ArrowDown")  # the back pane shows the selected unit's pass (DeepVis)
            settle(page, "caffevis.state.cursor_area === 'bottom'")
            before = window_pixels(page)[i:i + h, j:j + w]
            assert before.std() < 1  # off: the background only
            page.keyboard.press(key)
            st = settle(page, "caffevis.state.back_enabled && !caffevis.state.back_stale")
            assert st["back_mode"] == mode
            after = window_pixels(page)[i:i + h, j:j + w]
            assert after.std() > 5  # the input gradient of conv1 unit 0
        finally:
            page.close()


def test_two_tabs_keep_their_own_state(server, browser):
    a, b = open_tab(browser, server), open_tab(browser, server)
    try:
        a.keyboard.press("o")
        a.keyboard.press("o")
        b.keyboard.press("ArrowDown")
        b.keyboard.press("ArrowRight")
        sa = settle(a, "caffevis.state.layer_idx === 2")
        sb = settle(b, "caffevis.state.selected_unit === 1")
        assert (sa["layer"], sa["cursor_area"], sa["selected_unit"]) == ("conv2", "top", 0)
        assert (sb["layer"], sb["cursor_area"]) == ("conv1", "bottom")
    finally:
        a.close()
        b.close()


def test_upload_and_corrupt_upload(server, browser, tmp_path, config):
    page = open_tab(browser, server)
    try:
        image = np.zeros((60, 80, 3), np.uint8)
        cv2.rectangle(image, (30, 10), (50, 50), (255, 255, 255), -1)
        good, bad = tmp_path / "digit.png", tmp_path / "broken.png"
        cv2.imwrite(str(good), image)
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
        page.set_input_files("#upload", str(good))
        settle(page, "caffevis.input.startsWith('upload 80x60')")
        i, j, h, w = config.pane("input")
        img = window_pixels(page)
        assert img[i + h // 2, j + w // 2].min() > 200 and img[i + h // 2, j + 10].max() < 50
        page.set_input_files("#upload", str(bad))
        page.wait_for_function("caffevis.notices.some(t => t.includes('not a readable image'))", timeout=TIMEOUT_MS)
        assert page.evaluate("caffevis.keyLatency('o')") > 0  # the tab goes on
    finally:
        page.close()


def test_garbage_floods_and_disconnects_do_not_disturb_other_tabs(server, browser):
    from websockets.sync.client import connect

    page = open_tab(browser, server)
    websocket = ws_url(server)
    try:
        for _ in range(3):
            with connect(websocket) as ws:
                ws.recv(timeout=10)  # a frame
                for msg in ["not json", "[1,2]", '{"t": "key", "key": 5}', '{"t": "mouse", "e": "down", "x": "a"}',
                            json.dumps({"t": "ack", "seq": 10 ** 9}), "x" * 10000, b"\x00garbage bytes"]:
                    ws.send(msg)
                for _ in range(2000):  # a key flood
                    ws.send('{"t": "key", "key": "ArrowRight"}')
            # the with-block closed the socket with frames still in flight
        with connect(websocket) as ws:
            ws.recv(timeout=10)
            ws.send('{"t": "key", "key": "b"}')
            ws.socket.shutdown(2)  # gone without a closing handshake, mid-stream
        latencies = [page.evaluate("caffevis.keyLatency('o')"), page.evaluate("caffevis.keyLatency('u')")]
        assert all(0 < t < 5000 for t in latencies)
        assert page.evaluate("caffevis.connected")
        deadline = time.time() + 10
        while len(server.viewer.hub.tabs) != 1 and time.time() < deadline:
            time.sleep(0.05)
        assert len(server.viewer.hub.tabs) == 1  # every closed connection's tab was dropped
    finally:
        page.close()


def test_a_client_that_never_acknowledges_gets_at_most_two_frames(server, browser):
    from websockets.sync.client import connect

    from caffevis.viewer.web.hub import MAX_UNACKED

    page = open_tab(browser, server)
    websocket = ws_url(server)
    try:
        known = {t.id for t in server_tabs(server)}
        with connect(websocket) as ws:
            deadline = time.time() + 10
            while not [t for t in server_tabs(server) if t.id not in known] and time.time() < deadline:
                time.sleep(0.02)
            tab = [t for t in server_tabs(server) if t.id not in known][0]  # this connection's
            for key in "oooouuuu" * 10:  # every key changes the state; it never acknowledges a frame
                ws.send(json.dumps({"t": "key", "key": key}))
                time.sleep(0.005)
            deadline = time.time() + 10
            while tab.seq < MAX_UNACKED and time.time() < deadline:
                time.sleep(0.02)
            ws.send(json.dumps({"t": "key", "key": "o"}))
            time.sleep(1.0)
            assert tab.seq == MAX_UNACKED and tab.viewer.drawing_stale  # newer state waits, nothing queues
            assert page.evaluate("caffevis.keyLatency('o')") > 0  # the other tab is served meanwhile
            ws.send(json.dumps({"t": "ack", "seq": MAX_UNACKED}))
            deadline = time.time() + 10
            while tab.seq == MAX_UNACKED and time.time() < deadline:
                time.sleep(0.02)
            assert tab.seq == MAX_UNACKED + 1  # one frame: the newest state
    finally:
        page.close()


# -- tokens ------------------------------------------------------------------------------------------
def _status(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def _ws_status(url, origin=None):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(url, origin=origin, open_timeout=10) as ws:
            ws.recv(timeout=10)
            return 101
    except InvalidStatus as err:
        return err.response.status_code


def test_token_protected_server_refuses_requests_without_it(browser):
    url = serve(LENET, port=0, token="test-token-1234")
    try:
        base = url.split("?")[0]
        assert url.endswith("?token=test-token-1234")
        assert _status(base) == 403 and _status(base + "?token=wrong-token-000") == 403
        assert _status(url) == 200
        ws = ws_url(url)
        assert _ws_status(ws) == 403 and _ws_status(ws + "?token=nope") == 403
        assert _ws_status(ws + "?token=test-token-1234", origin="http://evil.example") == 403
        assert _ws_status(ws + "?token=test-token-1234") == 101
        page = open_tab(browser, url)  # the page carries the token to its WebSocket
        page.close()
    finally:
        url.stop()


def test_loopback_server_refuses_other_host_names(server):
    assert _status(server) == 200
    assert _status(server, {"Host": "attacker.example"}) == 403  # a rebound DNS name


def test_cli_on_all_interfaces_prints_a_token_url():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # --set values are YAML, as for `caffevis live` (a boolean here)
    proc = subprocess.Popen([sys.executable, "-m", "caffevis", "serve", "--settings", LENET, "--host", "0.0.0.0",
                             "--port", "0", "--set", "caffevis_force_cpu=true"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=REPO)
    try:
        line = ""
        deadline = time.time() + 60
        while "?token=" not in line and time.time() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "caffevis serve exited"
        url = line.split("open ", 1)[1].strip()
        port, token = url.split(":")[2].split("/")[0], url.split("?token=")[1]
        local = f"http://127.0.0.1:{port}/"
        assert _status(local) == 403 and _status(f"{local}?token={token}") == 200
    finally:
        proc.terminate()
        proc.wait(10)
    bad = subprocess.run([sys.executable, "-m", "caffevis", "serve", "--host", "0.0.0.0", "--token", "abc"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "--token" in bad.stderr



def _quantization_tables(jpeg):
    """The DQT segments of a JPEG (the tables its quality setting chose)."""
    tables, i = [], 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF and jpeg[i + 1] != 0xDA:  # up to the scan
        length = struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        if jpeg[i + 1] == 0xDB:
            tables.append(bytes(jpeg[i + 4:i + 2 + length]))
        i += 2 + length
    return tables


def test_frames_are_not_deflated_and_have_the_jpeg_quality_asked_for():
    """JPEG frames go over the WebSocket as they are (no permessage-deflate: it cost both ends
    CPU for nothing), each JPEG at the server's ``jpeg_quality``; a bad --jpeg-quality is one line."""
    from websockets.sync.client import connect

    def tables_at(quality):
        return _quantization_tables(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8),
                                                 [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())

    assert tables_at(55) != tables_at(80)
    url = serve(LENET, port=0, jpeg_quality=55)
    try:
        with connect(ws_url(url), open_timeout=10, compression="deflate") as ws:
            assert "permessage-deflate" not in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
            message = ws.recv(timeout=30)
    finally:
        url.stop()
    n = struct.unpack(">I", message[:4])[0]
    header = json.loads(message[4:4 + n])
    offset = 4 + n
    assert header["rects"]
    for x, y, w, h, size in header["rects"]:
        jpeg = message[offset:offset + size]
        offset += size
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (h, w)
        assert _quantization_tables(jpeg) == tables_at(55)
    bad = subprocess.run([sys.executable, "-m", "caffevis", "serve", "--jpeg-quality", "0"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "--jpeg-quality" in bad.stderr.strip().splitlines()[-1]
