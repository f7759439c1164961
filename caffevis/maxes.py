"""Top-N max-activating images per unit: the tracker, its HDF5 file, and shard merging.

For every channel of a tracked blob, each image contributes at most one entry: the
channel's single spatial maximum (the first in row-major order on ties) with its location.
A channel keeps the N best entries in a total order, value descending then image index
ascending, so the result does not depend on the order in which images or shards arrive:
merging shard results gives exactly the single-run result.

HDF5 layout (``caffevis-maxes`` version 1)::

    /                 attrs: format, version, n, complete, config (JSON of the scan job)
    /images           the input list (UTF-8 strings), index = image_index
    /labels           int64 label per image (-1: none)
    /batches_done     uint8 per batch of the scan (resume and merge bookkeeping)
    /skipped          int64 indices into /images of the files that could not be read
                      (undecodable or over the pixel limit); absent in older files
    /layers/<blob>    attrs: blob (the Caffe name), spatial, blob_shape
        max_vals      float32 (C, N), descending
        image_index   int64 (C, N), into /images (-1: fewer than N images seen)
        label         int64 (C, N)
        location      int32 (C, N, 2) (y, x) of the max, spatial (4-D) blobs only

Blob names containing ``/`` (``fire2/squeeze1x1``) are stored percent-encoded
(``fire2%2Fsqueeze1x1``); read files with :func:`load_maxes`.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from urllib.parse import quote

import numpy as np

from .errors import InputError

FORMAT = "caffevis-maxes"
VERSION = 1


class LayerMaxes:
    """Top-N entries of every channel of one blob.

    Attributes
    ----------
    name : str
        The blob.
    max_vals : ndarray, float32 (C, N)
        Best values, descending per channel (``-inf`` pads channels with fewer entries).
    image_index : ndarray, int64 (C, N)
        Image of each entry (``-1`` for padding).
    location : ndarray, int32 (C, N, 2) or None
        (y, x) of each entry's maximum for spatial blobs.
    blob_shape : tuple
        Shape of one image's blob, e.g. (C, H, W).
    """

    def __init__(self, name, channels, n, spatial, blob_shape=None):
        self.name = name
        self.n = int(n)
        self.spatial = bool(spatial)
        self.blob_shape = tuple(blob_shape) if blob_shape is not None else (channels,)
        self.max_vals = np.full((channels, n), -np.inf, np.float32)
        self.image_index = np.full((channels, n), -1, np.int64)
        self.location = np.full((channels, n, 2), -1, np.int32) if spatial else None

    @property
    def channels(self) -> int:
        return self.max_vals.shape[0]

    def _keep_best(self, vals, idx, loc, rows=None):
        """Keep the N best of the candidate columns (R, M) of ``rows`` (default: all channels)
        in the tracker's order: value descending, then image index ascending."""
        key = np.where(np.isnan(vals), -np.inf, vals)  # a NaN never ranks
        # lexsort: the last key is primary; padding (-1, -inf) sorts last
        order = np.lexsort((np.where(idx < 0, np.iinfo(np.int64).max, idx), -key.astype(np.float64)),
                           axis=-1)[:, :self.n]
        picked = np.arange(vals.shape[0])[:, None], order
        target = slice(None) if rows is None else rows
        self.max_vals[target] = vals[picked]
        self.image_index[target] = idx[picked]
        if self.spatial:
            self.location[target] = loc[picked]

    def update(self, acts, image_index):
        """Add one batch.

        Parameters
        ----------
        acts : ndarray, (B, C, ...)
            The blob for B images.
        image_index : array of int, (B,)
            Index of each image in the input list.
        """
        acts = np.asarray(acts)
        b, c = acts.shape[:2]
        flat = acts.reshape(b, c, -1)
        self.update_summary(flat.max(axis=2), None, image_index, flat)

    def update_summary(self, maxima, argmax, image_index, maps=None):
        """Add one batch given each image's channel maxima (B, C) and either their flat
        positions ``argmax`` (B, C) in the channel's H×W map (first maximum in row-major
        order) or the ``maps`` (B, C, H*W) to find them in, for the entries that need it."""
        self.update_batches([(maxima, argmax, image_index, maps)])

    def update_batches(self, batches):
        """Add several batches of :meth:`update_summary` arguments at once (fewer, larger
        array operations; the result is the same as adding them one by one)."""
        vals = np.concatenate([np.asarray(m) for m, _, _, _ in batches], axis=0).T.astype(np.float32)  # (C, B)
        if vals.shape[0] != self.channels:
            raise InputError(f"blob '{self.name}' has {vals.shape[0]} channels; the tracker has {self.channels}")
        vals[np.isnan(vals)] = -np.inf
        # Only values reaching the channel's current N-th value can enter (>=: an equal value
        # from an earlier image outranks it); keeping just those makes each sort small.
        passing = vals >= self.max_vals[:, -1:]
        rows = np.flatnonzero(passing.any(axis=1))
        if not rows.size:
            return
        passing = passing[rows]
        width = int(passing.sum(axis=1).max())
        cols = np.argsort(~passing, axis=1, kind="stable")[:, :width]  # passing columns first, in order
        keep = np.take_along_axis(passing, cols, axis=1)
        image_index = np.concatenate([np.asarray(i, np.int64) for _, _, i, _ in batches])
        new_vals = np.where(keep, np.take_along_axis(vals[rows], cols, axis=1), -np.inf).astype(np.float32)
        new_idx = np.where(keep, image_index[cols], -1)
        loc = None
        if self.spatial:
            pos = np.zeros(cols.shape, np.int64)
            r, j = np.nonzero(keep)
            col, chan = cols[r, j], rows[r]
            start = 0
            for maxima, argmax, _, maps in batches:  # positions only for the entries that can enter
                stop = start + len(maxima)
                sel = (col >= start) & (col < stop)
                if sel.any():
                    if argmax is not None:
                        pos[r[sel], j[sel]] = np.asarray(argmax)[col[sel] - start, chan[sel]]
                    else:
                        flat = np.asarray(maps).reshape(len(maxima), self.channels, -1)
                        pos[r[sel], j[sel]] = flat[col[sel] - start, chan[sel]].argmax(axis=1)  # first max
                start = stop
            w = self.blob_shape[2]
            loc = np.concatenate([self.location[rows], np.stack([pos // w, pos % w], axis=-1).astype(np.int32)],
                                 axis=1)
        self._keep_best(np.concatenate([self.max_vals[rows], new_vals], axis=1),
                        np.concatenate([self.image_index[rows], new_idx], axis=1), loc, rows)

    def merge(self, other: "LayerMaxes"):
        """Fold in another tracker of the same blob (a disjoint set of images)."""
        if (other.channels, other.n, other.spatial) != (self.channels, self.n, self.spatial):
            raise InputError(f"cannot merge maxes of blob '{self.name}': shapes or N differ")
        loc = np.concatenate([self.location, other.location], axis=1) if self.spatial else None
        self._keep_best(np.concatenate([self.max_vals, other.max_vals], axis=1),
                        np.concatenate([self.image_index, other.image_index], axis=1), loc)

    def count(self, channel) -> int:
        """Number of real (non-padding) entries of ``channel``."""
        return int((self.image_index[channel] >= 0).sum())


class MaxTracker:
    """Top-N trackers for several blobs; ``update`` with a batch of forward outputs.

    Parameters
    ----------
    blob_shapes : dict
        Blob -> shape of one image's blob (C, H, W) or (C,). 4-D batch shapes are also
        accepted (the batch dimension is dropped).
    n : int
        Entries kept per channel (9 in the original).
    """

    def __init__(self, blob_shapes, n=9):
        if n < 1:
            raise InputError(f"N must be at least 1 (got {n})")
        self.n = int(n)
        self.layers = OrderedDict()
        for name, shape in blob_shapes.items():
            shape = tuple(int(v) for v in shape)
            if len(shape) < 1:
                raise InputError(f"blob '{name}' has no channel axis")
            self.layers[name] = LayerMaxes(name, shape[0], n, spatial=len(shape) == 3, blob_shape=shape)

    def update(self, blobs, image_index):
        """Add a batch: ``blobs`` maps blob -> (B, C, ...) array for the images ``image_index``."""
        for name, tracker in self.layers.items():
            tracker.update(blobs[name], image_index)

    def merge(self, other: "MaxTracker"):
        if list(other.layers) != list(self.layers) or other.n != self.n:
            raise InputError("cannot merge maxes: the files track different blobs or N")
        for name, tracker in self.layers.items():
            tracker.merge(other.layers[name])

    def __eq__(self, other):
        if not isinstance(other, MaxTracker) or list(self.layers) != list(other.layers) or self.n != other.n:
            return False
        for a, b in zip(self.layers.values(), other.layers.values()):
            if a.max_vals.tobytes() != b.max_vals.tobytes() or not np.array_equal(a.image_index, b.image_index):
                return False
            if a.spatial != b.spatial or (a.spatial and not np.array_equal(a.location, b.location)):
                return False
        return True


class MaxesResult:
    """A scan's state: tracker, input list, labels and the batches done.

    Attributes
    ----------
    tracker : MaxTracker
    images : list of str
        The input list (paths, or ``file#index`` for idx data sets).
    labels : ndarray, int64
        Label per image, -1 where unknown.
    batches_done : ndarray, bool
        Which batches of the scan's batch grid are in ``tracker``.
    config : dict
        The scan job (model, preprocessing, blobs, N, batch size, shard, source).
    skipped : list of int
        Images of the done batches that could not be read (left out of the maxima).
    """

    def __init__(self, tracker, images, labels, batches_done, config, skipped=()):
        self.tracker = tracker
        self.images = list(images)
        self.labels = np.asarray(labels, np.int64)
        self.batches_done = np.asarray(batches_done, bool)
        self.config = dict(config)
        self.skipped = sorted(int(i) for i in skipped)

    @property
    def layers(self):
        return self.tracker.layers

    @property
    def complete(self) -> bool:
        """Every batch of this scan's shard is done."""
        return bool(self.batches_done[self.shard_batches()].all())

    def shard_batches(self):
        """Indices of the batches that belong to this result's shard."""
        i, n = parse_shard(self.config.get("shard", "0/1"))
        return np.arange(i, len(self.batches_done), n)

    def label_of(self, layer):
        """(C, N) labels of a layer's entries (-1 for padding or unlabelled images)."""
        idx = self.tracker.layers[layer].image_index
        out = np.full(idx.shape, -1, np.int64)
        ok = idx >= 0
        out[ok] = self.labels[idx[ok]]
        return out


def parse_shard(text):
    """``'i/n'`` (0 <= i < n) -> (i, n)."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise InputError(f"--shard {text}: expected I/N with 0 <= I < N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {text}: expected I/N with 0 <= I < N, e.g. 0/4")
    return i, n


def group_name(blob) -> str:
    return quote(blob, safe="")


def save_maxes(result: MaxesResult, path: str):
    """Write ``result`` atomically (a temporary file in the same folder, then ``os.replace``):
    a run killed at any moment leaves either the previous file or the new one."""
    import h5py

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with h5py.File(tmp, "w", track_order=True) as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["n"] = result.tracker.n
        f.attrs["complete"] = result.complete
        f.attrs["config"] = json.dumps(result.config, sort_keys=True)
        f.create_dataset("images", data=np.array(result.images, dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("labels", data=result.labels)
        f.create_dataset("batches_done", data=result.batches_done.astype(np.uint8))
        f.create_dataset("skipped", data=np.asarray(sorted(result.skipped), np.int64))
        layers = f.create_group("layers", track_order=True)
        for name, lm in result.tracker.layers.items():
            g = layers.create_group(group_name(name))
            g.attrs["blob"] = name
            g.attrs["spatial"] = lm.spatial
            g.attrs["blob_shape"] = np.asarray(lm.blob_shape, np.int64)
            g.create_dataset("max_vals", data=lm.max_vals)
            g.create_dataset("image_index", data=lm.image_index)
            g.create_dataset("label", data=result.label_of(name))
            if lm.spatial:
                g.create_dataset("location", data=lm.location)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)  # the data is on disk before the rename makes it the checkpoint
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_maxes(path: str) -> MaxesResult:
    """Read a file written by :func:`save_maxes` (``find-maxes`` output or a checkpoint)."""
    import h5py

    if not os.path.isfile(path):
        raise InputError(f"{path}: maxes file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise InputError(f"{path}: not a caffevis maxes file (format attribute is {f.attrs.get('format')!r})")
        if int(f.attrs["version"]) != VERSION:
            raise InputError(f"{path}: maxes file version {f.attrs['version']}; this caffevis reads {VERSION}")
        n = int(f.attrs["n"])
        config = json.loads(f.attrs["config"])
        images = [s.decode("utf-8") if isinstance(s, bytes) else s for s in f["images"][()]]
        shapes = OrderedDict()
        groups = []
        for key in f["layers"]:
            g = f["layers"][key]
            shapes[g.attrs["blob"]] = tuple(int(v) for v in g.attrs["blob_shape"])
            groups.append(g)
        tracker = MaxTracker(shapes, n)
        for g in groups:
            lm = tracker.layers[g.attrs["blob"]]
            lm.max_vals = g["max_vals"][()]
            lm.image_index = g["image_index"][()]
            if lm.spatial:
                lm.location = g["location"][()]
        skipped = f["skipped"][()] if "skipped" in f else ()
        return MaxesResult(tracker, images, f["labels"][()], f["batches_done"][()].astype(bool), config, skipped)


def merge_results(results, what="shards") -> MaxesResult:
    """Combine shard results of one scan into the single-run result.

    The shards must come from the same job (model, preprocessing, input list, blobs, N,
    batch size) and cover disjoint batches; the merged result is marked as shard 0/1.
    """
    if not results:
        raise InputError(f"no {what} to merge")
    first = results[0]
    base = {k: v for k, v in first.config.items() if k != "shard"}
    done = np.zeros_like(first.batches_done)
    skipped = []
    tracker = MaxTracker(OrderedDict((k, v.blob_shape) for k, v in first.tracker.layers.items()), first.tracker.n)
    for j, r in enumerate(results):
        other = {k: v for k, v in r.config.items() if k != "shard"}
        if other != base:
            diff = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
            raise InputError(f"{what} {j}: made by a different scan (differs in {', '.join(diff)})")
        if r.images != first.images or not np.array_equal(r.labels, first.labels):
            raise InputError(f"{what} {j}: made over a different input list")
        if (done & r.batches_done).any():
            raise InputError(f"{what} {j}: overlaps another (batch {int(np.flatnonzero(done & r.batches_done)[0])} "
                             f"is in both)")
        done |= r.batches_done
        skipped += r.skipped
        tracker.merge(r.tracker)
    config = dict(base, shard="0/1")
    return MaxesResult(tracker, first.images, first.labels, done, config, skipped)


def merge_files(paths, output, allow_incomplete=False) -> MaxesResult:
    """Merge shard files into ``output``; InputError when batches are missing (unless allowed)."""
    results = [load_maxes(p) for p in paths]
    for p, r in zip(paths, results):
        if not r.complete and not allow_incomplete:
            raise InputError(f"{p}: shard {r.config.get('shard')} is unfinished; rerun it (it resumes) "
                             f"or pass --partial")
    merged = merge_results(results)
    if not merged.complete and not allow_incomplete:
        missing = int(np.flatnonzero(~merged.batches_done)[0])
        raise InputError(f"{paths[0]}: the shards do not cover batch {missing}; merge every shard of the scan")
    save_maxes(merged, output)
    return merged
