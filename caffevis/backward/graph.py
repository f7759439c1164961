"""Exported gradient graphs: backprop, deconv and guided backprop as ONNX models.

From a converted net and a start blob, :func:`build_gradient_model` writes ONE ONNX model
made of standard operators only: it recomputes the forward pass of the layers below the
start point and then applies each layer's vector-Jacobian product in reverse, so the
same ORT session types (CUDA included) run it. Inputs: the net input and a seed diff at
the start blob (or, for a seed in one channel, that channel's diff and its index: the
layer producing the blob then computes that channel only); outputs: the diff at the
input, the diff of every blob below the seed, and (optionally) the parameter gradients.

Caffe semantics kept on purpose:

* max pooling routes each top diff to its forward argmax and *adds* where overlapping
  windows share an argmax (MaxPool indices + ScatterElements(reduction='add'));
* the seed at a blob written in place (``conv5`` by ``relu5``) is applied to the blob's
  final value (``start='last'``, Caffe's backward from that blob) or to the output of the
  layer named like the blob (``start='layer'``, as the DeepVis viewer and optimizer);
* the ReLU rule selects backprop (forward mask), deconv (``max(diff, 0)``) or guided
  (both); LRN uses its exact derivative or, outside backprop, passes the signal
  (``lrn='identity'``, the Z&F paper).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import onnx

from ..model.caffe.to_onnx import (assign_versions, ave_divisor, channel_window_mean, emit_forward, exp_scales,
                            log_base_scale, param_name, pool_geometry, spatial_window_mean)
from ..errors import InputError
from ..io import save_onnx
from ..model.onnx_graph import GraphBuilder
from ..model.runtime import make_session

MODES = ("backprop", "deconv", "guided")
LRN_RULES = ("derivative", "identity")
STARTS = ("last", "layer")
SEED = "seed"
SEED_CHANNEL = "seed_channel"
CACHE_MAX_WEIGHT_BYTES = 64 << 20
LABELS = "labels"


def input_diff_name(name):
    return f"diff:{name}"


def param_grad_name(layer, i):
    return f"grad:{param_name(layer, i)}"


def check_backward_args(mode, lrn, start):
    """One-line errors for the three rule choices shared by both backward engines."""
    for name, value, allowed in (("mode", mode, MODES), ("lrn", lrn, LRN_RULES), ("start", start, STARTS)):
        if value not in allowed:
            raise InputError(f"{name} '{value}': expected one of {', '.join(allowed)}")


# -- seeds ---------------------------------------------------------------------------
def unit_seed(shape, channel, y=None, x=None, dtype=np.float32):
    """A diff with 1.0 at one unit in every image (spatial centre by default for conv blobs).

    ``shape`` includes the batch; ``channel`` (and ``y``/``x``) may be per-image arrays.
    """
    seed = np.zeros(shape, dtype)
    n = shape[0]
    ch = np.broadcast_to(np.asarray(channel), (n,))
    if len(shape) == 2:
        seed[np.arange(n), ch] = 1.0
        return seed
    ys = np.broadcast_to(np.asarray(shape[2] // 2 if y is None else y), (n,))
    xs = np.broadcast_to(np.asarray(shape[3] // 2 if x is None else x), (n,)) if len(shape) > 3 else None
    if xs is None:
        seed[np.arange(n), ch, ys] = 1.0
    else:
        seed[np.arange(n), ch, ys, xs] = 1.0
    return seed


def channel_map_seed(value, channel):
    """The channel's own activation (map or scalar), zeros elsewhere: the viewer's seed."""
    seed = np.zeros_like(value)
    seed[:, channel] = value[:, channel]
    return seed


# -- graph construction ------------------------------------------------------------------
class _Ctx:
    def __init__(self, g, mode, lrn, want_params, masked_at_pool=None):
        self.g, self.mode, self.lrn, self.want_params = g, mode, lrn, want_params
        # max pool name -> name of the ReLU below it whose mask the pool applies (see _vjp_pool)
        self.masked_at_pool = masked_at_pool or {}
        self.premasked = set(self.masked_at_pool.values())


def resolve_start(plans, input_name, blob, start):
    """Index of the layer whose output receives the seed, and that tensor version's name."""
    reads, writes, final = assign_versions(plans, [input_name])
    if blob == input_name:
        return -1, input_name
    writers = [p.index for p in plans if blob in p.tops]
    if not writers:
        names = [input_name] + [t for p in plans for t in p.tops]
        raise InputError(f"unknown blob '{blob}' (blobs: {', '.join(dict.fromkeys(names))})")
    if start == "last":
        idx = writers[-1]
    else:
        named = [i for i in writers if plans[i].name == blob]
        # Caffe's backward(start=name) begins at the layer of that name; nets whose layer
        # names differ from blob names start at the blob's producing (non-in-place) layer.
        idx = named[0] if named else writers[0]
    return idx, writes[idx][plans[idx].tops.index(blob)]


def build_gradient_model(net_or_plans, blob, mode="backprop", lrn="derivative", start="last",
                         params=False, params_as_inputs=False, loss=None, dtype=np.float32,
                         input_name="data", input_shape=None, blob_diffs=True, seed_channel=False):
    """Build the backward ONNX model for seeds at ``blob``; returns (model, output names).

    ``seed_channel=True`` builds the graph for a seed that is zero outside one channel (the
    seeds of the viewer, the optimizer and max patches): an int64 input ``seed_channel``
    names it, the seed input holds that channel alone, and the layer producing ``blob``
    computes only that channel (see :func:`channel_seed_supported`); so does ``blob``'s own
    diff output.

    ``blob_diffs=False`` leaves the per-blob diffs out of the outputs (only the input diff,
    and parameter gradients where asked): ORT then reuses their buffers, several times
    faster on wide nets.

    ``loss='softmax'`` replaces the seed input by integer ``labels`` and seeds the blob
    with Caffe's SoftmaxWithLoss gradient ``(softmax(z) - onehot) / N`` (for training);
    the loss and the blob value are then outputs too.
    """
    check_backward_args(mode, lrn, start)
    if hasattr(net_or_plans, "layers"):
        plans, input_name, input_shape = net_or_plans.layers, net_or_plans.input_name, net_or_plans.input_shape
    else:
        plans = net_or_plans
    reads, writes, _ = assign_versions(plans, [input_name])
    start_idx, target = resolve_start(plans, input_name, blob, start)

    # Layers on a path from the input to the seeded tensor.
    needed, on_path = {target}, []
    for idx in range(start_idx, -1, -1):
        if any(w in needed for w in writes[idx]):
            on_path.append(idx)
            needed.update(reads[idx])
    on_path.reverse()

    g = GraphBuilder(dtype, names=[v for ws in writes for v in ws])
    g.add_input(input_name, ["N"] + list(input_shape[1:]))
    restricted = {}
    if seed_channel:
        if params or loss:
            raise InputError("seed_channel graphs take a seed diff and give diffs only (no params or loss)")
        if not channel_seed_supported(plans, blob, start):
            raise InputError(f"blob '{blob}': a one-channel seed graph needs a Convolution or InnerProduct "
                             "producing it, followed only by in-place channelwise layers")
        restricted = _restrict_to_seed_channel(g, plans, blob, start_idx)
    version_blob = {input_name: input_name}
    pnames, aux = {}, {}
    for idx in on_path:
        p, names = restricted.get(idx, (plans[idx], None))
        if names is None:
            names = []
            for i, arr in enumerate(p.params):
                name = param_name(p.name, i)
                g.initializer(name, arr.astype(dtype))
                if params_as_inputs:
                    g.inputs.append(onnx.helper.make_tensor_value_info(
                        name, onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(arr.shape)))
                names.append(name)
        pnames[idx] = names
        aux[idx] = {}
        emit_forward(g, p, reads[idx], writes[idx], names, aux=aux[idx])
        for t, v in zip(p.tops, writes[idx]):
            version_blob[v] = t

    start_plan = restricted.get(start_idx, (plans[start_idx], None))[0] if start_idx >= 0 else None
    target_shape = start_plan.top_shapes[start_plan.tops.index(blob)] if start_plan else tuple(input_shape)
    outputs = []
    if loss == "softmax":
        g.add_input(LABELS, ["N"], np.int64)
        seed = _softmax_loss_seed(g, target, target_shape)
        outputs += ["loss", "output"]
        g.op("Identity", [target], outputs=["output"])
    elif loss is None:
        seed = g.add_input(SEED, ["N"] + list(target_shape[1:]))
    else:
        raise InputError(f"unknown loss '{loss}' (supported: softmax)")

    # (deconv's ReLU rule, max(diff, 0), does not commute with the pool's scatter-add)
    masked_at_pool = _relus_masked_at_pools(plans, reads, writes, on_path) if mode != "deconv" else None
    ctx = _Ctx(g, mode, lrn, params, masked_at_pool)
    diffs = {target: seed}
    grads = {}
    for idx in reversed(on_path):
        p = restricted.get(idx, (plans[idx], None))[0]
        dtops = [diffs.get(w) for w in writes[idx]]
        if all(d is None for d in dtops):
            continue
        dins, dparams = VJP[p.type](ctx, p, reads[idx], writes[idx], dtops, aux[idx], pnames[idx])
        for name, d in zip(reads[idx], dins):
            if d is None:
                continue
            diffs[name] = d if name not in diffs else g.op("Add", [diffs[name], d], "acc")
        if params:
            for i, d in enumerate(dparams or []):
                if d is not None:
                    grads[(p.name, i)] = d

    # The input diff (zeros when the seed does not reach the input).
    dx = diffs.get(input_name) or g.op("Mul", [input_name, g.const(0.0)], "zero_input")
    out_in = input_diff_name(input_name)
    g.op("Identity", [dx], outputs=[out_in])
    outputs.append(out_in)
    # Each blob's diff as Caffe leaves it: in-place layers share one diff buffer, so it is
    # the diff of the blob's earliest version that received one.
    seen = {input_name} if blob_diffs else set(version_blob.values())
    for idx in on_path:
        for v in writes[idx]:
            b = version_blob[v]
            if b in seen or v not in diffs:
                continue
            seen.add(b)
            g.op("Identity", [diffs[v]], outputs=[input_diff_name(b)])
            outputs.append(input_diff_name(b))
    for (layer, i), d in grads.items():
        g.op("Identity", [d], outputs=[param_grad_name(layer, i)])
        outputs.append(param_grad_name(layer, i))
    shapes = _output_shapes(plans, input_name, input_shape, target_shape, outputs)
    if restricted:  # the seeded blob's diff holds its one channel
        shapes[input_diff_name(blob)] = ["N"] + list(target_shape[1:])
    for name in outputs:
        g.add_output(name, shapes.get(name))
    meta = {"caffevis_gradient": f"blob={blob} mode={mode} lrn={lrn} start={start} loss={loss}"}
    return g.model(f"grad_{blob}", meta), outputs


def _relus_masked_at_pools(plans, reads, writes, on_path):
    """Max pools whose input is a slope-0 ReLU's output read by nothing else: pool name ->
    ReLU name.

    Every diff such a pool routes lands on its window's argmax p, and X[p] > 0 exactly when
    the window's max Y > 0; so the ReLU's mask can be applied to the pooled diff instead (the
    same products, at a quarter of the size for 3x3/2 pools). The ReLU then passes its diff on.
    """
    producer = {v: i for i in on_path for v in writes[i]}
    readers = {}
    for i in on_path:
        for v in reads[i]:
            readers.setdefault(v, set()).add(i)
    found = {}
    for i in on_path:
        p = plans[i]
        if p.type != "Pooling" or p.attrs["method"] != "max":
            continue
        r = producer.get(reads[i][0])
        # in place only: then the blob's reported diff is the ReLU's input diff, masked either way
        if r is not None and plans[r].type == "ReLU" and plans[r].in_place and not plans[r].attrs["negative_slope"] \
                and readers[reads[i][0]] == {i}:
            found[p.name] = plans[r].name
    return found


def seeded_channel(diff):
    """The one channel (axis 1) where ``diff`` is nonzero, or None (several, none, or 1 channel)."""
    if diff.ndim < 2 or diff.shape[1] < 2:
        return None
    used = np.flatnonzero(diff.any(axis=(0,) + tuple(range(2, diff.ndim))))
    return int(used[0]) if len(used) == 1 else None


# Layers that act on each channel alone: a one-channel seed stays in its channel through them.
CHANNELWISE = {"ReLU", "Sigmoid", "TanH", "AbsVal", "Power", "ELU", "BNLL", "Exp", "Log", "Dropout"}


def channel_seed_supported(plans, blob, start="last", input_name="data"):
    """Whether a one-channel seed graph exists for ``blob``: a Convolution or InnerProduct
    (on the channel axis) produces it, and the layers after it up to the seed point are
    in-place channelwise ones."""
    try:
        start_idx, _ = resolve_start(plans, input_name, blob, start)
    except InputError:
        return False
    chain = _seed_chain(plans, blob, start_idx)
    if not chain:
        return False
    producer = plans[chain[0]]
    if producer.in_place or producer.type not in ("Convolution", "InnerProduct"):
        return False
    if producer.type == "InnerProduct" and producer.attrs["axis"] != 1:
        return False
    return all(plans[i].in_place and plans[i].type in CHANNELWISE and not plans[i].params
               for i in chain[1:])


def _seed_chain(plans, blob, start_idx):
    """Indices of the layers writing ``blob`` up to the seed point: its producer, then in-place ones."""
    return [i for i in range(start_idx + 1) if blob in plans[i].tops]


def _restrict_to_seed_channel(g, plans, blob, start_idx):
    """The layers writing ``blob`` rewritten for one output channel, chosen at run time.

    The producer's weights (grouped convolution filters spread to full input width, so one
    filter is a group-1 convolution) become initializers gathered by the ``seed_channel``
    input; the layers after it see one channel. Returns idx -> (plan, param names).
    """
    channel = g.add_input(SEED_CHANNEL, [1], np.int64)
    chain = _seed_chain(plans, blob, start_idx)
    producer = plans[chain[0]]
    a = producer.attrs
    weight = producer.params[0]
    if producer.type == "Convolution" and a["group"] > 1:
        o, cg = weight.shape[:2]
        full = np.zeros((o, cg * a["group"]) + weight.shape[2:], weight.dtype)
        for gi in range(a["group"]):
            rows = slice(gi * (o // a["group"]), (gi + 1) * (o // a["group"]))
            full[rows, gi * cg:(gi + 1) * cg] = weight[rows]
        weight = full
    out_axis = 1 if producer.type == "InnerProduct" and a["transpose"] else 0
    names = [g.op("Gather", [g.initializer(param_name(producer.name, 0), weight.astype(g.dtype)), channel],
                  "seed_channel_w", axis=out_axis)]
    shapes = [weight.shape[:out_axis] + (1,) + weight.shape[out_axis + 1:]]
    if len(producer.params) > 1:
        names.append(g.op("Gather", [g.initializer(param_name(producer.name, 1), producer.params[1].astype(g.dtype)),
                                     channel], "seed_channel_b", axis=0))
        shapes.append((1,))

    def one(shape):
        return tuple(shape[:1]) + (1,) + tuple(shape[2:])

    restricted = {chain[0]: (dataclasses.replace(
        producer, attrs=dict(a, num_output=1, **({"group": 1} if "group" in a else {})),
        top_shapes=[one(producer.top_shapes[0])], params=[np.empty(s, np.float32) for s in shapes]), names)}
    for i in chain[1:]:  # channelwise layers without parameters
        p = plans[i]
        restricted[i] = (dataclasses.replace(p, bottom_shapes=[one(p.bottom_shapes[0])],
                                             top_shapes=[one(p.top_shapes[0])]), [])
    return restricted


def _output_shapes(plans, input_name, input_shape, target_shape, outputs):
    """Declared output shapes (batch symbolic) so exported files pass onnx.checker."""
    blob_shapes = {input_name: tuple(input_shape)}
    for p in plans:
        blob_shapes.update(zip(p.tops, p.top_shapes))
    shapes = {"loss": [], "output": ["N"] + list(target_shape[1:])}
    for name in outputs:
        if name.startswith("diff:"):
            shapes[name] = ["N"] + list(blob_shapes[name[5:]][1:])
        elif name.startswith("grad:"):
            layer, i = name[5:].rsplit("/param", 1)
            shapes[name] = list(next(p for p in plans if p.name == layer).params[int(i)].shape)
    return shapes


def _softmax_loss_seed(g, z, shape):
    flat = g.op("Flatten", [z], "loss_flat", axis=1)
    k = int(np.prod(shape[1:]))
    prob = g.op("Softmax", [flat], "loss_prob", axis=1)
    onehot = g.op("OneHot", [g.op("Reshape", [LABELS, g.ints([-1])], "labels_flat"),
                             g.const(np.array(k), dtype=np.int64, hint="depth"),
                             g.const([0.0, 1.0])], "onehot", axis=-1)
    n = g.op("Cast", [g.op("Shape", [z], "n_shape", start=0, end=1)], "n_float", to=onnx.helper.np_dtype_to_tensor_dtype(g.dtype))
    logp = g.op("LogSoftmax", [flat], "loss_logp", axis=1)
    nll = g.op("Neg", [g.op("ReduceSum", [g.op("Mul", [onehot, logp], "nll_terms"), g.ints([1])], "nll", keepdims=0)])
    g.op("ReduceMean", [nll], outputs=["loss"], keepdims=0)
    seed = g.op("Div", [g.op("Sub", [prob, onehot], "loss_diff"), n], "loss_seed")
    return g.op("Reshape", [seed, g.op("Shape", [z], "z_shape")], "loss_seed_r")


# -- vector-Jacobian products, one per Caffe layer type -------------------------------
def _mask(g, cond):
    return g.op("Cast", [cond], "mask", to=onnx.helper.np_dtype_to_tensor_dtype(g.dtype))


def _relu_rule(ctx, dy, x, slope=0.0):
    g = ctx.g
    if ctx.mode == "deconv":
        return g.op("Relu", [dy], "deconv_relu")
    positive = _mask(g, g.op("Greater", [x, g.const(0.0)], "pos"))
    if ctx.mode == "guided":
        return g.op("Mul", [g.op("Relu", [dy], "guided_relu"), positive], "guided")
    if slope:
        factor = g.op("Add", [g.op("Mul", [positive, g.const(1.0 - slope)], "leak"), g.const(slope)], "leak_f")
        return g.op("Mul", [dy, factor], "relu_grad")
    return g.op("Mul", [dy, positive], "relu_grad")


def _conv_weight_grad(g, inp, dout, a, transposed):
    """dW by a convolution of the input with the output diff, batch as channels."""
    (ph, pw), (sh, sw), (dh, dw), (kh, kw), groups = a["pad"], a["stride"], a["dilation"], a["kernel"], a["group"]
    if transposed:  # ConvTranspose: the roles of input and output swap
        inp, dout = dout, inp
    xs = _equal_split(g, inp, groups) if groups > 1 else [inp]
    ds = _equal_split(g, dout, groups) if groups > 1 else [dout]
    parts = []
    for x, d in zip(xs, ds):
        xt = g.op("Transpose", [x], "wg_xt", perm=[1, 0, 2, 3])
        dt = g.op("Transpose", [d], "wg_dt", perm=[1, 0, 2, 3])
        r = g.op("Conv", [xt, dt], "wg_conv", pads=[ph, pw, ph, pw], strides=[dh, dw], dilations=[sh, sw])
        r = g.op("Slice", [r, g.ints([0, 0]), g.ints([kh, kw]), g.ints([2, 3])], "wg_crop")
        parts.append(g.op("Transpose", [r], "wg_w", perm=[1, 0, 2, 3]))
    w = parts[0] if groups == 1 else g.op("Concat", parts, "wg_cat", axis=0)
    return w


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


def _strided_conv_input_grad(g, dy, w, shape, a, in_hw, out_hw):
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


def _vjp_conv(ctx, p, ins, outs, dtops, aux, params):
    g, a, dy = ctx.g, p.attrs, dtops[0]
    h, w = p.bottom_shapes[0][2:]
    kw_ = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]), dilations=list(a["dilation"]),
               pads=list(a["pad"]) * 2, group=a["group"])
    full_pad = [d * (k - 1) - pd for d, k, pd in zip(a["dilation"], a["kernel"], a["pad"])]
    if p.type == "Convolution" and a["stride"] == (1, 1) and min(full_pad) >= 0:
        # stride 1: a plain convolution with the flipped, transposed filters ("full" padding);
        # ORT's Conv kernels are faster than its ConvTranspose
        dx = g.op("Conv", [dy, _flipped_filters(g, params[0], p.params[0].shape, a["group"])], "conv_dx",
                  kernel_shape=list(a["kernel"]), dilations=list(a["dilation"]), pads=full_pad * 2,
                  group=a["group"])
    elif p.type == "Convolution" and a["dilation"] == (1, 1) and a["group"] == 1 and a["stride"][0] == a["stride"][1]:
        dx = _strided_conv_input_grad(g, dy, params[0], p.params[0].shape, a, (h, w), p.top_shapes[0][2:])
    elif p.type == "Convolution":
        ext = [d * (k - 1) + 1 for d, k in zip(a["dilation"], a["kernel"])]
        rem = [(sz + 2 * pd - e) % s for sz, pd, e, s in zip((h, w), a["pad"], ext, a["stride"])]
        dx = g.op("ConvTranspose", [dy, params[0]], "conv_dx", output_padding=rem, **kw_)
    else:
        dx = g.op("Conv", [dy, params[0]], "deconv_dx", **kw_)
    dparams = None
    if ctx.want_params:
        dparams = [_conv_weight_grad(g, ins[0], dy, a, p.type == "Deconvolution")]
        if a["bias_term"]:
            dparams.append(g.op("ReduceSum", [dy, g.ints([0, 2, 3])], "conv_db", keepdims=0))
    return [dx], dparams


def _vjp_pool(ctx, p, ins, outs, dtops, aux, params):
    g, a, dy = ctx.g, p.attrs, dtops[0]
    begin, end = pool_geometry(p)
    h, w = p.bottom_shapes[0][2:]
    padded = aux["padded"]
    if a["method"] == "max":
        if p.name in ctx.masked_at_pool:
            dy = g.op("Mul", [dy, _mask(g, g.op("Greater", [outs[0], g.const(0.0)], "pool_pos"))], "pool_relu_grad")
        shape = g.op("Shape", [padded], "pool_shape")
        zeros = _zeros_like(g, g.op("Reshape", [padded, g.ints([-1])], "pool_flat"))
        scattered = g.op("ScatterElements", [zeros, g.op("Reshape", [aux["indices"], g.ints([-1])], "idx_flat"),
                                             g.op("Reshape", [dy, g.ints([-1])], "dy_flat")],
                         "unpool", axis=0, reduction="add")
        dpad = g.op("Reshape", [scattered, shape], "unpool_r")
    else:
        c = p.bottom_shapes[0][1]
        (kh, kw), (sh, sw) = a["kernel"], a["stride"]
        (oh, ow) = p.top_shapes[0][2:]
        hp, wp = h + begin[0] + end[0], w + begin[1] + end[1]
        scaled = g.op("Mul", [dy, g.const(1.0 / ave_divisor(p)[None, None])], "ave_dy")
        dpad = g.op("ConvTranspose", [scaled, g.const(np.ones((c, 1, kh, kw)), hint="ones_kernel")], "ave_dx",
                    strides=[sh, sw], group=c, output_padding=[hp - (sh * (oh - 1) + kh), wp - (sw * (ow - 1) + kw)])
    if any(begin) or any(end):
        dpad = g.op("Slice", [dpad, g.ints([begin[0], begin[1]]), g.ints([begin[0] + h, begin[1] + w]),
                              g.ints([2, 3])], "unpad")
    return [dpad], None


def _vjp_lrn(ctx, p, ins, outs, dtops, aux, params):
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


def _vjp_relu(ctx, p, ins, outs, dtops, aux, params):
    # Caffe masks with the bottom blob as it is at backward time: for an in-place ReLU that
    # is the output (the same mask unless the slope is negative). It also leaves the
    # pre-ReLU value to the ReLU alone, so ORT fuses the two into one convolution.
    if p.name in ctx.premasked:  # the max pool above applied this mask
        return [ctx.g.op("Relu", [dtops[0]], "guided_relu") if ctx.mode == "guided" else dtops[0]], None
    x = outs[0] if p.in_place else ins[0]
    return [_relu_rule(ctx, dtops[0], x, p.attrs["negative_slope"])], None


def _vjp_prelu(ctx, p, ins, outs, dtops, aux, params):
    g, x, dy = ctx.g, ins[0], dtops[0]
    nd = len(p.bottom_shapes[0])
    shape = tuple(p.params[0].shape) + (1,) * (nd - 2) if not p.attrs["channel_shared"] else (1,)
    slope = g.op("Reshape", [params[0], g.ints(shape)], "prelu_s")
    pos = _mask(g, g.op("Greater", [x, g.const(0.0)], "pos"))
    neg = g.op("Sub", [g.const(1.0), pos], "neg")
    dx = g.op("Mul", [dy, g.op("Add", [pos, g.op("Mul", [neg, slope], "neg_s")], "prelu_f")], "prelu_dx")
    dparams = None
    if ctx.want_params:
        terms = g.op("Mul", [g.op("Mul", [dy, x], "dyx"), neg], "prelu_terms")
        axes = [0] + list(range(2, nd)) if not p.attrs["channel_shared"] else list(range(nd))
        da = g.op("ReduceSum", [terms, g.ints(axes)], "prelu_da", keepdims=0)
        dparams = [g.op("Reshape", [da, g.ints(p.params[0].shape)], "prelu_da_r")]
    return [dx], dparams


def _vjp_elementwise(ctx, p, ins, outs, dtops, aux, params):
    g, t, a, dy = ctx.g, p.type, p.attrs, dtops[0]
    x, y = ins[0], outs[0]
    if t == "ELU":
        pos = _mask(g, g.op("Greater", [x, g.const(0.0)], "pos"))
        neg_d = g.op("Add", [y, g.const(a["alpha"])], "elu_neg")
        f = g.op("Add", [pos, g.op("Mul", [g.op("Sub", [g.const(1.0), pos], "neg"), neg_d], "elu_nf")], "elu_f")
        return [g.op("Mul", [dy, f], "elu_dx")], None
    if t == "Sigmoid":
        return [g.op("Mul", [dy, g.op("Mul", [y, g.op("Sub", [g.const(1.0), y], "1my")], "sig_d")], "sig_dx")], None
    if t == "TanH":
        return [g.op("Mul", [dy, g.op("Sub", [g.const(1.0), g.op("Mul", [y, y], "y2")], "tanh_d")], "tanh_dx")], None
    if t == "AbsVal":
        return [g.op("Mul", [dy, g.op("Sign", [x], "sign")], "abs_dx")], None
    if t == "Power":
        power, scale, shift = a["power"], a["scale"], a["shift"]
        if power == 0:
            return [g.op("Mul", [dy, g.const(0.0)], "pow_dx0")], None
        if power == 1:
            return [g.op("Mul", [dy, g.const(scale)], "pow_dx1")], None
        base = g.op("Add", [g.op("Mul", [x, g.const(scale)], "pow_sx"), g.const(shift)], "pow_base")
        d = g.op("Mul", [g.op("Pow", [base, g.const(power - 1.0)], "pow_p"), g.const(power * scale)], "pow_d")
        return [g.op("Mul", [dy, d], "pow_dx")], None
    raise AssertionError(t)


def _vjp_ip(ctx, p, ins, outs, dtops, aux, params):
    g, a, dy, x = ctx.g, p.attrs, dtops[0], ins[0]
    dy2 = g.op("Reshape", [dy, g.ints([-1, a["num_output"]])], "ip_dy")
    w = params[0]
    dxf = g.op("MatMul", [dy2, g.op("Transpose", [w], "ip_wt") if a["transpose"] else w], "ip_dxf")
    dx = g.op("Reshape", [dxf, g.op("Shape", [x], "ip_xshape")], "ip_dx")
    dparams = None
    if ctx.want_params:
        xf = g.op("Flatten", [x], "ip_xf", axis=a["axis"])
        if a["transpose"]:
            dw = g.op("MatMul", [g.op("Transpose", [xf], "ip_xft"), dy2], "ip_dw")
        else:
            dw = g.op("MatMul", [g.op("Transpose", [dy2], "ip_dyt"), xf], "ip_dw")
        dparams = [dw]
        if a["bias_term"]:
            dparams.append(g.op("ReduceSum", [dy2, g.ints([0])], "ip_db", keepdims=0))
    return [dx], dparams


def _vjp_reshape(ctx, p, ins, outs, dtops, aux, params):
    g = ctx.g
    return [g.op("Reshape", [dtops[0], g.op("Shape", [ins[0]], "x_shape")], "unflatten")], None


def _vjp_softmax(ctx, p, ins, outs, dtops, aux, params):
    g, dy, y = ctx.g, dtops[0], outs[0]
    dot = g.op("ReduceSum", [g.op("Mul", [dy, y], "sm_dyy"), g.ints([p.attrs["axis"]])], "sm_dot", keepdims=1)
    return [g.op("Mul", [y, g.op("Sub", [dy, dot], "sm_sub")], "sm_dx")], None


def _vjp_concat(ctx, p, ins, outs, dtops, aux, params):
    g = ctx.g
    parts = g.op("Split", [dtops[0], g.ints(p.attrs["sizes"])], "concat_dx", n_out=len(ins), axis=p.attrs["axis"])
    return (parts if len(ins) > 1 else [parts]), None


def _vjp_eltwise(ctx, p, ins, outs, dtops, aux, params):
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
    return [g.op("Mul", [dy, _mask(g, g.op("Equal", [sel, g.const(float(i))], "is_sel"))], "elt_dmax")
            for i in range(len(ins))], None


def _vjp_split(ctx, p, ins, outs, dtops, aux, params):
    g = ctx.g
    present = [d for d in dtops if d is not None]
    return [present[0] if len(present) == 1 else g.op("Sum", present, "split_sum")], None


def _vjp_identity(ctx, p, ins, outs, dtops, aux, params):
    return [dtops[0]], None


def _vjp_batchnorm(ctx, p, ins, outs, dtops, aux, params):
    return [ctx.g.op("Mul", [dtops[0], aux["inv_std"]], "bn_dx")], None


def _vjp_scale(ctx, p, ins, outs, dtops, aux, params):
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


def _vjp_pointwise(ctx, p, ins, outs, dtops, aux, params):
    """BNLL, Exp and Log: dy times the local derivative, as Caffe's Backward_cpu."""
    g, a, dy, x, y = ctx.g, p.attrs, dtops[0], ins[0], outs[0]
    if p.type == "BNLL":
        return [g.op("Mul", [dy, g.op("Sigmoid", [x], "bnll_d")], "bnll_dx")], None
    if p.type == "Exp":
        inner, _ = exp_scales(a)
        d = g.op("Mul", [dy, y], "exp_dyy")
        return [d if inner == 1.0 else g.op("Mul", [d, g.const(inner)], "exp_dx")], None
    return [g.op("Mul", [g.op("Div", [dy, aux["log_arg"]], "log_q"), g.const(a["scale"] * log_base_scale(a))],
                 "log_dx")], None


def _vjp_slice(ctx, p, ins, outs, dtops, aux, params):
    g = ctx.g
    parts = [d if d is not None else _zeros_like(g, o) for d, o in zip(dtops, outs)]
    return [parts[0] if len(parts) == 1 else g.op("Concat", parts, "slice_dx", axis=p.attrs["axis"])], None


def _vjp_crop(ctx, p, ins, outs, dtops, aux, params):
    """The diff goes back into the cropped window; the size-giving bottom gets none (Caffe)."""
    g, a = ctx.g, p.attrs
    before = a["offsets"]
    after = [dim - off - size for dim, off, size in zip(p.bottom_shapes[0], before, p.top_shapes[0])]
    if not any(before) and not any(after):
        return [dtops[0], None], None
    return [g.op("Pad", [dtops[0], g.ints(before + after)], "crop_dx"), None], None


def _zeros_like(g, x):
    return g.op("ConstantOfShape", [g.op("Shape", [x], "zshape")], "zeros",
                value=onnx.numpy_helper.from_array(np.zeros(1, g.dtype)))


VJP = {
    "Convolution": _vjp_conv, "Deconvolution": _vjp_conv, "Pooling": _vjp_pool, "LRN": _vjp_lrn,
    "ReLU": _vjp_relu, "PReLU": _vjp_prelu, "ELU": _vjp_elementwise, "Sigmoid": _vjp_elementwise,
    "TanH": _vjp_elementwise, "AbsVal": _vjp_elementwise, "Power": _vjp_elementwise,
    "InnerProduct": _vjp_ip, "Flatten": _vjp_reshape, "Reshape": _vjp_reshape, "Softmax": _vjp_softmax,
    "Concat": _vjp_concat, "Eltwise": _vjp_eltwise, "Split": _vjp_split, "Dropout": _vjp_identity,
    "BatchNorm": _vjp_batchnorm, "Scale": _vjp_scale, "Bias": _vjp_scale, "BNLL": _vjp_pointwise,
    "Exp": _vjp_pointwise, "Log": _vjp_pointwise, "Slice": _vjp_slice, "Crop": _vjp_crop,
}


# -- sessions --------------------------------------------------------------------------
class GradientSession:
    """A cached ORT session running one gradient model (see :func:`build_gradient_model`).

    ``run(data, seed, params=None)`` returns a dict with ``'input'`` (diff at the input),
    ``'blobs'`` (blob -> diff for blobs below the seed), ``'params'`` (layer -> list of
    gradients, when built with ``params=True``) and, for ``loss='softmax'`` (where
    ``seed`` is the integer labels), ``'loss'`` and ``'output'``.
    """

    def __init__(self, net, blob, mode="backprop", lrn="derivative", start="last", params=False,
                 params_as_inputs=False, loss=None, blob_diffs=False, seed_channel=False):
        self.net, self.blob, self.loss, self.seed_channel = net, blob, loss, seed_channel
        model, self.outputs = _cached_model(net, blob, mode, lrn, start, params, params_as_inputs, loss,
                                            blob_diffs, seed_channel)
        self.session = make_session(model.SerializeToString(), net.force_cpu, getattr(net, "threads", 0))
        # the session holds its own copy of the weights; the model proto is not kept
        self.param_inputs = {i.name for i in model.graph.input} - {net.input_name, SEED, SEED_CHANNEL, LABELS}

    def run(self, data, seed, params=None, channel=None):
        """``channel``: for a ``seed_channel`` session, the seeded channel (``seed`` then
        holds that channel alone)."""
        feeds = {self.net.input_name: np.ascontiguousarray(data, np.float32)}
        if self.loss:
            feeds[LABELS] = np.asarray(seed, np.int64).reshape(-1)
        else:
            feeds[SEED] = np.ascontiguousarray(seed, np.float32)
        if self.seed_channel:
            feeds[SEED_CHANNEL] = np.array([channel], np.int64)
        for layer, arrays in (params or {}).items():
            for i, arr in enumerate(arrays):
                name = param_name(layer, i)
                if name in self.param_inputs:
                    feeds[name] = np.ascontiguousarray(arr, np.float32)
        values = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        result = {"input": values.pop(input_diff_name(self.net.input_name)), "blobs": {}, "params": {}}
        for name, value in values.items():
            if name.startswith("diff:"):
                result["blobs"][name[5:]] = self._full_channels(name[5:], value, channel)
            elif name.startswith("grad:"):
                layer, i = name[5:].rsplit("/param", 1)
                result["params"].setdefault(layer, {})[int(i)] = value
            else:
                result[name] = value
        result["params"] = {k: [v[i] for i in sorted(v)] for k, v in result["params"].items()}
        return result

    def _full_channels(self, blob, diff, channel):
        """A seed_channel graph's diff of the seeded blob (one channel) at its place among zeros."""
        if not self.seed_channel or blob != self.blob:
            return diff
        full = np.zeros((diff.shape[0],) + tuple(self.net.blob_shapes[blob][1:]), diff.dtype)
        full[:, channel] = diff[:, 0]
        return full


def _cached_model(net, blob, mode, lrn, start, params, params_as_inputs, loss, blob_diffs, seed_channel=False):
    """Build the gradient model, reusing a copy saved on disk for the same weights."""
    from ..paths import CONVERTER_FILES, code_version

    source = getattr(net, "info", {}).get("source", {})
    key = None
    if source.get("weights_sha1"):
        # the same weights with another prototxt, or other code, make another graph
        deploy = {p.key: p.value for p in net.model.metadata_props}.get("caffevis_prototxt", "")
        key = hashlib.sha1("|".join([source["weights_sha1"], deploy, code_version(*CONVERTER_FILES, os.path.join("backward", "graph.py"))])
                           .encode()).hexdigest()
    path = None
    weight_bytes = sum(a.nbytes for p in net.layers for a in p.params)
    # Each gradient model carries a copy of the weights: cache small nets only (LeNet,
    # SqueezeNet); CaffeNet-sized models rebuild in memory in about as long as a load.
    if key and not params_as_inputs and weight_bytes <= CACHE_MAX_WEIGHT_BYTES:
        safe = "".join(c if c.isalnum() else "_" for c in blob)
        tag = (f"{safe}-{mode}-{lrn}-{start}-{int(bool(params))}-{loss or 'seed'}-{int(bool(blob_diffs))}"
               + ("-channel" if seed_channel else ""))
        path = os.path.join(net.cache_dir, f"{net.name}-{key[:12]}", "grad", f"{tag}.onnx")
        if os.path.isfile(path):
            try:
                model = onnx.load(path)
                return model, [o.name for o in model.graph.output]
            except Exception:
                pass  # rebuilt below
    model, outputs = build_gradient_model(net, blob, mode=mode, lrn=lrn, start=start, params=params,
                                          params_as_inputs=params_as_inputs, loss=loss, blob_diffs=blob_diffs,
                                          seed_channel=seed_channel)
    if path:
        save_onnx(model, path)
    return model, outputs
