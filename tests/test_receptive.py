"""Receptive fields composed from the layer graph: the original's CaffeNet numbers, and the
support of real backward passes (a unit's gradient never leaves its field; through
convolutions it fills it)."""
import numpy as np
import pytest

from caffevis.backward import Seed, backward
from caffevis.model.caffe.layers import plan
from caffevis.model.caffe.reader import load_caffe
from caffevis.receptive import crop_region, field_sizes, net_fields, receptive_fields
from conftest import fixture_arrays, fixture_net, shared_path


def _planned(*parts):
    return plan(load_caffe(shared_path(*parts)), require_weights=False)


@pytest.mark.parametrize("prototxt", ["bvlc_reference_caffenet_deploy.prototxt", "caffenet-yos-deploy.prototxt"])
def test_caffenet_numbers_of_the_original(prototxt):
    sizes = field_sizes(_planned("models", "prototxt", prototxt))
    want = {"conv1": 11, "pool1": 19, "norm1": 19, "conv2": 51, "pool2": 67, "norm2": 67,
            "conv3": 99, "conv4": 131, "conv5": 163}
    assert {k: sizes[k] for k in want} == {k: (v, v) for k, v in want.items()}
    # FC layers see the whole input, as the original's crop_max_patches
    assert sizes["fc6"] == sizes["fc8"] == (227, 227)


def test_caffenet_unit_regions():
    f = receptive_fields(_planned("models", "prototxt", "bvlc_reference_caffenet_deploy.prototxt"))
    assert f["conv1"].region(5, 0, 0) == (0, 0, 11, 11)
    assert f["conv1"].region(5, 54, 54) == (216, 216, 11, 11)  # 4*54 .. +11 = 227: the last pixel
    assert f["conv2"].region(0, 0, 0) == (-16, -16, 51, 51)  # pad 2 at stride 8 reaches 16 px out
    assert f["conv5"].region(0, 6, 6) == (32, 32, 163, 163)
    assert f["fc7"].region(100) == (0, 0, 227, 227)


def test_squeezenet_concat_keeps_per_channel_fields():
    f = receptive_fields(_planned("models", "squeezenet_v1.0", "deploy.prototxt"))
    concat = f["fire2/concat"]
    # channels 0-63 come from expand1x1 (field of squeeze1x1 = pool1), 64-127 from expand3x3
    assert concat.field_size(0) == f["fire2/expand1x1"].field_size() == (11, 11)
    assert concat.field_size(64) == f["fire2/expand3x3"].field_size() == (19, 19)
    assert concat.field_size() == (19, 19)
    # the next squeeze mixes all channels: the hull
    assert f["fire3/squeeze1x1"].field_size() == (19, 19)
    # conv10 feeds a global average pool: pool10's units see the whole image, and so do prob's;
    # their crops and montage tiles are the image itself, not a padded frame around it
    assert f["pool10"].region(0, 0, 0) == (0, 0, 227, 227)
    assert f["pool10"].field_size() == f["prob"].field_size() == (227, 227)
    assert f["conv10"].field_size() == f["fire9/concat"].field_size() == (155, 155)


def test_lenet_fields():
    sizes = field_sizes(_planned("models", "lenet_caffe", "lenet.prototxt"))
    assert sizes["conv1"] == (5, 5) and sizes["pool1"] == (6, 6) and sizes["conv2"] == (14, 14)
    assert sizes["pool2"] == (16, 16) and sizes["ip1"] == (28, 28)


@pytest.mark.parametrize("case,blobs", [
    ("caffenet_small", ["conv1", "pool1", "conv2", "pool2", "conv3", "conv5"]),
    ("squeezenet_v1.0", ["conv1", "fire2/concat", "fire3/expand3x3", "fire4/concat"]),
])
def test_backward_support_lies_in_the_field(case, blobs):
    from caffevis.backward import unit_seed

    net = fixture_net(case)
    x = fixture_arrays(case, "input.npy")[:1]
    fields = net_fields(net)
    filled = 0
    for blob in blobs:
        _, c, h, w = net.blob_shapes[blob]
        for unit in [(0, h // 2, w // 2), (1, 0, 0), (c - 1, h - 1, w - 1)]:
            seed = unit_seed((1, c, h, w), *unit)
            g = backward(net, x, Seed(blob, seed), mode="deconv", start="layer")[0]
            support = np.argwhere(np.abs(g).sum(0) > 0)
            if not len(support):
                continue
            top, left, fh, fw = fields[blob].region(*unit)
            clipped = (max(top, 0), max(left, 0), min(top + fh, x.shape[2]), min(left + fw, x.shape[3]))
            box = (*support.min(0), *(support.max(0) + 1))
            assert clipped[0] <= box[0] and clipped[1] <= box[1] and box[2] <= clipped[2] and box[3] <= clipped[3], \
                (blob, unit, box, clipped)
            if net.layers[[lp.index for lp in net.layers if blob in lp.tops][0]].type != "Pooling":
                # max pooling routes to one argmax per window; everything else fills the field
                assert tuple(int(v) for v in box) == clipped, (blob, unit, box, clipped)
                filled += 1
    assert filled >= len(blobs)


def test_crop_region_zero_pads_outside_the_image():
    img = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6) + 1
    crop = crop_region(img, (-2, 3, 4, 5))
    assert crop.shape == (2, 4, 5)
    assert not crop[:, :2].any() and not crop[:, :, 3:].any()
    np.testing.assert_array_equal(crop[:, 2:, :3], img[:, 0:2, 3:6])
    np.testing.assert_array_equal(crop_region(img, (0, 0, 5, 6)), img)


def test_slice_keeps_its_channels_fields_and_crop_shifts_the_origin():
    import os

    from conftest import REPO

    f = receptive_fields(plan(load_caffe(os.path.join(REPO, "tests", "data", "zoo_net3.prototxt")),
                              require_weights=False))
    assert f["s_b"].channels == 3 and f["s_b"].region(0, 2, 3) == f["conv1"].region(2, 2, 3)
    # crop offset 1 on both spatial axes: crop unit (y, x) is bias1 unit (y + 1, x + 1)
    assert f["crop"].region(4, 0, 0) == f["bias1"].region(4, 1, 1) == (0, 0, 3, 3)
    # the second Slice cuts rows: its second top starts two rows further down
    assert f["r2"].region(0, 0, 3) == f["crop"].region(0, 2, 3)
