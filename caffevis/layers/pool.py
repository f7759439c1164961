"""Pooling (MAX and AVE, Caffe's ceil-mode output size, global pooling), with the ONNX
attributes Caffe lacks: an end pad other than the begin pad (``pad_end``), MaxPool
``dilation`` and AveragePool's ``exclude_pad`` (``count_include_pad=0``).

The pooling geometry (:func:`pool_geometry`, :func:`ave_divisor`) is shared by the ONNX
forward, the gradient graph and the NumPy engine.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ModelError
from . import field as rf
from . import numpy_ops as ops
from .base import LayerType, mask, opt, pair, zeros_like

LOWEST = float(np.finfo(np.float32).min)


def pool_output_size(size, kernel, pad, stride, ceil=True, padded=None):
    """Caffe's pooled size: ceil (or floor) rounding, clipped so the last window starts
    inside the padded input. Caffe clips every axis when *any* axis is padded
    (``padded``; default: this axis' ``pad``)."""
    rounder = math.ceil if ceil else math.floor
    out = int(rounder((size + 2 * pad - kernel) / stride)) + 1
    if (pad if padded is None else padded) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def infer(lp, shapes):
    p = lp.pooling_param
    n, c, h, w = shapes[0]
    if p.pool not in (0, 1):
        raise ModelError("only MAX and AVE pooling are supported (STOCHASTIC is not)")
    if p.global_pooling:
        kernel, pad, stride = (h, w), (0, 0), (1, 1)
    else:
        kernel = pair([p.kernel_size] if p.HasField("kernel_size") else [],
                      opt(p, "kernel_h"), opt(p, "kernel_w"), None, "kernel_size")
        pad = (int(p.pad_h), int(p.pad_w)) if (p.HasField("pad_h") or p.HasField("pad_w")) else (int(p.pad),) * 2
        stride = pair([p.stride], opt(p, "stride_h"), opt(p, "stride_w"), 1, "stride")
    ceil = p.round_mode == 0
    if any(pd >= k for pd, k in zip(pad, kernel)):
        raise ModelError(f"pad {pad} must be smaller than kernel {kernel}")
    out = tuple(pool_output_size(sz, k, pd, st, ceil, padded=any(pad))
                for sz, k, pd, st in zip((h, w), kernel, pad, stride))
    if min(out) < 1:  # a kernel larger than the padded input, with floor rounding
        raise ModelError(f"kernel {kernel[0]}x{kernel[1]} gives an empty output ({out[0]}x{out[1]}) "
                         f"from the input {h}x{w} padded by {pad[0]}x{pad[1]}")
    a = dict(method="max" if p.pool == 0 else "ave", kernel=kernel, pad=pad, stride=stride,
             ceil=ceil, global_pooling=bool(p.global_pooling))
    return a, [(n, c) + out], []


def dilation(a):
    """The window's dilation (ONNX MaxPool ``dilations``; Caffe pools are undilated)."""
    return tuple(a.get("dilation", (1, 1)))


def effective_kernel(a):
    return tuple(d * (k - 1) + 1 for d, k in zip(dilation(a), a["kernel"]))


def pool_geometry(p):
    """Explicit pads (begin, end) per spatial axis that make ONNX floor-mode pooling
    reproduce the layer's output size (Caffe's ceil mode, ONNX's ceil_mode or its
    asymmetric pads): the end pad is what the last window reaches past the input."""
    (h, w), (oh, ow) = p.bottom_shapes[0][2:], p.top_shapes[0][2:]
    pads_end = []
    for size, out, k, pad, s in zip((h, w), (oh, ow), effective_kernel(p.attrs), p.attrs["pad"], p.attrs["stride"]):
        pads_end.append(max((out - 1) * s + k - size - pad, 0))
    return p.attrs["pad"], tuple(pads_end)


def _window_sizes(size, out, k, begin, end, s, exclude_pad):
    starts = np.arange(out) * s - begin
    stops = np.minimum(starts + k, size + end)
    return np.minimum(stops, size) - np.maximum(starts, 0) if exclude_pad else stops - starts


def ave_divisor(p):
    """AVE pool_size per output position: windows clipped at size + end pad (Caffe, whose
    end pad is its begin pad, and ONNX's ``count_include_pad=1``), or the input values
    in the window only (ONNX's ``count_include_pad=0``)."""
    (h, w), (oh, ow) = p.bottom_shapes[0][2:], p.top_shapes[0][2:]
    a = p.attrs
    ends = a.get("pad_end", a["pad"])
    hsz, wsz = (_window_sizes(size, out, k, b, e, s, a.get("exclude_pad", False))
                for size, out, k, b, e, s in zip((h, w), (oh, ow), a["kernel"], a["pad"], ends, a["stride"]))
    return (hsz[:, None] * wsz[None, :]).astype(np.float64)


def _max_kwargs(a):
    kw = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]))
    if dilation(a) != (1, 1):
        kw["dilations"] = list(dilation(a))
    return kw


def forward(g, p, ins, outs, params, aux=None):
    a, x = p.attrs, ins[0]
    begin, end = pool_geometry(p)
    padded = x
    value = LOWEST if a["method"] == "max" else 0.0
    if any(begin) or any(end):
        padded = g.op("Pad", [x, g.ints([0, 0, begin[0], begin[1], 0, 0, end[0], end[1]]), g.const(value)],
                      "pool_pad", mode="constant")
    if aux is not None:
        aux["padded"] = padded
    if a["method"] == "max":
        if aux is not None:
            _, idx = g.op("MaxPool", [padded], outputs=[outs[0], g.fresh("pool_idx")], n_out=2, **_max_kwargs(a))
            aux["indices"] = idx
        else:
            g.op("MaxPool", [padded], outputs=outs, **_max_kwargs(a))
    else:
        c = p.bottom_shapes[0][1]
        ones = g.const(np.ones((c, 1) + tuple(a["kernel"])), hint="ones_kernel")
        inverse_divisor = g.const(1.0 / ave_divisor(p)[None, None])
        summed = g.op("Conv", [padded, ones], "ave_sum", strides=list(a["stride"]), group=c)
        g.op("Mul", [summed, inverse_divisor], outputs=outs)
        if aux is not None:  # the gradient's transposed convolution uses the same constants
            aux["ones_kernel"], aux["inverse_divisor"] = ones, inverse_divisor


def vjp(ctx, p, ins, outs, dtops, aux, params):
    """Max: each top diff goes to its forward argmax, *added* where windows share one
    (MaxPool indices + ScatterElements); AVE: a transposed convolution with ones."""
    g, a, dy = ctx.g, p.attrs, dtops[0]
    begin, end = pool_geometry(p)
    h, w = p.bottom_shapes[0][2:]
    padded = aux["padded"]
    if a["method"] == "max":
        if p.name in ctx.masked_at_pool:  # the ReLU below's mask, applied here (see backward.graph)
            dy = g.op("Mul", [dy, mask(g, g.op("Greater", [outs[0], g.const(0.0)], "pool_pos"))], "pool_relu_grad")
        shape = g.op("Shape", [padded], "pool_shape")
        zeros = zeros_like(g, g.op("Reshape", [padded, g.ints([-1])], "pool_flat"))
        scattered = g.op("ScatterElements", [zeros, g.op("Reshape", [aux["indices"], g.ints([-1])], "idx_flat"),
                                             g.op("Reshape", [dy, g.ints([-1])], "dy_flat")],
                         "unpool", axis=0, reduction="add")
        dpad = g.op("Reshape", [scattered, shape], "unpool_r")
    else:
        c = p.bottom_shapes[0][1]
        (kh, kw), (sh, sw) = a["kernel"], a["stride"]
        (oh, ow) = p.top_shapes[0][2:]
        hp, wp = h + begin[0] + end[0], w + begin[1] + end[1]
        scaled = g.op("Mul", [dy, aux["inverse_divisor"]], "ave_dy")
        dpad = g.op("ConvTranspose", [scaled, aux["ones_kernel"]], "ave_dx",
                    strides=[sh, sw], group=c, output_padding=[hp - (sh * (oh - 1) + kh), wp - (sw * (ow - 1) + kw)])
    if any(begin) or any(end):
        dpad = g.op("Slice", [dpad, g.ints([begin[0], begin[1]]), g.ints([begin[0] + h, begin[1] + w]),
                              g.ints([2, 3])], "unpad")
    return [dpad], None


def numpy_backward(p, ins, outs, dtops, mode, lrn):
    a, x, dy = p.attrs, ins[0], dtops[0]
    (pad_h, pad_w), (end_h, end_w) = pool_geometry(p)
    pads_h, pads_w = (pad_h, end_h), (pad_w, end_w)
    in_hw = x.shape[2:]
    if a["method"] == "max":
        switch = ops.max_pool_switches(x, a["kernel"], a["stride"], pads_h, pads_w, dy.shape[2:], dilation(a))
        return [ops.max_pool_backward(dy, switch, a["kernel"], a["stride"], pads_h, pads_w, in_hw, dilation(a))]
    return [ops.ave_pool_backward(dy, ave_divisor(p)[None, None], a["kernel"], a["stride"], pads_h, pads_w, in_hw)]


def values_read(p, mode, lrn):
    return p.attrs["method"] == "max", False  # the switches come from the bottom


def field(p, top, bottoms, top_shape, hw):
    a, b = p.attrs, bottoms[0]
    if a["global_pooling"]:
        f = rf.spatial(b, rf.spatial_extent(p.bottom_shapes[0]), (1, 1), (0, 0))
        # its one unit sees every pixel: crop the image, not a padded frame
        return rf.whole(int(top_shape[1]), hw) if rf.covers_image(f) else f
    return rf.spatial(b, a["kernel"], a["stride"], a["pad"], dilation(a))


TYPES = [LayerType("Pooling", infer, forward, vjp, numpy_backward, values_read, field, ranks=(4,))]
