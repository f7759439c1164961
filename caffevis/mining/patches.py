"""Top-N patches of a unit: the receptive-field crops of its max images and their deconvs,
written as the original ``crop_max_patches`` did, and the 3×3 montages of the viewer's
``unit_jpg_vis`` tree.

For each unit and each of its top-N entries (highest first) the image is run again, the
unit's receptive field around the recorded max location is cropped from the preprocessed
input (zero-padded where the field leaves the image), and the deconv / backprop of a 1.0
seed at that location (started at the layer named like the blob, as the original's
``deconv_from_layer``/``backward_from_layer``) is cropped the same way.

Rendering follows the original's ``save_caffe_image``: ``maxim``, ``deconv`` and
``backprop`` are scaled with 0 at mid-grey (``norm01c``); the ``*norm`` images are the
L2 norm over channels scaled min-to-max (written as one-channel grey PNGs; the original
repeated the grey in three channels).
"""
from __future__ import annotations

import os
import sys
from collections import OrderedDict

import numpy as np

from ..backward import Seed, backward
from ..errors import InputError
from ..images import write_image
from ..imaging import norm01, norm01c, to_uint8  # noqa: F401  (re-exported for callers)
from ..receptive import crop_region, net_fields
from .layout import MONTAGE_TREE_OF_KIND, patch_info_path, patch_path, patch_unit_dir, unit_jpg_path

KINDS = ("maxim", "deconv", "deconvnorm", "backprop", "backpropnorm")
#: Grey of the lines between montage tiles (as in the toolbox's published screenshot).
MONTAGE_GAP_COLOUR = (82, 82, 82)
MONTAGE_GAP = 2


# -- pure rendering ----------------------------------------------------------------------
def to_display(chw, space=None):
    """(C, H, W) in the net's channel order -> (H, W, 3) RGB (the order of ``space``, an
    :class:`~caffevis.input_space.InputSpace`), or (H, W) for one channel."""
    chw = np.asarray(chw)
    if chw.ndim == 2:
        return chw
    if chw.shape[0] == 1:
        return chw[0]
    return space.to_rgb(chw)


def render(kind, crop, space=None):
    """The display image (float in [0, 1]) of one crop of the given kind."""
    if kind.endswith("norm"):
        return norm01(np.linalg.norm(np.asarray(crop, np.float64), axis=0))
    return norm01c(to_display(crop, space), 0.0)


def montage(tiles, rows=3, cols=3, gap=MONTAGE_GAP, gap_colour=MONTAGE_GAP_COLOUR, size=None):
    """A rows×cols grid of [0, 1] images (uint8 RGB), row-major, highest first.

    Tiles are resized (area / bilinear) to ``size`` (h, w) (default: the largest tile);
    missing tiles (a unit with fewer than rows×cols entries) stay gap-coloured.
    """
    import cv2

    tiles = [t if t.ndim == 3 else np.repeat(np.asarray(t)[:, :, None], 3, axis=2) for t in tiles]
    if size is None:
        size = (max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)) if tiles else (1, 1)
    th, tw = size
    out = np.empty((rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap, 3), np.uint8)
    out[:] = np.asarray(gap_colour, np.uint8)
    for k, tile in enumerate(tiles[:rows * cols]):
        if tile.shape[:2] != (th, tw):
            if th % tile.shape[0] == 0 and tw % tile.shape[1] == 0:
                interp = cv2.INTER_NEAREST  # integer upscaling keeps small fields' pixels crisp
            else:
                interp = cv2.INTER_AREA if tile.shape[0] > th else cv2.INTER_LINEAR
            tile = cv2.resize(np.asarray(tile, np.float32), (tw, th), interpolation=interp)
        r, c = divmod(k, cols)
        out[r * (th + gap):r * (th + gap) + th, c * (tw + gap):c * (tw + gap) + tw] = to_uint8(tile)
    return out


# -- computing the patches of one unit -----------------------------------------------------
class PatchMaker:
    """Re-runs a maxes file's images and crops each unit's top-N patches.

    Parameters
    ----------
    result : MaxesResult
        From :func:`caffevis.mining.maxes.load_maxes`.
    net : Net, optional
        Default: the model named in the file.
    lrn : {'derivative', 'identity'}
        LRN rule of the deconv (the toolbox's Caffe branch: derivative).
    engine : {'onnx', 'numpy'}
        Backward engine (see :func:`caffevis.backward.backward`); the exported ONNX graph
        is the faster one on ONNX Runtime.
    cache : int
        Bytes of preprocessed images and their blob values kept in memory (units of one
        blob share many images); default 512 MiB.
    datadir : str, optional
        Where the images are now, when they moved since the scan (see
        :func:`caffevis.mining.sources.relocated_source`).
    """

    def __init__(self, result, net=None, lrn="derivative", engine="onnx", force_cpu=False, warn=None,
                 cache=512 << 20, datadir=None):
        from ..model.net import Net
        from .scan import ScanJob, make_preparer
        from .sources import open_source, relocated_source

        self.result = result
        job_fields = {k: result.config[k] for k in ScanJob.__dataclass_fields__ if k in result.config}
        self.job = ScanJob(**job_fields)
        self.net = net or Net.load(self.job.model, force_cpu=force_cpu)
        if datadir:
            self.source = relocated_source(self.job.source, result.images, datadir)
        elif not os.path.exists(self.job.source["path"]):
            raise InputError(f"{self.job.source['path']}: the scan's images are not there any more "
                             f"(moved? give --datadir)")
        else:
            self.source = open_source(self.job.source)
        if self.source.names != result.images:
            raise InputError(f"{self.job.source['path']}: the input list differs from the one the maxes were found on "
                             f"(moved images: give --datadir)")
        self.prepare = make_preparer(self.job, self.net)
        self.fields = net_fields(self.net)
        self.space = self.prepare.space  # the scan's input space: crops are shown in its channel order
        self.lrn, self.engine = lrn, engine
        self.warn = warn or (lambda msg: print(f"caffevis: {msg}", file=sys.stderr))
        self.cache = cache
        self._inputs = OrderedDict()  # image index -> (C, H, W) net input
        self._values = OrderedDict()  # (blob, image index) -> the blob for that image

    def _remember(self, store, key, value):
        """Keep ``value``, forgetting the least recently used entries over half the budget
        (each of the two stores gets half)."""
        store[key] = value
        store.move_to_end(key)
        size = sum(v.nbytes for v in store.values())
        while len(store) > 1 and size > self.cache // 2:
            size -= store.popitem(last=False)[1].nbytes

    def inputs(self, indices):
        """Net inputs (B, C, H, W) of the given images (decoded and preprocessed once)."""
        out = []
        for i in indices:
            if i not in self._inputs:
                self._remember(self._inputs, i, self.prepare(self.source.load(i)))
            else:
                self._inputs.move_to_end(i)
            out.append(self._inputs[i])
        return np.stack(out)

    def values(self, layer, indices):
        """The blob for each image (run once per image and blob)."""
        found = {i: self._values[(layer, i)] for i in indices if (layer, i) in self._values}
        for i in found:
            self._values.move_to_end((layer, i))
        missing = [i for i in dict.fromkeys(indices) if i not in found]
        if missing:
            out = self.net.forward(self.inputs(missing), blobs=[layer])[layer]
            for i, v in zip(missing, out):
                found[i] = v = v.copy()  # not a view: the cache's byte count is what it holds
                self._remember(self._values, (layer, i), v)
        return [found[i] for i in indices]

    def entries(self, layer, unit, n=None):
        """The unit's top entries: list of (rank, value, image_index, label, (y, x) or None)."""
        lm = self.result.layers[layer]
        n = lm.n if n is None else min(n, lm.n)
        labels = self.result.label_of(layer)
        out = []
        for j in range(n):
            idx = int(lm.image_index[unit, j])
            if idx < 0:
                break
            loc = tuple(int(v) for v in lm.location[unit, j]) if lm.spatial else None
            out.append((j, float(lm.max_vals[unit, j]), idx, int(labels[unit, j]), loc))
        return out

    def unit(self, layer, unit, n=None, kinds=("maxim", "deconv")):
        """Crops of the unit's top entries.

        Returns
        -------
        entries : list
            As :meth:`entries`.
        crops : dict
            kind -> list of (C, h, w) arrays in the net's channel order, for the wanted
            kinds among ``maxim``, ``deconv`` and ``backprop`` (``*norm`` kinds use the
            same crops as ``deconv`` / ``backprop``).
        """
        if layer not in self.result.layers:
            raise InputError(f"blob '{layer}' is not in the maxes file (it has {', '.join(self.result.layers)})")
        lm = self.result.layers[layer]
        if not 0 <= unit < lm.channels:
            raise InputError(f"unit {unit} out of range (blob '{layer}' has {lm.channels} channels)")
        entries = self.entries(layer, unit, n)
        crops = OrderedDict()
        if not entries:
            return entries, crops
        x = self.inputs([e[2] for e in entries])
        for (j, val, idx, _, loc), v in zip(entries, self.values(layer, [e[2] for e in entries])):
            got = float(v[unit][loc] if loc is not None else v[unit])
            if abs(got - val) > 0.1:
                self.warn(f"{layer} unit {unit} entry {j}: recorded value {val:.6g} differs from the reproduced "
                          f"{got:.6g} (same images, model and preprocessing?)")
        field = self.fields[layer]
        regions = [field.region(unit, *(loc or (0, 0))) for (_, _, _, _, loc) in entries]
        if "maxim" in kinds:
            crops["maxim"] = [crop_region(img, r) for img, r in zip(x, regions)]
        seed = np.zeros((len(entries),) + tuple(self.net.blob_shapes[layer][1:]), np.float32)
        for b, e in enumerate(entries):
            seed[(b, unit) + (e[4] or ())] = 1.0
        for mode in ("deconv", "backprop"):
            if mode in kinds or mode + "norm" in kinds:
                diff = backward(self.net, x, Seed(layer, seed, unit), mode=mode, lrn=self.lrn, start="layer",
                                engine=self.engine)
                crops[mode] = [crop_region(d, r) for d, r in zip(diff, regions)]
                if all(not np.any(c) for c in crops[mode]):
                    self.warn(f"{layer} unit {unit}: the {mode} is all zeros")
        return entries, crops


#: First line of info.txt, as the original wrote it.
INFO_HEADER = "# is_conv val image_idx image_class i(if is_conv) j(if is_conv) filename"


def info_line(entry, spatial, filename):
    """``is_conv val image_idx label [y x] filename`` (the original's info.txt)."""
    j, val, idx, label, loc = entry
    parts = [str(int(spatial)), f"{val:.6f}", str(idx), str(label)]
    if spatial:
        parts += [str(loc[0]), str(loc[1])]
    return " ".join(parts + [filename])


def crop_max_patches(result, layer, outdir, n=9, kinds=KINDS, info=True, idx_begin=0, idx_end=None,
                     maker=None, progress=True, **maker_args):
    """Write ``<outdir>/<layer>/unit_NNNN/{kind}_NNN.png`` (and ``info.txt``) per unit.

    Parameters
    ----------
    result : MaxesResult
    layer : str
        A blob in the maxes file.
    kinds : sequence of str
        Among :data:`KINDS`.
    info : bool
        Write ``info.txt``.
    idx_begin, idx_end : int
        Units ``idx_begin <= unit < idx_end`` (default: all).
    """
    from tqdm import tqdm

    if n < 1:
        raise InputError(f"-N {n}: expected a positive integer")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise InputError(f"unknown patch kind '{bad[0]}' (kinds: {', '.join(KINDS)})")
    if not kinds and not info:
        raise InputError("nothing to do: give at least one of --do-maxes, --do-deconv, --do-deconv-norm, "
                         "--do-backprop, --do-backprop-norm, --do-info")
    maker = maker or PatchMaker(result, **maker_args)
    if layer not in result.layers:
        raise InputError(f"blob '{layer}' is not in the maxes file (it has {', '.join(result.layers)})")
    lm = result.layers[layer]
    end = lm.channels if idx_end is None else min(idx_end, lm.channels)
    if not 0 <= idx_begin < end:
        raise InputError(f"--idx-begin {idx_begin} / --idx-end {idx_end}: empty unit range (blob '{layer}' "
                         f"has {lm.channels} channels)")
    need = {k for k in kinds if not k.endswith("norm")} | {k[:-4] for k in kinds if k.endswith("norm")}
    for unit in tqdm(range(idx_begin, end), desc=f"crop-max-patches {layer}", unit="unit",
                     disable=not progress, file=sys.stderr):
        os.makedirs(patch_unit_dir(outdir, layer, unit), exist_ok=True)
        if need:
            entries, crops = maker.unit(layer, unit, n, kinds=need)
        else:
            entries, crops = maker.entries(layer, unit, n), {}
        for kind in kinds:
            base = kind[:-4] if kind.endswith("norm") else kind
            for e, crop in zip(entries, crops.get(base, [])):
                write_image(patch_path(outdir, layer, unit, kind, e[0]), to_uint8(render(kind, crop, maker.space)))
        if info:
            with open(patch_info_path(outdir, layer, unit), "w", encoding="utf-8") as f:
                f.write(INFO_HEADER + "\n")
                for e in entries:
                    f.write(info_line(e, lm.spatial, result.images[e[2]]) + "\n")
    return maker


# -- the viewer's tree -------------------------------------------------------------------
def tile_size(field_hw, min_tile=64):
    """Montage tile (h, w) for crops of ``field_hw``: the field, enlarged by the smallest
    whole factor that brings it to ``min_tile`` pixels (0: never enlarged)."""
    h, w = (int(v) for v in field_hw)
    if min_tile and max(h, w) < min_tile:
        factor = -(-min_tile // max(h, w))
        return h * factor, w * factor
    return h, w


def make_max_tree(result, layers, root, units=None, n=9, maker=None, progress=True, min_tile=64, **maker_args):
    """Write the 3×3 ``max_im`` and ``max_deconv`` montages of the given blobs under ``root``.

    Tiles are the maxim / deconv crops (rendered as :func:`render`), resized to the
    blob's largest receptive field so every unit of a blob has the same montage size;
    fields smaller than ``min_tile`` pixels are enlarged by a whole factor (nearest
    neighbour) so the viewer does not blur them.
    """
    from tqdm import tqdm

    maker = maker or PatchMaker(result, **maker_args)
    written = []
    for layer in layers:
        if layer not in result.layers:
            raise InputError(f"blob '{layer}' is not in the maxes file (it has {', '.join(result.layers)})")
        lm = result.layers[layer]
        size = tile_size(maker.fields[layer].field_size(), min_tile)
        for unit in tqdm(list(units if units is not None else range(lm.channels)), desc=f"make-unit-vis {layer}",
                         unit="unit", disable=not progress, file=sys.stderr):
            entries, crops = maker.unit(layer, unit, n, kinds=("maxim", "deconv"))
            for kind, tree in MONTAGE_TREE_OF_KIND.items():
                tiles = [render(kind, c, maker.space) for c in crops.get(kind, [])]
                path = unit_jpg_path(root, tree, layer, unit)
                write_image(path, montage(tiles, size=size))
                written.append(path)
    return written


def montage_from_patch_dir(patch_dir, layer, unit, kind="maxim", n=9, min_tile=64):
    """Montage of ``crop_max_patches`` PNGs (``<patch_dir>/<layer>/unit_NNNN/<kind>_NNN.png``),
    tiles sized as :func:`make_max_tree`'s (the largest patch, enlarged to ``min_tile``)."""
    import cv2

    tiles = []
    for j in range(n):
        path = patch_path(patch_dir, layer, unit, kind, j)
        if not os.path.isfile(path):
            break
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputError(f"{path}: not a readable image")
        tiles.append((img[:, :, ::-1] if img.ndim == 3 else img) / 255.0)
    if not tiles:
        raise InputError(f"{patch_unit_dir(patch_dir, layer, unit)}: no {kind}_NNN.png patches "
                         f"(run crop-max-patches first)")
    largest = (max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles))
    return montage(tiles, size=tile_size(largest, min_tile))
