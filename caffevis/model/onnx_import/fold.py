"""Constant folding of an ONNX graph that keeps every data tensor's name.

Exporters leave data-independent computations in the graph: ``Constant`` nodes,
``Identity`` copies of de-duplicated initializers, a weight ``Reshape``d at load time
(CNTK's MatMul weights), and from dynamic exports the shape subgraphs
(``Shape → Gather → … → Reshape``/``Slice`` inputs). :func:`fold_constants` evaluates
exactly those nodes (with static shapes from onnx's shape inference standing in for
``Shape``) and turns their outputs into initializers of the same name. Nodes reading the
data input stay as they are, so every activation keeps its tensor name.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from ..onnx_graph import opset_of


def static_shapes(model, input_shape=None):
    """Tensor name -> shape (tuple of ints) for every tensor onnx's shape inference
    resolves to static dimensions; ``input_shape`` pins the data input's dims."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {i.name for i in model.graph.initializer}
    if input_shape is not None:
        for vi in model.graph.input:
            if vi.name not in inits:
                dims = vi.type.tensor_type.shape.dim
                for d, size in zip(dims, input_shape):
                    d.Clear()
                    d.dim_value = int(size)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if all(d is not None for d in dims):
            shapes[vi.name] = tuple(int(d) for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def constant_nodes(graph, shapes):
    """Indices of the nodes whose outputs do not depend on the data (``Shape`` of a
    tensor with a static shape counts as constant), in graph order."""
    known = {i.name for i in graph.initializer}
    picked = []
    for idx, node in enumerate(graph.node):
        ins = [i for i in node.input if i]
        if node.op_type == "Shape" and ins and ins[0] in shapes:
            constant = True
        else:
            constant = all(i in known for i in ins) and not _has_subgraph(node)
        if constant and node.op_type not in ("RandomNormal", "RandomUniform", "RandomNormalLike",
                                              "RandomUniformLike", "Multinomial", "Bernoulli"):
            picked.append(idx)
            known.update(o for o in node.output if o)
    return picked


def _has_subgraph(node):
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def fold_constants(model, input_shape=None):
    """A copy of ``model`` with its data-independent nodes evaluated into initializers
    (same tensor names) and initializers no longer listed as graph inputs (IR 3 files).

    Returns (model, shapes): ``shapes`` maps every tensor with a static shape to it.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    # IR 3 lists initializers as graph inputs; IR 4 (initializers need not be inputs) lets
    # them drop out of the inputs below and still be seen by shape inference
    model.ir_version = max(model.ir_version, 4)
    graph = model.graph
    shapes = static_shapes(model, input_shape)
    picked = constant_nodes(graph, shapes)
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    opset = opset_of(model, 13)
    for idx in picked:
        node = graph.node[idx]
        if node.op_type == "Shape":
            values[node.output[0]] = _shape_value(node, shapes[node.input[0]])
            continue
        ins = [values[i] if i else None for i in node.input]
        values.update(zip(node.output, _evaluate(node, ins, opset)))
    folded = [o for idx in picked for o in graph.node[idx].output if o]
    keep = [n for i, n in enumerate(graph.node) if i not in set(picked)]
    used = {i for n in keep for i in n.input} | {o.name for o in graph.output}
    inits = [numpy_helper.from_array(np.asarray(values[name]), name) for name in folded if name in used]
    old = [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(old + inits)
    data_inputs = [i for i in graph.input if i.name not in values]
    del graph.input[:]
    graph.input.extend(data_inputs)
    del graph.value_info[:]
    # shapes again: Slice/Reshape outputs become static once their inputs are constants
    return model, static_shapes(model, input_shape)


def _shape_value(node, shape):
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end")
    return np.array(shape[start:end], np.int64)


def _evaluate(node, inputs, opset):
    """Outputs of one node on constant inputs (onnx's reference implementation)."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    copy = onnx.helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.output))],
                                 domain=node.domain)
    copy.attribute.extend(node.attribute)
    decl = [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for n, v in zip(names, inputs) if n]
    outs = [onnx.helper.make_empty_tensor_value_info(o) for o in copy.output]
    graph = onnx.helper.make_graph([copy], "fold", decl, outs)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(node.domain or "", opset)])
    feeds = {n: v for n, v in zip(names, inputs) if n}
    session = ReferenceEvaluator(model)
    return [np.asarray(v) for v in session.run(None, feeds)]


def free_batch(model, batch):
    """A copy of ``model`` whose data input takes any batch size, or None when a node bakes
    the batch in beyond what can be rewritten.

    Exports with a static batch (the usual ``torch.onnx.export`` of one example) hold it in
    the constant shapes of their Reshape nodes; those become ``0`` (copy the input's batch).
    Call only on graphs whose every node was imported as a layer (each keeps the batch axis).
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    users = {}
    for node in graph.node:
        for pos, name in enumerate(node.input):
            users.setdefault(name, []).append((node, pos))
    rewritten = set()
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape_name = node.input[1]
        init = inits.get(shape_name)
        if init is None or any(n.op_type != "Reshape" or pos != 1 for n, pos in users[shape_name]):
            return None
        if shape_name in rewritten:
            continue
        value = numpy_helper.to_array(init).copy()
        if value.size == 0 or int(value[0]) not in (batch, 0, -1) or \
                any(a.name == "allowzero" and a.i for a in node.attribute):
            return None
        value[0] = 0
        init.CopyFrom(numpy_helper.from_array(value, shape_name))
        rewritten.add(shape_name)
    for vi in list(graph.input) + list(graph.output):
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = "N"
    del graph.value_info[:]
    return model
