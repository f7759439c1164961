"""Preprocessing and image/mean/label I/O against real Caffe fixtures, SqueezeNet and LeNet."""
import json
import os

import cv2
import numpy as np
import pytest

from caffevis import mnist
from caffevis.model.caffe.schema import BlobProto
from caffevis.errors import InputError, SettingsError
from caffevis.images import crop_mean, load_mean, read_image, read_labels, square_crop, write_image
from caffevis.preprocess import Preprocessor, preprocess_file
from caffevis.settings import REPO_ROOT, load_settings
from conftest import fixture_arrays, shared_path

SETTINGS = os.path.join(REPO_ROOT, "settings")


def image_path(*parts):
    return shared_path("data", "images", *parts)


def ilsvrc_mean():
    return shared_path("data", "imagenet", "ilsvrc_2012_mean.npy")


# -- the real-Caffe fixtures' inputs ---------------------------------------------------------------
# Both sides decode the JPEGs with OpenCV's libjpeg and resize in float32 with cv2's bilinear
# filter, so only float32 rounding of the mean subtraction remains (observed max 3.1e-5 on
# values up to ~150). 1e-3 leaves room for that and nothing else: one JPEG level off would be 1.0.
FIXTURE_TOL = 1e-3


@pytest.mark.parametrize("case,files", [
    ("caffenet_small", [("dvt_input_images", "ILSVRC2012_val_00016655.jpg"), ("caffe_examples", "cat.jpg")]),
    ("alexnet_small", [("dvt_input_images", "ILSVRC2012_val_00016655.jpg")]),
])
def test_preprocess_reproduces_the_caffenet_fixture_inputs(case, files):
    ref = fixture_arrays(case, "input.npy")
    pre = Preprocessor(ref.shape, mean=ilsvrc_mean())  # BGR, 0-255, mean image cropped at 14
    x = pre.preprocess([read_image(image_path(*f)) for f in files])
    assert x.shape == ref.shape and x.dtype == np.float32
    assert np.abs(x - ref).max() <= FIXTURE_TOL


def test_settings_pipeline_reproduces_the_squeezenet_fixture_and_its_top5():
    shared_path("models", "squeezenet_v1.0")  # the weights (or `caffevis fetch squeezenet`)
    s = load_settings(os.path.join(SETTINGS, "squeezenet.yaml"))
    net = s.open_net()
    pre = Preprocessor.from_settings(s, net.input_shape)
    x = preprocess_file(image_path("dvt_input_images", "ILSVRC2012_val_00000610.jpg"), pre)
    ref = fixture_arrays("squeezenet_v1.0", "input.npy")
    assert np.abs(x - ref).max() <= FIXTURE_TOL
    meta = json.load(open(fixture_arrays("squeezenet_v1.0", "meta.json")))
    prob = net.forward(x, blobs=["prob"])["prob"].reshape(-1)
    assert np.argsort(-prob)[:5].tolist() == meta["top5"][0]
    np.testing.assert_allclose(np.sort(prob)[::-1][:5], meta["top5_prob"][0], rtol=1e-4, atol=1e-6)


def test_squeezenet_top1_on_the_toolbox_images():
    shared_path("models", "squeezenet_v1.0")  # the weights (or `caffevis fetch squeezenet`)
    # reference classes from ../shared/README.md (an independent implementation)
    expected = {
        "dvt_input_images/ILSVRC2012_val_00000610.jpg": "jaguar",
        "dvt_input_images/ILSVRC2012_val_00008338.jpg": "golden retriever",
        "dvt_input_images/ILSVRC2012_val_00011425.jpg": "orangutan",
        "dvt_input_images/ILSVRC2012_val_00016655.jpg": "fireboat",
        "dvt_input_images/ILSVRC2012_val_00020333.jpg": "ambulance",
        "dvt_input_images/ILSVRC2012_val_00029739.jpg": "cowboy hat",
        "space_shuttle.jpg": "space shuttle",
    }
    s = load_settings(os.path.join(SETTINGS, "squeezenet.yaml"))
    net = s.open_net()
    pre = Preprocessor.from_settings(s, net.input_shape)
    labels = s.labels()
    x = pre.preprocess([read_image(image_path(*name.split("/"))) for name in expected])
    prob = net.forward(x, blobs=["prob"])["prob"].reshape(len(expected), -1)
    assert [labels[i] for i in prob.argmax(1)] == list(expected.values())


def test_lenet_fixture_input_and_full_mnist_accuracy():
    s = load_settings(os.path.join(SETTINGS, "lenet.yaml"), {
        "caffevis_deploy_prototxt": shared_path("models", "lenet_caffe", "lenet.prototxt"),
        "caffevis_network_weights": shared_path("models", "lenet_caffe", "lenet_iter_10000.caffemodel")})
    net = s.open_net()
    pre = Preprocessor.from_settings(s, net.input_shape)
    images, labels = mnist.load("test", s.mnist_dir or shared_path("data", "mnist"))
    x = pre.preprocess(list(images))
    np.testing.assert_array_equal(x[:8], fixture_arrays("lenet", "input.npy"))
    np.testing.assert_array_equal(pre.preprocess(images[:8]), x[:8])  # an (N, H, W) array is a batch
    pred = np.concatenate([net.forward(x[i:i + 2000], blobs=["prob"])["prob"].argmax(1)
                           for i in range(0, len(x), 2000)])
    assert len(pred) == 10000
    assert round(100 * float((pred == labels).mean()), 2) == 99.14


# -- geometry ---------------------------------------------------------------------------------------
def test_square_crop_centres_with_floor_offset():
    img = read_image(image_path("caffe_examples", "fish-bike.jpg"))
    h, w = img.shape[:2]
    sq = square_crop(img)
    side = min(h, w)
    assert sq.shape[:2] == (side, side)
    off = (max(h, w) - side) // 2
    ref = img[:, off:off + side] if w > h else img[off:off + side]
    np.testing.assert_array_equal(sq, ref)


def test_stretch_mode_keeps_the_whole_frame():
    img = read_image(image_path("caffe_examples", "fish-bike.jpg"))
    assert img.shape[0] != img.shape[1]
    crop = Preprocessor((1, 3, 64, 64), mean=None, channel_swap=None)
    stretch = Preprocessor((1, 3, 64, 64), mean=None, channel_swap=None, stretch=True)
    a, b = crop.preprocess(img)[0], stretch.preprocess(img)[0]
    np.testing.assert_allclose(b.transpose(1, 2, 0), cv2.resize(img, (64, 64)), atol=1e-4)
    np.testing.assert_allclose(a.transpose(1, 2, 0), cv2.resize(square_crop(img), (64, 64)), atol=1e-4)
    assert np.abs(a - b).max() > 10


def test_offline_mode_is_a_256_resize_then_the_centre_227_crop():
    # on an image already 256x256 the offline mode is exactly Caffe's [14:241] crop
    img = cv2.resize(read_image(image_path("caffe_examples", "cat.jpg")), (256, 256))
    pre = Preprocessor((1, 3, 227, 227), mean=None)
    x = pre.preprocess(img, mode="offline")[0]
    np.testing.assert_array_equal(x, img[14:241, 14:241, ::-1].transpose(2, 0, 1))
    with pytest.raises(InputError):
        pre.preprocess(img, mode="zoom")


# -- values ---------------------------------------------------------------------------------------
def test_channel_swap_makes_bgr_and_deprocess_restores_rgb():
    img = read_image(image_path("caffe_examples", "cat.jpg"))
    sq = cv2.resize(square_crop(img), (227, 227))
    pre = Preprocessor((1, 3, 227, 227), mean=ilsvrc_mean())
    x = pre.preprocess(img)
    # channel 0 of the input is blue minus the blue mean
    mean = crop_mean(load_mean(ilsvrc_mean()), 3, (227, 227))
    np.testing.assert_allclose(x[0, 0], sq[:, :, 2] - mean[0], atol=1e-3)
    back = pre.deprocess(x)
    assert back.shape == (1, 227, 227, 3)
    np.testing.assert_allclose(back[0], sq, atol=1e-3)
    np.testing.assert_allclose(pre.deprocess(x[0]), sq, atol=1e-3)


@pytest.mark.parametrize("kwargs", [
    dict(mean=(104, 117, 123)),
    dict(mean=128.0, raw_scale=1 / 255.0, input_scale=2.0),
    dict(mean=None, channel_swap=None, raw_scale=255.0),
])
def test_round_trip(kwargs):
    img = read_image(image_path("dvt_input_images", "ILSVRC2012_val_00020333.jpg"))
    pre = Preprocessor((2, 3, 227, 227), **kwargs)
    x = pre.preprocess([img, img[:, ::-1]])
    expect = cv2.resize(square_crop(img), (227, 227))
    back = pre.deprocess(x)
    np.testing.assert_allclose(back[0], expect, atol=1e-3)
    np.testing.assert_allclose(back[1], cv2.resize(square_crop(img[:, ::-1]), (227, 227)), atol=1e-3)


def test_grey_net_takes_colour_and_grey_images():
    colour = read_image(image_path("dvt_input_images", "ILSVRC2012_val_00011425.jpg"))
    pre = Preprocessor((1, 1, 28, 28), input_scale=0.00390625)  # channel swap ignored for 1 channel
    x = pre.preprocess(colour)
    small = cv2.resize(square_crop(colour), (28, 28))
    np.testing.assert_allclose(x[0, 0], cv2.cvtColor(small, cv2.COLOR_RGB2GRAY) / 256, atol=1e-5)
    grey = read_image(image_path("dvt_input_images", "ILSVRC2012_val_00011425_gray.jpg"))
    g = pre.preprocess(grey[:, :, 0])
    assert g.shape == (1, 1, 28, 28)
    back = pre.deprocess(g)
    assert back.shape == (1, 28, 28, 3) and np.array_equal(back[..., 0], back[..., 2])
    assert pre.deprocess(g, rgb=False).shape == (1, 28, 28, 1)


def test_data_hw_must_fit_a_fixed_size_net():
    shared_path("models", "squeezenet_v1.0")  # the weights (or `caffevis fetch squeezenet`)
    s = load_settings(os.path.join(SETTINGS, "squeezenet.yaml"), {"caffevis_data_hw": [224, 224]})
    with pytest.raises(SettingsError, match=r"caffevis_data_hw: \[224, 224\] does not match the net input \[227, 227\]"):
        s.check_net(s.open_net())
    assert Preprocessor.from_settings(s, (1, 3, 227, 227)).input_hw == (224, 224)


def test_mean_errors():
    with pytest.raises(InputError, match="4 values; the net has 3"):
        Preprocessor((1, 3, 10, 10), mean=(1, 2, 3, 4))
    with pytest.raises(InputError, match="smaller than the net input"):
        Preprocessor((1, 3, 300, 300), mean=ilsvrc_mean())
    with pytest.raises(InputError, match="3 channels; the net has 1"):
        Preprocessor((1, 1, 28, 28), mean=ilsvrc_mean())
    with pytest.raises(InputError, match="permutation"):
        Preprocessor((1, 3, 8, 8), channel_swap=(1, 0))


def test_a_mean_that_does_not_fit_the_net_is_a_settings_error():
    s = load_settings(os.path.join(SETTINGS, "squeezenet.yaml"), {"caffevis_data_mean": [1.0, 2.0]})
    with pytest.raises(SettingsError, match=r"^override: caffevis_data_mean: mean has 2 values"):
        Preprocessor.from_settings(s, (1, 3, 227, 227))


# -- files ----------------------------------------------------------------------------------------
def test_binaryproto_and_npy_means_agree(tmp_path):
    mean = np.load(ilsvrc_mean())
    blob = BlobProto()
    blob.num, blob.channels, blob.height, blob.width = 1, *mean.shape
    blob.data.extend(mean.astype(np.float32).ravel().tolist())
    path = tmp_path / "mean.binaryproto"
    path.write_bytes(blob.SerializeToString())
    a, b = load_mean(str(path)), load_mean(ilsvrc_mean())
    assert a.shape == b.shape == (3, 256, 256)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    cropped = crop_mean(a, 3, (227, 227))
    np.testing.assert_array_equal(cropped, a[:, 14:241, 14:241])
    (tmp_path / "bad.binaryproto").write_bytes(b"\xff\xff\xff")
    with pytest.raises(InputError, match="bad.binaryproto: not a readable .binaryproto mean"):
        load_mean(str(tmp_path / "bad.binaryproto"))


def test_image_read_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="image file not found"):
        read_image(str(tmp_path / "none.jpg"))
    (tmp_path / "text.jpg").write_text("not a jpeg")
    with pytest.raises(InputError, match=r"text.jpg: not a readable image"):
        read_image(str(tmp_path / "text.jpg"))


def test_read_image_is_rgb_and_write_image_round_trips(tmp_path):
    img = read_image(image_path("dvt_input_images", "ILSVRC2012_val_00016655.jpg"))
    assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
    raw = cv2.imread(image_path("dvt_input_images", "ILSVRC2012_val_00016655.jpg"))
    np.testing.assert_array_equal(img, raw[:, :, ::-1])
    write_image(str(tmp_path / "x.png"), img)
    np.testing.assert_array_equal(read_image(str(tmp_path / "x.png")), img)
    gray = read_image(image_path("dvt_input_images", "ILSVRC2012_val_00011425_gray.jpg"))
    assert gray.shape[2] == 3 and np.array_equal(gray[..., 0], gray[..., 1])


def test_labels_skip_blank_lines(tmp_path):
    labels = read_labels(shared_path("data", "imagenet", "ilsvrc_2012_labels.txt"))
    assert len(labels) == 1000 and labels[:2] == ["tench", "goldfish"]
    (tmp_path / "l.txt").write_text("\ncat\n\n  dog  \n\n")
    assert read_labels(str(tmp_path / "l.txt")) == ["cat", "dog"]
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(InputError, match="holds no labels"):
        read_labels(str(tmp_path / "e.txt"))


def test_mean_npy_errors(tmp_path):
    with pytest.raises(InputError, match="mean file not found"):
        load_mean(str(tmp_path / "m.npy"))
    (tmp_path / "m.npy").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a readable .npy mean"):
        load_mean(str(tmp_path / "m.npy"))
