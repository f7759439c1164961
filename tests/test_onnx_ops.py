"""ONNX operator variants the torchvision fixtures do not use, on one small graph: LRN,
PRelu, Elu, Tanh, LeakyRelu, LogSoftmax, auto_pad, ceil-mode max pooling with pads,
AveragePool with pads, ConvTranspose, Split, constant Sub/Div, GlobalMaxPool, a broadcast Mul
of two tensors, Concat, Pad, ReduceMean, Flatten, Gemm with transB=0/alpha/beta.

Each layer's own forward graph must reproduce every tensor of the original graph, and both
backward engines must give the gradient of a float64 evaluation of the original graph (onnx's
reference evaluator) by central differences."""
import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper as h
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from caffevis.backward import Seed, backward
from caffevis.model.net import Net
from caffevis.model.onnx_import import import_onnx, plans_forward_model
from caffevis.receptive import net_fields
from conftest import rel_err


def _graph(dtype=np.float32, lrn=True):
    rng = np.random.RandomState(0)
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))

    def init(name, *shape, scale=0.5, value=None):
        arr = value if value is not None else rng.randn(*shape) * scale
        return numpy_helper.from_array(np.asarray(arr, dtype), name)

    inits = [init("w1", 4, 3, 3, 3), init("b1", 4), init("slope", 4, 1, 1, scale=0.2),
             init("wt", 4, 4, 3, 3), init("c_sub", 3, 1, 1), init("c_div", value=2.0),
             init("wg", 24, 5), init("cg", 5), numpy_helper.from_array(np.array([1, 3], np.int64), "split"),
             numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64), "pads")]
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c1"], auto_pad="SAME_UPPER", name="conv"),
        h.make_node("LRN", ["c1"], ["l1"], size=3, alpha=0.01, beta=0.75, bias=2.0, name="lrn") if lrn
        else h.make_node("Identity", ["c1"], ["l1"], name="lrn"),
        h.make_node("PRelu", ["l1", "slope"], ["p1"], name="prelu"),
        h.make_node("MaxPool", ["p1"], ["m1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                    ceil_mode=1, name="maxpool"),
        h.make_node("ConvTranspose", ["m1", "wt"], ["t1"], pads=[1, 1, 1, 1], name="deconv"),
        h.make_node("Elu", ["t1"], ["e1"], alpha=0.7, name="elu"),
        h.make_node("AveragePool", ["e1"], ["a1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1,
                    name="avepool"),
        h.make_node("Split", ["a1", "split"], ["sa", "sb"], axis=1, name="split"),
        h.make_node("Tanh", ["sa"], ["th"], name="tanh"),
        h.make_node("Sub", ["sb", "c_sub"], ["su"], name="sub"),
        h.make_node("Div", ["su", "c_div"], ["dv"], name="div"),
        h.make_node("GlobalMaxPool", ["dv"], ["gm"], name="gmax"),
        h.make_node("Mul", ["dv", "gm"], ["bm"], name="se_mul"),
        h.make_node("Concat", ["th", "bm"], ["cc"], axis=1, name="concat"),
        h.make_node("Pad", ["cc", "pads"], ["pd"], mode="constant", name="pad"),
        h.make_node("ReduceMean", ["pd"], ["rm"], axes=[3], keepdims=1, name="rmean"),
        h.make_node("Flatten", ["rm"], ["fl"], axis=1, name="flatten"),
        h.make_node("Gemm", ["fl", "wg", "cg"], ["gm_out"], alpha=0.5, beta=2.0, name="gemm"),
        h.make_node("LeakyRelu", ["gm_out"], ["lk"], alpha=0.1, name="leaky"),
        h.make_node("LogSoftmax", ["lk"], ["out"], axis=1, name="logsoftmax"),
    ]
    graph = h.make_graph(nodes, "ops", [h.make_tensor_value_info("x", elem, [1, 3, 9, 9])],
                         [h.make_tensor_value_info("out", elem, [1, 5])], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)], ir_version=8)


@pytest.fixture(scope="module")
def net():
    return Net.from_onnx_model(_graph(), force_cpu=True)


def _input():
    return np.random.RandomState(1).randn(1, 3, 9, 9).astype(np.float32)


def test_every_operator_imports(net):
    assert net.blocked is None
    assert [p.type for p in net.layers] == [
        "Convolution", "LRN", "PReLU", "Pooling", "Deconvolution", "ELU", "Pooling", "Slice", "TanH", "Bias",
        "Scale", "Pooling", "Broadcast", "Concat", "Pad2D", "ReduceMean", "Flatten", "InnerProduct", "ReLU",
        "LogSoftmax"]
    assert net.blob_shapes["m1"] == (1, 4, 5, 5) and net.blob_shapes["pd"] == (1, 4, 6, 6)


def test_layer_forward_reproduces_every_tensor(net):
    x = _input()
    blobs = net.forward(x)
    model = plans_forward_model(import_onnx(_graph()))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for name, value in zip(names, sess.run(names, {"x": x})):
        assert rel_err(value, blobs[name]) < 1e-5, name
    # the LRN by the ONNX formula: x / (bias + alpha/size * sum of squares over the window)^beta
    c1 = blobs["c1"].astype(np.float64)
    sq = np.pad(c1 ** 2, [(0, 0), (1, 1), (0, 0), (0, 0)])
    window = sq[:, :-2] + sq[:, 1:-1] + sq[:, 2:]
    assert rel_err(blobs["l1"], c1 / (2.0 + 0.01 / 3 * window) ** 0.75) < 1e-6


@functools.lru_cache(maxsize=None)
def _numeric_gradient(unit):
    """d out[0, unit] / d x by central differences on a float64 evaluation (no LRN)."""
    x = _input().astype(np.float64)
    ref = ReferenceEvaluator(_graph(np.float64, lrn=False))

    def f(v):
        return ref.run(None, {"x": v})[0][0, unit]

    numeric = np.zeros_like(x)
    eps = 1e-5
    for i in range(x.size):
        step = np.zeros_like(x)
        step.flat[i] = eps
        numeric.flat[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return numeric


@pytest.mark.parametrize("engine", ["onnx", "numpy"])
def test_backward_is_the_float64_gradient(engine):
    # without the LRN: onnx's reference LRN differs from the ONNX formula ORT computes (the
    # forward test checks the LRN against ORT; its gradient is the Caffe LRN's, checked on
    # CaffeNet against real Caffe)
    net = Net.from_onnx_model(_graph(lrn=False), force_cpu=True)
    x = _input().astype(np.float64)
    unit = 2
    numeric = _numeric_gradient(unit)
    seed = np.zeros((1, 5), np.float32)
    seed[0, unit] = 1.0
    got = backward(net, x.astype(np.float32), Seed("out", seed), engine=engine)
    assert rel_err(got, numeric) < 1e-4
    # below the LeakyRelu there is no Relu node: deconv and guided keep the exact gradients
    # (PRelu, Elu, the poolings, ...), as Captum does for modules other than nn.ReLU
    below = Seed("gm_out", np.array([[1.0, -2.0, 0.5, 3.0, -1.0]], np.float32))
    plain = backward(net, x.astype(np.float32), below, engine=engine)
    for mode in ("deconv", "guided"):
        assert rel_err(backward(net, x.astype(np.float32), below, mode=mode, engine=engine), plain) < 1e-6, mode


def test_receptive_fields_through_the_new_types(net):
    fields = net_fields(net)
    assert fields["c1"].field_size() == (3, 3) and fields["c1"].region(0, 0, 0) == (-1, -1, 3, 3)
    assert fields["m1"].field_size() == (5, 5)
    # one row padded above, none on the left: pd's unit (1, 0) is cc's unit (0, 0)
    assert fields["pd"].region(0, 1, 0) == fields["cc"].region(0, 0, 0)
    assert fields["bm"].whole  # scaled by a global max: every pixel counts


def test_asymmetric_pads_block_backward_with_one_line():
    model = _graph()
    conv = model.graph.node[0]
    del conv.attribute[:]
    conv.attribute.extend([h.make_attribute("pads", [0, 0, 1, 1]), h.make_attribute("kernel_shape", [2, 2])])
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((4, 3, 2, 2), np.float32), "w1"))
    net = Net.from_onnx_model(model, force_cpu=True)
    assert net.blocked == "node 'conv' (Conv, opset 13): asymmetric Conv pads [0, 0, 1, 1]"
    assert net.forward(_input())["out"].shape == (1, 5)
