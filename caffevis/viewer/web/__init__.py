"""The viewer in a web browser (``caffevis serve``, :func:`serve`).

:mod:`.hub` holds the shared net, the per-tab viewers and the compute and draw threads;
:mod:`.server` the Starlette application (page, WebSocket, token and origin checks);
``page.html`` the page. Frames are drawn by :func:`caffevis.viewer.render.render`, keys
decoded by :class:`caffevis.viewer.keys.KeyTable`, exactly as in the window.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import threading
import time

from ...errors import InputError

DEFAULT_PORT = 8600
#: JPEG quality of the frames: the layers grid's bytes (and the page's decoding time) grow
#: about 1.5x from 80 to 90, for differences a live view does not show.
JPEG_QUALITY = 80


def default_threads():
    """ONNX Runtime threads for the server: every core but one (at least one).

    The draw thread renders and encodes one frame while the compute thread runs the next
    forward; left all cores, the forward's threads and the draw thread take turns on them.
    """
    return max(1, (os.cpu_count() or 2) - 1)


def is_loopback(host):
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(host, token):
    """The token the server requires: ``token``, or a random one off loopback (None on loopback)."""
    if token is not None:
        if len(token) < 8 or not token.isprintable() or " " in token:
            raise InputError("--token: expected at least 8 printable characters without spaces")
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(24)


def open_socket(host, port):
    """A listening TCP socket (port 0: any free port); errors as one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), int(port)))
    except (OSError, OverflowError) as err:
        sock.close()
        raise InputError(f"--host {host} --port {port}: cannot listen there ({getattr(err, 'strerror', err)})") from None
    sock.listen(64)
    return sock


class WebViewer:
    """A configured server: the hub, the ASGI app, the listening socket and its URL.

    Parameters
    ----------
    settings : str or Settings, optional
        Settings YAML (default ``settings/lenet.yaml``) or a loaded object.
    model : str, optional
        ``MODEL.onnx`` or ``DEPLOY.prototxt:WEIGHTS.caffemodel`` (replaces the settings' model).
    host, port, token
        Where to listen; a token is generated for any non-loopback host.
    images, video : str, optional
        Image folder (the static files, addressed by index) / video each tab plays.
    overrides : dict, optional
        Settings keys to override.
    force_cpu, engine, net
        As :func:`caffevis.viewer.launch.build_viewer`.
    threads : int, optional
        ONNX Runtime threads of the net it opens (default :func:`default_threads`; unused with ``net``).
    jpeg_quality : int
        JPEG quality of the frames (1-100).
    """

    def __init__(self, settings=None, model=None, host="127.0.0.1", port=DEFAULT_PORT, token=None, images=None,
                 video=None, overrides=None, force_cpu=None, engine=None, net=None, threads=None,
                 jpeg_quality=JPEG_QUALITY):
        import uvicorn

        from ...settings import model_overrides
        from ..launch import open_parts, open_settings
        from .hub import Hub
        from .server import MAX_UPLOAD_BYTES, create_app

        self.token = resolve_token(host, token)
        overrides = dict(overrides or {})
        if model:
            overrides.update(model_overrides(model))
        if settings is None or isinstance(settings, str):
            settings = open_settings(settings, overrides)
        threads = default_threads() if threads is None else threads
        parts = open_parts(settings, images=images, force_cpu=force_cpu, net=net, threads=threads)
        self.hub = Hub(parts, video=video, engine=engine, jpeg_quality=jpeg_quality)
        self.socket = open_socket(host, port)
        self.port = self.socket.getsockname()[1]
        self.host = host
        config = uvicorn.Config(create_app(self.hub, self.token), log_level="warning", lifespan="off",
                                ws_max_size=MAX_UPLOAD_BYTES + (1 << 20), ws_ping_interval=20.0,
                                # frames are JPEG: deflating them costs both ends CPU and saves nothing
                                ws_per_message_deflate=False)
        self.server = uvicorn.Server(config)
        self.thread = None

    def url(self, host=None):
        host = host or self.host
        if host in ("0.0.0.0", "::", "[::]"):
            host = socket.gethostname()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def run(self):
        """Serve in this thread until interrupted."""
        self.hub.start()
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.hub.stop()

    def start(self, timeout=30.0):
        """Serve from a daemon thread; returns once the server accepts connections."""
        self.thread = threading.Thread(target=self.run, name="caffevis-web", daemon=True)
        self.thread.start()
        end = time.time() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > end:
                raise InputError(f"web viewer: the server did not start within {timeout:.0f} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout=5.0):
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)


class ServedURL(str):
    """The URL of a running web viewer; shows the page in an IFrame in Jupyter; ``.stop()`` ends it."""

    viewer = None

    def stop(self):
        self.viewer.stop()

    def _repr_html_(self):
        from html import escape

        return (f'<iframe src="{escape(self)}" width="100%" height="980" style="border:0"></iframe>'
                f'<p><a href="{escape(self)}" target="_blank">{escape(self)}</a></p>')


def serve(settings=None, model=None, host="127.0.0.1", port=DEFAULT_PORT, token=None, **kwargs):
    """Start the web viewer in the background and return its URL.

    The returned :class:`ServedURL` is a ``str``; in Jupyter it displays as an IFrame of
    the page (no notebook package needed). ``url.stop()`` ends the server. Other keyword
    arguments: see :class:`WebViewer`.
    """
    viewer = WebViewer(settings, model, host, port, token, **kwargs).start()
    url = ServedURL(viewer.url())
    url.viewer = viewer
    return url
