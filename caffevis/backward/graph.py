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

import numpy as np
import onnx

from ..errors import InputError
from ..layers import layer_type
from ..model.caffe.to_onnx import assign_versions, emit_forward, param_name
from ..model.onnx_graph import GraphBuilder
from .rules import GradContext, channel_seed_supported, check_backward_args, relus_masked_at_pools, resolve_start, \
    seed_chain

SEED = "seed"
SEED_CHANNEL = "seed_channel"
LABELS = "labels"
VALUE = "value"  # the seeded tensor's forward value, when asked for


def input_diff_name(name):
    return f"diff:{name}"


def param_grad_name(layer, i):
    return f"grad:{param_name(layer, i)}"


def parse_output_name(name):
    """The inverse of :func:`input_diff_name` and :func:`param_grad_name`: ``('diff', blob)``,
    ``('grad', layer, i)``, or None for the other outputs."""
    if name.startswith("diff:"):
        return "diff", name[5:]
    if name.startswith("grad:"):
        layer, i = name[5:].rsplit("/param", 1)
        return "grad", layer, int(i)
    return None


def build_gradient_model(net_or_plans, blob, mode="backprop", lrn="derivative", start="last",
                         params=False, params_as_inputs=False, loss=None, dtype=np.float32,
                         input_name="data", input_shape=None, blob_diffs=True, seed_channel=False, value=False):
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

    ``value=True`` also outputs the seeded tensor's forward value (``'value'``): the
    optimizer reads the objective and its gradient from one run.
    """
    check_backward_args(mode, lrn, start)
    if hasattr(net_or_plans, "layers"):
        plans, input_name, input_shape = net_or_plans.layers, net_or_plans.input_name, net_or_plans.input_shape
    else:
        plans = net_or_plans
    reads, writes, _ = assign_versions(plans, [input_name])
    start_idx, target = resolve_start(plans, input_name, blob, start)
    on_path = _layers_on_path(reads, writes, start_idx, target)

    g = GraphBuilder(dtype, names=[v for ws in writes for v in ws])
    g.add_input(input_name, ["N"] + list(input_shape[1:]))
    restricted = {}
    if seed_channel:
        if params or loss:
            raise InputError("seed_channel graphs take a seed diff and give diffs only (no params or loss)")
        if not channel_seed_supported(plans, blob, start, input_name):
            raise InputError(f"blob '{blob}': a one-channel seed graph needs a Convolution or InnerProduct "
                             "producing it, followed only by in-place channelwise layers")
        restricted = _restrict_to_seed_channel(g, plans, blob, start_idx)
    layers = {idx: restricted.get(idx, (plans[idx], None))[0] for idx in on_path}
    pnames = {idx: restricted[idx][1] if idx in restricted else _param_names(g, plans[idx], params_as_inputs)
              for idx in on_path}
    aux = {idx: {} for idx in on_path}
    version_blob = {input_name: input_name}
    for idx in on_path:  # the forward pass below the seed
        emit_forward(g, layers[idx], reads[idx], writes[idx], pnames[idx], aux=aux[idx])
        version_blob.update(zip(writes[idx], layers[idx].tops))

    start_plan = layers[start_idx] if start_idx >= 0 else None
    target_shape = start_plan.top_shapes[start_plan.tops.index(blob)] if start_plan else tuple(input_shape)
    seed, outputs = _seed_input(g, loss, target, target_shape, value)
    # (deconv's ReLU rule, max(diff, 0), does not commute with the pool's scatter-add)
    masked_at_pool = relus_masked_at_pools(plans, reads, writes, on_path) if mode != "deconv" else None
    ctx = GradContext(g, mode, lrn, params, masked_at_pool)
    diffs, grads = _backward_path(ctx, layers, on_path, reads, writes, aux, pnames, {target: seed})

    # The input diff (zeros when the seed does not reach the input).
    dx = diffs.get(input_name) or g.op("Mul", [input_name, g.const(0.0)], "zero_input")
    g.op("Identity", [dx], outputs=[input_diff_name(input_name)])
    outputs.append(input_diff_name(input_name))
    outputs += _diff_outputs(g, on_path, writes, diffs, version_blob, {input_name} if blob_diffs else None)
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


def _layers_on_path(reads, writes, start_idx, target):
    """Indices of the layers on a path from the input to the seeded tensor, in order."""
    needed, on_path = {target}, []
    for idx in range(start_idx, -1, -1):
        if any(w in needed for w in writes[idx]):
            on_path.append(idx)
            needed.update(reads[idx])
    return on_path[::-1]


def _param_names(g, p, as_inputs):
    """The layer's blobs as initializers (also graph inputs when ``as_inputs``: training)."""
    names = []
    for i, arr in enumerate(p.params):
        name = g.initializer(param_name(p.name, i), arr.astype(g.dtype))
        if as_inputs:
            g.inputs.append(onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(g.dtype), list(arr.shape)))
        names.append(name)
    return names


def _seed_input(g, loss, target, target_shape, value):
    """The seed diff at ``target`` (a graph input, or the softmax loss's gradient) and the
    outputs that come with it."""
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
    if value:
        g.op("Identity", [target], outputs=[VALUE])
        outputs.append(VALUE)
    return seed, outputs


def _backward_path(ctx, layers, on_path, reads, writes, aux, pnames, diffs):
    """Each layer's ``vjp`` (:mod:`caffevis.layers`) in reverse; returns (tensor -> diff,
    (layer, i) -> parameter gradient). Diffs of a tensor read by several layers add up."""
    g, grads = ctx.g, {}
    for idx in reversed(on_path):
        p = layers[idx]
        dtops = [diffs.get(w) for w in writes[idx]]
        if all(d is None for d in dtops):
            continue
        with g.scope(p.name):
            dins, dparams = layer_type(p.type).vjp(ctx, p, reads[idx], writes[idx], dtops, aux[idx], pnames[idx])
        for name, d in zip(reads[idx], dins):
            if d is not None:
                diffs[name] = d if name not in diffs else g.op("Add", [diffs[name], d], "acc")
        if ctx.want_params:
            grads.update(((p.name, i), d) for i, d in enumerate(dparams or []) if d is not None)
    return diffs, grads


def _diff_outputs(g, on_path, writes, diffs, version_blob, seen):
    """Each blob's diff as Caffe leaves it: in-place layers share one diff buffer, so it is
    the diff of the blob's earliest version that received one (``seen`` None: none)."""
    if seen is None:
        return []
    outputs = []
    for idx in on_path:
        for v in writes[idx]:
            b = version_blob[v]
            if b in seen or v not in diffs:
                continue
            seen.add(b)
            g.op("Identity", [diffs[v]], outputs=[input_diff_name(b)])
            outputs.append(input_diff_name(b))
    return outputs


def _restrict_to_seed_channel(g, plans, blob, start_idx):
    """The layers writing ``blob`` rewritten for one output channel, chosen at run time.

    The producer's weights (grouped convolution filters spread to full input width, so one
    filter is a group-1 convolution) become initializers gathered by the ``seed_channel``
    input; the layers after it see one channel. Returns idx -> (plan, param names).
    """
    channel = g.add_input(SEED_CHANNEL, [1], np.int64)
    chain = seed_chain(plans, blob, start_idx)
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
    shapes = {"loss": [], "output": ["N"] + list(target_shape[1:]), VALUE: ["N"] + list(target_shape[1:])}
    for name in outputs:
        kind = parse_output_name(name)
        if kind and kind[0] == "diff":
            shapes[name] = ["N"] + list(blob_shapes[kind[1]][1:])
        elif kind:
            _, layer, i = kind
            shapes[name] = list(next(p for p in plans if p.name == layer).params[i].shape)
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


