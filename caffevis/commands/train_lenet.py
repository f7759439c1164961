"""caffevis train-lenet [-o lenet_run] [--iterations 10000] [--seed 0] [--force]"""
import os

from ..paths import REPO_ROOT

#: The shipped weights (the viewer's default model); replaced only with --force or ``-o`` naming them.
SHIPPED_DIR = os.path.join(REPO_ROOT, "model_zoo", "lenet")
DEFAULT_OUT = "lenet_run"


def register(sub):
    p = sub.add_parser("train-lenet", help="train Caffe's LeNet on MNIST (SGD + momentum, our gradient graphs)",
                       description="Train Caffe's MNIST LeNet with Caffe's lenet_solver settings; write "
                                   "lenet.prototxt, lenet.caffemodel, lenet.onnx and lenet_training.json "
                                   "into ./lenet_run/ (or -o DIR); the shipped model_zoo/lenet weights are "
                                   "replaced only with --force or -o naming that folder.")
    p.add_argument("-o", "--output", default=None,
                   help=f"output folder (default: ./{DEFAULT_OUT} in the current folder; with --force: the "
                        f"shipped model_zoo/lenet)")
    p.add_argument("--force", action="store_true",
                   help="write into the shipped model_zoo/lenet, replacing the weights the viewer opens by default")
    add_mnist_args(p)
    p.add_argument("--iterations", type=int, default=10000, help="SGD iterations (default: %(default)s, as Caffe)")
    p.add_argument("--batch", type=int, default=64, help="minibatch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=0.01, help="base learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialization and data order "
                                                        "(default: %(default)s)")
    p.add_argument("--test-interval", type=int, default=0,
                   help="evaluate on the 10k test set every N iterations (default: only at the end)")
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N training digits (0: all)")
    p.add_argument("--cpu", action="store_true", help="force the CPU execution provider")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_mnist_args(p):
    """``--mnist DIR`` and ``--settings FILE`` (its ``mnist_dir``): where the idx files are."""
    p.add_argument("--mnist", default=None, help="folder with the MNIST idx files (default: mnist_dir of "
                                                  "--settings, else $CAFFEVIS_MNIST, else ../shared/data/mnist)")
    p.add_argument("--settings", help="settings YAML whose mnist_dir names the MNIST folder")


def mnist_dir(args):
    """The MNIST folder of :func:`add_mnist_args`' flags (None: :func:`caffevis.mnist.default_directory`)."""
    if args.mnist:
        return args.mnist
    if args.settings:
        from ..settings import load_settings

        settings = load_settings(args.settings)
        if not settings.where("mnist_dir").endswith("default"):
            return settings.mnist_dir
    return None


def output_dir(args):
    """Where the run goes: ``-o``, else the shipped folder with ``--force``, else ``./lenet_run``."""
    if args.output:
        return args.output
    return SHIPPED_DIR if args.force else DEFAULT_OUT


def run(args):
    from .. import mnist, train
    from ..errors import InputError

    if args.train_limit < 0:
        raise InputError(f"--train-limit {args.train_limit}: expected 0 (all) or a positive number of digits")
    settings = train.SolverSettings(base_lr=args.lr, batch=args.batch, max_iter=args.iterations, seed=args.seed,
                                    test_interval=args.test_interval).validate()
    directory = mnist_dir(args)
    images, labels = mnist.load("train", directory)
    if args.train_limit:
        images, labels = images[:args.train_limit], labels[:args.train_limit]
    test = mnist.load("test", directory)
    params, record = train.train(images, labels, settings, test=test, progress=not args.quiet,
                                 force_cpu=args.cpu)
    paths = train.save(params, output_dir(args), record)
    print(f"test accuracy {record['test_accuracy']:.4f} on {len(test[1])} MNIST test digits after "
          f"{settings.max_iter} iterations ({record['train_seconds']} s)")
    for key in ("prototxt", "caffemodel", "onnx", "record"):
        print(f"wrote {paths[key]}")
