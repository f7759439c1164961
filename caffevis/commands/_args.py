"""Argument groups and their readers shared by several commands (one place, so the commands
do not import each other)."""
import argparse
import os

from ..io import load_npy


def int_between(low, high):
    """An argparse type: an integer in [low, high] (else argparse's one-line usage error, exit 2)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def add_model_args(p):
    p.add_argument("model", help="MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel")
    p.add_argument("--cpu", action="store_true", help="force the CPU execution provider")


def settings_override(text):
    """argparse type of ``--set KEY=VALUE``: (key, VALUE as YAML text); the value is parsed in
    the command's run (:func:`caffevis.settings.parse_value`), where a bad one is a one-line
    SettingsError."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"'{text}': expected KEY=VALUE (VALUE in YAML)")
    return key.strip(), value


def parsed_overrides(pairs):
    """The ``--set`` pairs of :func:`add_set_args` as a settings-override dict: each value parsed
    as YAML (a bad one is a one-line SettingsError); ``null`` clears the key."""
    from ..settings import NULL, parse_value

    parsed = {key: parse_value(value, f"--set {key}") for key, value in pairs}
    return {key: NULL if value is None else value for key, value in parsed.items()}


def add_set_args(p, example=None):
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``, a list of (key, YAML text)."""
    p.add_argument("--set", dest="overrides", action="append", type=settings_override, default=[],
                   metavar="KEY=VALUE",
                   help="override a settings key (repeatable)" + (f", e.g. --set {example}" if example else ""))


def add_backward_rule_args(p):
    """``--mode``, ``--lrn`` and ``--start`` of a backward pass."""
    p.add_argument("--mode", choices=("backprop", "deconv", "guided"), default="backprop",
                   help="backprop (exact gradient), deconv (Zeiler & Fergus) or guided backprop")
    p.add_argument("--lrn", choices=("derivative", "identity"), default="derivative",
                   help="LRN backward: its derivative (the toolbox) or identity (the Z&F paper)")
    p.add_argument("--start", choices=("last", "layer"), default="last",
                   help="seed the blob's final value (last) or the output of the layer named like it")


def add_input_args(p):
    """``--input`` (a preprocessed .npy, an image file or a folder of images) and ``--settings``."""
    p.add_argument("--input", required=True,
                   help="a preprocessed .npy (N,C,H,W), used as it is; or an image file (.jpg/.png/...) or a "
                        "folder of them (sorted by name, one batch), preprocessed as --settings says")
    p.add_argument("--settings", help="settings YAML whose preprocessing (mean, channel swap, scales, "
                                      "static_file_stretch_mode) turns images into net input (default: "
                                      "caffevis' defaults: RGB->BGR, 0-255, no mean; LeNet wants "
                                      "settings/lenet.yaml)")


def load_input(args, net):
    """The net input ``--input`` names: a .npy unchanged, images preprocessed (float32 NCHW)."""
    import numpy as np

    from ..images import list_images
    from ..preprocess import Preprocessor, preprocess_file
    from ..settings import load_settings

    if args.input.endswith(".npy"):
        return load_npy(args.input)
    from ..errors import InputError

    if os.path.isdir(args.input):
        files = list_images(args.input, r".*\.(jpg|jpeg|png|bmp|tif|tiff|webp)$")
        if not files:
            raise InputError(f"--input {args.input}: no .jpg/.png/.bmp/.tif/.webp images in the folder")
    elif os.path.isfile(args.input):
        files = [args.input]
    else:
        raise InputError(f"--input {args.input}: file not found")
    pre = Preprocessor.from_settings(load_settings(args.settings), net.input_shape)
    return np.concatenate([preprocess_file(f, pre) for f in files])


def add_rerun_args(p):
    """Options of the commands that re-run the images of a maxes file."""
    p.add_argument("--model", help="use this model instead of the one named in the file (moved files)")
    p.add_argument("--datadir", help="folder the images are in now, if they moved since find-maxes (the "
                                     "folder the list names are relative to, or the one holding the idx file)")
    p.add_argument("--engine", choices=("onnx", "numpy"), default="onnx",
                   help="backward engine: the exported ONNX graph (default, faster) or the NumPy deconvnet")
    p.add_argument("--cpu", action="store_true", help="force the CPU execution provider")


def add_mnist_args(p):
    """``--mnist DIR`` and ``--settings FILE`` (its ``mnist_dir``): where the idx files are."""
    p.add_argument("--mnist", default=None, help="folder with the MNIST idx files (default: mnist_dir of "
                                                  "--settings, else $CAFFEVIS_MNIST, else ../shared/data/mnist)")
    p.add_argument("--settings", help="settings YAML whose mnist_dir names the MNIST folder")


def mnist_dir(args):
    """The MNIST folder of :func:`add_mnist_args`' flags (None: :func:`caffevis.lenet.mnist.default_directory`)."""
    if args.mnist:
        return args.mnist
    if args.settings:
        from ..settings import load_settings

        settings = load_settings(args.settings)
        if not settings.where("mnist_dir").endswith("default"):
            return settings.mnist_dir
    return None
