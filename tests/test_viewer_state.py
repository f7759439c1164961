"""The viewer's state machine: DeepVis's navigation, back modes, freezing, boosts, reset."""
import pytest

from caffevis.viewer.config import ViewerConfig
from caffevis.viewer.state import ViewerState, tile_grid

# CaffeNet's layer list (blobs, data excluded) and unit counts
LAYERS = ["conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7",
          "fc8", "prob"]
UNITS = dict(zip(LAYERS, [96, 96, 96, 256, 256, 256, 384, 384, 256, 256, 4096, 4096, 1000, 1000]))


@pytest.fixture
def st():
    return ViewerState(LAYERS, UNITS, ViewerConfig.from_settings(None))


@pytest.mark.parametrize("n,aspect,grid", [(96, 1, (10, 10)), (256, 1, (16, 16)), (384, 1, (20, 20)),
                                           (4096, 1, (64, 64)), (1000, 1, (32, 32)), (96, 1200 / 855, (8, 12)),
                                           (1, 1, (1, 1)), (10, 1, (3, 4))])
def test_tile_grid_as_deepvis(n, aspect, grid):
    assert tile_grid(n, aspect) == grid


def test_initial_state(st):
    snap = st.snapshot()
    assert snap["layer"] == "conv1" and snap["cursor_area"] == "top" and snap["selected_unit"] == 0
    assert not snap["back_enabled"] and snap["back_mode"] == "grad" and snap["back_filt_mode"] == "raw"
    assert snap["boost_indiv"] == 0 and snap["boost_gamma"] == 1
    assert snap["message"] == "h for help"


def test_navigation_top_and_bottom(st):
    st.handle("sel_right")
    st.handle("sel_right")
    assert st.layer == "norm1" and st.cursor_area == "top"
    st.handle("sel_left")
    assert st.layer == "pool1"
    st.handle("sel_up")  # nothing above the layer list
    assert st.cursor_area == "top"
    st.handle("sel_down")
    assert st.cursor_area == "bottom" and st.selected_unit == 0
    st.handle("sel_right")
    st.handle("sel_down")  # one row down: +10 columns for 96 units
    assert st.selected_unit == 11
    st.handle("sel_right_fast")
    assert st.selected_unit == 14
    st.handle("sel_up")
    assert st.selected_unit == 4 and st.cursor_area == "bottom"
    st.handle("sel_up")  # past the first row: back to the layer list
    assert st.cursor_area == "top"


def test_selection_is_clamped(st):
    st.handle("sel_down")
    st.handle("sel_left")
    assert st.selected_unit == 0
    for _ in range(20):
        st.handle("sel_down_fast")
    assert st.selected_unit == 95
    st.handle("sel_layer_right")  # pool1 has 96 units too
    assert st.layer == "pool1" and st.selected_unit == 95
    for _ in range(30):
        st.handle("sel_layer_right")
    assert st.layer == "prob"
    for _ in range(30):
        st.handle("sel_layer_left")
    assert st.layer == "conv1"


def test_ez_back_loop(st):
    seq = []
    for _ in range(5):
        st.handle("ez_back_mode_loop")
        seq.append((st.back_enabled, st.back_mode, st.back_filt_mode))
    assert seq == [(True, "grad", "raw"), (True, "grad", "norm"), (True, "deconv", "raw"), (False, "deconv", "raw"),
                   (True, "grad", "raw")]
    st.handle("back_filt_mode")  # grad/gray is not on the ez loop: b turns back off
    st.handle("ez_back_mode_loop")
    assert not st.back_enabled


def test_expert_back_mode_and_filters(st):
    modes = []
    for _ in range(4):
        st.handle("back_mode")
        modes.append(st.back_mode if st.back_enabled else "off")
    assert modes == ["grad", "deconv", "off", "grad"]
    filts = []
    for _ in range(5):
        st.handle("back_filt_mode")
        filts.append(st.back_filt_mode)
    assert filts == ["gray", "norm", "normblur", "raw", "gray"]


def test_guided_cycle(st):
    modes = []
    for _ in range(5):
        st.handle("back_mode_guided")
        modes.append(st.back_mode if st.back_enabled else "off")
    assert modes == ["grad", "deconv", "guided", "off", "grad"]
    assert st.back_net_mode == "backprop"


def test_back_follows_selection_and_staleness(st):
    st.handle("back_mode")
    assert st.back_stale and st.back_key == ("grad", "conv1", 0)
    st.back_stale = False
    st.handle("sel_down")  # same unit: nothing changes
    assert not st.back_stale
    st.handle("sel_right")
    assert st.back_stale and (st.backprop_layer, st.backprop_unit) == ("conv1", 1)


def test_freeze_back_unit(st):
    st.handle("sel_down")
    st.handle("sel_right")
    st.handle("back_mode")
    st.handle("freeze_back_unit")
    assert st.backprop_selection_frozen and (st.backprop_layer, st.backprop_unit) == ("conv1", 1)
    st.back_stale = False
    st.handle("sel_right")
    st.handle("sel_layer_right")
    assert (st.backprop_layer, st.backprop_unit) == ("conv1", 1) and not st.back_stale
    assert st.back_visible()
    st.handle("freeze_back_unit")  # unfreeze: back follows the selection again
    assert (st.backprop_layer, st.backprop_unit) == ("pool1", 2) and st.back_stale


def test_back_hidden_on_layer_list_unless_frozen(st):
    st.handle("back_mode")
    assert not st.back_visible()  # cursor on the layer list
    st.handle("freeze_back_unit")
    assert st.back_visible()


def test_show_back_enables_back_and_leaves_pattern_mode():
    st = ViewerState(LAYERS, UNITS, ViewerConfig.from_overrides(caffevis_unit_jpg_dir="."))
    st.handle("show_back")
    assert st.layers_show_back and st.back_enabled and st.back_mode == "grad"
    st.handle("show_back")
    assert not st.layers_show_back and st.back_enabled
    st.handle("pattern_mode")
    assert st.pattern_mode
    st.handle("show_back")  # in pattern mode, a leaves pattern mode
    assert not st.pattern_mode and not st.layers_show_back


def test_pattern_mode_needs_unit_jpg_dir(st):
    st.handle("pattern_mode")
    assert not st.pattern_mode and "caffevis_unit_jpg_dir" in st.message


def test_zoom_skips_back_when_off(st):
    zooms = []
    for _ in range(3):
        st.handle("zoom_mode")
        zooms.append(st.layers_pane_zoom_mode)
    assert zooms == [1, 0, 1]
    st.handle("back_mode")
    st.handle("zoom_mode")
    assert st.layers_pane_zoom_mode == 2


def test_boosts_cycle_through_choices(st):
    gammas = []
    for _ in range(5):
        st.handle("boost_gamma")
        gammas.append(st.boost_gamma)
    assert gammas == [0.7, 0.5, 0.3, 1.0, 0.7]
    indiv = []
    for _ in range(6):
        st.handle("boost_individual")
        indiv.append(st.boost_indiv)
    assert indiv == [0.3, 0.5, 0.8, 1.0, 0.0, 0.3]


def test_toggles_and_reset(st):
    st.handle("toggle_label_predictions")
    st.handle("toggle_unit_jpgs")
    assert not st.show_label_predictions and not st.show_unit_jpgs
    for tag in ("sel_down", "sel_right", "back_mode", "freeze_back_unit", "zoom_mode", "boost_gamma", "show_back",
                "sel_layer_right"):
        st.handle(tag)
    st.handle("reset_state")
    fresh = ViewerState(LAYERS, UNITS, ViewerConfig.from_settings(None)).snapshot()
    snap = st.snapshot()
    fresh.pop("message")
    snap.pop("message")
    assert snap == fresh


def test_mouse_selection(st):
    st.select_unit(42)
    assert st.cursor_area == "bottom" and st.selected_unit == 42
    st.select_layer(3)
    assert st.layer == "conv2" and st.cursor_area == "top" and st.selected_unit == 42
    st.select_unit(10 ** 6)
    assert st.selected_unit == 255


def test_unknown_tag_is_not_handled(st):
    assert st.handle("help_mode") is False  # a base key: the app handles it
    assert st.handle("sel_down") is True


def test_leaving_pattern_mode_with_a_turns_back_on_when_diffs_are_shown():
    st = ViewerState(LAYERS, UNITS, ViewerConfig.from_overrides(caffevis_unit_jpg_dir="."))
    st.handle("show_back")  # diffs on (back on)
    st.handle("back_mode")  # back: grad -> deconv
    st.handle("back_mode")  # back off, diffs still selected
    assert st.layers_show_back and not st.back_enabled
    st.handle("pattern_mode")
    st.handle("show_back")  # leaves pattern mode; the diffs shown need back: on again (DeepVis)
    assert not st.pattern_mode and st.layers_show_back and st.back_enabled
