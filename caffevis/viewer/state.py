"""The viewer's UI state and what every caffevis key does to it (DeepVis's app state).

Pure: no OpenCV window, no model, no threads. The app holds a lock around it.
"""
from __future__ import annotations

import math

#: back modes: DeepVis's names (status line) -> the ``mode`` of :func:`caffevis.backward.backward`.
BACK_MODES = {"grad": "backprop", "deconv": "deconv", "guided": "guided"}
#: status-line spelling of each back mode (DeepVis writes ``bprop``).
BACK_MODE_LABELS = {"grad": "bprop", "deconv": "deconv", "guided": "guided"}
BACK_FILT_MODES = ("raw", "gray", "norm", "normblur")


def tile_grid(n_tiles, aspect=1.0):
    """(rows, cols) of the layers-pane grid: cols = ceil(sqrt(n * aspect)), rows = ceil(n / cols)."""
    n_tiles = max(1, int(n_tiles))
    cols = max(1, int(math.ceil(math.sqrt(n_tiles * float(aspect)))))
    rows = int(math.ceil(n_tiles / cols))
    return rows, cols


class ViewerState:
    """Selection, modes and flags of the live viewer.

    Parameters
    ----------
    layers : list of str
        Layer list shown in the control pane (blob names, the data blob excluded).
    layer_units : dict
        Layer -> number of units (channels, or FC outputs).
    config : ViewerConfig
        Boost choices, fast-move distance, grid aspect and initial toggles.
    """

    def __init__(self, layers, layer_units, config):
        if not layers:
            raise ValueError("the viewer needs at least one layer besides the input")
        self.layers = list(layers)
        self.layer_units = dict(layer_units)
        self.config = config
        self.help_mode = False
        self.debug_level = 0
        self.message = "h for help"
        self.reset()

    # -- fields --------------------------------------------------------------------
    def reset(self):
        """Esc: every field of DeepVis's app state back to its initial value."""
        cfg = self.config
        self.layer_idx = 0
        self.cursor_area = "top"
        self.selected_unit = 0
        self.backprop_layer = self.layers[0]
        self.backprop_unit = 0
        self.backprop_selection_frozen = False
        self.back_enabled = False
        self.back_mode = "grad"
        self.back_filt_mode = "raw"
        self.back_stale = False
        self.pattern_mode = False
        self.layers_pane_zoom_mode = 0
        self.layers_show_back = False
        self.boost_indiv_idx = int(cfg.caffevis_boost_indiv_default_idx)
        self.boost_gamma_idx = int(cfg.caffevis_boost_gamma_default_idx)
        self.show_label_predictions = bool(cfg.caffevis_init_show_label_predictions)
        self.show_unit_jpgs = bool(cfg.caffevis_init_show_unit_jpgs)

    @property
    def layer(self):
        return self.layers[self.layer_idx]

    @property
    def n_units(self):
        return self.layer_units[self.layer]

    @property
    def tile_rows_cols(self):
        return tile_grid(self.n_units, self.config.caffevis_layers_aspect_ratio)

    @property
    def boost_indiv(self):
        return self.config.caffevis_boost_indiv_choices[self.boost_indiv_idx]

    @property
    def boost_gamma(self):
        return self.config.caffevis_boost_gamma_choices[self.boost_gamma_idx]

    @property
    def back_key(self):
        """What the back pass depends on; a change makes the back result stale."""
        if not self.back_enabled:
            return None
        return (self.back_mode, self.backprop_layer, self.backprop_unit)

    @property
    def back_net_mode(self):
        return BACK_MODES[self.back_mode]

    def back_visible(self):
        """DeepVis's rule: back is shown when enabled and (cursor on units or source frozen)."""
        return self.back_enabled and (self.cursor_area == "bottom" or self.backprop_selection_frozen)

    # -- keys ------------------------------------------------------------------------
    def handle(self, tag):
        """Apply one caffevis key tag; return True when it was a caffevis key."""
        before = self.back_key
        handled = True
        fast = int(self.config.caffevis_fast_move_dist)
        moves = {"sel_left": ("left", 1), "sel_right": ("right", 1), "sel_down": ("down", 1),
                 "sel_up": ("up", 1), "sel_left_fast": ("left", fast), "sel_right_fast": ("right", fast),
                 "sel_down_fast": ("down", fast), "sel_up_fast": ("up", fast)}
        if tag in moves:
            self.move_selection(*moves[tag])
        elif tag == "reset_state":
            self.reset()
        elif tag == "sel_layer_left":
            self.set_layer(self.layer_idx - 1)
        elif tag == "sel_layer_right":
            self.set_layer(self.layer_idx + 1)
        elif tag == "zoom_mode":
            self.layers_pane_zoom_mode = (self.layers_pane_zoom_mode + 1) % 3
            if self.layers_pane_zoom_mode == 2 and not self.back_enabled:
                self.layers_pane_zoom_mode = 0  # nothing to zoom into while back is off
        elif tag == "pattern_mode":
            self.pattern_mode = not self.pattern_mode
            if self.pattern_mode and not self.config.caffevis_unit_jpg_dir:
                self.pattern_mode = False
                self.message = "pattern mode needs caffevis_unit_jpg_dir in the settings"
        elif tag == "show_back":
            if self.pattern_mode:
                self.pattern_mode = False
            else:
                self.layers_show_back = not self.layers_show_back
            if self.layers_show_back and not self.back_enabled:  # DeepVis: also on leaving pattern mode
                self.back_enabled = True
        elif tag == "ez_back_mode_loop":
            if not self.back_enabled:
                self.back_enabled, self.back_mode, self.back_filt_mode = True, "grad", "raw"
            elif (self.back_mode, self.back_filt_mode) == ("grad", "raw"):
                self.back_filt_mode = "norm"
            elif (self.back_mode, self.back_filt_mode) == ("grad", "norm"):
                self.back_mode, self.back_filt_mode = "deconv", "raw"
            else:
                self.back_enabled = False
        elif tag == "back_mode":
            if not self.back_enabled:
                self.back_enabled, self.back_mode = True, "grad"
            elif self.back_mode == "grad":
                self.back_mode = "deconv"
            else:
                self.back_enabled = False
        elif tag == "back_mode_guided":
            order = ("grad", "deconv", "guided")
            if not self.back_enabled:
                self.back_enabled, self.back_mode = True, "grad"
            elif self.back_mode in order[:-1]:
                self.back_mode = order[order.index(self.back_mode) + 1]
            else:
                self.back_enabled = False
        elif tag == "back_filt_mode":
            i = BACK_FILT_MODES.index(self.back_filt_mode)
            self.back_filt_mode = BACK_FILT_MODES[(i + 1) % len(BACK_FILT_MODES)]
        elif tag == "freeze_back_unit":
            self.backprop_selection_frozen = not self.backprop_selection_frozen
            if self.backprop_selection_frozen:
                self.backprop_layer, self.backprop_unit = self.layer, self.selected_unit
        elif tag == "boost_gamma":
            self.boost_gamma_idx = (self.boost_gamma_idx + 1) % len(self.config.caffevis_boost_gamma_choices)
        elif tag == "boost_individual":
            self.boost_indiv_idx = (self.boost_indiv_idx + 1) % len(self.config.caffevis_boost_indiv_choices)
        elif tag == "toggle_label_predictions":
            self.show_label_predictions = not self.show_label_predictions
        elif tag == "toggle_unit_jpgs":
            self.show_unit_jpgs = not self.show_unit_jpgs
        else:
            handled = False
        self._after_change(before)
        return handled

    def move_selection(self, direction, dist=1):
        """Arrow-key navigation: layer list at the top, unit grid at the bottom."""
        cols = self.tile_rows_cols[1]
        if direction == "left":
            if self.cursor_area == "top":
                self.set_layer(self.layer_idx - dist)
            else:
                self.selected_unit -= dist
        elif direction == "right":
            if self.cursor_area == "top":
                self.set_layer(self.layer_idx + dist)
            else:
                self.selected_unit += dist
        elif direction == "down":
            if self.cursor_area == "top":
                self.cursor_area = "bottom"
            else:
                self.selected_unit += cols * dist
        elif direction == "up":
            if self.cursor_area == "bottom":
                self.selected_unit -= cols * dist
                if self.selected_unit < 0:  # past the first row: back to the layer list
                    self.selected_unit = self.selected_unit % cols
                    self.cursor_area = "top"
        self._clamp()

    def set_layer(self, idx):
        self.layer_idx = min(max(0, int(idx)), len(self.layers) - 1)
        self._clamp()

    # -- mouse -------------------------------------------------------------------------
    def select_layer(self, idx):
        """Click on a layer name: that layer, cursor on the layer list."""
        before = self.back_key
        self.set_layer(idx)
        self.cursor_area = "top"
        self._after_change(before)

    def select_unit(self, unit):
        """Click on a tile: that unit, cursor on the unit grid."""
        before = self.back_key
        self.cursor_area = "bottom"
        self.selected_unit = int(unit)
        self._clamp()
        self._after_change(before)

    # -- bookkeeping -----------------------------------------------------------------
    def _clamp(self):
        self.selected_unit = min(max(0, self.selected_unit), self.n_units - 1)

    def _after_change(self, before):
        self._clamp()
        if not self.backprop_selection_frozen:
            self.backprop_layer, self.backprop_unit = self.layer, self.selected_unit
        if self.back_key is not None and self.back_key != before:
            self.back_stale = True

    def snapshot(self):
        """A plain dict of the fields (for tests, headless logs and the compute thread)."""
        keys = ("layer", "layer_idx", "cursor_area", "selected_unit", "backprop_layer", "backprop_unit",
                "backprop_selection_frozen", "back_enabled", "back_mode", "back_filt_mode", "back_stale",
                "pattern_mode", "layers_pane_zoom_mode", "layers_show_back", "boost_indiv", "boost_gamma",
                "show_label_predictions", "show_unit_jpgs", "help_mode", "message")
        return {k: getattr(self, k) for k in keys}
