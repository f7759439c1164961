"""Zeiler & Fergus figures: unit choice, deconv projections against real Caffe, rendering, CLI."""
import os

import cv2
import numpy as np
import pytest

from caffevis.lenet import mnist, zf_figures
from caffevis.cli import main
from caffevis.lenet.zf_figures import Unit
from conftest import fixture_arrays, fixture_net, rel_err, shared_path


def caffe_lenet_spec():
    d = shared_path("models", "lenet_caffe")
    return f"{d}/lenet.prototxt:{d}/lenet_iter_10000.caffemodel"


def test_top_units_orders_channels_by_their_peak():
    v = np.zeros((4, 3, 3), np.float32)
    v[0, 1, 2] = 2.0
    v[1, 0, 0] = 5.0
    v[2] = -1.0
    v[3, 2, 1] = 0.5
    units = zf_figures.top_units(v, 3)
    assert [(u.channel, u.position, u.activation) for u in units] == [(1, (0, 0), 5.0), (0, (1, 2), 2.0),
                                                                       (3, (2, 1), 0.5)]
    # only rectified (positive) activations are projected
    assert [u.channel for u in zf_figures.top_units(v, 4)] == [1, 0, 3]
    assert [u.channel for u in zf_figures.top_units(v, 4, positive=False)] == [1, 0, 3, 2]
    vec = zf_figures.top_units(np.array([0.1, 3.0, -2.0]), 2)
    assert [(u.channel, u.position) for u in vec] == [(1, ()), (0, ())]


def test_unit_seeds_keep_one_activation_each():
    units = [Unit(2, (1, 3), 4.0), Unit(0, (0, 0), 1.5)]
    seeds = zf_figures.unit_seeds((3, 4, 5), units)
    assert seeds.shape == (2, 3, 4, 5)
    assert seeds[0, 2, 1, 3] == 4.0 and seeds[1, 0, 0, 0] == 1.5
    assert np.count_nonzero(seeds) == 2


@pytest.mark.parametrize("seed_name, blob, unit", [("pool1_unit", "pool1", Unit(3, (6, 6), 1.0)),
                                                    ("ip1_unit", "ip1", Unit(42, (), 1.0))])
def test_projection_equals_caffes_deconv(seed_name, blob, unit):
    """The fixture's deconv (real Caffe, ReLU rule max(diff, 0), pooling switches) for a
    1.0 seed at one unit, image by image."""
    net = fixture_net("lenet")
    x = fixture_arrays("lenet", "input.npy")
    ref = fixture_arrays("lenet", "deconv.npz")[f"{seed_name}/lrn_derivative"]
    for i in range(len(x)):
        got = zf_figures.projections(net, x[i:i + 1], blob, [unit])
        assert got.shape == (1, 1, 28, 28)
        assert rel_err(got[0], ref[i]) <= 1e-4, (seed_name, i)


def test_conv1_projection_is_the_scaled_filter_at_the_unit():
    """Z&F: a conv1 activation projects through the transposed filter only (no bias),
    so its projection is activation × filter inside its 5×5 window and 0 elsewhere."""
    net = fixture_net("lenet")
    x = fixture_arrays("lenet", "input.npy")[3:4]
    conv1 = net.forward(x)["conv1"][0]
    units = zf_figures.top_units(conv1, 4)
    proj = zf_figures.projections(net, x, "conv1", units)
    w = net.params["conv1"][0]
    for p, u in zip(proj, units):
        y, x0 = u.position
        expect = np.zeros((28, 28), np.float32)
        expect[y:y + 5, x0:x0 + 5] = u.activation * w[u.channel, 0]
        np.testing.assert_allclose(p[0], expect, rtol=1e-5, atol=1e-6)
        assert u.activation == pytest.approx(float(conv1[u.channel].max()))


def test_pool2_projection_stays_in_its_receptive_field():
    net = fixture_net("lenet")
    x = fixture_arrays("lenet", "input.npy")[:1]
    units = zf_figures.top_units(net.forward(x)["pool2"][0], 5)
    for p, u in zip(zf_figures.projections(net, x, "pool2", units), units):
        y, x0 = u.position  # pool2 (4×4) cell -> 16×16 input window starting at 4·(y, x)
        outside = p[0].copy()
        outside[4 * y:4 * y + 16, 4 * x0:4 * x0 + 16] = 0
        assert not outside.any() and p[0].any()


def test_activation_grid_normalizes_per_layer():
    v = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    grid = zf_figures.activation_grid(v, cell=3, max_width=100)
    assert grid.dtype == np.uint8 and grid.shape == (3, 3 + 1 + 3)  # 1-pixel gap between cells
    for c in range(2):  # one scale for the whole layer: 0 -> black, its maximum (17) -> white
        np.testing.assert_array_equal(grid[:, 4 * c:4 * c + 3], np.round(v[c] / 17 * 255).astype(np.uint8))
    assert grid[0, 3] == zf_figures.GRID
    signed = zf_figures.activation_grid(np.array([-2.0, 0.0, 2.0]), max_width=1000)
    assert signed.ndim == 2  # vectors of up to 20 units are captioned cells


def test_digit_figure_and_files(tmp_path):
    net = fixture_net("lenet")
    images, labels = mnist.load("test", shared_path("data", "mnist"))
    fig = zf_figures.digit_figure(net, mnist.to_net_input(images[3]), "0", k=4)
    assert fig.dtype == np.uint8 and fig.ndim == 2 and fig.shape[0] > 800 and fig.shape[1] > 600
    paths = zf_figures.write_figures(net, images, labels, [0, 8], str(tmp_path), k=4, suffix="_x")
    assert [os.path.basename(p) for p in paths] == ["zf_digit0_x.png", "zf_digit8_x.png"]
    back = cv2.imread(paths[0], cv2.IMREAD_UNCHANGED)
    assert back.shape[1] == fig.shape[1]


def test_cli_on_caffes_weights(tmp_path, capsys):
    code = main(["zf-figures", "--digit", "8", "--model", caffe_lenet_spec(), "-o", str(tmp_path),
                 "--suffix", "_caffe", "--top", "3", "--mnist", shared_path("data", "mnist")])
    assert code == 0
    assert (tmp_path / "zf_digit8_caffe.png").is_file()
    assert "wrote" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    assert main(["zf-figures", "--digit", "12", "--model", caffe_lenet_spec(), "-o", str(tmp_path),
                 "--no-accuracy"]) == 2
    assert "--digit 12" in capsys.readouterr().err
    d = shared_path("fixtures", "caffe", "squeezenet_v1.0")
    assert main(["zf-figures", "--model", f"{d}/deploy.prototxt:{d}/weights.caffemodel", "-o", str(tmp_path)]) == 2
    assert "needs an MNIST net" in capsys.readouterr().err
