"""Pure rendering: tiling, normalisation, back filters, sprites, cache, and whole windows
drawn from real Caffe blobs (the LeNet fixture), without running a model."""
import os

import cv2
import numpy as np
import pytest

from caffevis.mining.layout import crop_to_corner
from caffevis.viewer import render as R
from caffevis.viewer import tiles as T
from caffevis.viewer.config import ViewerConfig
from caffevis.viewer.jpgvis import NOT_FOUND, FIFOLimitedArrayCache, JpgVisLoader, load_unit_stack
from caffevis.viewer.state import ViewerState, tile_grid
from conftest import fixture_arrays

LENET_LAYERS = ["conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "prob"]
GREEN = (128, 255, 128)  # caffevis_layer_clr_cursor (.5, 1, .5) as BGR
BLUE = (255, 51, 51)  # caffevis_layer_clr_back_sel (.2, .2, 1) as BGR
BG = (51, 51, 51)  # window_background (.2, .2, .2)


# -- array helpers ------------------------------------------------------------------------------
def test_normalize_layer_is_global_then_boosted():
    blobs = fixture_arrays("lenet", "blobs.npz")
    conv1 = blobs["conv1"][0]
    out = T.normalize_layer(conv1)
    assert out.min() == pytest.approx(0, abs=1e-6) and out.max() == pytest.approx(1, abs=1e-6)
    # global, not per channel: a weak channel stays weak
    peaks = out.reshape(20, -1).max(axis=1)
    assert peaks.min() < 0.9
    ref = (conv1 - conv1.min()) / (conv1.max() - conv1.min())
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # boost_indiv = 1: every unit reaches its own maximum of ~1
    boosted = T.normalize_layer(conv1, boost_indiv=1.0)
    np.testing.assert_allclose(boosted.reshape(20, -1).max(axis=1), 1.0, atol=1e-4)
    gamma = T.normalize_layer(conv1, boost_gamma=0.5)
    np.testing.assert_allclose(gamma, np.sqrt(out), atol=1e-5)


def test_make_tiles_geometry_padding_and_highlights():
    tiles = (np.arange(5 * 4 * 3) % 200 + 10).astype(np.uint8).reshape(5, 4, 3)  # 5 tiles of 4x3
    grid = T.make_tiles(tiles, 2, 3, BG, {4: GREEN, 0: BLUE})
    assert grid.shape == (2 * 6 - 1, 3 * 5 - 1, 3)
    for k in range(5):
        r, c = divmod(k, 3)
        np.testing.assert_array_equal(grid[r * 6 + 1:r * 6 + 5, c * 5 + 1:c * 5 + 4, 0], tiles[k])
    # the cursor ring of tile 4 (row 1, col 1): top, left and right sides; its bottom side is
    # the trimmed trailing row
    assert tuple(grid[6, 5 + 2]) == GREEN and tuple(grid[6 + 3, 5]) == GREEN and tuple(grid[8, 9]) == GREEN
    assert tuple(grid[0, 1]) == BLUE
    assert tuple(grid[0, 6]) == BG  # tile 1's ring: plain padding
    # the missing sixth tile is padding colour throughout
    assert (grid[7:11, 11:14] == BG).all()


def test_fc_tiles_are_enlarged_to_three_pixels():
    tiles = np.arange(10, dtype=np.uint8).reshape(10, 1, 1)
    big = T.enlarge_tiny(tiles)
    assert big.shape == (10, 3, 3) and (big[7] == 7).all()


def test_resize_to_fit_nearest_up_linear_down():
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, 10:] = 200
    up = T.resize_to_fit(img, (100, 100))
    assert up.shape == (50, 100, 3) and set(np.unique(up)) == {0, 200}  # nearest keeps the two values
    down = T.resize_to_fit(np.kron(img, np.ones((4, 4, 1), np.uint8)), (15, 15))
    assert down.shape[1] == 15 and len(np.unique(down)) > 2  # linear blends at the edge


def test_back_filters():
    rng = np.random.default_rng(0)
    diff = rng.standard_normal((20, 20, 3)).astype(np.float32)
    diff[5, 5] = [0, 0, 0]
    raw = T.back_filter(diff, "raw")
    assert raw[5, 5].tolist() == pytest.approx([0.5] * 3, abs=1e-6)  # zero is mid-grey
    assert raw.min() >= 0 and raw.max() <= 1 and (raw.min() < 0.01 or raw.max() > 0.99)
    gray = T.back_filter(diff, "gray")
    assert gray.ndim == 2 and gray[5, 5] == pytest.approx(0.5, abs=1e-6)
    norm = T.back_filter(diff, "norm")
    assert norm.min() == pytest.approx(0) and norm.max() == pytest.approx(1, abs=1e-6) and norm[5, 5] == 0
    blur = T.back_filter(diff, "normblur", blur_sigma=4.0)
    assert np.abs(np.diff(blur, axis=0)).mean() < np.abs(np.diff(norm, axis=0)).mean() / 3
    with pytest.raises(ValueError):
        T.back_filter(diff, "sum")


def test_signed_diffs_are_red_and_green():
    diff = np.array([[[-2.0, 0.0, 1.0]]])
    col = T.signed_to_colors(diff)
    np.testing.assert_allclose(col[0, 0, 0], [0, 0, 1])  # negative -> red (BGR)
    np.testing.assert_allclose(col[0, 0, 1], [0, 0, 0])
    np.testing.assert_allclose(col[0, 0, 2], [0, 0.5, 0])  # positive -> green


def test_square_sprites_and_montage_corner():
    sprites = np.arange(9 * 4 * 4 * 3, dtype=np.uint8).reshape(9, 4, 4, 3)
    sheet = sprites.reshape(3, 3, 4, 4, 3).transpose(0, 2, 1, 3, 4).reshape(12, 12, 3)
    out = T.split_square_sprites(sheet, 7)
    assert out.shape == (7, 4, 4, 3)
    np.testing.assert_array_equal(out[5], sprites[5])
    with pytest.raises(ValueError):
        T.split_square_sprites(sheet[:11], 7)
    montage = np.zeros((40, 40), np.uint8)
    montage[20:, :20] = 9  # bottom-left quadrant
    corner = crop_to_corner(montage, 2)
    assert corner.shape == (14, 14) and (corner == 9).all()


def test_fifo_cache_evicts_in_insertion_order():
    cache = FIFOLimitedArrayCache(250)
    for k in "abc":
        cache.set(k, np.zeros(100, np.uint8))
    assert "a" not in cache and "b" in cache and "c" in cache and cache.nbytes == 200
    cache.get("b")  # reading does not refresh (FIFO, not LRU)
    cache.set("d", np.zeros(100, np.uint8))
    assert "b" not in cache and "c" in cache


def _write_unit_tree(root, layer, unit, side=60):
    rng = np.random.default_rng(unit)
    paths = {"regularized_opt": f"{layer}_{unit:04d}_montage.jpg", "max_im": f"{layer}_{unit:04d}.jpg",
             "max_deconv": f"{layer}_{unit:04d}.jpg"}
    for kind, name in paths.items():
        os.makedirs(os.path.join(root, kind, layer), exist_ok=True)
        img = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
        cv2.imwrite(os.path.join(root, kind, layer, name), img)


def test_unit_stack_and_loader_thread(tmp_path):
    root = str(tmp_path)
    _write_unit_tree(root, "conv5", 26)
    stack = load_unit_stack(root, "conv5", 26, (900, 300))
    assert stack.shape == (900, 300, 3)
    assert load_unit_stack(root, "conv5", 27, (900, 300)) is NOT_FOUND
    os.remove(os.path.join(root, "max_deconv", "conv5", "conv5_0026.jpg"))
    two = load_unit_stack(root, "conv5", 26, (900, 300))  # missing files are skipped
    assert two.shape[0] < 900 and two.shape[1] == 300
    loaded = []
    loader = JpgVisLoader(root, 50 * 2 ** 20, on_loaded=loaded.append).start()
    try:
        key = ("unit", "conv5", 26, (600, 300))
        assert loader.lookup(key) is None  # a miss queues the load
        for _ in range(500):
            if loader.idle and loaded:
                break
            loader.heartbeat()
            import time

            time.sleep(0.01)
        assert loaded == [key]
        assert loader.lookup(key).shape[1] == 300
    finally:
        loader.stop()


# -- whole windows from real blobs ------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet_blobs():
    blobs = fixture_arrays("lenet", "blobs.npz")
    return {k: blobs[k][0] for k in blobs.files}


@pytest.fixture
def config():
    return ViewerConfig.from_overrides(caffevis_label_names=[str(i) for i in range(10)], caffevis_prob_layer="prob",
                                       caffevis_label_layers=["ip2", "prob"])


def _state(config):
    units = {"conv1": 20, "pool1": 20, "conv2": 50, "pool2": 50, "ip1": 500, "ip2": 10, "prob": 10}
    return ViewerState(LENET_LAYERS, units, config)


def _tile_pixel(pane_box, n, tile_hw, unit, ty, tx, aspect=1.0):
    """Window pixel showing grid pixel (ty, tx) of ``unit``'s padded tile (nearest upscale)."""
    rows, cols = tile_grid(n, aspect)
    th, tw = tile_hw
    gh, gw = rows * (th + 2) - 1, cols * (tw + 2) - 1
    i, j, h, w = pane_box
    s = min(h / gh, w / gw)
    assert s > 1, "these checks assume an enlarged grid"
    r, c = divmod(unit, cols)
    gy, gx = r * (th + 2) + ty, c * (tw + 2) + tx
    return i + int((gy + 0.5) * s), j + int((gx + 0.5) * s)


def test_window_geometry_and_cursor_border(config, lenet_blobs):
    st = _state(config)
    st.handle("sel_down")
    for _ in range(7):
        st.handle("sel_right")
    image = {"input": np.full((28, 28), 200, np.float32)}
    layout = R.Layout()
    win = R.render(st, lenet_blobs, None, image, config, labels=config.caffevis_label_names, layout=layout)
    assert win.shape == (930, 1500, 3) and win.dtype == np.uint8
    box = config.pane("caffevis_layers")
    # the cursor unit (7) has a green ring, its neighbours plain padding
    for ty, tx in ((0, 13), (25, 13), (13, 0), (13, 25)):
        y, x = _tile_pixel(box, 20, (24, 24), 7, ty, tx)
        assert tuple(win[y, x]) == GREEN, (ty, tx)
        y, x = _tile_pixel(box, 20, (24, 24), 6, ty, tx)
        assert tuple(win[y, x]) == BG
    # tile content is the normalised activation (nearest enlargement keeps exact values)
    norm = T.to_uint8(T.normalize_layer(lenet_blobs["conv1"]))
    y, x = _tile_pixel(box, 20, (24, 24), 3, 1 + 10, 1 + 5)
    assert tuple(win[y, x]) == (norm[3, 10, 5],) * 3
    # the input pane is the frame stretched to 300x300, the jpgvis pane (no tree) background
    assert (win[0:300, 0:300] == 200).all()
    assert (win[0:900, 1200:1500] == BG).all()
    # a click on the tile selects it; a click on a layer name selects the layer
    y, x = _tile_pixel(box, 20, (24, 24), 12, 12, 12)
    assert R.hit_test(layout, st, x, y) == ("unit", 12)
    idx, bx, by, bw, bh = layout.control_boxes[2]
    assert R.hit_test(layout, st, bx + bw // 2, by + bh // 2) == ("layer", 2)
    assert by >= 0 and by + bh <= 30 and bx >= 300  # inside the control pane


def test_frozen_unit_border_and_status(config, lenet_blobs):
    st = _state(config)
    st.handle("sel_down")
    st.handle("sel_right")
    st.handle("back_mode")
    st.handle("freeze_back_unit")
    st.handle("sel_right")
    st.handle("sel_right")
    st.message = None
    win = R.render(st, lenet_blobs, None, {}, config)
    box = config.pane("caffevis_layers")
    y, x = _tile_pixel(box, 20, (24, 24), 1, 0, 12)
    assert tuple(win[y, x]) == BLUE
    y, x = _tile_pixel(box, 20, (24, 24), 3, 0, 12)
    assert tuple(win[y, x]) == GREEN
    assert R.status_text(st) == "fwd conv1:3 | Back: bprop (from conv1_1, disp raw) | Boost: 0/1"
    # no result yet for the frozen unit: the back pane is drawn stale
    i, j, h, w = config.pane("caffevis_back")
    assert config.stale_background == (51, 76, 76)  # (.3, .3, .2) as BGR
    assert (win[i:i + h, j:j + w] == config.stale_background).all()


def test_back_pane_from_real_caffe_deconv(config, lenet_blobs):
    st = _state(config)
    st.handle("sel_layer_right")
    st.handle("sel_layer_right")  # conv2
    st.handle("sel_down")
    for _ in range(7):
        st.handle("sel_right")  # conv2 unit 7: the fixture's channel-map seed
    st.handle("back_mode")
    st.handle("back_mode")  # deconv
    st.back_stale = False
    deconv = fixture_arrays("lenet", "deconv.npz")["conv2_chmap/lrn_derivative"][0]
    back = R.BackResult(st.back_key, deconv, {})
    win = R.render(st, lenet_blobs, back, {}, config)
    i, j, h, w = config.pane("caffevis_back")
    pane = win[i:i + h, j:j + w]
    expect = T.to_uint8(T.norm01c(deconv[0], 0))
    big = cv2.resize(expect, (h, w), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(pane[..., 0], big)
    # the layers pane with back diffs on: conv2 has no diff (above nothing), padding turns blue-grey
    st.handle("show_back")
    win2 = R.render(st, lenet_blobs, back, {}, config)
    i, j, h, w = config.pane("caffevis_layers")
    assert ((win2[i:i + h, j:j + w] == (128, 51, 51)).all(axis=2)).any()  # back background (.2,.2,.5)


def test_top5_in_aux_pane_and_label_overlay(config, lenet_blobs):
    st = _state(config)
    win = R.render(st, lenet_blobs, None, {}, config, labels=config.caffevis_label_names)
    i, j, h, w = config.pane("caffevis_aux")
    aux = win[i:i + h, j:j + w].astype(int)
    # the first digit is a 7 with p ~ 1: its line (rows 6..24) is drawn in the p=1 green
    greenish = (aux[..., 1] > aux[..., 0] + 60) & (aux[..., 1] > aux[..., 2] + 60)
    assert greenish[:25].sum() > 20 and greenish[60:].sum() == 0  # later lines have p ~ 0: grey
    assert (np.abs(aux[60:130] - 128) < 3).all(axis=2).sum() > 20  # grey text (.5,.5,.5)
    # label overlay on a label layer with the cursor on the units
    st.select_layer(LENET_LAYERS.index("prob"))
    st.select_unit(7)
    win = R.render(st, lenet_blobs, None, {}, config, labels=config.caffevis_label_names)
    i, j, h, w = config.pane("caffevis_layers")
    text_zone = win[i + 10:i + 35, j + 15:j + 40].astype(int)
    assert (text_zone.sum(axis=2) > 500).any()


def test_help_overlay_darkens_and_lists_keys(config, lenet_blobs):
    st = _state(config)
    plain = R.render(st, lenet_blobs, None, {}, config)
    st.help_mode = True
    helped = R.render(st, lenet_blobs, None, {}, config)
    corner = (slice(0, 40), slice(0, 40))
    np.testing.assert_allclose(helped[corner].astype(float), plain[corner] * 0.7, atol=1)
    rows = R.help_lines()
    assert any("Base keys" == t for k, t in rows) and any(k == "e/pgdn" for k, t in rows)
    assert sum(1 for k, t in rows if k) >= 20
    box = helped[int(.07 * 930):int(.93 * 930), int(.07 * 1500):int(.93 * 1500)]
    assert (box.sum(axis=2) > 600).sum() > 2000  # white help text


def test_zoom_modes(config, lenet_blobs):
    st = _state(config)
    st.handle("sel_down")
    st.handle("zoom_mode")
    win = R.render(st, lenet_blobs, None, {}, config)
    i, j, h, w = config.pane("caffevis_layers")
    pane = win[i:i + h, j:j + w]
    unit0 = T.to_uint8(T.normalize_layer(lenet_blobs["conv1"]))[0]
    big = cv2.resize(unit0, (870, 870), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(pane[:870, :870, 1], big)


def test_frozen_unit_ring_and_name_win_over_the_cursor(config, lenet_blobs):
    st = _state(config)
    st.handle("sel_down")
    st.handle("sel_right")
    st.handle("back_mode")
    st.handle("freeze_back_unit")  # the cursor stays on the frozen unit 1
    layout = R.Layout()
    win = R.render(st, lenet_blobs, None, {}, config, layout=layout)
    y, x = _tile_pixel(config.pane("caffevis_layers"), 20, (24, 24), 1, 0, 12)
    assert tuple(win[y, x]) == BLUE  # DeepVis paints the frozen unit's ring last
    # the selected layer's name keeps the frozen layer's bluish colour (not the selected white)
    _, bx, by, bw, bh = layout.control_boxes[0]
    name = win[by:by + bh, bx:bx + bw].astype(int)
    bp = np.array((255, 204, 204))  # caffevis_control_clr_bp (.8, .8, 1) as BGR
    assert (np.abs(name - bp).max(axis=2) < 8).sum() > 10
    assert not (name == 255).all(axis=2).any()
    st.handle("sel_layer_right")  # another layer selected: white there, bluish conv1
    win = R.render(st, lenet_blobs, None, {}, config, layout=layout)
    _, bx, by, bw, bh = layout.control_boxes[1]
    assert (win[by:by + bh, bx:bx + bw] == 255).all(axis=2).any()


def test_zoomed_back_pane_follows_the_back_display_rule(config, lenet_blobs):
    st = _state(config)
    st.handle("back_mode")
    st.handle("zoom_mode")
    st.handle("zoom_mode")
    assert st.layers_pane_zoom_mode == 2
    i, j, h, w = config.pane("caffevis_layers")
    # cursor on the layer list, source not frozen: back is hidden (background), not stale
    win = R.render(st, lenet_blobs, None, {}, config)
    assert (win[i:i + h, j:j + w] == BG).all()
    st.handle("sel_down")  # cursor on the units, no result yet: stale
    win = R.render(st, lenet_blobs, None, {}, config)
    assert (win[i:i + h, j:j + w] == config.stale_background).all()


def test_layer_names_clipped_by_the_control_pane_do_not_catch_clicks(lenet_blobs):
    from caffevis.settings import DEFAULT_WINDOW_PANES

    panes = {k: list(v) for k, v in DEFAULT_WINDOW_PANES.items()}
    panes["caffevis_control"] = [0, 300, 30, 160]  # the names wrap onto lines below the pane
    cfg = ViewerConfig.from_overrides(window_panes=panes)
    st = _state(cfg)
    layout = R.Layout()
    R.render(st, lenet_blobs, None, {}, cfg, layout=layout)
    assert 0 < len(layout.control_boxes) < len(LENET_LAYERS)
    assert all(by + bh <= 30 for _, _, by, _, bh in layout.control_boxes)
    for y in range(31, 60, 3):  # the top of the layers pane, where hidden names would be
        for x in range(300, 460, 10):
            hit = R.hit_test(layout, st, x, y)
            assert hit is None or hit[0] == "unit", (x, y, hit)


def test_text_blocks_are_drawn_with_their_flat_settings_keys():
    """The status line and the layer names are drawn from their blocks' DeepVis keys (read as
    one TextStyle each): pixel for pixel the OpenCV text those keys describe."""
    cfg = ViewerConfig.from_overrides(
        caffevis_status_face="FONT_HERSHEY_SIMPLEX", caffevis_status_clr=[0.2, 0.4, 0.6], caffevis_status_fsize=0.9,
        caffevis_status_thick=2, caffevis_status_loc=[18, 7], caffevis_control_clr_bp=[0.6, 0.2, 0.0],
        caffevis_control_thick_bp=3, caffevis_control_thick_selected=1, caffevis_control_fsize=1.4)
    st = _state(cfg)
    i, j, h, w = cfg.pane("caffevis_status")
    pane = np.zeros((h, w, 3), np.uint8)
    R.draw_status(pane, st, cfg, 12.5)
    font = cv2.FONT_HERSHEY_SIMPLEX
    want = np.zeros_like(pane)
    cv2.putText(want, R.status_text(st, 12.5), (7, 18), font, R.cv_scale(font, 0.9), (153, 102, 51), 2, cv2.LINE_AA)
    assert want.any()
    np.testing.assert_array_equal(pane, want)
    # layer names: the frozen layer in clr_bp / thick_bp, the selected one in clr_selected / thick_selected
    st.handle("sel_down")
    st.handle("back_mode")
    st.handle("freeze_back_unit")
    st.handle("sel_layer_right")
    items = R.control_items(st, cfg)
    face = cv2.FONT_HERSHEY_COMPLEX_SMALL  # the default caffevis_control_face
    assert items[0] == ("conv1", face, 1.4, (0, 51, 153), 3)
    assert items[1] == ("pool1", face, 1.4, (255, 255, 255), 1)
    assert items[2] == ("conv2", face, 1.4, (204, 204, 204), 1)
