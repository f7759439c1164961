"""find-maxes, crop-max-patches and make-unit-vis on SqueezeNet v1.0 (real weights) over the
shared images: the class units find their images, and the unit_jpg_vis tree holds the
viewer's file names with montages of the right crops."""
import os

import cv2
import numpy as np
import pytest

from caffevis.cli import main
from caffevis.mining.maxes import load_maxes
from conftest import REPO, shared_path

LAYERS = ["conv1", "fire2/concat", "conv10", "prob"]


@pytest.fixture(scope="module")
def sq(tmp_path_factory):
    shared_path("models", "squeezenet_v1.0", "squeezenet_v1.0.caffemodel")
    out = str(tmp_path_factory.mktemp("sq") / "maxes.h5")
    assert main(["find-maxes", "--settings", os.path.join(REPO, "settings", "squeezenet.yaml"),
                 "--images", shared_path("data", "images"), "--layers", ",".join(LAYERS),
                 "--batch-size", "8", "-o", out]) == 0
    return out


def test_class_units_find_their_images(sq):
    result = load_maxes(sq)
    root = shared_path("data", "images")
    found = {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
             if f.lower().endswith((".jpg", ".png"))}
    assert set(result.images) == found and len(result.images) == len(found) >= 16  # recursive, no licence file
    labels = [s.strip() for s in open(shared_path("data", "imagenet", "ilsvrc_2012_labels.txt")) if s.strip()]
    expect = {"space shuttle": "space_shuttle.jpg", "jaguar": "ILSVRC2012_val_00000610.jpg",
              "golden retriever": "ILSVRC2012_val_00008338.jpg", "orangutan": "ILSVRC2012_val_00011425.jpg",
              "fireboat": "ILSVRC2012_val_00016655.jpg", "ambulance": "ILSVRC2012_val_00020333.jpg",
              "cowboy hat": "ILSVRC2012_val_00029739.jpg"}
    prob = result.layers["prob"]
    assert prob.max_vals.shape == (1000, 9)
    assert prob.spatial and prob.blob_shape == (1000, 1, 1) and not prob.location.any()  # after a global pool
    for name, image in expect.items():
        unit = labels.index(name)
        assert os.path.basename(result.images[prob.image_index[unit, 0]]) == image, name
        assert prob.max_vals[unit, 0] > 0.9


def test_unit_jpg_vis_tree(sq, tmp_path):
    from caffevis.mining.patches import PatchMaker, render, to_uint8

    tree = str(tmp_path / "unit_jpg_vis")
    assert main(["make-unit-vis", sq, "-o", tree, "--layers", "conv1,fire2/concat", "--idx-end", "3",
                 "--min-tile", "0"]) == 0
    for layer, field in (("conv1", 7), ("fire2/concat", 19)):
        for unit in range(3):
            for kind in ("max_im", "max_deconv"):
                path = os.path.join(tree, kind, layer, f"{layer}_{unit:04d}.jpg")
                img = cv2.imread(path)
                assert img is not None and img.shape == (3 * field + 4, 3 * field + 4, 3), path
    # the first tile of max_im is the receptive-field crop of the unit's best image
    result = load_maxes(sq)
    maker = PatchMaker(result)
    entries, crops = maker.unit("conv1", 1, kinds=("maxim", "deconv"))
    montage = cv2.imread(os.path.join(tree, "max_im", "conv1", "conv1_0001.jpg"))[:, :, ::-1].astype(float)
    tile = to_uint8(render("maxim", crops["maxim"][0], maker.space)).astype(float)
    assert np.abs(montage[:7, :7] - tile).mean() < 6  # JPEG q95
    x = maker.inputs([entries[0][2]])[0]
    top, left, h, w = maker.fields["conv1"].region(1, *entries[0][4])
    np.testing.assert_array_equal(crops["maxim"][0], x[:, top:top + h, left:left + w])
    assert np.any(crops["deconv"][0])


def test_crop_max_patches_on_fc_units(sq, tmp_path):
    out = str(tmp_path / "patches")
    assert main(["crop-max-patches", sq, "--layer", "prob", "-o", out, "-N", "2", "--idx-begin", "812",
                 "--idx-end", "813", "--do-maxes", "--do-info"]) == 0
    unit = os.path.join(out, "prob", "unit_0812")
    assert sorted(os.listdir(unit)) == ["info.txt", "maxim_000.png", "maxim_001.png"]
    # prob follows a global pool: its field is the whole input
    assert cv2.imread(os.path.join(unit, "maxim_000.png")).shape == (227, 227, 3)
    first = open(os.path.join(unit, "info.txt")).read().splitlines()[1].split()
    assert first[0] == "1" and first[3] == "-1" and first[4:6] == ["0", "0"] and first[-1] == "space_shuttle.jpg"


def test_list_file_source_with_labels(tmp_path):
    root = shared_path("data", "images")
    listing = tmp_path / "list.txt"
    listing.write_text("# name label\ndvt_input_images/ILSVRC2012_val_00016655.jpg 554\n\n"
                       "space_shuttle.jpg 812\ncaffe_examples/cat.jpg\n")
    out = str(tmp_path / "m.h5")
    assert main(["find-maxes", "--settings", os.path.join(REPO, "settings", "squeezenet.yaml"),
                 "--images", str(listing), "--datadir", root, "--layers", "prob", "-N", "2", "-o", out]) == 0
    result = load_maxes(out)
    assert result.images == ["dvt_input_images/ILSVRC2012_val_00016655.jpg", "space_shuttle.jpg",
                             "caffe_examples/cat.jpg"]
    assert list(result.labels) == [554, 812, -1]
    assert list(result.layers["prob"].image_index[812]) == [1, 0] and result.label_of("prob")[812, 0] == 812
    bad = tmp_path / "bad.txt"
    bad.write_text("space_shuttle.jpg eight\n")
    assert main(["find-maxes", "--settings", os.path.join(REPO, "settings", "squeezenet.yaml"),
                 "--images", str(bad), "--datadir", root, "--layers", "prob", "-o", str(tmp_path / "x.h5")]) == 2
