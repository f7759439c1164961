"""The NumPy backward engine (deconvnet, backprop, guided) against real Caffe and finite differences."""
import json

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from caffevis.backward import Seed, backward
from caffevis.layers import numpy_ops
from caffevis.model.caffe.fillers import fill_weights
from caffevis.model.caffe.reader import load_caffe
from caffevis.layers.pool import pool_geometry
from caffevis.model.caffe.to_onnx import convert
from caffevis.backward.numpy_engine import backward_numpy
from caffevis.errors import InputError
from caffevis.model.net import Net

from conftest import CASES, REPO, fixture_arrays, fixture_net, rel_err, shared_path

TOL = 1e-4  # max abs error / reference max abs (fixtures README: gradients and deconvs)
ZOO = f"{REPO}/tests/data/zoo_net.prototxt"


def _runs(case):
    """(seed name, blob, start, mode, lrn, seed diff, reference) for every fixture result."""
    meta = json.load(open(shared_path("fixtures", "caffe", case, "meta.json")))
    back = fixture_arrays(case, "backward.npz")
    deconv = fixture_arrays(case, "deconv.npz")
    guided = fixture_arrays(case, "guided.npz")
    for name, info in meta["seeds"].items():
        start = "layer" if info.get("start") == "layer" else "last"
        seed = back[f"{name}/seed"]
        yield name, info["blob"], start, "backprop", "derivative", seed, back[f"{name}/grad"]
        for lrn in ("derivative", "identity"):
            if f"{name}/lrn_{lrn}" in deconv.files:
                yield name, info["blob"], start, "deconv", lrn, seed, deconv[f"{name}/lrn_{lrn}"]
        if name in guided.files:
            yield name, info["blob"], start, "guided", "derivative", seed, guided[name]


def _caffe_values(net, x, case):
    """Every tensor version, with Caffe's own blobs in place of ours where Caffe saved them."""
    values = net.forward_all(x)
    blobs = fixture_arrays(case, "blobs.npz")
    values.update({name: blobs[name] for name in blobs.files})
    return values


@pytest.mark.parametrize("case", CASES)
def test_rules_match_caffe_given_caffes_forward(case):
    """All three modes, both LRN rules, every seed: exact Caffe backward from Caffe's forward.

    Feeding Caffe's forward blobs isolates the backward rules from the last-ulp
    differences between Caffe's and ONNX Runtime's forward (see the next test).
    """
    net = fixture_net(case)
    x = fixture_arrays(case, "input.npy")
    values = _caffe_values(net, x, case)
    report = []
    for name, blob, start, mode, lrn, seed, ref in _runs(case):
        got = backward_numpy(net, x, blob, seed, mode=mode, lrn=lrn, start=start, values=values)
        assert got.shape == ref.shape and got.dtype == np.float32
        report.append((rel_err(got, ref), f"{name}/{mode}/lrn_{lrn}"))
    worst = max(report)
    print(f"\n{case}: {len(report)} results from Caffe's forward; worst {worst[0]:.2e} at {worst[1]}")
    assert worst[0] <= TOL, worst


def _switch_flips(net, ours, caffe, first_layer):
    """Max-pool windows at or below ``first_layer`` whose switch differs between our
    forward values and Caffe's, with the relative gap between the two candidates in
    Caffe's values and in ours."""
    reads = net.versions[0]
    flips = []
    for p in net.layers[:first_layer + 1]:
        if p.type != "Pooling" or p.attrs["method"] != "max":
            continue
        (bh, bw), (eh, ew) = pool_geometry(p)
        kw = p.attrs["kernel"][1]
        out_hw = p.top_shapes[0][2:]
        mine, theirs = ours[reads[p.index][0]], caffe[p.bottoms[0]]
        args = (p.attrs["kernel"], p.attrs["stride"], (bh, eh), (bw, ew), out_hw)
        s_ours = numpy_ops.max_pool_switches(mine, *args)
        s_caffe = numpy_ops.max_pool_switches(theirs, *args)
        for n, c, oy, ox in np.argwhere(s_ours != s_caffe):
            def at(values, k):
                y = oy * p.attrs["stride"][0] + k // kw - bh
                x = ox * p.attrs["stride"][1] + k % kw - bw
                return float(values[n, c, y, x])
            pair_caffe = at(theirs, s_caffe[n, c, oy, ox]), at(theirs, s_ours[n, c, oy, ox])
            pair_ours = at(mine, s_ours[n, c, oy, ox]), at(mine, s_caffe[n, c, oy, ox])
            gaps = [(a - b) / max(abs(a), 1e-30) for a, b in (pair_caffe, pair_ours)]
            flips.append((p.name, max(gaps)))
    return flips


@pytest.mark.parametrize("case", CASES)
def test_end_to_end_matches_caffe_up_to_float32_switch_ties(case):
    """With ONNX Runtime's forward, every result matches Caffe to 1e-4, except where a
    max-pool window holds two values that tie to float32 rounding: Caffe's and our
    forward then pick different switches (both right for their own values). Such a
    mismatch must come with a flipped switch below the seed whose candidates are within
    2e-6 of each other in both forwards, and must vanish when only the max-pool inputs
    are Caffe's; anything else fails.
    """
    net = fixture_net(case)
    x = fixture_arrays(case, "input.npy")
    ours = net.forward_all(x)
    caffe = fixture_arrays(case, "blobs.npz")
    reads = net.versions[0]
    report, explained = [], []
    for name, blob, start, mode, lrn, seed, ref in _runs(case):
        got = backward_numpy(net, x, blob, seed, mode=mode, lrn=lrn, start=start, values=ours)
        err = rel_err(got, ref)
        if err <= TOL:
            report.append((err, f"{name}/{mode}/lrn_{lrn}"))
            continue
        first = max(p.index for p in net.layers if blob in p.tops)
        flips = _switch_flips(net, ours, caffe, first)
        assert flips, f"{case} {name} {mode} lrn={lrn}: rel err {err:.2e} with identical max-pool switches"
        assert all(gap <= 2e-6 for _, gap in flips), flips
        # and the switches are the whole story: Caffe's pooling inputs, ours elsewhere
        with_caffe_switches = dict(ours)
        for p in net.layers:
            if p.type == "Pooling" and p.attrs["method"] == "max":
                with_caffe_switches[reads[p.index][0]] = caffe[p.bottoms[0]]
        again = backward_numpy(net, x, blob, seed, mode=mode, lrn=lrn, start=start, values=with_caffe_switches)
        assert rel_err(again, ref) <= TOL, (name, mode, lrn, rel_err(again, ref))
        explained.append(f"{name}/{mode}/lrn_{lrn} ({err:.1e}; flips {sorted({f[0] for f in flips})})")
    worst = max(report) if report else (0.0, "-")
    print(f"\n{case}: {len(report)} within {TOL:g}, worst {worst[0]:.2e} at {worst[1]}; "
          f"{len(explained)} explained by float32 switch ties: {explained}")


def test_squeezenet_pool10_deconv_is_all_zero_and_finite():
    """Fixtures README: the deconv from pool10 is clamped to zero at fire7 on this image."""
    net = fixture_net("squeezenet_v1.0")
    x = fixture_arrays("squeezenet_v1.0", "input.npy")
    seed = fixture_arrays("squeezenet_v1.0", "backward.npz")["pool10_top1/seed"]
    got, diffs = backward_numpy(net, x, "pool10", seed, mode="deconv", blob_diffs=True)
    assert np.isfinite(got).all() and not got.any()
    assert diffs["fire9/concat"].any()  # the signal does arrive below the seed
    assert not diffs["fire7/squeeze1x1"].any()


def test_blob_diffs_show_what_caffe_blob_diff_shows():
    net = fixture_net("caffenet_small")
    x = fixture_arrays("caffenet_small", "input.npy")
    seed = fixture_arrays("caffenet_small", "backward.npz")["conv5_unit_layerstart/seed"]
    conv5 = net.forward(x, ["conv5"])["conv5"]
    got, last = backward_numpy(net, x, "conv5", seed, mode="backprop", start="last", blob_diffs=True)
    _, layer = backward_numpy(net, x, "conv5", seed, mode="backprop", start="layer", blob_diffs=True)
    np.testing.assert_array_equal(last["data"], got)
    # in-place relu5 shares conv5's diff: after 'last' it holds the masked seed
    np.testing.assert_array_equal(last["conv5"], np.where(conv5 > 0, seed, 0))
    np.testing.assert_array_equal(layer["conv5"], seed)
    assert "pool5" not in last and "fc6" not in last
    assert set(last) == {"data", "conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4", "conv5"}
    assert last["pool1"].shape == (2, 48, 27, 27)


def test_batch_items_are_independent():
    net = fixture_net("caffenet_small")
    x = fixture_arrays("caffenet_small", "input.npy")
    seed = fixture_arrays("caffenet_small", "backward.npz")["fc8_unit/seed"]
    both = backward_numpy(net, x, "fc8", seed, mode="deconv")
    for i in range(2):
        one = backward_numpy(net, x[i:i + 1], "fc8", seed[i:i + 1], mode="deconv")
        assert rel_err(one[0], both[i]) <= 1e-6


# -- every layer type, by float64 finite differences ---------------------------------------
def _zoo():
    cnet = fill_weights(load_caffe(ZOO), seed=0, kind="he")
    rng = np.random.default_rng(1)
    for layer in cnet.layers:  # non-trivial BatchNorm statistics, Scale and PReLU slopes
        if layer.type == "BatchNorm":
            c = layer.blobs[0].shape[0]
            layer.blobs = [rng.normal(size=c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32),
                           np.array([0.8], np.float32)]
        if layer.type in ("Scale", "PReLU"):
            layer.blobs = [rng.uniform(0.2, 1.5, b.shape).astype(np.float32) for b in layer.blobs]
    net = Net.from_onnx_model(convert(cnet)[0])
    model64, _ = convert(cnet, dtype=np.float64)
    return net, ReferenceEvaluator(model64)


@pytest.fixture(scope="module")
def zoo():
    return _zoo()


@pytest.mark.parametrize("blob,start", [("prob", "last"), ("max", "last"), ("norm2", "last"),
                                        ("conv1", "last"), ("conv1", "layer"), ("bn", "layer")])
def test_backprop_matches_float64_finite_differences(zoo, blob, start):
    """Every layer type caffevis converts (zoo net), in-place layers and both start points."""
    net, ref = zoo
    reads, writes, final = net.versions
    names = list(ref.output_names)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 13, 13))
    values = dict(zip(names, ref.run(None, {"data": x})))
    values["data"] = x
    if start == "last":
        target = final[blob]
    else:
        target = writes[next(p.index for p in net.layers if p.name == blob)][0]
    seed = rng.normal(size=values[target].shape)
    got = backward_numpy(net, x.astype(np.float32), blob, seed, mode="backprop", start=start, values=values)

    _assert_matches_finite_differences(ref, x, target, seed, got, rng, (blob, start))


def _assert_matches_finite_differences(ref, x, target, seed, got, rng, label):
    """d(seed . target)/dx along three random directions, central differences in float64."""
    def objective(xv):
        return float((ref.run([target], {"data": xv})[0] * seed).sum())

    eps = 1e-6
    for _ in range(3):
        v = rng.normal(size=x.shape)
        fd = (objective(x + eps * v) - objective(x - eps * v)) / (2 * eps)
        analytic = float((got.astype(np.float64) * v).sum())
        scale = float(np.abs(got * v).sum())
        assert abs(fd - analytic) <= 1e-5 * scale, (label, fd, analytic)


@pytest.mark.parametrize("blob", ["ip", "r3", "cat"])
def test_slice_crop_bias_bnll_exp_log_backward_matches_finite_differences(blob):
    """The NumPy rules of the newer layer types, by float64 finite differences; deconv and
    guided agree with the gradient graphs (no ReLU or LRN here, so all modes coincide)."""
    cnet = fill_weights(load_caffe(f"{REPO}/tests/data/zoo_net3.prototxt"), seed=2, kind="he")
    net = Net.from_onnx_model(convert(cnet)[0])
    ref = ReferenceEvaluator(convert(cnet, dtype=np.float64)[0])
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 4, 8, 8))
    values = dict(zip(ref.output_names, ref.run(None, {"data": x})))
    values["data"] = x
    seed = rng.normal(size=values[blob].shape)
    got = backward_numpy(net, x.astype(np.float32), blob, seed, mode="backprop", values=values)

    _assert_matches_finite_differences(ref, x, blob, seed, got, rng, blob)
    x32, seed32 = x.astype(np.float32), seed.astype(np.float32)
    for mode in ("deconv", "guided", "backprop"):
        graph = backward(net, x32, Seed(blob, seed32), mode=mode, engine="onnx")
        assert rel_err(backward(net, x32, Seed(blob, seed32), mode=mode, engine="numpy"), graph) <= 1e-5, mode
        assert rel_err(graph, got) <= 1e-5


def test_deconv_and_guided_differ_from_backprop_only_at_relu_and_lrn(zoo):
    """On the zoo net: seeded at conv1's own output (start='layer', before relu1) no ReLU
    or LRN is in the path and the three modes agree; from 'pow' (through both LRNs, with
    the identity rule, and relu1) they differ."""
    net, _ = zoo
    x = np.random.default_rng(2).normal(size=(2, 3, 13, 13)).astype(np.float32)
    blobs = net.forward(x)
    seed = np.random.default_rng(3).normal(size=blobs["pow"].shape).astype(np.float32)
    b, d, g = (backward_numpy(net, x, "pow", seed, mode=m, lrn="identity") for m in ("backprop", "deconv", "guided"))
    assert rel_err(d, b) > 1e-3 and rel_err(g, b) > 1e-3
    seed1 = np.random.default_rng(4).normal(size=blobs["conv1"].shape).astype(np.float32)
    b1, d1, g1 = (backward_numpy(net, x, "conv1", seed1, mode=m, start="layer") for m in ("backprop", "deconv", "guided"))
    np.testing.assert_allclose(d1, b1, rtol=0, atol=1e-6 * np.abs(b1).max())
    np.testing.assert_allclose(g1, b1, rtol=0, atol=1e-6 * np.abs(b1).max())


# -- the convolution kernels against Caffe's loops ------------------------------------------
CONV_CASES = [  # (N, C, H, W, M, kernel, stride, pad, dilation, group)
    (3, 4, 11, 9, 6, (3, 3), (1, 1), (1, 1), (1, 1), 2),
    (2, 3, 25, 26, 5, (11, 11), (4, 4), (0, 0), (1, 1), 1),   # conv1-like; last rows uncovered
    (3, 6, 10, 12, 4, (3, 2), (3, 2), (2, 1), (2, 1), 2),     # stride, dilation, pads all unequal
    (1, 2, 7, 7, 2, (1, 1), (2, 2), (0, 0), (1, 1), 1),
    (2, 4, 9, 10, 6, (3, 3), (1, 1), (0, 2), (2, 1), 2),      # stride 1, dilated, unequal pads
    (1, 2, 6, 6, 4, (1, 1), (1, 1), (1, 1), (1, 1), 1),       # pad beyond the kernel's reach
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("columns", [7, 2048])  # many small chunks with a ragged last one, or one
@pytest.mark.parametrize("seeded", ["all", "one"])  # diff in every channel, or in the last one only
def test_conv_kernels_match_caffe_loops(case, columns, seeded, monkeypatch):
    import caffe_loops

    monkeypatch.setattr(numpy_ops, "_COLUMNS", columns)
    n, c, h, w, m, kernel, stride, pad, dilation, group = case
    attrs = dict(kernel=kernel, stride=stride, pad=pad, dilation=dilation, group=group)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, c, h, w)).astype(np.float32)
    weight = rng.normal(size=(m, c // group) + kernel).astype(np.float32)
    y = numpy_ops.conv2d(x, weight, stride, pad, dilation, group)
    want = caffe_loops.conv(x.astype(np.float64), weight.astype(np.float64), None, attrs)
    assert y.shape == want.shape and rel_err(y, want) <= 1e-5
    dy = rng.normal(size=y.shape).astype(np.float32)
    if seeded == "one":
        dy[:, :-1] = 0.0
    dx = numpy_ops.conv2d_transpose(dy, weight, stride, pad, dilation, group, (h, w))
    # Caffe's Deconvolution forward with the same blob is this transpose (cropped to its size)
    full = caffe_loops.deconv(dy.astype(np.float64), weight.astype(np.float64), None, attrs)
    assert dx.shape == x.shape and rel_err(dx[:, :, :full.shape[2], :full.shape[3]], full) <= 1e-5
    assert not dx[:, :, full.shape[2]:].any() and not dx[:, :, :, full.shape[3]:].any()
    # and it is the adjoint: <conv(x), dy> == <x, conv^T(dy)>
    lhs, rhs = float((y.astype(np.float64) * dy).sum()), float((x.astype(np.float64) * dx).sum())
    assert abs(lhs - rhs) <= 1e-5 * float(np.abs(y * dy).sum())


@pytest.mark.parametrize("case", CONV_CASES)
def test_gradient_graph_conv_input_grad_matches_caffe_deconv(case, tmp_path):
    """The gradient graph's input diff of one convolution (stride 1: flipped filters; strided:
    folded filters, then the one-hot unfold) is Caffe's Deconvolution of the seed, with zeros
    where no window reaches."""
    import caffe_loops

    n, c, h, w, m, kernel, stride, pad, dilation, group = case
    net = _tiny_net(tmp_path, f"""
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param {{ num_output: {m}
  kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]}
  dilation: {dilation[0]} dilation: {dilation[1]} group: {group} }} }}
""", shape=(n, c, h, w))
    x = np.random.default_rng(6).normal(size=(n, c, h, w)).astype(np.float32)
    dy = np.random.default_rng(7).normal(size=net.forward(x)["conv"].shape).astype(np.float32)
    dx = backward(net, x, Seed("conv", dy), engine="onnx")
    attrs = dict(kernel=kernel, stride=stride, pad=pad, dilation=dilation, group=group)
    full = caffe_loops.deconv(dy.astype(np.float64), net.layers[0].params[0].astype(np.float64), None, attrs)
    assert dx.shape == x.shape and rel_err(dx[:, :, :full.shape[2], :full.shape[3]], full) <= 1e-5
    assert not dx[:, :, full.shape[2]:].any() and not dx[:, :, :, full.shape[3]:].any()


# -- Caffe's tie rules -----------------------------------------------------------------------
def _tiny_net(tmp_path, body, shape=(1, 1, 4, 4)):
    text = f'name: "tiny"\ninput: "data"\ninput_shape {{ {" ".join(f"dim: {d}" for d in shape)} }}\n{body}'
    path = tmp_path / "tiny.prototxt"
    path.write_text(text)
    return Net.from_onnx_model(convert(fill_weights(load_caffe(str(path))))[0])


def test_eltwise_max_routes_ties_like_caffe(tmp_path):
    """Caffe's EltwiseLayer: bottom 1 takes ties with bottom 0 (``a > b`` keeps bottom 0
    only when strictly greater); bottoms 2+ take over only when strictly greater. With the
    deconv ReLU rule on the 'r' paths the winner is visible in the input diff."""
    net = _tiny_net(tmp_path, """
layer { name: "r" type: "ReLU" bottom: "data" top: "r" }
layer { name: "r2" type: "ReLU" bottom: "data" top: "r2" }
layer { name: "m" type: "Eltwise" bottom: "r" bottom: "data" bottom: "r2" top: "m" eltwise_param { operation: MAX } }
""")
    x = np.array([1, -1, 2, -2, 0.5, -0.5, 3, -3, 1, 1, 1, 1, -1, -1, -1, -1], np.float32).reshape(1, 1, 4, 4)
    seed = -np.ones((1, 1, 4, 4), np.float32)
    got = backward_numpy(net, x, "m", seed, mode="deconv")
    # x > 0: r, data and r2 tie -> bottom 1 (data) passes -1; x < 0: r wins -> max(-1, 0) = 0
    np.testing.assert_array_equal(got, np.where(x > 0, -1.0, 0.0).astype(np.float32))


def test_max_pool_ties_go_to_the_first_position_and_overlaps_add(tmp_path):
    net = _tiny_net(tmp_path, """
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
""", shape=(1, 1, 5, 5))
    x = np.zeros((1, 1, 5, 5), np.float32)  # windows without (1, 1) tie everywhere
    x[0, 0, 1, 1] = 1.0  # the maximum of the four windows (0|1, 0|1) that overlap there
    out = net.forward(x)["pool"]
    assert out.shape == (1, 1, 3, 3)
    seed = np.arange(1, 10, dtype=np.float32).reshape(out.shape)
    got = backward_numpy(net, x, "pool", seed, mode="backprop")
    want = np.zeros_like(x)
    for oy in range(3):
        for ox in range(3):
            y0, x0 = max(oy * 2 - 1, 0), max(ox * 2 - 1, 0)  # first real position of the window
            ys, xs = slice(y0, oy * 2 + 2), slice(x0, ox * 2 + 2)
            window = x[0, 0, ys, xs]
            iy, ix = np.unravel_index(np.argmax(window), window.shape)  # first maximum, row-major
            want[0, 0, y0 + iy, x0 + ix] += seed[0, 0, oy, ox]
    np.testing.assert_array_equal(got, want)
    assert got[0, 0, 1, 1] == 1 + 2 + 4 + 5
    assert got[0, 0, 0, 3] == 3 and got[0, 0, 3, 0] == 7  # tied windows: their first real position


# -- bad input -------------------------------------------------------------------------------
def test_bad_arguments_raise_one_line_input_errors(zoo):
    net, _ = zoo
    x = np.zeros((1, 3, 13, 13), np.float32)
    seed = np.zeros((1, 5), np.float32)
    for kwargs, words in [(dict(mode="zf"), "mode"), (dict(lrn="none"), "lrn"), (dict(start="first"), "start")]:
        with pytest.raises(InputError, match=words):
            backward_numpy(net, x, "ip2", seed, **kwargs)
    with pytest.raises(InputError, match="shape"):
        backward_numpy(net, x, "ip2", np.zeros((1, 4), np.float32))
    # no layer is named 'r': start='layer' begins at its producing layer (as the ONNX engine)
    seed_r = np.ones((1, 7, 1), np.float32)
    from_layer = backward_numpy(net, x, "r", seed_r, start="layer")
    np.testing.assert_array_equal(from_layer, backward_numpy(net, x, "r", seed_r, start="last"))
    np.testing.assert_allclose(from_layer, backward(net, x, Seed("r", seed_r), mode="deconv", start="layer", engine="onnx"),
                               rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match="unknown blob"):
        backward_numpy(net, x, "nope", seed)


def test_in_place_relu_masks_with_its_output_as_caffe(tmp_path):
    """Caffe's ReLU backward reads the bottom blob, which an in-place ReLU has overwritten: with a
    negative slope a negative input (positive output) then passes the diff unscaled. A ReLU
    writing a new blob masks with its input."""
    proto = tmp_path / "relu.prototxt"
    proto.write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }\n'
        'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
        'convolution_param { num_output: 2 kernel_size: 1 } }\n'
        'layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" relu_param { negative_slope: -0.5 } }\n'
        'layer { name: "relu2" type: "ReLU" bottom: "conv" top: "out" relu_param { negative_slope: -0.5 } }\n')
    cnet = fill_weights(load_caffe(str(proto)), seed=1, kind="he")
    net = Net.from_onnx_model(convert(cnet)[0])
    x = np.random.default_rng(2).normal(size=(1, 2, 3, 3)).astype(np.float32)
    values = net.forward_all(x)
    pre, post = values["conv@conv"], values["conv"]
    assert (pre < 0).any() and (post[pre < 0] > 0).all()  # a negative slope turns negative inputs positive
    w = net.params["conv"][0][:, :, 0, 0]
    seed = np.random.default_rng(3).normal(size=post.shape).astype(np.float32)
    # in place: mask = (output > 0) -> factor 1 wherever the output is positive
    factor = np.where(post > 0, 1.0, -0.5)
    want = np.einsum("oc,nohw->nchw", w, seed * factor)
    # through relu2 too (not in place): its mask reads its input, the in-place output
    factor2 = np.where(post > 0, 1.0, -0.5)
    want2 = np.einsum("oc,nohw->nchw", w, seed * factor2 * factor)
    for engine in ("onnx", "numpy"):
        got = backward(net, x, Seed("conv", seed), mode="backprop", engine=engine)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        got2 = backward(net, x, Seed("out", seed), mode="backprop", engine=engine)
        np.testing.assert_allclose(got2, want2, rtol=1e-5, atol=1e-6)
