"""caffevis backward MODEL --input data.npy|IMAGE|DIR [--settings S.yaml] --blob B --diff diff.npy --mode M --lrn L -o grad.npy"""
from ..io import load_npy, output_path
from .forward import add_input_args, add_model_args, load_input


def register(sub):
    p = sub.add_parser("backward", help="backprop / deconv / guided backprop from a blob to the input")
    add_model_args(p)
    add_input_args(p)
    p.add_argument("--blob", required=True, help="blob receiving the seed diff")
    p.add_argument("--diff", required=True, help=".npy seed diff shaped like the blob (for an image folder: "
                                                  "one row per image, sorted by name)")
    p.add_argument("--mode", choices=("backprop", "deconv", "guided"), default="backprop",
                   help="backprop (exact gradient), deconv (Zeiler & Fergus) or guided backprop")
    p.add_argument("--lrn", choices=("derivative", "identity"), default="derivative",
                   help="LRN backward: its derivative (the toolbox) or identity (the Z&F paper)")
    p.add_argument("--start", choices=("last", "layer"), default="last",
                   help="seed the blob's final value (last) or the output of the layer named like it")
    p.add_argument("--engine", choices=("onnx", "numpy"), default=None,
                   help="gradient graph on ORT or NumPy deconvnet (default: numpy for deconv)")
    p.add_argument("-o", "--output", required=True, help="output .npy (diff at the input)")
    p.set_defaults(func=run)


def run(args):
    import numpy as np

    from ..backward import Seed, backward
    from ..model.net import Net

    net = Net.load(args.model, force_cpu=args.cpu)
    grad = backward(net, load_input(args, net), Seed(args.blob, load_npy(args.diff)), mode=args.mode, lrn=args.lrn,
                    start=args.start, engine=args.engine)
    out = output_path(args.output, ".npy")
    np.save(out, grad)
    print(f"wrote {out} {grad.shape}")
