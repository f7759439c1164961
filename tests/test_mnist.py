"""MNIST idx reading: the real files (gz), raw copies, damaged files, the LeNet input scale."""
import gzip
import json
import os
import shutil

import numpy as np
import pytest

from caffevis.lenet import mnist
from caffevis.errors import InputError
from conftest import fixture_arrays, shared_path


def mnist_dir():
    return shared_path("data", "mnist")


def test_official_test_set_shape_and_classes():
    images, labels = mnist.load("test", mnist_dir())
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and images.min() == 0


def test_train_set_matches_its_labels():
    images, labels = mnist.load("train", mnist_dir())
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)


def test_first_test_digits_and_input_scale_match_the_caffe_fixture():
    # the fixture's input is Caffe's: the first 8 t10k digits × 0.00390625
    images, labels = mnist.load("test", mnist_dir())
    meta = json.load(open(fixture_arrays("lenet", "meta.json")))
    assert labels[:8].tolist() == meta["labels"]
    x = mnist.to_net_input(images[:8])
    ref = fixture_arrays("lenet", "input.npy")
    assert x.shape == ref.shape == (8, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_array_equal(x, ref)


def test_raw_and_gzip_files_read_the_same(tmp_path):
    src = mnist.find_file(mnist_dir(), "t10k-labels-idx1-ubyte")
    with gzip.open(src, "rb") as f:
        (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(f.read())
    raw = mnist.read_idx(str(tmp_path / "t10k-labels-idx1-ubyte"))
    np.testing.assert_array_equal(raw, mnist.read_idx(src))
    # a gzip file is recognised by its content, whatever its name
    shutil.copy(src, tmp_path / "renamed")
    np.testing.assert_array_equal(mnist.read_idx(str(tmp_path / "renamed")), raw)


def test_missing_directory_names_the_file(tmp_path):
    with pytest.raises(InputError, match=r"t10k-images-idx3-ubyte\[\.gz\]: MNIST file not found"):
        mnist.load("test", str(tmp_path))
    assert not mnist.available(str(tmp_path))


def test_environment_variable_gives_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("CAFFEVIS_MNIST", str(tmp_path))
    assert mnist.default_directory() == str(tmp_path)
    with pytest.raises(InputError, match=str(tmp_path)):
        mnist.load("test")


@pytest.mark.parametrize("content, message", [
    (b"\x08\x03\x00\x00", "bad magic"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "needs 5"),
    (b"\x00\x00\x08\x03\x00\x00", "header truncated"),
    (b"\x1f\x8b\x08\x00garbage", "damaged gzip"),
])
def test_damaged_files_raise_one_line(tmp_path, content, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        mnist.read_idx(str(path))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_label_count_mismatch(tmp_path):
    src = mnist_dir()
    for stem in mnist.FILES["test"]:
        shutil.copy(mnist.find_file(src, stem), tmp_path / (stem + ".gz"))
    labels = mnist.read_idx(mnist.find_file(src, "t10k-labels-idx1-ubyte"))[:100]
    header = b"\x00\x00\x08\x01" + len(labels).to_bytes(4, "big")
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(header + labels.tobytes())
    with pytest.raises(InputError, match="10000 images but .* has 100 labels"):
        mnist.load("test", str(tmp_path))


def test_first_of_class():
    labels = np.array([3, 1, 4, 1, 5])
    assert mnist.first_of_class(labels, 1) == 1
    with pytest.raises(InputError, match="digit 9"):
        mnist.first_of_class(labels, 9)
    with pytest.raises(InputError, match="split 'val'"):
        mnist.load("val")
