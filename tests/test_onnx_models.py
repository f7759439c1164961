"""ONNX models from other exporters through the whole toolbox (issue #14).

The torchvision fixtures (tests/data/torchvision, written by tools/export_torchvision.py)
carry PyTorch's logits, autograd input gradients from a logit unit and from one channel of
an intermediate tensor, and Captum's GuidedBackprop/Deconvolution arrays, with tolerances
measured there. Every model is imported (every node a layer, blobs named by tensor),
its layers' own forward graph must reproduce every tensor of the original graph, and both
backward engines must reproduce PyTorch in all three modes. mnist-8.onnx (CNTK, opset 8,
real weights) runs end to end on MNIST.
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from caffevis.backward import Seed, backward
from caffevis.errors import ModelError
from caffevis.model.net import Net
from caffevis.model.onnx_import import import_onnx, plans_forward_model
from caffevis.receptive import net_fields
from conftest import REPO, assert_directional_derivatives, cli, basis_directions, rel_err, shared_path

DATA = os.path.join(REPO, "tests", "data", "torchvision")
with open(os.path.join(DATA, "manifest.json"), encoding="utf-8") as _f:
    MANIFEST = json.load(_f)
MODELS = sorted(MANIFEST["models"])
# (mode, npz key prefix): backprop is autograd, guided/deconv Captum's
MODES = (("backprop", "grad"), ("guided", "guided"), ("deconv", "deconv"))

_nets = {}


def fixture(name):
    if name not in _nets:
        entry = MANIFEST["models"][name]
        _nets[name] = (Net.from_onnx(os.path.join(DATA, entry["onnx"]), force_cpu=True),
                       dict(np.load(os.path.join(DATA, entry["npz"]))))
    return _nets[name]


def seeds(net, arrays):
    """The fixture's two seeds: its top logit unit, and its activation channel's own map."""
    logit = np.zeros((1,) + net.blob_shapes["logits"][1:], np.float32)
    logit[0, int(arrays["logit_unit"])] = 1.0
    act = str(arrays["act_tensor"])
    channel = np.zeros((1,) + net.blob_shapes[act][1:], np.float32)
    channel[0, int(arrays["act_channel"])] = arrays["act_seed_map"]
    return {"logit": Seed("logits", logit), "act": Seed(act, channel)}


@pytest.mark.parametrize("name", MODELS)
def test_every_node_becomes_a_layer_and_blobs_keep_tensor_names(name):
    net, arrays = fixture(name)
    model = onnx.load(os.path.join(DATA, MANIFEST["models"][name]["onnx"]))
    assert net.blocked is None and net.layers
    assert net.blob_names[0] == net.input_name == "input"
    assert "logits" in net.blob_names and str(arrays["act_tensor"]) in net.blob_names
    data_tensors = {o for n in model.graph.node for o in n.output}
    assert set(net.blob_names[1:]) <= data_tensors
    # a blob is the output of exactly one layer
    tops = [t for p in net.layers for t in p.tops]
    assert len(tops) == len(set(tops)) == len(net.blob_names) - 1


@pytest.mark.parametrize("name", MODELS)
def test_layer_forward_reproduces_every_tensor_and_pytorch_logits(name):
    net, arrays = fixture(name)
    x = arrays["input"]
    blobs = net.forward(x)
    span = float(np.ptp(arrays["logits"]))
    assert np.abs(blobs["logits"] - arrays["logits"]).max() <= MANIFEST["forward_tol"] * span
    model = plans_forward_model(import_onnx(onnx.load(os.path.join(DATA, MANIFEST["models"][name]["onnx"]))))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for blob, value in zip(names, sess.run(names, {"input": x})):
        ref = blobs[blob]
        scale = max(float(np.ptp(ref)), float(np.abs(ref).max()), 1e-6)  # tiny SE tensors: their magnitude
        assert np.abs(value - ref).max() <= MANIFEST["forward_tol"] * scale, blob
    # exported with batch 1, run with any batch (the Reshape shapes copy the batch)
    batch = np.concatenate([x, x[:, :, ::-1]])
    assert np.allclose(net.forward(batch)["logits"][1:], net.forward(x[:, :, ::-1])["logits"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("engine", ["onnx", "numpy"])
@pytest.mark.parametrize("name", MODELS)
def test_backward_matches_pytorch_and_captum(name, engine):
    net, arrays = fixture(name)
    checked = 0
    for which, seed in seeds(net, arrays).items():
        for mode, prefix in MODES:
            key = f"{prefix}_{which}"
            if key not in arrays:
                continue  # no Captum arrays for densenet (a functional relu)
            got = backward(net, arrays["input"], seed, mode=mode, engine=engine)
            err = rel_err(got, arrays[key])
            assert err <= float(arrays[f"tol_{key}"]), f"{key}: {err:.2e}"
            checked += 1
    assert checked == (2 if name == "densenet121" else 6)


def test_relu_rule_applies_at_relu_nodes_only():
    """mobilenet_v2 has no Relu node (ReLU6 is Clip): deconv and guided equal the gradient;
    in resnet18 they differ from it."""
    for name, same in (("mobilenet_v2", True), ("resnet18", False)):
        net, arrays = fixture(name)
        seed = seeds(net, arrays)["logit"]
        grad = backward(net, arrays["input"], seed, mode="backprop")
        for mode in ("deconv", "guided"):
            assert (rel_err(backward(net, arrays["input"], seed, mode=mode), grad) < 1e-5) == same, (name, mode)


def test_receptive_fields_from_the_graph():
    net, _ = fixture("resnet18")
    fields = net_fields(net)
    assert fields["/conv1/Conv_output_0"].field_size() == (7, 7)  # 7x7 stride 2 pad 3
    assert fields["/conv1/Conv_output_0"].region(0, 1, 1) == (-1, -1, 7, 7)
    assert fields["/maxpool/MaxPool_output_0"].field_size() == (11, 11)  # 3x3 stride 2 on stride 2
    assert fields["logits"].whole


def _with_unsupported_node():
    """A tiny Conv -> Erf -> Relu graph (Erf has no layer type)."""
    h = onnx.helper
    w = onnx.numpy_helper.from_array(np.random.RandomState(0).randn(2, 1, 3, 3).astype(np.float32), "w")
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             h.make_node("Erf", ["c"], ["e"], name="erf_node"),
             h.make_node("Relu", ["e"], ["y"], name="relu")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 5, 5])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 5, 5])], [w])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)], ir_version=8)


def test_unsupported_operator_leaves_forward_and_names_the_node(capsys):
    net = Net.from_onnx_model(_with_unsupported_node(), force_cpu=True)
    assert net.blocked == "node 'erf_node' (Erf, opset 13): operator not supported"
    assert "caffevis: g: forward only: node 'erf_node' (Erf, opset 13): operator not supported\n" in capsys.readouterr().err
    x = np.random.RandomState(1).rand(1, 1, 5, 5).astype(np.float32)
    blobs = net.forward(x)
    assert set(blobs) == {"x", "c", "e", "y"}
    with pytest.raises(ModelError, match="backward needs the net's layers; node 'erf_node' \\(Erf, opset 13\\)"):
        backward(net, x, Seed("y", np.ones((1, 2, 5, 5), np.float32)))
    with pytest.raises(ModelError, match="receptive fields .*'erf_node'"):
        net_fields(net)


def test_forward_only_net_ending_in_integers_forwards_its_float_tensors():
    h = onnx.helper
    model = _with_unsupported_node()
    model.graph.node.append(h.make_node("ArgMax", ["y"], ["label"], axis=1, name="argmax"))
    del model.graph.output[:]
    model.graph.output.append(h.make_tensor_value_info("label", onnx.TensorProto.INT64, None))
    net = Net.from_onnx_model(model, force_cpu=True)
    assert net.blocked and net.blob_names == ["x", "c", "e", "y"]  # the int64 ArgMax output is no blob
    blobs = net.forward(np.random.RandomState(1).rand(1, 1, 5, 5).astype(np.float32))
    assert list(blobs) == ["x", "c", "e", "y"] and blobs["y"].min() >= 0


# -- mnist-8.onnx: CNTK export, opset 8, real weights ------------------------------------
def mnist_net():
    return Net.from_onnx(shared_path("models", "mnist_onnx", "mnist-8.onnx"), force_cpu=True)


def test_mnist8_imports_opset8_quirks():
    net = mnist_net()
    types = [p.type for p in net.layers]
    # Conv SAME_UPPER, bias as a broadcast Add (Bias), MatMul of a folded Reshape(initializer)
    assert types == ["Convolution", "Bias", "ReLU", "Pooling", "Convolution", "Bias", "ReLU", "Pooling",
                     "Reshape", "InnerProduct", "Bias"]
    assert net.input_name == "Input3" and net.blob_names[-1] == "Plus214_Output_0"
    assert net.layers[0].attrs["pad"] == (2, 2)
    # MaxPool 3x3 stride 3 on 14x14: floor rounding (Caffe's ceil rule would give 5x5)
    assert net.blob_shapes["Pooling160_Output_0"] == (1, 16, 4, 4)
    fields = net_fields(net)
    assert fields["Pooling66_Output_0"].field_size() == (6, 6)
    assert fields["Pooling160_Output_0"].field_size() == (18, 18)


def test_mnist8_accuracy_and_backward():
    from caffevis.lenet import mnist

    net = mnist_net()
    images, labels = mnist.load("test", shared_path("data", "mnist"))
    x = images[:300].astype(np.float32)[:, None]  # the CNTK model takes raw 0-255 pixels
    logits = np.concatenate([net.forward(x[i:i + 1])["Plus214_Output_0"] for i in range(len(x))])
    accuracy = float(np.mean(logits.argmax(1) == labels[:300]))
    assert accuracy >= 0.97
    # backprop of the true class: both engines, and central differences of the logit
    xi, label = x[:1], int(labels[0])
    seed = np.zeros((1, 10), np.float32)
    seed[0, label] = 1.0
    g_graph = backward(net, xi, Seed("Plus214_Output_0", seed), engine="onnx")
    g_numpy = backward(net, xi, Seed("Plus214_Output_0", seed), engine="numpy")
    assert rel_err(g_graph, g_numpy) < 1e-5
    # central differences at pixels with large gradients, on the digit plus a little noise
    # (blank areas make exact max-pool ties, where a gradient is one of several valid ones);
    # the logit is ~8e3, so float32 leaves ~1e-3 of resolution in each difference
    noisy = xi + np.random.RandomState(0).rand(*xi.shape).astype(np.float32)
    g = backward(net, noisy, Seed("Plus214_Output_0", seed), engine="onnx")

    def logit(v):
        return float(net.forward(v.astype(np.float32))["Plus214_Output_0"][0, label])

    assert_directional_derivatives(logit, noisy, g, None, "mnist logit", eps=0.05,
                                   directions=basis_directions(noisy.shape, np.argsort(-np.abs(g).ravel())[:5]),
                                   bound=lambda fd, grad, v: 0.02 * float(np.abs(grad).max()))


# -- command line (the interfaces issue #14 asks to keep stable) -------------------------
def test_forward_and_backward_cli_on_an_onnx_model(tmp_path):
    model = os.path.join(DATA, "resnet18.onnx")
    arrays = fixture("resnet18")[1]
    x = tmp_path / "x.npy"
    np.save(x, arrays["input"])
    r = cli("forward", model, "--input", x, "-o", tmp_path / "blobs.npz", "--cpu")
    assert r.returncode == 0, r.stderr
    blobs = np.load(tmp_path / "blobs.npz")
    act = str(arrays["act_tensor"])
    assert act in blobs.files and "logits" in blobs.files  # blob names are tensor names
    span = float(np.ptp(arrays["logits"]))
    assert np.abs(blobs["logits"] - arrays["logits"]).max() <= MANIFEST["forward_tol"] * span
    diff = np.zeros(blobs[act].shape, np.float32)
    diff[0, int(arrays["act_channel"])] = arrays["act_seed_map"]
    np.save(tmp_path / "d.npy", diff)
    for mode, key in (("backprop", "grad_act"), ("deconv", "deconv_act"), ("guided", "guided_act")):
        r = cli("backward", model, "--input", x, "--blob", act, "--diff", tmp_path / "d.npy", "--mode", mode,
                "-o", tmp_path / "g.npy", "--cpu")
        assert r.returncode == 0, r.stderr
        assert rel_err(np.load(tmp_path / "g.npy"), arrays[key]) <= float(arrays[f"tol_{key}"]), mode


# -- preprocessing for such models -------------------------------------------------------
def test_torchvision_preset_normalizes_like_torchvision(tmp_path):
    from caffevis.preprocess import Preprocessor
    from caffevis.settings import load_settings, preset_overrides

    overrides = preset_overrides("torchvision")
    overrides["caffevis_onnx_model"] = os.path.join(DATA, "resnet18.onnx")
    settings = load_settings(None, overrides)
    net = settings.open_net(force_cpu=True)
    pre = Preprocessor.from_settings(settings, net.input_shape)
    image = np.random.RandomState(0).randint(0, 256, (64, 64, 3)).astype(np.uint8)
    x = pre.transform(image)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    ref = ((image / 255.0 - mean) / std).transpose(2, 0, 1)  # RGB, as torchvision's transforms
    assert np.abs(x - ref).max() < 1e-5
    assert np.abs(pre.deprocess(x) - image).max() < 1e-3
    # find-maxes' preparer (its job config from the same settings) normalizes the same way
    from caffevis.mining.scan import ScanJob, make_preparer, preprocess_from_settings

    job = ScanJob(model="m.onnx", source={"kind": "files", "path": str(tmp_path)}, blobs=["logits"],
                  preprocess=dict(preprocess_from_settings(settings), geometry="stretch"))
    prepared = make_preparer(job, net)(image)
    assert np.abs(prepared - Preprocessor.from_settings(settings, net.input_shape).preprocess(
        image, mode="stretch")[0]).max() < 1e-6
    with pytest.raises(Exception, match="caffevis_data_std"):
        Preprocessor.from_settings(settings.replace(caffevis_data_std=[1.0, 2.0]), net.input_shape)


def test_settings_input_size_fixes_dynamic_height_and_width(tmp_path):
    from caffevis.settings import load_settings

    model = onnx.load(os.path.join(DATA, "squeezenet1_1.onnx"))
    for d, name in zip(model.graph.input[0].type.tensor_type.shape.dim, ("N", 3, "H", "W")):
        if isinstance(name, str):
            d.Clear()
            d.dim_param = name
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, path)
    settings = load_settings(None, {"caffevis_onnx_model": str(path), "caffevis_data_hw": [96, 80]})
    net = settings.open_net(force_cpu=True)
    assert net.input_shape == (1, 3, 96, 80) and net.blocked is None
    assert net.forward(np.zeros((1, 3, 96, 80), np.float32))["logits"].shape == (1, 10)
    with pytest.raises(ModelError, match="caffevis_data_hw"):
        Net.from_onnx(str(path), force_cpu=True)


def test_optimizer_input_space_with_per_channel_std():
    """x + mean_net in [0, high] per channel is exactly the images with pixels in 0-255."""
    from caffevis.optimize import InputSpace, clip_to_pixel_range

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    space = InputSpace.build((1, 3, 4, 4), mean, 1 / 255, None, (0, 1, 2), std=std)
    pixels = np.random.RandomState(0).uniform(-50, 300, (3, 4, 4))
    x = (pixels / 255 - np.reshape(mean, (3, 1, 1))) / np.reshape(std, (3, 1, 1))  # net input
    clipped = clip_to_pixel_range(x, space)
    ref = (np.clip(pixels, 0, 255) / 255 - np.reshape(mean, (3, 1, 1))) / np.reshape(std, (3, 1, 1))
    assert np.abs(clipped - ref).max() < 1e-6  # the mean is read as float32


def test_mining_an_onnx_model_writes_under_the_output_folder(tmp_path):
    """find-maxes, crop-max-patches and make-unit-vis on tensor names with slashes: one
    folder per blob (slashes become '_'), nothing written outside the output folder."""
    images = shared_path("data", "images", "dvt_input_images")
    settings = os.path.join(REPO, "settings", "onnx_example.yaml")
    act = "/layer2/layer2.0/relu_1/Relu_output_0"
    r = cli("find-maxes", "--settings", settings, "--images", images, "--layers", f"{act},logits", "-N", "2",
            "-o", tmp_path / "maxes.h5", "--cpu")
    assert r.returncode == 0, r.stderr
    r = cli("crop-max-patches", tmp_path / "maxes.h5", "--layer", act, "-o", tmp_path / "patches", "-N", "2",
            "--do-maxes", "--do-deconv", "--idx-end", "2", "--model", os.path.join(DATA, "resnet18.onnx"), "--cpu")
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "patches" / "layer2_layer2.0_relu_1_Relu_output_0" / "unit_0001"
    assert sorted(p.name for p in unit.iterdir()) == ["deconv_000.png", "deconv_001.png", "maxim_000.png",
                                                       "maxim_001.png"]
    r = cli("make-unit-vis", tmp_path / "maxes.h5", "-o", tmp_path / "uv", "--layers", act, "-N", "2",
            "--idx-end", "2", "--model", os.path.join(DATA, "resnet18.onnx"), "--cpu")
    assert r.returncode == 0, r.stderr
    name = "layer2_layer2.0_relu_1_Relu_output_0"
    assert (tmp_path / "uv" / "max_deconv" / name / f"{name}_0001.jpg").is_file()


def test_one_channel_seed_at_a_conv_output_of_an_input_not_named_data():
    """The viewer's unit seeds take the one-channel graph (the producing Convolution computes
    that channel only); the net's input is 'input', not Caffe's 'data'."""
    net, arrays = fixture("resnet18")
    blob = "/layer1/layer1.0/conv1/Conv_output_0"
    unit = Seed.at_unit(blob, (1,) + net.blob_shapes[blob][1:], 3, 4, 5)
    plain = Seed(blob, unit.values)  # the same values, no channel: the general graph
    for mode in ("backprop", "deconv", "guided"):
        got = backward(net, arrays["input"], unit, mode=mode, engine="onnx")
        assert rel_err(got, backward(net, arrays["input"], plain, mode=mode, engine="onnx")) < 1e-6, mode
        assert np.abs(got).max() > 0
