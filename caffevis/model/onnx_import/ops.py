"""ONNX operators -> layer plans, one function per operator.

Each function gets a :class:`Node` (the node, its constant inputs, its static shapes) and
returns ``(type, attrs, params)`` for a layer type of :mod:`caffevis.layers`, or raises
:class:`Unsupported` with the reason. Caffe types are reused where their semantics equal
ONNX's exactly (symmetric pads, floor or Caffe-equal ceil pooling, Gemm with alpha/beta
folded into the weights, BatchNormalization as a per-channel Scale, a broadcast constant
operand as Scale/Bias); operators Caffe lacks map to the ONNX types of
:mod:`caffevis.layers.onnx_ops`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx



class Unsupported(Exception):
    """This node (or this attribute variant) has no layer type."""


@dataclasses.dataclass
class Node:
    proto: onnx.NodeProto
    opset: int
    consts: dict  # input name -> ndarray (initializers and folded constants)
    shapes: dict  # tensor name -> static shape

    def attr(self, name, default=None):
        for a in self.proto.attribute:
            if a.name == name:
                v = onnx.helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    @property
    def data_inputs(self):
        return [i for i in self.proto.input if i and i not in self.consts]

    def const(self, pos, default=None):
        ins = self.proto.input
        if pos >= len(ins) or not ins[pos]:
            return default
        if ins[pos] not in self.consts:
            raise Unsupported(f"input {pos} ('{ins[pos]}') must be a constant")
        return self.consts[ins[pos]]

    def shape(self, pos=0):
        return self.shapes[self.proto.input[pos]]

    def out_shape(self, pos=0):
        return self.shapes[self.proto.output[pos]]


def _pads_2d(n, kernel, dilation, stride):
    """(begin, end) pads per spatial axis from ``pads`` or ``auto_pad``."""
    auto = n.attr("auto_pad", "NOTSET")
    h, w = n.shape()[2:]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, d, s in zip((h, w), kernel, dilation, stride):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return tuple(begin), tuple(end)
    if auto == "VALID":
        return (0, 0), (0, 0)
    pads = list(n.attr("pads", [0, 0, 0, 0]))
    return tuple(pads[:2]), tuple(pads[2:])


def _spatial_2d(n):
    if len(n.shape()) != 4:
        raise Unsupported(f"input of {len(n.shape())} axes (only 2-D spatial NCHW)")


def _transposed_pads(n, kernel, dilation, stride, output_padding):
    """ConvTranspose pads: from ``pads``, or from ``output_shape``/SAME auto_pad (the
    total split as ONNX's rule says: the larger half at the end for SAME_UPPER)."""
    auto = n.attr("auto_pad", "NOTSET")
    target = n.attr("output_shape")
    if target is None and auto not in ("SAME_UPPER", "SAME_LOWER"):
        return _pads_2d(n, kernel, dilation, stride)
    h, w = n.shape()[2:]
    target = list(target)[-2:] if target is not None else [h * stride[0], w * stride[1]]
    begin, end = [], []
    for size, k, d, s, op, t in zip((h, w), kernel, dilation, stride, output_padding, target):
        total = s * (size - 1) + op + (k - 1) * d + 1 - int(t)
        if total < 0:
            raise Unsupported(f"ConvTranspose output_shape {t} beyond the full output")
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return tuple(begin), tuple(end)


def conv(n):
    _spatial_2d(n)
    w = n.const(1)
    kernel = tuple(n.attr("kernel_shape", w.shape[2:]))
    stride = tuple(n.attr("strides", [1, 1]))
    dilation = tuple(n.attr("dilations", [1, 1]))
    group = int(n.attr("group", 1))
    bias = n.const(2)
    params = [w.astype(np.float32)] + ([bias.astype(np.float32)] if bias is not None else [])
    extra = {}
    if n.proto.op_type == "ConvTranspose":
        output_padding = tuple(int(v) for v in n.attr("output_padding", [0, 0]))
        begin, end = _transposed_pads(n, kernel, dilation, stride, output_padding)
        num_output, kind = w.shape[1] * group, "Deconvolution"
        if any(output_padding):
            extra["output_padding"] = output_padding
    else:
        begin, end = _pads_2d(n, kernel, dilation, stride)
        num_output, kind = w.shape[0], "Convolution"
    attrs = dict(num_output=int(num_output), kernel=kernel, pad=tuple(int(v) for v in begin), stride=stride,
                 dilation=dilation, group=group, bias_term=bias is not None, **extra)
    if tuple(begin) != tuple(end):
        attrs["pad_end"] = tuple(int(v) for v in end)
    return kind, attrs, params


def pool(n):
    _spatial_2d(n)
    op = n.proto.op_type
    h, w = n.shape()[2:]
    if op.startswith("Global"):
        attrs = dict(method="max" if op == "GlobalMaxPool" else "ave", kernel=(h, w), pad=(0, 0), stride=(1, 1),
                     ceil=False, global_pooling=True)
        return "Pooling", attrs, []
    kernel = tuple(n.attr("kernel_shape"))
    stride = tuple(n.attr("strides", [1, 1]))
    dilation = tuple(n.attr("dilations", [1, 1]))
    method = "max" if op == "MaxPool" else "ave"
    if method == "ave" and any(d != 1 for d in dilation):
        raise Unsupported("AveragePool dilations other than 1")
    if n.attr("storage_order", 0):
        raise Unsupported("MaxPool storage_order 1")
    begin, end = _pads_2d(n, kernel, dilation, stride)
    out = tuple(n.out_shape()[2:])
    for size, o, k, d, s, b in zip((h, w), out, kernel, dilation, stride, begin):
        # ONNX's output size (its floor/ceil rule) is the graph's; every window must hold an input value
        if not all(any(0 <= i * s - b + j * d < size for j in range(k)) for i in range(o)):
            raise Unsupported(f"a pooling window of {op} holds padding only")
    attrs = dict(method=method, kernel=kernel, pad=tuple(begin), stride=stride, ceil=bool(n.attr("ceil_mode", 0)),
                 global_pooling=False, pad_end=tuple(end), dilation=dilation,
                 exclude_pad=method == "ave" and not n.attr("count_include_pad", 0))
    return "Pooling", attrs, []


def relu(n):
    slope = float(n.attr("alpha", 0.01)) if n.proto.op_type == "LeakyRelu" else 0.0
    return "ReLU", dict(negative_slope=slope), []


def prelu(n):
    slope = n.const(1).astype(np.float32)
    c = n.shape()[1]
    if slope.size == 1:
        return "PReLU", dict(channel_shared=True), [slope.reshape(())]
    if slope.size != c or (slope.ndim >= 1 and slope.squeeze().shape != (c,)) or \
            (slope.ndim > 1 and slope.shape[-(len(n.shape()) - 1)] != c):
        raise Unsupported(f"PRelu slope of shape {slope.shape} is not per-channel")
    return "PReLU", dict(channel_shared=False), [slope.reshape(c)]


def elu(n):
    return "ELU", dict(alpha=float(n.attr("alpha", 1.0))), []


def simple(kind):
    def mapping(n):
        return kind, {}, []
    return mapping


def softmax(n):
    nd = len(n.shape())
    axis = int(n.attr("axis", -1 if n.opset >= 13 else 1)) % nd
    if n.opset < 13 and any(d != 1 for d in n.shape()[axis + 1:]):
        raise Unsupported(f"opset-{n.opset} Softmax over the flattened axes {axis}..")
    kind = "Softmax" if n.proto.op_type == "Softmax" else "LogSoftmax"
    return kind, dict(axis=axis), []


def batchnorm(n):
    if n.attr("training_mode", 0):
        raise Unsupported("BatchNormalization in training mode")
    gamma, beta, mean, var = (n.const(i).astype(np.float64) for i in range(1, 5))
    scale = gamma / np.sqrt(var + float(n.attr("epsilon", 1e-5)))
    shift = beta - mean * scale
    return "Scale", dict(axis=1, num_axes=1, bias_term=True), [scale.astype(np.float32), shift.astype(np.float32)]


def lrn(n):
    size = int(n.attr("size"))
    if size % 2 == 0:
        raise Unsupported(f"LRN size {size} (even: its window is off-centre)")
    # ONNX: x / (bias + alpha/size * sum(x^2))^beta, the window centred: Caffe's across-channel LRN
    return "LRN", dict(local_size=size, alpha=float(n.attr("alpha", 1e-4)), beta=float(n.attr("beta", 0.75)),
                       k=float(n.attr("bias", 1.0)), region="across"), []


def _const_operand(n, c, x_shape):
    """A constant operand broadcast onto ``x_shape`` as a Caffe parameter: (axis, values)."""
    nd = len(x_shape)
    c = np.asarray(c, np.float64)
    if c.ndim > nd:
        raise Unsupported(f"constant operand of shape {c.shape} has more axes than the data")
    c = c.reshape((1,) * (nd - c.ndim) + c.shape)
    if any(cd not in (1, xd) for cd, xd in zip(c.shape, x_shape)):
        raise Unsupported(f"constant of shape {c.shape} does not broadcast onto {x_shape}")
    if c.shape[0] != 1:
        raise Unsupported("a constant operand varying over the batch axis")
    varying = [i for i, d in enumerate(c.shape) if d != 1]
    first, last = (varying[0], varying[-1]) if varying else (1, 1)
    full = np.broadcast_to(c, c.shape[:first] + tuple(x_shape[first:last + 1]) + c.shape[last + 1:])
    return first, np.ascontiguousarray(full.reshape(x_shape[first:last + 1]))


def binary(n):
    """Add/Sub/Mul/Div: Eltwise for equal data shapes, Scale/Bias for a constant operand,
    the ONNX ``Broadcast`` type for data operands of different shapes."""
    op = n.proto.op_type.lower()
    a, b = n.proto.input
    out = n.out_shape()
    data = n.data_inputs
    if len(data) == 2:
        sa, sb = n.shapes[a], n.shapes[b]
        if sa == sb == out and op in ("add", "sub", "mul"):
            if op == "mul":
                return "Eltwise", dict(op="prod", coeff=[1.0, 1.0]), []
            return "Eltwise", dict(op="sum", coeff=[1.0, 1.0 if op == "add" else -1.0]), []
        return "Broadcast", dict(op=op), []
    if len(data) != 1:
        raise Unsupported("no data operand")
    x = data[0]
    if n.shapes[x] != out:
        raise Unsupported(f"a constant operand broadcasts the data {n.shapes[x]} to {out}")
    first = x == a
    c = n.consts[b if first else a]
    axis, values = _const_operand(n, c, out)
    if op == "add" or (op == "sub" and first):
        values = values if op == "add" else -values
        return "Bias", dict(axis=axis, num_axes=values.ndim, bias_term=True), [values.astype(np.float32)]
    if op == "mul" or (op == "div" and first):
        values = values if op == "mul" else 1.0 / values
        return "Scale", dict(axis=axis, num_axes=values.ndim, bias_term=False), [values.astype(np.float32)]
    raise Unsupported(f"constant {op} data (the data as the right operand)")


def gemm(n):
    if n.attr("transA", 0):
        raise Unsupported("Gemm transA=1")
    w = n.const(1).astype(np.float64) * float(n.attr("alpha", 1.0))
    if not n.attr("transB", 0):
        w = w.T
    no = w.shape[0]
    c = n.const(2)
    params = [w.astype(np.float32)]
    if c is not None:
        c = np.asarray(c, np.float64) * float(n.attr("beta", 1.0))
        if c.size not in (1, no) or (c.ndim == 2 and c.shape[0] != 1):
            raise Unsupported(f"Gemm C of shape {c.shape} (a per-output bias is supported)")
        params.append(np.broadcast_to(c.reshape(-1), (no,)).astype(np.float32))
    if len(n.shape()) != 2:
        raise Unsupported("Gemm input of more than 2 axes")
    return "InnerProduct", dict(num_output=int(no), axis=1, transpose=False, bias_term=c is not None,
                                k=int(w.shape[1])), params


def matmul(n):
    if n.proto.input[0] not in n.data_inputs or n.proto.input[1] in n.data_inputs:
        raise Unsupported("MatMul other than data x constant matrix")
    w = n.const(1)
    if w.ndim != 2 or len(n.shape()) != 2:
        raise Unsupported(f"MatMul of {len(n.shape())}-D data by a {w.ndim}-D constant (2-D x 2-D is supported)")
    return "InnerProduct", dict(num_output=int(w.shape[1]), axis=1, transpose=True, bias_term=False,
                                k=int(w.shape[0])), [w.astype(np.float32)]


def reshape(n):
    shape, out = n.shape(), n.out_shape()
    if out[:1] != shape[:1]:
        raise Unsupported(f"reshape {shape} -> {out} changes the batch axis")
    if n.proto.op_type == "Flatten" and len(out) == 2 and int(n.attr("axis", 1)) == 1:
        return "Flatten", dict(shape=tuple(out)), []
    return "Reshape", dict(shape=tuple(out)), []


def concat(n):
    shapes = [n.shapes[i] for i in n.proto.input]
    axis = int(n.attr("axis")) % len(shapes[0])
    if any(i in n.consts for i in n.proto.input):
        raise Unsupported("Concat of a constant")
    if axis == 0:
        raise Unsupported("Concat along the batch axis")
    if len(shapes) == 1:
        return "Dropout", {}, []  # a one-input Concat is a copy
    return "Concat", dict(axis=axis, sizes=[s[axis] for s in shapes]), []


def split(n):
    nd = len(n.shape())
    axis = int(n.attr("axis", 0)) % nd
    if axis == 0:
        raise Unsupported("Split along the batch axis")
    sizes = [n.shapes[o][axis] for o in n.proto.output]
    return "Slice", dict(axis=axis, sizes=sizes), []


def slice_(n):
    shape, out = n.shape(), n.out_shape()
    if n.opset < 10:
        starts, ends, axes, steps = n.attr("starts"), n.attr("ends"), n.attr("axes"), None
    else:
        starts, ends, axes, steps = n.const(1), n.const(2), n.const(3), n.const(4)
    axes = list(range(len(starts))) if axes is None else [int(a) % len(shape) for a in axes]
    steps = [1] * len(axes) if steps is None else [int(s) for s in steps]
    ranges = []
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step < 1:
            raise Unsupported(f"Slice step {step} (positive steps are supported)")
        dim = shape[axis]
        start, end = (min(max(int(v) + dim if int(v) < 0 else int(v), 0), dim) for v in (start, end))
        size = max(-(-(end - start) // step), 0)
        if size != out[axis]:
            raise Unsupported(f"Slice {shape} -> {out} differs from its starts/ends/steps on axis {axis}")
        if (start, size, step) != (0, dim, 1):
            if axis == 0:
                raise Unsupported("Slice of the batch axis")
            ranges.append((axis, start, size, step if size > 1 else 1))
    if not ranges:
        return "Dropout", {}, []  # the whole tensor: a copy
    return "SliceRange", dict(ranges=sorted(ranges)), []


def transpose(n):
    perm = [int(p) for p in n.attr("perm", list(range(len(n.shape())))[::-1])]
    if perm[0] != 0:
        raise Unsupported(f"Transpose perm {perm} moves the batch axis")
    return "Transpose", dict(perm=perm), []


def reduce_mean(n):
    nd = len(n.shape())
    axes = n.attr("axes") if n.opset < 18 else (None if len(n.proto.input) < 2 else list(n.const(1)))
    if axes is None:
        raise Unsupported("ReduceMean over every axis")
    axes = sorted(int(a) % nd for a in axes)
    if 0 in axes:
        raise Unsupported("ReduceMean over the batch axis")
    return "ReduceMean", dict(axes=axes, keepdims=bool(n.attr("keepdims", 1))), []


def clip(n):
    if n.opset < 11:
        low, high = n.attr("min", None), n.attr("max", None)
    else:
        low, high = n.const(1), n.const(2)
    low = None if low is None else float(np.asarray(low))
    high = None if high is None else float(np.asarray(high))
    return "Clip", dict(min=low, max=high), []


def hard_sigmoid(n):
    return "HardSigmoid", dict(alpha=float(n.attr("alpha", 0.2)), beta=float(n.attr("beta", 0.5))), []


def pad(n):
    mode = n.attr("mode", "constant")
    if mode != "constant":
        raise Unsupported(f"Pad mode '{mode}'")
    nd = len(n.shape())
    if n.opset < 11:
        pads, value = list(n.attr("pads")), float(n.attr("value", 0.0))
    else:
        pads = [int(v) for v in n.const(1)]
        value = float(np.asarray(n.const(2, 0.0)).reshape(-1)[0]) if n.const(2) is not None else 0.0
        axes = n.const(3)
        if axes is not None:
            full = [0] * (2 * nd)
            k = len(axes)
            for i, a in enumerate(axes):
                full[int(a) % nd], full[int(a) % nd + nd] = pads[i], pads[i + k]
            pads = full
    if any(p < 0 for p in pads) or pads[0] or pads[nd] or nd != 4 or pads[1] or pads[nd + 1]:
        raise Unsupported(f"Pad {pads} (non-negative spatial pads of a 4-D tensor are supported)")
    return "Pad2D", dict(begin=(pads[2], pads[3]), end=(pads[6], pads[7]), value=value), []


MAPPINGS = {
    "Conv": conv, "ConvTranspose": conv,
    "MaxPool": pool, "AveragePool": pool, "GlobalAveragePool": pool, "GlobalMaxPool": pool,
    "Relu": relu, "LeakyRelu": relu, "PRelu": prelu, "Elu": elu,
    "Sigmoid": simple("Sigmoid"), "Tanh": simple("TanH"), "Abs": simple("AbsVal"),
    "HardSigmoid": hard_sigmoid, "HardSwish": simple("HardSwish"), "Clip": clip,
    "Softmax": softmax, "LogSoftmax": softmax, "LRN": lrn, "BatchNormalization": batchnorm,
    "Add": binary, "Sub": binary, "Mul": binary, "Div": binary,
    "Gemm": gemm, "MatMul": matmul,
    "Flatten": reshape, "Reshape": reshape, "Squeeze": reshape, "Unsqueeze": reshape,
    "Concat": concat, "Split": split, "Slice": slice_, "Transpose": transpose,
    "ReduceMean": reduce_mean, "Pad": pad,
    "Dropout": simple("Dropout"), "Identity": simple("Dropout"),
}
