#!/usr/bin/env python
"""Our viewer window next to DeepVis's published screenshot -> docs/viewer_side_by_side.png.

Left: ``caffevis live`` (headless) on SqueezeNet v1.0 with its real weights, a toolbox
image, a conv unit selected, deconv on, DeepVis's default pane layout at global_scale 0.9
(the screenshot's scale), and the jpgvis pane filled when a ``unit_jpg_vis`` tree is given
or found. Right: ``example_caffenet-yos_bus_wheel_unit.jpg`` (CaffeNet-yos, conv5 unit 26).

    python tools/viewer_side_by_side.py [--image PATH] [--layer fire9/concat] [--unit N]
                                        [--unit-jpg-dir DIR] [-o docs/viewer_side_by_side.png]
"""
import argparse
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from caffevis.mining.layout import MAX_TREES, REGULARIZED_TREE  # noqa: E402

SHARED = os.path.normpath(os.path.join(REPO, "..", "shared"))
REFERENCE = os.path.join(SHARED, "published", "dvt_doc", "example_caffenet-yos_bus_wheel_unit.jpg")
DEFAULT_IMAGE = os.path.join(SHARED, "data", "images", "dvt_input_images", "ILSVRC2012_val_00020333.jpg")
JPG_DIR_CANDIDATES = ("model_zoo/squeezenet/unit_jpg_vis", "model_zoo/squeezenet_v1.0/unit_jpg_vis", "unit_jpg_vis")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default=os.path.join(REPO, "settings", "squeezenet.yaml"))
    p.add_argument("--image", default=DEFAULT_IMAGE, help="input image (default: the toolbox's ambulance)")
    p.add_argument("--layer", default="fire9/concat", help="conv blob whose unit is selected")
    p.add_argument("--unit", type=int, help="unit to select (default: the most active one)")
    p.add_argument("--mode", default="deconv", choices=("deconv", "grad", "guided"))
    p.add_argument("--unit-jpg-dir", help="unit_jpg_vis tree for the jpgvis pane")
    p.add_argument("--hide", default="squeeze|expand", help="regex of blobs to leave out of the layer list")
    p.add_argument("--reference", default=REFERENCE)
    p.add_argument("-o", "--output", default=os.path.join(REPO, "docs", "viewer_side_by_side.png"))
    args = p.parse_args(argv)

    from caffevis.settings import DEFAULT_WINDOW_PANES
    from caffevis.viewer.launch import build_viewer, open_settings

    jpg_dir = args.unit_jpg_dir or next((os.path.join(REPO, c) for c in JPG_DIR_CANDIDATES
                                         if os.path.isdir(os.path.join(REPO, c, MAX_TREES[0]))), None)
    overrides = {"window_panes": {k: list(v) for k, v in DEFAULT_WINDOW_PANES.items()}, "global_scale": 0.9,
                 "caffevis_layers_aspect_ratio": 1.0, "caffevis_control_line_spacing": 4,
                 # one line of layer names, as CaffeNet's in the reference: hide the fire modules' inner blobs
                 "caffevis_filter_layers_regex": args.hide}
    if jpg_dir:
        overrides.update(caffevis_unit_jpg_dir=jpg_dir, caffevis_jpgvis_layers=_jpg_layers(jpg_dir))
    settings = open_settings(args.settings, overrides)
    folder = os.path.dirname(os.path.abspath(args.image))
    viewer = build_viewer(settings, images=folder, headless=True)
    names = [os.path.basename(x) for x in viewer.fetcher.static.paths]
    viewer.fetcher.static_idx = names.index(os.path.basename(args.image))
    layers = viewer.state.layers
    if args.layer not in layers:
        p.error(f"--layer {args.layer}: not a layer of the net ({', '.join(layers)})")
    unit = args.unit
    if unit is None:  # the unit that fires most on this image, as one would pick by eye
        frame = viewer.fetcher.static.load(viewer.fetcher.static_idx)
        acts = viewer.computer.forward(frame).blobs[args.layer][0]
        peak = acts.reshape(acts.shape[0], -1).max(axis=1)
        if jpg_dir:  # prefer units that have images in the tree
            from caffevis.mining.layout import unit_paths

            has = np.array([os.path.isfile(unit_paths(jpg_dir, args.layer, u)[1]) for u in range(len(peak))])
            if has.any():
                peak = np.where(has, peak, -np.inf)
        unit = int(peak.argmax())
    viewer.state.select_layer(layers.index(args.layer))
    viewer.state.select_unit(unit)
    mode_keys = {"grad": "n", "deconv": "nn", "guided": "BBB"}[args.mode]
    records = viewer.run_headless(mode_keys, frames=len(mode_keys) + 1)
    ours = records[-1]["image"]
    print(f"{records[-1]['status']}  [{records[-1]['input']}]")

    ref = cv2.imread(args.reference, cv2.IMREAD_COLOR)
    if ref is None:
        p.error(f"{args.reference}: reference screenshot not found")
    if ours.shape != ref.shape:
        ours = cv2.resize(ours, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA)
    out = compose(ours, ref, f"caffevis live: SqueezeNet v1.0, {args.layer} unit {unit}, {args.mode}",
                  "DeepVis (published screenshot): CaffeNet-yos, conv5 unit 26, deconv")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    cv2.imwrite(args.output, out, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.output} ({out.shape[1]}x{out.shape[0]})")
    return 0


def _jpg_layers(root):
    """Layers present in a unit_jpg_vis tree (files are <kind>/<L>/<L>_NNNN[_montage].jpg; L may hold '/')."""
    layers = set()
    for kind in (REGULARIZED_TREE,) + MAX_TREES:
        top = os.path.join(root, kind)
        for dirpath, _, filenames in os.walk(top):
            for name in filenames:
                m = re.match(r"(.*)_\d{4}(_montage)?\.jpg$", name)
                if not m:
                    continue
                stem = os.path.relpath(os.path.join(dirpath, m.group(1)), top).replace(os.sep, "/")
                half = len(stem) // 2
                if stem[half] == "/" and stem[:half] == stem[half + 1:]:
                    layers.add(stem[:half])
    return sorted(layers)


def compose(left, right, left_title, right_title, gap=20, title_h=36):
    """Two window images side by side with a title above each."""
    h, w = left.shape[:2]
    out = np.full((h + title_h, 2 * w + gap, 3), 255, np.uint8)
    out[title_h:, :w] = left
    out[title_h:, w + gap:] = right[:h, :w]
    for x, text in ((0, left_title), (w + gap, right_title)):
        cv2.putText(out, text, (x + 8, title_h - 11), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 1, cv2.LINE_AA)
    return out


if __name__ == "__main__":
    sys.exit(main())
