"""Bad models: every layer geometry, graph structure and ORT failure is one ModelError line.

Issue #18 classes 1 (layer geometry validated before use), 2 (graph-structure errors and
ORT failures) and 10 (the message names the prototxt or caffemodel). The property tests
build random one- and two-layer nets: each must either load and run (forward and a
backward pass) or be refused with one line naming the file and the layer.
"""
import os
import sys

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from caffevis.backward import Seed, backward
from caffevis.cli import main
from caffevis.errors import ModelError
from caffevis.model import Net
from caffevis.model.caffe import schema, writer
from caffevis.model.caffe.fillers import fill_weights
from caffevis.model.caffe.reader import load_caffe
from conftest import lenet_caffe_paths

LENET_LAYERS = ("conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2")


def lenet_with(tmp_path, edit):
    """The LeNet deploy prototxt changed by ``edit(text) -> text``, next to the real weights."""
    proto, weights = lenet_caffe_paths()
    path = tmp_path / "deploy.prototxt"
    path.write_text(edit(open(proto).read()))
    return str(path), weights


def one_line_model_error(fn):
    with pytest.raises(ModelError) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def write_weights(cnet, path):
    """A caffemodel holding ``cnet``'s (filled) blobs."""
    model = schema.NetParameter(name=cnet.name)
    for layer in cnet.layers:
        model.layer.add(name=layer.name, type=layer.type).blobs.extend(writer.blob_proto(b) for b in layer.blobs)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return str(path)


# -- class 1 and 10: the fuzzer's reproducers ---------------------------------------------------
def _replace(old, new):
    def edit(text):
        assert old in text
        return text.replace(old, new, 1)
    return edit


GEOMETRY = [
    # a 3-D input under a convolution
    (_replace("shape: { dim: 64 dim: 1 dim: 28 dim: 28 }", "shape: { dim: 1 dim: 1 dim: 28 }"),
     "layer 'conv1' (Convolution): bottom shape (1, 1, 28) has 3 axes; expected 4"),
    (_replace("kernel_size: 5\n    stride: 1", "kernel_size: 5\n    stride: 0"),
     "layer 'conv1' (Convolution): stride 0"),
    (_replace("num_output: 20", "num_output: 20\n    group: 0"),
     "layer 'conv1' (Convolution): convolution_param.group 0"),
    (_replace("num_output: 20", "num_output: 0"), "convolution_param.num_output 0"),
    (_replace("kernel_size: 5", "kernel_size: 31"), "kernel 31x31 (dilated) is larger than the padded input 28x28"),
    (_replace("kernel_size: 2\n    stride: 2", "kernel_size: 2\n    stride: 0"), "layer 'pool1' (Pooling): stride 0"),
    (_replace("kernel_size: 2\n    stride: 2", "kernel_size: 0\n    stride: 2"),
     "layer 'pool1' (Pooling): kernel_size 0"),
    (_replace("kernel_size: 2\n    stride: 2", "kernel_size: 30\n    stride: 2\n    round_mode: FLOOR"),
     "layer 'pool1' (Pooling): kernel 30x30 gives an empty output"),
    # a 5-D input under a convolution
    (_replace("shape: { dim: 64 dim: 1 dim: 28 dim: 28 }", "shape: { dim: 1 dim: 1 dim: 28 dim: 28 dim: 1 }"),
     "has 5 axes; expected 4"),
    (_replace("shape: { dim: 64 dim: 1 dim: 28 dim: 28 }", "shape: { dim: 1 dim: 0 dim: 28 dim: 28 }"),
     "input 'data' has shape"),
]


@pytest.mark.parametrize("edit,message", GEOMETRY)
def test_bad_geometry_is_one_line_naming_the_prototxt_and_layer(tmp_path, edit, message):
    proto, weights = lenet_with(tmp_path, edit)
    got = one_line_model_error(lambda: Net.from_caffe(proto, weights, use_cache=False))
    assert message in got and got.startswith(os.path.abspath(proto)), got


def _append(text):
    return lambda base: base + "\n" + text


APPENDED = [
    # pooling and LRN on the 2-D ip2
    ('layer { name: "p" type: "Pooling" bottom: "ip2" top: "p" pooling_param { kernel_size: 2 } }',
     "layer 'p' (Pooling): bottom shape (64, 10) has 2 axes; expected 4"),
    ('layer { name: "n" type: "LRN" bottom: "ip2" top: "n" }', "layer 'n' (LRN): bottom shape (64, 10) has 2 axes"),
    ('layer { name: "n" type: "LRN" bottom: "conv1" top: "n" lrn_param { local_size: 0 } }',
     "lrn_param.local_size 0 must be at least 1"),
    ('layer { name: "l" type: "Log" bottom: "ip2" top: "l" log_param { base: 1 } }', "log_param.base 1"),
    ('layer { name: "r" type: "Reshape" bottom: "ip2" top: "r" reshape_param { shape { dim: 0 dim: 0 dim: 0 } } }',
     "no bottom axis 2 to copy"),
    ('layer { name: "r" type: "Reshape" bottom: "ip2" top: "r" reshape_param { shape { dim: -2 } } }',
     "dims must be positive"),
    ('layer { name: "r" type: "Reshape" bottom: "ip2" top: "r" reshape_param { shape { dim: 3 dim: -1 } } }',
     "cannot reshape (64, 10)"),
    ('layer { name: "f" type: "Flatten" bottom: "conv1" top: "f" flatten_param { axis: 3 end_axis: 1 } }',
     "end_axis 1 comes before axis 3"),
    ('layer { name: "s" type: "Slice" bottom: "conv1" }', "Slice needs at least one top"),
    ('layer { name: "pr" type: "PReLU" bottom: "ip2" top: "pr" }', "caffemodel"),
    # the batch axis is never folded or resized (caffevis runs any batch size)
    ('layer { name: "f" type: "InnerProduct" bottom: "ip2" top: "f" inner_product_param { num_output: 2 axis: 0 } }',
     "inner_product_param.axis 0 is the batch axis"),
    ('layer { name: "r" type: "Reshape" bottom: "ip2" top: "r" reshape_param { shape { dim: 32 dim: 20 } } }',
     "its first axis must stay the batch (64)"),  # no weights: names the file
    ('layer { name: "d" type: "Deconvolution" bottom: "conv1" top: "d" convolution_param { num_output: 2 '
     'kernel_size: 2 stride: 100000 } }', "would hold"),
]


@pytest.mark.parametrize("layer,message", APPENDED)
def test_bad_appended_layer_is_one_line(tmp_path, layer, message):
    proto, weights = lenet_with(tmp_path, _append(layer))
    got = one_line_model_error(lambda: Net.from_caffe(proto, weights, use_cache=False))
    assert message in got, got
    where = os.path.abspath(weights if message == "caffemodel" else proto)
    assert got.startswith(where), got


# -- class 2: graph structure ---------------------------------------------------------------------
STRUCTURE = [
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "data" }', "layer 'r' (ReLU) writes the input blob 'data'"),
    ('layer { name: "s" type: "Silence" bottom: "data" top: "data" }', "layer 's' (Silence) writes the input blob"),
    ('layer { name: "s" type: "Silence" bottom: "ip2" top: "x" }', "layer 's' (Silence) has 1 tops, expected 0"),
    ('layer { name: "c" type: "ReLU" bottom: "ip1" top: "conv1" }', "top blob 'conv1' is produced by an earlier"),
    ('layer { name: "ip1" type: "ReLU" bottom: "ip2" top: "z" }', "the layer name 'ip1' is used twice"),
    ('layer { name: "z" type: "Split" bottom: "ip2" top: "a" top: "a" }', "names a top blob twice"),
    ('layer { name: "z" type: "Eltwise" bottom: "ip2" bottom: "ip1" top: "e" }', "Eltwise bottoms have different"),
    ('layer { name: "z" type: "Concat" bottom: "ip2" bottom: "conv1" top: "e" }', "differ outside axis 1"),
    ('layer { name: "z" type: "Nope" bottom: "ip2" top: "e" }', "unsupported layer type 'Nope'"),
    # a blob named like the converter's name for an earlier version of relu1's blob
    ('layer { name: "z" type: "ReLU" bottom: "ip2" top: "ip1@ip1" }', "used twice in the ONNX graph"),
]


@pytest.mark.parametrize("layer,message", STRUCTURE)
def test_graph_structure_errors_are_one_line(tmp_path, layer, message):
    proto, weights = lenet_with(tmp_path, _append(layer))
    got = one_line_model_error(lambda: Net.from_caffe(proto, weights, use_cache=False))
    assert message in got, got


def test_ort_failures_name_the_model_and_node():
    """An ORT error at session creation or at run time is one line with the node ORT names."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    shape = onnx.numpy_helper.from_array(np.array([3, -1], np.int64), "target")
    reshape = onnx.helper.make_node("Reshape", ["x", "target"], ["y"], name="bad_reshape")
    model = onnx.helper.make_model(onnx.helper.make_graph([reshape], "shapes", [x], [y], [shape]),
                                   opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    message = one_line_model_error(lambda: Net.from_onnx_model(model))  # the shape probe runs batch 1
    assert message.startswith("shapes: ONNX Runtime failed at node 'bad_reshape'"), message
    broken = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("NoSuchOp", ["x"], ["y"], name="weird")], "broken", [x], [y]),
        opset_imports=[onnx.helper.make_opsetid("", 17)])
    broken.ir_version = 8
    message = one_line_model_error(lambda: Net.from_onnx_model(broken))
    assert message.startswith("broken: ONNX Runtime failed") and "NoSuchOp" in message, message


# -- the CLI: exit 2, one line, no traceback ---------------------------------------------------------
@pytest.mark.parametrize("edit,message", GEOMETRY[:3] + [(_append(STRUCTURE[0][0]), STRUCTURE[0][1])])
def test_forward_command_exits_2_with_one_line(tmp_path, capsys, edit, message):
    proto, weights = lenet_with(tmp_path, edit)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    code = main(["forward", f"{proto}:{weights}", "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "out.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if not line.startswith("caffevis: running on")]
    assert code == 2 and len(lines) == 1 and message in lines[0] and proto in lines[0], err
    assert not (tmp_path / "out.npz").exists()


def test_forward_command_subprocess_has_no_traceback(tmp_path):
    import subprocess

    proto, weights = lenet_with(tmp_path, GEOMETRY[0][0])
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28), np.float32))
    r = subprocess.run([sys.executable, "-m", "caffevis", "forward", f"{proto}:{weights}", "--input",
                        str(tmp_path / "x.npy"), "-o", str(tmp_path / "out.npz")], capture_output=True, text=True,
                       env=dict(os.environ, CAFFEVIS_CACHE=str(tmp_path / "cache")), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "has 3 axes; expected 4" in r.stderr


# -- properties: random layers either run or fail with one line ---------------------------------------
# mostly (N, C, H, W), sometimes any rank
INPUT = st.one_of(st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
                  st.lists(st.integers(1, 9), min_size=1, max_size=5).map(tuple))
TOPS = st.sampled_from([1, 1, 1, 1, 1, 0, 2, 3])


def _pair_fields(draw, name, low=-1, high=6):
    """A random Caffe pair field: absent, one value, or _h/_w."""
    form = draw(st.sampled_from(["none", "one", "one", "hw"]))
    if form == "one":
        return f"{name}: {draw(st.integers(max(low, 0), high))} "
    if form == "hw":
        return f"{name}_h: {draw(st.integers(max(low, 0), high))} {name}_w: {draw(st.integers(max(low, 0), high))} "
    return ""


@st.composite
def geometry_layer(draw):
    """A random spatial layer (class 1): any parameters, any bottom rank."""
    kind = draw(st.sampled_from(["Convolution", "Deconvolution", "Pooling", "LRN"]))
    if kind == "Pooling":
        params = (f"pooling_param {{ pool: {draw(st.sampled_from(['MAX', 'AVE']))} "
                  + _pair_fields(draw, "kernel") + _pair_fields(draw, "stride") + _pair_fields(draw, "pad")
                  + draw(st.sampled_from(["", "global_pooling: true", "round_mode: FLOOR"])) + " }")
        params = params.replace("kernel: ", "kernel_size: ").replace("stride: ", "stride: ").replace("pad: ", "pad: ")
    elif kind == "LRN":
        params = (f"lrn_param {{ local_size: {draw(st.integers(0, 7))} "
                  f"norm_region: {draw(st.sampled_from(['ACROSS_CHANNELS', 'WITHIN_CHANNEL']))} }}")
    else:
        params = (f"convolution_param {{ num_output: {draw(st.integers(0, 6))} group: {draw(st.integers(0, 2))} "
                  + _pair_fields(draw, "kernel").replace("kernel: ", "kernel_size: ") + _pair_fields(draw, "stride")
                  + _pair_fields(draw, "pad") + (f"dilation: {draw(st.integers(0, 3))} " if draw(st.booleans()) else "")
                  + " }")
    return kind, params


@st.composite
def shape_layer(draw):
    """A random layer of the other families, with random axes and sizes."""
    kind = draw(st.sampled_from(["InnerProduct", "Flatten", "Reshape", "Softmax", "Slice", "Concat", "Crop",
                                 "Eltwise", "Scale", "Bias", "PReLU", "BatchNorm", "ReLU", "Power", "Exp", "Log"]))
    axis = draw(st.integers(-5, 4))
    params = {
        "InnerProduct": f"inner_product_param {{ num_output: {draw(st.integers(0, 5))} axis: {axis} }}",
        "Flatten": f"flatten_param {{ axis: {axis} end_axis: {draw(st.integers(-6, 6))} }}",
        "Reshape": "reshape_param { shape { " + " ".join(f"dim: {d}" for d in draw(st.lists(st.integers(-2, 12),
                                                                                          max_size=4)))
                   + f" }} axis: {axis} num_axes: {draw(st.integers(-2, 4))} }}",
        "Softmax": f"softmax_param {{ axis: {axis} }}",
        "Slice": f"slice_param {{ axis: {axis} " + " ".join(f"slice_point: {p}" for p in
                                                             draw(st.lists(st.integers(0, 9), max_size=2))) + " }",
        "Concat": f"concat_param {{ axis: {axis} }}",
        "Crop": f"crop_param {{ axis: {axis} " + " ".join(f"offset: {o}" for o in
                                                          draw(st.lists(st.integers(0, 3), max_size=3))) + " }",
        "Eltwise": f"eltwise_param {{ operation: {draw(st.sampled_from(['PROD', 'SUM', 'MAX']))} }}",
        "Scale": f"scale_param {{ axis: {axis} num_axes: {draw(st.integers(-2, 4))} bias_term: true }}",
        "Bias": f"bias_param {{ axis: {axis} num_axes: {draw(st.integers(-2, 4))} }}",
        "PReLU": f"prelu_param {{ channel_shared: {draw(st.sampled_from(['true', 'false']))} }}",
        "BatchNorm": "",
        "ReLU": f"relu_param {{ negative_slope: {draw(st.sampled_from([0, 0.1]))} }}",
        "Power": f"power_param {{ power: {draw(st.sampled_from([1, 2, 0.5]))} shift: 1 }}",
        "Exp": f"exp_param {{ base: {draw(st.sampled_from([-1, 0, 1, 2]))} }}",
        "Log": f"log_param {{ base: {draw(st.sampled_from([-1, 0, 1, 2]))} shift: 20 }}",
    }[kind]
    return kind, params


def _net_text(shape, kind, params, bottoms, tops):
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'
            'layer { name: "pre" type: "Power" bottom: "data" top: "pre" }\n'
            f'layer {{ name: "x" type: "{kind}" ' + "".join(f'bottom: "{b}" ' for b in bottoms)
            + "".join(f'top: "{t}" ' for t in tops) + f"{params} }}\n")


def check_loads_and_runs_or_refuses(tmp_path, text):
    """Either the net converts, runs forward and a backward pass, or one ModelError line names the file."""
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(text)
    try:
        cnet = fill_weights(load_caffe(str(proto)), seed=0)
    except ModelError as err:
        assert "\n" not in str(err) and str(err).startswith(str(proto)), str(err)
        event("refused: " + str(err).split(": ", 2)[-1][:40])
        return False
    weights = write_weights(cnet, tmp_path / "w.caffemodel")
    try:
        net = Net.from_caffe(str(proto), weights, use_cache=False)
        x = np.random.default_rng(0).normal(size=net.input_shape).astype(np.float32)
        blobs = net.forward(x)
    except ModelError as err:
        assert "\n" not in str(err), str(err)
        event("refused at load or run")
        return False
    last = net.blob_names[-1]
    assert blobs[last].shape == net.blob_shapes[last]
    for engine in ("onnx", "numpy"):
        backward(net, x, Seed(last, np.ones_like(blobs[last])), engine=engine)
    event("ran")
    return True


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(shape=INPUT, layer=geometry_layer())
def test_random_geometry_runs_or_is_one_line(tmp_path, shape, layer):
    kind, params = layer
    check_loads_and_runs_or_refuses(tmp_path, _net_text(shape, kind, params, ["pre"], ["y"]))


@SETTINGS
@given(shape=INPUT, layer=shape_layer(), two=st.sampled_from([False, False, True]), tops=TOPS)
def test_random_layers_run_or_are_one_line(tmp_path, shape, layer, two, tops):
    kind, params = layer
    bottoms = ["pre", "data"] if two else ["pre"]
    check_loads_and_runs_or_refuses(tmp_path, _net_text(shape, kind, params, bottoms, [f"y{i}" for i in range(tops)]))


@SETTINGS
@given(shape=INPUT, kind=st.sampled_from(["ReLU", "Silence", "Dropout", "Split", "Concat"]),
       tops=st.lists(st.sampled_from(["data", "pre", "y", "y", "z"]), min_size=1, max_size=3),
       bottoms=st.lists(st.sampled_from(["data", "pre", "pre", "nowhere"]), min_size=1, max_size=3))
def test_random_graph_structure_runs_or_is_one_line(tmp_path, shape, kind, tops, bottoms):
    check_loads_and_runs_or_refuses(tmp_path, _net_text(shape, kind, "", bottoms, tops))
