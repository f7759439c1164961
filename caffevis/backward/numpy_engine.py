"""The NumPy backward engine: Zeiler & Fergus deconvnet, backprop and guided backprop.

One walk down the Caffe layer list, using the forward values ONNX Runtime computed
(every tensor version, see :meth:`caffevis.model.Net.forward_all`). The three modes
share every rule except ReLU's (and LRN's, optionally):

==========  ================================================  ===========================
mode        ReLU                                              LRN
==========  ================================================  ===========================
backprop    ``dy * (x > 0)`` (``+ slope * dy * (x <= 0)``)    exact derivative
deconv      ``max(dy, 0)``; the forward mask is ignored       derivative, or identity
guided      ``dy * (x > 0) * (dy > 0)``                       derivative, or identity
==========  ================================================  ===========================

This is what the DeepVis toolbox's Caffe branch computes: its deconv changes only
ReLU and (with ``deconv_ignore``) LRN; convolution, pooling (through the max
switches, adding where windows overlap), inner product and the rest use Caffe's
ordinary backward. Each layer type's rule is the ``numpy_backward`` hook of its family
module in :mod:`caffevis.layers` (the spatial kernels: :mod:`caffevis.layers.numpy_ops`).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..layers import layer_type
from .rules import check_backward_args, resolve_start


def backward_numpy(net, data, blob, diff, mode="deconv", lrn="derivative", start="last",
                   blob_diffs=False, values=None):
    """Propagate ``diff`` at ``blob`` down to the input with the NumPy rules.

    Parameters
    ----------
    net : caffevis.model.Net
        A net converted from Caffe (it has ``layers`` and ``versions``).
    data : ndarray (N, C, H, W)
        Preprocessed input.
    blob : str
        Blob the seed belongs to.
    diff : ndarray
        The seed, shaped like ``blob`` at batch N.
    mode : {'deconv', 'backprop', 'guided'}
        ReLU rule (see the module docstring).
    lrn : {'derivative', 'identity'}
        LRN rule in deconv and guided modes; backprop always uses the derivative.
    start : {'last', 'layer'}
        'last': the seed is the diff of the blob's final value (so a seed at ``conv5``
        passes the in-place ``relu5`` first), like Caffe's backward from that blob.
        'layer': the seed is the diff of the output of the layer named ``blob``; later
        in-place layers are skipped (the DeepVis viewer's ``backward(start=blob)``).
    blob_diffs : bool
        Also return every blob's diff as Caffe's ``blob.diff`` would show it (the diff
        of the blob's earliest version): the blobs touched by the layers the walk ran,
        zeros where no signal arrived.
    values : dict, optional
        ``net.forward_all(data)`` when the caller already has it (saves the forward);
        by default the layers up to the start point are run here.

    Returns
    -------
    ndarray shaped like ``data`` (float32), and a dict blob -> diff when ``blob_diffs``.
    """
    check_backward_args(mode, lrn, start)
    data = net.check_input(data)
    reads, writes, _ = net.versions
    # the same start rule as the gradient graphs
    first, seed_version = resolve_start(net.layers, net.input_name, blob, start)
    if values is None:
        # fetch only the forward values the backward rules read; ORT then reuses the
        # buffers of the rest (each fetched output is a copy)
        needed = _values_read(net, first, reads, writes, mode, lrn) - {net.input_name}
        values = dict(net.forward(data, sorted(needed))) if needed else {}
        values[net.input_name] = data
        _shape_placeholders(net, first, reads, writes, values, len(data))
    seed = np.asarray(diff, dtype=np.float32)
    if seed.shape != values[seed_version].shape:
        raise InputError(f"diff for blob '{blob}' has shape {seed.shape}; expected {values[seed_version].shape}")
    diffs = {seed_version: seed}
    earliest = {}  # blob -> diff of its earliest version reached so far (Caffe's blob.diff)
    for p in reversed(net.layers[:first + 1]):
        tops = [diffs.pop(v, None) for v in writes[p.index]]
        if blob_diffs:
            earliest.update(zip(p.tops, tops))
        if all(d is None for d in tops) or not p.bottoms:
            continue
        ins = [values[v] for v in reads[p.index]]
        outs = [values[v] for v in writes[p.index]]
        bottoms = layer_type(p.type).numpy_backward(p, ins, outs, tops, mode, lrn)
        for v, d in zip(reads[p.index], bottoms):
            if d is None:
                continue
            diffs[v] = d if v not in diffs else diffs[v] + d  # fan-out: consumers' diffs add up
    result = diffs.get(net.input_name)
    if result is None:
        result = np.zeros_like(data)
    result = np.ascontiguousarray(result, dtype=np.float32)
    if not blob_diffs:
        return result
    earliest[net.input_name] = result
    return result, _per_blob(net, first, earliest, values)


def _per_blob(net, first, earliest, values):
    """Every blob the walk touched: its earliest version's diff, zeros where no signal arrived."""
    touched = {net.input_name}
    for p in net.layers[:first + 1]:
        touched.update(p.bottoms)
        touched.update(p.tops)
    return {name: np.zeros_like(values[name]) if earliest.get(name) is None else earliest[name]
            for name in net.blob_names if name in touched}


def _values_read(net, first, reads, writes, mode, lrn):
    """Tensor versions whose values (not just shapes) the rules below use."""
    needed = set()
    for p in net.layers[:first + 1]:
        bottoms, tops = layer_type(p.type).values_read(p, mode, lrn)
        if bottoms:
            needed.update(reads[p.index])
        if tops:
            needed.update(writes[p.index])
    return needed


def _shape_placeholders(net, first, reads, writes, values, n):
    """Zero-memory stand-ins for the forward values only used for their shapes."""
    for p in net.layers[:first + 1]:
        for names, shapes in ((reads[p.index], p.bottom_shapes), (writes[p.index], p.top_shapes)):
            for name, shape in zip(names, shapes):
                if name not in values:
                    values[name] = np.broadcast_to(np.zeros((), np.float32), (n,) + tuple(shape[1:]))
