"""ONNX operator variants the torchvision fixtures do not use: on one small graph LRN,
PRelu, Elu, Tanh, LeakyRelu, LogSoftmax, auto_pad, ceil-mode max pooling with pads,
AveragePool with pads, ConvTranspose, Split, constant Sub/Div, GlobalMaxPool, a broadcast Mul
of two tensors, Concat, Pad, ReduceMean, Flatten, Gemm with transB=0/alpha/beta; on
single-node graphs asymmetric pads and auto_pad of Conv and the poolings, AveragePool's
count_include_pad 0/1 with ceil_mode, MaxPool dilations, ConvTranspose's output_padding,
output_shape, groups and dilations, Slice with steps and several axes.

Each layer's own forward graph must reproduce every tensor of the original graph, and both
backward engines must give the gradient of a float64 evaluation of the original graph (onnx's
reference evaluator) by central differences."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper as h
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from caffevis.backward import Seed, backward, gradient_session
from caffevis.model.net import Net
from caffevis.model.onnx_import import import_onnx, plans_forward_model
from caffevis.receptive import net_fields
from conftest import assert_directional_derivatives, basis_directions, rel_err


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


@pytest.mark.parametrize("engine", ["onnx", "numpy"])
def test_backward_is_the_float64_gradient(engine):
    # without the LRN: onnx's reference LRN differs from the ONNX formula ORT computes (the
    # forward test checks the LRN against ORT; its gradient is the Caffe LRN's, checked on
    # CaffeNet against real Caffe)
    net = Net.from_onnx_model(_graph(lrn=False), force_cpu=True)
    x = _input().astype(np.float64)
    seed = np.zeros((1, 5), np.float32)
    seed[0, 2] = 1.0  # d out[0, 2] / d x
    got = backward(net, x.astype(np.float32), Seed("out", seed), engine=engine)
    _assert_float64_gradient(_graph(np.float64, lrn=False), x, seed, got, engine, eps=1e-5)
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


def test_unsupported_variant_blocks_backward_with_one_line():
    model = _graph()
    model.graph.node[3].attribute.extend([h.make_attribute("storage_order", 1)])
    net = Net.from_onnx_model(model, force_cpu=True)
    assert net.blocked == "node 'maxpool' (MaxPool, opset 13): MaxPool storage_order 1"
    assert net.forward(_input())["out"].shape == (1, 5)


# -- single-operator variants: asymmetric pads, auto_pad, count_include_pad, dilations, ... --
def _single_op_model(op, attrs, in_shape, weights=(), dtype=np.float32, extra_inputs=(), opset=13):
    """``x -> op -> y`` with seeded random weights (``weights``: name -> shape) and constant
    int64 inputs (``extra_inputs``: name -> values), the output shape from onnx's inference."""
    rng = np.random.RandomState(3)
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [numpy_helper.from_array((rng.randn(*shape) * 0.5).astype(dtype), name) for name, shape in weights]
    inits += [numpy_helper.from_array(np.asarray(v, np.int64), name) for name, v in extra_inputs]
    node = h.make_node(op, ["x"] + [name for name, _ in weights] + [name for name, _ in extra_inputs], ["y"],
                       name="op", **attrs)
    graph = h.make_graph([node], "single", [h.make_tensor_value_info("x", elem, list(in_shape))],
                         [h.make_tensor_value_info("y", elem, None)], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=8 if opset < 21 else 10)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _conv_transpose64(node, consts):
    """ONNX ConvTranspose by its definition, in float64 (onnx's reference evaluator rejects
    groups and output_shape): each input pixel adds its weighted kernel at stride spacing
    into the full output, of which ``pads`` crop the ends (``output_padding`` rows appended)."""
    attrs = {a.name: h.get_attribute_value(a) for a in node.attribute}
    w, b = consts[node.input[1]], consts.get(node.input[2]) if len(node.input) > 2 else None
    (s0, s1), (d0, d1) = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
    group, outpad = attrs.get("group", 1), attrs.get("output_padding", [0, 0])
    kh, kw = w.shape[2:]
    auto = attrs.get("auto_pad", b"NOTSET").decode() if isinstance(attrs.get("auto_pad"), bytes) else "NOTSET"

    def run(x):
        n, c, hh, ww = x.shape
        cg, m = c // group, w.shape[1]
        full = np.zeros((n, m * group, s0 * (hh - 1) + outpad[0] + d0 * (kh - 1) + 1,
                         s1 * (ww - 1) + outpad[1] + d1 * (kw - 1) + 1))
        for g in range(group):
            for i in range(kh):
                for j in range(kw):
                    part = np.einsum("nchw,cm->nmhw", x[:, g * cg:(g + 1) * cg], w[g * cg:(g + 1) * cg, :, i, j])
                    full[:, g * m:(g + 1) * m, i * d0:i * d0 + s0 * (hh - 1) + 1:s0,
                         j * d1:j * d1 + s1 * (ww - 1) + 1:s1] += part
        if "output_shape" in attrs or auto.startswith("SAME"):
            target = attrs.get("output_shape", [hh * s0, ww * s1])
            total = [f - t for f, t in zip(full.shape[2:], target)]
            begin = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
            end = [t - bg for t, bg in zip(total, begin)]
        else:
            pads = attrs.get("pads", [0, 0, 0, 0])
            begin, end = pads[:2], pads[2:]
        y = full[:, :, begin[0]:full.shape[2] - end[0], begin[1]:full.shape[3] - end[1]]
        return y if b is None else y + b[None, :, None, None]
    return run


def _evaluator64(model64):
    """A float64 evaluation of the graph: ORT's kernels where it has float64 ones, else onnx's
    reference evaluator or the definition (callers check it against ORT's float32 forward)."""
    node = model64.graph.node[0]
    if node.op_type == "ConvTranspose":
        return _conv_transpose64(node, {i.name: numpy_helper.to_array(i) for i in model64.graph.initializer})
    try:
        sess = ort.InferenceSession(model64.SerializeToString(), providers=["CPUExecutionProvider"])
        return lambda v: sess.run(None, {"x": v})[0]
    except Exception:  # ORT has no float64 kernel for this op (onnxruntime raises its own types)
        ref = ReferenceEvaluator(model64)
        return lambda v: ref.run(None, {"x": v})[0]


def _assert_float64_gradient(model64, x, seed, got, label, eps=1e-6):
    """``got`` is d sum(seed * y) / dx: each element against central differences of a float64
    evaluation of the graph, within 1e-4 of the gradient's largest element."""
    run = _evaluator64(model64)

    def objective(v):
        return float((run(v) * seed).sum())

    assert_directional_derivatives(objective, x, got, None, label, eps=eps, directions=basis_directions(x.shape),
                                   bound=lambda fd, grad, v: 1e-4 * float(np.abs(grad).max()))


VARIANTS = {
    "conv_asym_pads": ("Conv", dict(pads=[0, 1, 2, 0], strides=[2, 1]), (1, 2, 7, 8), [("w", (3, 2, 3, 3)), ("b", (3,))]),
    "conv_same_upper_s2": ("Conv", dict(auto_pad="SAME_UPPER", strides=[2, 2]), (1, 2, 8, 8), [("w", (3, 2, 3, 3))]),
    "conv_same_lower_s2_group": ("Conv", dict(auto_pad="SAME_LOWER", strides=[2, 2]), (1, 2, 8, 9),
                               [("w", (4, 1, 3, 2))], dict(group=2)),
    "conv_valid_s3": ("Conv", dict(auto_pad="VALID", strides=[3, 2]), (1, 2, 8, 9), [("w", (3, 2, 2, 3))]),
    "convtranspose_asym_outpad": ("ConvTranspose", dict(strides=[2, 3], pads=[1, 0, 0, 2], output_padding=[1, 2]),
                                  (1, 4, 4, 5), [("w", (4, 3, 3, 3)), ("b", (6,))], dict(group=2)),
    "convtranspose_dilated": ("ConvTranspose", dict(strides=[2, 2], dilations=[2, 1], pads=[1, 1, 1, 1]),
                              (1, 2, 4, 4), [("w", (2, 3, 2, 3))]),
    "convtranspose_output_shape": ("ConvTranspose", dict(strides=[2, 2], output_shape=[8, 9]), (1, 2, 4, 4),
                                   [("w", (2, 3, 3, 3))]),
    "convtranspose_same_upper": ("ConvTranspose", dict(strides=[2, 2], auto_pad="SAME_UPPER"), (1, 2, 4, 5),
                                 [("w", (2, 2, 3, 3))]),
    "slice_channels_and_space": ("Slice", {}, (1, 5, 8, 9), [],
                                 {}, [("starts", [1, -7, 2]), ("ends", [4, 100, -1]), ("axes", [1, 2, 3])]),
    "slice_spatial_steps": ("Slice", {}, (1, 3, 9, 10), [],
                            {}, [("starts", [1, 0, 1]), ("ends", [9, 10, 3]), ("axes", [2, 3, 1]),
                                 ("steps", [2, 3, 1])]),
    "slice_channel_step": ("Slice", {}, (1, 6, 5, 5), [],
                           {}, [("starts", [1, 1]), ("ends", [6, 4]), ("axes", [1, -1]), ("steps", [2, 1])]),
    "maxpool_asym_pads": ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 2]), (1, 2, 8, 7), []),
    "maxpool_same_upper_s2": ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER"),
                              (1, 2, 8, 8), []),
    "maxpool_same_lower_ceil": ("MaxPool", dict(kernel_shape=[2, 3], strides=[2, 3], auto_pad="SAME_LOWER"),
                                (1, 2, 7, 8), []),
    "maxpool_ceil_asym": ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0], ceil_mode=1),
                          (1, 2, 8, 8), []),
    "maxpool_dilated": ("MaxPool", dict(kernel_shape=[2, 3], strides=[1, 2], dilations=[2, 2], pads=[1, 1, 1, 1]),
                        (1, 2, 8, 9), []),
    "avepool_exclude_pad": ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                                count_include_pad=0), (1, 2, 8, 7), []),
    "avepool_include_asym": ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 1], pads=[0, 1, 2, 0],
                                                 count_include_pad=1), (1, 2, 7, 6), []),
    "avepool_exclude_ceil": ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1],
                                                 ceil_mode=1, count_include_pad=0), (1, 2, 8, 8), []),
    "avepool_include_ceil": ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1,
                                                 count_include_pad=1), (1, 2, 7, 7), []),
    "avepool_same_lower_exclude_s2": ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_LOWER",
                                                          count_include_pad=0), (1, 2, 8, 7), []),
    "maxpool_valid_s3": ("MaxPool", dict(kernel_shape=[2, 3], strides=[3, 2], auto_pad="VALID"), (1, 2, 8, 9), []),
    "avepool_same_upper": ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
                           (1, 2, 8, 8), []),
}


def _variant(name, dtype=np.float32, opset=13):
    op, attrs, shape, weights, *more = VARIANTS[name]
    attrs = dict(attrs, **(more[0] if more else {}))
    extra = more[1] if len(more) > 1 else ()
    return _single_op_model(op, attrs, shape, weights, dtype, extra, opset), shape


def _own_forward(model, x):
    """The imported layers' own forward graph on ``x``: the value of ``y``."""
    own = ort.InferenceSession(plans_forward_model(import_onnx(model)).SerializeToString(),
                               providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in own.get_outputs()], own.run(None, {"x": x})))["y"]


@pytest.mark.parametrize("opset", [10, 19, 21])
def test_operator_variants_across_opsets(opset):
    """The same variants at other opsets: the importer matches ORT's kernels of those versions."""
    for name in sorted(VARIANTS):
        model, shape = _variant(name, opset=opset)
        x = np.random.RandomState(4).randn(*shape).astype(np.float32)
        want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        got = _own_forward(model, x)
        assert got.shape == want.shape and float(np.abs(got - want).max()) <= 1e-5 * float(np.ptp(want)), name


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_operator_variant(name):
    model, shape = _variant(name)
    net = Net.from_onnx_model(model, force_cpu=True)
    assert net.blocked is None
    x = np.random.RandomState(4).randn(*shape).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    got = _own_forward(model, x)
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= 1e-5 * float(np.ptp(want))
    assert net.blob_shapes["y"] == want.shape
    # both engines: the float64 gradient of a random projection of the output
    seed = np.random.RandomState(5).randn(*want.shape)
    ref64 = _evaluator64(_variant(name, np.float64)[0])(x.astype(np.float64))
    assert float(np.abs(ref64 - want).max()) <= 1e-5 * float(np.ptp(want))  # the reference is ORT's op
    for engine in ("onnx", "numpy"):
        got = backward(net, x, Seed("y", seed.astype(np.float32)), engine=engine)
        _assert_float64_gradient(_variant(name, np.float64)[0], x.astype(np.float64), seed, got, (name, engine))
    # receptive field: a unit's gradient lies inside its region, which its window spans
    fields, checked = net_fields(net)["y"], 0
    for y, xx in ((0, 0), (want.shape[2] - 1, want.shape[3] - 1), (want.shape[2] // 2, want.shape[3] // 2)):
        one = np.zeros(want.shape, np.float32)
        one[0, 0, y, xx] = 1.0
        grad = np.abs(backward(net, x, Seed("y", one), engine="numpy")[0]).sum(axis=0)
        top, left, hh, ww = fields.region(0, y, xx)
        rows, cols = np.nonzero(grad)
        if not rows.size:  # a transposed convolution's output unit that no input reaches
            continue
        checked += 1
        assert rows.min() >= top and rows.max() < top + hh, (y, xx)
        assert cols.min() >= left and cols.max() < left + ww, (y, xx)
    assert checked


@pytest.mark.parametrize("name", sorted(n for n in VARIANTS if VARIANTS[n][0].startswith("Conv")))
def test_conv_variant_weight_gradient(name):
    """The gradient graph's filter gradient (training's) along a random direction v equals
    sum(seed * conv(x; v)): the output is linear in the filters."""
    model, shape = _variant(name)
    net = Net.from_onnx_model(model, force_cpu=True)
    x = np.random.RandomState(4).randn(*shape)
    model64 = _variant(name, np.float64)[0]
    y0 = _evaluator64(model64)(x)
    seed = np.random.RandomState(5).randn(*y0.shape)
    grads = gradient_session(net, "y", params=True).run(x.astype(np.float32), seed.astype(np.float32))["params"]
    (dw, *_), = grads.values()
    w = model64.graph.initializer[0]
    v = np.random.RandomState(6).randn(*dw.shape)
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) + v, w.name))
    want = float((seed * (_evaluator64(model64)(x) - y0)).sum())
    assert abs(float((dw * v).sum()) - want) <= 1e-4 * abs(want)
