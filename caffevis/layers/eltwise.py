"""Eltwise: SUM (with coefficients), PROD and MAX of two or more bottoms."""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from . import field as rf
from .base import LayerType, mask


def infer(lp, shapes):
    p, s0 = lp.eltwise_param, shapes[0]
    if len(shapes) < 2:
        raise ModelError("Eltwise needs at least two bottoms")
    op = {0: "prod", 1: "sum", 2: "max"}[p.operation]
    coeff = list(p.coeff) or [1.0] * len(shapes)
    if len(coeff) != len(shapes):
        raise ModelError(f"eltwise_param has {len(coeff)} coeff for {len(shapes)} bottoms")
    if op == "prod" and len(p.coeff):
        raise ModelError("eltwise_param.coeff is not allowed with PROD")  # Caffe ignores it for MAX
    if any(tuple(s) != tuple(s0) for s in shapes):
        raise ModelError(f"Eltwise bottoms have different shapes {shapes}")
    return dict(op=op, coeff=coeff), [s0], []


def forward(g, p, ins, outs, params, aux=None):
    a = p.attrs
    if a["op"] == "sum":
        terms = [i if c == 1.0 else g.op("Mul", [i, g.const(c)], "elt_coeff") for i, c in zip(ins, a["coeff"])]
        g.op("Sum", terms, outputs=outs)
    elif a["op"] == "prod":
        partial = ins[0]
        for other in ins[1:-1]:
            partial = g.op("Mul", [partial, other], "elt_prod")
        g.op("Mul", [partial, ins[-1]], outputs=outs)
    else:
        g.op("Max", list(ins), outputs=outs)


def vjp(ctx, p, ins, outs, dtops, aux, params):
    g, a, dy = ctx.g, p.attrs, dtops[0]
    if a["op"] == "sum":
        return [dy if c == 1.0 else g.op("Mul", [dy, g.const(c)], "elt_dc") for c in a["coeff"]], None
    if a["op"] == "prod":
        dins = []
        for i in range(len(ins)):
            others = [x for j, x in enumerate(ins) if j != i]
            prod = others[0]
            for o in others[1:]:
                prod = g.op("Mul", [prod, o], "elt_others")
            dins.append(g.op("Mul", [dy, prod], "elt_dprod"))
        return dins, None
    # MAX: Caffe keeps bottom 1 on a tie with bottom 0, and the earlier bottom on later ties.
    sel = g.op("Where", [g.op("Greater", [ins[0], ins[1]], "gt"), g.const(0.0), g.const(1.0)], "elt_sel")
    cur = g.op("Max", [ins[0], ins[1]], "elt_cur")
    for i in range(2, len(ins)):
        better = g.op("Greater", [ins[i], cur], "gt")
        sel = g.op("Where", [better, g.const(float(i)), sel], "elt_sel")
        cur = g.op("Where", [better, ins[i], cur], "elt_cur")
    return [g.op("Mul", [dy, mask(g, g.op("Equal", [sel, g.const(float(i))], "is_sel"))], "elt_dmax")
            for i in range(len(ins))], None


def numpy_backward(p, ins, outs, dtops, mode, lrn):
    a, dy = p.attrs, dtops[0]
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


def values_read(p, mode, lrn):
    return p.attrs["op"] != "sum", False


def field(p, top, bottoms, top_shape, hw):
    return rf.hull_bottoms(bottoms, rf.spatial_extent(p.bottom_shapes[0]), hw)


TYPES = [LayerType("Eltwise", infer, forward, vjp, numpy_backward, values_read, field, bottoms=(0, None))]
