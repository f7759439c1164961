"""Forward emitters: each Caffe layer as standard ONNX operators, with Caffe semantics.

The converted model names tensors by Caffe blob: the value a blob holds after the
whole forward pass is the graph output of that name (so in-place ``relu1`` makes
``conv1`` the post-ReLU value, as pycaffe shows it). Earlier versions of a blob that
an in-place layer later overwrites are also outputs, named ``blob@layer`` after the
layer that produced them, so backward engines can read what each layer consumed.
"""
from __future__ import annotations

import json

import numpy as np

from ..onnx_graph import GraphBuilder
from .layers import plan as plan_layers

FORMAT_VERSION = "1"
LOWEST = float(np.finfo(np.float32).min)


def param_name(layer: str, i: int) -> str:
    """Initializer name of a layer's i-th Caffe blob (weights 0, bias 1, …)."""
    return f"{layer}/param{i}"


def assign_versions(plans, inputs):
    """Name every tensor version: per layer, the names of what it reads and writes.

    Returns ``(reads, writes, final)``: lists parallel to ``plans`` and the mapping
    blob -> name of its last version (the blob name itself).
    """
    last_writer = {}
    for p in plans:
        for t in p.tops:
            last_writer[t] = p.index
    current = {name: name for name in inputs}
    reads, writes = [], []
    for p in plans:
        reads.append([current[b] for b in p.bottoms])
        outs = []
        for t in p.tops:
            name = t if last_writer[t] == p.index else f"{t}@{p.name}"
            current[t] = name
            outs.append(name)
        writes.append(outs)
    return reads, writes, current


def _spatial_ones(g, channels, kernel):
    return g.const(np.ones((channels, 1) + tuple(kernel)), hint="ones_kernel")


def pool_geometry(p):
    """Explicit pads (begin, end) per spatial axis that make ONNX floor-mode pooling
    reproduce Caffe's ceil-mode output size, and the AVE divisor map."""
    (h, w), (oh, ow) = p.bottom_shapes[0][2:], p.top_shapes[0][2:]
    pads_end = []
    for size, out, k, pad, s in zip((h, w), (oh, ow), p.attrs["kernel"], p.attrs["pad"], p.attrs["stride"]):
        pads_end.append(max((out - 1) * s + k - size - pad, 0))
    return p.attrs["pad"], tuple(pads_end)


def ave_divisor(p):
    """Caffe's AVE pool_size per output position: windows clipped at size+pad (not at size)."""
    (h, w), (oh, ow) = p.bottom_shapes[0][2:], p.top_shapes[0][2:]
    (kh, kw), (ph, pw), (sh, sw) = p.attrs["kernel"], p.attrs["pad"], p.attrs["stride"]
    hs = np.arange(oh) * sh - ph
    ws = np.arange(ow) * sw - pw
    hsz = np.minimum(hs + kh, h + ph) - hs
    wsz = np.minimum(ws + kw, w + pw) - ws
    return (hsz[:, None] * wsz[None, :]).astype(np.float64)


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


def broadcast_shape(param_shape, axis, ndim):
    return tuple(param_shape) + (1,) * (ndim - axis - len(param_shape))


def emit_forward(g: GraphBuilder, p, ins, outs, params, aux=None):
    """Emit layer ``p`` reading tensors ``ins`` and writing tensors named ``outs``.

    ``params`` are the initializer names of the layer's blobs. When ``aux`` is a dict,
    intermediate tensors the backward rules need are stored in it (e.g. max-pool
    indices).
    """
    t, a = p.type, p.attrs
    x = ins[0] if ins else None
    if t in ("Convolution", "Deconvolution"):
        kw = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]), dilations=list(a["dilation"]),
                  pads=list(a["pad"]) * 2, group=a["group"])
        g.op("Conv" if t == "Convolution" else "ConvTranspose", [x] + params, outputs=outs, **kw)
    elif t == "Pooling":
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
                _, idx = g.op("MaxPool", [padded], outputs=[outs[0], g.fresh("pool_idx")], n_out=2,
                              kernel_shape=list(a["kernel"]), strides=list(a["stride"]))
                aux["indices"] = idx
            else:
                g.op("MaxPool", [padded], outputs=outs, kernel_shape=list(a["kernel"]), strides=list(a["stride"]))
        else:
            c = p.bottom_shapes[0][1]
            summed = g.op("Conv", [padded, _spatial_ones(g, c, a["kernel"])], "ave_sum",
                          strides=list(a["stride"]), group=c)
            g.op("Mul", [summed, g.const(1.0 / ave_divisor(p)[None, None])], outputs=outs)
    elif t == "LRN":
        # ORT's LRN kernel equals Caffe's formula; the explicit form is used for gradients
        # and for float64 graphs (onnx.reference's LRN differs when k != 1).
        if a["region"] == "across" and aux is None and g.dtype == np.float32:
            g.op("LRN", [x], outputs=outs, size=a["local_size"], alpha=a["alpha"], beta=a["beta"], bias=a["k"])
        else:
            scale = lrn_scale(g, p, x)
            if aux is not None:
                aux["scale"] = scale
            scale_pow = negative_power(g, scale, a["beta"], "lrn_pow")
            if aux is not None:
                aux["scale_pow"] = scale_pow  # the backward's first term reuses it
            g.op("Mul", [x, scale_pow], outputs=outs)
    elif t == "ReLU":
        if a["negative_slope"]:
            g.op("LeakyRelu", [x], outputs=outs, alpha=a["negative_slope"])
        else:
            g.op("Relu", [x], outputs=outs)
    elif t == "PReLU":
        shape = broadcast_shape(p.params[0].shape, 1, len(p.bottom_shapes[0]))
        slope = g.op("Reshape", [params[0], g.ints(shape)], "prelu_slope")
        g.op("PRelu", [x, slope], outputs=outs)
    elif t == "ELU":
        g.op("Elu", [x], outputs=outs, alpha=a["alpha"])
    elif t == "Sigmoid":
        g.op("Sigmoid", [x], outputs=outs)
    elif t == "TanH":
        g.op("Tanh", [x], outputs=outs)
    elif t == "AbsVal":
        g.op("Abs", [x], outputs=outs)
    elif t == "Power":
        y = affine(g, x, a["scale"], a["shift"], "pow")
        if a["power"] != 1.0:
            y = g.op("Pow", [y, g.const(a["power"])], "pow")
        g.op("Identity", [y], outputs=outs)
    elif t == "InnerProduct":
        flat = g.op("Flatten", [x], "ip_flat", axis=a["axis"])
        gemm_in = [flat, params[0]] + ([params[1]] if a["bias_term"] else [])
        if a["axis"] == 1:
            g.op("Gemm", gemm_in, outputs=outs, transB=0 if a["transpose"] else 1)
        else:
            y = g.op("Gemm", gemm_in, "ip_gemm", transB=0 if a["transpose"] else 1)
            g.op("Reshape", [y, g.ints([-1] + list(p.top_shapes[0][1:]))], outputs=outs)
    elif t in ("Flatten", "Reshape"):
        g.op("Reshape", [x, g.ints([-1] + list(a["shape"][1:]))], outputs=outs)
    elif t == "Softmax":
        g.op("Softmax", [x], outputs=outs, axis=a["axis"])
    elif t == "Concat":
        g.op("Concat", list(ins), outputs=outs, axis=a["axis"])
    elif t == "Eltwise":
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
    elif t in ("Split", "Dropout"):
        for o in outs:
            g.op("Identity", [x], outputs=[o])
    elif t == "BatchNorm":
        shape = broadcast_shape(p.params[0].shape, 1, len(p.bottom_shapes[0]))
        factor = 0.0 if a["scale_factor"] == 0 else 1.0 / a["scale_factor"]
        mean = g.op("Reshape", [g.op("Mul", [params[0], g.const(factor)], "bn_mean"), g.ints(shape)], "bn_mean_r")
        var = g.op("Reshape", [g.op("Mul", [params[1], g.const(factor)], "bn_var"), g.ints(shape)], "bn_var_r")
        inv = g.op("Pow", [g.op("Add", [var, g.const(a["eps"])], "bn_var_eps"), g.const(-0.5)], "bn_inv")
        if aux is not None:
            aux["inv_std"] = inv
        g.op("Mul", [g.op("Sub", [x, mean], "bn_centre"), inv], outputs=outs)
    elif t == "Scale":
        shape = broadcast_shape(p.params[0].shape, a["axis"], len(p.bottom_shapes[0]))
        gamma = g.op("Reshape", [params[0], g.ints(shape)], "scale_gamma")
        if a["bias_term"]:
            beta = g.op("Reshape", [params[1], g.ints(shape)], "scale_beta")
            g.op("Add", [g.op("Mul", [x, gamma], "scale_mul"), beta], outputs=outs)
        else:
            g.op("Mul", [x, gamma], outputs=outs)
    elif t == "Bias":
        shape = broadcast_shape(p.params[0].shape, a["axis"], len(p.bottom_shapes[0]))
        g.op("Add", [x, g.op("Reshape", [params[0], g.ints(shape)], "bias_b")], outputs=outs)
    elif t == "BNLL":
        # Caffe's stable form: max(x, 0) + log(1 + exp(-|x|))
        tail = g.op("Log", [g.op("Add", [g.op("Exp", [g.op("Neg", [g.op("Abs", [x], "bnll_abs")], "bnll_neg")],
                                                   "bnll_exp"), g.const(1.0)], "bnll_1p")], "bnll_log")
        g.op("Add", [g.op("Relu", [x], "bnll_pos"), tail], outputs=outs)
    elif t == "Exp":
        inner, outer = exp_scales(a)
        g.op("Identity", [affine(g, g.op("Exp", [affine(g, x, inner, 0.0, "exp_in")], "exp"), outer, 0.0, "exp_out")],
             outputs=outs)
    elif t == "Log":
        arg = affine(g, x, a["scale"], a["shift"], "log_arg")
        if aux is not None:
            aux["log_arg"] = arg  # the backward divides by it
        g.op("Identity", [affine(g, g.op("Log", [arg], "log"), log_base_scale(a), 0.0, "log_base")], outputs=outs)
    elif t == "Slice":
        if len(outs) == 1:
            g.op("Identity", [x], outputs=outs)
        else:
            g.op("Split", [x, g.ints(a["sizes"])], outputs=list(outs), axis=a["axis"])
    elif t == "Crop":
        axes = [i for i, (off, size, dim) in enumerate(zip(a["offsets"], p.top_shapes[0], p.bottom_shapes[0]))
                if off or size != dim]
        if not axes:
            g.op("Identity", [x], outputs=outs)
        else:
            starts = [a["offsets"][i] for i in axes]
            ends = [a["offsets"][i] + p.top_shapes[0][i] for i in axes]
            g.op("Slice", [x, g.ints(starts), g.ints(ends), g.ints(axes)], outputs=outs)
    elif t == "Silence":
        pass
    else:  # layers.plan rejects unsupported types first
        raise AssertionError(t)


def dynamic_shape(shape):
    return ["N"] + list(shape[1:])


def deploy_text(cnet) -> str:
    """The net as a V2 deploy prototxt (inputs as input/input_shape; V1 layers upgraded)."""
    from google.protobuf import text_format

    from . import schema

    net = schema.NetParameter(name=cnet.name)
    for name, shape in cnet.inputs.items():
        net.input.append(name)
        net.input_shape.add().dim.extend(shape)
    for layer in cnet.layers:
        lp = net.layer.add()
        lp.CopyFrom(layer.proto)
        del lp.blobs[:]
    return text_format.MessageToString(net)


def caffe_metadata(cnet, plans, blob_order, dtype):
    """What Net needs to rebuild the Caffe view of a converted model."""
    return {
        "caffevis_format": FORMAT_VERSION,
        "caffevis_prototxt": deploy_text(cnet),
        "caffevis_info": json.dumps({
            "name": cnet.name,
            "inputs": {k: list(v) for k, v in cnet.inputs.items()},
            "blob_order": blob_order,
            "blob_shapes": {b: list(s) for b, s in _blob_shapes(cnet, plans).items()},
            "layers": [{"name": p.name, "type": p.type, "bottoms": p.bottoms, "tops": p.tops} for p in plans],
            "source": cnet.source,
            "dtype": np.dtype(dtype).name,
        }),
    }


def _blob_shapes(cnet, plans):
    shapes = {k: tuple(v) for k, v in cnet.inputs.items()}
    for p in plans:
        for t, s in zip(p.tops, p.top_shapes):
            shapes[t] = s
    return shapes


def blob_order(cnet, plans):
    """Blobs in Caffe's ``net.blobs`` order: inputs, then tops as first produced."""
    order = list(cnet.inputs)
    for p in plans:
        for t in p.tops:
            if t not in order:
                order.append(t)
    return order


def convert(cnet, dtype=np.float32):
    """Convert a :class:`~caffevis.caffe.reader.CaffeNet` (with weights) to an ONNX model."""
    plans = plan_layers(cnet)
    reads, writes, _ = assign_versions(plans, cnet.inputs)
    g = GraphBuilder(dtype, names=[v for ws in writes for v in ws])
    for name, shape in cnet.inputs.items():
        g.add_input(name, dynamic_shape(shape))
    for p, ins, outs in zip(plans, reads, writes):
        names = [g.initializer(param_name(p.name, i), arr.astype(dtype)) for i, arr in enumerate(p.params)]
        emit_forward(g, p, ins, outs, names)
        for o, s in zip(outs, p.top_shapes):
            g.add_output(o, dynamic_shape(s))
    order = blob_order(cnet, plans)
    meta = caffe_metadata(cnet, plans, order, dtype)
    return g.model(cnet.name, meta), plans
