"""caffevis live [--settings settings/X.yaml] [--headless --keys "..." --frames N --save-frames DIR]"""
from ._args import add_set_args, parsed_overrides


def register(sub):
    p = sub.add_parser("live", help="the live viewer (DeepVis window); LeNet with a digit canvas by default",
                       description="The Deep Visualization Toolbox window: activations, backprop/deconv, "
                                   "per-unit images. With no settings: LeNet and a digit canvas.")
    p.add_argument("--settings", help="settings YAML (default settings/lenet.yaml)")
    p.add_argument("--model", help="MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel (replaces the settings' model)")
    p.add_argument("--labels", metavar="FILE", help="label file, one per line (sets caffevis_labels)")
    p.add_argument("--preset", metavar="NAME", help="input convention: torchvision (RGB, /255, ImageNet mean "
                                                     "and std), rgb255 or caffe (BGR minus the ImageNet mean)")
    add_set_args(p, example="caffevis_unit_jpg_dir=unit_jpg_vis")
    src = p.add_argument_group("input (default: the settings' static_files_dir, plus camera/canvas)")
    src.add_argument("--images", metavar="DIR", help="folder of images (sorted by name)")
    src.add_argument("--image-list", metavar="FILE", help="file listing images, one per line")
    src.add_argument("--video", metavar="FILE", help="video file as the live input")
    src.add_argument("--camera", type=int, metavar="N", help="webcam index as the live input")
    src.add_argument("--canvas", action="store_true", default=None, help="mouse-drawn digit canvas as the live input")
    src.add_argument("--no-mnist", dest="mnist", action="store_false", default=None,
                     help="1-channel nets: do not use the MNIST test digits as static files")
    p.add_argument("--cpu", action="store_true", default=None, help="force the CPU execution provider")
    p.add_argument("--engine", choices=("onnx", "numpy"), help="back-pass engine (default: onnx, the exported gradient graphs; numpy: the NumPy deconvnet)")
    h = p.add_argument_group("headless (scripted, no window)")
    h.add_argument("--headless", action="store_true", help="run without a window from a key script")
    h.add_argument("--keys", default="", help="key script: characters, {left} {esc} {pgdn}..., {click:X,Y}, "
                                              "{draw:X1,Y1,X2,Y2,...}, {wait}")
    h.add_argument("--frames", type=int, help="frames to render (default: one per key, plus the first)")
    h.add_argument("--save-frames", metavar="DIR", help="write frame_NNNN.png and frames.json (in a window: "
                                                         "window_NNNNN.png at every redraw)")
    h.add_argument("--show-fps", action="store_true", help="headless: put the measured FPS in the status line")
    p.add_argument("--max-seconds", type=float, help="window: quit after this many seconds")
    p.set_defaults(func=run)


def run(args):
    import os
    import sys

    from ..errors import InputError
    from ..settings import MODEL_NEUTRAL, model_overrides, preset_overrides
    from ..viewer.keys import parse_key_script
    from ..viewer.launch import build_viewer, open_settings

    try:
        events = parse_key_script(args.keys)
    except ValueError as err:
        raise InputError(f"--keys: {err}") from None
    if not args.headless:
        given = [flag for flag, on in (("--keys", args.keys), ("--frames", args.frames is not None),
                                       ("--show-fps", args.show_fps)) if on]
        if given:
            raise InputError(f"{', '.join(given)}: only with --headless (the window takes keys from the keyboard)")
    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames {args.frames}: expected a number of frames >= 1")
    if not args.headless and os.name == "posix" and sys.platform != "darwin" \
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise InputError("no display: set DISPLAY (or run under Xvfb), or use --headless")
    # another model without a settings file: the default file's model-specific keys do not apply
    overrides = dict(MODEL_NEUTRAL) if args.model and not args.settings else {}
    overrides.update(preset_overrides(args.preset) if args.preset else {})
    overrides.update(parsed_overrides(args.overrides))
    if args.model:
        overrides.update(model_overrides(args.model))
    if args.labels:
        overrides["caffevis_labels"] = args.labels
    settings = open_settings(args.settings, overrides)
    viewer = build_viewer(settings, images=args.images, image_list=args.image_list, video=args.video,
                          camera=args.camera, canvas=args.canvas, mnist=args.mnist, headless=args.headless,
                          force_cpu=args.cpu, engine=args.engine)
    if args.save_frames:
        try:
            os.makedirs(args.save_frames, exist_ok=True)
        except OSError as err:
            raise InputError(f"--save-frames {args.save_frames}: cannot create the folder ({err.strerror})") from None
    if not args.headless:
        viewer.run_window(save_dir=args.save_frames, max_seconds=args.max_seconds)
        return 0
    from tqdm import tqdm

    n = args.frames if args.frames is not None else len(events) + 1
    with tqdm(total=n, desc="frames", unit="frame", disable=n < 5) as bar:
        records = viewer.run_headless(events, frames=n, save_dir=args.save_frames, show_fps=args.show_fps,
                                      progress=lambda i: bar.update(1))
    for i, rec in enumerate(records):
        print(f"{i:4d} {rec['status']}")
    if args.save_frames:
        print(f"wrote {len(records)} frames to {args.save_frames}")
    return 0
