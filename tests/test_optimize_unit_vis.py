"""regularized_opt montages and whole_layer sprite sheets (the unit_jpg_vis tree)."""
import json
import os

import cv2
import numpy as np
import pytest

from caffevis import optimize as O
from caffevis.mining import unit_vis as U
from caffevis.mining.layout import crop_to_corner
from caffevis.errors import SettingsError
from caffevis.viewer import jpgvis
from caffevis.viewer import tiles as T
from conftest import lenet_caffe_paths

LENET_SCALE = 0.00390625


def test_montage_geometry_matches_deepvis_crop():
    """The viewer's crop_to_corner (2 + 1 px trimmed per side) must land exactly on the cells."""
    cell, grid = 227, 3
    rng = np.random.RandomState(0)
    quads = [[rng.randint(0, 256, (cell, cell, 3), dtype=np.uint8) for _ in range(9)] for _ in range(4)]
    m = U.make_montage(quads, grid, (cell, cell))
    half = 2 * 2 + 3 * (cell + 2)  # large padding around 3 cells with 1-px padding each
    assert m.shape == (2 * half, 2 * half, 3)
    for corner in range(4):
        quad = crop_to_corner(m, corner)  # the viewer's reader
        assert quad.shape[:2] == (3 * cell + 4, 3 * cell + 4)
        np.testing.assert_array_equal(quad[:cell, :cell], quads[corner][0])  # top-left cell starts the crop
        for k in range(9):
            np.testing.assert_array_equal(U.montage_cell(m, corner, k, grid), quads[corner][k])
    # one seed per preset: the crop is exactly the image
    m1 = U.make_montage([[q[0]] for q in quads], 1, (cell, cell))
    np.testing.assert_array_equal(crop_to_corner(m1, 2), quads[2][0])
    assert U.montage_grid(m.shape[0], cell) == 3 and U.montage_grid(m1.shape[0], cell) == 1


def test_sprite_sheet_round_trip():
    rng = np.random.RandomState(1)
    sprites = [rng.randint(0, 256, (5, 5, 3), dtype=np.uint8) for _ in range(10)]
    sprites[7] = None
    sheet = U.make_sprite_sheet(sprites, 10, (5, 5))
    assert sheet.shape == (20, 20, 3)  # ceil(sqrt(10)) = 4 per side, no gaps
    back = T.split_square_sprites(sheet, 10)  # the viewer's reader (pattern mode)
    for a, b in zip(sprites, back):
        np.testing.assert_array_equal(b, a if a is not None else 0)


def test_make_regularized_opt_tree_on_lenet(tmp_path):
    from caffevis.model.net import Net

    net = Net.from_caffe(*lenet_caffe_paths())
    space = O.InputSpace.build(net.input_shape, None, input_scale=LENET_SCALE)
    out = tmp_path / "unit_jpg_vis"
    summary = U.make_regularized_opt_tree(net, {"max_iter": 6}, "ip2", [0, 3], str(out), space=space, seeds=4,
                                          batch_size=8, progress=False)
    assert summary["done"] == [0, 3] and summary["grid"] == 2
    layer = out / "regularized_opt" / "ip2"
    m = cv2.imread(str(layer / "ip2_0003_montage.jpg"))[:, :, ::-1]
    assert m.shape[0] == m.shape[1] == 2 * U.quadrant_size(28, 2)
    # corner 2 (bottom-left) is preset 3; its first cell is the preset-3, seed-0 run's best_X
    ref = O.optimize(net, O.preset_params(3, push_layer="ip2", push_channel=3, rand_seed=0, max_iter=6), space)
    cell = U.montage_cell(m, 2, 0, 2).astype(int)
    assert np.abs(cell - O.render_best_x(ref.best_x, space).astype(int)).mean() < 4  # JPEG
    info = json.loads((layer / "ip2_0003_info.json").read_text())
    assert info["quadrants"]["2"] == "preset 3" and len(info["runs"]) == 16
    assert [r["preset"] for r in info["runs"][::4]] == [1, 2, 3, 4]
    assert [r["rand_seed"] for r in info["runs"][:4]] == [0, 1, 2, 3]
    assert info["runs"][8]["best_obj"] == pytest.approx(ref.best_obj, rel=1e-5)
    # whole layer: 10 channels -> 4 x 4 sprites of 28 px; unit 3's sprite is that cell, unit 1 is black
    sheet = cv2.imread(str(layer / "whole_layer.jpg"))[:, :, ::-1]
    assert sheet.shape == (112, 112, 3)
    sprites = jpgvis.load_pattern_sprites(str(out), "ip2", 10)[..., ::-1]  # what pattern mode shows
    assert np.abs(sprites[3].astype(int) - cell).mean() < 4
    assert sprites[1].max() < 16
    # the jpgvis pane finds the montage and shows its bottom-left quadrant (preset 3)
    pane = jpgvis.load_unit_stack(str(out), "ip2", 3, (300, 300))
    assert pane.size and pane.shape[1] == 300
    # resumable: finished units are skipped, a new one is added to the sheet
    again = U.make_regularized_opt_tree(net, {"max_iter": 6}, "ip2", [0, 3, 5], str(out), space=space, seeds=4,
                                        progress=False)
    assert again["done"] == [5] and again["skipped"] == [0, 3]
    sprites = T.split_square_sprites(cv2.imread(str(layer / "whole_layer.jpg"))[:, :, ::-1], 10)
    assert sprites[5].std() > 5
    with pytest.raises(SettingsError, match="rand_seed"):
        U.make_regularized_opt_tree(net, {"rand_seed": 1}, "ip2", [0], str(out), space=space, progress=False)


def test_make_unit_vis_from_optimize_results_writes_the_same_tree(tmp_path, capsys):
    """make-unit-vis --from-optimize DIR assembles regularized_opt/ from saved 'optimize --units' runs:
    the same bytes as make-unit-vis --regularized optimizing those runs itself."""
    from caffevis.cli import main

    results = tmp_path / "results"
    for preset in (1, 2, 3, 4):
        for seed in (0, 1):
            assert main(["optimize", "--settings", "lenet", "--push-layer", "ip2", "--units", "0-2", "--preset",
                         str(preset), "--rand-seed", str(seed), "--max-iter", "4",
                         "--output-prefix", str(results / f"p{preset}s{seed}")]) == 0

    def tree(name, *extra):
        out = tmp_path / name
        assert main(["make-unit-vis", "-o", str(out), "--regularized", "--settings", "lenet", "--layers", "ip2",
                     "--idx-end", "3", "--opt-seeds", "2", *extra]) == 0
        return out / "regularized_opt" / "ip2"

    made, assembled = tree("made", "--opt-max-iter", "4"), tree("assembled", "--from-optimize", str(results))
    names = sorted(os.listdir(made))
    assert names == sorted(os.listdir(assembled))
    assert {"ip2_0000_montage.jpg", "ip2_0002_info.json", "whole_layer.jpg"} <= set(names)
    for name in names:
        assert (made / name).read_bytes() == (assembled / name).read_bytes(), name

    # one default run (preset 3, seed 0) fills the quadrant the viewer crops and the sprite sheet
    single = tmp_path / "single"
    assert main(["optimize", "--settings", "lenet", "--push-layer", "ip2", "--units", "1", "--max-iter", "4",
                 "--output-prefix", str(single / "opt")]) == 0
    out = tmp_path / "one"
    assert main(["make-unit-vis", "-o", str(out), "--settings", "lenet", "--layers", "ip2", "--idx-end", "3",
                 "--from-optimize", str(single)]) == 1  # units 0 and 2 have no run
    assert "unit 0: no saved optimize run" in capsys.readouterr().err
    m = cv2.imread(str(out / "regularized_opt" / "ip2" / "ip2_0001_montage.jpg"))
    assert m.shape == (2 * U.quadrant_size(28, 1),) * 2 + (3,)
    assert crop_to_corner(m, 2).std() > 0 and crop_to_corner(m, 0).max() < 8  # black, up to JPEG noise
    info = json.loads((out / "regularized_opt" / "ip2" / "ip2_0001_info.json").read_text())
    assert [(r["preset"], r["rand_seed"]) for r in info["runs"]] == [(3, 0)]
    assert not (out / "regularized_opt" / "ip2" / "ip2_0000_montage.jpg").exists()
