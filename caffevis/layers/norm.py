"""Normalization and affine layers: LRN, BatchNorm, Scale, Bias."""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from . import field as rf
from . import numpy_ops as ops
from .base import LayerType, at_least, broadcast_shape, canon_axis, same_field


# -- LRN ---------------------------------------------------------------------------------
def lrn_infer(lp, shapes):
    p = lp.lrn_param
    a = dict(local_size=int(p.local_size), alpha=float(p.alpha), beta=float(p.beta), k=float(p.k),
             region="across" if p.norm_region == 0 else "within")
    at_least(a["local_size"], 1, "lrn_param.local_size")
    if a["local_size"] % 2 == 0:
        raise ModelError("LRN local_size must be odd")
    return a, [shapes[0]], []


def channel_window_mean(g, x, shape, size):
    """Mean over a window of ``size`` channels centred on each channel, zeros padded in
    (the divisor is always ``size``, as Caffe's LRN).

    An AveragePool down the channel axis of an (N, 1, C, rest) view: ORT's pooling kernel
    runs it in one vectorized pass, about twice as fast as a Sum of shifted slices.
    """
    pre = (size - 1) // 2
    view = g.op("Reshape", [x, g.ints([0, 1, shape[1], -1])], "lrn_view")
    mean = g.op("AveragePool", [view], "lrn_cmean", kernel_shape=[size, 1], pads=[pre, 0, size - 1 - pre, 0],
                count_include_pad=1)
    return g.op("Reshape", [mean, g.ints([0] + list(shape[1:]))], "lrn_cmean_r")


def spatial_window_mean(g, x, size):
    """Mean over a ``size`` x ``size`` window of each channel, zeros padded in."""
    pre = (size - 1) // 2
    return g.op("AveragePool", [x], "lrn_smean", kernel_shape=[size, size],
                pads=[pre, pre, size - 1 - pre, size - 1 - pre], count_include_pad=1)


def lrn_scale(g, p, x):
    """Caffe's LRN scale: k + alpha/n * sum(x^2) across channels, or 1 + alpha/n^2 * sum
    within an n x n window (Caffe ignores k there); either is ``bias + alpha * mean(x^2)``."""
    a, shape = p.attrs, p.bottom_shapes[0]
    sq = g.op("Mul", [x, x], "lrn_sq")
    if a["region"] == "across":
        mean, bias = channel_window_mean(g, sq, shape, a["local_size"]), a["k"]
    else:
        mean, bias = spatial_window_mean(g, sq, a["local_size"]), 1.0
    return g.op("Add", [g.op("Mul", [mean, g.const(a["alpha"])]), g.const(bias)], "lrn_scale")


def negative_power(g, x, beta, hint):
    """``x ** -beta``. ORT's Pow evaluates a general exponent one element at a time; square
    roots (for Caffe's default beta 0.75) or exp(-beta * log x) are vectorized, 2-5x faster."""
    if beta == 0.75:
        root = g.op("Sqrt", [x], f"{hint}_sqrt")
        return g.op("Reciprocal", [g.op("Mul", [root, g.op("Sqrt", [root], f"{hint}_qrt")])], hint)
    if beta == 0.5:
        return g.op("Reciprocal", [g.op("Sqrt", [x], f"{hint}_sqrt")], hint)
    if beta == 1.0:
        return g.op("Reciprocal", [x], hint)
    return g.op("Exp", [g.op("Mul", [g.op("Log", [x], f"{hint}_log"), g.const(-beta)])], hint)


def lrn_forward(g, p, ins, outs, params, aux=None):
    a, x = p.attrs, ins[0]
    # ORT's LRN kernel equals Caffe's formula; the explicit form is used for gradients
    # and for float64 graphs (onnx.reference's LRN differs when k != 1).
    if a["region"] == "across" and aux is None and g.dtype == np.float32:
        g.op("LRN", [x], outputs=outs, size=a["local_size"], alpha=a["alpha"], beta=a["beta"], bias=a["k"])
        return
    scale = lrn_scale(g, p, x)
    scale_pow = negative_power(g, scale, a["beta"], "lrn_pow")
    if aux is not None:
        aux["scale"] = scale
        aux["scale_pow"] = scale_pow  # the backward's first term reuses it
    g.op("Mul", [x, scale_pow], outputs=outs)


def lrn_vjp(ctx, p, ins, outs, dtops, aux, params):
    """The exact derivative, or (outside backprop, ``lrn='identity'``) pass-through as the Z&F paper."""
    g, a, dy = ctx.g, p.attrs, dtops[0]
    if ctx.mode != "backprop" and ctx.lrn == "identity":
        return [dy], None
    x, y, scale = ins[0], outs[0], aux["scale"]
    t = g.op("Div", [g.op("Mul", [dy, y], "lrn_dyy"), scale], "lrn_t")
    if a["region"] == "across":
        mean = channel_window_mean(g, t, p.bottom_shapes[0], a["local_size"])
    else:
        mean = spatial_window_mean(g, t, a["local_size"])
    first = g.op("Mul", [dy, aux["scale_pow"]], "lrn_d1")
    second = g.op("Mul", [g.op("Mul", [x, mean], "lrn_xs"), g.const(2.0 * a["alpha"] * a["beta"])], "lrn_d2")
    return [g.op("Sub", [first, second], "lrn_dx")], None


def lrn_numpy(p, ins, outs, dtops, mode, lrn):
    a = p.attrs
    if lrn == "identity" and mode != "backprop":
        return [dtops[0]]
    return [ops.lrn_backward(ins[0], dtops[0], a["local_size"], a["alpha"], a["beta"], a["k"], a["region"])]


def lrn_values(p, mode, lrn):
    return not (lrn == "identity" and mode != "backprop"), False


def lrn_field(p, top, bottoms, top_shape, hw):
    a, b = p.attrs, bottoms[0]
    half = (a["local_size"] - 1) // 2
    if a["region"] == "within":
        return rf.spatial(b, (a["local_size"],) * 2, (1, 1), (half, half))
    return rf.mix_window(b, half, rf.spatial_extent(p.bottom_shapes[0]))


# -- BatchNorm ---------------------------------------------------------------------------
def bn_infer(lp, shapes):
    p, s0 = lp.batch_norm_param, shapes[0]
    if p.HasField("use_global_stats") and not p.use_global_stats:
        raise ModelError("batch_norm_param.use_global_stats: false (batch statistics) is not supported at inference")
    c = s0[1] if len(s0) > 1 else 1
    return dict(eps=float(p.eps)), [s0], [(c,), (c,), (1,)]


def bn_bind(attrs, params):
    """Caffe's moving-average factor (the third blob) scales the stored mean and variance."""
    return dict(attrs, scale_factor=float(params[2].ravel()[0]))


def _bn_factor(a):
    return 0.0 if a["scale_factor"] == 0 else 1.0 / a["scale_factor"]


def bn_forward(g, p, ins, outs, params, aux=None):
    shape = broadcast_shape(p.params[0].shape, 1, len(p.bottom_shapes[0]))
    factor = _bn_factor(p.attrs)
    mean = g.op("Reshape", [g.op("Mul", [params[0], g.const(factor)], "bn_mean"), g.ints(shape)], "bn_mean_r")
    var = g.op("Reshape", [g.op("Mul", [params[1], g.const(factor)], "bn_var"), g.ints(shape)], "bn_var_r")
    inv = g.op("Pow", [g.op("Add", [var, g.const(p.attrs["eps"])], "bn_var_eps"), g.const(-0.5)], "bn_inv")
    if aux is not None:
        aux["inv_std"] = inv
    g.op("Mul", [g.op("Sub", [ins[0], mean], "bn_centre"), inv], outputs=outs)


def bn_vjp(ctx, p, ins, outs, dtops, aux, params):
    return [ctx.g.op("Mul", [dtops[0], aux["inv_std"]], "bn_dx")], None


def bn_numpy(p, ins, outs, dtops, mode, lrn):
    var = p.params[1].astype(np.float64) * _bn_factor(p.attrs)
    inv_std = (var + p.attrs["eps"]) ** -0.5
    return [(dtops[0] * inv_std.reshape(broadcast_shape(var.shape, 1, ins[0].ndim))).astype(np.float32)]


# -- Scale and Bias ----------------------------------------------------------------------
def _affine_infer(kind):
    def infer(lp, shapes):
        p, s0 = (lp.scale_param if kind == "Scale" else lp.bias_param), shapes[0]
        if len(shapes) != 1:
            raise ModelError(f"{kind} with a second bottom (the {kind.lower()} taken from a blob) is not supported")
        axis = canon_axis(p.axis, len(s0), f"{kind.lower()}_param")
        if p.num_axes < -1 or (p.num_axes != -1 and axis + p.num_axes > len(s0)):
            raise ModelError(f"{kind.lower()}_param.num_axes {p.num_axes} does not fit a {len(s0)}-D bottom "
                             f"at axis {axis}")
        end = len(s0) if p.num_axes == -1 else axis + p.num_axes
        pshape = tuple(s0[axis:end])
        bias_term = kind == "Bias" or bool(p.bias_term)
        return dict(axis=axis, num_axes=end - axis, bias_term=bias_term), [s0], \
            ([pshape] if kind == "Scale" else []) + ([pshape] if bias_term else [])
    return infer


def scale_forward(g, p, ins, outs, params, aux=None):
    shape = broadcast_shape(p.params[0].shape, p.attrs["axis"], len(p.bottom_shapes[0]))
    gamma = g.op("Reshape", [params[0], g.ints(shape)], "scale_gamma")
    if p.attrs["bias_term"]:
        beta = g.op("Reshape", [params[1], g.ints(shape)], "scale_beta")
        g.op("Add", [g.op("Mul", [ins[0], gamma], "scale_mul"), beta], outputs=outs)
    else:
        g.op("Mul", [ins[0], gamma], outputs=outs)


def bias_forward(g, p, ins, outs, params, aux=None):
    shape = broadcast_shape(p.params[0].shape, p.attrs["axis"], len(p.bottom_shapes[0]))
    g.op("Add", [ins[0], g.op("Reshape", [params[0], g.ints(shape)], "bias_b")], outputs=outs)


def affine_vjp(ctx, p, ins, outs, dtops, aux, params):
    """Scale (``x * gamma [+ beta]``) and Bias (``x + beta``); parameter diffs sum over the
    axes the parameter is broadcast along."""
    g, a, dy, x = ctx.g, p.attrs, dtops[0], ins[0]
    nd = len(p.bottom_shapes[0])
    axes = [i for i in range(nd) if not a["axis"] <= i < a["axis"] + a["num_axes"]]
    dx, dparams = dy, []
    if p.type == "Scale":
        shape = tuple(p.params[0].shape) + (1,) * (nd - a["axis"] - a["num_axes"])
        dx = g.op("Mul", [dy, g.op("Reshape", [params[0], g.ints(shape)], "scale_g")], "scale_dx")
        if ctx.want_params:
            dparams.append(g.op("ReduceSum", [g.op("Mul", [dy, x], "dyx"), g.ints(axes)], "scale_dg", keepdims=0))
    if ctx.want_params and a["bias_term"]:  # g.ints shares one constant between the two
        dparams.append(g.op("ReduceSum", [dy, g.ints(axes)], "bias_db", keepdims=0))
    return [dx], dparams if ctx.want_params else None


def affine_numpy(p, ins, outs, dtops, mode, lrn):
    if p.type == "Bias":
        return [dtops[0]]
    gamma = p.params[0].reshape(broadcast_shape(p.params[0].shape, p.attrs["axis"], ins[0].ndim))
    return [(dtops[0] * gamma).astype(np.float32)]


TYPES = [
    LayerType("LRN", lrn_infer, lrn_forward, lrn_vjp, lrn_numpy, lrn_values, lrn_field, ranks=(4,)),
    LayerType("BatchNorm", bn_infer, bn_forward, bn_vjp, bn_numpy, field=same_field, bind=bn_bind),
    LayerType("Scale", _affine_infer("Scale"), scale_forward, affine_vjp, affine_numpy, field=same_field,
              bottoms=(1, None)),
    LayerType("Bias", _affine_infer("Bias"), bias_forward, affine_vjp, affine_numpy, field=same_field,
              bottoms=(1, None)),
]
