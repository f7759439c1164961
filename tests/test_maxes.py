"""find-maxes on LeNet over the 10k MNIST test set: top-9 per unit against a brute-force
sort, ip2's top-9 are digits of their class, shards and a Dask cluster merge into the
single-run file bit for bit, and a run killed with SIGKILL resumes to the same file."""
import os
import random
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from caffevis.cli import main
from caffevis.errors import InputError
from caffevis.mining.maxes import MaxTracker, load_maxes, merge_files
from caffevis.mining.patches import INFO_HEADER
from conftest import REPO, lenet_caffe_paths, shared_path

LAYERS = ["conv1", "conv2", "ip1", "ip2"]


def _lenet_args():
    m = shared_path("data", "mnist")
    return [":".join(lenet_caffe_paths()),
            "--images", os.path.join(m, "t10k-images-idx3-ubyte.gz"),
            "--labels", os.path.join(m, "t10k-labels-idx1-ubyte.gz"),
            "--input-scale", "0.00390625", "--layers", ",".join(LAYERS)]


def _find_maxes(*extra):
    return main(["find-maxes"] + _lenet_args() + list(extra))


def _same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("maxes") / "single.h5")
    assert _find_maxes("-o", path) == 0
    return path


def test_top9_equals_a_brute_force_sort(single):
    from caffevis.lenet import mnist
    from caffevis.model.net import Net

    result = load_maxes(single)
    assert result.complete and len(result.images) == 10000
    net = Net.load(result.config["model"])
    images, labels = mnist.load("test", shared_path("data", "mnist"))
    x = mnist.to_net_input(images)
    maxima = {b: [] for b in LAYERS}
    argmax = {b: [] for b in LAYERS}
    for k in range(0, len(x), 64):  # the scan's batch grid: identical float results
        out = net.forward(x[k:k + 64], blobs=LAYERS)
        for b in LAYERS:
            flat = out[b].reshape(out[b].shape[0], out[b].shape[1], -1)
            maxima[b].append(flat.max(axis=2))
            argmax[b].append(flat.argmax(axis=2))
    for b in LAYERS:
        vals, arg = np.concatenate(maxima[b]), np.concatenate(argmax[b])  # (10000, C)
        lm = result.layers[b]
        assert lm.max_vals.shape == (vals.shape[1], 9)
        for c in range(vals.shape[1]):
            order = np.lexsort((np.arange(len(vals)), -vals[:, c].astype(np.float64)))[:9]
            np.testing.assert_array_equal(lm.image_index[c], order)
            np.testing.assert_array_equal(lm.max_vals[c], vals[order, c])
            assert np.all(np.diff(lm.max_vals[c]) <= 0)
            if lm.spatial:
                w = net.blob_shapes[b][3]
                np.testing.assert_array_equal(lm.location[c], np.stack([arg[order, c] // w, arg[order, c] % w], 1))
        np.testing.assert_array_equal(result.label_of(b), labels[lm.image_index])


def test_ip2_top9_are_images_of_the_unit_digit(single):
    result = load_maxes(single)
    np.testing.assert_array_equal(result.label_of("ip2"), np.repeat(np.arange(10)[:, None], 9, axis=1))


def test_hdf5_layout(single):
    with h5py.File(single, "r") as f:
        assert f.attrs["format"] == "caffevis-maxes" and f.attrs["n"] == 9 and f.attrs["complete"]
        assert f["images"].shape == (10000,) and f["images"][3].decode() == "t10k-images-idx3-ubyte.gz#3"
        assert list(f["labels"][:3]) == [7, 2, 1]
        assert list(f["layers"]) == LAYERS
        g = f["layers/conv2"]
        assert g.attrs["blob"] == "conv2" and g.attrs["spatial"]
        assert g["max_vals"].shape == (50, 9) and g["max_vals"].dtype == np.float32
        assert g["image_index"].dtype == np.int64 and g["location"].shape == (50, 9, 2)
        assert "location" not in f["layers/ip1"] and f["layers/ip1/max_vals"].shape == (500, 9)
        np.testing.assert_array_equal(g["label"][()], f["labels"][()][g["image_index"][()]])


def test_tracker_does_not_depend_on_arrival_order():
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 6, size=(57, 4, 3, 5)).astype(np.float32)  # many ties
    ref = MaxTracker({"b": (4, 3, 5)}, n=9)
    ref.update({"b": acts}, np.arange(57))
    for trial in range(5):
        perm = rng.permutation(57)
        splits = np.sort(rng.choice(np.arange(1, 57), size=4, replace=False))
        parts = [MaxTracker({"b": (4, 3, 5)}, n=9) for _ in range(2)]
        for j, chunk in enumerate(np.split(perm, splits)):
            parts[j % 2].update({"b": acts[chunk]}, chunk)
        parts[1].merge(parts[0])
        assert parts[1] == ref
    flat = acts.reshape(57, 4, -1)
    for c in range(4):
        key = [(-flat[i, c].max(), i) for i in range(57)]
        assert list(ref.layers["b"].image_index[c]) == [i for _, i in sorted(key)[:9]]


def test_tracker_pads_when_fewer_images_than_n():
    t = MaxTracker({"fc": (3,)}, n=9)
    t.update({"fc": np.array([[1, 2, 3], [3, 2, 1]], np.float32)}, [5, 6])
    lm = t.layers["fc"]
    assert list(lm.image_index[0]) == [6, 5] + [-1] * 7 and lm.count(0) == 2
    assert list(lm.image_index[1]) == [5, 6] + [-1] * 7  # tie: lower image index first
    assert np.isneginf(lm.max_vals[:, 2:]).all()


def test_shards_merge_into_the_single_run_bit_for_bit(single, tmp_path):
    paths = [str(tmp_path / f"s{i}.h5") for i in range(3)]
    for i, p in enumerate(paths):
        assert _find_maxes("--shard", f"{i}/3", "-o", p) == 0
        assert load_maxes(p).complete
    out = str(tmp_path / "merged.h5")
    assert main(["merge-maxes", paths[2], paths[0], paths[1], "-o", out]) == 0
    assert load_maxes(out).tracker == load_maxes(single).tracker
    assert _same_file(out, single)
    with pytest.raises(InputError, match="do not cover"):
        merge_files(paths[:2], str(tmp_path / "partial.h5"))
    with pytest.raises(InputError, match="overlaps"):
        merge_files([paths[0], paths[0]], str(tmp_path / "twice.h5"), allow_incomplete=True)


def test_dask_local_cluster_equals_single_run(single, tmp_path):
    out = str(tmp_path / "dask.h5")
    assert _find_maxes("--workers", "2", "--shards", "3", "-o", out) == 0
    assert _same_file(out, single)
    assert not [p for p in os.listdir(tmp_path) if "shard" in p]  # per-shard checkpoints cleaned up


def test_dask_scheduler_address_equals_single_run(single, tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = str(tmp_path / "sched.h5")
        assert _find_maxes("--scheduler", cluster.scheduler_address, "-o", out) == 0  # one shard per worker
    assert _same_file(out, single)


def test_resume_after_sigkill(tmp_path):
    extra = ["--batch-size", "16", "--checkpoint-every", "2"]
    ref = str(tmp_path / "ref.h5")
    assert _find_maxes(*extra, "-o", ref) == 0
    out = str(tmp_path / "killed.h5")
    cmd = [sys.executable, "-m", "caffevis", "find-maxes"] + _lenet_args() + extra + ["-o", out]
    env = dict(os.environ, PYTHONPATH=REPO)
    interrupted = 0
    rng = random.Random(7)
    for attempt in range(3):
        before = os.stat(out).st_mtime_ns if os.path.exists(out) else None
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:  # until this run writes a checkpoint
            if os.path.exists(out) and os.stat(out).st_mtime_ns != before:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = load_maxes(out)  # whatever moment the kill hit, the file is a valid checkpoint
        print("killed at batches done:", int(state.batches_done.sum()), "of", len(state.batches_done))
        if not state.complete:
            interrupted += 1
            assert 0 < state.batches_done.sum() < len(state.batches_done)
    assert interrupted >= 1, "every run finished before the kill; the test did not interrupt anything"
    assert _find_maxes(*extra, "-o", out) == 0  # resumes
    assert load_maxes(out).complete
    assert _same_file(out, ref)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_rerun_with_other_settings_is_refused(single, tmp_path, capsys):
    assert main(["find-maxes"] + _lenet_args() + ["-N", "5", "-o", single]) == 2
    err = capsys.readouterr().err
    assert "differs in n" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("shard", ["3/2", "x", "1/0"])
def test_bad_shard_is_one_line(shard, capsys):
    assert _find_maxes("--shard", shard, "-o", "unused.h5") == 2
    assert "--shard" in capsys.readouterr().err


def test_bad_inputs_are_one_line(single, tmp_path, capsys):
    m = shared_path("data", "mnist")
    images, labels = (os.path.join(m, f"t10k-{k}-idx{d}-ubyte.gz") for k, d in (("images", 3), ("labels", 1)))
    binary = tmp_path / "random.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    model = _lenet_args()[0]
    for argv, message in [
            (["--images", labels], "expected idx images (N, H, W)"),
            (["--images", images, "--labels", images], "expected idx labels (N,)"),
            (["--images", str(binary)], "not a text list file"),
            (["--images", images, "-N", "0"], "-N 0"),
            (["--images", images, "--checkpoint-every", "-1"], "--checkpoint-every -1"),
            (["--images", images, "--image-dims", "256"], "--image-dims 256")]:
        assert main(["find-maxes", model, "-o", str(tmp_path / "x.h5")] + argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err, (argv, err)
    assert main(["crop-max-patches", single, "--layer", "conv1", "-o", str(tmp_path / "p"), "-N", "0"]) == 2
    assert "-N 0" in capsys.readouterr().err


def test_crop_patches_and_montages_on_lenet(single, tmp_path):
    import cv2

    out = str(tmp_path / "patches")
    assert main(["crop-max-patches", single, "--layer", "conv2", "-o", out, "--idx-begin", "3", "--idx-end", "5"]) == 0
    unit = os.path.join(out, "conv2", "unit_0003")
    names = sorted(os.listdir(unit))
    assert names == sorted([f"{k}_{j:03d}.png" for k in ("maxim", "deconv", "deconvnorm", "backprop",
                                                         "backpropnorm") for j in range(9)] + ["info.txt"])
    assert cv2.imread(os.path.join(unit, "maxim_000.png"), cv2.IMREAD_UNCHANGED).shape == (14, 14)  # conv2 field
    result = load_maxes(single)
    lines = open(os.path.join(unit, "info.txt")).read().splitlines()
    assert lines[0] == INFO_HEADER and len(lines) == 10  # the original's header, then one line per entry
    lm = result.layers["conv2"]
    first = lines[1].split()
    assert first[0] == "1" and int(first[2]) == lm.image_index[3, 0]
    assert abs(float(first[1]) - lm.max_vals[3, 0]) < 1e-5 and tuple(map(int, first[4:6])) == tuple(lm.location[3, 0])
    tree = str(tmp_path / "unit_jpg_vis")
    assert main(["make-unit-vis", single, "-o", tree, "--layers", "ip2", "--idx-end", "2"]) == 0
    im = cv2.imread(os.path.join(tree, "max_im", "ip2", "ip2_0001.jpg"))
    assert im.shape == (3 * 84 + 4, 3 * 84 + 4, 3)  # 28-px fields enlarged 3x (--min-tile 64), 2-px gaps
    from caffevis.mining.patches import PatchMaker, render, to_uint8

    _, crops = PatchMaker(result).unit("ip2", 1, kinds=("maxim",))
    _, tiny = PatchMaker(result, cache=1).unit("ip2", 1, kinds=("maxim",))  # a cache that keeps one entry
    assert all(np.array_equal(a, b) for a, b in zip(crops["maxim"], tiny["maxim"])) and len(tiny["maxim"]) == 9
    # the same montages from the PNGs of crop-max-patches: same tile size (--min-tile), same crops
    patched = str(tmp_path / "from_patches")
    assert main(["make-unit-vis", single, "-o", patched, "--layers", "conv2", "--idx-begin", "3", "--idx-end", "4",
                 "--from-patches", out]) == 0
    assert main(["make-unit-vis", single, "-o", tree, "--layers", "conv2", "--idx-begin", "3", "--idx-end", "4"]) == 0
    for kind in ("max_im", "max_deconv"):
        a, b = (cv2.imread(os.path.join(d, kind, "conv2", "conv2_0003.jpg")).astype(float) for d in (patched, tree))
        assert a.shape == b.shape == (3 * 70 + 4, 3 * 70 + 4, 3)  # 14-px field enlarged 5x to reach 64
        assert np.abs(a - b).mean() < 2, kind
    tile = to_uint8(render("maxim", crops["maxim"][0])).astype(float)  # the best "1", 0 at mid-grey
    assert np.abs(im[1:84:3, 1:84:3, 1].astype(float) - tile).mean() < 4  # JPEG q95
    assert os.path.isfile(os.path.join(tree, "max_deconv", "ip2", "ip2_0000.jpg"))


def test_crop_after_the_images_moved(tmp_path, capsys):
    import shutil

    first, moved = tmp_path / "first", tmp_path / "moved"
    first.mkdir()
    shutil.copy(os.path.join(shared_path("data", "mnist"), "t10k-images-idx3-ubyte.gz"), first)
    args = _lenet_args()
    out = str(tmp_path / "m.h5")
    assert main(["find-maxes", args[0], "--images", str(first / "t10k-images-idx3-ubyte.gz"), "--input-scale",
                 "0.00390625", "--layers", "ip2", "-o", out]) == 0
    first.rename(moved)
    crop = ["crop-max-patches", out, "--layer", "ip2", "-o", str(tmp_path / "p"), "--idx-end", "1", "--do-maxes"]
    assert main(crop) == 2
    assert "not there any more" in capsys.readouterr().err
    assert main(crop + ["--datadir", str(moved)]) == 0
    assert sorted(os.listdir(tmp_path / "p" / "ip2" / "unit_0000")) == [f"maxim_{j:03d}.png" for j in range(9)]


def test_make_unit_vis_regularized_calls_the_optimizer_tree(single, tmp_path):
    import cv2

    tree = str(tmp_path / "unit_jpg_vis")
    assert main(["make-unit-vis", single, "-o", tree, "--layers", "ip2", "--idx-begin", "3", "--idx-end", "4",
                 "--regularized", "--opt-max-iter", "3", "--opt-seeds", "1"]) == 0
    for rel in ("max_im/ip2/ip2_0003.jpg", "max_deconv/ip2/ip2_0003.jpg", "regularized_opt/ip2/ip2_0003_montage.jpg",
                "regularized_opt/ip2/whole_layer.jpg"):
        assert cv2.imread(os.path.join(tree, rel)) is not None, rel


@pytest.mark.parametrize("locate", ["graph", "host"])
def test_both_ways_of_locating_maxima_give_the_same_file(single, locate):
    """'graph' (ArgMax in ONNX Runtime, the GPU default) and 'host' (the CPU default)."""
    from caffevis.model.net import Net
    from caffevis.mining.channel_maxima import ChannelMaxima
    from caffevis.mining.scan import ScanJob, run_scan

    config = load_maxes(single).config
    job = ScanJob(**config)
    net = Net.load(job.model)
    result = run_scan(job, None, net=net, progress=False, maxima=ChannelMaxima(net, job.blobs, locate=locate))
    assert result.tracker == load_maxes(single).tracker


def test_channel_maxima_on_an_old_opset_foreign_onnx_model():
    from caffevis.lenet import mnist
    from caffevis.model.net import Net
    from caffevis.mining.channel_maxima import ChannelMaxima

    net = Net.from_onnx(shared_path("models", "mnist_onnx", "mnist-8.onnx"))  # opset 8, batch fixed at 1
    images, _ = mnist.load("test", shared_path("data", "mnist"))
    blobs = ["ReLU32_Output_0", "Plus214_Output_0"]
    x = images[:1, None].astype(np.float32)
    ref = net.forward(x, blobs=blobs)
    for locate in ("graph", "host"):
        out = ChannelMaxima(net, blobs, locate=locate)(x)
        for b in blobs:
            flat = ref[b].reshape(1, ref[b].shape[1], -1)
            np.testing.assert_array_equal(out[b][0], flat.max(axis=2))
            if locate == "graph":
                np.testing.assert_array_equal(out[b][1], flat.argmax(axis=2))


def test_make_unit_vis_regularized_without_a_maxes_file(tmp_path, capsys):
    import cv2

    tree = str(tmp_path / "unit_jpg_vis")
    base = ["make-unit-vis", "-o", tree, "--layers", "ip2", "--idx-begin", "2", "--idx-end", "3"]
    assert main(base + ["--regularized"]) == 2  # no settings: one line saying what is needed
    assert "give --regularized, --settings and --layers" in capsys.readouterr().err
    opt = ["--regularized", "--settings", "lenet", "--opt-max-iter", "3", "--opt-seeds", "1"]
    assert main(base[:4] + ["nope"] + base[5:] + opt) == 2
    assert "'nope' is not a blob" in capsys.readouterr().err
    assert main(base + opt) == 0
    assert cv2.imread(os.path.join(tree, "regularized_opt", "ip2", "ip2_0002_montage.jpg")) is not None
    assert not os.path.exists(os.path.join(tree, "max_im"))
