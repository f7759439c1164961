"""caffevis zf-figures --digit 0 --digit 8 [--model M] [-o DIR]"""
import os

from ..paths import REPO_ROOT
from .train_lenet import add_mnist_args, mnist_dir

DEFAULT_MODEL = os.path.join(REPO_ROOT, "model_zoo", "lenet", "lenet.prototxt") + ":" + \
    os.path.join(REPO_ROOT, "model_zoo", "lenet", "lenet.caffemodel")


def register(sub):
    p = sub.add_parser("zf-figures", help="Zeiler & Fergus figures: activations and deconv projections per digit",
                       description="For the first MNIST test image of each digit: every layer's activation "
                                   "maps and the deconvnet projections of each layer's strongest units, "
                                   "written as zf_digit<D><suffix>.png.")
    p.add_argument("--digit", type=int, action="append", help="digit 0-9 (repeatable; default: 0 and 8)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel "
                        "(default: the trained LeNet in model_zoo/lenet)")
    p.add_argument("-o", "--output", default="zf_figures", help="output folder (default: ./zf_figures)")
    p.add_argument("--suffix", default="", help="appended to the file names, e.g. _caffe")
    p.add_argument("--top", type=int, default=9, help="strongest units projected per layer (default: %(default)s)")
    p.add_argument("--lrn", choices=("identity", "derivative"), default="identity",
                   help="LRN rule in the deconv path (default: identity, as the Z&F paper; LeNet has no LRN)")
    add_mnist_args(p)
    p.add_argument("--no-accuracy", action="store_true", help="do not measure the test accuracy for the caption")
    p.add_argument("--cpu", action="store_true", help="force the CPU execution provider")
    p.set_defaults(func=run)


def run(args):
    from .. import mnist, train, zf_figures
    from ..errors import InputError
    from ..model.net import Net

    if args.top < 1:
        raise InputError(f"--top {args.top}: expected at least 1")
    net = Net.load(args.model, force_cpu=args.cpu)
    if tuple(net.input_shape[1:]) != (1, 28, 28):
        raise InputError(f"{args.model}: input shape {tuple(net.input_shape[1:])}; zf-figures needs an MNIST net "
                         f"taking (1, 28, 28)")
    images, labels = mnist.load("test", mnist_dir(args))
    acc = None if args.no_accuracy else train.accuracy(net, images, labels)
    paths = zf_figures.write_figures(net, images, labels, args.digit or [0, 8], args.output, k=args.top,
                                     suffix=args.suffix, accuracy=acc, lrn=args.lrn)
    for path in paths:
        print(f"wrote {path}")
