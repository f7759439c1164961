"""Import any ONNX CNN as layer plans: blobs are the graph's tensor names.

:func:`import_onnx` folds the data-independent nodes (:mod:`.fold`), maps every remaining
node onto a layer type (:mod:`.ops`) and returns the plans with the metadata a
:class:`~caffevis.model.net.Net` needs (input shape, blob order and shapes). A node
without a mapping leaves the net forward-only: the result then carries one line naming
the node, its op type and the opset, which every backward feature reports.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from onnx import numpy_helper

from ...errors import ModelError
from ...layers.base import LayerPlan
from ..caffe.to_onnx import forward_model
from ..onnx_graph import data_input, opset_of
from .fold import fold_constants, free_batch
from .ops import MAPPINGS, Node, Unsupported


@dataclasses.dataclass
class Imported:
    """What :func:`import_onnx` found.

    Attributes
    ----------
    model : onnx.ModelProto
        The graph with its constant nodes folded (tensor names kept): what ORT runs.
    plans : list of LayerPlan
        One per node, in graph order (empty when ``blocked``).
    info : dict
        ``inputs``, ``blob_order``, ``blob_shapes``, ``name`` (as the Net reads them).
    blocked : str or None
        The one-line reason backward features are unavailable.
    """

    model: object
    plans: list
    info: dict
    blocked: str = None


def graph_input_shape(model, input_hw=None):
    """The data input's shape: dynamic batch -> 1, dynamic H/W -> ``input_hw``."""
    dims = [d.dim_value if d.dim_value > 0 else None for d in data_input(model).type.tensor_type.shape.dim]
    if dims and dims[0] is None:
        dims[0] = 1
    if len(dims) == 4 and input_hw is not None:
        dims[2:] = [int(v) for v in input_hw]
    if any(d is None for d in dims):
        raise ModelError(f"input '{data_input(model).name}' has dynamic size {dims}: "
                         "set caffevis_data_hw: [H, W] (Net.from_onnx input_size)")
    return tuple(dims)


def import_onnx(model, input_hw=None, name=None) -> Imported:
    """Fold and map ``model`` (any single-input ONNX CNN) onto layer plans."""
    in_vi = data_input(model)
    input_shape = graph_input_shape(model, input_hw)
    folded, shapes = fold_constants(model, input_shape)
    opset = opset_of(model)
    consts = {i.name: numpy_helper.to_array(i) for i in folded.graph.initializer}
    plans, order, blocked = [], [in_vi.name], None
    shapes = dict(shapes)
    shapes[in_vi.name] = input_shape
    used_names = set()
    for node in folded.graph.node:
        outs = [o for o in node.output if o]
        if node.op_type == "Dropout":
            outs = outs[:1]  # the mask is no blob
        try:
            missing = [t for t in list(node.input) + outs if t and t not in shapes]
            if missing:
                raise Unsupported(f"tensor '{missing[0]}' has no static shape")
            mapping = MAPPINGS.get(node.op_type)
            if mapping is None or node.domain not in ("", "ai.onnx"):
                raise Unsupported("operator not supported")
            kind, attrs, params = mapping(Node(node, opset, consts, shapes))
        except Unsupported as err:
            blocked = blocked or (f"node '{node.name or outs[0]}' ({node.op_type}, opset {opset}): {err}")
            order += outs  # still blobs of the forward-only net
            continue
        layer_name = _unique(node.name or outs[0], used_names)
        bottoms = [i for i in node.input if i and i not in consts]
        plans.append(LayerPlan(layer_name, kind, bottoms, outs, attrs, [shapes[b] for b in bottoms],
                               [shapes[t] for t in outs], list(params), len(plans)))
        order += outs
    info = dict(name=name or folded.graph.name or "model", inputs={in_vi.name: list(input_shape)},
                blob_order=order, blob_shapes={b: list(shapes[b]) for b in order if b in shapes} if not blocked else {},
                source={"onnx": name or folded.graph.name})
    if not blocked:  # layers keep the batch axis: let ORT run any batch size
        folded = free_batch(folded, input_shape[0]) or folded
    return Imported(folded, [] if blocked else plans, info, blocked)


def plans_forward_model(imported: Imported, dtype=np.float32):
    """The plans' own forward graph (each layer type's ``forward``), every blob an output:
    what the gradient graphs recompute, to compare with the original graph's values."""
    if imported.blocked:
        raise ModelError(imported.blocked)
    return forward_model(imported.plans, imported.info["inputs"], imported.info["name"], dtype)


def _unique(name, used):
    base, i = name, 1
    while name in used:
        i += 1
        name = f"{base}#{i}"
    used.add(name)
    return name


__all__ = ["Imported", "graph_input_shape", "import_onnx", "plans_forward_model"]
