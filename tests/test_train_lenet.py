"""LeNet training: the committed weights, one epoch from scratch, Caffe's solver and filler,
the training gradient graph against Caffe's backward and float64 finite differences."""
import json
import math
import os

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from caffevis.lenet import mnist, train
from caffevis.model.caffe import reader
from caffevis.io import sha1_of
from caffevis.model.caffe.to_onnx import convert
from caffevis.cli import main
from caffevis.backward import build_gradient_model, gradient_session, param_grad_name, unit_seed
from caffevis.model.net import Net
from conftest import REPO, assert_directional_derivatives, fixture_arrays, fixture_net, rel_err, shared_path

ZOO = os.path.join(REPO, "model_zoo", "lenet")


def mnist_split(split):
    return mnist.load(split, shared_path("data", "mnist"))


# -- the committed model --------------------------------------------------------------
def test_committed_weights_reach_99_percent_on_the_official_test_set(tmp_cache):
    images, labels = mnist_split("test")
    net = Net.from_caffe(os.path.join(ZOO, "lenet.prototxt"), os.path.join(ZOO, "lenet.caffemodel"))
    acc = train.accuracy(net, images, labels)
    assert acc >= 0.99, acc
    # the committed ONNX is the same model
    onnx_net = Net.from_onnx(os.path.join(ZOO, "lenet.onnx"))
    x = mnist.to_net_input(images[:200])
    a, b = net.forward(x)["prob"], onnx_net.forward(x)["prob"]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert onnx_net.blob_names == ["data", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "prob"]
    # the training record belongs to these very files and states this accuracy
    record = json.load(open(os.path.join(ZOO, "lenet_training.json")))
    for info in record["files"].values():
        assert sha1_of(os.path.join(ZOO, info["name"])) == info["sha1"], info["name"]
    assert record["test_accuracy"] == pytest.approx(acc, abs=1e-4)
    assert record["solver"]["max_iter"] == record["loss"][-1]["iter"]


def test_deploy_prototxt_is_caffes_lenet(tmp_cache):
    """Same layers, shapes and attributes as Caffe's examples/mnist/lenet.prototxt."""
    ours = Net.from_caffe(os.path.join(ZOO, "lenet.prototxt"), os.path.join(ZOO, "lenet.caffemodel"))
    caffe = fixture_net("lenet")
    assert [(p.name, p.type, p.bottoms, p.tops) for p in ours.layers] == \
        [(p.name, p.type, p.bottoms, p.tops) for p in caffe.layers]
    for mine, theirs in zip(ours.layers, caffe.layers):
        assert mine.attrs == theirs.attrs, mine.name
        assert [a.shape for a in mine.params] == [a.shape for a in theirs.params]
        assert [s[1:] for s in mine.top_shapes] == [s[1:] for s in theirs.top_shapes]


# -- training from scratch --------------------------------------------------------------
def test_one_epoch_from_scratch_reaches_97_percent():
    images, labels = mnist_split("train")
    test = mnist_split("test")
    settings = train.SolverSettings(max_iter=math.ceil(len(images) / 64), seed=1)
    params, record = train.train(images, labels, settings, test=test, progress=False)
    assert record["test_accuracy"] >= 0.97, record["test_accuracy"]
    assert record["loss"][-1]["loss"] < 0.5 * record["loss"][0]["loss"]


def test_training_is_reproducible_from_its_seed():
    images, labels = mnist_split("train")
    images, labels = images[:640], labels[:640]
    runs = [train.train(images, labels, train.SolverSettings(max_iter=12, seed=s), progress=False)[0]
            for s in (7, 7, 8)]
    for layer in runs[0]:
        for a, b, c in zip(runs[0][layer], runs[1][layer], runs[2][layer]):
            np.testing.assert_array_equal(a, b)
            assert not np.array_equal(a, c)


# -- solver and filler -------------------------------------------------------------------
def test_sgd_update_follows_caffes_solver():
    s = train.SolverSettings()
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    params = {"ip2": [w0.copy(), b0.copy()]}
    solver = train.SGDSolver(params, s)
    g1 = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    g2 = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    solver.step({"ip2": g1})
    solver.step({"ip2": g2})
    # Caffe: rate = base_lr (1 + gamma iter)^-power; v = momentum v + rate lr_mult (g + decay w); w -= v
    for i, lr_mult in enumerate((1, 2)):
        w = (w0, b0)[i].astype(np.float64)
        v = 0.01 * lr_mult * (g1[i] + 5e-4 * w)
        w = w - v
        v = 0.9 * v + 0.01 * (1 + 1e-4) ** -0.75 * lr_mult * (g2[i] + 5e-4 * w)
        w = w - v
        np.testing.assert_allclose(params["ip2"][i], w, rtol=1e-5, atol=1e-7)
    assert solver.learning_rate(10000) == pytest.approx(0.01 * 2 ** -0.75)
    assert solver.iter == 2


def test_xavier_filler_is_caffes():
    rng = np.random.default_rng(0)
    w = train.xavier_fill((50, 20, 5, 5), rng)
    limit = math.sqrt(3 / 500)  # fan_in = 20 * 5 * 5
    assert w.dtype == np.float32 and np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit
    assert w.var() == pytest.approx(1 / 500, rel=0.05)  # uniform(-a, a): a^2 / 3
    p = train.init_params(3)
    assert all(not b.any() for _, b in p.values())
    assert list(p) == ["conv1", "conv2", "ip1", "ip2"]
    np.testing.assert_array_equal(p["ip1"][0], train.init_params(3)["ip1"][0])


def test_solver_settings_are_validated():
    from caffevis.errors import SettingsError

    for bad in (dict(momentum=1.0), dict(batch=0), dict(base_lr=float("nan")), dict(max_iter=0)):
        with pytest.raises(SettingsError, match="solver."):
            train.SolverSettings(**bad).validate()


# -- the gradient graph ---------------------------------------------------------------------
def test_parameter_gradients_match_caffes_backward():
    """Seed ip2 with each image's label one-hot (fixture seed ``ip2_label``); every
    parameter diff must match real Caffe's to 1e-4 of its max abs."""
    net = fixture_net("lenet")
    meta = json.load(open(fixture_arrays("lenet", "meta.json")))
    ref = fixture_arrays("lenet", "param_grads.npz")
    x = fixture_arrays("lenet", "input.npy")
    seed = unit_seed((len(x), 10), np.array(meta["seeds"]["ip2_label"]["units"]))
    np.testing.assert_array_equal(seed, fixture_arrays("lenet", "backward.npz")["ip2_label/seed"])
    got = gradient_session(net, "ip2", params=True).run(x, seed)["params"]
    checked = 0
    for layer in ("conv1", "conv2", "ip1", "ip2"):
        for i in range(2):
            r = ref[f"ip2_label/{layer}/{i}"]
            assert got[layer][i].shape == r.shape
            assert rel_err(got[layer][i], r) <= 1e-4, (layer, i, rel_err(got[layer][i], r))
            checked += 1
    assert checked == 8


def test_training_loss_gradient_is_the_seeded_gradient_of_caffes_softmax_loss(tmp_cache):
    """loss='softmax' must equal seeding ip2 with SoftmaxWithLoss's diff (p - onehot) / N
    (an untrained net, so p is far from one-hot and the difference well conditioned)."""
    x = fixture_arrays("lenet", "input.npy")
    labels = np.array(json.load(open(fixture_arrays("lenet", "meta.json")))["labels"])
    params = train.init_params(2)
    net = train.build_net(params, batch=len(x))
    loss_run = gradient_session(net, "ip2", params=True, params_as_inputs=True, loss="softmax").run(
        x, labels, params=params)
    z = net.forward(x)["ip2"].astype(np.float64)
    prob = np.exp(z - z.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    seed = (prob - np.eye(10)[labels]) / len(x)
    seeded = gradient_session(net, "ip2", params=True).run(x, seed.astype(np.float32))
    for layer in params:
        for a, b in zip(loss_run["params"][layer], seeded["params"][layer]):
            assert rel_err(a, b) <= 1e-5, layer
    assert float(loss_run["loss"]) == pytest.approx(-np.mean(np.log(prob[np.arange(8), labels])), rel=1e-5)
    np.testing.assert_allclose(loss_run["output"], z, rtol=1e-6, atol=1e-6)


def test_training_gradient_graph_matches_float64_finite_differences(tmp_path):
    """The training graph (softmax loss at ip2, parameters as inputs) built in float64 and
    run by onnx.reference: each parameter blob's gradient along a random direction equals
    the central difference of the float64 forward's loss; the float32 ORT graph used for
    training agrees with it."""
    images, labels = mnist_split("test")
    x = mnist.to_net_input(images[:3]).astype(np.float64)
    y = labels[:3]
    params = train.init_params(11)
    # a few SGD-like random perturbations so biases are not all zero
    rng = np.random.default_rng(5)
    params = {k: [(a + 0.02 * rng.standard_normal(a.shape)).astype(np.float64) for a in v]
              for k, v in params.items()}
    text = train.deploy_prototxt_text(len(x))
    proto = str(tmp_path / "lenet.prototxt")
    with open(proto, "w") as f:
        f.write(text)

    def forward_loss(p):
        cnet = reader.load_caffe(proto)
        for layer in cnet.layers:
            if layer.name in p:
                layer.blobs = [np.asarray(a, np.float64) for a in p[layer.name]]
        model, _ = convert(cnet, dtype=np.float64)
        z = ReferenceEvaluator(model).run(["ip2"], {"data": x})[0]
        zmax = z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
        return float(np.mean(lse - z[np.arange(len(y)), y]))

    cnet = reader.load_caffe(proto)
    for layer in cnet.layers:
        if layer.name in params:
            layer.blobs = params[layer.name]
    plans = convert(cnet, dtype=np.float64)[1]
    model, outputs = build_gradient_model(plans, "ip2", params=True, params_as_inputs=True, loss="softmax",
                                          dtype=np.float64, input_name="data", input_shape=(len(x), 1, 28, 28))
    feeds = {"data": x, "labels": y.astype(np.int64)}
    feeds.update({f"{k}/param{i}": a for k, v in params.items() for i, a in enumerate(v)})
    got = dict(zip(outputs, ReferenceEvaluator(model).run(outputs, feeds)))
    assert float(got["loss"]) == pytest.approx(forward_loss(params), rel=1e-12)

    eps = 1e-6
    for layer, arrays in params.items():
        for i, base in enumerate(arrays):
            def loss_at(value):
                p = {k: list(a) for k, a in params.items()}
                p[layer][i] = value
                return forward_loss(p)

            assert_directional_derivatives(loss_at, base, got[param_grad_name(layer, i)], rng, (layer, i), trials=1,
                                           eps=eps, bound=lambda fd, grad, v: 1e-6 * max(1.0, abs(fd)))

    # the float32 ORT session that training runs
    session = train.gradient_session({k: [a.astype(np.float32) for a in v] for k, v in params.items()}, len(x))
    run32 = session.run(x.astype(np.float32), y, params=params)
    for layer, arrays in run32["params"].items():
        for i, a in enumerate(arrays):
            assert rel_err(a, got[param_grad_name(layer, i)]) <= 1e-4, (layer, i)


# -- the command ------------------------------------------------------------------------------
def test_cli_writes_a_loadable_caffe_model(tmp_path, tmp_cache):
    mdir = shared_path("data", "mnist")
    out = tmp_path / "lenet"
    code = main(["train-lenet", "--iterations", "20", "--train-limit", "1280", "--mnist", mdir,
                 "-o", str(out), "--quiet", "--seed", "4"])
    assert code == 0
    for name in ("lenet.prototxt", "lenet.caffemodel", "lenet.onnx", "lenet_training.json"):
        assert (out / name).is_file(), name
    record = json.load(open(out / "lenet_training.json"))
    assert record["solver"]["max_iter"] == 20 and record["solver"]["seed"] == 4
    assert record["train_items"] == 1280
    caffe_net = Net.from_caffe(str(out / "lenet.prototxt"), str(out / "lenet.caffemodel"))
    onnx_net = Net.from_onnx(str(out / "lenet.onnx"))
    x = fixture_arrays("lenet", "input.npy")
    np.testing.assert_allclose(caffe_net.forward(x)["ip2"], onnx_net.forward(x)["ip2"], atol=1e-6)
    assert train.accuracy(caffe_net, *mnist.load("test", mdir)) == pytest.approx(record["test_accuracy"])


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train-lenet", "--mnist", str(tmp_path), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MNIST file not found" in err and str(tmp_path) in err
    empty = tmp_path / "empty"
    empty.mkdir()
    settings = tmp_path / "s.yaml"
    settings.write_text(f"mnist_dir: {empty}\n")  # the settings' mnist_dir is where the files are looked up
    assert main(["train-lenet", "--settings", str(settings), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    assert f"{empty}/train-images-idx3-ubyte[.gz]: MNIST file not found" in capsys.readouterr().err
    assert main(["train-lenet", "--iterations", "0", "-o", str(tmp_path / "o")]) == 2
    assert "solver.max_iter" in capsys.readouterr().err
    assert main(["train-lenet", "--train-limit", "-5", "-o", str(tmp_path / "o")]) == 2
    assert "--train-limit -5" in capsys.readouterr().err
    # a learning rate that blows up: one line naming the setting, not a traceback
    assert main(["train-lenet", "--iterations", "20", "--lr", "1000", "--train-limit", "640", "--quiet",
                 "--mnist", shared_path("data", "mnist"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # (a first line may note the execution provider)
    assert "diverged" in err[-1] and "--lr" in err[-1] and "Traceback" not in "".join(err)
    assert not (tmp_path / "o").exists()
