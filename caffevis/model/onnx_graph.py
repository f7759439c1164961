"""A small builder for ONNX graphs: unique names, typed constants, one-line ops."""
from __future__ import annotations

import contextlib

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import ModelError


def data_input(model):
    """The graph input that is not an initializer (caffevis nets take exactly one)."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"model has {len(inputs)} inputs; caffevis needs exactly one data input")
    return inputs[0]


def opset_of(model, default=1):
    """The model's default-domain opset (``default`` when it declares none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default)

OPSET = 17  # ScatterElements(reduction='add') needs >= 16; loaded by onnxruntime >= 1.13
IR_VERSION = 8
_ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
         np.dtype(np.int64): TensorProto.INT64, np.dtype(np.bool_): TensorProto.BOOL}


def elem_type(dtype) -> int:
    return _ELEM[np.dtype(dtype)]


class GraphBuilder:
    """Accumulates nodes, initializers, inputs and outputs of one ONNX graph.

    ``dtype`` is the floating type of activations and constants (float32, or float64 for
    numerical checks with ``onnx.reference``).
    """

    def __init__(self, dtype=np.float32, names=()):
        """``names``: tensor names the caller will assign itself (Caffe blob versions);
        generated names never take them."""
        self.dtype = np.dtype(dtype)
        self._protected = set(names)
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self._used = set()
        self._pending = set()  # made by fresh(), not yet given to a node
        self._consts = {}
        self._scope = None  # node names start with it (a Caffe layer's name)

    @contextlib.contextmanager
    def scope(self, name):
        """Name the nodes added inside ``with g.scope(name):`` ``name/...`` (ORT's errors then say which layer)."""
        outer, self._scope = self._scope, name
        try:
            yield
        finally:
            self._scope = outer

    def fresh(self, hint: str) -> str:
        name, i = hint, 1
        while name in self._used or name in self._protected:
            i += 1
            name = f"{hint}_{i}"
        self._used.add(name)
        self._pending.add(name)
        return name

    def reserve(self, name: str) -> str:
        if name in self._pending:
            self._pending.discard(name)
            return name
        self._protected.discard(name)
        if name in self._used:
            raise ModelError(f"tensor name '{name}' is used twice in the ONNX graph (a blob name collides "
                             "with another tensor's)")
        self._used.add(name)
        return name

    def initializer(self, name: str, array) -> str:
        self.reserve(name)
        self.initializers.append((name, np.asarray(array)))
        return name

    def const(self, value, dtype=None, hint="const") -> str:
        """A constant tensor (floats take the graph dtype unless ``dtype`` is given)."""
        arr = np.asarray(value)
        arr = arr.astype(self.dtype if dtype is None else dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 16 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.initializer(self.fresh(hint), arr)
        if key is not None:
            self._consts[key] = name
        return name

    def ints(self, values, hint="shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64), dtype=np.int64, hint=hint)

    def op(self, op_type: str, inputs, hint: str | None = None, outputs=None, n_out=1, **attrs):
        """Add one node; return its output name (or the list when ``n_out`` > 1).

        ``outputs`` fixes the output names (used for Caffe blob names); otherwise
        names are made from ``hint``.
        """
        if outputs is None:
            base = hint or op_type.lower()
            outputs = [self.reserve(self.fresh(base if n_out == 1 else f"{base}:{i}")) for i in range(n_out)]
        else:
            outputs = [self.reserve(o) if o else o for o in outputs]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs,
                                           name=self.fresh(f"{self._scope or 'node'}/{hint or op_type}"), **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def add_input(self, name, shape, dtype=None):
        self.reserve(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem_type(dtype or self.dtype), shape))
        return name

    def add_output(self, name, shape=None, dtype=None):
        self.outputs.append(helper.make_tensor_value_info(name, elem_type(dtype or self.dtype), shape))

    def model(self, name: str, metadata: dict | None = None) -> onnx.ModelProto:
        # Written straight into the ModelProto: make_graph/make_model copy every initializer
        # twice more (seconds for VGG-sized weights).
        model = onnx.ModelProto(ir_version=IR_VERSION, producer_name="caffevis")
        model.opset_import.add(domain="", version=OPSET)
        graph = model.graph
        graph.name = name
        graph.node.extend(self.nodes)
        graph.input.extend(self.inputs)
        graph.output.extend(self.outputs)
        for tensor_name, array in self.initializers:
            tensor = graph.initializer.add(name=tensor_name, data_type=elem_type(array.dtype))
            tensor.dims.extend(array.shape)
            tensor.raw_data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        return model


def prune_to_outputs(model: onnx.ModelProto, outputs):
    """The part of ``model`` that computes ``outputs``: the nodes they depend on and the
    initializers those nodes read (ONNX Runtime runs every node of a session, whatever
    outputs are fetched). Returns ``(sub_model, weight_bytes, dropped_nodes)``, or None for
    graphs with control-flow subgraphs (their outer-scope reads are not traced here).
    """
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return None
    needed, kept = set(outputs), []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    sub = onnx.ModelProto(ir_version=model.ir_version, producer_name=model.producer_name)
    sub.opset_import.extend(model.opset_import)
    sub.graph.name = graph.name
    sub.graph.node.extend(kept)
    inits = [t for t in graph.initializer if t.name in needed]
    sub.graph.initializer.extend(inits)
    init_names = {t.name for t in graph.initializer}
    sub.graph.input.extend(i for i in graph.input if i.name in needed or i.name not in init_names)
    declared = {o.name: o for o in graph.output}
    sub.graph.output.extend(declared[o] if o in declared else helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                            for o in outputs)
    return sub, sum(tensor_bytes(t) for t in inits), len(graph.node) - len(kept)


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """Size of an initializer's data (raw or typed fields; 4 bytes per element assumed for the latter)."""
    return len(tensor.raw_data) or 4 * int(np.prod(tensor.dims, dtype=np.int64))
