"""The per-unit file trees of mining: the unit_jpg_vis tree (what ``make-unit-vis`` writes and
the viewer's jpgvis pane reads) and the ``crop-max-patches`` output folders.

::

    <root>/max_im/<L>/<L>_NNNN.jpg              top-9 patches of unit NNNN of layer L
    <root>/max_deconv/<L>/<L>_NNNN.jpg          their deconvolutions
    <root>/regularized_opt/<L>/<L>_NNNN_montage.jpg   2x2 montage of optimized images
    <root>/regularized_opt/<L>/<L>_NNNN_info.json     how that montage was made
    <root>/regularized_opt/<L>/whole_layer.jpg        one optimized image per unit (sprites)

``<L>`` is the blob's name as a file name (:func:`caffevis.paths.blob_file_name`: Caffe names
keep their slashes as nested folders; ONNX tensor names starting with '/' are flattened).
A montage is four quadrants; each is trimmed by ``SMALL_PAD + LARGE_PAD`` pixels on every
side when cut out (:func:`crop_to_corner`, DeepVis' reader), so writers lay cells out for it.

``crop-max-patches`` writes, per unit (the original's ``crop_max_patches`` layout)::

    <outdir>/<L>/unit_NNNN/<kind>_RRR.png       rank RRR's patch (kind: maxim, deconv, deconvnorm, ...)
    <outdir>/<L>/unit_NNNN/info.txt             one line per rank: value, image, location

``make-unit-vis --from-patches`` reads them back into the ``max_im`` / ``max_deconv`` montages.
"""
from __future__ import annotations

import os

from ..paths import blob_file_name

#: Padding around each montage cell, and around each quadrant.
SMALL_PAD = 1
LARGE_PAD = 2
MAX_TREES = ("max_im", "max_deconv")
#: Patch kind -> the unit_jpg_vis tree of its 3x3 montages.
MONTAGE_TREE_OF_KIND = {"maxim": "max_im", "deconv": "max_deconv"}
REGULARIZED_TREE = "regularized_opt"


def unit_jpg_path(root, kind, layer, unit):
    """``<root>/<kind>/<layer>/<layer>_NNNN.jpg`` (kind: max_im, max_deconv)."""
    return os.path.join(root, kind, blob_file_name(layer), f"{blob_file_name(layer)}_{unit:04d}.jpg")


def regularized_dir(root, layer):
    return os.path.join(root, REGULARIZED_TREE, blob_file_name(layer))


def montage_path(root, layer, unit):
    return os.path.join(regularized_dir(root, layer), f"{blob_file_name(layer)}_{unit:04d}_montage.jpg")


def info_path(root, layer, unit):
    return os.path.join(regularized_dir(root, layer), f"{blob_file_name(layer)}_{unit:04d}_info.json")


def whole_layer_path(root, layer):
    return os.path.join(regularized_dir(root, layer), "whole_layer.jpg")


def unit_paths(root, layer, unit):
    """The three files of a unit: optimized montage, top-9 patches, their deconvs."""
    return (montage_path(root, layer, unit),) + tuple(unit_jpg_path(root, kind, layer, unit) for kind in MAX_TREES)


def patch_unit_dir(outdir, layer, unit):
    """``<outdir>/<L>/unit_NNNN``: one unit's ``crop-max-patches`` folder."""
    return os.path.join(outdir, blob_file_name(layer), f"unit_{unit:04d}")


def patch_layer_pattern(outdir, layer):
    """``<outdir>/<L>/unit_NNNN/`` as text, for messages naming what was written."""
    return os.path.join(outdir, blob_file_name(layer), "unit_NNNN", "")


def patch_path(outdir, layer, unit, kind, rank):
    """``<outdir>/<L>/unit_NNNN/<kind>_RRR.png``: the patch of the unit's ``rank``-th image (0: highest)."""
    return os.path.join(patch_unit_dir(outdir, layer, unit), f"{kind}_{rank:03d}.png")


def patch_info_path(outdir, layer, unit):
    """``<outdir>/<L>/unit_NNNN/info.txt``."""
    return os.path.join(patch_unit_dir(outdir, layer, unit), "info.txt")


def crop_to_corner(img, corner, small_padding=SMALL_PAD, large_padding=LARGE_PAD):
    """One quadrant of a 2x2 montage: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.

    Each quadrant is trimmed by ``small_padding + large_padding`` pixels on every side
    (the padding between and around the montages of the unit_jpg_vis files).
    """
    h, w = img.shape[:2]
    if h != w or h % 2:
        raise ValueError(f"montage {w}x{h}: expected a square with an even side")
    half = h // 2
    trim = small_padding + large_padding
    top, left = (corner // 2) * half, (corner % 2) * half
    return img[top + trim:top + half - trim, left + trim:left + half - trim]
