"""caffevis forward MODEL --input IMAGE.png|DIR|data.npy [--settings S.yaml] -o blobs.npz"""
from ..io import output_path, save_npz
from ._args import add_input_args, add_model_args, load_input


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
