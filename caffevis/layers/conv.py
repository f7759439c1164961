"""Convolution and Deconvolution (2-D, grouped, dilated), with the ONNX attributes Caffe
lacks: an end pad other than the begin pad (``pad_end``; asymmetric and SAME pads) and
ConvTranspose's ``output_padding``."""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from . import field as rf
from . import numpy_ops as ops
from .base import LayerType, opt, pair


# -- parameters and shapes -------------------------------------------------------------
def conv_attrs(p):
    """Resolved ``convolution_param``: kernel, pad, stride, dilation as (h, w) pairs."""
    kh, kw = pair(p.kernel_size, opt(p, "kernel_h"), opt(p, "kernel_w"), None, "kernel_size")
    if p.HasField("pad_h") or p.HasField("pad_w"):
        ph, pw = int(p.pad_h), int(p.pad_w)
    else:
        ph, pw = pair(p.pad, None, None, 0, "pad", minimum=0)
    sh, sw = pair(p.stride, opt(p, "stride_h"), opt(p, "stride_w"), 1, "stride")
    dh, dw = pair(p.dilation, None, None, 1, "dilation")
    if not p.HasField("num_output"):
        raise ModelError("convolution_param.num_output is required")
    if p.num_output < 1:
        raise ModelError(f"convolution_param.num_output {p.num_output} must be at least 1")
    if p.group < 1:
        raise ModelError(f"convolution_param.group {p.group} must be at least 1")
    if p.axis != 1:
        raise ModelError("convolution_param.axis other than 1 is not supported")
    return dict(num_output=int(p.num_output), kernel=(kh, kw), pad=(ph, pw), stride=(sh, sw),
                dilation=(dh, dw), group=int(p.group), bias_term=bool(p.bias_term))


def _infer(kind):
    def infer(lp, shapes):
        a = conv_attrs(lp.convolution_param)
        n, c, h, w = shapes[0]
        (kh, kw), (ph, pw), (sh, sw), (dh, dw), g = a["kernel"], a["pad"], a["stride"], a["dilation"], a["group"]
        ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        if c % g or a["num_output"] % g:
            raise ModelError(f"group {g} does not divide channels {c} / num_output {a['num_output']}")
        if kind == "Convolution":
            if ekh > h + 2 * ph or ekw > w + 2 * pw:
                raise ModelError(f"kernel {ekh}x{ekw} (dilated) is larger than the padded input "
                                 f"{h + 2 * ph}x{w + 2 * pw}")
            oh, ow = (h + 2 * ph - ekh) // sh + 1, (w + 2 * pw - ekw) // sw + 1
            wshape = (a["num_output"], c // g, kh, kw)
        else:
            oh, ow = sh * (h - 1) + ekh - 2 * ph, sw * (w - 1) + ekw - 2 * pw
            wshape = (c, a["num_output"] // g, kh, kw)
        if oh <= 0 or ow <= 0:
            raise ModelError(f"output size {oh}x{ow} from input {h}x{w} is empty")
        params = [wshape] + ([(a["num_output"],)] if a["bias_term"] else [])
        return a, [(n, a["num_output"], oh, ow)], params
    return infer


# -- ONNX forward ------------------------------------------------------------------------
def pad_end(a):
    """The (bottom, right) pads: Caffe's are its (top, left) ones; ONNX's may differ."""
    return tuple(a.get("pad_end", a["pad"]))


def _asymmetric(a):
    return pad_end(a) != tuple(a["pad"])


def _conv_kwargs(a):
    return dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]), dilations=list(a["dilation"]),
                pads=list(a["pad"]) + list(pad_end(a)), group=a["group"])


def forward(g, p, ins, outs, params, aux=None):
    kw = _conv_kwargs(p.attrs)
    if any(p.attrs.get("output_padding", (0, 0))):  # ONNX ConvTranspose: rows/cols appended at the end
        kw["output_padding"] = list(p.attrs["output_padding"])
    g.op("Conv" if p.type == "Convolution" else "ConvTranspose", [ins[0]] + params, outputs=outs, **kw)


# -- gradient graph ----------------------------------------------------------------------
def _weight_grad(g, inp, dout, a, transposed):
    """dW by a convolution of the input with the output diff, batch as channels."""
    (sh, sw), (dh, dw), (kh, kw), groups = a["stride"], a["dilation"], a["kernel"], a["group"]
    if transposed:  # ConvTranspose: the roles of input and output swap
        inp, dout = dout, inp
    xs = _equal_split(g, inp, groups) if groups > 1 else [inp]
    ds = _equal_split(g, dout, groups) if groups > 1 else [dout]
    parts = []
    for x, d in zip(xs, ds):
        xt = g.op("Transpose", [x], "wg_xt", perm=[1, 0, 2, 3])
        dt = g.op("Transpose", [d], "wg_dt", perm=[1, 0, 2, 3])
        r = g.op("Conv", [xt, dt], "wg_conv", pads=list(a["pad"]) + list(pad_end(a)), strides=[dh, dw],
                 dilations=[sh, sw])
        r = g.op("Slice", [r, g.ints([0, 0]), g.ints([kh, kw]), g.ints([2, 3])], "wg_crop")
        parts.append(g.op("Transpose", [r], "wg_w", perm=[1, 0, 2, 3]))
    return parts[0] if groups == 1 else g.op("Concat", parts, "wg_cat", axis=0)


def _equal_split(g, x, n):
    """Split channels into ``n`` equal groups (opset 17 Split: sizes implied by outputs)."""
    return g.op("Split", [x], "group_split", n_out=n, axis=1)


def _flipped_filters(g, w, shape, groups):
    """(O, C/g, kh, kw) conv filters as (C, O/g, kh, kw), spatially flipped (the adjoint's)."""
    o, cg, kh, kw = shape
    w5 = g.op("Reshape", [w, g.ints([groups, o // groups, cg, kh, kw])], "flip_w5")
    wt = g.op("Transpose", [w5], "flip_wt", perm=[0, 2, 1, 3, 4])
    w4 = g.op("Reshape", [wt, g.ints([cg * groups, o // groups, kh, kw])], "flip_w4")
    big = np.iinfo(np.int64).max
    return g.op("Slice", [w4, g.ints([-1, -1]), g.ints([-big, -big]), g.ints([2, 3]), g.ints([-1, -1])], "flip_w")


def _strided_input_grad(g, dy, w, shape, a, in_hw, out_hw):
    """Input gradient of a stride-s convolution as a stride-1 one (faster in ORT than the
    strided ConvTranspose): the filters, zero-padded to a multiple of s, are folded
    space-to-depth, a "full" convolution with the flipped folded filters gives the gradient
    of the folded input, and a one-hot transposed convolution unfolds it."""
    s = a["stride"][0]
    o, c, kh, kw = shape
    kh2, kw2 = -(-kh // s), -(-kw // s)  # folded kernel size
    wpad = g.op("Pad", [w, g.ints([0, 0, 0, 0, 0, 0, kh2 * s - kh, kw2 * s - kw])], "s2d_wpad")
    w6 = g.op("Reshape", [wpad, g.ints([o, c, kh2, s, kw2, s])], "s2d_w6")
    wt = g.op("Transpose", [w6], "s2d_wt", perm=[0, 1, 3, 5, 2, 4])
    wf = g.op("Reshape", [wt, g.ints([o, c * s * s, kh2, kw2])], "s2d_w")
    folded = g.op("Conv", [dy, _flipped_filters(g, wf, (o, c * s * s, kh2, kw2), 1)], "s2d_dx",
                  kernel_shape=[kh2, kw2], pads=[kh2 - 1, kw2 - 1, kh2 - 1, kw2 - 1])
    # Unfold (the inverse of the space-to-depth fold) as a transposed convolution with one-hot
    # s x s filters, one group per input channel: faster in ORT than DepthToSpace, and its
    # pads crop to the input in the same pass. Rows/cols beyond the last window's reach get
    # no gradient: output_padding (< s) appends them.
    (h, w_), (oh, ow), (ph, pw) = in_hw, out_hw, a["pad"]
    cov_h, cov_w = s * (oh + kh2 - 1), s * (ow + kw2 - 1)
    tail_h, tail_w = max(ph + h - cov_h, 0), max(pw + w_ - cov_w, 0)
    one_hot = np.eye(s * s, dtype=g.dtype).reshape(s * s, 1, s, s)
    return g.op("ConvTranspose", [folded, g.const(np.tile(one_hot, (c, 1, 1, 1)), hint="s2d_unfold_w")],
                "s2d_unfold", kernel_shape=[s, s], strides=[s, s], group=c,
                pads=[ph, pw, cov_h + tail_h - ph - h, cov_w + tail_w - pw - w_],
                output_padding=[tail_h, tail_w])


def vjp(ctx, p, ins, outs, dtops, aux, params):
    g, a, dy = ctx.g, p.attrs, dtops[0]
    h, w = p.bottom_shapes[0][2:]
    full_pad = [d * (k - 1) - pd for d, k, pd in zip(a["dilation"] * 2, a["kernel"] * 2,
                                                         tuple(a["pad"]) + pad_end(a))]
    if p.type == "Convolution" and a["stride"] == (1, 1) and min(full_pad) >= 0:
        # stride 1: a plain convolution with the flipped, transposed filters ("full" padding);
        # ORT's Conv kernels are faster than its ConvTranspose
        dx = g.op("Conv", [dy, _flipped_filters(g, params[0], p.params[0].shape, a["group"])], "conv_dx",
                  kernel_shape=list(a["kernel"]), dilations=list(a["dilation"]), pads=full_pad,
                  group=a["group"])
    elif (p.type == "Convolution" and a["dilation"] == (1, 1) and a["group"] == 1 and a["stride"][0] == a["stride"][1]
          and not _asymmetric(a)):
        dx = _strided_input_grad(g, dy, params[0], p.params[0].shape, a, (h, w), p.top_shapes[0][2:])
    elif p.type == "Convolution":
        ext = [d * (k - 1) + 1 for d, k in zip(a["dilation"], a["kernel"])]
        rem = [(sz + pb + pe - e) % s for sz, pb, pe, e, s in zip((h, w), a["pad"], pad_end(a), ext, a["stride"])]
        dx = g.op("ConvTranspose", [dy, params[0]], "conv_dx", output_padding=rem, **_conv_kwargs(a))
    else:
        dx = g.op("Conv", [dy, params[0]], "deconv_dx", **_conv_kwargs(a))
    dparams = None
    if ctx.want_params:
        dparams = [_weight_grad(g, ins[0], dy, a, p.type == "Deconvolution")]
        if a["bias_term"]:
            dparams.append(g.op("ReduceSum", [dy, g.ints([0, 2, 3])], "conv_db", keepdims=0))
    return [dx], dparams


# -- NumPy engine ------------------------------------------------------------------------
def numpy_backward(p, ins, outs, dtops, mode, lrn):
    a, w, dy = p.attrs, p.params[0], dtops[0]
    (pt, pl), (pb, pr) = a["pad"], pad_end(a)
    if p.type == "Convolution":
        if not _asymmetric(a):
            return [ops.conv2d_transpose(dy, w, a["stride"], a["pad"], a["dilation"], a["group"], ins[0].shape[2:])]
        # the gradient of the explicitly padded input, cropped
        h, w_ = ins[0].shape[2:]
        dx = ops.conv2d_transpose(dy, w, a["stride"], (0, 0), a["dilation"], a["group"], (h + pt + pb, w_ + pl + pr))
        return [np.ascontiguousarray(dx[:, :, pt:pt + h, pl:pl + w_])]
    # the transpose of a transposed convolution is the convolution with the same filters
    if _asymmetric(a):
        dy = np.pad(dy, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        return [ops.conv2d(dy, w, a["stride"], (0, 0), a["dilation"], a["group"])]
    return [ops.conv2d(dy, w, a["stride"], a["pad"], a["dilation"], a["group"])]


# -- receptive fields --------------------------------------------------------------------
def field(p, top, bottoms, top_shape, hw):
    a, b = p.attrs, bottoms[0]
    extent = rf.spatial_extent(p.bottom_shapes[0])
    if p.type == "Convolution":
        f = rf.spatial(b, a["kernel"], a["stride"], a["pad"], a["dilation"])
    else:
        # Output unit i gets bottom units j with s*j - p <= i <= s*j - p + k_eff - 1:
        # conservatively stride 1/s, reaching (k_eff - 1 - p)/s before and p/s after.
        k = (np.asarray(a["kernel"], np.float64) - 1) * np.asarray(a["dilation"], np.float64)
        s = np.asarray(a["stride"], np.float64)
        pad = np.asarray(a["pad"], np.float64)
        f = rf.BlobField(b.size + b.stride * k / s, b.stride / s, b.offset + b.stride * (pad - k) / s, hw)
    return rf.mix_groups(f, a["group"], int(top_shape[1]), extent)


TYPES = [LayerType(kind, _infer(kind), forward, vjp, numpy_backward, field=field, ranks=(4,))
         for kind in ("Convolution", "Deconvolution")]
