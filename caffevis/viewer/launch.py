"""Build a :class:`~caffevis.viewer.app.LiveViewer` from settings and input choices."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import InputError
from ..preprocess import Preprocessor
from ..settings import REPO_ROOT, load_settings
from .app import LiveViewer
from .config import ViewerConfig
from .sources import ArrayImages, Camera, DigitCanvas, FileList, InputFetcher, VideoFile

#: ``caffevis live`` with no settings: LeNet with the digit canvas.
DEFAULT_SETTINGS = os.path.join(REPO_ROOT, "settings", "lenet.yaml")


def open_settings(path=None, overrides=None):
    """Settings for the viewer: ``path`` (default ``settings/lenet.yaml``) plus overrides."""
    return load_settings(path or DEFAULT_SETTINGS, overrides or {})


def static_source(settings, is_digit_net, images=None, image_list=None, mnist=None):
    """The static-file source the settings and flags ask for (None when there is none).

    Flags win; else ``static_files_input_mode``; a 1-channel net uses the MNIST test
    digits when they are available and no folder or list was given.
    """
    cfg_mode = settings.static_files_input_mode
    if image_list or (not images and cfg_mode in ("image_list", "siamese_image_list") and not is_digit_net):
        return FileList.from_list_file(image_list or settings.static_files_input_file, settings.static_files_dir)
    if images:
        return FileList.from_directory(images, settings.static_files_regexp, settings.static_files_ignore_case)
    use_mnist = mnist if mnist is not None else is_digit_net
    if use_mnist:
        from ..lenet import mnist as mnist_data

        directory = settings.mnist_dir
        if directory and mnist_data.available(directory):
            return ArrayImages.mnist_test(directory)
        if mnist:
            raise InputError(f"{directory or mnist_data.default_directory()}: MNIST test files not found")
        return None
    if settings.static_files_dir and os.path.isdir(settings.static_files_dir):
        return FileList.from_directory(settings.static_files_dir, settings.static_files_regexp,
                                       settings.static_files_ignore_case)
    return None


@dataclass
class ViewerParts:
    """What every viewer on one model shares: the opened net and the read-only inputs.

    ``caffevis live`` builds one viewer from them; ``caffevis serve`` one per browser tab.
    """

    settings: object
    config: ViewerConfig
    net: object
    preprocessor: Preprocessor
    labels: list | None
    static: object  # FileList, ArrayImages or None

    @property
    def is_digit_net(self):
        return len(self.net.input_shape) == 4 and self.net.input_shape[1] == 1


def open_parts(settings, images=None, image_list=None, mnist=None, force_cpu=None, net=None, threads=0):
    """Open the net, the preprocessor, the labels and the static files (see :func:`build_viewer`);
    ``threads``: ONNX Runtime threads of the net opened here (0: all cores)."""
    config = ViewerConfig(settings)
    net = net or settings.open_net(force_cpu=force_cpu, threads=threads)
    settings.check_net(net)
    preprocessor = Preprocessor.from_settings(settings, net.input_shape)
    config.input_space = preprocessor.space  # what the renderers ask for the channel order
    parts = ViewerParts(settings, config, net, preprocessor, settings.labels(), None)
    parts.static = static_source(settings, parts.is_digit_net, images, image_list, mnist)
    return parts


def build_viewer(settings, images=None, image_list=None, video=None, camera=None, canvas=None, mnist=None,
                 headless=False, force_cpu=None, engine=None, net=None):
    """Open the net, the inputs and the viewer.

    Parameters
    ----------
    settings : caffevis.settings.Settings
    images, image_list, video : str, optional
        A folder of images, an image list file, a video file.
    camera : int, optional
        Webcam index; default ``input_updater_capture_device`` in a window (never headless).
    canvas : bool, optional
        The mouse-drawn digit canvas; default on for 1-channel nets.
    mnist : bool, optional
        MNIST test digits as the static files; default on for 1-channel nets.
    headless : bool
        No camera unless ``camera`` is given (scripted runs are reproducible).
    force_cpu : bool, optional
    engine : str, optional
        Back-pass engine: 'onnx' (default: the exported gradient graphs, fastest) or 'numpy'.
    net : caffevis.model.Net, optional
        An already opened net (else the settings' model is opened).
    """
    parts = open_parts(settings, images, image_list, mnist, force_cpu, net)
    return viewer_from_parts(parts, video=video, camera=camera, canvas=canvas, headless=headless, engine=engine)


def viewer_from_parts(parts, video=None, camera=None, canvas=None, headless=False, engine=None):
    """A new :class:`LiveViewer` (own state, input fetcher and canvas) on shared :class:`ViewerParts`."""
    settings, config, preprocessor = parts.settings, parts.config, parts.preprocessor
    static = parts.static
    notes = []
    live, pad = None, None
    want_canvas = canvas if canvas is not None else (parts.is_digit_net and not video and camera is None)
    if video:
        live = VideoFile(video)
    elif want_canvas:
        pane = config.pane("input")
        live = pad = DigitCanvas(size=min(pane[2], pane[3]) if pane else 280, net_hw=preprocessor.input_hw)
        notes.append("draw a digit in the input pane (x clears)")
    else:
        device = camera if camera is not None else (None if headless else settings.input_updater_capture_device)
        if device is not None:
            try:
                live = Camera(device)
            except InputError as err:
                notes.append(f"{err}; using static files")
    if static is None and live is None:
        raise InputError(f"no input: {settings.static_files_dir or 'static_files_dir'}: no images, and no camera, "
                         f"video or canvas (give --images DIR, --image-list FILE, --video FILE or --camera N)")
    fetcher = InputFetcher(static, live, stretch=settings.static_file_stretch_mode,
                           sleep=settings.input_updater_sleep_after_read_frame,
                           heartbeat_required=settings.input_updater_heartbeat_required)
    viewer = LiveViewer(config, parts.net, preprocessor, fetcher, labels=parts.labels, canvas=pad,
                        engine=engine or "onnx")
    viewer.state.message = " | ".join(["h for help"] + notes)
    return viewer
