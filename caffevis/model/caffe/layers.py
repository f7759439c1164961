"""Caffe layer semantics: normalized parameters, output shapes and parameter shapes.

:func:`plan` walks a :class:`~caffevis.caffe.reader.CaffeNet` in order and returns one
:class:`LayerPlan` per layer, with every attribute the ONNX emitters and the backward
engines need, already resolved the way Caffe resolves it (``kernel_size`` vs
``kernel_h``, ``concat_dim`` vs ``axis``, ceil-mode pooling sizes, …).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ...errors import ModelError

SUPPORTED = (
    "Convolution", "Deconvolution", "Pooling", "LRN", "ReLU", "PReLU", "ELU", "Sigmoid",
    "TanH", "Power", "InnerProduct", "Flatten", "Reshape", "Softmax", "Concat", "Eltwise",
    "Split", "Dropout", "BatchNorm", "Scale", "Silence", "AbsVal", "BNLL", "Exp", "Log", "Bias",
    "Slice", "Crop",
)


@dataclasses.dataclass
class LayerPlan:
    """A layer with normalized attributes and static shapes (batch included)."""

    name: str
    type: str
    bottoms: list
    tops: list
    attrs: dict
    bottom_shapes: list
    top_shapes: list
    params: list  # np.ndarray, in Caffe's blob order (after shape checks)
    index: int = 0

    @property
    def in_place(self) -> bool:
        """The layer overwrites its bottom blob (Caffe's in-place ReLU, Dropout, BatchNorm, …)."""
        return bool(self.tops) and self.tops == self.bottoms


def _pair(values, single_h, single_w, default, field):
    """Caffe's ``kernel_size`` / ``kernel_h``+``kernel_w`` resolution for 2-D layers."""
    if single_h is not None or single_w is not None:
        if single_h is None or single_w is None:
            raise ModelError(f"{field}_h and {field}_w must be given together")
        return int(single_h), int(single_w)
    values = list(values)
    if not values:
        if default is None:
            raise ModelError(f"{field} is required")
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise ModelError(f"{field} has {len(values)} values; only 2-D is supported")


def _opt(msg, field):
    return getattr(msg, field) if msg.HasField(field) else None


def _conv_attrs(p):
    kh, kw = _pair(p.kernel_size, _opt(p, "kernel_h"), _opt(p, "kernel_w"), None, "kernel_size")
    if p.HasField("pad_h") or p.HasField("pad_w"):
        ph, pw = int(p.pad_h), int(p.pad_w)
    else:
        ph, pw = _pair(p.pad, None, None, 0, "pad")
    sh, sw = _pair(p.stride, _opt(p, "stride_h"), _opt(p, "stride_w"), 1, "stride")
    dh, dw = _pair(p.dilation, None, None, 1, "dilation")
    if not p.HasField("num_output"):
        raise ModelError("convolution_param.num_output is required")
    if p.axis != 1:
        raise ModelError("convolution_param.axis other than 1 is not supported")
    return dict(num_output=int(p.num_output), kernel=(kh, kw), pad=(ph, pw), stride=(sh, sw),
                dilation=(dh, dw), group=int(p.group), bias_term=bool(p.bias_term))


def pool_output_size(size, kernel, pad, stride, ceil=True, padded=None):
    """Caffe's pooled size: ceil (or floor) rounding, clipped so the last window starts
    inside the padded input. Caffe clips every axis when *any* axis is padded
    (``padded``; default: this axis' ``pad``)."""
    rounder = math.ceil if ceil else math.floor
    out = int(rounder((size + 2 * pad - kernel) / stride)) + 1
    if (pad if padded is None else padded) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _count(shape, start=0, end=None):
    return int(np.prod(shape[start:end], dtype=np.int64))


def _canon_axis(axis, ndim, what):
    if not -ndim <= axis < ndim:
        raise ModelError(f"{what} axis {axis} is out of range for a {ndim}-D blob")
    return axis % ndim


def _infer(t, lp, shapes):
    """Return (attrs, top_shapes, expected param shapes) for one layer."""
    s0 = shapes[0] if shapes else None
    if t in ("Convolution", "Deconvolution"):
        a = _conv_attrs(lp.convolution_param)
        n, c, h, w = s0
        (kh, kw), (ph, pw), (sh, sw), (dh, dw), g = a["kernel"], a["pad"], a["stride"], a["dilation"], a["group"]
        ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        if c % g or a["num_output"] % g:
            raise ModelError(f"group {g} does not divide channels {c} / num_output {a['num_output']}")
        if t == "Convolution":
            oh, ow = (h + 2 * ph - ekh) // sh + 1, (w + 2 * pw - ekw) // sw + 1
            wshape = (a["num_output"], c // g, kh, kw)
        else:
            oh, ow = sh * (h - 1) + ekh - 2 * ph, sw * (w - 1) + ekw - 2 * pw
            wshape = (c, a["num_output"] // g, kh, kw)
        if oh <= 0 or ow <= 0:
            raise ModelError(f"output size {oh}x{ow} from input {h}x{w} is empty")
        params = [wshape] + ([(a["num_output"],)] if a["bias_term"] else [])
        return a, [(n, a["num_output"], oh, ow)], params
    if t == "Pooling":
        p = lp.pooling_param
        n, c, h, w = s0
        if p.pool not in (0, 1):
            raise ModelError("only MAX and AVE pooling are supported (STOCHASTIC is not)")
        if p.global_pooling:
            kernel, pad, stride = (h, w), (0, 0), (1, 1)
        else:
            kernel = _pair([p.kernel_size] if p.HasField("kernel_size") else [],
                           _opt(p, "kernel_h"), _opt(p, "kernel_w"), None, "kernel_size")
            pad = (int(p.pad_h), int(p.pad_w)) if (p.HasField("pad_h") or p.HasField("pad_w")) else (int(p.pad),) * 2
            stride = _pair([p.stride], _opt(p, "stride_h"), _opt(p, "stride_w"), 1, "stride")
        ceil = p.round_mode == 0
        if any(pd >= k for pd, k in zip(pad, kernel)):
            raise ModelError(f"pad {pad} must be smaller than kernel {kernel}")
        out = tuple(pool_output_size(sz, k, pd, st, ceil, padded=any(pad))
                    for sz, k, pd, st in zip((h, w), kernel, pad, stride))
        a = dict(method="max" if p.pool == 0 else "ave", kernel=kernel, pad=pad, stride=stride,
                 ceil=ceil, global_pooling=bool(p.global_pooling))
        return a, [(n, c) + out], []
    if t == "LRN":
        p = lp.lrn_param
        a = dict(local_size=int(p.local_size), alpha=float(p.alpha), beta=float(p.beta), k=float(p.k),
                 region="across" if p.norm_region == 0 else "within")
        if a["local_size"] % 2 == 0:
            raise ModelError("LRN local_size must be odd")
        return a, [s0], []
    if t == "ReLU":
        return dict(negative_slope=float(lp.relu_param.negative_slope)), [s0], []
    if t == "PReLU":
        shared = bool(lp.prelu_param.channel_shared)
        return dict(channel_shared=shared), [s0], [() if shared else (s0[1],)]  # Caffe: a 0-axis blob
    if t == "ELU":
        return dict(alpha=float(lp.elu_param.alpha)), [s0], []
    if t in ("Sigmoid", "TanH", "Dropout", "AbsVal"):
        return {}, [s0], []
    if t == "Power":
        p = lp.power_param
        return dict(power=float(p.power), scale=float(p.scale), shift=float(p.shift)), [s0], []
    if t == "InnerProduct":
        p = lp.inner_product_param
        axis = _canon_axis(p.axis, len(s0), "inner_product_param")
        k = _count(s0, axis)
        if not p.HasField("num_output"):
            raise ModelError("inner_product_param.num_output is required")
        no = int(p.num_output)
        a = dict(num_output=no, axis=axis, transpose=bool(p.transpose), bias_term=bool(p.bias_term), k=k)
        params = [(k, no) if a["transpose"] else (no, k)] + ([(no,)] if a["bias_term"] else [])
        return a, [tuple(s0[:axis]) + (no,)], params
    if t == "Flatten":
        p = lp.flatten_param
        axis = _canon_axis(p.axis, len(s0), "flatten_param")
        end = _canon_axis(p.end_axis, len(s0), "flatten_param end_")
        shape = tuple(s0[:axis]) + (_count(s0, axis, end + 1),) + tuple(s0[end + 1:])
        return dict(shape=shape), [shape], []
    if t == "Reshape":
        p = lp.reshape_param
        nd = len(s0)
        start = _canon_axis(p.axis, nd + 1, "reshape_param") if p.axis >= 0 else p.axis + nd + 1
        end = nd if p.num_axes == -1 else start + p.num_axes
        spec = [int(d) for d in p.shape.dim]
        mid = []
        for i, d in enumerate(spec):
            mid.append(s0[start + i] if d == 0 else d)
        if mid.count(-1) > 1:
            raise ModelError("reshape_param.shape has more than one -1")
        shape = list(s0[:start]) + mid + list(s0[end:])
        if -1 in shape:
            known = _count([d for d in shape if d != -1])
            shape[shape.index(-1)] = _count(s0) // known
        if _count(shape) != _count(s0):
            raise ModelError(f"cannot reshape {tuple(s0)} to {tuple(shape)}")
        return dict(shape=tuple(shape)), [tuple(shape)], []
    if t == "Softmax":
        return dict(axis=_canon_axis(lp.softmax_param.axis, len(s0), "softmax_param")), [s0], []
    if t == "Concat":
        p = lp.concat_param
        axis = p.axis if p.HasField("axis") or not p.HasField("concat_dim") else p.concat_dim
        axis = _canon_axis(axis, len(s0), "concat_param")
        for s in shapes[1:]:
            if len(s) != len(s0) or any(a != b for i, (a, b) in enumerate(zip(s, s0)) if i != axis):
                raise ModelError(f"Concat bottoms {shapes} differ outside axis {axis}")
        out = list(s0)
        out[axis] = sum(s[axis] for s in shapes)
        return dict(axis=axis, sizes=[s[axis] for s in shapes]), [tuple(out)], []
    if t == "Eltwise":
        p = lp.eltwise_param
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
    if t == "Split":
        return {}, [s0] * len(lp.top), []
    if t == "Silence":
        return {}, [], []
    if t == "BatchNorm":
        p = lp.batch_norm_param
        if p.HasField("use_global_stats") and not p.use_global_stats:
            raise ModelError("batch_norm_param.use_global_stats: false (batch statistics) is not supported at inference")
        c = s0[1] if len(s0) > 1 else 1
        return dict(eps=float(p.eps)), [s0], [(c,), (c,), (1,)]
    if t in ("Scale", "Bias"):
        p = lp.scale_param if t == "Scale" else lp.bias_param
        if len(shapes) != 1:
            raise ModelError(f"{t} with a second bottom (the {t.lower()} taken from a blob) is not supported")
        axis = _canon_axis(p.axis, len(s0), f"{t.lower()}_param")
        if p.num_axes < -1 or (p.num_axes != -1 and axis + p.num_axes > len(s0)):
            raise ModelError(f"{t.lower()}_param.num_axes {p.num_axes} does not fit a {len(s0)}-D bottom at axis {axis}")
        end = len(s0) if p.num_axes == -1 else axis + p.num_axes
        pshape = tuple(s0[axis:end])
        bias_term = t == "Bias" or bool(p.bias_term)
        return dict(axis=axis, num_axes=end - axis, bias_term=bias_term), [s0], \
            ([pshape] if t == "Scale" else []) + ([pshape] if bias_term else [])
    if t == "BNLL":
        return {}, [s0], []
    if t in ("Exp", "Log"):
        p = lp.exp_param if t == "Exp" else lp.log_param
        if p.base != -1 and not p.base > 0:
            raise ModelError(f"{t.lower()}_param.base {p.base:g}: expected -1 (e) or a positive number")
        return dict(base=float(p.base), scale=float(p.scale), shift=float(p.shift)), [s0], []
    if t == "Slice":
        p = lp.slice_param
        if p.HasField("axis") and p.HasField("slice_dim"):
            raise ModelError("slice_param: give either axis or slice_dim, not both")
        axis = int(p.slice_dim) if p.HasField("slice_dim") else _canon_axis(p.axis, len(s0), "slice_param")
        if axis >= len(s0):
            raise ModelError(f"slice_param.slice_dim {axis} is out of range for a {len(s0)}-D blob")
        if axis == 0:
            raise ModelError("slicing the batch axis (0) is not supported: caffevis runs any batch size")
        n_tops, size = len(lp.top), s0[axis]
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
    if t == "Crop":
        p = lp.crop_param
        if len(shapes) != 2:
            raise ModelError(f"Crop needs two bottoms (the blob to crop and one giving the size); got {len(shapes)}")
        ref = shapes[1]
        if len(ref) != len(s0):
            raise ModelError(f"Crop bottoms have {len(s0)} and {len(ref)} axes; expected the same")
        axis = _canon_axis(p.axis, len(s0), "crop_param")
        given = [int(v) for v in p.offset]
        if len(given) > 1 and axis + len(given) != len(s0):
            raise ModelError(f"crop_param has {len(given)} offsets; expected 1 or {len(s0) - axis} (one per axis from {axis})")
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
    raise ModelError(f"unsupported layer type '{t}' (supported: {', '.join(SUPPORTED)})")


def _fit_params(layer, expected, plan_name):
    """Check the caffemodel blobs against the expected shapes, reshaping legacy 4-D blobs."""
    if not expected:
        return []
    blobs = layer.blobs
    if not blobs:
        raise ModelError(f"layer '{plan_name}' ({layer.type}) has no weights in the caffemodel")
    if len(blobs) != len(expected):  # Caffe: "Incompatible number of blobs"
        raise ModelError(f"layer '{plan_name}' ({layer.type}): caffemodel has {len(blobs)} blob(s), "
                         f"prototxt needs {len(expected)} with shapes {expected}")
    legacy = getattr(layer, "legacy_blobs", None) or [False] * len(blobs)
    out = []
    for i, shape in enumerate(expected):
        arr = blobs[i]
        if tuple(arr.shape) != tuple(shape):
            # only blobs stored the old way (num/channels/height/width, no `shape`) may be
            # reinterpreted, and only when the count matches (Caffe's ShapeEquals)
            if not (legacy[i] and arr.size == _count(shape)):
                raise ModelError(f"layer '{plan_name}' ({layer.type}) blob {i}: caffemodel shape "
                                 f"{tuple(arr.shape)} does not fit the prototxt's {tuple(shape)}")
            arr = arr.reshape(shape)
        # float64 blobs stay float64 (numerical checks); caffemodels give float32
        out.append(np.array(arr, dtype=np.float64 if arr.dtype == np.float64 else np.float32, order="C"))
    return out


def plan(cnet, require_weights=True, batch=None):
    """Resolve every layer of ``cnet``: attributes, shapes, parameters (checked)."""
    shapes = {name: tuple(s) for name, s in cnet.inputs.items()}
    if batch is not None:
        shapes = {k: (batch,) + v[1:] for k, v in shapes.items()}
    plans = []
    for idx, layer in enumerate(cnet.layers):
        missing = [b for b in layer.bottoms if b not in shapes]
        if missing:
            raise ModelError(f"layer '{layer.name}' ({layer.type}): bottom blob '{missing[0]}' is not produced by any earlier layer")
        bshapes = [shapes[b] for b in layer.bottoms]
        if not bshapes and layer.type not in ("Silence",):
            raise ModelError(f"layer '{layer.name}' ({layer.type}) has no bottom blob")
        try:
            attrs, tshapes, pshapes = _infer(layer.type, layer.proto, bshapes)
        except ModelError as err:
            raise ModelError(f"layer '{layer.name}' ({layer.type}): {err}") from None
        if layer.type != "Silence" and len(tshapes) != len(layer.tops):
            raise ModelError(f"layer '{layer.name}' ({layer.type}) has {len(layer.tops)} tops, expected {len(tshapes)}")
        params = _fit_params(layer, pshapes, layer.name) if (require_weights or layer.blobs) else \
            [np.zeros(s, np.float32) for s in pshapes]
        if layer.type == "BatchNorm":
            attrs["scale_factor"] = float(params[2].ravel()[0])
        plans.append(LayerPlan(layer.name, layer.type, list(layer.bottoms), list(layer.tops), attrs,
                               bshapes, [tuple(s) for s in tshapes], params, idx))
        for top, s in zip(layer.tops, tshapes):
            shapes[top] = tuple(s)
    return plans
