"""caffevis serve [--settings S.yaml | --model M.onnx] [--host 127.0.0.1] [--port 8600] [--token T]"""
from ..viewer.web import JPEG_QUALITY, default_threads
from ._args import add_set_args, int_between, parsed_overrides


def register(sub):
    p = sub.add_parser("serve", help="the live viewer in a web browser (one state per tab; token off loopback)",
                       description="Serve the DeepVis window as a web page: same panes, keys and renderers as "
                                   "`caffevis live`, pushed over a WebSocket. Loopback only unless --host is "
                                   "given; any other host requires a token (printed in the URL).")
    p.add_argument("--settings", help="settings YAML (default settings/lenet.yaml)")
    p.add_argument("--model", help="MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel (replaces the settings' model)")
    add_set_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                                                       "address requires a token)")
    p.add_argument("--port", type=int, default=8600, help="port (default 8600; 0: any free port)")
    p.add_argument("--token", help="the token requests must carry (?token=...); default: random off loopback")
    p.add_argument("--images", metavar="DIR", help="folder of images (the static files; next/previous: e/w)")
    p.add_argument("--video", metavar="FILE", help="video file each tab plays as its live input")
    p.add_argument("--cpu", action="store_true", default=None, help="force the CPU execution provider")
    p.add_argument("--engine", choices=("onnx", "numpy"), help="back-pass engine (default onnx)")
    p.add_argument("--threads", type=int_between(1, 1024), default=None,
                   help=f"ONNX Runtime threads of the forward and back passes (default {default_threads()}: every "
                        "core but one, which draws and encodes a frame while the next one is computed)")
    p.add_argument("--jpeg-quality", type=int_between(1, 100), default=JPEG_QUALITY,
                   help=f"JPEG quality of the frames sent to the page (default {JPEG_QUALITY}; higher: crisper "
                        "tiles, more bytes and decoding per frame; lower for slow links)")
    p.set_defaults(func=run)


def run(args):
    from ..viewer.web import WebViewer

    viewer = WebViewer(args.settings, args.model, args.host, args.port, args.token, images=args.images,
                       video=args.video, overrides=parsed_overrides(args.overrides), force_cpu=args.cpu,
                       engine=args.engine, threads=args.threads, jpeg_quality=args.jpeg_quality)
    print(f"caffevis serve: {viewer.hub.provider}; open {viewer.url()}", flush=True)
    if viewer.token and args.host not in ("127.0.0.1", "localhost"):
        print(f"  or, on this machine: {viewer.url('127.0.0.1')}", flush=True)
    viewer.run()
    return 0
