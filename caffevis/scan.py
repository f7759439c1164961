"""Scanning a data set for each unit's top-N images: batched, overlapped, resumable, sharded.

A :class:`ScanJob` says what to scan (model, preprocessing, input source, blobs, N, batch
size, shard). Images are numbered by their place in the input list and grouped into a
fixed grid of batches (batch ``k`` = images ``k*B .. k*B+B-1``); shard ``i/n`` takes batches
``i, i+n, i+2n, ...``. Each image is therefore always run in the same batch, whichever
shard, resume or cluster runs it, so shard results merge into exactly the single-run result.

:func:`run_scan` decodes images in a thread pool while ONNX Runtime runs the previous
batch, checkpoints every few batches (atomically; a rerun resumes), and
:func:`run_dask` spreads the shards over a Dask cluster and merges them.
"""
from __future__ import annotations

import json
import math
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .errors import InputError
from .maxes import MaxesResult, MaxTracker, load_maxes, merge_results, parse_shard, save_maxes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


# -- input sources ---------------------------------------------------------------------
class ImageFiles:
    """Image files (from a directory walk or a list file); ``load(i)`` -> RGB float32 0-255 (H, W, 3)."""

    kind = "images"

    def __init__(self, root, names, labels):
        self.root = root
        self.names = list(names)
        self.labels = np.asarray(labels, np.int64)

    def __len__(self):
        return len(self.names)

    def path(self, i):
        return os.path.join(self.root, self.names[i])

    def load(self, i):
        return read_rgb(self.path(i))


class IdxImages:
    """An idx images file (MNIST); ``load(i)`` -> the uint8 (H, W) digit."""

    kind = "idx"

    def __init__(self, path, labels_path=None):
        from . import mnist

        self.images = mnist.read_idx(path)
        if self.images.ndim != 3:
            raise InputError(f"{path}: expected idx images (N, H, W); got shape {self.images.shape}")
        base = os.path.basename(path)
        self.names = [f"{base}#{i}" for i in range(len(self.images))]
        if labels_path:
            labels = mnist.read_idx(labels_path)
            if labels.shape != (len(self.images),):
                raise InputError(f"{labels_path}: {labels.shape[0]} labels for {len(self.images)} images in {path}")
            self.labels = labels.astype(np.int64)
        else:
            self.labels = np.full(len(self.images), -1, np.int64)

    def __len__(self):
        return len(self.names)

    def load(self, i):
        return self.images[i]


def read_rgb(path):
    """An image file as RGB float32 0-255 (H, W, 3); InputError when unreadable."""
    from .images import read_image

    return read_image(path)


def is_idx(path):
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    if head[:2] == b"\x1f\x8b":
        import gzip

        with gzip.open(path, "rb") as f:
            head = f.read(4)
    return len(head) == 4 and head[:2] == b"\0\0" and head[3] in (3, 4)


def source_spec(images, labels=None, datadir=None) -> dict:
    """JSON-able description of ``--images`` (a directory, a list file, or an idx file)."""
    if not os.path.exists(images):
        raise InputError(f"{images}: not found (expected an image directory, a list file or an idx images file)")
    path = os.path.abspath(images)
    if os.path.isdir(path):
        if labels:
            raise InputError(f"--labels {labels}: only for idx images files (a list file carries its labels)")
        return {"kind": "dir", "path": path}
    if is_idx(path):
        return {"kind": "idx", "path": path, "labels": os.path.abspath(labels) if labels else None}
    if labels:
        raise InputError(f"--labels {labels}: only for idx images files (a list file carries its labels)")
    return {"kind": "list", "path": path, "root": os.path.abspath(datadir or os.path.dirname(path))}


def open_source(spec: dict):
    """The source of a :func:`source_spec`."""
    kind = spec["kind"]
    if kind == "idx":
        return IdxImages(spec["path"], spec.get("labels"))
    if kind == "dir":
        names = []
        for folder, dirs, files in os.walk(spec["path"]):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    names.append(os.path.relpath(os.path.join(folder, name), spec["path"]).replace(os.sep, "/"))
        if not names:
            raise InputError(f"{spec['path']}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this directory")
        return ImageFiles(spec["path"], names, [-1] * len(names))
    if kind == "list":
        names, labels = [], []
        with open(spec["path"], encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts or parts[0].startswith("#"):
                    continue
                if len(parts) > 2 or (len(parts) == 2 and not parts[1].lstrip("-").isdigit()):
                    raise InputError(f"{spec['path']}:{lineno}: expected 'FILENAME [LABEL]' (an integer label)")
                names.append(parts[0])
                labels.append(int(parts[1]) if len(parts) == 2 else -1)
        if not names:
            raise InputError(f"{spec['path']}: the list file names no images")
        return ImageFiles(spec["root"], names, labels)
    raise InputError(f"unknown source kind '{kind}'")


# -- the job -----------------------------------------------------------------------------
@dataclass
class ScanJob:
    """Everything that determines a scan's result (stored in the output as its ``config``).

    Attributes
    ----------
    model : str
        ``MODEL.onnx`` or ``DEPLOY.prototxt:WEIGHTS.caffemodel``.
    source : dict
        From :func:`source_spec`.
    blobs : list of str
        Blobs (Caffe layer tops) to track.
    n : int
        Top-N per channel.
    batch_size : int
        Images per forward pass (the batch grid).
    preprocess : dict
        Preprocessing parameters (see :func:`make_preparer`).
    shard : str
        ``'i/n'``.
    """

    model: str
    source: dict
    blobs: list
    n: int = 9
    batch_size: int = 64
    preprocess: dict = field(default_factory=dict)
    shard: str = "0/1"

    def config(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def preprocess_from_settings(settings) -> dict:
    """The ``job.preprocess`` dict of a :class:`caffevis.settings.Settings`."""
    mean = settings.caffevis_data_mean
    if mean is not None and not isinstance(mean, str):
        mean = np.asarray(mean, np.float64).tolist()
    return {"mean": mean, "channel_swap": list(settings.caffe_net_channel_swap or []) or None,
            "raw_scale": float(settings.caffevis_raw_scale),
            "input_scale": float(settings.caffevis_input_scale) if settings.caffevis_input_scale else 1.0}


def make_preparer(job: ScanJob, net):
    """A function raw image -> (C, H, W) float32 net input, from ``job.preprocess``.

    Images go through the original offline tools' pipeline: resize (bilinear) to
    ``image_dims`` (default the input scaled by 256/227, i.e. 256×256 for a 227 net), take
    the centre crop of the input size, swap channels, times ``raw_scale``, minus the mean,
    times ``input_scale``. Keys of ``job.preprocess`` (all optional):

    ``mean``: None, a number, a per-channel list (net channel order) or a ``.npy`` /
    ``.binaryproto`` path (a mean image is centre-cropped to the input); ``channel_swap``
    (default [2, 1, 0]: RGB -> BGR); ``raw_scale`` (default 1, on 0–255 images);
    ``input_scale`` (default 1; LeNet 0.00390625); ``image_dims`` ([h, w]).

    idx data sets (MNIST digits) already have the net's size: they are only multiplied by
    ``raw_scale * input_scale`` (minus the mean, if any), as Caffe's MNIST data layer does.
    """
    from .images import crop_mean, load_mean

    p = job.preprocess
    scale = np.float32(p.get("input_scale") or 1.0)
    raw_scale = np.float32(p.get("raw_scale") or 1.0)
    _, c, h, w = net.input_shape
    mean = crop_mean(load_mean(p.get("mean")), c, (h, w))
    if job.source["kind"] == "idx":
        def prepare_digit(img):
            img = np.asarray(img)
            if img.shape != (h, w) or c != 1:
                raise InputError(f"{job.source['path']}: idx images are {img.shape}; the net takes ({c}, {h}, {w})")
            x = img[None].astype(np.float32)
            if raw_scale != 1:
                x = x * raw_scale
            if mean is not None:
                x = x - mean
            return x * scale
        return prepare_digit
    swap = list(p.get("channel_swap") or ([2, 1, 0] if c == 3 else [0]))
    if c == 1:
        swap = [0]
    dims = p.get("image_dims") or [int(round(h * 256 / 227)), int(round(w * 256 / 227))]

    def prepare_image(rgb):
        import cv2

        img = cv2.resize(np.asarray(rgb, np.float32), (int(dims[1]), int(dims[0])), interpolation=cv2.INTER_LINEAR)
        if c == 1:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if img.ndim == 2:
            img = img[:, :, None]
        top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        x = img[top:top + h, left:left + w].transpose(2, 0, 1)[swap]
        if raw_scale != 1:
            x = x * raw_scale
        if mean is not None:
            x = x - mean
        return np.ascontiguousarray(x * scale, np.float32)

    return prepare_image


# -- one process -------------------------------------------------------------------------
def batch_grid(count, batch_size):
    return int(math.ceil(count / batch_size))


def new_result(job: ScanJob, source, net) -> MaxesResult:
    shapes = {}
    for b in job.blobs:
        if b not in net.blob_shapes or b == net.input_name:
            raise InputError(f"unknown blob '{b}' (blobs: {', '.join(net.blob_names[1:])})")
        shapes[b] = tuple(net.blob_shapes[b][1:])
    return MaxesResult(MaxTracker(shapes, job.n), source.names, source.labels,
                       np.zeros(batch_grid(len(source), job.batch_size), bool), job.config())


def resume_or_new(job: ScanJob, source, net, output, overwrite=False):
    """The checkpoint at ``output`` when it belongs to this job, else a fresh result."""
    if output and os.path.exists(output) and not overwrite:
        old = load_maxes(output)
        if old.config != job.config():
            diff = sorted(k for k in set(old.config) | set(job.config()) if old.config.get(k) != job.config().get(k))
            raise InputError(f"{output}: exists from a different scan (differs in {', '.join(diff)}); "
                             f"use another -o or --overwrite")
        if old.images != source.names or not np.array_equal(old.labels, source.labels):
            raise InputError(f"{output}: its input list differs from the current one (files added or removed?); "
                             f"use another -o or --overwrite")
        return old
    return new_result(job, source, net)


def run_scan(job: ScanJob, output=None, net=None, checkpoint_every=20, workers=2, progress=True,
             overwrite=False, force_cpu=False) -> MaxesResult:
    """Scan ``job``'s shard; checkpoint into ``output`` and resume from it.

    Parameters
    ----------
    job : ScanJob
    output : str, optional
        HDF5 path; holds the checkpoint while running and the result at the end. An
        unfinished file from the same job is resumed.
    net : Net, optional
        An already loaded net for ``job.model``.
    checkpoint_every : int
        Batches between checkpoints (0: only at the end).
    workers : int
        Threads decoding and preprocessing images while the net runs.
    """
    from tqdm import tqdm

    from .net import Net

    source = open_source(job.source)
    if net is None:
        net = Net.load(job.model, force_cpu=force_cpu)
    result = resume_or_new(job, source, net, output, overwrite)
    shard_i, shard_n = parse_shard(job.shard)
    mine = np.arange(shard_i, len(result.batches_done), shard_n)
    pending = [int(k) for k in mine if not result.batches_done[k]]
    bs = job.batch_size
    if not pending:
        if output and not os.path.exists(output):
            save_maxes(result, output)
        return result
    prepare = make_preparer(job, net)
    total = sum(min(bs, len(source) - k * bs) for k in mine)
    done = total - sum(min(bs, len(source) - k * bs) for k in pending)

    def load_batch(k):
        return np.stack([prepare(source.load(i)) for i in range(k * bs, min((k + 1) * bs, len(source)))])

    since = 0
    with ThreadPoolExecutor(max(1, workers)) as pool, \
            tqdm(total=total, initial=done, unit="img", desc=f"find-maxes {job.shard}", disable=not progress,
                 file=sys.stderr, smoothing=0.1) as bar:
        queue = deque()
        todo = iter(pending)
        for k in todo:
            queue.append((k, pool.submit(load_batch, k)))
            if len(queue) > max(1, workers):
                break
        try:
            while queue:
                k, fut = queue.popleft()
                x = fut.result()
                nxt = next(todo, None)
                if nxt is not None:
                    queue.append((nxt, pool.submit(load_batch, nxt)))
                blobs = net.forward(x, blobs=job.blobs)
                result.tracker.update(blobs, np.arange(k * bs, k * bs + len(x)))
                result.batches_done[k] = True
                bar.update(len(x))
                since += 1
                if output and checkpoint_every and since >= checkpoint_every and queue:
                    save_maxes(result, output)
                    since = 0
        except KeyboardInterrupt:
            for _, fut in queue:
                fut.cancel()
            if output:
                save_maxes(result, output)  # the batches finished so far are kept
            raise
    if output:
        save_maxes(result, output)
    return result


# -- many processes ----------------------------------------------------------------------
def shard_path(output, i, n):
    stem, ext = os.path.splitext(output)
    return f"{stem}.shard-{i}-of-{n}{ext or '.h5'}"


def scan_shard_task(job_config: dict, output, checkpoint_every=20, workers=2, force_cpu=False):
    """Run one shard (on a Dask worker): returns its :class:`MaxesResult`."""
    job = ScanJob(**job_config)
    return run_scan(job, output, checkpoint_every=checkpoint_every, workers=workers, progress=False,
                    force_cpu=force_cpu)


def run_dask(job: ScanJob, output, shards=None, scheduler=None, n_workers=2, checkpoint_every=20,
             decode_workers=2, progress=True, force_cpu=False, keep_shards=False) -> MaxesResult:
    """Scan ``job`` as ``shards`` shards on a Dask cluster and merge them into ``output``.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``); workers must see the images
        and the model under the same paths. Default: a local cluster of ``n_workers``
        processes.
    shards : int, optional
        Number of shards (default: the number of workers). Each shard checkpoints into
        ``<output stem>.shard-I-of-N.h5`` on its worker, so a rerun after a crash resumes.
    """
    from dask.distributed import Client, LocalCluster, as_completed
    from tqdm import tqdm

    if parse_shard(job.shard) != (0, 1):
        raise InputError("--shard and a Dask run do not combine: the Dask run makes its own shards")
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        n = shards or max(1, len(client.scheduler_info()["workers"]))
        paths = [shard_path(output, i, n) for i in range(n)]
        futures = [client.submit(scan_shard_task, replace(job, shard=f"{i}/{n}").config(), paths[i],
                                 checkpoint_every, decode_workers, force_cpu, pure=False)
                   for i in range(n)]
        results = {}
        with tqdm(total=n, unit="shard", desc="find-maxes (dask)", disable=not progress, file=sys.stderr) as bar:
            for fut in as_completed(futures):
                r = fut.result()
                results[r.config["shard"]] = r
                bar.update(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    merged = merge_results([results[f"{i}/{n}"] for i in range(n)])
    save_maxes(merged, output)
    if not keep_shards:
        for p in paths:
            if os.path.exists(p):
                os.remove(p)
    return merged
