"""Softmax over one axis."""
from __future__ import annotations

import numpy as np

from . import field as rf
from .base import LayerType, canon_axis


def infer(lp, shapes):
    return dict(axis=canon_axis(lp.softmax_param.axis, len(shapes[0]), "softmax_param")), [shapes[0]], []


def forward(g, p, ins, outs, params, aux=None):
    g.op("Softmax", [ins[0]], outputs=outs, axis=p.attrs["axis"])


def vjp(ctx, p, ins, outs, dtops, aux, params):
    g, dy, y = ctx.g, dtops[0], outs[0]
    dot = g.op("ReduceSum", [g.op("Mul", [dy, y], "sm_dyy"), g.ints([p.attrs["axis"]])], "sm_dot", keepdims=1)
    return [g.op("Mul", [y, g.op("Sub", [dy, dot], "sm_sub")], "sm_dx")], None


def numpy_backward(p, ins, outs, dtops, mode, lrn):
    y = outs[0].astype(np.float64)
    dy = dtops[0].astype(np.float64)
    return [((dy - np.sum(dy * y, axis=p.attrs["axis"], keepdims=True)) * y).astype(np.float32)]


def values_read(p, mode, lrn):
    return False, True


def field(p, top, bottoms, top_shape, hw):
    """Over channels: every channel sees the hull of all; over another axis: unchanged."""
    b = bottoms[0]
    if p.attrs["axis"] == 1:
        z, s, o = rf.hull((b.size, b.stride, b.offset), rf.spatial_extent(p.bottom_shapes[0]))
        n = b.channels
        return rf.BlobField(np.tile(z, (n, 1)), np.tile(s, (n, 1)), np.tile(o, (n, 1)), hw)
    return b.copy()


TYPES = [LayerType("Softmax", infer, forward, vjp, numpy_backward, values_read, field)]
