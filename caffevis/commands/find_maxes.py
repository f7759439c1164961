"""caffevis find-maxes [MODEL] --images PATH --layers conv1,conv2 -o maxes.h5; caffevis merge-maxes"""
import sys

DEFAULT_LAYER_TYPES = ("Convolution", "Deconvolution", "InnerProduct", "Softmax")


def register(sub):
    p = sub.add_parser("find-maxes", help="find each unit's top-N images over a data set (HDF5 output)",
                       description="For every channel of the chosen blobs, record the N images with the "
                                   "highest single spatial max (value, image index, label, location). "
                                   "Batched, resumable (rerun the same command), shardable.")
    p.add_argument("model", nargs="?", help="MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel "
                                            "(default: the model of --settings)")
    p.add_argument("--settings", help="settings YAML for the model and preprocessing")
    p.add_argument("--images", required=True,
                   help="an image directory (searched recursively, sorted), a list file ('FILE [LABEL]' per "
                        "line) or an idx images file (MNIST)")
    p.add_argument("--labels", help="idx labels file for --images idx data")
    p.add_argument("--datadir", help="folder the list file's names are relative to (default: the list's folder)")
    p.add_argument("--layers", action="append",
                   help="blobs to track, comma-separated or repeated (default: every convolution, "
                        "inner product and softmax top)")
    p.add_argument("-N", "--N", dest="n", type=int, default=9, help="images kept per unit (default 9)")
    p.add_argument("-o", "--output", default="maxes.h5", help="output HDF5 (also the checkpoint; default maxes.h5)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--shard", default="0/1", help="I/N: scan only shard I (0-based) of N; merge with merge-maxes")
    p.add_argument("--checkpoint-every", type=int, default=20, metavar="K",
                   help="save the state every K batches (default 20; 0: only at the end)")
    p.add_argument("--decode-threads", type=int, default=2, help="threads decoding images (default 2)")
    p.add_argument("--workers", type=int, help="run shards on a local Dask cluster of this many processes "
                                               "(the same as --scheduler local:K)")
    p.add_argument("--scheduler", help="run shards on Dask: 'local:N' (N processes here) or the address of a "
                                       "running scheduler (tcp://host:8786)")
    p.add_argument("--shards", type=int, help="number of shards for a Dask run (default: one per worker)")
    p.add_argument("--keep-shards", action="store_true", help="keep the Dask run's per-shard files")
    p.add_argument("--overwrite", action="store_true", help="start over even if -o holds an unfinished scan")
    p.add_argument("--mean", help="override caffevis_data_mean: a number, comma-separated per channel, or a file")
    p.add_argument("--input-scale", type=float, help="override caffevis_input_scale (LeNet: 0.00390625)")
    p.add_argument("--image-dims", help="H,W to resize images to before the centre crop (default 256,256 for "
                                        "a 227 net)")
    p.add_argument("--geometry", choices=("offline", "crop", "stretch"), default="offline",
                   help="image geometry: offline: resize to --image-dims then centre crop (default, as the original "
                        "find_max_acts), the viewer's centre square crop, or stretch")
    p.add_argument("--cpu", action="store_true", help="force the CPU execution provider")
    p.add_argument("--benchmark", type=int, metavar="BATCHES",
                   help="measure: pure forward vs the full scan over this many batches; writes nothing")
    p.set_defaults(func=run)

    m = sub.add_parser("merge-maxes", help="merge find-maxes shard files into the single-run result")
    m.add_argument("shards", nargs="+", help="shard files of one scan")
    m.add_argument("-o", "--output", required=True, help="merged HDF5")
    m.add_argument("--partial", action="store_true", help="allow unfinished or missing shards")
    m.set_defaults(func=run_merge)


def _mean_override(text):
    if text is None:
        return None
    parts = text.split(",")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        return text  # a path
    return values[0] if len(values) == 1 else values


def build_job(args):
    """The :class:`~caffevis.mining.scan.ScanJob` and the opened net for parsed arguments."""
    from ..cluster import model_for_workers
    from ..errors import InputError
    from ..mining.scan import ScanJob, preprocess_from_settings
    from ..mining.sources import source_spec
    from ..settings import load_settings, model_overrides

    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: expected a positive integer")
    if args.n < 1:
        raise InputError(f"-N {args.n}: expected a positive integer")
    if args.checkpoint_every < 0:
        raise InputError(f"--checkpoint-every {args.checkpoint_every}: expected 0 (only at the end) or more")
    overrides = dict(model_overrides(args.model)) if args.model else {}
    overrides["caffevis_data_mean"] = _mean_override(args.mean)
    overrides["caffevis_input_scale"] = args.input_scale
    settings = load_settings(args.settings, overrides)
    model = model_for_workers(settings)
    net = settings.open_net(force_cpu=True if args.cpu else None)
    if args.layers:
        blobs = [b.strip() for item in args.layers for b in item.split(",") if b.strip()]
    else:
        blobs = []
        for lp in net.layers:
            if lp.type in DEFAULT_LAYER_TYPES:
                blobs += [t for t in lp.tops if t not in blobs]
        if not blobs:
            raise InputError("no default blobs (not a Caffe model?): give --layers")
    preprocess = preprocess_from_settings(settings)
    preprocess["geometry"] = args.geometry
    if args.image_dims:
        try:
            dims = [int(v) for v in args.image_dims.split(",")]
        except ValueError:
            dims = []
        if len(dims) != 2 or min(dims) < 1:
            raise InputError(f"--image-dims {args.image_dims}: expected H,W (two positive integers)")
        preprocess["image_dims"] = dims
    job = ScanJob(model=model, source=source_spec(args.images, args.labels, args.datadir), blobs=blobs,
                  n=args.n, batch_size=args.batch_size, preprocess=preprocess, shard=args.shard)
    return job, net


def run(args):
    from ..errors import InputError
    from ..mining.maxes import parse_shard
    from ..mining.scan import benchmark, run_dask, run_scan

    parse_shard(args.shard)
    job, net = build_job(args)
    if args.benchmark:
        report = benchmark(job, net, args.benchmark, workers=args.decode_threads)
        print(f"batch {job.batch_size}: pure forward {report['forward_ips']:.1f} img/s, full scan "
              f"{report['scan_ips']:.1f} img/s ({100 * report['ratio']:.1f} % of forward)")
        return 0
    if args.scheduler or args.workers:
        if args.scheduler and args.workers:
            raise InputError("--workers K is short for --scheduler local:K; give one of them")
        if args.workers is not None and args.workers < 1:
            raise InputError(f"--workers {args.workers}: expected a positive integer")
        scheduler = args.scheduler or f"local:{args.workers}"
        result = run_dask(job, args.output, shards=args.shards, scheduler=scheduler,
                          checkpoint_every=args.checkpoint_every,
                          decode_workers=args.decode_threads, force_cpu=args.cpu, keep_shards=args.keep_shards,
                          overwrite=args.overwrite)
    else:
        result = run_scan(job, args.output, net=net, checkpoint_every=args.checkpoint_every,
                          workers=args.decode_threads, overwrite=args.overwrite)
    state = "complete" if result.complete else "unfinished"
    print(f"wrote {args.output}: top-{job.n} of {len(result.layers)} blob(s) over {len(result.images)} images "
          f"(shard {job.shard}, {state})", file=sys.stderr)
    return 0


def run_merge(args):
    from ..mining.maxes import merge_files

    merged = merge_files(args.shards, args.output, allow_incomplete=args.partial)
    print(f"wrote {args.output}: merged {len(args.shards)} shard(s), "
          f"{int(merged.batches_done.sum())}/{len(merged.batches_done)} batches", file=sys.stderr)
    return 0
