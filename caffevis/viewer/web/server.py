"""The web viewer's HTTP and WebSocket server (Starlette on uvicorn).

``GET /`` is the page (``page.html``); ``/ws`` is one tab's WebSocket. The page sends
JSON text messages ``{"t": "key", "key": KeyboardEvent.key}``, ``{"t": "mouse", "e":
"down"|"move"|"up"|"rdown", "x", "y"}`` (window pixels), ``{"t": "ack", "seq": N}``
(a frame was drawn), and a binary message with an image file to show (the upload). The
server sends frames (:func:`caffevis.viewer.web.hub.encode_update`) and JSON notices
``{"t": "notice", "text": ...}``.

Safety: with a token, every HTTP and WebSocket request must carry ``?token=`` (else 403);
WebSockets must come from the page's own origin; without a token (loopback only) the
Host header must name the loopback interface, so that no other site can reach the
server through a rebound DNS name.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import os
import urllib.parse

import cv2
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ...errors import InputError
from ...images import decode_image
from ..keys import BINDINGS, browser_code

#: Largest image file a page may upload.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Malformed messages a tab may send before it is told so again (the notices are rate-limited).
NOTICE_EVERY = 50
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
MOUSE_EVENTS = {"down": cv2.EVENT_LBUTTONDOWN, "move": cv2.EVENT_MOUSEMOVE, "up": cv2.EVENT_LBUTTONUP,
                "rdown": cv2.EVENT_RBUTTONDOWN}
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")


def _host_name(host_header):
    """The host part of a Host header (``[::1]:8600`` -> ``[::1]``)."""
    host = host_header or ""
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware: token, Host and Origin checks before any route runs."""

    def __init__(self, app, token=None):
        self.app = app
        self.token = token

    def allowed(self, scope):
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.token is not None:
            query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [""])[0]
            if not hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8")):
                return False
        elif _host_name(headers.get("host")) not in LOOPBACK_HOSTS:
            return False
        if scope["type"] == "websocket" and "origin" in headers:
            origin = urllib.parse.urlsplit(headers["origin"]).netloc
            if origin != headers.get("host"):
                return False
        return True

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and not self.allowed(scope):
            if scope["type"] == "http":
                await PlainTextResponse("403 forbidden: missing or wrong token", status_code=403)(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        await self.app(scope, receive, send)


def create_app(hub, token=None):
    """The ASGI application serving ``hub`` (a :class:`~caffevis.viewer.web.hub.Hub`)."""
    with open(PAGE, encoding="utf-8") as f:
        page = f.read()
    keys = [{"tag": b.tag, "keys": list(b.keys), "help": b.help} for b in BINDINGS]
    config = json.dumps({"keys": keys, "max_upload": MAX_UPLOAD_BYTES, "provider": hub.provider})
    page = page.replace("/*CONFIG*/null", config.replace("</", "<\\/"))

    async def index(request):
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def socket(websocket: WebSocket):
        await TabConnection(hub, websocket).run()

    async def no_icon(request):
        return Response(status_code=204)

    app = Starlette(routes=[Route("/", index), Route("/favicon.ico", no_icon), WebSocketRoute("/ws", socket)])
    return Guard(app, token)


class TabConnection:
    """One WebSocket: a tab of the hub, its sender task and its message handling."""

    def __init__(self, hub, websocket):
        self.hub = hub
        self.ws = websocket
        self.loop = None
        self.outbox = None  # newest frame not yet written (the engine never waits for the socket)
        self.ready = asyncio.Event()
        self.bad_messages = 0
        self.tab = None

    def post(self, message):
        """From the draw thread: hand a frame to the sender (it keeps only the newest)."""
        def put():
            self.outbox = message
            self.ready.set()
        self.loop.call_soon_threadsafe(put)

    async def run(self):
        self.loop = asyncio.get_running_loop()
        await self.ws.accept()
        self.tab = await asyncio.to_thread(self.hub.open_tab, self.post)
        if self.tab is None:
            await self.ws.send_text(json.dumps({"t": "notice", "text": "too many tabs open on this server"}))
            await self.ws.close(1013)
            return
        sender = asyncio.create_task(self.send_frames())
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if msg.get("text") is not None:
                    await self.on_text(msg["text"])
                elif msg.get("bytes") is not None:
                    await self.on_upload(msg["bytes"])
        except WebSocketDisconnect:
            pass
        finally:
            sender.cancel()
            self.hub.close_tab(self.tab)

    async def send_frames(self):
        while True:
            await self.ready.wait()
            self.ready.clear()
            message, self.outbox = self.outbox, None
            if message is not None:
                try:
                    await self.ws.send_bytes(message)
                except Exception:  # the page went away mid-frame: the receive loop ends the tab
                    return

    async def notice(self, text):
        try:
            await self.ws.send_text(json.dumps({"t": "notice", "text": text}))
        except Exception:
            pass

    async def on_text(self, text):
        try:
            msg = json.loads(text) if len(text) < 4096 else None
        except ValueError:
            msg = None
        kind = msg.get("t") if isinstance(msg, dict) else None
        viewer = self.tab.viewer
        if kind == "ack":
            self.tab.ack(msg.get("seq"))
        elif kind == "key" and isinstance(msg.get("key"), str):
            code = browser_code(msg["key"])
            if code is not None:
                viewer.handle_key(code)
        elif kind == "mouse" and msg.get("e") in MOUSE_EVENTS and _number(msg.get("x")) and _number(msg.get("y")):
            flags = cv2.EVENT_FLAG_LBUTTON if msg["e"] == "move" else 0
            viewer.handle_mouse(MOUSE_EVENTS[msg["e"]], int(msg["x"]), int(msg["y"]), flags)
        else:
            self.bad_messages += 1
            if self.bad_messages % NOTICE_EVERY == 1:
                await self.notice("the server ignored a malformed message")
            return
        # a key or click is redrawn before the next tab's turn; strokes and acks wait for this tab's turn
        urgent = kind == "key" or (kind == "mouse" and msg["e"] != "move")
        self.hub.wake(self.tab if urgent else None)

    async def on_upload(self, data):
        if len(data) > MAX_UPLOAD_BYTES:
            await self.notice(f"image too large ({len(data) / 2 ** 20:.1f} MB; limit {MAX_UPLOAD_BYTES // 2 ** 20} MB)")
            return
        try:
            image = await asyncio.to_thread(decode_image, data, "uploaded file")
        except InputError as err:
            await self.notice(str(err))
            return
        viewer = self.tab.viewer
        viewer.fetcher.show(image, f"upload {image.shape[1]}x{image.shape[0]}")
        with viewer.lock:
            viewer.state.message = None
        self.hub.wake()


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e6
