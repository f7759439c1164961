"""The viewer driven headless from key scripts on real nets, asserting on the window images.

SqueezeNet v1.0 with its real ImageNet weights on the toolbox's images, and LeNet with
MNIST digits and the mouse-drawn canvas. The same app as the window: compute and jpg
threads run, the driver waits for them per frame.
"""
import json
import os

import cv2
import numpy as np
import pytest

from caffevis.images import read_image, square_crop
from caffevis.viewer.launch import build_viewer, open_settings
from caffevis.viewer.state import tile_grid
from conftest import REPO, shared_path

GREEN = (128, 255, 128)
BACK_PAD = (128, 51, 51)  # caffevis_layer_clr_back_background (.2, .2, .5)
BP_NAME = (255, 204, 204)  # caffevis_control_clr_bp (.8, .8, 1)
BG = (51, 51, 51)


def pane(img, box):
    i, j, h, w = box
    return img[i:i + h, j:j + w]


def tile_pixel(box, n, tile_hw, unit, ty, tx, aspect):
    """Window pixel of grid pixel (ty, tx) in ``unit``'s padded tile, for an enlarged grid."""
    rows, cols = tile_grid(n, aspect)
    th, tw = tile_hw
    gh, gw = rows * (th + 2) - 1, cols * (tw + 2) - 1
    i, j, h, w = box
    s = min(h / gh, w / gw)
    r, c = divmod(unit, cols)
    return i + int((r * (th + 2) + ty + 0.5) * s), j + int((c * (tw + 2) + tx + 0.5) * s), s


def greenish(px):
    px = px.astype(int)
    return (px[..., 1] - np.maximum(px[..., 0], px[..., 2])) > 60


# -- SqueezeNet -------------------------------------------------------------------------------------
# frame i shows the window after key i-1:
#  1 k  2 l  3 n (bprop)  4 n (deconv)  5 o  6 o (fire2/squeeze1x1)  7 d (freeze)  8 n (off)  9 n (bprop)
# 10 u  11 u (conv1)  12 a (back diffs)  13 z (zoom)  14 h  15 h  16 esc  17 t  18 click tile 5  19 e
SQUEEZE_KEYS = "klnnoodnnuuazhh{esc}t"


@pytest.fixture(scope="module")
def squeeze():
    shared_path("models", "squeezenet_v1.0", "squeezenet_v1.0.caffemodel")
    images = shared_path("data", "images", "dvt_input_images")
    settings = open_settings(os.path.join(REPO, "settings", "squeezenet.yaml"))
    viewer = build_viewer(settings, images=images, headless=True)
    layers = viewer.state.layers
    cfg = viewer.config
    # conv1: 96 units of 111x111 on 8 x 12 tiles, shrunk into the 855 x 1200 layers pane
    rows, cols = tile_grid(96, cfg.caffevis_layers_aspect_ratio)
    s = min(855 / (rows * 113 - 1), 1200 / (cols * 113 - 1))
    click = (300 + int((5 * 113 + 56) * s), 45 + int(56 * s))  # the middle of conv1's tile 5
    deep = layers.index("fire9/concat")
    keys = SQUEEZE_KEYS + "{click:%d,%d}e" % click + "o" * deep + "l"
    records = viewer.run_headless(keys)
    return viewer, records, images


def test_squeezenet_pane_geometry_and_input(squeeze):
    viewer, recs, images = squeeze
    cfg = viewer.config
    assert cfg.window_panes["caffevis_layers"] == (45, 300, 855, 1200)
    assert "caffevis_jpgvis" not in cfg.window_panes
    for r in recs:
        assert r["image"].shape == (930, 1500, 3)
    first = sorted(f for f in os.listdir(images) if f.lower().endswith((".jpg", ".png")))[0]
    expect = cv2.resize(square_crop(read_image(os.path.join(images, first))), (300, 300))[..., ::-1]
    got = pane(recs[0]["image"], cfg.window_panes["input"]).astype(float)
    assert np.abs(got - expect).mean() < 1.0
    assert recs[0]["input"].startswith(first)
    # real weights: the first toolbox image is a jaguar (top-1 ~0.99)
    assert recs[0]["top5"][0][0] == "jaguar" and recs[0]["top5"][0][1] > 0.9
    aux = pane(recs[0]["image"], cfg.window_panes["caffevis_aux"])
    assert greenish(aux[:30]).sum() > 30  # the top-1 line, drawn in the p=1 green


def test_squeezenet_status_follows_keys(squeeze):
    viewer, recs, _ = squeeze
    status = [r["status"] for r in recs]
    assert status[0] == "fwd conv1:0 | Back: off | Boost: 0/1 | h for help"
    assert status[1] == "fwd conv1:0 | Back: off | Boost: 0/1"
    assert status[2] == "fwd conv1:1 | Back: off | Boost: 0/1"
    assert status[3] == "fwd conv1:1 | Back: bprop (from conv1_1, disp raw) | Boost: 0/1"
    assert status[4] == "fwd conv1:1 | Back: deconv (from conv1_1, disp raw) | Boost: 0/1"
    assert status[6] == "fwd fire2/squeeze1x1:1 | Back: deconv (from fire2/squeeze1x1_1, disp raw) | Boost: 0/1"
    assert status[10] == "fwd pool1:1 | Back: bprop (from fire2/squeeze1x1_1, disp raw) | Boost: 0/1"
    assert status[13] == "back conv1:1 | Back: bprop (from fire2/squeeze1x1_1, disp raw) | Boost: 0/1"
    assert status[16] == "fwd conv1:0 | Back: off | Boost: 0/1"
    assert status[17] == "fwd conv1:0 | Back: off | Boost: 0/0.7"
    # the status pixels change exactly when the text does
    box = (900, 0, 30, 1500)
    same = np.array_equal(pane(recs[15]["image"], box), pane(recs[13]["image"], box))
    assert same and recs[15]["status"] == recs[13]["status"]
    for a, b in ((0, 1), (1, 2), (3, 4), (16, 17)):
        assert not np.array_equal(pane(recs[a]["image"], box), pane(recs[b]["image"], box)), (a, b)


def test_squeezenet_cursor_border_moves(squeeze):
    viewer, recs, _ = squeeze
    box = viewer.config.window_panes["caffevis_layers"]
    aspect = viewer.config.caffevis_layers_aspect_ratio
    # conv1 (a shrunk grid): the top side of the cursor's ring is green-dominant
    for frame, on, off in ((1, 0, 1), (2, 1, 0)):
        img = recs[frame]["image"]
        for unit, want in ((on, True), (off, False)):
            y, x, s = tile_pixel(box, 96, (111, 111), unit, 0, 10, aspect)
            band = img[y - 1:y + 2, x:x + int(90 * s)]
            assert (greenish(band).any(axis=0).mean() > 0.8) == want, (frame, unit)
    # fire9/concat (an enlarged grid): exact cursor colour on the ring of unit 6, not on unit 5
    last, before = recs[-1], recs[-2]
    assert last["state"]["layer"] == "fire9/concat" and last["state"]["selected_unit"] == 6
    for rec, on, off in ((before, 5, 6), (last, 6, 5)):
        for ty, tx in ((0, 7), (7, 0), (7, 14), (14, 7)):
            y, x, s = tile_pixel(box, 512, (13, 13), on, ty, tx, aspect)
            assert s > 1 and tuple(rec["image"][y, x]) == GREEN
            y, x, _ = tile_pixel(box, 512, (13, 13), off, ty, tx, aspect)
            assert tuple(rec["image"][y, x]) == BG


def test_squeezenet_back_pane_backprop_vs_deconv(squeeze):
    viewer, recs, _ = squeeze
    box = viewer.config.window_panes["caffevis_back"]
    off, bprop1, deconv1 = (pane(recs[k]["image"], box).astype(float) for k in (2, 3, 4))
    assert (off == BG).all()  # back off: background
    # seeded at conv1 itself (start='layer', before relu_conv1) no ReLU is crossed: the
    # deconvnet and backprop are the same linear map
    assert bprop1.std() > 5 and np.array_equal(bprop1, deconv1)
    # from fire2/squeeze1x1 the signal crosses relu_conv1: the two differ
    assert recs[6]["state"]["back_mode"] == "deconv" and recs[9]["state"]["back_mode"] == "grad"
    assert recs[6]["state"]["backprop_layer"] == recs[9]["state"]["backprop_layer"] == "fire2/squeeze1x1"
    deconv, bprop = (pane(recs[k]["image"], box).astype(float) for k in (6, 9))
    for img in (bprop, deconv):
        assert img.std() > 5  # an image, not a flat colour
        # raw filter: zero diff is mid-grey, so the pane's median is about 128
        assert abs(np.median(img) - 128) < 8
    assert np.abs(bprop - deconv).mean() > 2


def test_squeezenet_frozen_unit_and_back_diffs(squeeze):
    viewer, recs, _ = squeeze
    st = recs[13]["state"]
    assert st["backprop_selection_frozen"] and st["backprop_layer"] == "fire2/squeeze1x1"
    assert st["layer"] == "conv1" and st["layers_show_back"] and st["back_mode"] == "grad"
    control = pane(recs[12]["image"], viewer.config.window_panes["caffevis_control"])
    assert (np.abs(control.astype(int) - BP_NAME).max(axis=2) < 30).sum() > 20  # the frozen layer's name
    layers = pane(recs[12]["image"], viewer.config.window_panes["caffevis_layers"]).astype(int)
    # backprop diffs from fire2 have both signs: negative red, positive green (scaled by max |diff|)
    red = (layers[..., 2] - np.maximum(layers[..., 0], layers[..., 1])) > 20
    green = (layers[..., 1] - np.maximum(layers[..., 0], layers[..., 2])) > 20
    assert red.sum() > 100 and green.sum() > 100
    assert (np.abs(layers - BACK_PAD).max(axis=2) < 12).sum() > 1000  # tile padding in back colour
    zoom = pane(recs[13]["image"], viewer.config.window_panes["caffevis_layers"]).astype(int)
    assert recs[13]["state"]["layers_pane_zoom_mode"] == 1
    assert (np.abs(zoom - BACK_PAD).max(axis=2) < 12).sum() < 50  # one unit, no grid padding


def test_squeezenet_help_reset_click_and_next_image(squeeze):
    viewer, recs, _ = squeeze
    assert recs[14]["state"]["help_mode"] and not recs[15]["state"]["help_mode"]
    outside = (slice(900, 930), slice(0, 1500))  # the status line, outside the help box: darkened x0.7
    np.testing.assert_allclose(recs[14]["image"][outside], recs[13]["image"][outside] * 0.7, atol=1)
    np.testing.assert_array_equal(recs[15]["image"], recs[13]["image"])  # help off: the same window again
    reset = recs[16]["state"]
    assert reset["layer"] == "conv1" and reset["cursor_area"] == "top" and not reset["back_enabled"]
    assert not reset["backprop_selection_frozen"] and reset["layers_pane_zoom_mode"] == 0
    assert (pane(recs[16]["image"], viewer.config.window_panes["caffevis_back"]) == BG).all()
    clicked = recs[18]["state"]
    assert clicked["cursor_area"] == "bottom" and clicked["selected_unit"] == 5
    box = viewer.config.window_panes["input"]
    assert recs[19]["input"] != recs[18]["input"]
    assert np.abs(pane(recs[19]["image"], box).astype(int) - pane(recs[18]["image"], box)).mean() > 20
    assert recs[19]["top5"][0][0] != recs[18]["top5"][0][0]


# -- LeNet ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet_settings():
    shared_path("data", "mnist", "t10k-images-idx3-ubyte.gz")
    settings = open_settings(os.path.join(REPO, "settings", "lenet.yaml"))
    if not os.path.isfile(settings.caffevis_network_weights or ""):
        shared_path("models", "lenet_caffe", "lenet_iter_10000.caffemodel")
    return settings


def test_lenet_mnist_digits_and_canvas(lenet_settings):
    viewer = build_viewer(lenet_settings, headless=True)
    assert viewer.canvas is not None and viewer.fetcher.static is not None
    # first MNIST test digits: 7, 2; then a vertical stroke on the canvas: a 1; then a 7
    keys = "e{draw:150,40,152,150,150,262}{rclick:10,10}{draw:80,60,220,60,200,100,120,270}x"
    recs = viewer.run_headless(keys)
    tops = [r["top5"][0][0] for r in recs]
    assert tops[:4] == ["7", "2", "1", "1"]  # frame 3: right-click cleared; the empty canvas is no new frame
    assert recs[4]["top5"][0][0] == "7"
    assert recs[2]["input"] == "digit canvas"
    inp = viewer.config.window_panes["input"]
    drawn = pane(recs[2]["image"], inp)
    assert (drawn[100:200, 145:157] > 200).all() and (drawn[100:200, :100] == 0).all()
    assert (pane(recs[3]["image"], inp) == 0).all()  # right-click cleared the canvas
    assert (pane(recs[5]["image"], inp) == 0).all()  # so did x



def test_input_pane_shows_new_input_at_once_or_with_its_results(lenet_settings):
    """The window (DeepVis) shows a new input before its forward; the web viewer's setting draws
    the input its shown results came from, so a frame's input pane and activations always match."""
    viewer = build_viewer(lenet_settings, headless=True)
    inp = viewer.config.window_panes["input"]

    def settle():
        viewer.heartbeat()
        while viewer.fetcher.step() or viewer.worker.step():
            viewer.poll_input()
        viewer.poll_input()
        viewer.worker.step()

    settle()
    first = pane(viewer.render(), inp).copy()
    one = np.zeros((28, 28), np.uint8)
    cv2.line(one, (14, 4), (14, 24), 255, 3)
    viewer.fetcher.show(cv2.cvtColor(one, cv2.COLOR_GRAY2BGR), "a one")
    viewer.poll_input()  # the new input is handed over; its forward has not run
    assert viewer.next_frame is not None
    shown_now = pane(viewer.render(), inp).copy()
    viewer.input_pane_follows_results = True
    shown_with_results = pane(viewer.render(), inp).copy()
    assert not np.array_equal(shown_now, first)  # the window: the new input at once
    assert np.array_equal(shown_with_results, first)  # the web viewer: still the input of the results
    viewer.worker.step()  # the forward of the new input
    assert viewer.top5()[0][0] == "1"
    assert np.array_equal(pane(viewer.render(), inp), shown_now)


def test_lenet_cli_headless_writes_frames(lenet_settings, tmp_path):
    from caffevis.cli import main

    out = tmp_path / "frames"
    code = main(["live", "--headless", "--keys", "kn{right}", "--save-frames", str(out)])
    assert code == 0
    pngs = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert pngs == ["frame_0000.png", "frame_0001.png", "frame_0002.png", "frame_0003.png"]
    meta = json.loads((out / "frames.json").read_text())
    assert [f["status"] for f in meta["frames"]][1:] == [
        "fwd conv1:0 | Back: off | Boost: 0/1",
        "fwd conv1:0 | Back: bprop (from conv1_0, disp raw) | Boost: 0/1",
        "fwd conv1:1 | Back: bprop (from conv1_1, disp raw) | Boost: 0/1"]
    img = cv2.imread(str(out / "frame_0003.png"))
    assert img.shape == (930, 1500, 3)
    back = pane(img, meta["window_panes"]["caffevis_back"])
    assert back.std() > 3


def test_bad_files_are_reported_and_skipped(lenet_settings, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    digit = np.zeros((28, 28), np.uint8)
    cv2.line(digit, (14, 4), (14, 24), 255, 3)
    cv2.imwrite(str(folder / "a_one.png"), digit)
    (folder / "b_broken.png").write_bytes(b"not a png at all")
    viewer = build_viewer(lenet_settings, images=str(folder), canvas=False, headless=True)
    recs = viewer.run_headless("ee")
    assert recs[0]["top5"][0][0] == "1"
    assert "b_broken.png: not a readable image" in recs[1]["status"]
    assert recs[1]["top5"][0][0] == "1"  # the last good frame stays
    assert "not a readable" not in recs[2]["status"] and recs[2]["input"].startswith("a_one.png")


def _unit_jpg_tree(root, layer, n_units, side=24):
    """A unit_jpg_vis tree for ``layer``: a distinct colour per unit in every file."""
    colors = [(int(40 + 200 * k / n_units), 255 - int(200 * k / n_units), (k * 53) % 256) for k in range(n_units)]
    for sub in ("regularized_opt", "max_im", "max_deconv"):
        os.makedirs(os.path.join(root, sub, layer), exist_ok=True)
    grid = int(np.ceil(np.sqrt(n_units)))
    sheet = np.zeros((grid * side, grid * side, 3), np.uint8)
    for k, color in enumerate(colors):
        r, c = divmod(k, grid)
        sheet[r * side:(r + 1) * side, c * side:(c + 1) * side] = color
        montage = np.zeros((2 * 66, 2 * 66, 3), np.uint8)
        montage[66:, :66] = color  # the bottom-left quadrant is the one shown
        cv2.imwrite(os.path.join(root, "regularized_opt", layer, f"{layer}_{k:04d}_montage.jpg"), montage)
        cv2.imwrite(os.path.join(root, "max_im", layer, f"{layer}_{k:04d}.jpg"), np.full((60, 60, 3), color, np.uint8))
        if k % 2 == 0:  # some units have no deconv file: skipped, the rest still shown
            cv2.imwrite(os.path.join(root, "max_deconv", layer, f"{layer}_{k:04d}.jpg"),
                        np.full((60, 60, 3), 255 - np.array(color), np.uint8))
    cv2.imwrite(os.path.join(root, "regularized_opt", layer, "whole_layer.jpg"), sheet,
                [cv2.IMWRITE_JPEG_QUALITY, 100])
    return colors


def test_jpgvis_pane_and_pattern_mode_from_unit_jpg_tree(lenet_settings, tmp_path):
    root = str(tmp_path / "unit_jpg_vis")
    colors = _unit_jpg_tree(root, "conv1", 20)
    panes = dict(lenet_settings.window_panes, caffevis_jpgvis=(0, 1200, 900, 300),
                 caffevis_layers=(50, 300, 850, 900))  # settings/lenet.yaml drops the jpgvis column
    settings = lenet_settings.replace(caffevis_unit_jpg_dir=root, caffevis_jpgvis_layers=["conv1"],
                                      caffevis_jpgvis_remap={"pool1": "conv1"}, window_panes=panes,
                                      caffevis_layers_aspect_ratio=1.0)
    viewer = build_viewer(settings, headless=True)
    recs = viewer.run_headless("klo9" "9s")
    box = viewer.config.window_panes["caffevis_jpgvis"]
    assert (pane(recs[0]["image"], box) == BG).all()  # cursor on the layer list: no unit images
    for frame, unit in ((1, 0), (2, 1), (3, 1)):  # pool1 borrows conv1's images (remap)
        jp = pane(recs[frame]["image"], box).astype(int)
        third = jp[:300]
        assert np.abs(third[20:280, 20:280] - colors[unit]).max() < 12, frame  # the optimised image
        assert np.abs(jp[320:580, 20:280] - colors[unit]).max() < 12  # top-9 patches
    assert (pane(recs[2]["image"], box)[620:880] == BG).all()  # unit 1 has no deconv file
    assert np.abs(pane(recs[1]["image"], box)[620:880, 20:280].astype(int) - (255 - np.array(colors[0]))).max() < 12
    assert (pane(recs[4]["image"], box) == BG).all()  # key 9: jpgs off
    # pattern mode: the layers pane shows the sprites of whole_layer.jpg instead of activations
    assert recs[6]["state"]["pattern_mode"] and recs[6]["status"].startswith("pattern pool1:1")
    layers = pane(recs[6]["image"], viewer.config.window_panes["caffevis_layers"])
    for unit in (0, 7, 19):
        y, x, s = tile_pixel(viewer.config.window_panes["caffevis_layers"], 20, (24, 24), unit, 12, 12, 1.0)
        assert np.abs(recs[6]["image"][y, x].astype(int) - colors[unit]).max() < 12, unit
    assert layers.std() > 20


def test_cli_rejects_bad_input_in_one_line(capsys, monkeypatch):
    from caffevis.cli import main

    assert main(["live", "--headless", "--keys", "k{nosuch}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("caffevis live: error: --keys: key script: unknown key '{nosuch}'")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["live"]) == 2
    assert "no display" in capsys.readouterr().err
    for argv, says in ((["--keys", "kn"], "--keys: only with --headless"),
                       (["--headless", "--frames", "0"], "--frames 0: expected"),
                       (["--headless", "--save-frames", "/proc/no/such"], "--save-frames /proc/no/such: cannot create"),
                       (["--headless", "--keys", "{click:1}"], "expected {click:X,Y}")):
        assert main(["live"] + argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert says in err[-1] and not any("Traceback" in line for line in err), argv


def test_video_input_advances_and_freezes(lenet_settings, tmp_path):
    from caffevis.lenet import mnist

    images, labels = mnist.load("test", lenet_settings.mnist_dir)
    path = tmp_path / "digits.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (112, 112))
    for k in range(4):
        writer.write(cv2.cvtColor(cv2.resize(images[k], (112, 112)), cv2.COLOR_GRAY2BGR))
    writer.release()
    viewer = build_viewer(lenet_settings, video=str(path), headless=True)
    viewer.fetcher.handle("toggle_input_mode")  # from the MNIST files to the video
    recs = viewer.run_headless("{wait}{wait}f{wait}f")
    assert [r["input"] for r in recs] == ["digits.avi #1", "digits.avi #2", "digits.avi #3",
                                          "digits.avi #3 (frozen)", "digits.avi #3 (frozen)", "digits.avi #4"]
    assert [r["top5"][0][0] for r in recs[:3]] == [str(v) for v in labels[:3]]
    assert recs[3]["status"].endswith("| live input frozen") and recs[5]["status"].endswith("| live input running")
