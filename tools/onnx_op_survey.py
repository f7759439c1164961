"""Survey ONNX files for an importer: operators, attribute variants, shape subgraphs, folding.

For each file: opset, op types with counts, the attribute values and input kinds each op type
uses (initializer / Constant / shape-computed / data), the ops that occur only in
shape-computing subgraphs (values derived from ``Shape`` alone), and which of these
subgraphs survive (a) onnxruntime's BASIC graph optimization saved through
``optimized_model_filepath`` and (b) onnxsim, when installed. Prints JSON. Usage::

    python tools/onnx_op_survey.py tests/data/torchvision/*.onnx ../shared/models/mnist_onnx/mnist-8.onnx
"""
import argparse
import collections
import json
import os
import sys
import tempfile

import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError

# attributes that only give sizes (recorded as "varies" rather than listed value by value)
SIZE_ATTRS = {"kernel_shape", "value", "split"}


def constant_values(graph):
    """Names whose value is fixed: initializers and Constant node outputs."""
    names = {i.name for i in graph.initializer}
    names |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return names


def shape_values(graph, constants):
    """Names computed from Shape outputs and constants only (node order is topological)."""
    shaped = set()
    for node in graph.node:
        ins = [i for i in node.input if i]
        if node.op_type == "Shape" or (ins and any(i in shaped for i in ins)
                                       and all(i in shaped or i in constants for i in ins)):
            shaped.update(node.output)
    return shaped


def input_kind(name, graph_inputs, constants, shaped):
    if name in constants:
        return "const"
    if name in shaped:
        return "shape-computed"
    return "graph-input" if name in graph_inputs else "data"


def attribute_variants(graph, constants, shaped):
    """Per op type: distinct values of each attribute and the kinds of each input position."""
    variants = collections.defaultdict(lambda: collections.defaultdict(set))
    graph_inputs = {i.name for i in graph.input}
    for node in graph.node:
        v = variants[node.op_type]
        for attr in node.attribute:
            value = onnx.helper.get_attribute_value(attr)
            if attr.name in SIZE_ATTRS:
                value = "varies"
            elif isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, list):
                value = str(value)
            v[attr.name].add(value if isinstance(value, (int, float, str)) else str(value))
        for pos, name in enumerate(node.input):
            kind = input_kind(name, graph_inputs, constants, shaped) if name else "omitted"
            v[f"input{pos}"].add(kind)
    return {op: {k: sorted(vals, key=str) for k, vals in attrs.items()}
            for op, attrs in sorted(variants.items())}


def describe(model):
    graph = model.graph
    constants = constant_values(graph)
    shaped = shape_values(graph, constants)
    counts = collections.Counter(n.op_type for n in graph.node)
    in_shape = collections.Counter(n.op_type for n in graph.node
                                   if n.output and all(o in shaped for o in n.output))
    shape_ops = {op for op in counts if in_shape[op] == counts[op]}
    # data ops that read a shape-computed value (Reshape's shape, Slice's starts/ends, ...)
    consumers = {n.op_type for n in graph.node
                 if any(i in shaped for i in n.input) and not set(n.output) <= shaped}
    return {
        "opset": {i.domain or "ai.onnx": i.version for i in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "op_counts": dict(sorted(counts.items())),
        "ops_only_in_shape_subgraphs": sorted(shape_ops),
        "shape_subgraph_consumers": sorted(consumers),
        "attributes": attribute_variants(graph, constants, shaped),
        "initializers_also_graph_inputs": sorted({i.name for i in graph.input}
                                                 & {i.name for i in graph.initializer}),
    }


def ort_basic(path):
    """The graph after onnxruntime's BASIC optimizations (constant folding, redundant-node
    elimination and its fusions), as saved by ``optimized_model_filepath``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "basic.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = out
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        return onnx.load(out)


def simplified(model):
    try:
        import onnxsim
    except ImportError:
        return None
    model_simp, ok = onnxsim.simplify(model)
    return model_simp if ok else None


def folding(path, model):
    """Op counts after each folding route, and whether Shape nodes remain."""
    result = {"shape_inference_only": "adds value_info; rewrites no node"}
    routes = [("ort_basic", ort_basic(path)), ("onnxsim", simplified(model))]
    for name, folded in routes:
        if folded is None:
            result[name] = "not available"
            continue
        counts = collections.Counter(n.op_type for n in folded.graph.node)
        result[name] = {"op_counts": dict(sorted(counts.items())),
                        "shape_nodes_left": counts.get("Shape", 0),
                        "domains": sorted({n.domain for n in folded.graph.node if n.domain})}
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="ONNX files")
    args = p.parse_args(argv)
    report = {}
    for path in args.models:
        try:
            model = onnx.load(path)
        except (OSError, DecodeError) as e:
            print(f"onnx_op_survey: {path}: not a readable ONNX model ({e})", file=sys.stderr)
            sys.exit(2)
        entry = describe(model)
        entry["folding"] = folding(path, model)
        report[os.path.basename(path)] = entry
    json.dump(report, sys.stdout, indent=1, default=str)
    print()


if __name__ == "__main__":
    main()
