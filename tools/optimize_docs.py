#!/usr/bin/env python
"""Make the figures of docs/optimize.md: the four presets on a few SqueezeNet classes, LeNet digits.

    python tools/optimize_docs.py                 # all figures into docs/ (several minutes on 2 cores)
    python tools/optimize_docs.py --only lenet    # the quick LeNet figure only

Each SqueezeNet figure ``docs/optimize_squeezenet_NNNN.jpg`` is one row: presets 1, 2, 3, 4
(left to right) for class NNNN, pushing the class unit at the centre of ``conv10`` with
rand_seed 0, every run at its preset's full iteration count (``--layer pool10``: the
spatially pooled class score instead, ``optimize_squeezenet_pool10_NNNN.jpg``). The runs' own outputs
(best_X.jpg, best_Xpm.jpg, info.txt/json/h5) go to ``--runs`` (default optimize_results/docs).
"""
import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from caffevis.images import write_image  # noqa: E402
from caffevis.input_space import InputSpace  # noqa: E402
from caffevis.optimize import optimize, preset_params, render_best_x, result_prefix, save_result  # noqa: E402
from caffevis.settings import load_settings  # noqa: E402

SQUEEZENET_CLASSES = (130, 949, 980)  # flamingo (as the DeepVis doc's CaffeNet example), strawberry, volcano
GAP = 4


def row(images, gap=GAP, value=255):
    """Images side by side with white gaps."""
    h = max(i.shape[0] for i in images)
    parts = []
    for k, img in enumerate(images):
        if k:
            parts.append(np.full((h, gap, 3), value, np.uint8))
        parts.append(img)
    return np.concatenate(parts, axis=1)


def squeezenet_figures(out, runs, classes, max_iter=None, layer="conv10"):
    settings = load_settings(os.path.join(REPO, "settings", "squeezenet.yaml"))
    net = settings.open_net()
    space = InputSpace.from_settings(settings, net.input_shape)
    labels = settings.labels()
    lines = []
    for unit in classes:
        extra = {} if max_iter is None else {"max_iter": max_iter}
        params = [preset_params(p, push_layer=layer, push_channel=unit, rand_seed=0, **extra) for p in (1, 2, 3, 4)]
        results = optimize(net, params, space, progress=_dots())
        print(file=sys.stderr)
        images = []
        for p, r in zip((1, 2, 3, 4), results):
            prefix = result_prefix(r, os.path.join(runs, f"squeezenet_preset{p}"))
            save_result(r, space, prefix, brave=True, extra={"model": "squeezenet_v1.0", "preset": p})
            images.append(render_best_x(r.best_x, space))
            lines.append(f"| {layer} | {unit} {labels[unit]} | {p} | {r.best_obj:.1f} | {r.best_ii} | "
                         f"{r.majority_ii if r.majority_ii is not None else '-'} | {r.meta_result[12:]} | "
                         f"{r.seconds:.0f} |")
        name = f"{unit:04d}" if layer == "conv10" else f"{layer}_{unit:04d}"
        path = os.path.join(out, f"optimize_squeezenet_{name}.jpg")
        write_image(path, row(images))
        print(f"wrote {path}", file=sys.stderr)
    print("| blob | class | preset | best obj | best iteration | majority iteration | meta result | seconds (batch of 4) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))


def lenet_figure(out, runs):
    import cv2

    settings = load_settings(os.path.join(REPO, "settings", "lenet.yaml"))
    net = settings.open_net()
    space = InputSpace.from_settings(settings, net.input_shape)
    params = [preset_params(4, push_layer="ip2", push_channel=d, max_iter=200) for d in range(10)]
    results = optimize(net, params, space)
    tiles = []
    for r in results:
        save_result(r, space, result_prefix(r, os.path.join(runs, "lenet_preset4")), brave=True,
                    extra={"model": "lenet", "preset": 4})
        tiles.append(cv2.resize(render_best_x(r.best_x, space), (84, 84), interpolation=cv2.INTER_NEAREST))
        print(f"digit {r.params.push_channel}: argmax at the end {r.idxmax[-1][0]}, best {r.best_obj:.1f}, "
              f"{r.meta_result}")
    path = os.path.join(out, "optimize_lenet_digits.png")
    cv2.imwrite(path, row(tiles)[:, :, ::-1])
    print(f"wrote {path}", file=sys.stderr)


def _dots():
    count = [0]

    def tick(n):
        count[0] += 1
        if count[0] % 50 == 0:
            print(f" {count[0]}", end="", file=sys.stderr, flush=True)
    return tick


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(REPO, "docs"))
    ap.add_argument("--runs", default=os.path.join("optimize_results", "docs"))
    ap.add_argument("--only", choices=("squeezenet", "lenet"))
    ap.add_argument("--classes", default=",".join(map(str, SQUEEZENET_CLASSES)))
    ap.add_argument("--layer", default="conv10", help="SqueezeNet blob to push (conv10: its centre unit; pool10)")
    ap.add_argument("--max-iter", type=int, help="cap the iterations (quick look; the docs use the presets' own)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.only in (None, "lenet"):
        lenet_figure(args.out, args.runs)
    if args.only in (None, "squeezenet"):
        squeezenet_figures(args.out, args.runs, [int(c) for c in args.classes.split(",")], args.max_iter,
                           args.layer)


if __name__ == "__main__":
    main()
