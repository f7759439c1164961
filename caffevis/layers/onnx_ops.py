"""Layer types for ONNX operators Caffe has no layer for.

Clip (ReLU6), HardSigmoid, HardSwish, broadcasting Add/Sub/Mul/Div of two data tensors
(squeeze-and-excitation channel scales), Slice (positive steps, any non-batch axes), Transpose, ReduceMean,
LogSoftmax and constant Pad. Their plans come from :mod:`caffevis.model.onnx_import`
(attributes resolved there), so ``infer`` only rejects use from a prototxt. Every rule is
the exact gradient in all three backward modes: the deconv/guided rule applies at ReLU
layers only (as Captum's Deconvolution and GuidedBackprop do for modules that are not
``nn.ReLU``).
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from . import field as rf
from .base import LayerType, mask, no_values, reads_bottom, reads_top, same_field


def _onnx_only(name):
    def infer(lp, shapes):
        raise ModelError(f"layer type '{name}' comes from ONNX models only (no Caffe prototxt parameter)")
    return infer


def _f32(a):
    return np.asarray(a, np.float32)


# -- Clip (ReLU6) ------------------------------------------------------------------------
def clip_forward(g, p, ins, outs, params, aux=None):
    a = p.attrs
    bounds = [g.const(np.float32(a["min"]) if a["min"] is not None else np.finfo(np.float32).min, hint="clip_min"),
              g.const(np.float32(a["max"]) if a["max"] is not None else np.finfo(np.float32).max, hint="clip_max")]
    g.op("Clip", [ins[0]] + bounds, outputs=outs)


def _clip_mask_graph(g, x, low, high):
    inside = None
    for bound, op in ((low, "Greater"), (high, "Less")):
        if bound is None:
            continue
        m = g.op(op, [x, g.const(float(bound))], "clip_in")
        inside = m if inside is None else g.op("And", [inside, m], "clip_inside")
    return inside


def clip_vjp(ctx, p, ins, outs, dtops, aux, params):
    # PyTorch's hardtanh: the gradient passes strictly inside (min, max)
    inside = _clip_mask_graph(ctx.g, ins[0], p.attrs["min"], p.attrs["max"])
    if inside is None:
        return [dtops[0]], None
    return [ctx.g.op("Mul", [dtops[0], mask(ctx.g, inside)], "clip_dx")], None


def _clip_mask(x, low, high):
    inside = np.ones(x.shape, bool)
    if low is not None:
        inside &= x > low
    if high is not None:
        inside &= x < high
    return inside


def clip_numpy(p, ins, outs, dtops, mode, lrn):
    return [np.where(_clip_mask(ins[0], p.attrs["min"], p.attrs["max"]), dtops[0], 0).astype(np.float32)]


# -- HardSigmoid, HardSwish --------------------------------------------------------------
def hard_sigmoid_forward(g, p, ins, outs, params, aux=None):
    g.op("HardSigmoid", [ins[0]], outputs=outs, alpha=p.attrs["alpha"], beta=p.attrs["beta"])


def hard_sigmoid_vjp(ctx, p, ins, outs, dtops, aux, params):
    g, a = ctx.g, p.attrs
    z = g.op("Add", [g.op("Mul", [ins[0], g.const(a["alpha"])], "hs_ax"), g.const(a["beta"])], "hs_z")
    inside = _clip_mask_graph(g, z, 0.0, 1.0)
    return [g.op("Mul", [dtops[0], g.op("Mul", [mask(g, inside), g.const(a["alpha"])], "hs_d")], "hs_dx")], None


def hard_sigmoid_numpy(p, ins, outs, dtops, mode, lrn):
    a = p.attrs
    z = ins[0].astype(np.float64) * a["alpha"] + a["beta"]
    return [_f32(np.where((z > 0) & (z < 1), dtops[0] * a["alpha"], 0))]


def hard_swish_forward(g, p, ins, outs, params, aux=None):
    g.op("HardSwish", [ins[0]], outputs=outs)


def hard_swish_vjp(ctx, p, ins, outs, dtops, aux, params):
    # d/dx x*relu6(x+3)/6: 0 below -3, x/3 + 1/2 on [-3, 3], 1 above (PyTorch's rule)
    g, x = ctx.g, ins[0]
    mid = g.op("Add", [g.op("Mul", [x, g.const(1.0 / 3.0)], "hw_x3"), g.const(0.5)], "hw_mid")
    above = mask(g, g.op("Greater", [x, g.const(3.0)], "hw_above"))
    low = mask(g, g.op("Less", [x, g.const(-3.0)], "hw_below"))
    within = g.op("Sub", [g.op("Sub", [g.const(1.0), above], "hw_na"), low], "hw_within")
    d = g.op("Add", [g.op("Mul", [mid, within], "hw_dmid"), above], "hw_d")
    return [g.op("Mul", [dtops[0], d], "hw_dx")], None


def hard_swish_numpy(p, ins, outs, dtops, mode, lrn):
    x = ins[0].astype(np.float64)
    d = np.where(x < -3, 0.0, np.where(x <= 3, x / 3 + 0.5, 1.0))
    return [_f32(dtops[0] * d)]


# -- Broadcast: Add/Sub/Mul/Div of two data tensors --------------------------------------
def broadcast_forward(g, p, ins, outs, params, aux=None):
    g.op(p.attrs["op"].capitalize(), list(ins), outputs=outs)


def _reduced_axes(shape, out_shape):
    """Axes of ``out_shape`` that ``shape`` was broadcast along (rank-aligned on the right)."""
    full = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    return [i for i, (a, b) in enumerate(zip(full, out_shape)) if a == 1 and b != 1]


def _unbroadcast_graph(g, d, shape, out_shape):
    axes = _reduced_axes(shape, out_shape)
    if axes:
        d = g.op("ReduceSum", [d, g.ints(axes)], "bc_sum", keepdims=1)
    if len(shape) != len(out_shape):
        d = g.op("Reshape", [d, g.ints([-1] + list(shape[1:]))], "bc_shape")
    return d


def broadcast_vjp(ctx, p, ins, outs, dtops, aux, params):
    g, op, dy = ctx.g, p.attrs["op"], dtops[0]
    a, b = ins
    if op == "add":
        da, db = dy, dy
    elif op == "sub":
        da, db = dy, g.op("Neg", [dy], "bc_neg")
    elif op == "mul":
        da, db = g.op("Mul", [dy, b], "bc_da"), g.op("Mul", [dy, a], "bc_db")
    else:  # div: d(a/b) = da/b - a db/b^2
        da = g.op("Div", [dy, b], "bc_da")
        db = g.op("Neg", [g.op("Mul", [da, outs[0]], "bc_q")], "bc_db")
    out_shape = p.top_shapes[0]
    return [_unbroadcast_graph(g, d, s, out_shape) for d, s in zip((da, db), p.bottom_shapes)], None


def _unbroadcast(d, shape, out_shape):
    axes = tuple(_reduced_axes(shape, out_shape))
    if axes:
        d = d.sum(axis=axes, keepdims=True)
    return _f32(d.reshape((-1,) + tuple(shape[1:])))


def broadcast_numpy(p, ins, outs, dtops, mode, lrn):
    op, dy = p.attrs["op"], dtops[0].astype(np.float64)
    a, b = (v.astype(np.float64) for v in ins)
    if op == "add":
        da, db = dy, dy
    elif op == "sub":
        da, db = dy, -dy
    elif op == "mul":
        da, db = dy * b, dy * a
    else:
        da, db = dy / b, -dy * a / (b * b)
    return [_unbroadcast(d, s, p.top_shapes[0]) for d, s in zip((da, db), p.bottom_shapes)]


def broadcast_values(p, mode, lrn):
    return p.attrs["op"] in ("mul", "div"), False


def broadcast_field(p, top, bottoms, top_shape, hw):
    """Bottoms of the output's shape combine channel by channel; a broadcast operand adds
    what its units see (every input pixel, for a squeeze-and-excitation scale)."""
    full = [f for f, s in zip(bottoms, p.bottom_shapes) if tuple(s) == tuple(top_shape)]
    others = [f for f, s in zip(bottoms, p.bottom_shapes) if tuple(s) != tuple(top_shape)]
    if not full or any(not f.whole for f in others):
        return rf.whole(int(top_shape[1]), hw)
    if others:  # a whole-image operand: every unit sees the whole image
        return rf.whole(int(top_shape[1]), hw)
    return rf.hull_bottoms(full, rf.spatial_extent(top_shape), hw)


# -- SliceRange, Transpose, ReduceMean, Pad2D --------------------------------------------
def slice_forward(g, p, ins, outs, params, aux=None):
    r = p.attrs["ranges"]
    g.op("Slice", [ins[0], g.ints([start for _, start, _, _ in r]),
                   g.ints([start + (size - 1) * step + 1 for _, start, size, step in r]),
                   g.ints([axis for axis, _, _, _ in r]), g.ints([step for _, _, _, step in r])], outputs=outs)


def slice_vjp(ctx, p, ins, outs, dtops, aux, params):
    """Each sliced axis in turn: zeros between the picked entries (a new axis padded by
    step - 1, merged back), then zeros before and after the range (negative pads crop
    the last step's tail)."""
    g, d = ctx.g, dtops[0]
    shape = list(p.top_shapes[0])
    nd, full = len(shape), p.bottom_shapes[0]
    for axis, start, size, step in p.attrs["ranges"]:
        if step > 1:
            d = g.op("Unsqueeze", [d, g.ints([axis + 1])], "slice_dx_axis")
            gaps = [0] * (2 * (nd + 1))
            gaps[nd + 1 + axis + 1] = step - 1
            d = g.op("Pad", [d, g.ints(gaps)], "slice_dx_gaps")
            shape[axis] = size * step
            d = g.op("Reshape", [d, g.ints([-1] + shape[1:])], "slice_dx_spread")
        pads = [0] * (2 * nd)
        pads[axis], pads[nd + axis] = start, full[axis] - start - shape[axis]
        d = g.op("Pad", [d, g.ints(pads)], "slice_dx")
        shape[axis] = full[axis]
    return [d], None


def _picked(p):
    """The index of the top's entries in the bottom, axis by axis."""
    index = [slice(None)] * len(p.bottom_shapes[0])
    for axis, start, size, step in p.attrs["ranges"]:
        index[axis] = slice(start, start + (size - 1) * step + 1, step)
    return tuple(index)


def slice_numpy(p, ins, outs, dtops, mode, lrn):
    dx = np.zeros((dtops[0].shape[0],) + tuple(p.bottom_shapes[0][1:]), np.float32)
    dx[_picked(p)] = dtops[0]
    return [dx]


def slice_field(p, top, bottoms, top_shape, hw):
    b = bottoms[0].copy()
    for axis, start, size, step in p.attrs["ranges"]:
        if axis == 1:
            sel = slice(start, start + (size - 1) * step + 1, step)
            b = rf.BlobField(b.size[sel], b.stride[sel], b.offset[sel], b.input_hw, b.whole)
        elif axis in (2, 3) and len(top_shape) == 4:
            if not b.whole:
                b.offset[:, axis - 2] += b.stride[:, axis - 2] * start
                b.stride[:, axis - 2] *= step
        else:
            return rf.whole(int(top_shape[1]), hw)
    return b


def transpose_forward(g, p, ins, outs, params, aux=None):
    g.op("Transpose", [ins[0]], outputs=outs, perm=list(p.attrs["perm"]))


def _inverse(perm):
    return [int(i) for i in np.argsort(perm)]


def transpose_vjp(ctx, p, ins, outs, dtops, aux, params):
    return [ctx.g.op("Transpose", [dtops[0]], "transpose_dx", perm=_inverse(p.attrs["perm"]))], None


def transpose_numpy(p, ins, outs, dtops, mode, lrn):
    return [np.ascontiguousarray(dtops[0].transpose(_inverse(p.attrs["perm"])))]


def reduce_mean_forward(g, p, ins, outs, params, aux=None):
    g.op("ReduceMean", [ins[0]], outputs=outs, axes=list(p.attrs["axes"]), keepdims=int(p.attrs["keepdims"]))


def _kept_shape(p):
    shape = list(p.bottom_shapes[0])
    for ax in p.attrs["axes"]:
        shape[ax] = 1
    return shape


def reduce_mean_vjp(ctx, p, ins, outs, dtops, aux, params):
    g = ctx.g
    n = int(np.prod([p.bottom_shapes[0][ax] for ax in p.attrs["axes"]]))
    d = g.op("Reshape", [dtops[0], g.ints([-1] + _kept_shape(p)[1:])], "rm_kept")
    d = g.op("Mul", [d, g.const(1.0 / n)], "rm_scale")
    return [g.op("Expand", [d, g.op("Shape", [ins[0]], "rm_shape")], "rm_dx")], None


def reduce_mean_numpy(p, ins, outs, dtops, mode, lrn):
    n = int(np.prod([p.bottom_shapes[0][ax] for ax in p.attrs["axes"]]))
    d = dtops[0].reshape([-1] + _kept_shape(p)[1:]) / np.float32(n)
    return [np.ascontiguousarray(np.broadcast_to(d, (d.shape[0],) + tuple(p.bottom_shapes[0][1:])), np.float32)]


def reduce_mean_field(p, top, bottoms, top_shape, hw):
    axes, b = set(p.attrs["axes"]), bottoms[0]
    if axes == {2, 3} and len(p.bottom_shapes[0]) == 4:
        f = rf.spatial(b, rf.spatial_extent(p.bottom_shapes[0]), (1, 1), (0, 0))
        return rf.whole(b.channels, hw) if rf.covers_image(f) else f
    return rf.whole(int(top_shape[1]) if len(top_shape) > 1 else 1, hw)


def pad_forward(g, p, ins, outs, params, aux=None):
    (t, l), (bt, r) = p.attrs["begin"], p.attrs["end"]
    g.op("Pad", [ins[0], g.ints([0, 0, t, l, 0, 0, bt, r]), g.const(p.attrs["value"])], outputs=outs, mode="constant")


def pad_vjp(ctx, p, ins, outs, dtops, aux, params):
    g, (h, w) = ctx.g, p.bottom_shapes[0][2:]
    (t, l) = p.attrs["begin"]
    return [g.op("Slice", [dtops[0], g.ints([t, l]), g.ints([t + h, l + w]), g.ints([2, 3])], "pad_dx")], None


def pad_numpy(p, ins, outs, dtops, mode, lrn):
    (h, w), (t, l) = p.bottom_shapes[0][2:], p.attrs["begin"]
    return [np.ascontiguousarray(dtops[0][:, :, t:t + h, l:l + w])]


def pad_field(p, top, bottoms, top_shape, hw):
    b = bottoms[0].copy()
    b.offset = b.offset - b.stride * np.asarray(p.attrs["begin"], np.float64)
    return b


# -- LogSoftmax --------------------------------------------------------------------------
def log_softmax_forward(g, p, ins, outs, params, aux=None):
    g.op("LogSoftmax", [ins[0]], outputs=outs, axis=p.attrs["axis"])


def log_softmax_vjp(ctx, p, ins, outs, dtops, aux, params):
    g, dy = ctx.g, dtops[0]
    total = g.op("ReduceSum", [dy, g.ints([p.attrs["axis"]])], "lsm_sum", keepdims=1)
    return [g.op("Sub", [dy, g.op("Mul", [g.op("Exp", [outs[0]], "lsm_p"), total], "lsm_pt")], "lsm_dx")], None


def log_softmax_numpy(p, ins, outs, dtops, mode, lrn):
    dy = dtops[0].astype(np.float64)
    prob = np.exp(outs[0].astype(np.float64))
    return [_f32(dy - prob * dy.sum(axis=p.attrs["axis"], keepdims=True))]


def _type(name, forward, vjp, numpy_backward, values_read=reads_bottom, field=None, **kw):
    return LayerType(name, _onnx_only(name), forward, vjp, numpy_backward, values_read, field, **kw)


TYPES = [
    _type("Clip", clip_forward, clip_vjp, clip_numpy, field=same_field, channelwise=True),
    _type("HardSigmoid", hard_sigmoid_forward, hard_sigmoid_vjp, hard_sigmoid_numpy, field=same_field,
          channelwise=True),
    _type("HardSwish", hard_swish_forward, hard_swish_vjp, hard_swish_numpy, field=same_field, channelwise=True),
    _type("Broadcast", broadcast_forward, broadcast_vjp, broadcast_numpy, broadcast_values, broadcast_field,
          bottoms=(2, 2)),
    _type("SliceRange", slice_forward, slice_vjp, slice_numpy, no_values, slice_field),
    _type("Transpose", transpose_forward, transpose_vjp, transpose_numpy, no_values),
    _type("ReduceMean", reduce_mean_forward, reduce_mean_vjp, reduce_mean_numpy, no_values, reduce_mean_field),
    _type("Pad2D", pad_forward, pad_vjp, pad_numpy, no_values, pad_field, ranks=(4,)),
    _type("LogSoftmax", log_softmax_forward, log_softmax_vjp, log_softmax_numpy, reads_top),
]
