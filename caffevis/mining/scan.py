"""Scanning a data set for each unit's top-N images: batched, overlapped, resumable, sharded.

A :class:`ScanJob` says what to scan (model, preprocessing, input source, blobs, N, batch
size, shard). Images are numbered by their place in the input list and grouped into a
fixed grid of batches (batch ``k`` = images ``k*B .. k*B+B-1``); shard ``i/n`` takes batches
``i, i+n, i+2n, ...``. Each image is therefore always run in the same batch, whichever
shard, resume or cluster runs it, so shard results merge into exactly the single-run result.

The per-channel maxima of a batch come from :class:`~.channel_maxima.ChannelMaxima`.
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

from ..errors import InputError
from ..io import remove_stale_temporaries
from .channel_maxima import ChannelMaxima
from .sources import open_source
from .maxes import MaxesResult, MaxTracker, load_maxes, merge_results, parse_shard, save_maxes

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
    pre = {"mean": mean, "channel_swap": list(settings.caffe_net_channel_swap or []) or None,
           "raw_scale": float(settings.caffevis_raw_scale),
           "input_scale": float(settings.caffevis_input_scale) if settings.caffevis_input_scale else None,
           "geometry": "offline"}
    if settings.caffevis_data_std is not None:  # only then: a job config without it stays as it was
        pre["std"] = np.asarray(settings.caffevis_data_std, np.float64).ravel().tolist()
    return pre


def make_preparer(job: ScanJob, net):
    """A function raw image -> (C, H, W) float32 net input, from ``job.preprocess``; its ``space``
    attribute is the :class:`~caffevis.input_space.InputSpace` it applies.

    Built on :class:`caffevis.preprocess.Preprocessor`. Keys of ``job.preprocess`` (all
    optional): ``mean`` (None, a number, a per-channel list in net channel order, or a
    ``.npy`` / ``.binaryproto`` path), ``channel_swap`` (default [2, 1, 0]: RGB -> BGR),
    ``raw_scale`` (default 1, on 0–255 images), ``std`` (per channel, after the mean; default
    none), ``input_scale`` (LeNet 0.00390625),
    ``geometry`` and ``image_dims``.

    ``geometry`` ``'offline'`` (default) is the original offline tools' pipeline: resize
    to ``image_dims`` (default: the input scaled by 256/227, i.e. 256×256 for a 227 net),
    then the centre crop of the input size; ``'crop'`` (the viewer's: centre square, then
    resize) and ``'stretch'`` are also accepted. idx data sets (MNIST digits) already have
    the net's size and only get the value steps, as Caffe's MNIST data layer.
    """
    from ..preprocess import Preprocessor

    p = job.preprocess
    _, c, h, w = net.input_shape
    dims = p.get("image_dims") or [int(round(h * 256 / 227)), int(round(w * 256 / 227))]
    pre = Preprocessor(net.input_shape, channel_swap=p.get("channel_swap") or (2, 1, 0),
                       raw_scale=p.get("raw_scale") or 1.0, mean=p.get("mean"), input_scale=p.get("input_scale"),
                       std=p.get("std"), offline_dims=dims)
    geometry = p.get("geometry", "offline")
    if job.source["kind"] == "idx":
        def prepare_digit(img):
            img = np.asarray(img)
            if img.shape != (h, w) or c != 1:
                raise InputError(f"{job.source['path']}: idx images are {img.shape}; the net takes ({c}, {h}, {w})")
            return pre.transform(img)

        def prepare_digits(imgs):
            """A batch of digits at once, with :meth:`Preprocessor.transform`'s exact arithmetic."""
            imgs = np.asarray(imgs)
            if imgs.shape[1:] != (h, w) or c != 1:
                raise InputError(f"{job.source['path']}: idx images are {imgs.shape[1:]}; "
                                 f"the net takes ({c}, {h}, {w})")
            return pre.space.to_net(imgs[:, None].astype(np.float32))

        prepare_digit.many = prepare_digits
        prepare_digit.space = pre.space
        return prepare_digit

    def prepare_image(rgb):
        return pre.transform(pre.resize(rgb, geometry))

    prepare_image.space = pre.space  # the one input space of this scan (renderers read its channel order)
    return prepare_image


def load_inputs(source, prepare, indices, warn=None):
    """Net inputs of images ``indices`` (vectorized where the source allows).

    An image that cannot be read or prepared (an undecodable or oversized file) is left out
    with one call of ``warn(message)``: one bad file must not stop a scan.

    Returns
    -------
    x : ndarray (B', C, H, W)
        The inputs of the images that could be read (B' may be 0).
    kept : ndarray of int64 (B',)
        Their indices.
    skipped : list of int
        The indices left out.
    """
    indices = np.asarray(list(indices), np.int64)
    many = getattr(prepare, "many", None)
    if many is not None and hasattr(source, "load_many"):
        return many(source.load_many(indices)), indices, []
    arrays, kept, skipped = [], [], []
    for i in indices:
        try:
            arrays.append(prepare(source.load(int(i))))
            kept.append(i)
        except InputError as err:
            skipped.append(int(i))
            if warn is not None:
                warn(f"{err}; skipped")
    x = np.stack(arrays) if arrays else None
    return x, np.asarray(kept, np.int64), skipped


# -- one process -------------------------------------------------------------------------
def batch_grid(count, batch_size):
    return int(math.ceil(count / batch_size))


def check_batch(net, batch_size, count):
    """InputError when an ONNX model with a fixed batch dimension cannot take the batch grid."""
    inputs = [i for i in net.model.graph.input if i.name == net.input_name]
    dims = inputs[0].type.tensor_type.shape.dim if inputs else []
    fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") else 0
    if fixed > 0 and (batch_size != fixed or count % fixed):
        raise InputError(f"the model's input '{net.input_name}' has a fixed batch size of {fixed}; "
                         f"use --batch-size {fixed}" + (f" and a multiple of {fixed} images" if count % fixed else ""))


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
    if output:
        remove_stale_temporaries(output)
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
             overwrite=False, force_cpu=False, max_batches=None, source=None, maxima=None) -> MaxesResult:
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
    max_batches : int, optional
        Stop after this many batches (the result stays unfinished; a rerun continues).
    source, maxima : optional
        The opened source and :class:`ChannelMaxima` when the caller has them.
    """
    from tqdm import tqdm

    from ..model.net import Net

    source = source or open_source(job.source)
    if net is None:
        net = Net.load(job.model, force_cpu=force_cpu)
    check_batch(net, job.batch_size, len(source))
    result = resume_or_new(job, source, net, output, overwrite)
    shard_i, shard_n = parse_shard(job.shard)
    mine = np.arange(shard_i, len(result.batches_done), shard_n)
    pending = [int(k) for k in mine if not result.batches_done[k]]
    if max_batches is not None:
        pending = pending[:max_batches]
    bs = job.batch_size
    if not pending:
        if output and not os.path.exists(output):
            save_maxes(result, output)
        return result
    prepare = make_preparer(job, net)
    total = sum(min(bs, len(source) - k * bs) for k in mine)
    done = total - sum(min(bs, len(source) - k * bs) for k in mine if not result.batches_done[k])

    def warn(message):
        tqdm.write(f"caffevis: warning: {message}", file=sys.stderr)

    def load_batch(k):
        return load_inputs(source, prepare, range(k * bs, min((k + 1) * bs, len(source))), warn)

    maxima = maxima or ChannelMaxima(net, job.blobs)
    updates = _HeldUpdates(result)
    with tqdm(total=total, initial=done, unit="img", desc=f"find-maxes {job.shard}", disable=not progress,
              file=sys.stderr, smoothing=0.1) as bar:
        _pipeline(pending, load_batch, lambda x: maxima(net.check_input(x)), updates, bar, workers,
                  lambda: save_maxes(result, output) if output else None, checkpoint_every if output else 0)
    if output:
        save_maxes(result, output)
    return result


class _HeldUpdates:
    """Batch summaries not yet folded into the top-N: for small nets, several batches per update
    amortize its fixed cost (up to 512 images or 64 MB of maps)."""

    def __init__(self, result):
        self.result, self.held = result, []

    def fold_in(self):
        ran = [(s, kept) for _, s, kept, _ in self.held if s is not None]
        if ran:
            for blob, lm in self.result.tracker.layers.items():
                lm.update_batches([(s[blob][0], s[blob][1], kept, s[blob][2]) for s, kept in ran])
        for j, _, _, skipped in self.held:
            self.result.batches_done[j] = True
            self.result.skipped += skipped
        self.held.clear()

    def track(self, k, summary, kept, skipped, flush):
        self.held.append((k, summary, kept, skipped))
        size = sum(m.nbytes for _, s, _, _ in self.held if s is not None for _, _, m in s.values() if m is not None)
        if flush or sum(len(kept) for _, _, kept, _ in self.held) >= 512 or size >= 64 << 20:
            self.fold_in()


def _pipeline(pending, load_batch, summarize, updates, bar, workers, save, checkpoint_every):
    """Load batches on ``workers`` threads, run the net here, fold results in on one more
    thread (the previous batch's top-N update runs while the net runs the next batch);
    ``save`` every ``checkpoint_every`` batches and, after Ctrl-C, once more with what ran."""
    since = 0
    last = None
    with ThreadPoolExecutor(max(1, workers)) as pool, ThreadPoolExecutor(1) as tracking:
        queue = deque()
        todo = iter(pending)
        for k in todo:
            queue.append((k, pool.submit(load_batch, k)))
            if len(queue) > max(1, workers):
                break
        try:
            while queue:
                k, fut = queue.popleft()
                x, kept, skipped = fut.result()
                nxt = next(todo, None)
                if nxt is not None:
                    queue.append((nxt, pool.submit(load_batch, nxt)))
                summary = summarize(x) if x is not None else None  # None: every image skipped
                if last is not None:
                    last.result()  # updates stay in order, one at a time
                since += 1
                save_now = bool(checkpoint_every and since >= checkpoint_every and queue)
                last = tracking.submit(updates.track, k, summary, kept, skipped, save_now or not queue)
                bar.update(len(kept) + len(skipped))
                if save_now:
                    last.result()
                    save()
                    since = 0
            if last is not None:
                last.result()
        except KeyboardInterrupt:
            for _, fut in queue:
                fut.cancel()
            if last is not None:
                last.result()
            if updates.held:
                updates.fold_in()  # what the net has already run is kept
            save()  # the batches finished so far are kept
            raise


def benchmark(job: ScanJob, net, batches=10, workers=2, repeats=5) -> dict:
    """Images per second of the pure forward pass (preloaded batches, the tracked blobs
    fetched) and of the full scan (decoding, preprocessing, forward and top-N update; its
    one-time setup excluded) over the same ``batches`` batches.

    The two are measured alternately ``repeats`` times and the best of each is kept, so a
    busy machine disturbs the ratio less.
    """
    import time

    source = open_source(job.source)
    prepare = make_preparer(job, net)
    bs = job.batch_size
    count = min(batches, batch_grid(len(source), bs))
    xs = [load_inputs(source, prepare, range(k * bs, min((k + 1) * bs, len(source))))[0] for k in range(count)]
    xs = [x for x in xs if x is not None]
    images = sum(len(x) for x in xs)
    maxima = ChannelMaxima(net, job.blobs)
    net.forward(xs[0], blobs=job.blobs)  # warm-up
    maxima(xs[0])
    forward_s, scan_s = [], []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for x in xs:
            net.forward(x, blobs=job.blobs)
        forward_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_scan(replace(job, shard="0/1"), None, net=net, workers=workers, progress=False, max_batches=count,
                 source=source, maxima=maxima)
        scan_s.append(time.perf_counter() - t0)
    return {"images": images, "forward_ips": images / min(forward_s), "scan_ips": images / min(scan_s),
            "ratio": min(forward_s) / min(scan_s)}


# -- many processes ----------------------------------------------------------------------
def shard_path(output, i, n):
    stem, ext = os.path.splitext(output)
    return f"{stem}.shard-{i}-of-{n}{ext or '.h5'}"


def scan_shard_task(job_config: dict, output, checkpoint_every=20, workers=2, force_cpu=False, ort_threads=0):
    """Run one shard (on a Dask worker): returns its :class:`MaxesResult`.

    ``ort_threads`` caps ONNX Runtime's threads so the workers of one machine share its
    cores instead of each taking all of them (0: all cores).
    """
    from ..model.net import Net

    job = ScanJob(**job_config)
    net = Net.load(job.model, force_cpu=force_cpu, threads=ort_threads)
    return run_scan(job, output, net=net, checkpoint_every=checkpoint_every, workers=workers, progress=False,
                    force_cpu=force_cpu)


def run_dask(job: ScanJob, output, shards=None, scheduler="local:2", checkpoint_every=20,
             decode_workers=2, progress=True, force_cpu=False, keep_shards=False, overwrite=False) -> MaxesResult:
    """Scan ``job`` as ``shards`` shards on a Dask cluster and merge them into ``output``.

    Parameters
    ----------
    scheduler : str
        ``local:N`` (a local cluster of N processes) or the address of a running scheduler
        (``tcp://host:8786``; workers must see the images and the model under the same
        paths). See :mod:`caffevis.cluster`.
    shards : int, optional
        Number of shards (default: the number of workers). Each shard checkpoints into
        ``<output stem>.shard-I-of-N.h5`` on its worker, so a rerun after a crash resumes.
    """
    from dask.distributed import as_completed
    from tqdm import tqdm

    from ..cluster import dask_client, parse_scheduler, worker_count

    if parse_shard(job.shard) != (0, 1):
        raise InputError("--shard and a Dask run do not combine: the Dask run makes its own shards")
    parse_scheduler(scheduler)  # a bad address is reported before any work
    if os.path.exists(output) and not overwrite:
        done = load_maxes(output)
        if done.config == job.config() and done.complete:
            return done
        raise InputError(f"{output}: exists from a different or unfinished scan; use another -o or --overwrite")
    with dask_client(scheduler, wait=not shards) as (client, ort_threads):
        n = shards or worker_count(client)
        paths = [shard_path(output, i, n) for i in range(n)]
        if overwrite:
            for p in paths:
                if os.path.exists(p):
                    os.remove(p)
        futures = [client.submit(scan_shard_task, replace(job, shard=f"{i}/{n}").config(), paths[i],
                                 checkpoint_every, decode_workers, force_cpu, ort_threads, pure=False)
                   for i in range(n)]
        results = {}
        with tqdm(total=n, unit="shard", desc="find-maxes (dask)", disable=not progress, file=sys.stderr) as bar:
            for fut in as_completed(futures):
                r = fut.result()
                results[r.config["shard"]] = r
                bar.update(1)
    merged = merge_results([results[f"{i}/{n}"] for i in range(n)])
    save_maxes(merged, output)
    if not keep_shards:
        for p in paths:
            if os.path.exists(p):
                os.remove(p)
    return merged
