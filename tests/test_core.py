"""Caffe import and forward: real-Caffe fixtures, layer semantics, CLI, bad inputs."""
import os

import numpy as np
import onnx
import pytest

import caffe_loops
from caffevis.backward import Seed, backward
from caffevis.model.caffe.fillers import fill_weights
from caffevis.model.caffe.reader import load_caffe
from caffevis.model.caffe.to_onnx import convert
from caffevis.errors import InputError, ModelError
from caffevis.model.net import Net

from conftest import CASES, REPO, cli, fixture_arrays, fixture_net, rel_err, shared_path

ZOO = os.path.join(REPO, "tests", "data", "zoo_net.prototxt")


@pytest.mark.parametrize("case", CASES)
def test_every_blob_matches_caffe(case):
    net = fixture_net(case)
    ref = fixture_arrays(case, "blobs.npz")
    blobs = net.forward(fixture_arrays(case, "input.npy"))
    assert list(ref.keys()) == [b for b in net.blob_names if b in ref]
    errs = {name: rel_err(blobs[name], ref[name]) for name in ref.keys()}
    worst = max(errs, key=errs.get)
    print(f"\n{case}: {len(errs)} blobs, worst {errs[worst]:.2e} at '{worst}'")
    assert errs[worst] <= 1e-5, (worst, errs[worst])
    assert set(ref.keys()) <= set(net.blob_names)


def test_in_place_blob_holds_post_relu_value():
    net = fixture_net("caffenet_small")
    blobs = net.forward_all(fixture_arrays("caffenet_small", "input.npy"))
    assert blobs["conv1"].min() == 0 and blobs["conv1@conv1"].min() < 0  # relu1 wrote conv1 in place
    np.testing.assert_array_equal(blobs["conv1"], np.maximum(blobs["conv1@conv1"], 0))


@pytest.mark.parametrize("batch", [1, 3])
def test_layer_semantics_match_caffe_loops(batch):
    """Every supported layer type against a literal loop transcription of Caffe's CPU code."""
    cnet = fill_weights(load_caffe(ZOO), seed=4, kind="he")
    for layer in cnet.layers:
        if layer.type == "BatchNorm":
            c = layer.blobs[0].shape[0]
            layer.blobs = [np.linspace(-1, 1, c, dtype=np.float32), np.linspace(0.5, 2, c, dtype=np.float32),
                           np.array([2.0], np.float32)]
    model, plans = convert(cnet)
    net = Net.from_onnx_model(model)
    x = np.random.default_rng(0).normal(size=(batch, 3, 13, 13)).astype(np.float32)
    ours = net.forward(x)
    ref = caffe_loops.forward(plans, {"data": x.astype(np.float64)})
    for name in net.blob_names:
        assert rel_err(ours[name], ref[name]) <= 1e-5, name


def test_parameter_edge_cases_match_caffe_loops(tmp_path):
    """Pooling padded on one axis only (Caffe clips both), 0-axis blobs (channel-shared PReLU,
    scalar Scale) written and read back, Eltwise MAX with coeff, concat_dim, 4-D Softmax,
    InnerProduct with axis 2 and transpose, global pooling, stage/level rules."""
    from caffevis.model.caffe import writer

    zoo2 = os.path.join(REPO, "tests", "data", "zoo_net2.prototxt")
    cnet = fill_weights(load_caffe(zoo2), seed=2, kind="he")
    assert "staged" not in [l.name for l in cnet.layers] and "leveled" not in [l.name for l in cnet.layers]
    shapes = {p.name: p for p in __import__("caffevis.model.caffe.layers", fromlist=["plan"]).plan(cnet)}
    assert shapes["pool_a"].top_shapes[0] == (2, 4, 3, 4)  # Caffe: 3 rows (clipped although pad_h is 0)
    assert shapes["prelu"].params[0].shape == () and shapes["scal"].params[0].shape == ()
    for layer in cnet.layers:  # non-trivial 0-axis values
        if layer.name in ("prelu", "scal"):
            layer.blobs = [np.array(0.3 if layer.name == "prelu" else 1.7, np.float32)] + layer.blobs[1:]
    from caffevis.model.caffe import schema

    caffemodel = schema.NetParameter(name="zoo2")
    for layer in cnet.layers:
        caffemodel.layer.add(name=layer.name, type=layer.type).blobs.extend(writer.blob_proto(b) for b in layer.blobs)
    weights = tmp_path / "zoo2.caffemodel"
    writer.write_caffemodel(str(weights), caffemodel)
    net = Net.from_caffe(zoo2, str(weights), use_cache=False)  # 0-axis blobs read back as 0-axis
    plans = net.layers
    x = np.random.default_rng(5).normal(size=(2, 4, 6, 6)).astype(np.float32)
    ours = net.forward(x)
    ref = caffe_loops.forward(plans, {"data": x.astype(np.float64)})
    for name in net.blob_names:
        assert rel_err(ours[name], ref[name]) <= 1e-5, name


ZOO3 = os.path.join(REPO, "tests", "data", "zoo_net3.prototxt")


@pytest.mark.parametrize("batch", [1, 2])
def test_slice_crop_bias_bnll_exp_log_match_caffe_loops(batch):
    """Slice (axis and the old slice_dim, an unused top), Crop (one offset for all axes,
    one per axis from axis 1), Bias (per channel, scalar), BNLL, Exp and Log (base e and
    others, with scale and shift)."""
    cnet = fill_weights(load_caffe(ZOO3), seed=3, kind="he")
    model, plans = convert(cnet)
    net = Net.from_onnx_model(model)
    x = np.random.default_rng(1).normal(size=(batch, 4, 8, 8)).astype(np.float32) * 2
    ours = net.forward(x)
    ref = caffe_loops.forward(plans, {"data": x.astype(np.float64)})
    assert ours["cropc"].shape == (batch, 5, 2, 4) and ours["r3"].shape == (batch, 7, 2, 6)
    for name in net.blob_names:
        assert rel_err(ours[name], ref[name]) <= 1e-5, name


@pytest.mark.parametrize("layer,message", [
    ('layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" slice_param { slice_point: 1 slice_point: 2 } }',
     "2 slice_point(s) for 2 tops"),
    ('layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" top: "c" top: "d" }',
     "does not split into 4 equal slices"),
    ('layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" slice_param { axis: 1 slice_dim: 1 } }',
     "either axis or slice_dim"),
    ('layer { name: "c" type: "Crop" bottom: "data" bottom: "data" top: "c" crop_param { offset: 1 } }',
     "does not fit axis 2"),
    ('layer { name: "c" type: "Crop" bottom: "data" top: "c" }', "needs two bottoms"),
    ('layer { name: "e" type: "Exp" bottom: "data" top: "e" exp_param { base: 0 } }', "expected -1 (e) or a positive"),
])
def test_bad_new_layer_parameters_are_one_line_model_errors(tmp_path, layer, message):
    proto = tmp_path / "bad.prototxt"
    proto.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 '
                     'dim: 4 } } }\n' + layer + "\n")
    with pytest.raises(ModelError) as err:
        fill_weights(load_caffe(str(proto)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_ceil_mode_pooling_sizes():
    """Caffe's pooled size: ceil rounding, clipped so the last window starts inside."""
    from caffevis.layers.pool import pool_output_size

    assert pool_output_size(55, 3, 0, 2) == 27      # CaffeNet pool1
    assert pool_output_size(13, 3, 0, 2) == 6       # pool5
    assert pool_output_size(6, 2, 0, 2) == 3
    assert pool_output_size(7, 2, 0, 2) == 4        # ceil, where floor gives 3
    assert pool_output_size(4, 3, 1, 2) == 3
    assert pool_output_size(5, 2, 1, 2) == 3        # the clip: ceil((5+2-2)/2)+1 = 4 would start in padding
    assert pool_output_size(7, 2, 0, 2, ceil=False) == 3


def test_v1_prototxt_caffenet_yos_converts():
    cnet = load_caffe(shared_path("models", "prototxt", "caffenet-yos-deploy.prototxt"))
    assert cnet.inputs == {"data": (1, 3, 227, 227)}
    assert [l.type for l in cnet.layers[:4]] == ["Convolution", "ReLU", "Pooling", "LRN"]
    fill_weights(cnet, kind="gaussian")
    model, plans = convert(cnet)
    shapes = {p.tops[0]: p.top_shapes[0] for p in plans}
    assert shapes["conv5"] == (1, 256, 13, 13) and shapes["fc8"] == (1, 1000) and shapes["prob"] == (1, 1000)


@pytest.mark.parametrize("name", ["bvlc_reference_caffenet_deploy.prototxt", "bvlc_alexnet_deploy.prototxt"])
def test_official_deploy_prototxts_plan(name):
    from caffevis.model.caffe.layers import plan

    plans = plan(load_caffe(shared_path("models", "prototxt", name)), require_weights=False)
    assert plans[-1].top_shapes[0] == (10, 1000)


def test_convert_cli_and_onnx_round_trip(tmp_path):
    d = shared_path("fixtures", "caffe", "caffenet_small")
    out = tmp_path / "m.onnx"
    r = cli("convert", f"{d}/deploy.prototxt", f"{d}/weights.caffemodel", "-o", out)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.json").is_file()
    onnx.checker.check_model(str(out))
    net = Net.from_onnx(str(out))
    ref = fixture_arrays("caffenet_small", "blobs.npz")
    blobs = net.forward(fixture_arrays("caffenet_small", "input.npy"))
    assert rel_err(blobs["prob"], ref["prob"]) <= 1e-5
    assert [p.name for p in net.layers] == [p.name for p in fixture_net("caffenet_small").layers]


def test_forward_cli_writes_every_blob(tmp_path):
    d = shared_path("fixtures", "caffe", "lenet")
    out = tmp_path / "blobs.npz"
    r = cli("forward", f"{d}/deploy.prototxt:{d}/weights.caffemodel", "--input", f"{d}/input.npy", "-o", out)
    assert r.returncode == 0, r.stderr
    got, ref = np.load(out), fixture_arrays("lenet", "blobs.npz")
    for name in ref.keys():
        assert rel_err(got[name], ref[name]) <= 1e-5


def test_conversion_is_cached(tmp_cache):
    d = shared_path("fixtures", "caffe", "lenet")
    Net.from_caffe(f"{d}/deploy.prototxt", f"{d}/weights.caffemodel")
    cached = list(tmp_cache.glob("*/model.onnx"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    Net.from_caffe(f"{d}/deploy.prototxt", f"{d}/weights.caffemodel")
    assert cached[0].stat().st_mtime_ns == stamp


def test_foreign_onnx_model_exposes_its_tensors():
    net = Net.from_onnx(shared_path("models", "mnist_onnx", "mnist-8.onnx"))
    x = np.zeros((2,) + net.input_shape[1:], np.float32)
    blobs = net.forward(x)
    assert len(blobs) > 5 and blobs["Plus214_Output_0"].shape == (2, 10)
    assert net.blob_names[-1] == "Plus214_Output_0"  # node order: the output comes last
    assert "Parameter193_reshape1" not in net.blob_names  # a weight reshape is no blob
    assert sum(v.ndim == 4 and v.shape[0] == 2 for v in blobs.values()) >= 4  # conv activations
    # imported as layers (issue #14): backward runs on it too
    assert backward(net, x, Seed(net.blob_names[-1], np.ones_like(blobs[net.blob_names[-1]]))).shape == x.shape


def test_provider_line_only_when_asked_or_a_gpu_goes_unused(tmp_path):
    from caffevis.model.runtime import gpu_present

    d = shared_path("fixtures", "caffe", "lenet")
    model = f"{d}/deploy.prototxt:{d}/weights.caffemodel"
    r = cli("forward", model, "--input", f"{d}/input.npy", "-o", tmp_path / "b.npz")
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    if not gpu_present():  # nothing to say on a GPU-less machine
        assert lines == []
    else:  # silent on CUDA; one warning when the GPU is there but CUDA failed
        assert len(lines) <= 1 and all("a GPU is present" in l for l in lines)
    r = cli("forward", model, "--input", f"{d}/input.npy", "-o", tmp_path / "b.npz", "--verbose")
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("caffevis: running on ") and "ExecutionProvider" in lines[0]
    r = cli("forward", model, "--input", f"{d}/input.npy", "-o", tmp_path / "b.npz", "--cpu", "--verbose")
    assert "CPUExecutionProvider: CPU forced" in r.stderr
    r = cli("info", model)
    assert r.returncode == 0 and "provider CPUExecutionProvider" in r.stdout or "provider CUDA" in r.stdout


# -- bad inputs: one line, non-zero exit, no traceback --------------------------------
def _assert_one_line_error(r, *fragments):
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith("caffevis: running")]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_bad_inputs_are_one_line_errors(tmp_path):
    d = shared_path("fixtures", "caffe", "lenet")
    proto, weights, x = f"{d}/deploy.prototxt", f"{d}/weights.caffemodel", f"{d}/input.npy"
    out = tmp_path / "o.npz"
    # truncated caffemodel
    data = open(weights, "rb").read()
    trunc = tmp_path / "trunc.caffemodel"
    trunc.write_bytes(data[: len(data) // 2])
    _assert_one_line_error(cli("forward", f"{proto}:{trunc}", "--input", x, "-o", out), str(trunc), "caffemodel")
    # syntax error: the line number is named
    text = open(proto).read().splitlines()
    text[5] = text[5] + " {{ oops"
    bad = tmp_path / "bad.prototxt"
    bad.write_text("\n".join(text))
    _assert_one_line_error(cli("forward", f"{bad}:{weights}", "--input", x, "-o", out), f"{bad}:6:", "syntax")
    # weights that do not fit the prototxt
    wide = tmp_path / "wide.prototxt"
    wide.write_text(open(proto).read().replace("num_output: 20", "num_output: 30", 1))
    _assert_one_line_error(cli("forward", f"{wide}:{weights}", "--input", x, "-o", out), "conv1",
                           "(20, 1, 5, 5)", "(30, 1, 5, 5)")
    # wrong input shape
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 28, 28), np.float32))
    _assert_one_line_error(cli("forward", f"{proto}:{weights}", "--input", tmp_path / "x.npy", "-o", out),
                           "(2, 3, 28, 28)", "(N, 1, 28, 28)")
    # missing files
    _assert_one_line_error(cli("forward", f"{proto}:{tmp_path}/none.caffemodel", "--input", x, "-o", out),
                           "none.caffemodel", "not found")
    _assert_one_line_error(cli("forward", f"{proto}:{weights}", "--input", tmp_path / "none.npy", "-o", out),
                           "none.npy")
    # an unsupported layer type is named with its layer
    odd = tmp_path / "odd.prototxt"
    odd.write_text(open(proto).read().replace('type: "ReLU"', 'type: "Threshold"'))
    _assert_one_line_error(cli("forward", f"{odd}:{weights}", "--input", x, "-o", out), "relu1", "Threshold")


def test_net_api_errors():
    net = fixture_net("lenet")
    with pytest.raises(InputError, match="unknown blob"):
        net.forward(np.zeros((1, 1, 28, 28), np.float32), blobs=["nope"])
    with pytest.raises(InputError, match="expected"):
        backward(net, np.zeros((1, 1, 28, 28), np.float32), Seed("ip2", np.zeros((1, 3), np.float32)))


def test_v1_prototxt_and_v1_caffemodel_with_legacy_blob_dims(tmp_path):
    """The toolbox's caffenet-yos files are V1 (``layers {}`` with enum types; blobs as
    num/channels/height/width). Rewrite the caffenet_small fixture that way: same blobs."""
    from google.protobuf import text_format

    from caffevis.model.caffe import schema
    from caffevis.model.caffe.reader import _V1_TYPES, read_caffemodel, read_prototxt

    d = shared_path("fixtures", "caffe", "caffenet_small")
    deploy, model = read_prototxt(f"{d}/deploy.prototxt"), read_caffemodel(f"{d}/weights.caffemodel")
    v1_type = {v: k for k, v in _V1_TYPES.items()}
    weights = {lp.name: lp.blobs for lp in model.layer}
    proto, caffemodel = schema.NetParameter(name="v1"), schema.NetParameter(name="v1")
    proto.input.append("data")
    proto.input_dim.extend([2, 3, 227, 227])
    for lp in deploy.layer:
        if lp.type == "Input":
            continue
        for net in (proto, caffemodel):
            v1 = net.layers.add(name=lp.name, bottom=lp.bottom, top=lp.top)
            v1.type = schema.NetParameter.DESCRIPTOR.fields_by_name["layers"].message_type \
                .fields_by_name["type"].enum_type.values_by_name[v1_type[lp.type]].number
            for field in ("convolution_param", "pooling_param", "lrn_param", "inner_product_param",
                          "dropout_param", "relu_param", "softmax_param"):
                if lp.HasField(field):
                    getattr(v1, field).CopyFrom(getattr(lp, field))
            if net is caffemodel:
                for blob in weights.get(lp.name, []):
                    dims = list(blob.shape.dim)
                    legacy = v1.blobs.add()
                    legacy.num, legacy.channels, legacy.height, legacy.width = ([1] * (4 - len(dims)) + dims)
                    legacy.data.extend(blob.data)
    (tmp_path / "v1.prototxt").write_text(text_format.MessageToString(proto))
    (tmp_path / "v1.caffemodel").write_bytes(caffemodel.SerializeToString())
    net = Net.from_caffe(str(tmp_path / "v1.prototxt"), str(tmp_path / "v1.caffemodel"), use_cache=False)
    ref = fixture_arrays("caffenet_small", "blobs.npz")
    blobs = net.forward(fixture_arrays("caffenet_small", "input.npy"))
    assert max(rel_err(blobs[b], ref[b]) for b in ref.keys()) <= 1e-5


def test_misspelt_prototxt_field_is_named(tmp_path, capsys):
    """Caffe refuses unknown fields; caffevis reads past them but names each one."""
    from caffevis.model.caffe.reader import read_prototxt

    src = shared_path("models", "prototxt", "bvlc_reference_caffenet_deploy.prototxt")
    typo = tmp_path / "typo.prototxt"
    typo.write_text(open(src).read().replace("stride: 4", "strid: 4"))
    read_prototxt(str(typo))
    err = capsys.readouterr().err
    assert f"{typo}:" in err and "'strid' is not a Caffe field" in err
    read_prototxt(src)
    read_prototxt(shared_path("models", "prototxt", "caffe_lenet_train_test.prototxt"))
    assert capsys.readouterr().err == ""  # real files: no warnings


def test_partial_forward_runs_only_the_layers_it_needs():
    """ORT runs every node of a session: a forward of early blobs gets a session holding only
    their layers (same values), unless that part would copy most of the weights."""
    net = fixture_net("caffenet_small")
    x = fixture_arrays("caffenet_small", "input.npy")
    full = net.forward(x)
    early = net.forward(x, blobs=["conv1", "norm1"])
    for name in ("conv1", "norm1"):
        np.testing.assert_array_equal(early[name], full[name])
    part = net._part_sessions[frozenset(["conv1", "norm1"])]
    assert part is not None and part is not net._session
    assert sorted(o.name for o in part.get_outputs()) == ["conv1", "norm1"]
    from caffevis.model.onnx_graph import prune_to_outputs

    sub, weight_bytes, dropped = prune_to_outputs(net.model, ["conv1", "norm1"])
    assert dropped > 0 and "Gemm" not in {n.op_type for n in sub.graph.node}
    assert weight_bytes == sum(p.nbytes for p in net.params["conv1"])
    late = net.forward(x, blobs=["fc7"])  # needs fc6 and fc7: most of the weights, so the full session
    np.testing.assert_array_equal(late["fc7"], full["fc7"])
    assert net._part_sessions[frozenset(["fc7"])] is None
