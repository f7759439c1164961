"""caffevis optimize: regularized activation maximization (DeepVis' optimize_image.py).

    caffevis optimize --settings settings/squeezenet.yaml --push-layer pool10 --push-channel 130
    caffevis optimize DEPLOY.prototxt:WEIGHTS.caffemodel --mean MEAN.npy --preset 1
    caffevis optimize lenet.prototxt:lenet.caffemodel --input-scale 0.00390625 --push-layer ip2 --units all
"""
from __future__ import annotations

import argparse
import ast
import os
import sys

import numpy as np

from ..errors import InputError, ModelError, SettingsError

PARAM_FLAGS = ("start_at", "rand_seed", "push_layer", "push_channel", "push_spatial", "push_dir", "decay",
               "blur_radius", "blur_every", "small_val_percentile", "small_norm_percentile",
               "px_benefit_percentile", "px_abs_benefit_percentile", "lr_policy", "lr_params", "max_iter")


def register(sub):
    from ..optimize import DEFAULT_TEMPLATE, LR_POLICIES, START_AT

    p = sub.add_parser("optimize", help="find images that maximize a unit (regularized optimization, Yosinski 2015)",
                       description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Parameter flags override the --preset's values. Learning rates are in 0-255 "
                              "pixel units (scaled for nets with an input scale). See docs/optimize.md.")
    m = p.add_argument_group("model (from --settings, MODEL, or the original's flags)")
    m.add_argument("model", nargs="?", help="MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel")
    m.add_argument("--settings", help="settings YAML (model, mean, scales, channel swap)")
    m.add_argument("--deploy-proto", help="Caffe deploy prototxt (settings: caffevis_deploy_prototxt)")
    m.add_argument("--net-weights", help="Caffe weights (settings: caffevis_network_weights)")
    m.add_argument("--mean", help="None, per-channel values '(104,117,123)', or a .npy/.binaryproto mean image")
    m.add_argument("--channel-swap-to-rgb", help="permutation of input channels to RGB for saved images, "
                                                 "e.g. '(2,1,0)' (default: inverse of the settings' channel swap)")
    m.add_argument("--data-size", help="network input size '(227,227)'; checked against the net")
    m.add_argument("--raw-scale", type=float, help="settings: caffevis_raw_scale")
    m.add_argument("--input-scale", type=float, help="settings: caffevis_input_scale (LeNet: 0.00390625)")
    m.add_argument("--cpu", action="store_true", help="force the CPU execution provider")
    m.add_argument("--caffe-root", help="accepted so that the original's command lines run; ignored (no Caffe needed)")

    o = p.add_argument_group("what to optimize and how (unset flags take the --preset's values)")
    o.add_argument("--preset", type=int, choices=(0, 1, 2, 3, 4), default=3,
                   help="paper Table 1 hyperparameter set (default 3); 0: the original CLI's bare defaults")
    o.add_argument("--start-at", choices=START_AT, help="x0: mean_plus_rand (default), randu or mean")
    o.add_argument("--rand-seed", type=int, help="seed for x0 (default 0)")
    o.add_argument("--push-layer", help="blob of the unit (default: the settings' last caffevis_label_layers "
                                        "blob before the softmax, e.g. ip2 for LeNet, fc8 for CaffeNet)")
    o.add_argument("--push-channel", type=int, help="channel or FC index (default 130; 0 when the push layer "
                                                    "has fewer channels)")
    o.add_argument("--units", help="many channels of --push-layer in batches: 'all', '0-9', '3,7,12-15'; "
                                   "resumable (finished units are skipped unless --brave)")
    o.add_argument("--push-spatial", help="'(row,col)' in a conv blob; None (default): the spatial centre")
    o.add_argument("--push-dir", type=float, help="seed value at the unit (default 1; must be > 0)")
    o.add_argument("--decay", type=float, help="L2 decay: x *= 1 - decay each step")
    o.add_argument("--blur-radius", type=float, help="Gaussian sigma in pixels (0: none; < 0.3 works poorly)")
    o.add_argument("--blur-every", type=int, help="blur every N steps (0: never)")
    o.add_argument("--small-val-percentile", type=float, help="zero |x| below this percentile (0: off)")
    o.add_argument("--small-norm-percentile", type=float, help="zero pixels with norm below this percentile")
    o.add_argument("--px-benefit-percentile", type=float, help="zero pixels with contribution below this percentile")
    o.add_argument("--px-abs-benefit-percentile", type=float,
                   help="zero pixels with |contribution| below this percentile")
    o.add_argument("--lr-policy", choices=LR_POLICIES, help="constant, progress or progress01")
    o.add_argument("--lr-params", help="mapping, e.g. '{\"lr\": 100}' or '{max_lr: 100, desired_prog: 2}'")
    o.add_argument("--max-iter", type=int, help="iterations")
    o.add_argument("--batch-size", type=int, default=8, help="runs per ONNX Runtime batch with --units (default 8)")
    o.add_argument("--scheduler", help="with --units: run the batches on Dask, 'local:N' (N processes here) or "
                                       "a running scheduler 'tcp://HOST:PORT' (workers see the model's paths)")

    w = p.add_argument_group("output")
    w.add_argument("--output-prefix", default="optimize_results/opt", help="path and filename prefix")
    w.add_argument("--output-template", default=DEFAULT_TEMPLATE,
                   help="filled from p.<param> and r.<result> keys (default: %(default)s)")
    w.add_argument("--brave", action="store_true", help="allow overwriting existing results")
    w.add_argument("--skipbig", action="store_true", help="do not write info.h5 (x0/best/majority/last arrays)")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# -- parsing helpers ------------------------------------------------------------------------
def parse_literal(text, flag):
    """A Python/YAML literal (numbers, tuples, None) without eval."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise SettingsError(f"--{flag}: cannot parse '{text}'") from None


def parse_spatial(text):
    if text is None or text.strip() in ("None", "none", ""):
        return None
    value = parse_literal(text if "(" in text or "[" in text else f"({text})", "push-spatial")
    if not isinstance(value, (tuple, list)) or len(value) != 2 \
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise SettingsError(f"--push-spatial: expected None or '(row,col)', got '{text}'")
    return tuple(value)


def parse_lr_params(text):
    """A mapping as the original's doc writes it ("{'max_lr': 1e8, ...}"), or YAML ({lr: 100})."""
    import yaml

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, RecursionError, MemoryError):  # the last two: nesting too deep
        try:
            value = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError):
            value = None
    if not isinstance(value, dict):
        raise SettingsError(f"--lr-params: expected a mapping such as '{{\"lr\": 100}}', got '{text}'")
    # YAML 1.1 reads 1e8 (no dot) as a string
    return {k: _number(v) for k, v in value.items()}


def _number(v):
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    return v


def parse_mean(text):
    """'None' -> None; numbers -> tuple; anything else is a path."""
    if text.strip() in ("None", "none", "null"):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)
    raise SettingsError(f"--mean: expected None, per-channel numbers or a path, got '{text}'")


def parse_units(text, n_channels):
    """Channels from 'all', 'A-B' or a list like '3,7,12-15' (in order, each once).

    Every number is checked against the layer's ``n_channels`` before a range is expanded,
    so a huge range is a one-line error, never a huge list.
    """
    if text.strip() == "all":
        return list(range(n_channels))
    ranges = []
    for part in text.split(","):
        part = part.strip()
        try:
            a, sep, b = part.partition("-")
            a = int(a)
            b = int(b) if sep else a
        except ValueError:
            raise SettingsError(f"--units: expected 'all' or a list like '0-9,12', got '{text}'") from None
        for v in (a, b):
            if not 0 <= v < n_channels:
                raise InputError(f"--units: {v} is out of range (the layer has {n_channels} channels)")
        if b < a:
            raise SettingsError(f"--units: range '{part}' names no unit (expected A-B with A <= B)")
        ranges.append((a, b))
    return list(dict.fromkeys(u for a, b in ranges for u in range(a, b + 1)))


def param_overrides(args):
    values = {}
    for name in PARAM_FLAGS:
        v = getattr(args, name)
        if v is None:
            continue
        if name == "push_spatial":
            v = parse_spatial(v)
            if v is None:
                continue
        elif name == "lr_params":
            v = parse_lr_params(v)
        values[name] = v
    if "lr_policy" in values and "lr_params" not in values and args.preset:
        from ..optimize import PRESETS

        if PRESETS[args.preset]["lr_policy"] != values["lr_policy"]:
            raise SettingsError(f"--lr-policy {values['lr_policy']} differs from preset {args.preset}'s; "
                                f"give --lr-params too")
    return values


def open_model(args):
    """(net, input space, settings or None) from --settings, MODEL and the original's flags."""
    from ..input_space import InputSpace, check_channel_swap
    from ..settings import load_settings, model_overrides

    overrides = {}
    if args.model:
        overrides.update(model_overrides(args.model))
    if args.deploy_proto or args.net_weights:
        if not (args.deploy_proto and args.net_weights):
            raise SettingsError("--deploy-proto and --net-weights go together")
        overrides.update(caffevis_deploy_prototxt=args.deploy_proto, caffevis_network_weights=args.net_weights)
    if not (args.settings or args.model or args.deploy_proto or args.net_weights):
        raise InputError("no model given: use --settings S.yaml (e.g. settings/lenet.yaml), MODEL (m.onnx or "
                         "deploy.prototxt:w.caffemodel), or --deploy-proto with --net-weights")
    mean_given = args.mean is not None
    mean = parse_mean(args.mean) if mean_given else None
    if mean is not None:
        overrides["caffevis_data_mean"] = list(mean) if isinstance(mean, tuple) else mean
    overrides.update(caffevis_raw_scale=args.raw_scale, caffevis_input_scale=args.input_scale)
    if args.cpu:
        overrides["caffevis_force_cpu"] = True
    settings = load_settings(args.settings, overrides)
    net = settings.open_net()
    if args.data_size:
        size = parse_literal(args.data_size, "data-size")
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise SettingsError(f"--data-size: expected '(height,width)', got '{args.data_size}'")
        if tuple(size) != tuple(net.input_shape[2:]):
            raise InputError(f"--data-size {tuple(size)} differs from the net's input {tuple(net.input_shape[2:])}")
    if len(net.input_shape) != 4:
        raise ModelError(f"the optimizer needs an image input (N, C, H, W); the net's input is {tuple(net.input_shape)}")
    space = InputSpace.from_settings(settings, net.input_shape)
    if args.channel_swap_to_rgb:
        to_rgb = parse_literal(args.channel_swap_to_rgb, "channel-swap-to-rgb")
        try:
            order = tuple(int(v) for v in to_rgb)
        except (TypeError, ValueError):
            order = ()
        if sorted(order) != list(range(space.channels)):
            raise SettingsError(f"--channel-swap-to-rgb: {args.channel_swap_to_rgb} is not a permutation of the "
                                f"net's {space.channels} input channels")
        to_rgb = check_channel_swap(order, space.channels)  # None: nothing to swap
        # the space keeps the forward swap: net channel i = image channel swap[i]
        space = space.replace(channel_swap=None if to_rgb is None else tuple(int(i) for i in np.argsort(to_rgb)))
    if mean_given and mean is None:
        space = space.replace(mean=None)  # '--mean None' takes the settings' mean away
    return net, space, settings


def run(args):
    from tqdm import tqdm

    from ..optimize import (UnitObjective, optimize, optimize_units, planned_prefix, preset_params,
                            push_unit_for, result_prefix, save_result, unit_blob_shape)

    overrides = param_overrides(args)
    net, space, settings = open_model(args)
    overrides.update(default_push_unit(args, settings, net, preset_params(args.preset or None, **overrides)))
    base = preset_params(args.preset or None, **overrides)
    if args.batch_size < 1:
        raise SettingsError("--batch-size: expected an integer >= 1")
    # the parsed arguments, not sys.argv: main(argv) may be called from Python with other argv
    extra = {"model": _model_record(settings), "preset": args.preset or None,
             "arguments": {k: v for k, v in sorted(vars(args).items()) if k != "func" and v is not None}}
    labels = _labels(settings, base.push_layer)

    if args.units:
        blob_shape = unit_blob_shape(net, base.push_layer)
        units = parse_units(args.units, blob_shape[0])
        params = [base.replace(push_channel=u) for u in units]

        def said(result, prefix):
            if not args.quiet:
                tqdm.write(_line(result, prefix, labels), file=sys.stderr)

        if args.scheduler:
            return _run_on_cluster(args, settings, net, params, space, blob_shape, extra, said)
        report = optimize_units(net, params, space, args.output_prefix, args.output_template,
                                batch_size=args.batch_size, brave=args.brave, skipbig=args.skipbig,
                                progress=not args.quiet, extra=extra, on_result=said)
        skipped = sum(1 for r in report if r[2] == "skipped")
        print(f"{len(report) - skipped} runs written, {skipped} already done (skipped)")
        return 0
    if args.scheduler:
        raise SettingsError("--scheduler runs many units: give --units too")

    objective = UnitObjective(net, base.push_layer)
    unit = push_unit_for(base, objective.blob_shape)
    prefix = planned_prefix(base, unit, args.output_prefix, args.output_template)
    if prefix and os.path.exists(f"{prefix}info.txt") and not args.brave:
        raise InputError(f"{prefix}info.txt exists; refusing to overwrite (use --brave)")
    with tqdm(total=base.max_iter, unit="it", disable=args.quiet, file=sys.stderr,
              desc=f"optimize {base.push_layer} {unit}") as bar:
        result = optimize(net, base, space, objective=objective, progress=bar.update)
    prefix = result_prefix(result, args.output_prefix, args.output_template)
    extra["provider"] = objective.provider
    if labels:
        extra["label"] = labels[base.push_channel] if base.push_channel < len(labels) else None
    save_result(result, space, prefix, brave=args.brave, skipbig=args.skipbig, extra=extra)
    print(_line(result, prefix, labels))
    return 0


def _run_on_cluster(args, settings, net, params, space, blob_shape, extra, said):
    """--units with --scheduler: the batches on Dask; exit 1 if some unit failed."""
    from ..cluster import model_for_workers, parse_scheduler
    from ..optimize.cluster import optimize_units_dask

    parse_scheduler(args.scheduler)
    model = model_for_workers(settings)

    def failed(params, error):
        print(f"caffevis optimize: {params.push_layer} unit {params.push_channel} (rand_seed {params.rand_seed}) "
              f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}", file=sys.stderr)

    report = optimize_units_dask(model, params, space, blob_shape, args.scheduler, args.output_prefix,
                                 args.output_template, batch_size=args.batch_size, brave=args.brave,
                                 skipbig=args.skipbig, progress=not args.quiet, extra=extra, on_result=said,
                                 on_error=failed, force_cpu=net.force_cpu)
    counts = {status: sum(1 for r in report if r[2] == status) for status in ("done", "skipped", "failed")}
    print(f"{counts['done']} runs written, {counts['skipped']} already done (skipped), {counts['failed']} failed")
    return 1 if counts["failed"] else 0


def default_push_unit(args, settings, net, params):
    """``push_layer`` / ``push_channel`` for the flags left out: the settings' last label blob before
    the softmax (ip2, fc8, ...), and the preset's channel when that blob has it, else 0."""
    chosen = {}
    layer = args.push_layer
    if layer is None:
        candidates = [b for b in settings.caffevis_label_layers or ()
                      if b != settings.caffevis_prob_layer and b in net.blob_shapes]
        if not candidates and params.push_layer in net.blob_shapes:
            candidates = [params.push_layer]  # no label layers named: the preset's (fc8) when the net has it
        if not candidates:
            raise InputError(f"--push-layer: not given, and {settings.source or 'the settings'} name no "
                             f"caffevis_label_layers blob of this net; give --push-layer BLOB "
                             f"(blobs: {', '.join(net.blob_names[1:])})")
        layer = chosen["push_layer"] = candidates[-1]
    shape = net.blob_shapes.get(layer)
    if args.push_channel is None and shape is not None and params.push_channel >= shape[1]:
        chosen["push_channel"] = 0
    return chosen


def _line(result, prefix, labels):
    label = f" ({labels[result.params.push_channel]})" if labels and result.params.push_channel < len(labels) else ""
    maj = f"majority at {result.majority_ii}" if result.majority_ii is not None else "never the argmax"
    return (f"{prefix}: unit {result.push_unit}{label} best {result.best_obj:.4g} at iteration {result.best_ii}, "
            f"{maj}; {result.meta_result}")


def _labels(settings, layer):
    if layer not in (settings.caffevis_label_layers or ()):
        return None
    try:
        return settings.labels()
    except Exception:  # labels are decoration here; a bad label file is reported by the viewer
        return None


def _model_record(settings):
    keys = ("caffevis_deploy_prototxt", "caffevis_network_weights", "caffevis_onnx_model", "caffevis_data_mean",
            "caffevis_raw_scale", "caffevis_input_scale")
    record = {k: getattr(settings, k) for k in keys}
    record["settings"] = settings.source
    return record
