"""caffevis forward MODEL --input data.npy -o blobs.npz"""
from ..io import load_npy, output_path


def add_model_args(p):
    p.add_argument("model", help="MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel")
    p.add_argument("--cpu", action="store_true", help="force the CPU execution provider")


def register(sub):
    p = sub.add_parser("forward", help="run the net on a preprocessed input; write every blob")
    add_model_args(p)
    p.add_argument("--input", required=True, help=".npy with the preprocessed input (N,C,H,W)")
    p.add_argument("-o", "--output", required=True, help="output .npz (blob name -> array)")
    p.set_defaults(func=run)


def run(args):
    import numpy as np

    from ..model.net import Net

    net = Net.load(args.model, force_cpu=args.cpu)
    blobs = net.forward(load_npy(args.input))
    out = output_path(args.output, ".npz")
    np.savez(out, **blobs)
    print(f"wrote {len(blobs)} blobs to {out}")
