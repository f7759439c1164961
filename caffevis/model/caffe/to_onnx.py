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

from ...layers import layer_type
from ..onnx_graph import GraphBuilder
from .layers import plan as plan_layers

FORMAT_VERSION = "1"


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


def emit_forward(g: GraphBuilder, p, ins, outs, params, aux=None):
    """Emit layer ``p`` reading tensors ``ins`` and writing tensors named ``outs`` (the
    layer type's ``forward`` hook, see :mod:`caffevis.layers`); its nodes are named after
    the layer, so ONNX Runtime's errors name it.

    ``params`` are the initializer names of the layer's blobs. When ``aux`` is a dict,
    intermediate tensors the backward rules need are stored in it (e.g. max-pool
    indices).
    """
    with g.scope(p.name):
        layer_type(p.type).forward(g, p, ins, outs, params, aux)


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


def forward_model(plans, inputs, name, dtype=np.float32, meta=None):
    """The forward graph of ``plans`` (each layer type's ``forward``), every blob version an
    output; ``inputs``: input name -> shape (the batch axis left free)."""
    reads, writes, _ = assign_versions(plans, list(inputs))
    g = GraphBuilder(dtype, names=[v for ws in writes for v in ws])
    for input_name, shape in inputs.items():
        g.add_input(input_name, dynamic_shape(shape))
    for p, ins, outs in zip(plans, reads, writes):
        names = [g.initializer(param_name(p.name, i), arr.astype(dtype)) for i, arr in enumerate(p.params)]
        emit_forward(g, p, ins, outs, names)
        for o, s in zip(outs, p.top_shapes):
            g.add_output(o, dynamic_shape(s))
    return g.model(name, meta)


def convert(cnet, dtype=np.float32):
    """Convert a :class:`~caffevis.model.caffe.reader.CaffeNet` (with weights) to an ONNX model."""
    plans = plan_layers(cnet)
    meta = caffe_metadata(cnet, plans, blob_order(cnet, plans), dtype)
    return forward_model(plans, cnet.inputs, cnet.name, dtype, meta), plans
