"""caffevis make-unit-vis [MAXES.h5] -o unit_jpg_vis [--layers ...] [--regularized]"""
import os
import sys

from ._args import add_rerun_args


def register(sub):
    p = sub.add_parser("make-unit-vis", help="build the viewer's unit_jpg_vis tree (max_im / max_deconv "
                                             "3x3 montages; regularized_opt with --regularized)",
                       description="Write <outdir>/max_im/<layer>/<layer>_NNNN.jpg (the top-9 receptive-field "
                                   "patches of unit NNNN, highest first, row-major) and max_deconv/... (their "
                                   "deconvs), the layout the viewer's jpgvis pane reads "
                                   "(caffevis_unit_jpg_dir).")
    p.add_argument("maxes", nargs="?", help="HDF5 from find-maxes (may be left out with --regularized, "
                                            "--settings and --layers: then only regularized_opt/ is made)")
    p.add_argument("-o", "--outdir", required=True, help="the unit_jpg_vis folder")
    p.add_argument("--layers", action="append", help="blobs, comma-separated or repeated (default: all in the file)")
    p.add_argument("--idx-begin", type=int, default=0, help="first unit (default 0)")
    p.add_argument("--idx-end", type=int, help="one past the last unit (default: all)")
    p.add_argument("-N", "--N", dest="n", type=int, default=9, help="tiles per montage, at most 9 (default 9)")
    p.add_argument("--min-tile", type=int, default=64,
                   help="enlarge receptive fields smaller than this many pixels by a whole factor (default 64; "
                        "0: tiles at field size)")
    p.add_argument("--from-patches", metavar="DIR",
                   help="assemble the montages from crop-max-patches PNGs in DIR instead of recomputing")
    p.add_argument("--lrn", choices=("derivative", "identity"), default="derivative",
                   help="LRN rule of the deconv (default derivative, as the toolbox)")
    p.add_argument("--regularized", action="store_true",
                   help="also run the regularized optimizer: regularized_opt/<layer>/<layer>_NNNN_montage.jpg "
                        "and whole_layer.jpg (slow)")
    p.add_argument("--from-optimize", metavar="DIR",
                   help="build regularized_opt/ from the runs that 'caffevis optimize --units' saved in DIR "
                        "(one output prefix per preset and seed) instead of optimizing; quadrant q shows preset "
                        "q+1, cell k seed k, missing ones black")
    p.add_argument("--settings", help="settings YAML for --regularized (default: the model and preprocessing "
                                      "recorded in the maxes file)")
    p.add_argument("--opt-max-iter", type=int, help="--regularized: iterations per run (default: the presets')")
    p.add_argument("--opt-seeds", type=int, help="--regularized: runs per preset (default 9: a 3x3 quadrant; "
                                                 "from saved runs: the seeds found)")
    p.add_argument("--scheduler", help="--regularized: run the optimizer's batches on Dask, 'local:N' (N processes "
                                       "here) or a running scheduler 'tcp://HOST:PORT'")
    add_rerun_args(p)
    p.set_defaults(func=run)


def run(args):
    from ..errors import InputError
    from ..mining.maxes import load_maxes
    from ..model.net import Net
    from ..images import write_image
    from ..mining.layout import MONTAGE_TREE_OF_KIND, unit_jpg_path
    from ..mining.patches import make_max_tree, montage_from_patch_dir

    if args.from_optimize:
        if args.scheduler:
            raise InputError("--from-optimize optimizes nothing: --scheduler does not apply")
        args.regularized = True
    if args.maxes is None:
        return _regularized_only(args)
    result = load_maxes(args.maxes)
    layers = _layer_args(args) or list(result.layers)
    for layer in layers:
        if layer not in result.layers:
            raise InputError(f"{args.maxes}: blob '{layer}' is not in the file (it has {', '.join(result.layers)})")
    if not 1 <= args.n <= 9:
        raise InputError(f"-N {args.n}: expected 1 to 9 (a 3x3 montage)")
    maker = None
    if not args.from_patches:
        from ..mining.patches import PatchMaker

        net = Net.load(args.model, force_cpu=args.cpu) if args.model else None
        maker = PatchMaker(result, net=net, lrn=args.lrn, engine=args.engine, force_cpu=args.cpu,
                           datadir=args.datadir)
    count = 0
    for layer in layers:
        units = _units(args, layer, result.layers[layer].channels)
        if args.from_patches:
            for unit in units:
                for kind, tree in MONTAGE_TREE_OF_KIND.items():
                    img = montage_from_patch_dir(args.from_patches, layer, unit, kind, args.n, args.min_tile)
                    write_image(unit_jpg_path(args.outdir, tree, layer, unit), img)
                    count += 1
        else:
            count += len(make_max_tree(result, [layer], args.outdir, units=units, n=args.n, maker=maker,
                                       min_tile=args.min_tile))
        if args.regularized:
            count += _regularized(args, _settings_for(args, result), layer, units)
    print(f"wrote {count} montages under {os.path.join(args.outdir, '')}", file=sys.stderr)
    return getattr(args, "exit_code", 0)


def _layer_args(args):
    return [b.strip() for item in args.layers or [] for b in item.split(",") if b.strip()]


def _units(args, layer, channels):
    from ..errors import InputError

    units = range(args.idx_begin, channels if args.idx_end is None else min(args.idx_end, channels))
    if not len(units):
        raise InputError(f"--idx-begin {args.idx_begin} / --idx-end {args.idx_end}: no units of '{layer}'")
    return units


def _regularized_only(args):
    """No maxes file: the regularized_opt tree alone, for the layers and model of --settings."""
    from ..errors import InputError
    from ..settings import load_settings, model_overrides

    if not (args.regularized and args.settings and args.layers):
        raise InputError("make-unit-vis without a maxes file makes only regularized_opt/: "
                         "give --regularized, --settings and --layers")
    if args.from_patches:
        raise InputError("--from-patches needs the maxes file the patches came from")
    settings = load_settings(args.settings, model_overrides(args.model) if args.model else {})
    net = settings.open_net(force_cpu=True if args.cpu else None)
    count = 0
    for layer in _layer_args(args):
        if layer not in net.blob_shapes or layer == net.input_name:
            raise InputError(f"--layers: '{layer}' is not a blob of {settings.source} "
                             f"(blobs: {', '.join(net.blob_names[1:])})")
        count += _regularized(args, settings, layer, _units(args, layer, net.blob_shapes[layer][1]), net=net)
    print(f"wrote {count} montages under {os.path.join(args.outdir, '')}", file=sys.stderr)
    return getattr(args, "exit_code", 0)


def _settings_for(args, result):
    """Settings for the optimizer: --settings, with the maxes file's model and preprocessing
    filling in what the file (or its absence) leaves unset."""
    from ..settings import load_settings, model_overrides

    pre = result.config.get("preprocess", {})
    overrides = {}
    if not args.settings:
        overrides.update(model_overrides(args.model or result.config["model"]))
        overrides.update({"caffevis_data_mean": pre.get("mean"), "caffevis_input_scale": pre.get("input_scale"),
                          "caffevis_raw_scale": pre.get("raw_scale")})
        if pre.get("channel_swap"):
            overrides["caffe_net_channel_swap"] = pre["channel_swap"]
    elif args.model:
        overrides.update(model_overrides(args.model))
    return load_settings(args.settings, overrides)


def _regularized(args, settings, layer, units, net=None):
    """regularized_opt/<layer>/ via the optimizer's tree writer (caffevis.mining.unit_vis)."""
    from ..input_space import InputSpace
    from ..mining.unit_vis import make_regularized_opt_tree, regularized_opt_tree_from_runs

    net = net or settings.open_net(force_cpu=True if args.cpu else None)
    if args.from_optimize:
        done = regularized_opt_tree_from_runs(args.from_optimize, layer, list(units), args.outdir,
                                              net.blob_shapes[layer][1], tuple(net.input_shape[2:]),
                                              seeds=args.opt_seeds)
        return _report(args, layer, done)
    space = InputSpace.from_settings(settings, net.input_shape)
    params = {"max_iter": args.opt_max_iter} if args.opt_max_iter else settings
    model = None
    if args.scheduler:
        from ..cluster import model_for_workers, parse_scheduler

        parse_scheduler(args.scheduler)
        model = model_for_workers(settings)
    done = make_regularized_opt_tree(net, params, layer, list(units), args.outdir, space=space,
                                     seeds=args.opt_seeds or 9, scheduler=args.scheduler, model=model)
    return _report(args, layer, done)


def _report(args, layer, done):
    """Montages written; a layer with failed units sets the exit code 1."""
    if done["failed"]:
        print(f"caffevis make-unit-vis: {layer}: {len(done['failed'])} unit(s) failed and have no montage "
              f"(rerun to retry them)", file=sys.stderr)
        args.exit_code = 1
    return len(done.get("montages", []))
