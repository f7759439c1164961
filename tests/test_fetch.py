"""The CaffeNet/AlexNet fetcher: sha1 verification, partial-file cleanup, conversion (no network)."""
import json
import os
import re
import subprocess
import sys

import pytest

from caffevis import fetch
from caffevis.fetch import MODELS, FetchError, ModelSource
from caffevis.model.net import Net
from caffevis.settings import REPO_ROOT
from conftest import fixture_arrays, rel_err, shared_path


def small_caffenet_source():
    """The caffenet_small fixture as a 'published' model: local paths and the weights' real sha1."""
    case = shared_path("fixtures", "caffe", "caffenet_small")
    sha1 = json.load(open(os.path.join(case, "meta.json")))["weights_sha1"]
    return ModelSource("caffenet_small", os.path.join(case, "weights.caffemodel"), "caffenet_small.caffemodel",
                       sha1, os.path.join(case, "deploy.prototxt"))


def test_published_sha1s_match_the_caffe_readmes():
    for key, readme in (("caffenet", "bvlc_reference_caffenet_readme.md"), ("alexnet", "bvlc_alexnet_readme.md")):
        text = open(shared_path("models", "prototxt", readme)).read()
        assert MODELS[key].sha1 == re.search(r"^sha1: ([0-9a-f]{40})$", text, re.M).group(1)
        assert MODELS[key].weights_url == re.search(r"^caffemodel_url: (\S+)$", text, re.M).group(1)


def test_sha1_mismatch_deletes_the_partial_download(tmp_path):
    src = small_caffenet_source()
    dest = tmp_path / "zoo" / "bvlc_reference_caffenet.caffemodel"
    url = fetch.as_url(src.weights_url)
    assert url.startswith("file://")
    with pytest.raises(FetchError) as info:
        fetch.download(url, str(dest), sha1=MODELS["caffenet"].sha1, progress=False)
    msg = str(info.value)
    assert "sha1 mismatch" in msg and src.sha1 in msg and MODELS["caffenet"].sha1 in msg and "\n" not in msg
    assert not dest.exists() and not os.path.exists(str(dest) + ".part")


def test_verified_download_then_conversion_matches_caffe(tmp_path):
    src = small_caffenet_source()
    paths = fetch.fetch_model(src, dest_dir=str(tmp_path / "m"), progress=False, log=lambda *_: None)
    assert fetch.sha1_of(paths["weights"]) == src.sha1
    assert os.path.isfile(paths["onnx"]) and os.path.isfile(str(tmp_path / "m" / "caffenet_small.json"))
    net = Net.from_onnx(paths["onnx"], force_cpu=True)
    out = net.forward(fixture_arrays("caffenet_small", "input.npy"))
    ref = fixture_arrays("caffenet_small", "blobs.npz")
    for blob in ("conv1", "norm2", "fc8", "prob"):
        assert rel_err(out[blob], ref[blob]) <= 1e-5, blob


def test_present_weights_are_verified_not_trusted(tmp_path):
    src = small_caffenet_source()
    d = tmp_path / "m"
    fetch.fetch_model(src, dest_dir=str(d), convert=False, progress=False, log=lambda *_: None)
    with open(d / "caffenet_small.caffemodel", "r+b") as f:  # one flipped byte
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(FetchError, match="does not match the published"):
        fetch.fetch_model(src, dest_dir=str(d), convert=False, progress=False, log=lambda *_: None)
    # --force downloads again and repairs it
    fetch.fetch_model(src, dest_dir=str(d), convert=False, force=True, progress=False, log=lambda *_: None)
    assert fetch.sha1_of(str(d / "caffenet_small.caffemodel")) == src.sha1


def test_unreachable_source_is_one_line(tmp_path):
    with pytest.raises(FetchError, match="download failed") as info:
        fetch.download(str(tmp_path / "nothing.caffemodel"), str(tmp_path / "out"), progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


def test_imagenet_files_are_checked_by_content(tmp_path):
    sources = {"ilsvrc_2012_mean.npy": shared_path("data", "imagenet", "ilsvrc_2012_mean.npy"),
               "ilsvrc_2012_labels.txt": shared_path("data", "imagenet", "ilsvrc_2012_labels.txt")}
    out = fetch.fetch_imagenet_files(str(tmp_path / "a"), sources=sources, log=lambda *_: None)
    assert set(out) == set(sources) and all(os.path.isfile(p) for p in out.values())
    short = tmp_path / "short.txt"
    short.write_text("tench\ngoldfish\n")
    with pytest.raises(FetchError, match="2 labels; expected 1000"):
        fetch.fetch_imagenet_files(str(tmp_path / "b"), sources={"ilsvrc_2012_labels.txt": str(short),
                                                                "ilsvrc_2012_mean.npy": sources["ilsvrc_2012_mean.npy"]},
                                   log=lambda *_: None)
    assert not (tmp_path / "b" / "ilsvrc_2012_labels.txt").exists()


def test_tool_reports_a_bad_caffemodel_in_one_line(tmp_path):
    # the real CaffeNet name with the wrong file: the published sha1 rejects it
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "tools", "fetch_caffenet.py"), "caffenet", "--quiet",
         "--dest", str(tmp_path / "zoo"), "--no-imagenet",
         "--prototxt", shared_path("models", "prototxt", "bvlc_reference_caffenet_deploy.prototxt"),
         "--weights", shared_path("fixtures", "caffe", "caffenet_small", "weights.caffemodel")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "sha1 mismatch" in err[0] and MODELS["caffenet"].sha1 in err[0]
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path / "zoo")) == ["deploy.prototxt"]


# -- SqueezeNet v1.0 (sha256 of the file at a pinned commit of its published repository) ----------
def test_squeezenet_source_is_pinned_and_hashed():
    src = MODELS["squeezenet"]
    commit = "a47b6f13d30985279789d08053d37013d67d131b"
    for url in (src.weights_url, src.prototxt_url):
        assert url.startswith(f"https://raw.githubusercontent.com/forresti/SqueezeNet/{commit}/SqueezeNet_v1.0/")
    assert re.fullmatch(r"[0-9a-f]{64}", src.sha256) and re.fullmatch(r"[0-9a-f]{64}", src.prototxt_sha256)
    # what settings/squeezenet.yaml reads first
    assert (src.name, src.weights_file, src.prototxt_file) == \
        ("squeezenet_v1.0", "squeezenet_v1.0.caffemodel", "deploy.prototxt")


def test_sha256_checked_download_converts_squeezenet(tmp_path):
    import dataclasses

    d = shared_path("models", "squeezenet_v1.0")
    weights, proto = os.path.join(d, "squeezenet_v1.0.caffemodel"), os.path.join(d, "deploy.prototxt")
    # ../shared's caffemodel is not the published file (Caffe rewrote it): its sha256 differs
    assert fetch.sha256_of(weights) != MODELS["squeezenet"].sha256
    src = dataclasses.replace(MODELS["squeezenet"], weights_url=weights, prototxt_url=proto,
                              sha256=fetch.sha256_of(weights), prototxt_sha256=fetch.sha256_of(proto))
    paths = fetch.fetch_model(src, dest_dir=str(tmp_path / "sq"), progress=False, log=lambda *_: None)
    net = Net.from_onnx(paths["onnx"], force_cpu=True)
    ref = fixture_arrays("squeezenet_v1.0", "blobs.npz")
    out = net.forward(fixture_arrays("squeezenet_v1.0", "input.npy"))
    assert rel_err(out["prob"], ref["prob"]) <= 1e-5
    # present files are verified by their sha256 too
    with open(paths["weights"], "ab") as f:
        f.write(b"\0")
    with pytest.raises(FetchError, match="sha256 .* does not match"):
        fetch.fetch_model(src, dest_dir=str(tmp_path / "sq"), convert=False, progress=False, log=lambda *_: None)


def test_failed_fetch_leaves_no_empty_model_folder(tmp_path):
    d = shared_path("models", "squeezenet_v1.0")
    zoo = tmp_path / "zoo"
    proc = subprocess.run(
        [sys.executable, "-m", "caffevis", "fetch", "squeezenet", "--quiet", "--dest", str(zoo / "squeezenet_v1.0"),
         "--prototxt", os.path.join(d, "deploy.prototxt"), "--weights", os.path.join(d, "squeezenet_v1.0.caffemodel")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "sha256 mismatch" in err[0] and MODELS["squeezenet"].prototxt_sha256 in err[0]
    assert not (zoo / "squeezenet_v1.0").exists()
    # an unreachable source: no folder either
    with pytest.raises(FetchError, match="download failed"):
        fetch.fetch_model(MODELS["caffenet"], dest_dir=str(zoo / "c"), prototxt=str(tmp_path / "nothing"),
                          progress=False, log=lambda *_: None)
    assert not (zoo / "c").exists()
