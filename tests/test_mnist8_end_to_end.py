"""mnist-8.onnx (the ONNX model zoo's CNTK export, real MNIST weights) through the toolbox as a user
runs it: the viewer with a drawn digit and the back pane, the optimizer on a logit, find-maxes on the
MNIST test set. The model is read from ../shared; the settings file is written here."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, shared_path

LOGITS = "Plus214_Output_0"


@pytest.fixture(scope="module")
def mnist8_settings(tmp_path_factory):
    model = shared_path("models", "mnist_onnx", "mnist-8.onnx")
    path = tmp_path_factory.mktemp("mnist8") / "mnist8.yaml"
    # raw 0-255 grey input (the model normalizes nothing itself), ten digit logits
    path.write_text(f"caffevis_onnx_model: {json.dumps(model)}\n"
                    "caffevis_data_mean: null\n"
                    "caffevis_label_names: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']\n"
                    f"caffevis_label_layers: [{LOGITS}]\n"
                    f"caffevis_prob_layer: {LOGITS}\n"
                    "caffevis_jpgvis_layers: []\n"
                    "window_panes:\n  caffevis_jpgvis: null\n  caffevis_layers: [50, 300, 850, 1200]\n")
    return str(path)


def _caffevis(*args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-m", "caffevis", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_viewer_drawn_stroke_is_a_one_and_the_back_pane_fills(mnist8_settings, tmp_path):
    import cv2

    frames = tmp_path / "frames"
    # a vertical stroke through the input pane (0, 0, 300, 300); k moves the cursor to the units, n: backprop
    _caffevis("live", "--settings", mnist8_settings, "--headless", "--keys", "{draw:150,110,150,300}{wait}k{wait}n{wait}",
              "--save-frames", str(frames), cwd=tmp_path)
    log = json.loads((frames / "frames.json").read_text())
    first, drawn, back = log["frames"][0], log["frames"][1], log["frames"][-1]
    assert first["input"].startswith("mnist test")
    assert drawn["input"] == "digit canvas" and drawn["top5"][0][0] == "1"
    assert back["state"]["back_enabled"] and not drawn["state"]["back_enabled"]
    y, x, h, w = log["window_panes"]["caffevis_back"]
    pane = cv2.imread(str(frames / f"frame_{len(log['frames']) - 1:04d}.png"))[y:y + h, x:x + w]
    before = cv2.imread(str(frames / "frame_0001.png"))[y:y + h, x:x + w]
    assert pane.std() > 3 and before.std() < 1  # the back pane shows a gradient only after n


def test_optimizer_raises_a_logit_to_the_top(mnist8_settings, tmp_path):
    _caffevis("optimize", "--settings", mnist8_settings, "--push-layer", LOGITS, "--push-channel", "3",
              "--max-iter", "50", "--output-prefix", str(tmp_path / "opt"), cwd=tmp_path)
    info = json.loads((tmp_path / f"opt_{LOGITS}_0003_0_info.json").read_text())["results"]
    obj = np.array(info["obj"])
    assert len(obj) == 50 and info["best_obj"] == obj.max() > 100 * abs(obj[0])
    assert info["meta_result"].endswith("majority success")  # unit 3 became the top logit
    assert (tmp_path / f"opt_{LOGITS}_0003_0_best_X.jpg").is_file()


def test_find_maxes_on_mnist_ranks_each_digit_logit_by_its_own_digit(tmp_path):
    from caffevis.mining.maxes import load_maxes

    model = shared_path("models", "mnist_onnx", "mnist-8.onnx")
    _caffevis("find-maxes", model, "--images", shared_path("data", "mnist", "t10k-images-idx3-ubyte.gz"),
              "--labels", shared_path("data", "mnist", "t10k-labels-idx1-ubyte.gz"), "--layers", LOGITS,
              "-N", "5", "-o", str(tmp_path / "maxes.h5"), cwd=tmp_path)
    result = load_maxes(str(tmp_path / "maxes.h5"))
    top = result.tracker.layers[LOGITS]
    assert top.image_index.shape == (10, 5) and (top.image_index >= 0).all()
    labels = np.asarray(result.labels)[top.image_index]
    # a trained classifier's most confident images of digit d are images of d
    assert (labels == np.arange(10)[:, None]).mean() >= 0.9
