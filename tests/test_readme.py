"""What a newcomer runs first: README's command lines, every command's --help, image input,
and train-lenet leaving the shipped weights alone."""
import argparse
import hashlib
import os
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest

from caffevis.cli import build_parser, main
from conftest import REPO, shared_path

LENET_ONNX = os.path.join(REPO, "model_zoo", "lenet", "lenet.onnx")
NEEDS_DOWNLOAD = re.compile(r"\bfetch\b|caffenet|alexnet|googlenet")


def readme_commands():
    """``caffevis ...`` lines of README.md's code blocks (comments dropped)."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    lines = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("caffevis ") and not NEEDS_DOWNLOAD.search(line):
                lines.append(line)
    return lines


def digit_png(path):
    """A 28x28 grey digit-like image (a ring) as PNG."""
    img = np.zeros((28, 28), np.uint8)
    cv2.circle(img, (14, 14), 8, 255, 3)
    cv2.imwrite(str(path), img)
    return img


def test_readme_has_runnable_command_lines():
    lines = readme_commands()
    assert len(lines) >= 6 and any(l.startswith("caffevis zf-figures --digit 0 --digit 8") for l in lines)


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_runs(line, tmp_path):
    """Each line as written, in a folder holding the repository's settings/ and model_zoo/."""
    if "zf-figures" in line or "train-lenet" in line:
        shared_path("data", "mnist")
    if "squeezenet" in line:
        shared_path("models", "squeezenet_v1.0")
    if "onnx_example" in line:  # its static_files_dir is the toolbox's images in ../shared
        shared_path("data", "images", "dvt_input_images")
    for name in ("settings", "model_zoo"):
        os.symlink(os.path.join(REPO, name), tmp_path / name)
    digit_png(tmp_path / "digit.png")
    argv = shlex.split(line)[1:]
    if argv[0] == "live":  # the window itself is tests/test_viewer_window.py's
        argv += ["--headless", "--keys", "kn"]
    env = dict(os.environ, CAFFEVIS_CACHE=str(tmp_path / "cache"), PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "caffevis", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{line}: {proc.stderr.strip()[-500:]}"
    written = {"forward": "blobs.npz", "export-grad": "conv2_deconv.onnx", "zf-figures": "zf_figures/zf_digit8.png",
               "train-lenet": "lenet_run/lenet.caffemodel", "optimize": "optimize_results"}
    if argv[0] in written:
        assert (tmp_path / written[argv[0]]).exists(), written[argv[0]]


def _command_parsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("command", sorted(_command_parsers()))
def test_every_option_shows_its_default(command):
    parser = _command_parsers()[command]
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.option_strings[0]}: no help"
        if action.required or action.nargs == 0:
            continue
        help_text = " ".join(parser._get_formatter()._expand_help(action).split())
        assert help_text in text
        assert "default" in help_text.lower(), f"{command} {action.option_strings[0]}: {help_text}"
        if action.default not in (None, []) and not isinstance(action.default, (list, tuple)):
            assert str(action.default).lower() in help_text.lower() or "default:" in help_text.lower(), \
                f"{command} {action.option_strings[0]}: default {action.default!r} not shown: {help_text}"


# -- forward / backward take images -----------------------------------------------------------------
def test_forward_and_backward_take_images_and_folders(tmp_path, tmp_cache):
    from caffevis.backward import Seed, backward
    from caffevis.model.net import Net

    img = digit_png(tmp_path / "a.png")
    folder = tmp_path / "imgs"
    folder.mkdir()
    digit_png(folder / "1.png")
    cv2.imwrite(str(folder / "2.png"), 255 - img)
    net = Net.load(LENET_ONNX, force_cpu=True)
    x = img[None, None].astype(np.float32) * 0.00390625  # settings/lenet.yaml: grey 0-255 * 1/256
    lenet = os.path.join(REPO, "settings", "lenet.yaml")
    assert main(["forward", LENET_ONNX, "--input", str(tmp_path / "a.png"), "--settings", lenet,
                 "-o", str(tmp_path / "a.npz")]) == 0
    got = np.load(tmp_path / "a.npz")
    np.testing.assert_allclose(got["data"], x)
    np.testing.assert_allclose(got["ip2"], net.forward(x)["ip2"], rtol=0, atol=1e-5)
    # a folder: one batch, sorted by name
    assert main(["forward", LENET_ONNX, "--input", str(folder), "--settings", lenet, "-o", str(tmp_path / "f")]) == 0
    both = np.load(tmp_path / "f.npz")["data"]
    np.testing.assert_allclose(both[0], x[0])
    np.testing.assert_allclose(both[1], (255 - img)[None].astype(np.float32) * 0.00390625)
    # .npy unchanged
    np.save(tmp_path / "x.npy", x * 3)
    assert main(["forward", LENET_ONNX, "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "n.npz")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "n.npz")["data"], x * 3)
    # backward from an image equals backward from its preprocessed array
    diff = np.zeros((1, 10), np.float32)
    diff[0, 3] = 1
    np.save(tmp_path / "d.npy", diff)
    assert main(["backward", LENET_ONNX, "--input", str(tmp_path / "a.png"), "--settings", lenet, "--blob", "ip2",
                 "--diff", str(tmp_path / "d.npy"), "-o", str(tmp_path / "g.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "g.npy"), backward(net, x, Seed("ip2", diff)), rtol=0, atol=1e-6)


def test_forward_input_errors_are_one_line(tmp_path, capsys):
    assert main(["forward", LENET_ONNX, "--input", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o")]) == 2
    assert "nope.png: file not found" in capsys.readouterr().err
    assert main(["forward", LENET_ONNX, "--input", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert "no .jpg/.png" in capsys.readouterr().err


# -- train-lenet keeps the shipped weights ------------------------------------------------------------
def _tree_hashes(folder):
    return {name: hashlib.sha1(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder))}


def test_train_lenet_by_default_leaves_model_zoo_alone(tmp_path):
    shared_path("data", "mnist")
    zoo = os.path.join(REPO, "model_zoo", "lenet")
    before = _tree_hashes(zoo)
    env = dict(os.environ, CAFFEVIS_CACHE=str(tmp_path / "cache"), PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "caffevis", "train-lenet", "--iterations", "5", "--quiet",
                           "--train-limit", "640"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert _tree_hashes(zoo) == before
    assert sorted(os.listdir(tmp_path / "lenet_run")) == ["lenet.caffemodel", "lenet.onnx", "lenet.prototxt",
                                                          "lenet_training.json"]
    assert f"wrote {os.path.join('lenet_run', 'lenet.caffemodel')}" in proc.stdout
    if subprocess.run(["git", "-C", REPO, "rev-parse"], capture_output=True).returncode == 0:
        status = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "model_zoo"], capture_output=True,
                                text=True).stdout
        assert status == ""


# -- optimize: defaults from the settings, missing things named as flags --------------------------------
def test_optimize_defaults_to_the_settings_label_layer(tmp_path, capsys):
    assert main(["optimize"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no model given" in err and "--settings" in err and "MODEL" in err
    lenet = os.path.join(REPO, "settings", "lenet.yaml")
    prefix = str(tmp_path / "o")
    assert main(["optimize", "--settings", lenet, "--max-iter", "3", "--output-prefix", prefix, "--quiet"]) == 0
    out = capsys.readouterr().out
    # ip2 (the label layer before the softmax); the preset's channel 130 does not fit 10 digits: 0
    assert f"{prefix}_ip2_0000_0_: unit" in out
    assert main(["optimize", "--settings", lenet, "--push-channel", "130", "--max-iter", "3",
                 "--output-prefix", prefix, "--quiet"]) == 2
    assert "130" in capsys.readouterr().err
