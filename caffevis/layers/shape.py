"""Layers that move values without computing: Flatten, Reshape, Concat, Slice, Split,
Crop, Silence, Dropout (the identity at inference)."""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from . import field as rf
from .base import (LayerType, canon_axis, count, identity_numpy, identity_vjp, not_batch_axis, same_field, same_shape,
                   zeros_like)


def _filled(dtops, outs):
    """Top diffs with missing ones (no signal reached that top) as zeros."""
    return [np.zeros(o.shape, np.float32) if d is None else d for d, o in zip(dtops, outs)]


def _whole_field(p, top, bottoms, top_shape, hw):
    return rf.whole(int(top_shape[1]) if len(top_shape) > 1 else 1, hw)


# -- Flatten and Reshape -----------------------------------------------------------------
def flatten_infer(lp, shapes):
    p, s0 = lp.flatten_param, shapes[0]
    axis = not_batch_axis(canon_axis(p.axis, len(s0), "flatten_param"), "flatten_param.axis")
    end = canon_axis(p.end_axis, len(s0), "flatten_param end_")
    if end + 1 < axis:
        raise ModelError(f"flatten_param.end_axis {p.end_axis} comes before axis {p.axis}")
    shape = tuple(s0[:axis]) + (count(s0, axis, end + 1),) + tuple(s0[end + 1:])
    return dict(shape=shape), [shape], []


def reshape_infer(lp, shapes):
    p, s0 = lp.reshape_param, shapes[0]
    nd = len(s0)
    start = canon_axis(p.axis, nd + 1, "reshape_param")
    if p.num_axes < -1 or (p.num_axes != -1 and start + p.num_axes > nd):
        raise ModelError(f"reshape_param.num_axes {p.num_axes} does not fit a {nd}-D bottom at axis {start}")
    end = nd if p.num_axes == -1 else start + p.num_axes
    spec = [int(d) for d in p.shape.dim]
    if any(d < -1 for d in spec):
        raise ModelError(f"reshape_param.shape {spec}: dims must be positive, 0 (copy) or -1 (infer)")
    if spec.count(-1) > 1:
        raise ModelError("reshape_param.shape has more than one -1")
    mid = []
    for i, d in enumerate(spec):
        if d == 0 and start + i >= end:
            raise ModelError(f"reshape_param.shape dim {i} is 0 (copy) but there is no bottom axis {start + i} to copy")
        mid.append(s0[start + i] if d == 0 else d)
    shape = list(s0[:start]) + mid + list(s0[end:])
    if -1 in shape:
        known = count([d for d in shape if d != -1])
        if count(s0) % known:
            raise ModelError(f"cannot reshape {tuple(s0)} to {tuple(shape)}")
        shape[shape.index(-1)] = count(s0) // known
    if count(shape) != count(s0):
        raise ModelError(f"cannot reshape {tuple(s0)} to {tuple(shape)}")
    return dict(shape=tuple(shape)), [tuple(shape)], []


def reshape_forward(g, p, ins, outs, params, aux=None):
    g.op("Reshape", [ins[0], g.ints([-1] + list(p.attrs["shape"][1:]))], outputs=outs)


def reshape_vjp(ctx, p, ins, outs, dtops, aux, params):
    g = ctx.g
    return [g.op("Reshape", [dtops[0], g.op("Shape", [ins[0]], "x_shape")], "unflatten")], None


def reshape_numpy(p, ins, outs, dtops, mode, lrn):
    return [dtops[0].reshape(ins[0].shape)]


# -- Concat and Slice --------------------------------------------------------------------
def concat_infer(lp, shapes):
    p, s0 = lp.concat_param, shapes[0]
    axis = p.axis if p.HasField("axis") or not p.HasField("concat_dim") else p.concat_dim
    axis = not_batch_axis(canon_axis(axis, len(s0), "concat_param"), "concat_param.axis")
    for s in shapes[1:]:
        if len(s) != len(s0) or any(a != b for i, (a, b) in enumerate(zip(s, s0)) if i != axis):
            raise ModelError(f"Concat bottoms {shapes} differ outside axis {axis}")
    out = list(s0)
    out[axis] = sum(s[axis] for s in shapes)
    return dict(axis=axis, sizes=[s[axis] for s in shapes]), [tuple(out)], []


def concat_forward(g, p, ins, outs, params, aux=None):
    g.op("Concat", list(ins), outputs=outs, axis=p.attrs["axis"])


def concat_vjp(ctx, p, ins, outs, dtops, aux, params):
    parts = ctx.g.op("Split", [dtops[0], ctx.g.ints(p.attrs["sizes"])], "concat_dx", n_out=len(ins),
                     axis=p.attrs["axis"])
    return (parts if len(ins) > 1 else [parts]), None


def concat_numpy(p, ins, outs, dtops, mode, lrn):
    a = p.attrs
    return np.split(dtops[0], np.cumsum([i.shape[a["axis"]] for i in ins])[:-1], axis=a["axis"])


def concat_field(p, top, bottoms, top_shape, hw):
    axis = p.attrs["axis"]
    if axis == 1:
        return rf.BlobField(*(np.concatenate([getattr(f, k) for f in bottoms]) for k in ("size", "stride", "offset")),
                            hw)
    if axis == 0:
        return rf.hull_bottoms(bottoms, rf.spatial_extent(p.bottom_shapes[0]), hw)
    return _whole_field(p, top, bottoms, top_shape, hw)  # spatial concat: positions no longer map to one place


def slice_infer(lp, shapes):
    p, s0 = lp.slice_param, shapes[0]
    if p.HasField("axis") and p.HasField("slice_dim"):
        raise ModelError("slice_param: give either axis or slice_dim, not both")
    axis = int(p.slice_dim) if p.HasField("slice_dim") else canon_axis(p.axis, len(s0), "slice_param")
    if axis >= len(s0):
        raise ModelError(f"slice_param.slice_dim {axis} is out of range for a {len(s0)}-D blob")
    if axis == 0:
        raise ModelError("slicing the batch axis (0) is not supported: caffevis runs any batch size")
    n_tops, size = len(lp.top), s0[axis]
    if n_tops < 1:
        raise ModelError("Slice needs at least one top")
    points = [int(v) for v in p.slice_point]
    if points:
        if len(points) != n_tops - 1:
            raise ModelError(f"slice_param has {len(points)} slice_point(s) for {n_tops} tops; expected {n_tops - 1}")
        bounds = [0] + points + [size]
        if any(b <= a for a, b in zip(bounds, bounds[1:])):
            raise ModelError(f"slice_param.slice_point {points} must increase strictly within 1..{size - 1}")
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    else:
        if size % n_tops:
            raise ModelError(f"axis {axis} of size {size} does not split into {n_tops} equal slices")
        sizes = [size // n_tops] * n_tops
    tops = [tuple(s0[:axis]) + (z,) + tuple(s0[axis + 1:]) for z in sizes]
    return dict(axis=axis, sizes=sizes), tops, []


def slice_forward(g, p, ins, outs, params, aux=None):
    if len(outs) == 1:
        g.op("Identity", [ins[0]], outputs=outs)
    else:
        g.op("Split", [ins[0], g.ints(p.attrs["sizes"])], outputs=list(outs), axis=p.attrs["axis"])


def slice_vjp(ctx, p, ins, outs, dtops, aux, params):
    g = ctx.g
    parts = [d if d is not None else zeros_like(g, o) for d, o in zip(dtops, outs)]
    return [parts[0] if len(parts) == 1 else g.op("Concat", parts, "slice_dx", axis=p.attrs["axis"])], None


def slice_numpy(p, ins, outs, dtops, mode, lrn):
    tops = _filled(dtops, outs)
    return [np.concatenate(tops, axis=p.attrs["axis"]) if len(tops) > 1 else tops[0]]


def slice_field(p, top, bottoms, top_shape, hw):
    a, b = p.attrs, bottoms[0]
    if len(top_shape) != 4 or a["axis"] not in (1, 2, 3):
        return _whole_field(p, top, bottoms, top_shape, hw)
    first = sum(a["sizes"][:p.tops.index(top)])
    if a["axis"] == 1:
        keep = slice(first, first + int(top_shape[1]))
        return rf.BlobField(b.size[keep].copy(), b.stride[keep].copy(), b.offset[keep].copy(), hw)
    shift = np.zeros(2)
    shift[a["axis"] - 2] = first  # rows (axis 2) or columns (axis 3) cut off before this top
    return rf.BlobField(b.size.copy(), b.stride.copy(), b.offset + b.stride * shift, hw)


# -- Split, Dropout, Silence -------------------------------------------------------------
def split_infer(lp, shapes):
    return {}, [shapes[0]] * len(lp.top), []


def copies_forward(g, p, ins, outs, params, aux=None):
    for o in outs:
        g.op("Identity", [ins[0]], outputs=[o])


def split_vjp(ctx, p, ins, outs, dtops, aux, params):
    present = [d for d in dtops if d is not None]
    return [present[0] if len(present) == 1 else ctx.g.op("Sum", present, "split_sum")], None


def split_numpy(p, ins, outs, dtops, mode, lrn):
    tops = _filled(dtops, outs)
    total = tops[0]
    for d in tops[1:]:
        total = total + d
    return [total]


def silence_infer(lp, shapes):
    return {}, [], []


def silence_forward(g, p, ins, outs, params, aux=None):
    pass


# -- Crop ----------------------------------------------------------------------------------
def crop_infer(lp, shapes):
    p, s0 = lp.crop_param, shapes[0] if shapes else ()
    if len(shapes) != 2:
        raise ModelError(f"Crop needs two bottoms (the blob to crop and one giving the size); got {len(shapes)}")
    ref = shapes[1]
    if len(ref) != len(s0):
        raise ModelError(f"Crop bottoms have {len(s0)} and {len(ref)} axes; expected the same")
    axis = canon_axis(p.axis, len(s0), "crop_param")
    given = [int(v) for v in p.offset]
    if len(given) > 1 and axis + len(given) != len(s0):
        raise ModelError(f"crop_param has {len(given)} offsets; expected 1 or {len(s0) - axis} "
                         f"(one per axis from {axis})")
    offsets, shape = [], []
    for i, dim in enumerate(s0):
        off = 0 if i < axis or not given else given[0] if len(given) == 1 else given[i - axis]
        size = dim if i < axis else ref[i]
        if dim - off < size:
            raise ModelError(f"crop of {size} at offset {off} does not fit axis {i} of size {dim}")
        if i == 0 and (off or size != dim):
            raise ModelError("cropping the batch axis (0) is not supported: caffevis runs any batch size")
        offsets.append(off)
        shape.append(size)
    return dict(axis=axis, offsets=offsets), [tuple(shape)], []


def crop_forward(g, p, ins, outs, params, aux=None):
    a = p.attrs
    axes = [i for i, (off, size, dim) in enumerate(zip(a["offsets"], p.top_shapes[0], p.bottom_shapes[0]))
            if off or size != dim]
    if not axes:
        g.op("Identity", [ins[0]], outputs=outs)
    else:
        starts = [a["offsets"][i] for i in axes]
        ends = [a["offsets"][i] + p.top_shapes[0][i] for i in axes]
        g.op("Slice", [ins[0], g.ints(starts), g.ints(ends), g.ints(axes)], outputs=outs)


def crop_vjp(ctx, p, ins, outs, dtops, aux, params):
    """The diff goes back into the cropped window; the size-giving bottom gets none (Caffe)."""
    g, a = ctx.g, p.attrs
    before = a["offsets"]
    after = [dim - off - size for dim, off, size in zip(p.bottom_shapes[0], before, p.top_shapes[0])]
    if not any(before) and not any(after):
        return [dtops[0], None], None
    return [g.op("Pad", [dtops[0], g.ints(before + after)], "crop_dx"), None], None


def crop_numpy(p, ins, outs, dtops, mode, lrn):
    dy = dtops[0]
    dx = np.zeros(ins[0].shape, np.float32)
    dx[tuple(slice(o, o + n) for o, n in zip(p.attrs["offsets"], dy.shape))] = dy
    return [dx, None]  # the bottom giving the size gets no diff (Caffe)


def crop_field(p, top, bottoms, top_shape, hw):
    a, b = p.attrs, bottoms[0]
    if a["axis"] < 2:
        return _whole_field(p, top, bottoms, top_shape, hw)
    # unit (0, 0) of the crop is unit (offset_y, offset_x) of the bottom
    return rf.BlobField(b.size.copy(), b.stride.copy(), b.offset + b.stride * np.asarray(a["offsets"][2:4], float), hw)


TYPES = [
    LayerType("Flatten", flatten_infer, reshape_forward, reshape_vjp, reshape_numpy),
    LayerType("Reshape", reshape_infer, reshape_forward, reshape_vjp, reshape_numpy),
    LayerType("Concat", concat_infer, concat_forward, concat_vjp, concat_numpy, field=concat_field, bottoms=(1, None)),
    LayerType("Slice", slice_infer, slice_forward, slice_vjp, slice_numpy, field=slice_field),
    LayerType("Split", split_infer, copies_forward, split_vjp, split_numpy, field=same_field),
    LayerType("Dropout", same_shape, copies_forward, identity_vjp, identity_numpy, field=same_field, channelwise=True),
    LayerType("Silence", silence_infer, silence_forward, None, None, bottoms=(1, None)),
    LayerType("Crop", crop_infer, crop_forward, crop_vjp, crop_numpy, field=crop_field, bottoms=(0, None)),
]
