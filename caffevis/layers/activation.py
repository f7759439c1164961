"""Elementwise activations: ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, Power, BNLL, Exp, Log.

ReLU carries the rule that tells the three backward modes apart: the forward mask
(backprop), ``max(diff, 0)`` (Zeiler & Fergus deconv) or both (guided backprop).
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from .base import LayerType, broadcast_shape, mask, reads_bottom, reads_top, same_field, same_shape


# -- shared arithmetic -------------------------------------------------------------------
def affine(g, x, scale, shift, hint):
    """``x * scale + shift``, each step emitted only where it changes ``x`` (as Caffe skips them)."""
    if scale != 1.0:
        x = g.op("Mul", [x, g.const(scale)], f"{hint}_scale")
    if shift != 0.0:
        x = g.op("Add", [x, g.const(shift)], f"{hint}_shift")
    return x


def exp_scales(a):
    """Caffe's Exp layer: y = outer * exp(inner * x) for y = base^(shift + scale * x)."""
    log_base = 1.0 if a["base"] == -1 else float(np.log(np.float32(a["base"])))
    inner = log_base * a["scale"]
    if a["shift"] == 0:
        return inner, 1.0
    return inner, float(np.exp(a["shift"])) if a["base"] == -1 else float(np.float32(a["base"]) ** a["shift"])


def log_base_scale(a):
    """Caffe's Log layer divides the natural log by log(base) (1 for base -1, i.e. e)."""
    return 1.0 if a["base"] == -1 else 1.0 / float(np.log(np.float32(a["base"])))


def _unary(onnx_op):
    def forward(g, p, ins, outs, params, aux=None):
        g.op(onnx_op, [ins[0]], outputs=outs)
    return forward


# -- ReLU --------------------------------------------------------------------------------
def relu_infer(lp, shapes):
    return dict(negative_slope=float(lp.relu_param.negative_slope)), [shapes[0]], []


def relu_forward(g, p, ins, outs, params, aux=None):
    if p.attrs["negative_slope"]:
        g.op("LeakyRelu", [ins[0]], outputs=outs, alpha=p.attrs["negative_slope"])
    else:
        g.op("Relu", [ins[0]], outputs=outs)


def relu_rule(ctx, dy, x, slope=0.0):
    """The gradient graph's ReLU rule for ``ctx.mode``."""
    g = ctx.g
    if ctx.mode == "deconv":
        return g.op("Relu", [dy], "deconv_relu")
    positive = mask(g, g.op("Greater", [x, g.const(0.0)], "pos"))
    if ctx.mode == "guided":
        return g.op("Mul", [g.op("Relu", [dy], "guided_relu"), positive], "guided")
    if slope:
        factor = g.op("Add", [g.op("Mul", [positive, g.const(1.0 - slope)], "leak"), g.const(slope)], "leak_f")
        return g.op("Mul", [dy, factor], "relu_grad")
    return g.op("Mul", [dy, positive], "relu_grad")


def relu_vjp(ctx, p, ins, outs, dtops, aux, params):
    # Caffe masks with the bottom blob as it is at backward time: for an in-place ReLU that
    # is the output (the same mask unless the slope is negative). It also leaves the
    # pre-ReLU value to the ReLU alone, so ORT fuses the two into one convolution.
    if p.name in ctx.premasked:  # the max pool above applied this mask
        return [ctx.g.op("Relu", [dtops[0]], "guided_relu") if ctx.mode == "guided" else dtops[0]], None
    x = outs[0] if p.in_place else ins[0]
    return [relu_rule(ctx, dtops[0], x, p.attrs["negative_slope"])], None


def relu_numpy(p, ins, outs, dtops, mode, lrn):
    x, dy, slope = (outs[0] if p.in_place else ins[0]), dtops[0], p.attrs["negative_slope"]
    if mode == "deconv":
        return [np.maximum(dy, 0)]  # Zeiler & Fergus: rectify the signal; the negative slope is ignored
    if mode == "guided":
        return [np.where((x > 0) & (dy > 0), dy, 0).astype(np.float32)]
    if slope:
        return [np.where(x > 0, dy, slope * dy).astype(np.float32)]
    return [np.where(x > 0, dy, 0).astype(np.float32)]


def relu_values(p, mode, lrn):
    if mode == "deconv":
        return False, False
    return (False, True) if p.in_place else (True, False)  # in place: Caffe's mask reads the output


# -- PReLU -------------------------------------------------------------------------------
def prelu_infer(lp, shapes):
    s0 = shapes[0]
    shared = bool(lp.prelu_param.channel_shared)
    if len(s0) < 2 and not shared:
        raise ModelError(f"bottom shape {tuple(s0)} has no channel axis (PReLU needs 2 or more axes)")
    return dict(channel_shared=shared), [s0], [() if shared else (s0[1],)]  # Caffe: a 0-axis blob


def prelu_forward(g, p, ins, outs, params, aux=None):
    shape = broadcast_shape(p.params[0].shape, 1, len(p.bottom_shapes[0]))
    slope = g.op("Reshape", [params[0], g.ints(shape)], "prelu_slope")
    g.op("PRelu", [ins[0], slope], outputs=outs)


def prelu_vjp(ctx, p, ins, outs, dtops, aux, params):
    g, x, dy = ctx.g, ins[0], dtops[0]
    nd = len(p.bottom_shapes[0])
    shape = tuple(p.params[0].shape) + (1,) * (nd - 2) if not p.attrs["channel_shared"] else (1,)
    slope = g.op("Reshape", [params[0], g.ints(shape)], "prelu_s")
    pos = mask(g, g.op("Greater", [x, g.const(0.0)], "pos"))
    neg = g.op("Sub", [g.const(1.0), pos], "neg")
    dx = g.op("Mul", [dy, g.op("Add", [pos, g.op("Mul", [neg, slope], "neg_s")], "prelu_f")], "prelu_dx")
    dparams = None
    if ctx.want_params:
        terms = g.op("Mul", [g.op("Mul", [dy, x], "dyx"), neg], "prelu_terms")
        axes = [0] + list(range(2, nd)) if not p.attrs["channel_shared"] else list(range(nd))
        da = g.op("ReduceSum", [terms, g.ints(axes)], "prelu_da", keepdims=0)
        dparams = [g.op("Reshape", [da, g.ints(p.params[0].shape)], "prelu_da_r")]
    return [dx], dparams


def prelu_numpy(p, ins, outs, dtops, mode, lrn):
    x = ins[0]
    slope = p.params[0].reshape(broadcast_shape(p.params[0].shape, 1, x.ndim))
    return [np.where(x > 0, dtops[0], slope * dtops[0]).astype(np.float32)]


# -- ELU, Sigmoid, TanH, AbsVal ------------------------------------------------------------
def elu_infer(lp, shapes):
    return dict(alpha=float(lp.elu_param.alpha)), [shapes[0]], []


def elu_forward(g, p, ins, outs, params, aux=None):
    g.op("Elu", [ins[0]], outputs=outs, alpha=p.attrs["alpha"])


def elu_vjp(ctx, p, ins, outs, dtops, aux, params):
    g, x, y = ctx.g, ins[0], outs[0]
    pos = mask(g, g.op("Greater", [x, g.const(0.0)], "pos"))
    neg_d = g.op("Add", [y, g.const(p.attrs["alpha"])], "elu_neg")
    f = g.op("Add", [pos, g.op("Mul", [g.op("Sub", [g.const(1.0), pos], "neg"), neg_d], "elu_nf")], "elu_f")
    return [g.op("Mul", [dtops[0], f], "elu_dx")], None


def elu_numpy(p, ins, outs, dtops, mode, lrn):
    x, dy = ins[0], dtops[0]
    return [np.where(x > 0, dy, dy * (p.attrs["alpha"] * np.exp(x.astype(np.float64)))).astype(np.float32)]


def sigmoid_vjp(ctx, p, ins, outs, dtops, aux, params):
    g, y = ctx.g, outs[0]
    return [g.op("Mul", [dtops[0], g.op("Mul", [y, g.op("Sub", [g.const(1.0), y], "1my")], "sig_d")], "sig_dx")], None


def sigmoid_numpy(p, ins, outs, dtops, mode, lrn):
    y = outs[0]
    return [(dtops[0] * y * (1.0 - y)).astype(np.float32)]


def tanh_vjp(ctx, p, ins, outs, dtops, aux, params):
    g, y = ctx.g, outs[0]
    return [g.op("Mul", [dtops[0], g.op("Sub", [g.const(1.0), g.op("Mul", [y, y], "y2")], "tanh_d")], "tanh_dx")], None


def tanh_numpy(p, ins, outs, dtops, mode, lrn):
    y = outs[0]
    return [(dtops[0] * (1.0 - y * y)).astype(np.float32)]


def abs_vjp(ctx, p, ins, outs, dtops, aux, params):
    return [ctx.g.op("Mul", [dtops[0], ctx.g.op("Sign", [ins[0]], "sign")], "abs_dx")], None


def abs_numpy(p, ins, outs, dtops, mode, lrn):
    return [(dtops[0] * np.sign(ins[0])).astype(np.float32)]


# -- Power -------------------------------------------------------------------------------
def power_infer(lp, shapes):
    p = lp.power_param
    return dict(power=float(p.power), scale=float(p.scale), shift=float(p.shift)), [shapes[0]], []


def power_forward(g, p, ins, outs, params, aux=None):
    a = p.attrs
    y = affine(g, ins[0], a["scale"], a["shift"], "pow")
    if a["power"] != 1.0:
        y = g.op("Pow", [y, g.const(a["power"])], "pow")
    g.op("Identity", [y], outputs=outs)


def power_vjp(ctx, p, ins, outs, dtops, aux, params):
    g, dy, x = ctx.g, dtops[0], ins[0]
    power, scale, shift = p.attrs["power"], p.attrs["scale"], p.attrs["shift"]
    if power == 0:
        return [g.op("Mul", [dy, g.const(0.0)], "pow_dx0")], None
    if power == 1:
        return [g.op("Mul", [dy, g.const(scale)], "pow_dx1")], None
    base = g.op("Add", [g.op("Mul", [x, g.const(scale)], "pow_sx"), g.const(shift)], "pow_base")
    d = g.op("Mul", [g.op("Pow", [base, g.const(power - 1.0)], "pow_p"), g.const(power * scale)], "pow_d")
    return [g.op("Mul", [dy, d], "pow_dx")], None


def power_numpy(p, ins, outs, dtops, mode, lrn):
    dy, x = dtops[0], ins[0]
    power, scale, shift = p.attrs["power"], p.attrs["scale"], p.attrs["shift"]
    if power == 0.0 or scale == 0.0:
        return [np.zeros_like(dy)]
    if power == 1.0:
        return [(dy * scale).astype(np.float32)]
    base = shift + scale * x.astype(np.float64)
    return [(dy * (power * scale) * base ** (power - 1.0)).astype(np.float32)]


# -- BNLL, Exp, Log ------------------------------------------------------------------------
def bnll_forward(g, p, ins, outs, params, aux=None):
    # Caffe's stable form: max(x, 0) + log(1 + exp(-|x|))
    x = ins[0]
    tail = g.op("Log", [g.op("Add", [g.op("Exp", [g.op("Neg", [g.op("Abs", [x], "bnll_abs")], "bnll_neg")],
                                               "bnll_exp"), g.const(1.0)], "bnll_1p")], "bnll_log")
    g.op("Add", [g.op("Relu", [x], "bnll_pos"), tail], outputs=outs)


def bnll_vjp(ctx, p, ins, outs, dtops, aux, params):
    return [ctx.g.op("Mul", [dtops[0], ctx.g.op("Sigmoid", [ins[0]], "bnll_d")], "bnll_dx")], None


def bnll_numpy(p, ins, outs, dtops, mode, lrn):
    e = np.exp(np.minimum(ins[0].astype(np.float64), 50.0))  # Caffe's kBNLL_THRESHOLD
    return [(dtops[0] * (e / (e + 1.0))).astype(np.float32)]


def _exp_log_infer(kind):
    def infer(lp, shapes):
        p = lp.exp_param if kind == "Exp" else lp.log_param
        if p.base != -1 and not p.base > 0:
            raise ModelError(f"{kind.lower()}_param.base {p.base:g}: expected -1 (e) or a positive number")
        if kind == "Log" and p.base == 1:  # Caffe divides by log(base)
            raise ModelError("log_param.base 1: expected -1 (e) or a positive number other than 1")
        return dict(base=float(p.base), scale=float(p.scale), shift=float(p.shift)), [shapes[0]], []
    return infer


def exp_forward(g, p, ins, outs, params, aux=None):
    inner, outer = exp_scales(p.attrs)
    g.op("Identity", [affine(g, g.op("Exp", [affine(g, ins[0], inner, 0.0, "exp_in")], "exp"), outer, 0.0,
                             "exp_out")], outputs=outs)


def exp_vjp(ctx, p, ins, outs, dtops, aux, params):
    inner, _ = exp_scales(p.attrs)
    d = ctx.g.op("Mul", [dtops[0], outs[0]], "exp_dyy")
    return [d if inner == 1.0 else ctx.g.op("Mul", [d, ctx.g.const(inner)], "exp_dx")], None


def exp_numpy(p, ins, outs, dtops, mode, lrn):
    return [(dtops[0] * outs[0] * exp_scales(p.attrs)[0]).astype(np.float32)]


def log_forward(g, p, ins, outs, params, aux=None):
    a = p.attrs
    arg = affine(g, ins[0], a["scale"], a["shift"], "log_arg")
    if aux is not None:
        aux["log_arg"] = arg  # the backward divides by it
    g.op("Identity", [affine(g, g.op("Log", [arg], "log"), log_base_scale(a), 0.0, "log_base")], outputs=outs)


def log_vjp(ctx, p, ins, outs, dtops, aux, params):
    g, a = ctx.g, p.attrs
    return [g.op("Mul", [g.op("Div", [dtops[0], aux["log_arg"]], "log_q"), g.const(a["scale"] * log_base_scale(a))],
                 "log_dx")], None


def log_numpy(p, ins, outs, dtops, mode, lrn):
    a = p.attrs
    return [(dtops[0] * (a["scale"] * log_base_scale(a)) / (a["shift"] + a["scale"] * ins[0].astype(np.float64)))
            .astype(np.float32)]


def _activation(name, infer, forward, vjp, numpy_backward, values_read, channelwise=True):
    return LayerType(name, infer, forward, vjp, numpy_backward, values_read, field=same_field,
                     channelwise=channelwise)


TYPES = [
    _activation("ReLU", relu_infer, relu_forward, relu_vjp, relu_numpy, relu_values),
    _activation("PReLU", prelu_infer, prelu_forward, prelu_vjp, prelu_numpy, reads_bottom, channelwise=False),
    _activation("ELU", elu_infer, elu_forward, elu_vjp, elu_numpy, reads_bottom),
    _activation("Sigmoid", same_shape, _unary("Sigmoid"), sigmoid_vjp, sigmoid_numpy, reads_top),
    _activation("TanH", same_shape, _unary("Tanh"), tanh_vjp, tanh_numpy, reads_top),
    _activation("AbsVal", same_shape, _unary("Abs"), abs_vjp, abs_numpy, reads_bottom),
    _activation("Power", power_infer, power_forward, power_vjp, power_numpy, reads_bottom),
    _activation("BNLL", same_shape, bnll_forward, bnll_vjp, bnll_numpy, reads_bottom),
    _activation("Exp", _exp_log_infer("Exp"), exp_forward, exp_vjp, exp_numpy, reads_top),
    _activation("Log", _exp_log_infer("Log"), log_forward, log_vjp, log_numpy, reads_bottom),
]
