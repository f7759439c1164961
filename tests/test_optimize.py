"""Regularized optimization (issue 6): presets, regularizers, the loop, real nets, outputs."""
import json
import os

import numpy as np
import pytest

from caffevis import optimize as O
from caffevis.errors import InputError, SettingsError
from caffevis.imaging import norm01c, to_uint8
from conftest import fixture_arrays, fixture_net, lenet_caffe_paths, rel_err, shared_path

LENET_SCALE = 0.00390625


# -- presets ---------------------------------------------------------------------------------------
# Table 1 of Yosinski et al. 2015 (decay, blur width, blur every, norm pct, contribution pct) with the
# iterations and lr policies of the toolbox's doc/running-optimize-image.md, written out again here.
TABLE_1 = {
    1: (0, 0.5, 4, 50, 0, 500, "progress", {"max_lr": 100, "desired_prog": 2.0}),
    2: (0.3, 0, 0, 20, 0, 750, "constant", {"lr": 100}),
    3: (0.0001, 1.0, 4, 0, 0, 1000, "constant", {"lr": 100}),
    4: (0, 0.5, 4, 0, 90, 1000, "progress", {"max_lr": 1e8, "desired_prog": 2.0}),
}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_presets_equal_table_1(n):
    p = O.preset_params(n)
    decay, width, every, norm_pct, contrib_pct, iters, policy, lr = TABLE_1[n]
    assert (p.decay, p.blur_radius, p.blur_every, p.small_norm_percentile, p.px_abs_benefit_percentile) == \
        (decay, width, every, norm_pct, contrib_pct)
    assert (p.max_iter, p.lr_policy, p.lr_params) == (iters, policy, lr)
    # the two regularizers the paper does not use stay off
    assert p.small_val_percentile == 0 and p.px_benefit_percentile == 0
    assert O.DEFAULT_PRESET == 3


def test_preset_overrides_and_validation():
    p = O.preset_params(3, push_layer="conv5", push_channel=7, max_iter=5)
    assert (p.push_layer, p.push_channel, p.max_iter, p.blur_radius) == ("conv5", 7, 5, 1.0)
    with pytest.raises(SettingsError, match="lr_params"):
        O.preset_params(3, lr_policy="progress")
    with pytest.raises(SettingsError, match="push_dir"):
        O.OptimizeParams(push_dir=-1)
    with pytest.raises(SettingsError, match="preset"):
        O.preset_params(5)
    with pytest.raises(SettingsError, match="small_norm_percentile"):
        O.OptimizeParams(small_norm_percentile=150)


# -- independent references for one step of each regularizer --------------------------------------------
def ref_percentile(values, p):
    """Linear-interpolation percentile from a sort (NumPy's default method, written out)."""
    v = np.sort(np.asarray(values, np.float64).ravel())
    pos = p / 100.0 * (v.size - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, v.size - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def ref_gaussian(img, sigma):
    """Separable Gaussian with half-sample symmetric ('reflect') borders and truncate 4.0."""
    radius = int(4.0 * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    out = img
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="symmetric")
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for j, w in enumerate(k):
            acc += w * np.take(padded, np.arange(j, j + n), axis=axis)
        out = acc
    return out


@pytest.fixture
def rng():
    return np.random.RandomState(1234)


def test_gaussian_blur_matches_reference(rng):
    x = rng.normal(0, 30, (3, 23, 19))
    for sigma in (0.5, 1.0, 2.3):
        got = O.gaussian_blur(x, sigma)
        ref = np.stack([ref_gaussian(x[c], sigma) for c in range(3)])
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def test_clip_small_values_matches_reference(rng):
    x = rng.normal(0, 30, (3, 20, 20))
    got = O.clip_small_values(x, 37.5)
    thr = ref_percentile(np.abs(x), 37.5)
    ref = np.where(np.abs(x) < thr, 0.0, x)
    np.testing.assert_array_equal(got, ref)
    assert 0.36 < np.mean(got == 0) < 0.39


def test_clip_small_norms_matches_reference(rng):
    x = rng.normal(0, 30, (3, 20, 20))
    got = O.clip_small_norms(x, 50)
    norms = np.sqrt(x[0] ** 2 + x[1] ** 2 + x[2] ** 2)
    keep = norms >= ref_percentile(norms, 50)
    np.testing.assert_array_equal(got, x * keep[None])
    assert np.all((got == 0).all(0) == ~keep)  # whole pixels (all channels) go


def test_clip_benefit_matches_reference(rng):
    x = rng.normal(0, 30, (3, 20, 20))
    g = rng.normal(0, 1, (3, 20, 20)).astype(np.float32)
    benefit = -(g[0] * x[0] + g[1] * x[1] + g[2] * x[2])
    got = O.clip_small_benefit(x, g, 30)
    np.testing.assert_array_equal(got, x * (benefit >= ref_percentile(benefit, 30))[None])
    got = O.clip_small_abs_benefit(x, g, 90)
    absb = np.abs(benefit)
    np.testing.assert_array_equal(got, x * (absb >= ref_percentile(absb, 90))[None])
    assert np.isclose(np.mean((got != 0).any(0)), 0.10, atol=0.01)


def test_clip_to_pixel_range_and_initial_x(rng):
    mean = rng.uniform(90, 130, (3, 8, 8))
    space = O.InputSpace.build(mean.shape, mean.copy())
    x = rng.normal(0, 200, (3, 8, 8))
    got = O.clip_to_pixel_range(x, space)
    assert np.all(got + mean >= -1e-9) and np.all(got + mean <= 255 + 1e-9)
    inside = (x + mean > 0) & (x + mean < 255)
    np.testing.assert_allclose(got[inside], x[inside], atol=1e-9)
    # x0 as the original: np.random.seed(rand_seed) then the global generator
    np.random.seed(7)
    ref = np.random.normal(0, 10, (3, 8, 8))
    np.testing.assert_array_equal(O.initial_x(O.OptimizeParams(rand_seed=7), space), ref)
    np.random.seed(7)
    ref = np.random.uniform(0, 255, (3, 8, 8)) - mean
    np.testing.assert_array_equal(O.initial_x(O.OptimizeParams(rand_seed=7, start_at="randu"), space), ref)
    assert not O.initial_x(O.OptimizeParams(start_at="mean"), space).any()


def test_learning_rate_policies():
    g = np.full(100, 0.5, np.float32)  # |g|^2 = 25
    gn = O.l2norm(g)
    assert gn == pytest.approx(5.0)
    assert O.learning_rate(O.preset_params(3), gn, 0.0) == 100
    assert O.learning_rate(O.preset_params(1), gn, 0.0) == pytest.approx(2.0 / 25)
    assert O.learning_rate(O.preset_params(1), 1e-3, 0.0) == 100  # capped at max_lr
    p01 = O.OptimizeParams(lr_policy="progress01", lr_params={"max_lr": 1e6, "early_prog": 0.1, "late_prog_mult": 0.5})
    assert O.learning_rate(p01, gn, 0.1) == pytest.approx(0.1 / 25)  # early: min(0.1, 0.45)
    assert O.learning_rate(p01, gn, 0.9) == pytest.approx(0.05 / 25, rel=1e-6)  # late: 0.5 * (1 - 0.9)
    # input scale s: rates in 0-255 units become lr * s^2
    assert O.learning_rate(O.preset_params(3), gn, 0.0, scale=0.5) == 25


# -- the loop, against a straight-line reference on a linear objective -------------------------------
class LinearObjective:
    """value = W x per image (a 'layer' of 4 units), gradient of unit u = W[u]."""

    layer = "lin"

    def __init__(self, shape, seed=0):
        r = np.random.RandomState(seed)
        self.w = r.normal(0, 1e-3, (4,) + shape).astype(np.float32)
        self.blob_shape = (4,)

    def __call__(self, x, units, push_dirs):
        values = np.einsum("nchw,kchw->nk", x.astype(np.float32), self.w)
        grads = np.stack([d * self.w[u[0]] for u, d in zip(units, push_dirs)]).astype(np.float32)
        return values, grads


class FakeNet:
    def __init__(self, shape):
        self.input_shape = (1,) + shape


def reference_run(params, space, objective):
    """The original's loop, written out step by step (no helpers from caffevis.optimize)."""
    r = np.random.RandomState(params.rand_seed)
    x = r.normal(0, 10, space.shape)
    x0 = x.copy()
    best, best_obj, obj_series, majority = None, None, [], None
    for ii in range(params.max_iter):
        x = np.minimum(255.0, np.maximum(0.0, x + space.net_mean)) - space.net_mean
        acts, grads = objective(x[None], [(params.push_channel, 0, 0)], [params.push_dir])
        obj = acts[0][params.push_channel]
        obj_series.append(float(obj))
        if majority is None and acts[0].argmax() == params.push_channel:
            majority = ii
        if best_obj is None or obj > best_obj:
            best_obj, best = obj, x.copy()
        g = grads[0]
        if np.sqrt(np.sum(g.astype(np.float64) ** 2)) == 0:
            return x0, x, best, obj_series, majority, "Metaresult: grad 0 failure"
        lp = params.lr_params
        if params.lr_policy == "constant":
            lr = lp["lr"]
        elif params.lr_policy == "progress":
            lr = min(lp["max_lr"], lp["desired_prog"] / np.sum(g.astype(np.float64) ** 2))
        else:
            desired = min(lp["early_prog"], lp["late_prog_mult"] * (1 - obj))
            lr = min(lp["max_lr"], desired / np.sum(g.astype(np.float64) ** 2))
        if ii < params.max_iter - 1:
            x = x + lr * g
            x = x * (1 - params.decay)
            if params.blur_every and params.blur_radius > 0 and ii % params.blur_every == 0:
                x = np.stack([ref_gaussian(x[c], params.blur_radius) for c in range(3)])
            if params.small_val_percentile > 0:
                x = x * (np.abs(x) >= ref_percentile(np.abs(x), params.small_val_percentile))
            if params.small_norm_percentile > 0:
                n = np.sqrt((x ** 2).sum(0))
                x = x * (n >= ref_percentile(n, params.small_norm_percentile))[None]
            if params.px_benefit_percentile > 0:
                b = (g * -x).sum(0)
                x = x * (b >= ref_percentile(b, params.px_benefit_percentile))[None]
            if params.px_abs_benefit_percentile > 0:
                b = np.abs((g * -x).sum(0))
                x = x * (b >= ref_percentile(b, params.px_abs_benefit_percentile))[None]
    meta = "Metaresult: majority success" if majority is not None else "Metaresult: majority failure"
    return x0, x, best, obj_series, majority, meta


# every regularizer at once, so that their order matters (the presets use at most three)
ALL_REGULARIZERS = dict(decay=0.01, blur_radius=0.8, blur_every=2, small_val_percentile=10,
                        small_norm_percentile=20, px_benefit_percentile=30, px_abs_benefit_percentile=40,
                        lr_policy="progress01", lr_params={"max_lr": 1e4, "early_prog": 0.5, "late_prog_mult": 0.2})


@pytest.mark.parametrize("preset", [1, 2, 3, 4, "all"])
def test_loop_matches_reference_on_linear_objective(preset):
    shape = (3, 16, 16)
    space = O.InputSpace.build(shape, np.random.RandomState(5).uniform(80, 140, shape))
    objective = LinearObjective(shape)
    if preset == "all":
        params = O.OptimizeParams(push_layer="lin", push_channel=2, max_iter=9, rand_seed=3, **ALL_REGULARIZERS)
    else:
        params = O.preset_params(preset, push_layer="lin", push_channel=2, max_iter=9, rand_seed=3)
    got = O.optimize(FakeNet(shape), params, space, objective=objective)
    x0, last, best, obj, majority, meta = reference_run(params, space, objective)
    np.testing.assert_array_equal(got.x0, x0)
    np.testing.assert_allclose(got.obj, obj, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.last_x, last, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.best_x, best, rtol=1e-6, atol=1e-6)
    assert got.majority_ii == majority and got.meta_result == meta
    assert got.ii == list(range(9)) and got.last_ii == 8
    assert got.best_obj == max(got.obj) and got.obj[got.best_ii] == got.best_obj


def test_no_update_on_last_iteration_and_grad_zero_stop():
    shape = (3, 8, 8)
    space = O.InputSpace.build(shape, np.zeros(shape))
    objective = LinearObjective(shape)
    r = O.optimize(FakeNet(shape), O.preset_params(3, push_layer="lin", push_channel=1, max_iter=1), space,
                   objective=objective)
    # one iteration: the recorded x is the clipped x0, and nothing is stepped after it
    np.testing.assert_array_equal(r.last_x, O.clip_to_pixel_range(r.x0, space))
    objective.w[1] = 0
    r = O.optimize(FakeNet(shape), O.preset_params(3, push_layer="lin", push_channel=1, max_iter=50), space,
                   objective=objective)
    assert r.meta_result == "Metaresult: grad 0 failure" and len(r.obj) == 1


# -- real nets ------------------------------------------------------------------------------------------
def test_objective_matches_caffe_layer_start_gradient():
    """The optimizer's backward = Caffe's net.backward(start='conv5'): relu5 skipped (pre-ReLU gradient)."""
    net = fixture_net("caffenet_small")
    x = fixture_arrays("caffenet_small", "input.npy")
    back = fixture_arrays("caffenet_small", "backward.npz")
    blobs = fixture_arrays("caffenet_small", "blobs.npz")
    obj = O.UnitObjective(net, "conv5")
    values, grads = obj(x, [(26, 6, 6)] * len(x), [1.0] * len(x))
    assert rel_err(grads, back["conv5_unit_layerstart/grad"]) < 1e-4
    assert rel_err(values, blobs["conv5"]) < 1e-5  # the recorded value is the final (post-ReLU) blob
    obj = O.UnitObjective(net, "fc8")
    values, grads = obj(x, [(281, 0, 0)] * len(x), [1.0] * len(x))
    assert rel_err(grads, back["fc8_unit/grad"]) < 1e-4
    assert rel_err(values, blobs["fc8"]) < 1e-5


def lenet():
    from caffevis.model.net import Net

    return Net.from_caffe(*lenet_caffe_paths())


def test_lenet_each_digit_becomes_the_argmax():
    """Push every ip2 class (batched, one image per digit): each ends as the net's argmax.

    Preset 4 (progress lr): the constant-lr presets were tuned on CaffeNet's gradient scale.
    """
    net = lenet()
    space = O.InputSpace.build(net.input_shape, None, input_scale=LENET_SCALE)
    assert (space.low, space.high) == (0.0, 255 * LENET_SCALE)
    params = [O.preset_params(4, push_layer="ip2", push_channel=d, max_iter=30) for d in range(10)]
    results = O.optimize(net, params, space)
    for d, r in enumerate(results):
        assert r.meta_result == "Metaresult: majority success", d
        assert r.idxmax[-1] == (d, 0, 0)
        # the final image, run through the plain forward pass, is classified as the digit
        out = net.forward(r.last_x[None].astype(np.float32), blobs=["prob"])["prob"]
        assert out.argmax() == d
        assert r.best_x.min() >= 0 and r.best_x.max() <= 255 * LENET_SCALE


def test_batched_equals_one_by_one():
    net = fixture_net("caffenet_small")
    mean = np.load(shared_path("data", "imagenet", "ilsvrc_2012_mean.npy"))
    space = O.InputSpace.build(net.input_shape, mean)
    params = [O.preset_params(p, push_layer="conv5", push_channel=c, rand_seed=s, max_iter=6)
              for p, c, s in ((1, 3, 0), (2, 26, 1), (3, 26, 0), (4, 100, 2))]
    params.append(params[2].replace(max_iter=3))  # leaves the batch early
    batched = O.optimize(net, params, space)
    for p, b in zip(params, batched):
        one = O.optimize(net, p, space)
        assert len(one.obj) == len(b.obj) == p.max_iter
        np.testing.assert_allclose(b.obj, one.obj, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(b.last_x, one.last_x, rtol=1e-4, atol=1e-3)
        assert b.best_ii == one.best_ii and b.meta_result == one.meta_result
    assert batched[2].best_obj > batched[2].obj[0]  # preset 3 raises its unit


# -- outputs and the CLI ------------------------------------------------------------------------------
def run_cli(*args):
    from caffevis.cli import main

    return main(["optimize", *args])


def lenet_cli_args(tmp_path, name, *extra):
    return (":".join(lenet_caffe_paths()), "--input-scale", str(LENET_SCALE),
            "--push-layer", "ip2", "--max-iter", "12", "--quiet", "--output-prefix", str(tmp_path / name / "opt"),
            *extra)


def test_same_seed_identical_bytes_and_outputs(tmp_path, capsys):
    import h5py

    for name in ("a", "b"):
        assert run_cli(*lenet_cli_args(tmp_path, name, "--push-channel", "4", "--rand-seed", "5")) == 0
    assert run_cli(*lenet_cli_args(tmp_path, "c", "--push-channel", "4", "--rand-seed", "6")) == 0
    stem = "opt_ip2_0004_{}_"
    for f in ("best_X.jpg", "best_Xpm.jpg", "info.txt", "info.h5"):
        a = (tmp_path / "a" / (stem.format(5) + f)).read_bytes()
        b = (tmp_path / "b" / (stem.format(5) + f)).read_bytes()
        assert a == b, f
    assert (tmp_path / "a" / (stem.format(5) + "best_X.jpg")).read_bytes() != \
        (tmp_path / "c" / (stem.format(6) + "best_X.jpg")).read_bytes()
    info = json.loads((tmp_path / "a" / (stem.format(5) + "info.json")).read_text())
    assert info["params"]["rand_seed"] == 5 and info["params"]["push_layer"] == "ip2"
    assert info["params"]["decay"] == 0.0001  # preset 3 by default
    assert len(info["results"]["obj"]) == 12 and info["results"]["meta_result"].startswith("Metaresult: ")
    assert info["software"]["onnxruntime"] and info["input_space"]["pixel_range"] == [0.0, 255 * LENET_SCALE]
    with h5py.File(tmp_path / "a" / (stem.format(5) + "info.h5"), "r") as h:
        assert set(h) >= {"x0", "best", "last", "obj"}
        assert h["best"].shape == (1, 28, 28)
        assert h["obj"][info["results"]["best_ii"]] == info["results"]["best_obj"]
    # best_X: 0 at grey, as the original's norm01c (the constant-zero border is mid-grey)
    import cv2

    img = cv2.imread(str(tmp_path / "a" / (stem.format(5) + "best_X.jpg")), cv2.IMREAD_GRAYSCALE)
    with h5py.File(tmp_path / "a" / (stem.format(5) + "info.h5"), "r") as h:
        best = h["best"][0]
    ref = to_uint8(norm01c(best, 0))
    assert np.abs(img.astype(int) - ref.astype(int)).mean() < 2  # JPEG


def test_cli_refuses_to_overwrite_and_resumes(tmp_path, capsys):
    args = lenet_cli_args(tmp_path, "r", "--push-channel", "2")
    assert run_cli(*args) == 0
    assert run_cli(*args) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert run_cli(*args, "--brave") == 0
    # a layer: finished units are skipped on the next run
    layer_args = lenet_cli_args(tmp_path, "u", "--units", "0-2", "--max-iter", "3", "--batch-size", "2")
    assert run_cli(*layer_args) == 0
    assert "3 runs written, 0 already done" in capsys.readouterr().out
    os.remove(tmp_path / "u" / "opt_ip2_0001_0_info.json")
    assert run_cli(*layer_args) == 0
    assert "1 runs written, 2 already done" in capsys.readouterr().out


def test_interrupted_layer_keeps_finished_runs_and_resumes(tmp_path):
    net = lenet()
    space = O.InputSpace.build(net.input_shape, None, input_scale=LENET_SCALE)
    params = [O.preset_params(4, push_layer="ip2", push_channel=c, max_iter=4) for c in range(4)]
    prefix = str(tmp_path / "opt")
    seen = []

    def ctrl_c_after_first(result, path):
        seen.append(path)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        O.optimize_units(net, params, space, prefix, batch_size=2, progress=False, on_result=ctrl_c_after_first)
    assert os.path.exists(seen[0] + "info.json") and seen[0].endswith("opt_ip2_0000_0_")
    assert not os.path.exists(prefix + "_ip2_0002_0_info.json")
    report = O.optimize_units(net, params, space, prefix, batch_size=2, progress=False)
    assert [status for _, _, status in report] == ["skipped", "done", "done", "done"]


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert run_cli(*lenet_cli_args(tmp_path, "e", "--push-channel", "10")) == 2
    assert "out of range" in capsys.readouterr().err
    assert run_cli(*lenet_cli_args(tmp_path, "e", "--push-layer", "nope")) == 2
    assert "not a blob" in capsys.readouterr().err
    assert run_cli(*lenet_cli_args(tmp_path, "e", "--lr-params", "[1, 2]")) == 2
    assert "--lr-params" in capsys.readouterr().err
    assert run_cli(*lenet_cli_args(tmp_path, "e", "--units", "5-3")) == 2
    assert "names no unit" in capsys.readouterr().err
    assert run_cli(*lenet_cli_args(tmp_path, "e", "--data-size", "28")) == 2
    assert "--data-size" in capsys.readouterr().err
    assert run_cli(*lenet_cli_args(tmp_path, "e", "--push-layer", "conv1", "--push-spatial", "(True,0)")) == 2
    assert "--push-spatial" in capsys.readouterr().err
    with pytest.raises(InputError):
        O.push_unit_for(O.OptimizeParams(push_layer="ip2", push_channel=1, push_spatial=(1, 1)), (10,))


def test_lr_params_as_the_original_doc_writes_them(tmp_path):
    """The toolbox doc's preset-4 line: Python quoting; and 1e8, which YAML 1.1 alone reads as a string."""
    from caffevis.commands.optimize import parse_lr_params

    assert parse_lr_params("{'max_lr': 1e8, 'desired_prog': 2.0}") == {"max_lr": 1e8, "desired_prog": 2.0}
    assert parse_lr_params("{max_lr: 1e8, desired_prog: 2}") == {"max_lr": 1e8, "desired_prog": 2}
    assert run_cli(*lenet_cli_args(tmp_path, "lr", "--push-channel", "1", "--max-iter", "2", "--lr-policy",
                                   "progress", "--lr-params", "{max_lr: 1e8, desired_prog: 2.0}",
                                   "--caffe-root", "/path/to/caffe")) == 0  # the original's flag, ignored
    info = json.loads((tmp_path / "lr" / "opt_ip2_0001_0_info.json").read_text())
    assert info["params"]["lr_params"] == {"max_lr": 1e8, "desired_prog": 2.0}


@pytest.mark.parametrize("net_swap, to_rgb", [((2, 1, 0), (2, 1, 0)), (None, (0, 1, 2)), ((1, 2, 0), (2, 0, 1))])
def test_saved_images_undo_the_settings_channel_swap(net_swap, to_rgb):
    """caffe_net_channel_swap puts image channel swap[i] at input channel i; null means the net takes RGB."""
    from types import SimpleNamespace

    settings = SimpleNamespace(caffe_net_channel_swap=net_swap, caffevis_data_mean=None, caffevis_raw_scale=1.0,
                               caffevis_input_scale=None)
    space = O.InputSpace.from_settings(settings, (1, 3, 2, 2))
    assert space.describe()["channel_swap_to_rgb"] == list(to_rgb)
    rgb = np.array([10.0, 20.0, 30.0])
    net_input = rgb[list(net_swap or (0, 1, 2))][:, None, None] * np.ones((3, 2, 2))  # as Caffe's Transformer
    np.testing.assert_array_equal(O.to_display(net_input, space)[0, 0], rgb)


def test_benchmark_reports_rates():
    net = lenet()
    space = O.InputSpace.build(net.input_shape, None, input_scale=LENET_SCALE)
    b = O.benchmark(net, "ip2", space, units=4, iterations=5, batch_size=4)
    assert b["seconds_per_run"] > 0 and b["units_per_second_batched"] > 0
    assert b["iterations"] == 5 and b["batch_size"] == 4


def test_channel_swap_to_rgb_flag_sets_the_saved_images_order(tmp_path):
    """--channel-swap-to-rgb overrides the settings' order for saved images; a wrong one is one line."""
    from caffevis.cli import main

    model = ":".join(lenet_caffe_paths())
    assert main(["optimize", model, "--input-scale", str(LENET_SCALE), "--push-layer", "ip2", "--max-iter", "2",
                 "--channel-swap-to-rgb", "(2,1,0)", "--output-prefix", str(tmp_path / "opt")]) == 2  # 1 channel
    assert main(["optimize", model, "--input-scale", str(LENET_SCALE), "--push-layer", "ip2", "--max-iter", "2",
                 "--channel-swap-to-rgb", "(0,)", "--output-prefix", str(tmp_path / "opt")]) == 0
