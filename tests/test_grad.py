"""Gradient graphs: real-Caffe fixtures, float64 finite differences, the CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from onnx.reference import ReferenceEvaluator

from caffevis.backward import Seed, backward
from caffevis.model.caffe.fillers import fill_weights
from caffevis.model.caffe.reader import load_caffe
from caffevis.layers.pool import pool_geometry
from caffevis.model.caffe.to_onnx import convert
import onnxruntime as ort

from caffevis.errors import InputError
from caffevis.backward import build_gradient_model, cached_session_keys, gradient_session, input_diff_name, \
    param_grad_name

from conftest import (CASES, REPO, assert_directional_derivatives, fixture_arrays, fixture_net, rel_err,
                      shared_path)

ZOO = os.path.join(REPO, "tests", "data", "zoo_net.prototxt")


def _grouped_conv_transpose():
    """onnx.reference's ConvTranspose mishandles group > 1; run each group separately."""
    from onnx.reference.ops.op_conv_transpose import ConvTranspose as Base

    class ConvTranspose(Base):
        def _run(self, X, W, B=None, group=None, **kw):
            group = group or 1
            if group == 1:
                return super()._run(X, W, B, group=1, **kw)
            bs = np.split(B, group) if B is not None else [None] * group
            outs = [super(ConvTranspose, self)._run(x, w, b, group=1, **kw)[0]
                    for x, w, b in zip(np.split(X, group, axis=1), np.split(W, group, axis=0), bs)]
            return (np.concatenate(outs, axis=1),)

    return ConvTranspose


def evaluator(model):
    return ReferenceEvaluator(model, new_ops=[_grouped_conv_transpose()])


def _seeds(case):
    meta = json.load(open(shared_path("fixtures", "caffe", case, "meta.json")))
    return [(name, info) for name, info in meta["seeds"].items()]


def switch_flips(net, caffe_blobs, ours, layers_below):
    """Max-pool windows whose argmax differs between Caffe's and our forward values.

    Real Caffe and ONNX Runtime agree to a few float32 ulps; where two window values are
    that close, the switch (and the routed gradient) can legitimately differ.
    """
    flips = 0
    for p in net.layers:
        if p.type != "Pooling" or p.attrs["method"] != "max" or p.name not in layers_below:
            continue
        (bh, bw), (eh, ew) = pool_geometry(p)

        def argmax(v):
            v = np.pad(v, ((0, 0), (0, 0), (bh, eh), (bw, ew)), constant_values=-np.inf)
            w = sliding_window_view(v, p.attrs["kernel"], axis=(2, 3))[:, :, ::p.attrs["stride"][0], ::p.attrs["stride"][1]]
            return w.reshape(w.shape[:4] + (-1,)).argmax(-1)

        flips += int((argmax(caffe_blobs[p.bottoms[0]]) != argmax(ours[p.bottoms[0]])).sum())
    return flips


def _layers_below(net, blob):
    idx = max(p.index for p in net.layers if blob in p.tops)
    return {p.name for p in net.layers if p.index <= idx}


@pytest.mark.parametrize("case", CASES)
def test_gradient_graphs_match_caffe(case):
    """Backprop, deconv (both LRN rules) and guided backprop against real Caffe.

    Every seed must match to 1e-4 x the reference's max abs, except where a max-pool
    switch differs because Caffe's and our forward values tie to the last ulp; then the
    test checks that such a flip exists and that the NumPy engine (tested separately with
    Caffe's own switches) agrees with this engine on our forward values.
    """
    net = fixture_net(case)
    x = fixture_arrays(case, "input.npy")
    caffe_blobs = fixture_arrays(case, "blobs.npz")
    ours = net.forward(x)
    refs = {"backprop": fixture_arrays(case, "backward.npz"), "deconv": fixture_arrays(case, "deconv.npz"),
            "guided": fixture_arrays(case, "guided.npz")}
    report, checked = [], 0
    for name, info in _seeds(case):
        seed = refs["backprop"][f"{name}/seed"]
        # the fixture's seeds lie in one channel (a unit or a channel's map): the caller knows which
        channel = info["channel"] if "channel" in info else info["index"][0] if "index" in info else None
        start = "layer" if info.get("start") == "layer" else "last"
        flips = switch_flips(net, caffe_blobs, ours, _layers_below(net, info["blob"]))
        runs = [("backprop", "derivative", refs["backprop"][f"{name}/grad"])]
        runs += [("deconv", lrn, refs["deconv"][f"{name}/lrn_{lrn}"]) for lrn in ("derivative", "identity")
                 if f"{name}/lrn_{lrn}" in refs["deconv"]]
        if name in refs["guided"]:
            runs.append(("guided", "derivative", refs["guided"][name]))
        # backward() takes the one-channel graph for these seeds; the general graph as well
        general = gradient_session(net, info["blob"], start=start).run(x, seed)["input"]
        runs.append(("backprop (general graph)", "derivative", refs["backprop"][f"{name}/grad"]))
        for mode, lrn, ref in runs:
            got = general if mode.endswith("(general graph)") else \
                backward(net, x, Seed(info["blob"], seed, channel), mode=mode, lrn=lrn, start=start, engine="onnx")
            err = rel_err(got, ref)
            report.append((err, f"{case}/{name}/{mode}/{lrn}", flips))
            mode = mode.split()[0]
            checked += 1
            if err > 1e-4:
                assert flips > 0, f"{case} {name} {mode} lrn={lrn}: rel err {err:.2e} with identical switches"
                numpy_got = backward(net, x, Seed(info["blob"], seed), mode=mode, lrn=lrn, start=start, engine="numpy")
                assert rel_err(got, numpy_got) <= 1e-4
    worst = max(report)
    print(f"\n{case}: {checked} comparisons; worst {worst[0]:.2e} at {worst[1]} (switch flips: {worst[2]})")


ZOO2 = os.path.join(REPO, "tests", "data", "zoo_net2.prototxt")
ZOO3 = os.path.join(REPO, "tests", "data", "zoo_net3.prototxt")


def _zoo(dtype=np.float64, seed=0, path=ZOO):
    cnet = fill_weights(load_caffe(path), seed=seed, kind="he")
    rng = np.random.default_rng(seed + 1)
    for layer in cnet.layers:  # non-trivial BN statistics and scale
        if layer.type == "BatchNorm":
            c = layer.blobs[0].shape[0]
            layer.blobs = [rng.normal(size=c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32),
                           np.array([0.8], np.float32)]
        if layer.type == "Scale":
            layer.blobs = [rng.uniform(0.5, 1.5, b.shape).astype(np.float32) for b in layer.blobs]
    model, plans = convert(cnet, dtype=dtype)
    return cnet, plans, evaluator(model)


@pytest.mark.parametrize("path,blob", [(ZOO, "prob"), (ZOO, "norm2"), (ZOO, "conv1"), (ZOO2, "ipt"), (ZOO2, "ip"),
                                       (ZOO2, "convs"), (ZOO3, "ip"), (ZOO3, "r3"), (ZOO3, "cat")])
def test_gradient_graph_matches_finite_differences_float64(path, blob):
    cnet, plans, fwd = _zoo(path=path)
    model, outputs = build_gradient_model(plans, blob, dtype=np.float64, params=True,
                                          input_name="data", input_shape=cnet.inputs["data"])
    bwd = evaluator(model)
    rng = np.random.default_rng(3)
    x = rng.normal(size=cnet.inputs["data"])
    shape = fwd.run([blob], {"data": x})[0].shape
    seed = rng.normal(size=shape)
    got = dict(zip(outputs, bwd.run(outputs, {"data": x, "seed": seed})))

    def objective(xv):
        return float((fwd.run([blob], {"data": xv})[0] * seed).sum())

    assert_directional_derivatives(objective, x, got[input_diff_name("data")], rng, blob,
                                   bound=lambda fd, grad, v: 1e-5 * max(1.0, abs(fd)))
    eps = 1e-6
    # Parameter gradients by finite differences, one random direction per parameter blob.
    params = {p.name: p.params for p in plans}
    grads = [(name, i) for name, arrs in params.items() for i in range(len(arrs))
             if param_grad_name(name, i) in got]
    assert grads, "no parameter gradients were produced"
    for layer, i in grads:
        layer_obj = next(l for l in cnet.layers if l.name == layer)
        base = layer_obj.blobs[i].astype(np.float64)

        def with_param(value):
            layer_obj.blobs[i] = value.astype(np.float64)
            m, _ = convert(cnet, dtype=np.float64)
            return float((evaluator(m).run([blob], {"data": x})[0] * seed).sum())

        assert_directional_derivatives(with_param, base, got[param_grad_name(layer, i)], rng, (layer, i), trials=1,
                                       eps=eps, bound=lambda fd, grad, v: 1e-4 * max(1.0, abs(fd)))
        layer_obj.blobs[i] = base.astype(np.float32)


def test_start_layer_differs_from_start_last_on_inactive_unit():
    """'layer' seeds the pre-ReLU value (inactive units still pass); 'last' applies relu's mask."""
    net = fixture_net("caffenet_small")
    x = fixture_arrays("caffenet_small", "input.npy")
    blobs = net.forward(x)
    c, y, xx = np.argwhere(blobs["conv5"][0] == 0)[0]
    seed = np.zeros_like(blobs["conv5"])
    seed[:, c, y, xx] = 1.0
    last = backward(net, x, Seed("conv5", seed), start="last")
    layer = backward(net, x, Seed("conv5", seed), start="layer")
    assert np.abs(last[0]).max() == 0
    assert np.abs(layer[0]).max() > 0


def test_gradient_graph_uses_only_layers_below_the_seed():
    net = fixture_net("caffenet_small")
    from caffevis.backward import build_gradient_model as build

    low, _ = build(net, "conv2")
    high, _ = build(net, "fc8")
    low_ops = {n.op_type for n in low.graph.node}
    assert "Gemm" not in low_ops and "MatMul" not in low_ops
    assert len(low.graph.node) < len(high.graph.node) / 2


def test_export_grad_cli_writes_a_plain_onnx_model(tmp_path):
    import onnxruntime as ort

    d = shared_path("fixtures", "caffe", "lenet")
    out = tmp_path / "grad.onnx"
    model = f"{d}/deploy.prototxt:{d}/weights.caffemodel"
    subprocess.run([sys.executable, "-m", "caffevis", "export-grad", model, "--from", "conv2", "-o", str(out)],
                   check=True, capture_output=True)
    import onnx

    onnx.checker.check_model(str(out), full_check=True)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = fixture_arrays("lenet", "input.npy")
    ref = fixture_arrays("lenet", "backward.npz")
    grad = sess.run([input_diff_name("data")], {"data": x, "seed": ref["conv2_chmap/seed"]})[0]
    assert rel_err(grad, ref["conv2_chmap/grad"]) <= 1e-4


def test_backward_cli_matches_caffe(tmp_path):
    d = shared_path("fixtures", "caffe", "caffenet_small")
    ref = fixture_arrays("caffenet_small", "deconv.npz")
    seed = fixture_arrays("caffenet_small", "backward.npz")["conv5_chmap/seed"]
    np.save(tmp_path / "diff.npy", seed)
    out = tmp_path / "grad.npy"
    subprocess.run([sys.executable, "-m", "caffevis", "backward", f"{d}/deploy.prototxt:{d}/weights.caffemodel",
                    "--input", f"{d}/input.npy", "--blob", "conv5", "--diff", str(tmp_path / "diff.npy"),
                    "--mode", "deconv", "--lrn", "identity", "-o", str(out)], check=True, capture_output=True)
    assert rel_err(np.load(out), ref["conv5_chmap/lrn_identity"]) <= 1e-4


def test_cached_gradient_graph_follows_the_prototxt(tmp_path, tmp_cache):
    """Same weights, another prototxt (pool1 MAX -> AVE): the cached graph must not be reused."""
    from caffevis.model.net import Net

    d = shared_path("fixtures", "caffe", "lenet")
    ave = tmp_path / "ave.prototxt"
    ave.write_text(open(f"{d}/deploy.prototxt").read().replace("pool: MAX", "pool: AVE", 1))
    x = fixture_arrays("lenet", "input.npy")
    seed = fixture_arrays("lenet", "backward.npz")["ip2_label/seed"]
    g_max = backward(Net.from_caffe(f"{d}/deploy.prototxt", f"{d}/weights.caffemodel"), x, Seed("ip2", seed))
    net_ave = Net.from_caffe(str(ave), f"{d}/weights.caffemodel")
    g_ave = backward(net_ave, x, Seed("ip2", seed))
    assert list(tmp_cache.glob("*/grad/*.onnx")), "small nets' gradient graphs are cached on disk"
    assert rel_err(g_ave, g_max) > 1e-2
    assert rel_err(g_ave, backward(net_ave, x, Seed("ip2", seed), engine="numpy")) <= 1e-5


@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0, 0.6])
def test_lrn_negative_power_matches_numpy(beta):
    """Each of x ** -beta's vectorized forms (the LRN scale's power) in ORT."""
    import onnxruntime as ort

    from caffevis.layers.norm import negative_power
    from caffevis.model.onnx_graph import GraphBuilder

    g = GraphBuilder(np.float32)
    x = g.add_input("x", [64])
    g.add_output(negative_power(g, x, beta, "p"), [64])
    sess = ort.InferenceSession(g.model("pow", {}).SerializeToString(), providers=["CPUExecutionProvider"])
    xv = np.random.default_rng(1).uniform(0.5, 40.0, 64).astype(np.float32)
    got = sess.run(None, {"x": xv})[0]
    assert rel_err(got, xv.astype(np.float64) ** -beta) <= 2e-6


TRANSPOSED_IP = """name: "tip"
input: "data"
input_shape { dim: 2 dim: 4 dim: 3 dim: 3 }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 6 transpose: true } }
layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }
"""


@pytest.mark.parametrize("path,blob,supported", [  # (start='last', start='layer')
    (ZOO, "conv1", (True, True)),     # strided convolution + in-place leaky ReLU
    (ZOO, "conv2", (True, True)),     # grouped convolution, 3x5 kernel
    (ZOO, "conv2b", (False, True)),   # then an in-place PReLU (a parameter per channel)
    (ZOO, "norm1", (False, False)),   # LRN mixes channels
    (ZOO, "ip1", (True, True)), (ZOO, "ip2", (True, True)),
    (ZOO2, "ipt", (False, False)),    # InnerProduct on axis 2
    (TRANSPOSED_IP, "ip", (True, True)),
])
def test_one_channel_seed_graph_equals_the_full_graph(path, blob, supported, tmp_path):
    """backward() answers a seed in one channel with a graph computing only that channel of
    the seeded layer; it must give the full graph's result in every mode and start rule."""
    from caffevis.backward import channel_seed_supported
    from caffevis.backward.graph import SEED, SEED_CHANNEL
    from caffevis.model.net import Net

    if not os.path.isfile(path):
        (tmp_path / "net.prototxt").write_text(path)
        path = str(tmp_path / "net.prototxt")
    net = Net.from_onnx_model(convert(fill_weights(load_caffe(path), seed=3, kind="he"))[0])
    x = np.random.default_rng(0).normal(size=net.input_shape).astype(np.float32)
    shape = net.forward(x)[blob].shape
    channel = shape[1] - 1
    seed = np.zeros(shape, np.float32)
    seed[:, channel] = np.random.default_rng(1).normal(size=seed[:, channel].shape)
    for start, ok in zip(("last", "layer"), supported):
        assert channel_seed_supported(net.layers, blob, start, net.input_name) is ok
        for mode in ("backprop", "deconv", "guided"):
            full, names = build_gradient_model(net, blob, mode=mode, start=start, blob_diffs=True)
            sess = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
            want = dict(zip(names, sess.run(None, {net.input_name: x, SEED: seed})))
            got = backward(net, x, Seed(blob, seed, channel), mode=mode, start=start, engine="onnx")
            assert np.abs(got).max() > 0 and rel_err(got, want[input_diff_name("data")]) <= 1e-6, (mode, start)
            assert cached_session_keys(net)[-1][-2] is ok  # the session used: seed_channel flag
            # every blob's diff too (the viewer's diff panes), the seeded blob's among them
            _, diffs = backward(net, x, Seed(blob, seed, channel), mode=mode, start=start, engine="onnx",
                                blob_diffs=True)
            assert blob in diffs and set(diffs) == {n[5:] for n in names} - {"data"}
            for b, d in diffs.items():
                assert d.shape == want[input_diff_name(b)].shape and rel_err(d, want[input_diff_name(b)]) <= 1e-6, b
        if not ok:
            with pytest.raises(InputError, match="one-channel seed graph"):
                build_gradient_model(net, blob, start=start, blob_diffs=False, seed_channel=True)
        else:
            model, _ = build_gradient_model(net, blob, start=start, blob_diffs=False, seed_channel=True)
            assert {i.name for i in model.graph.input} == {net.input_name, SEED, SEED_CHANNEL}


def test_seed_knows_its_channel():
    """The caller names the seed's channel (no scan of the diff); the constructors set it."""
    from caffevis.backward import Seed

    value = np.random.default_rng(0).normal(size=(2, 5, 3, 3)).astype(np.float32)
    seed = Seed.channel_map("b", value, 2)
    assert seed.channel == 2 and np.array_equal(seed.values[:, 2], value[:, 2]) and not seed.values[:, [0, 1, 3, 4]].any()
    assert seed.one_channel().shape == (2, 1, 3, 3)
    unit = Seed.at_unit("b", (2, 5, 3, 3), 4)
    assert unit.channel == 4 and unit.values[:, 4, 1, 1].tolist() == [1.0, 1.0] and unit.values.sum() == 2
    assert Seed.at_unit("b", (2, 5), np.array([1, 3])).channel is None  # a channel per image: a general diff
    with pytest.raises(InputError, match="seed channel 5 out of range"):
        Seed("b", value, 5)


RELU_POOL = """name: "rp"
input: "data"
input_shape { dim: 2 dim: 3 dim: 11 dim: 11 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "data" top: "conv2" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "r2" }
layer { name: "pool2" type: "Pooling" bottom: "r2" top: "pool2" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "cat" type: "Concat" bottom: "pool" bottom: "pool2" top: "cat" }
"""


@pytest.mark.parametrize("mode", ["backprop", "guided"])
def test_relu_mask_applied_at_the_max_pool_keeps_every_diff(mode, tmp_path):
    """The in-place ReLU below a max pool is masked on the pooled diff (fewer values); the
    input diff and every blob's diff (the viewer's diff panes) must stay Caffe's, as the NumPy
    engine computes them. Negative biases make all-zero windows: ties routed to a masked 0."""
    from caffevis.backward.numpy_engine import backward_numpy
    from caffevis.model.net import Net

    (tmp_path / "rp.prototxt").write_text(RELU_POOL)
    cnet = fill_weights(load_caffe(str(tmp_path / "rp.prototxt")), seed=4, kind="he")
    for layer in cnet.layers:
        if layer.type == "Convolution":
            layer.blobs[1][:] = -1.0
    net = Net.from_onnx_model(convert(cnet)[0])
    x = np.random.default_rng(2).normal(size=net.input_shape).astype(np.float32)
    blobs = net.forward(x)
    assert (blobs["pool"] == 0).any() and (blobs["pool"] > 0).any()
    seed = np.random.default_rng(3).normal(size=blobs["cat"].shape).astype(np.float32)
    got, diffs = backward(net, x, Seed("cat", seed), mode=mode, engine="onnx", blob_diffs=True)
    want, want_diffs = backward_numpy(net, x, "cat", seed, mode=mode, blob_diffs=True)
    assert rel_err(got, want) <= 1e-5
    for blob in ("conv", "r2", "conv2", "pool", "pool2"):
        assert rel_err(diffs[blob], want_diffs[blob]) <= 1e-5, blob
    assert (diffs["r2"] != diffs["conv2"]).any()  # the not-in-place ReLU's two blobs differ
