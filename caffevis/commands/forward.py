"""caffevis forward MODEL --input IMAGE.png|DIR|data.npy [--settings S.yaml] -o blobs.npz"""
import os

from ..io import load_npy, output_path, save_npz


def add_model_args(p):
    p.add_argument("model", help="MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel")
    p.add_argument("--cpu", action="store_true", help="force the CPU execution provider")


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


def register(sub):
    p = sub.add_parser("forward", help="run the net on an image, a folder of images or a preprocessed .npy; "
                                       "write every blob")
    add_model_args(p)
    add_input_args(p)
    p.add_argument("-o", "--output", required=True, help="output .npz (blob name -> array)")
    p.set_defaults(func=run)


def run(args):
    from ..model.net import Net

    net = Net.load(args.model, force_cpu=args.cpu)
    blobs = net.forward(load_input(args, net))
    out = output_path(args.output, ".npz")
    save_npz(out, blobs)
    print(f"wrote {len(blobs)} blobs to {out}")
