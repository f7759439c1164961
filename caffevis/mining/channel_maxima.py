"""Per-channel maxima of tracked blobs computed inside the ONNX graph, for the image scan.

:class:`ChannelMaxima` adds reduction nodes to a copy of the net's model so that ONNX
Runtime returns each tracked blob's per-channel maximum (and where it is) instead of whole
activation maps; :func:`caffevis.mining.scan.run_scan` folds them into the top-N.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError


class ChannelMaxima:
    """Runs the net and returns each tracked blob's per-channel maximum (and where it is).

    The net's ONNX model gets reduction nodes per tracked blob so ONNX Runtime computes
    the maxima. Two ways to find the positions:

    ``'graph'`` (default on a GPU)
        ``ArgMax`` (the first maximum, as NumPy's) and a gather of the value there run
        in the graph; only (B, C) arrays leave the session, not whole activation maps.
    ``'host'`` (default on the CPU)
        ``ReduceMax`` runs in the graph and the maps are fetched (free on the CPU); the
        tracker looks up positions only for the channels whose maximum can enter their
        top-N, which after the first batches are few.
    """

    def __init__(self, net, blobs, locate=None):
        import onnx
        from onnx import TensorProto, helper

        from ..model.onnx_graph import opset_of

        self.locate = locate or ("host" if net.provider == "CPUExecutionProvider" else "graph")
        if self.locate not in ("host", "graph"):
            raise InputError(f"locate must be 'host' or 'graph', got '{self.locate}'")
        model = onnx.ModelProto()
        model.CopyFrom(net.model)
        g = model.graph
        opset = opset_of(model, 13)
        del g.output[:]

        def const(name, values):  # a Constant node, valid for every IR version and opset
            g.node.append(helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(
                np.asarray(values, np.int64), name)))
            return name

        shape = const("caffevis_maxes/shape_bc_hw", [0, 0, -1])
        axis2 = const("caffevis_maxes/axis2", [2]) if opset >= 13 else None
        self.blobs = list(blobs)
        self.outputs = []
        self.kinds = []
        for i, blob in enumerate(self.blobs):
            flat, mx, arg = (f"caffevis_maxes/{i}/{k}" for k in ("flat", "max", "argmax"))
            g.node.append(helper.make_node("Reshape", [blob, shape], [flat]))
            if self.locate == "graph" and opset >= 11:  # one pass: the argmax, then the value there
                pos = f"caffevis_maxes/{i}/pos"
                g.node.append(helper.make_node("ArgMax", [flat], [pos], axis=2, keepdims=1))
                g.node.append(helper.make_node("GatherElements", [flat, pos], [f"{mx}3"], axis=2))
                for src, dst in ((f"{mx}3", mx), (pos, arg)):
                    g.node.append(helper.make_node("Squeeze", [src, axis2], [dst]) if opset >= 13
                                  else helper.make_node("Squeeze", [src], [dst], axes=[2]))
            elif opset >= 18:
                g.node.append(helper.make_node("ReduceMax", [flat, axis2], [mx], keepdims=0))
            else:
                g.node.append(helper.make_node("ReduceMax", [flat], [mx], axes=[2], keepdims=0))
            if self.locate == "graph" and opset < 11:
                g.node.append(helper.make_node("ArgMax", [flat], [arg], axis=2, keepdims=0))
            g.output.append(helper.make_tensor_value_info(mx, TensorProto.FLOAT, None))
            if self.locate == "graph":
                g.output.append(helper.make_tensor_value_info(arg, TensorProto.INT64, None))
                names = [mx, arg]
            else:
                g.output.append(helper.make_tensor_value_info(flat, TensorProto.FLOAT, None))
                names = [mx, flat]
            self.outputs += names
        self.input_name = net.input_name
        self.session = net.runtime.session(model, net.label)  # the net's threads and provider

    def __call__(self, x):
        """blob -> (maxima (B, C), argmax (B, C) or None, maps (B, C, H*W) or None)."""
        values = self.session.run(self.outputs, {self.input_name: np.ascontiguousarray(x, np.float32)})
        out = {}
        for i, b in enumerate(self.blobs):
            first, second = values[2 * i], values[2 * i + 1]
            out[b] = (first, second, None) if self.locate == "graph" else (first, None, second)
        return out
