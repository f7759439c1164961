"""caffevis crop-max-patches MAXES.h5 --layer conv5 -o OUTDIR [--do-maxes --do-deconv ...]"""
import sys

from ._args import add_rerun_args

DO_FLAGS = (("maxes", "maxim"), ("deconv", "deconv"), ("deconv-norm", "deconvnorm"), ("backprop", "backprop"),
            ("backprop-norm", "backpropnorm"))


def register(sub):
    p = sub.add_parser("crop-max-patches", help="crop each unit's top-N receptive-field patches and their "
                                                "deconv/backprop (PNG per patch, info.txt)",
                       description="Re-run each unit's top images from a find-maxes file, crop the unit's "
                                   "receptive field around the max (zero-padded at borders) and the deconv / "
                                   "backprop of a 1.0 seed there; write OUTDIR/<layer>/unit_NNNN/"
                                   "{maxim,deconv,deconvnorm,backprop,backpropnorm}_NNN.png and info.txt. "
                                   "With no --do-* flag, everything is written.")
    p.add_argument("maxes", help="HDF5 from find-maxes (it names the model, preprocessing and images)")
    p.add_argument("--layer", required=True, help="blob to crop (one of the file's blobs)")
    p.add_argument("-o", "--outdir", required=True, help="output folder")
    p.add_argument("-N", "--N", dest="n", type=int, default=9, help="patches per unit (default 9)")
    for flag, kind in DO_FLAGS:
        p.add_argument(f"--do-{flag}", action="store_true", help=f"write {kind}_NNN.png")
    p.add_argument("--do-info", action="store_true", help="write info.txt "
                                                         "(is_conv value image_idx label [y x] filename)")
    p.add_argument("--idx-begin", type=int, default=0, help="first unit (default 0)")
    p.add_argument("--idx-end", type=int, help="one past the last unit (default: all)")
    p.add_argument("--lrn", choices=("derivative", "identity"), default="derivative",
                   help="LRN rule of the deconv (default derivative, as the toolbox)")
    add_rerun_args(p)
    p.set_defaults(func=run)


def run(args):
    from ..mining.layout import patch_layer_pattern
    from ..mining.maxes import load_maxes
    from ..mining.patches import crop_max_patches
    from ..model.net import Net

    result = load_maxes(args.maxes)
    kinds = [kind for flag, kind in DO_FLAGS if getattr(args, "do_" + flag.replace("-", "_"))]
    info = args.do_info
    if not kinds and not info:
        kinds, info = [kind for _, kind in DO_FLAGS], True
    net = Net.load(args.model, force_cpu=args.cpu) if args.model else None
    crop_max_patches(result, args.layer, args.outdir, n=args.n, kinds=kinds, info=info, idx_begin=args.idx_begin,
                     idx_end=args.idx_end, net=net, lrn=args.lrn, engine=args.engine, force_cpu=args.cpu,
                     datadir=args.datadir)
    done = kinds + (["info.txt"] if info else [])
    print(f"wrote {patch_layer_pattern(args.outdir, args.layer)} ({', '.join(done)})",
          file=sys.stderr)
    return 0
