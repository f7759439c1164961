"""Would a model run entirely on ONNX Runtime's CUDA provider? Checked without a GPU.

ORT assigns each node to the first provider with a kernel registered for the node's operator
(domain, type) at the node's *since version* (the version of the operator's schema in force at
the model's opset). A node without a CUDA kernel runs on the CPU, with copies to and from the
GPU around it. The CUDA kernel table of the pinned onnxruntime-gpu is kept in
``caffevis/data/ort_cuda_kernels.json`` (with the document and commit it was read from); this
module lists the nodes of a model that it does not cover.
"""
from __future__ import annotations

import functools
import json
import os

from .paths import DATA_DIR

TABLE = os.path.join(DATA_DIR, "ort_cuda_kernels.json")


@functools.lru_cache(maxsize=None)
def kernel_table():
    """``(source, {domain: {op_type: [[first, last or None], ...]}})`` from :data:`TABLE`."""
    with open(TABLE, encoding="utf-8") as f:
        data = json.load(f)
    return data["source"], data["kernels"]


def model_operators(model):
    """``{(domain, op_type, since_version): node count}`` of an ONNX model's graph."""
    import onnx.defs

    opsets = {imp.domain or "ai.onnx": imp.version for imp in model.opset_import}
    found = {}
    for node in model.graph.node:
        domain = node.domain or "ai.onnx"
        try:
            since = onnx.defs.get_schema(node.op_type, opsets.get(domain, 0),
                                         "" if domain == "ai.onnx" else domain).since_version
        except onnx.defs.SchemaError:
            since = opsets.get(domain, 0)  # no schema known (a contrib op): its domain's opset
        key = (domain, node.op_type, since)
        found[key] = found.get(key, 0) + 1
    return found


def has_cuda_kernel(domain, op_type, since_version) -> bool:
    """A CUDA kernel is registered for this operator version (per the kept table)."""
    ranges = kernel_table()[1].get(domain, {}).get(op_type, [])
    return any(lo <= since_version and (hi is None or since_version <= hi) for lo, hi in ranges)


def cpu_fallbacks(model):
    """Operators of ``model`` that would fall back to the CPU: sorted ``(domain, op_type, since_version)``."""
    return sorted(key for key in model_operators(model) if not has_cuda_kernel(*key))


def check_net_graphs(net, blobs=None):
    """The forward graph and the gradient graphs (backprop, deconv, guided; both LRN rules;
    seeded at the blob's final value and at its layer's output; the one-channel seed graph where
    the blob allows it) of ``net`` from each of ``blobs`` (default: the blob before the last, e.g.
    the one before the
    softmax, and the top of the last Convolution / InnerProduct). Returns ``{graph name: cpu_fallbacks}`` and the set of operators seen."""
    from .backward import build_gradient_model, channel_seed_supported

    graphs = {"forward": net.model}
    if not blobs:
        blobs = [net.blob_names[-2]]
        convs = [p.tops[0] for p in net.layers if p.type in ("Convolution", "InnerProduct")]
        if convs and convs[-1] not in blobs:
            blobs.append(convs[-1])  # the viewer's and optimizer's usual seed: a conv / fc unit
    for blob in blobs:
        for mode in ("backprop", "deconv", "guided"):
            for lrn in ("derivative", "identity"):
                for start in ("last", "layer"):
                    name = f"{blob} {mode} lrn={lrn} start={start}"
                    graphs[name] = build_gradient_model(net, blob, mode=mode, lrn=lrn, start=start)[0]
                    if channel_seed_supported(net.layers, blob, start, net.input_name):
                        graphs[name + " one-channel"] = build_gradient_model(
                            net, blob, mode=mode, lrn=lrn, start=start, seed_channel=True)[0]
    seen = set()
    report = {}
    for name, model in graphs.items():
        seen |= set(model_operators(model))
        report[name] = cpu_fallbacks(model)
    return report, seen
