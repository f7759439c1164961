"""The NumPy backward engine: Zeiler & Fergus deconvnet, backprop and guided backprop.

One walk down the Caffe layer list, using the forward values ONNX Runtime computed
(every tensor version, see :meth:`caffevis.net.Net.forward_all`). The three modes
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
ordinary backward. The spatial kernels live in :mod:`caffevis.numpy_ops`.
"""
from __future__ import annotations

import numpy as np

from ..layers import numpy_ops as ops
from ..model.caffe.to_onnx import ave_divisor, broadcast_shape, exp_scales, log_base_scale, pool_geometry
from ..errors import InputError

from .graph import check_backward_args, resolve_start  # noqa: E402


def backward_numpy(net, data, blob, diff, mode="deconv", lrn="derivative", start="last",
                   blob_diffs=False, values=None):
    """Propagate ``diff`` at ``blob`` down to the input with the NumPy rules.

    Parameters
    ----------
    net : caffevis.net.Net
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
        bottoms = _layer_backward(p, ins, outs, tops, mode, lrn)
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
    touched = {net.input_name}
    for p in net.layers[:first + 1]:
        touched.update(p.bottoms)
        touched.update(p.tops)
    per_blob = {}
    for name in net.blob_names:
        if name in touched:
            d = earliest.get(name)
            per_blob[name] = np.zeros_like(values[name]) if d is None else d
    return result, per_blob


def _values_read(net, first, reads, writes, mode, lrn):
    """Tensor versions whose values (not just shapes) the rules below use."""
    needed = set()
    for p in net.layers[:first + 1]:
        t, a = p.type, p.attrs
        uses_input = (t == "Pooling" and a["method"] == "max") or t in ("PReLU", "ELU", "AbsVal", "Power", "BNLL", "Log") \
            or (t == "LRN" and not (lrn == "identity" and mode != "backprop")) \
            or (t == "Eltwise" and a["op"] != "sum")
        if uses_input:
            needed.update(reads[p.index])
        if t == "ReLU" and mode != "deconv":  # the mask's source: the output when in place (Caffe)
            needed.update(writes[p.index] if p.in_place else reads[p.index])
        if t in ("Softmax", "Sigmoid", "TanH", "Exp"):
            needed.update(writes[p.index])
    return needed


def _shape_placeholders(net, first, reads, writes, values, n):
    """Zero-memory stand-ins for the forward values only used for their shapes."""
    for p in net.layers[:first + 1]:
        for names, shapes in ((reads[p.index], p.bottom_shapes), (writes[p.index], p.top_shapes)):
            for name, shape in zip(names, shapes):
                if name not in values:
                    values[name] = np.broadcast_to(np.zeros((), np.float32), (n,) + tuple(shape[1:]))


def _zeros_for(tops, outs):
    """Top diffs with missing ones (no signal reached that top) as zeros."""
    return [np.zeros(o.shape, np.float32) if d is None else d for d, o in zip(tops, outs)]


def _layer_backward(p, ins, outs, tops, mode, lrn):
    """Bottom diffs of layer ``p`` (one per bottom, None where nothing flows).

    ``ins``/``outs`` are the forward values the layer read and wrote; ``tops`` its top
    diffs (None where no signal arrived; single-top layers always have one).
    """
    t, a = p.type, p.attrs
    x = ins[0]
    if t in ("Split", "Concat", "Slice"):
        tops = _zeros_for(tops, outs)
    dy = tops[0]
    if t == "Convolution":
        w = p.params[0]
        return [ops.conv2d_transpose(dy, w, a["stride"], a["pad"], a["dilation"], a["group"], x.shape[2:])]
    if t == "Deconvolution":
        # the transpose of a transposed convolution is the convolution with the same filters
        return [ops.conv2d(dy, p.params[0], a["stride"], a["pad"], a["dilation"], a["group"])]
    if t == "Pooling":
        return [_pool_backward(p, x, dy)]
    if t == "LRN":
        if lrn == "identity" and mode != "backprop":
            return [dy]
        return [ops.lrn_backward(x, dy, a["local_size"], a["alpha"], a["beta"], a["k"], a["region"])]
    if t == "ReLU":  # in place, Caffe's mask reads the overwritten bottom: the output
        return [_relu_backward(outs[0] if p.in_place else x, dy, a["negative_slope"], mode)]
    if t == "InnerProduct":
        w = p.params[0]
        flat = dy.reshape(-1, a["num_output"])
        dx = flat @ (w.T if a["transpose"] else w)
        return [dx.reshape(x.shape)]
    if t in ("Flatten", "Reshape"):
        return [dy.reshape(x.shape)]
    if t in ("Dropout", "Split"):
        total = tops[0]
        for d in tops[1:]:
            total = total + d
        return [total]
    if t == "Softmax":
        y = outs[0].astype(np.float64)
        dy64 = dy.astype(np.float64)
        dx = (dy64 - np.sum(dy64 * y, axis=a["axis"], keepdims=True)) * y
        return [dx.astype(np.float32)]
    if t == "Concat":
        return np.split(dy, np.cumsum([i.shape[a["axis"]] for i in ins])[:-1], axis=a["axis"])
    if t == "Slice":
        return [np.concatenate(tops, axis=a["axis"]) if len(tops) > 1 else tops[0]]
    if t == "Crop":
        dx = np.zeros(x.shape, np.float32)
        dx[tuple(slice(o, o + n) for o, n in zip(a["offsets"], dy.shape))] = dy
        return [dx, None]  # the bottom giving the size gets no diff (Caffe)
    if t == "Bias":
        return [dy]
    if t == "Eltwise":
        return _eltwise_backward(a, ins, dy)
    return [_pointwise_backward(p, x, outs[0], dy)]


def _relu_backward(x, dy, slope, mode):
    if mode == "deconv":
        return np.maximum(dy, 0)  # Zeiler & Fergus: rectify the signal; the negative slope is ignored
    if mode == "guided":
        return np.where((x > 0) & (dy > 0), dy, 0).astype(np.float32)
    if slope:
        return np.where(x > 0, dy, slope * dy).astype(np.float32)
    return np.where(x > 0, dy, 0).astype(np.float32)


def _pool_backward(p, x, dy):
    a = p.attrs
    (pad_h, pad_w), (end_h, end_w) = pool_geometry(p)
    pads_h, pads_w = (pad_h, end_h), (pad_w, end_w)
    in_hw = x.shape[2:]
    if a["method"] == "max":
        switch = ops.max_pool_switches(x, a["kernel"], a["stride"], pads_h, pads_w, dy.shape[2:])
        return ops.max_pool_backward(dy, switch, a["kernel"], a["stride"], pads_h, pads_w, in_hw)
    return ops.ave_pool_backward(dy, ave_divisor(p)[None, None], a["kernel"], a["stride"], pads_h, pads_w, in_hw)


def _eltwise_backward(a, ins, dy):
    if a["op"] == "sum":
        return [dy if c == 1.0 else (c * dy).astype(np.float32) for c in a["coeff"]]
    if a["op"] == "prod":
        out = []
        for i in range(len(ins)):
            others = np.ones_like(dy)
            for j, v in enumerate(ins):
                if j != i:
                    others = others * v
            out.append(dy * others)
        return out
    # MAX with Caffe's switch rule: bottom 1 wins ties against bottom 0 (``a > b`` keeps
    # bottom 0 only when strictly greater); a later bottom wins only when strictly greater.
    winner = np.where(ins[0] > ins[1], 0, 1).astype(np.int16)
    best = np.maximum(ins[0], ins[1])
    for i, v in enumerate(ins[2:], start=2):
        better = v > best
        winner[better] = i
        best = np.where(better, v, best)
    return [np.where(winner == i, dy, 0).astype(np.float32) for i in range(len(ins))]


def _pointwise_backward(p, x, y, dy):
    """Layers whose diff is ``dy`` times a local derivative (Caffe's Backward_cpu)."""
    t, a = p.type, p.attrs
    if t == "PReLU":
        slope = p.params[0].reshape(broadcast_shape(p.params[0].shape, 1, x.ndim))
        return np.where(x > 0, dy, slope * dy).astype(np.float32)
    if t == "ELU":
        return np.where(x > 0, dy, dy * (a["alpha"] * np.exp(x.astype(np.float64)))).astype(np.float32)
    if t == "Sigmoid":
        return (dy * y * (1.0 - y)).astype(np.float32)
    if t == "TanH":
        return (dy * (1.0 - y * y)).astype(np.float32)
    if t == "AbsVal":
        return (dy * np.sign(x)).astype(np.float32)
    if t == "Power":
        power, scale, shift = a["power"], a["scale"], a["shift"]
        if power == 0.0 or scale == 0.0:
            return np.zeros_like(dy)
        if power == 1.0:
            return (dy * scale).astype(np.float32)
        base = shift + scale * x.astype(np.float64)
        return (dy * (power * scale) * base ** (power - 1.0)).astype(np.float32)
    if t == "BNLL":
        e = np.exp(np.minimum(x.astype(np.float64), 50.0))  # Caffe's kBNLL_THRESHOLD
        return (dy * (e / (e + 1.0))).astype(np.float32)
    if t == "Exp":
        return (dy * y * exp_scales(a)[0]).astype(np.float32)
    if t == "Log":
        return (dy * (a["scale"] * log_base_scale(a)) / (a["shift"] + a["scale"] * x.astype(np.float64))).astype(np.float32)
    if t == "BatchNorm":
        mean_var_factor = 0.0 if a["scale_factor"] == 0 else 1.0 / a["scale_factor"]
        var = p.params[1].astype(np.float64) * mean_var_factor
        inv_std = (var + a["eps"]) ** -0.5
        return (dy * inv_std.reshape(broadcast_shape(var.shape, 1, x.ndim))).astype(np.float32)
    if t == "Scale":
        gamma = p.params[0].reshape(broadcast_shape(p.params[0].shape, a["axis"], x.ndim))
        return (dy * gamma).astype(np.float32)
    raise AssertionError(f"no backward rule for layer type {t}")  # layers.plan rejects others first
