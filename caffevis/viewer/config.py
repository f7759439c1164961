"""The viewer's view of the settings: every DeepVis key it reads, in one place.

:class:`ViewerConfig` is built from a :class:`caffevis.settings.Settings` object (or any
object or dict with attributes named like the DeepVis keys). Keys the object lacks take
the DeepVis defaults listed here; colours are converted once to BGR 0-255 for OpenCV.
This is the only module of :mod:`caffevis.viewer` that knows how settings are spelled.
"""
from __future__ import annotations

import os
import re
from types import SimpleNamespace

import cv2

from ..errors import SettingsError

#: DeepVis default pane layout: name -> (row, col, height, width), window 930 x 1500.
DEFAULT_WINDOW_PANES = {
    "input": (0, 0, 300, 300),
    "caffevis_aux": (300, 0, 300, 300),
    "caffevis_back": (600, 0, 300, 300),
    "caffevis_status": (900, 0, 30, 1500),
    "caffevis_control": (0, 300, 30, 900),
    "caffevis_layers": (30, 300, 870, 900),
    "caffevis_jpgvis": (0, 1200, 900, 300),
}

#: key -> default, exactly as DeepVis's settings.py (§1.2 of the behaviour notes).
DEFAULTS = {
    "input_updater_capture_device": 0,
    "input_updater_sleep_after_read_frame": 1.0 / 20,
    "input_updater_heartbeat_required": 15.0,
    "main_loop_sleep_ms": 1,
    "debug_window_panes": False,
    "global_scale": 1.0,
    "global_font_size": 1.0,
    "help_pane_loc": (0.07, 0.07, 0.86, 0.86),
    "window_background": (0.2, 0.2, 0.2),
    "stale_background": (0.3, 0.3, 0.2),
    "static_files_dir": "input_images",
    "static_files_regexp": r".*\.(jpg|jpeg|png)$",
    "static_files_ignore_case": True,
    "static_file_stretch_mode": False,
    "static_files_input_mode": "directory",
    "static_files_input_file": "images_file_list.txt",
    "keypress_pause_handle_iterations": 2,
    "keypress_pause_redraw_iterations": 1,
    "redraw_at_least_every": 3,
    "help_face": "FONT_HERSHEY_COMPLEX_SMALL",
    "help_loc": (20, 10),
    "help_line_spacing": 10,
    "help_clr": (1, 1, 1),
    "help_fsize": 1.0,
    "help_thick": 1,
    "caffevis_labels": None,
    "caffevis_label_layers": (),
    "caffevis_prob_layer": None,
    "caffevis_unit_jpg_dir": None,
    "caffevis_jpgvis_layers": (),
    "caffevis_jpgvis_remap": {},
    "caffevis_layer_pretty_name_fn": None,
    "caffevis_layer_pretty_names": None,
    "caffevis_filter_layers": None,
    "caffevis_layers_aspect_ratio": 1.0,
    "caffevis_pause_after_keys": 0.10,
    "caffevis_frame_wait_sleep": 0.01,
    "caffevis_jpg_load_sleep": 0.01,
    "caffevis_heartbeat_required": 15.0,
    "caffevis_fast_move_dist": 3,
    "caffevis_jpg_cache_size": 2000 * 1024 ** 2,
    "caffevis_grad_norm_blur_radius": 4.0,
    "caffevis_boost_indiv_choices": (0, 0.3, 0.5, 0.8, 1),
    "caffevis_boost_indiv_default_idx": 0,
    "caffevis_boost_gamma_choices": (1, 0.7, 0.5, 0.3),
    "caffevis_boost_gamma_default_idx": 0,
    "caffevis_init_show_label_predictions": True,
    "caffevis_init_show_unit_jpgs": True,
    "caffevis_jpgvis_stack_vert": True,
    "caffe_net_channel_swap": (2, 1, 0),
    "caffevis_control_line_spacing": 4,
    "caffevis_control_face": "FONT_HERSHEY_COMPLEX_SMALL",
    "caffevis_control_loc": (15, 5),
    "caffevis_control_clr": (0.8, 0.8, 0.8),
    "caffevis_control_clr_selected": (1, 1, 1),
    "caffevis_control_clr_cursor": (0.5, 1, 0.5),
    "caffevis_control_clr_bp": (0.8, 0.8, 1),
    "caffevis_control_fsize": 1.0,
    "caffevis_control_thick": 1,
    "caffevis_control_thick_selected": 2,
    "caffevis_control_thick_cursor": 2,
    "caffevis_control_thick_bp": 2,
    "caffevis_layer_clr_cursor": (0.5, 1, 0.5),
    "caffevis_layer_clr_back_background": (0.2, 0.2, 0.5),
    "caffevis_layer_clr_back_sel": (0.2, 0.2, 1),
    "caffevis_status_face": "FONT_HERSHEY_COMPLEX_SMALL",
    "caffevis_status_loc": (15, 10),
    "caffevis_status_line_spacing": 5,
    "caffevis_status_clr": (0.8, 0.8, 0.8),
    "caffevis_status_fsize": 1.0,
    "caffevis_status_thick": 1,
    "caffevis_class_face": "FONT_HERSHEY_COMPLEX_SMALL",
    "caffevis_class_loc": (20, 10),
    "caffevis_class_line_spacing": 10,
    "caffevis_class_clr_0": (0.5, 0.5, 0.5),
    "caffevis_class_clr_1": (0.5, 1, 0.5),
    "caffevis_class_fsize": 1.0,
    "caffevis_class_thick": 1,
    "caffevis_label_face": "FONT_HERSHEY_COMPLEX_SMALL",
    "caffevis_label_loc": (30, 20),
    "caffevis_label_clr": (0.8, 0.8, 0.8),
    "caffevis_label_fsize": 1.0,
    "caffevis_label_thick": 1,
    # caffevis additions (not in DeepVis)
    "caffevis_back_lrn": "derivative",
    "caffevis_digit_canvas": False,
}

_FONT_KEYS = [k for k in DEFAULTS if k.endswith("_face")]
_COLOR_KEYS = [k for k in DEFAULTS if "_clr" in k or k in ("window_background", "stale_background")]
_FSIZE_KEYS = [k for k in DEFAULTS if k.endswith("_fsize")]


def to_bgr255(rgb01):
    """An RGB colour in [0, 1] -> a BGR tuple of ints 0-255 for OpenCV."""
    r, g, b = (float(c) for c in rgb01)
    return (int(round(b * 255)), int(round(g * 255)), int(round(r * 255)))


def _font(name, key):
    if isinstance(name, int):
        return name
    value = getattr(cv2, str(name), None)
    if not isinstance(value, int) or not str(name).startswith("FONT_"):
        raise SettingsError(f"{key}: '{name}' is not an OpenCV font (expected e.g. FONT_HERSHEY_COMPLEX_SMALL)")
    return value


def _panes(value):
    """``{name: (i, j, h, w)}`` from a dict or DeepVis's tuple of (name, (i, j, h, w))."""
    items = value.items() if isinstance(value, dict) else value
    panes = {}
    for name, box in items:
        if len(box) != 4:
            raise SettingsError(f"window_panes: pane '{name}' has {len(box)} numbers, expected (row, col, height, width)")
        panes[str(name)] = tuple(int(v) for v in box)
    if "input" not in panes:
        raise SettingsError("window_panes: the 'input' pane is required")
    return panes


def _pretty_name_fn(fn, table):
    """The control pane's display-name function.

    Accepts a callable, a dict (exact name -> display name, DeepVis's old form) or a
    list of ``[regex, replacement]`` pairs applied in order (the YAML-friendly form).
    """
    if callable(fn):
        return fn
    spec = table if table is not None else fn
    if spec is None:
        return lambda name: name
    if isinstance(spec, dict):
        return lambda name: spec.get(name, name)
    pairs = [(re.compile(p), r) for p, r in spec]

    def pretty(name):
        for pattern, repl in pairs:
            name = pattern.sub(repl, name)
        return name

    return pretty


def _filter_fn(spec):
    """True for layers to hide: a callable, a regex string, or a list of substrings."""
    if spec is None or spec == "":
        return lambda name: False
    if callable(spec):
        return spec
    if isinstance(spec, str):
        pattern = re.compile(spec)
        return lambda name: bool(pattern.search(name))
    parts = list(spec)
    return lambda name: any(p in name for p in parts)


class ViewerConfig(SimpleNamespace):
    """Flat settings for the viewer: DeepVis key names, colours as BGR 0-255 tuples.

    Build with :meth:`from_settings`. Extra attributes: ``window_panes`` (dict),
    ``window_shape`` (H, W), ``pretty_name`` and ``hide_layer`` (functions), ``*_face``
    as OpenCV font ids, ``*_clr*`` as BGR, ``*_fsize`` scaled by ``global_font_size``.
    """

    @classmethod
    def from_settings(cls, settings=None, **overrides):
        """Read every viewer key from ``settings`` (object or dict), then ``overrides``.

        Keys the settings lack take the DeepVis defaults (``*_fsize`` defaults are
        multiplied by ``global_font_size``, as DeepVis does).
        """
        if settings is None:
            given = {}
        elif isinstance(settings, dict):
            given = dict(settings)
        else:
            given = {k: getattr(settings, k) for k in list(DEFAULTS) + ["window_panes"] if hasattr(settings, k)}
            given.update({k: v for k, v in vars(settings).items() if not k.startswith("_")}
                         if hasattr(settings, "__dict__") else {})
        given.update(overrides)
        cfg = cls(**{k: v for k, v in given.items() if k not in DEFAULTS and k != "window_panes"})
        gfs = float(given.get("global_font_size", DEFAULTS["global_font_size"]))
        for key, default in DEFAULTS.items():
            value = given.get(key, default)
            if key in _FSIZE_KEYS and key not in given:
                value = float(default) * gfs
            setattr(cfg, key, value)
        raw_panes = given.get("window_panes")
        if raw_panes is None:
            scale = float(cfg.global_scale)
            raw_panes = {k: tuple(int(v * scale) for v in box) for k, box in DEFAULT_WINDOW_PANES.items()}
        cfg.window_panes = _panes(raw_panes)
        cfg.window_shape = (max(i + h for i, j, h, w in cfg.window_panes.values()),
                            max(j + w for i, j, h, w in cfg.window_panes.values()))
        for key in _FONT_KEYS:
            setattr(cfg, key, _font(getattr(cfg, key), key))
        for key in _COLOR_KEYS:
            setattr(cfg, key, to_bgr255(getattr(cfg, key)))
        cfg.pretty_name = _pretty_name_fn(cfg.caffevis_layer_pretty_name_fn, cfg.caffevis_layer_pretty_names)
        cfg.hide_layer = _filter_fn(cfg.caffevis_filter_layers)
        cfg.caffevis_label_layers = tuple(cfg.caffevis_label_layers or ())
        cfg.caffevis_jpgvis_layers = tuple(cfg.caffevis_jpgvis_layers or ())
        cfg.caffevis_jpgvis_remap = dict(cfg.caffevis_jpgvis_remap or {})
        cfg.caffevis_boost_indiv_choices = tuple(float(v) for v in cfg.caffevis_boost_indiv_choices)
        cfg.caffevis_boost_gamma_choices = tuple(float(v) for v in cfg.caffevis_boost_gamma_choices)
        if cfg.caffevis_jpg_cache_size < 10 * 1024 ** 2:
            raise SettingsError(f"caffevis_jpg_cache_size: {cfg.caffevis_jpg_cache_size} bytes; must be at least 10 MB")
        cfg.settings = settings
        return cfg

    def pane(self, name):
        """(i, j, h, w) of a pane, or None when the layout has no such pane."""
        return self.window_panes.get(name)

    def resolve(self, path):
        """A settings path as given (absolute, or relative to the working directory)."""
        return None if path in (None, "") else os.path.expanduser(str(path))
