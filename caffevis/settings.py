"""Settings: one validated object holding every DeepVis key plus caffevis' own.

Settings files are YAML (``settings/*.yaml``), read with ``yaml.safe_load`` semantics: they
hold data only and can never execute code. Every key of the original toolbox's
``settings.py`` exists here under its original name with its original default; keys that
were Python functions in the original have data replacements
(``caffevis_pretty_name_replacements``, ``caffevis_filter_layers_regex``).

Loading order: built-in defaults, then the file, then ``overrides`` (CLI flags); each
value is validated, and any problem is a one-line :class:`~caffevis.errors.SettingsError`
naming the file (and line), the key and what was expected.

Path rules
----------
- ``%DVT_ROOT%`` in a path is the repository root (the directory holding ``caffevis/``);
  ``%CAFFEVIS_DATA%`` the package's data folder (the ILSVRC 2012 labels); ``~`` is the home directory.
- A relative path in a settings file is relative to that file's directory; one given as an
  override (a CLI flag) is relative to the current directory; a built-in default is
  relative to ``%DVT_ROOT%``.
- A path key may hold a list of candidate paths: the first that exists is used (if none
  does, the first is kept and reported when the file is needed).

Missing files: ``caffevis_data_mean`` and ``caffevis_labels`` are checked when the settings
are loaded; the model files are checked when the model is opened (:meth:`Settings.open_net`),
so that settings for a net whose weights are not yet downloaded still load, and opening
it says how to fetch them (``caffevis_fetch_hint``).
"""
from __future__ import annotations

import contextlib
import difflib
import math
import numbers
import os
import re
from collections import OrderedDict

import yaml

from .errors import SettingsError
from .limits import MAX_NESTING, YAML_SKIPPED, brace_depth, short_repr

from .paths import DATA_DIR, REPO_ROOT  # noqa: E402

#: DeepVis' default layout: pane name -> (row i, col j, height, width), window 930 x 1500.
DEFAULT_WINDOW_PANES = OrderedDict([
    ("input", (0, 0, 300, 300)),
    ("caffevis_aux", (300, 0, 300, 300)),
    ("caffevis_back", (600, 0, 300, 300)),
    ("caffevis_status", (900, 0, 30, 1500)),
    ("caffevis_control", (0, 300, 30, 900)),
    ("caffevis_layers", (30, 300, 870, 900)),
    ("caffevis_jpgvis", (0, 1200, 900, 300)),
])

_FONT = "FONT_HERSHEY_COMPLEX_SMALL"


class _Null:
    """Override value meaning "set this key to null" (a plain None override is skipped)."""

    def __repr__(self):
        return "NULL"


#: Use as an override value to set a key to null, e.g. ``{"caffevis_data_mean": NULL}``.
NULL = _Null()
_GFS = object()  # default marker: "1.0 * global_font_size"
_SHARED_MNIST = "%DVT_ROOT%/../shared/data/mnist"


class Key:
    """One settings key: default, kind (validator name), group and a one-line meaning."""

    def __init__(self, name, default, kind, group, doc, **opts):
        self.name, self.default, self.kind, self.group, self.doc = name, default, kind, group, doc
        self.opts = opts


def _keys():
    K = Key
    g = "general"
    keys = [
        K("input_updater_capture_device", 0, "opt_int", g, "OpenCV VideoCapture index; null disables the webcam"),
        K("input_updater_sleep_after_read_frame", 0.05, "nonneg", g, "sleep in the input loop after each read (about 20 Hz)"),
        K("input_updater_heartbeat_required", 15.0, "pos", g, "input thread stops without a heartbeat for this many seconds"),
        K("main_loop_sleep_ms", 1, "int", g, "cv2.waitKey timeout per main-loop pass (at least 1)", min=1),
        K("print_dots", False, "bool", g, "print '.' every second main-loop pass"),
    ]
    g = "window"
    keys += [
        K("debug_window_panes", False, "bool", g, "outline every pane and print the pane list"),
        K("window_panes", None, "panes", g, "pane name -> [i, j, height, width]; merged over the default "
          "layout, a pane set to null is removed; scaled by global_scale"),
        K("global_scale", 1.0, "pos", g, "multiplies every pane coordinate and size"),
        K("global_font_size", 1.0, "pos", g, "multiplies every *_fsize default"),
        K("help_pane_loc", (.07, .07, .86, .86), "fractions4", g, "help box as window fractions (top, left, height, width)"),
        K("window_background", (.2, .2, .2), "color", g, "background (and 'disabled') colour, RGB in [0, 1]"),
        K("stale_background", (.3, .3, .2), "color", g, "colour while a result is being computed or loaded"),
        K("static_files_dir", ["%DVT_ROOT%/input_images", "%DVT_ROOT%/../shared/data/images/dvt_input_images"],
          "dir", g, "folder of input images"),
        K("static_files_regexp", r".*\.(jpg|jpeg|png)$", "regex", g, "filename filter for static_files_dir"),
        K("static_files_ignore_case", True, "bool", g, "apply static_files_regexp case-insensitively"),
        K("static_file_stretch_mode", False, "bool", g, "false: centre-crop images to a square; true: stretch"),
        K("static_files_input_mode", "directory", "choice", g, "where images come from",
          choices=("directory", "image_list", "siamese_image_list")),
        K("static_files_input_file", "images_file_list.txt", "path", g, "list file for the list input modes"),
        K("keypress_pause_handle_iterations", 2, "int", g, "main-loop passes after a key before frames go to the apps", min=0),
        K("keypress_pause_redraw_iterations", 1, "int", g, "main-loop passes after a key before redrawing", min=0),
        K("redraw_at_least_every", 3, "int", g, "force a redraw after this many passes", min=1),
        K("installed_apps", (("caffevis.app", "CaffeVisApp"),), "apps", g,
          "kept for compatibility with DeepVis settings; caffevis has one built-in app"),
        K("help_face", _FONT, "font", g, "help text font (a cv2 FONT_* name)"),
        K("help_loc", (20, 10), "loc", g, "help text origin (row, col)"),
        K("help_line_spacing", 10, "int", g, "extra pixels between help lines", min=0),
        K("help_clr", (1, 1, 1), "color", g, "help text colour"),
        K("help_fsize", _GFS, "pos", g, "help text size (default 1.0 * global_font_size)"),
        K("help_thick", 1, "int", g, "help text thickness", min=1),
    ]
    g = "model"
    keys += [
        K("caffevis_deploy_prototxt", None, "model_path", g, "Caffe deploy prototxt (with caffevis_network_weights)"),
        K("caffevis_network_weights", None, "model_path", g, "Caffe .caffemodel weights"),
        K("caffevis_onnx_model", None, "model_path", g, "an .onnx model instead of prototxt + weights"),
        K("caffevis_fetch_hint", None, "opt_str", g, "appended to 'file not found' errors for the model, mean and labels"),
        K("caffevis_caffe_root", None, "opt_str", g, "ignored: caffevis needs no Caffe (accepted so DeepVis settings port)"),
        K("caffevis_mode_gpu", True, "bool", g, "false forces the CPU (as caffevis_force_cpu)"),
        K("caffevis_force_cpu", False, "bool", g, "run ONNX Runtime on the CPU even when CUDA is available"),
        K("caffevis_data_mean", None, "mean", g, "null; a number or per-channel list (net channel order, "
          "e.g. BGR); or a .npy / .binaryproto mean image, centre-cropped to the input"),
        K("caffevis_data_hw", None, "hw", g, "input [height, width]; default: from the net (needed only for "
          "ONNX models with free spatial dimensions)"),
        K("caffevis_raw_scale", 1.0, "pos", g, "multiplies the 0-255 image after the channel swap, before the mean"),
        K("caffevis_input_scale", None, "opt_pos", g, "multiplies after mean subtraction (LeNet: 0.00390625)"),
        K("caffevis_data_std", None, "std", g, "null; a number or per-channel list (net channel order): divides "
          "after mean subtraction (torchvision: [0.229, 0.224, 0.225] with raw_scale 1/255)"),
        K("caffe_net_channel_swap", (2, 1, 0), "perm", g, "input channel i = image channel swap[i] (RGB->BGR); "
          "null: none; ignored for 1-channel nets"),
        K("caffevis_labels", None, "file", g, "label file, one label per line (blank lines skipped)"),
        K("caffevis_label_names", None, "opt_str_list", g, "labels given inline instead of caffevis_labels"),
        K("caffevis_label_layers", (), "str_list", g, "blobs whose unit index is a label index"),
        K("caffevis_prob_layer", None, "opt_str", g, "blob used for the top-5 list"),
        K("caffevis_unit_jpg_dir", None, "dir", g, "root of the per-unit jpgs (regularized_opt, max_im, max_deconv)"),
        K("caffevis_jpgvis_layers", (), "str_list", g, "layers whose per-unit jpgs are looked up"),
        K("caffevis_jpgvis_remap", {}, "str_map", g, "layer -> layer alias for jpg lookup (pool1: conv1)"),
        K("caffevis_layer_pretty_names", {}, "str_map", g, "exact display names (blob -> name), applied first"),
        K("caffevis_pretty_name_replacements", (), "pairs", g, "[from, to] substring replacements for display "
          "names, in order (replaces DeepVis' caffevis_layer_pretty_name_fn)"),
        K("caffevis_filter_layers_regex", None, "opt_regex", g, "blobs matching this regex (re.search) are hidden "
          "(replaces DeepVis' caffevis_filter_layers)"),
        K("caffevis_layers_aspect_ratio", 1.0, "pos", g, "width/height ratio used to choose the tile grid"),
        K("caffevis_pause_after_keys", 0.10, "nonneg", g, "seconds to wait after the last key before computing"),
        K("caffevis_frame_wait_sleep", 0.01, "nonneg", g, "compute-loop idle sleep (s)"),
        K("caffevis_jpg_load_sleep", 0.01, "nonneg", g, "jpg loader idle sleep (s)"),
        K("caffevis_heartbeat_required", 15.0, "pos", g, "thread timeout (s)"),
        K("caffevis_fast_move_dist", 3, "int", g, "step of the J/K/L/I keys", min=1),
        K("caffevis_jpg_cache_size", 2000 * 1024 ** 2, "int", g, "jpg cache limit in bytes (at least 10 MB)",
          min=10 * 1024 ** 2),
        K("caffevis_grad_norm_blur_radius", 4.0, "nonneg", g, "Gaussian sigma of the 'normblur' back filter"),
        K("caffevis_boost_indiv_choices", (0, .3, .5, .8, 1), "unit_list", g, "per-channel boost levels (0 = off)"),
        K("caffevis_boost_indiv_default_idx", 0, "int", g, "starting index into the indiv choices", min=0),
        K("caffevis_boost_gamma_choices", (1, .7, .5, .3), "pos_list", g, "gamma levels (1 = off)"),
        K("caffevis_boost_gamma_default_idx", 0, "int", g, "starting index into the gamma choices", min=0),
        K("caffevis_init_show_label_predictions", True, "bool", g, "initial state of key 8 (top-5 list)"),
        K("caffevis_init_show_unit_jpgs", True, "bool", g, "initial state of key 9 (jpgvis pane)"),
        K("caffevis_jpgvis_stack_vert", True, "bool", g, "stack the three jpgs vertically (else horizontally)"),
        K("mnist_dir", None, "dir", g, "MNIST idx files (default ../shared/data/mnist beside the repo when present)"),
    ]
    g = "control pane"
    keys += [
        K("caffevis_control_line_spacing", 4, "int", g, "extra pixels between lines", min=0),
        K("caffevis_control_face", _FONT, "font", g, "font"),
        K("caffevis_control_loc", (15, 5), "loc", g, "text origin (row, col)"),
        K("caffevis_control_clr", (.8, .8, .8), "color", g, "layer name colour"),
        K("caffevis_control_clr_selected", (1, 1, 1), "color", g, "selected layer (cursor on units)"),
        K("caffevis_control_clr_cursor", (.5, 1, .5), "color", g, "layer under the cursor"),
        K("caffevis_control_clr_bp", (.8, .8, 1), "color", g, "frozen backprop layer"),
        K("caffevis_control_fsize", _GFS, "pos", g, "text size"),
        K("caffevis_control_thick", 1, "int", g, "thickness", min=1),
        K("caffevis_control_thick_selected", 2, "int", g, "thickness, selected", min=1),
        K("caffevis_control_thick_cursor", 2, "int", g, "thickness, cursor", min=1),
        K("caffevis_control_thick_bp", 2, "int", g, "thickness, backprop layer", min=1),
    ]
    g = "layers pane"
    keys += [
        K("caffevis_layer_clr_cursor", (.5, 1, .5), "color", g, "border of the cursor unit"),
        K("caffevis_layer_clr_back_background", (.2, .2, .5), "color", g, "tile padding while back diffs are shown"),
        K("caffevis_layer_clr_back_sel", (.2, .2, 1), "color", g, "border of the frozen backprop unit"),
    ]
    g = "status line"
    keys += [
        K("caffevis_status_face", _FONT, "font", g, "font"),
        K("caffevis_status_loc", (15, 10), "loc", g, "text origin (row, col)"),
        K("caffevis_status_line_spacing", 5, "int", g, "extra pixels between lines", min=0),
        K("caffevis_status_clr", (.8, .8, .8), "color", g, "colour"),
        K("caffevis_status_fsize", _GFS, "pos", g, "text size"),
        K("caffevis_status_thick", 1, "int", g, "thickness", min=1),
    ]
    g = "class probabilities"
    keys += [
        K("caffevis_class_face", _FONT, "font", g, "font"),
        K("caffevis_class_loc", (20, 10), "loc", g, "text origin (row, col)"),
        K("caffevis_class_line_spacing", 10, "int", g, "extra pixels between lines", min=0),
        K("caffevis_class_clr_0", (.5, .5, .5), "color", g, "colour at probability 0"),
        K("caffevis_class_clr_1", (.5, 1, .5), "color", g, "colour at probability 1"),
        K("caffevis_class_fsize", _GFS, "pos", g, "text size"),
        K("caffevis_class_thick", 1, "int", g, "thickness", min=1),
    ]
    g = "label overlay"
    keys += [
        K("caffevis_label_face", _FONT, "font", g, "font"),
        K("caffevis_label_loc", (30, 20), "loc", g, "text origin (row, col)"),
        K("caffevis_label_clr", (.8, .8, .8), "color", g, "colour"),
        K("caffevis_label_fsize", _GFS, "pos", g, "text size"),
        K("caffevis_label_thick", 1, "int", g, "thickness", min=1),
    ]
    return OrderedDict((k.name, k) for k in keys)


#: Every settings key, in documentation order.
KEYS = _keys()

# -- ranges -------------------------------------------------------------------------------
#: Longest side of the window, and most pixels in it (50 Mpx: 150 MB as RGB uint8), so the
#: window and the viewer's buffers fit in memory and in OpenCV's int arguments.
MAX_WINDOW_SIDE = 16384
MAX_WINDOW_PIXELS = 50_000_000

#: Quantity -> (lowest, highest, unit): the range of every numeric setting measuring it.
#: Times are bounded so that no thread sleeps past a heartbeat and no heartbeat expires
#: between two frames; sizes so that what the viewer draws fits in memory.
QUANTITIES = {
    "seconds": (0.0, 1.0, "seconds"),
    "timeout": (5.0, 3600.0, "seconds"),
    "milliseconds": (1, 10000, "ms"),
    "passes": (0, 1000, "main-loop passes"),
    "pixels": (0, 1000, "pixels"),
    "offset": (-MAX_WINDOW_SIDE, MAX_WINDOW_SIDE, "pixels"),
    "side": (1, MAX_WINDOW_SIDE, "pixels"),
    "thickness": (1, 100, "pixels"),
    "font_scale": (0.05, 20.0, "times the font's height"),
    "window_scale": (0.1, 5.0, "times the layout"),
    "value_scale": (1e-6, 1e6, "times the pixel values"),
    "aspect_ratio": (0.01, 100.0, "width / height"),
    "blur": (0.0, 100.0, "pixels"),
    "gamma": (0.01, 100.0, "exponent"),
    "mean": (-1e6, 1e6, "per pixel value"),
    "device": (-1, 1000, "camera index"),
    "bytes": (10 * 1024 ** 2, 2 ** 40, "bytes"),
    "choice_index": (0, 1000, "index"),
}

#: Numeric key -> quantity; keys ending in _fsize, _loc, _line_spacing or holding _thick
#: follow their suffix (see :func:`quantity_of`).
_QUANTITY_OF = {
    "input_updater_capture_device": "device",
    "input_updater_sleep_after_read_frame": "seconds",
    "input_updater_heartbeat_required": "timeout",
    "main_loop_sleep_ms": "milliseconds",
    "global_scale": "window_scale",
    "global_font_size": "font_scale",
    "keypress_pause_handle_iterations": "passes",
    "keypress_pause_redraw_iterations": "passes",
    "redraw_at_least_every": "passes",
    "caffevis_data_hw": "side",
    "caffevis_data_mean": "mean",
    "caffevis_raw_scale": "value_scale",
    "caffevis_input_scale": "value_scale",
    "caffevis_layers_aspect_ratio": "aspect_ratio",
    "caffevis_pause_after_keys": "seconds",
    "caffevis_frame_wait_sleep": "seconds",
    "caffevis_jpg_load_sleep": "seconds",
    "caffevis_heartbeat_required": "timeout",
    "caffevis_fast_move_dist": "pixels",
    "caffevis_jpg_cache_size": "bytes",
    "caffevis_grad_norm_blur_radius": "blur",
    "caffevis_boost_gamma_choices": "gamma",
    "caffevis_boost_indiv_default_idx": "choice_index",
    "caffevis_boost_gamma_default_idx": "choice_index",
}
_SUFFIX_QUANTITY = ((r"_fsize$", "font_scale"), (r"_loc$", "offset"), (r"_line_spacing$", "pixels"),
                    (r"_thick(_|$)", "thickness"))
_NUMERIC_KINDS = ("int", "opt_int", "pos", "opt_pos", "nonneg", "loc", "hw", "pos_list", "mean")


def quantity_of(key: str):
    """The quantity (a :data:`QUANTITIES` name) a numeric key measures, None for others."""
    if KEYS[key].kind not in _NUMERIC_KINDS:
        return None
    if key in _QUANTITY_OF:
        return _QUANTITY_OF[key]
    return next(q for pattern, q in _SUFFIX_QUANTITY if re.search(pattern, key))  # every numeric key has one


def value_range(key: str):
    """(lowest, highest, unit) accepted for a numeric key (its quantity's range narrowed by
    the key's own ``min``), None for other keys."""
    q = quantity_of(key)
    if q is None:
        return None
    lo, hi, unit = QUANTITIES[q]
    if KEYS[key].opts.get("min") is not None:
        lo = max(lo, KEYS[key].opts["min"])
    return lo, hi, unit

#: DeepVis keys that held Python code or are not settable, with what to use instead.
REPLACED_KEYS = {
    "caffevis_layer_pretty_name_fn": "a function cannot be written in YAML; use caffevis_pretty_name_replacements "
                                     "(a list of [from, to] pairs)",
    "caffevis_filter_layers": "a function cannot be written in YAML; use caffevis_filter_layers_regex",
    "default_window_panes": "override window_panes instead",
}

_MODEL_KEYS = ("caffevis_deploy_prototxt", "caffevis_network_weights", "caffevis_onnx_model")
_CHECKED_AT_LOAD = ("caffevis_data_mean", "caffevis_labels")
_FSIZE_KEYS = tuple(k for k, spec in KEYS.items() if spec.default is _GFS)


# -- validation -----------------------------------------------------------------------
class _Invalid(Exception):
    """A value that does not fit its key; the message says what was expected."""


def _is_num(v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return False
    return isinstance(v, numbers.Integral) or math.isfinite(float(v))  # float() of a 400-digit int overflows


_NUM_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _num(v, what="a number"):
    # PyYAML reads "1e-4" (no dot) as a string; accept numeric strings so that is not a trap
    if isinstance(v, str) and _NUM_RE.match(v.strip()):
        v = float(v)
    if not _is_num(v):
        raise _Invalid(what)
    try:
        return float(v)
    except OverflowError:
        raise _Invalid(what) from None


def _int(v, what="an integer"):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        if _is_num(v) and not isinstance(v, numbers.Integral) and float(v).is_integer():
            return int(v)
        raise _Invalid(what)
    return int(v)


def _seq(v, what):
    if not isinstance(v, (list, tuple)):
        raise _Invalid(what)
    return list(v)


def _fixed(v, what, n, convert, ok=lambda x: True):
    """A list of exactly ``n`` items, each converted and accepted by ``ok``, as a tuple."""
    items = _seq(v, what)
    if len(items) != n:
        raise _Invalid(what)
    out = tuple(convert(c, what) for c in items)
    if not all(ok(c) for c in out):
        raise _Invalid(what)
    return out


def _str_pairs(v, what):
    """A list of [str, str] pairs as a tuple of tuples."""
    out = []
    for pair in _seq(v, what):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(s, str) for s in pair):
            raise _Invalid(what)
        out.append(tuple(pair))
    return tuple(out)


def _fmt(x):
    return str(x) if isinstance(x, int) else f"{x:g}"


def _in_range(spec, convert, v):
    """``convert(v)`` checked against the key's :func:`value_range`."""
    lo, hi, unit = value_range(spec.name)
    what = f"{'an integer' if convert is _int else 'a number'} in [{_fmt(lo)}, {_fmt(hi)}] ({unit})"
    x = convert(v, what)
    if not lo <= x <= hi or (spec.kind in ("pos", "opt_pos") and x <= 0):
        raise _Invalid(what)
    return x


def _check_kind(spec, v):
    kind, opts = spec.kind, spec.opts
    if kind in ("int", "opt_int", "pos", "opt_pos", "nonneg"):
        if v is None and kind.startswith("opt_"):
            return None
        return _in_range(spec, _int if kind.endswith("int") else _num, v)
    if kind == "bool":
        if not isinstance(v, bool):
            raise _Invalid("true or false")
        return v
    if kind == "opt_str":
        if v is not None and not isinstance(v, str):
            raise _Invalid("a string or null")
        return v
    if kind == "choice":
        if v not in opts["choices"]:
            raise _Invalid("one of " + ", ".join(opts["choices"]))
        return v
    if kind in ("regex", "opt_regex"):
        if v is None and kind == "opt_regex":
            return None
        if not isinstance(v, str):
            raise _Invalid("a regular expression (string)")
        try:
            re.compile(v)
        except re.error as err:
            raise _Invalid(f"a valid regular expression ({err})") from None
        return v
    if kind == "font":
        import cv2

        if not (isinstance(v, str) and v.startswith("FONT_") and isinstance(getattr(cv2, v, None), int)):
            raise _Invalid("an OpenCV font name such as FONT_HERSHEY_COMPLEX_SMALL")
        return v
    if kind == "color":
        return _fixed(v, "an RGB colour [r, g, b] with values in [0, 1]", 3, _num, lambda c: 0 <= c <= 1)
    if kind == "loc":
        lo, hi, _ = value_range(spec.name)
        return _fixed(v, f"[row, col] integers in [{lo}, {hi}]", 2, _int, lambda c: lo <= c <= hi)
    if kind == "fractions4":
        return _fixed(v, "[top, left, height, width] fractions in [0, 1]", 4, _num, lambda c: 0 <= c <= 1)
    if kind == "hw":
        lo, hi, _ = value_range(spec.name)
        return None if v is None else _fixed(v, f"[height, width] integers in [{lo}, {hi}], or null", 2, _int,
                                             lambda c: lo <= c <= hi)
    if kind == "perm":
        if v is None:
            return None
        what = "a permutation of 0..n-1 such as [2, 1, 0], or null"
        items = tuple(_int(c, what) for c in _seq(v, what))
        if sorted(items) != list(range(len(items))) or not items:
            raise _Invalid(what)
        return items
    if kind in ("str_list", "opt_str_list"):
        if v is None:
            return None if kind == "opt_str_list" else ()
        what = "a list of strings"
        items = _seq(v, what)
        if not all(isinstance(s, str) for s in items):
            raise _Invalid(what)
        return tuple(items)
    if kind == "str_map":
        if v is None:
            return {}
        what = "a mapping of string to string"
        if not isinstance(v, dict) or not all(isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
            raise _Invalid(what)
        return dict(v)
    if kind == "pairs":
        if v is None:
            return ()
        what = "a list of [from, to] string pairs"
        out = _str_pairs(v, what)
        if not all(a for a, _ in out):
            raise _Invalid(what + " with a non-empty 'from'")
        return out
    if kind == "apps":
        return _str_pairs(v, "a list of [module, class] pairs")
    if kind in ("unit_list", "pos_list"):
        lo, hi, _ = (0, 1, "") if kind == "unit_list" else value_range(spec.name)
        what = f"a non-empty list of numbers in [{_fmt(lo)}, {_fmt(hi)}]"
        items = tuple(_num(c, what) for c in _seq(v, what))
        if not items or len(items) > 1000 or any(not lo <= c <= hi for c in items):
            raise _Invalid(what)
        return items
    if kind == "std":
        if v is None:
            return None
        what = "null, a positive number or a list of per-channel positive numbers"
        items = (v,) if _is_num(v) else _seq(v, what)
        if not items or not all(_is_num(c) and c > 0 for c in items):
            raise _Invalid(what)
        return tuple(float(c) for c in items)
    if kind == "mean":
        if v is None:
            return None
        lo, hi, _ = value_range(spec.name)
        what = f"null, numbers in [{_fmt(lo)}, {_fmt(hi)}], or a path to a .npy/.binaryproto mean"
        if _is_num(v):
            return _fixed([v], what, 1, _num, lambda c: lo <= c <= hi)[0]
        if isinstance(v, (list, tuple)) and v and all(_is_num(c) for c in v):
            return _fixed(v, what, len(v), _num, lambda c: lo <= c <= hi)
        if isinstance(v, str) or (isinstance(v, (list, tuple)) and v and all(isinstance(c, str) for c in v)):
            return v  # a path (or candidates); resolved by the caller
        raise _Invalid("null, a number, a list of per-channel numbers, or a path to a .npy/.binaryproto mean")
    if kind == "panes":
        return v  # merged and checked in _panes()
    if kind in ("path", "dir", "file", "model_path"):
        if v is None and kind != "path":
            return None
        if isinstance(v, str) and v:
            return v
        if isinstance(v, (list, tuple)) and v and all(isinstance(c, str) and c for c in v):
            return list(v)
        raise _Invalid("a path, or a list of candidate paths" + ("" if kind == "path" else ", or null"))
    raise AssertionError(kind)  # pragma: no cover


def _resolve_path(value, base_dir):
    """Apply %DVT_ROOT%, ~ and the base directory; pick the first existing candidate."""
    candidates = value if isinstance(value, list) else [value]
    resolved = []
    for c in candidates:
        c = os.path.expanduser(c.replace("%DVT_ROOT%", REPO_ROOT).replace("%CAFFEVIS_DATA%", DATA_DIR))
        if not os.path.isabs(c):
            c = os.path.join(base_dir, c)
        resolved.append(os.path.normpath(c))
    for c in resolved:
        if os.path.exists(c):
            return c, resolved
    return resolved[0], resolved


def _closest(name):
    match = difflib.get_close_matches(name, list(KEYS) + list(REPLACED_KEYS), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


# -- YAML reading ------------------------------------------------------------------------
def _read_yaml(path):
    """Top-level mapping of a settings file -> (OrderedDict key -> value, key -> line)."""
    if not os.path.isfile(path):
        raise SettingsError(f"{path}: settings file not found")
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(f"{path}: cannot read settings file ({err})") from None
    with _yaml_document(text, path) as (loader, node):
        if node is None:
            return OrderedDict(), {}
        if not isinstance(node, yaml.MappingNode):
            raise SettingsError(f"{path}:{node.start_mark.line + 1}: a settings file must be a mapping of key: value")
        values, lines = OrderedDict(), {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise SettingsError(f"{path}:{line}: setting names must be strings, got {short_repr(key)}")
            if key in values:
                raise SettingsError(f"{path}:{line}: {key}: given twice (first on line {lines[key]})")
            values[key] = loader.construct_object(value_node, deep=True)
            lines[key] = line
        return values, lines


def parse_value(text: str, where: str):
    """A settings value given as YAML text (a CLI ``--set KEY=VALUE``), under the rules of
    settings files; SettingsError naming ``where`` otherwise."""
    with _yaml_document(text, where) as (loader, node):
        return None if node is None else loader.construct_object(node, deep=True)


@contextlib.contextmanager
def _yaml_document(text, where):
    """(loader, root node or None) of one YAML document under the settings rules: data only
    (a tag is refused), nesting at most :data:`MAX_NESTING` deep; every problem, in the
    body too, is a one-line SettingsError naming ``where`` (and the line)."""
    _check_flow_depth(text, where)
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters: a NUL is a ReaderError (a YAMLError)
        node = loader.get_single_node()
        if node is not None:
            _check_depth(node, where)
        yield loader, node
    except yaml.constructor.ConstructorError as err:
        mark = err.problem_mark
        at = f"{where}:{mark.line + 1}" if mark else where
        problem = (err.problem or "").split(" for the tag")[0].strip()
        tag = re.search(r"tag '([^']*)'", str(err))
        if tag:
            raise SettingsError(f"{at}: YAML tag '{tag.group(1)}' is not allowed "
                                f"(settings files hold data only, never code)") from None
        raise SettingsError(f"{at}: invalid YAML ({problem})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        problem = getattr(err, "problem", None) or getattr(err, "reason", None) or str(err).splitlines()[0]
        problem = "".join(c if c.isprintable() else "?" for c in str(problem))
        raise SettingsError(f"{at}: YAML syntax error ({problem})") from None
    except RecursionError:
        raise SettingsError(f"{where}: values nested too deep (at most {MAX_NESTING} levels)") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_flow_depth(text, where):
    """SettingsError when [ ] / { } nest deeper than :data:`MAX_NESTING` (before parsing)."""
    depth = brace_depth(text, "[{", "]}", YAML_SKIPPED)
    if depth > MAX_NESTING:
        raise SettingsError(f"{where}: values nested {depth} levels deep; at most {MAX_NESTING} are accepted")


def _check_depth(root, where):
    """SettingsError when YAML nodes nest deeper than :data:`MAX_NESTING` (iterative walk)."""
    todo = [(root, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_NESTING:
            raise SettingsError(f"{where}:{node.start_mark.line + 1}: values nested more than {MAX_NESTING} "
                                f"levels deep")
        if isinstance(node, yaml.SequenceNode):
            todo += [(n, depth + 1) for n in node.value]
        elif isinstance(node, yaml.MappingNode):
            todo += [(n, depth + 1) for pair in node.value for n in pair]


# -- the Settings object ------------------------------------------------------------------
class Settings:
    """Validated settings; every key of :data:`KEYS` is an attribute of the same name.

    Build with :func:`load_settings`. The object is read-only; :meth:`replace` returns a
    new, validated copy with overrides applied.

    Besides the keys, it offers what the original's Python-valued settings did:
    ``caffevis_layer_pretty_name_fn(name)`` and ``caffevis_filter_layers(name)`` (functions
    built from ``caffevis_pretty_name_replacements`` / ``caffevis_layer_pretty_names`` and
    ``caffevis_filter_layers_regex``).

    Attributes
    ----------
    source : str or None
        The settings file (absolute path), None when built from defaults only.
    window_panes : OrderedDict
        Pane name -> (i, j, h, w) ints, global_scale applied.
    window_shape : tuple
        (height, width) of the window holding every pane.
    use_cpu : bool
        ``caffevis_force_cpu or not caffevis_mode_gpu``.
    """

    def __init__(self, values, source=None, origins=None, candidates=None):
        d = self.__dict__
        d.update(values)
        d["source"] = source
        d["_origins"] = dict(origins or {})  # key -> "file:line" or "override" (for error messages)
        d["_candidates"] = dict(candidates or {})  # path key -> all candidate paths tried
        panes = values["window_panes"]
        d["window_shape"] = (max(i + h for i, j, h, w in panes.values()),
                             max(j + w for i, j, h, w in panes.values()))
        d["use_cpu"] = bool(values["caffevis_force_cpu"] or not values["caffevis_mode_gpu"])
        regex = values["caffevis_filter_layers_regex"]
        d["_filter_re"] = re.compile(regex) if regex else None

    def __setattr__(self, name, value):
        raise AttributeError("Settings are read-only; use settings.replace(key=value)")

    def __repr__(self):
        return f"Settings({self.source or 'defaults'})"

    # -- derived behaviour --------------------------------------------------------------
    def caffevis_layer_pretty_name_fn(self, name: str) -> str:
        """Display name of a blob: the exact mapping if any, else the replacements in order."""
        if name in self.caffevis_layer_pretty_names:
            return self.caffevis_layer_pretty_names[name]
        for old, new in self.caffevis_pretty_name_replacements:
            name = name.replace(old, new)
        return name

    pretty_name = caffevis_layer_pretty_name_fn

    def caffevis_filter_layers(self, name: str) -> bool:
        """True when the blob is hidden from the layer list (caffevis_filter_layers_regex)."""
        return bool(self._filter_re and self._filter_re.search(name))

    def visible_layers(self, blob_names):
        """The viewer's layer list: blobs minus the first (the input) minus hidden ones."""
        return [b for b in list(blob_names)[1:] if not self.caffevis_filter_layers(b)]

    def where(self, key: str) -> str:
        """Where a key's value came from, for messages: 'file:line', 'override' or 'default'."""
        return self._origins.get(key, f"{self.source}: default" if self.source else "default")

    def missing_file_error(self, key: str, path: str) -> SettingsError:
        """The one-line error for a file a key names that does not exist."""
        tried = [c for c in self._candidates.get(key, []) if c != path]
        msg = f"{self.where(key)}: {key}: file not found: {path}"
        if tried:
            msg += f" (also tried {', '.join(tried)})"
        if self.caffevis_fetch_hint and key in _MODEL_KEYS + _CHECKED_AT_LOAD:
            msg += f"; {self.caffevis_fetch_hint}"
        return SettingsError(msg)

    def model_spec(self):
        """('onnx', (path,)) or ('caffe', (prototxt, weights)) after checking the files exist."""
        if self.caffevis_onnx_model:
            keys = ("caffevis_onnx_model",)
        elif self.caffevis_deploy_prototxt or self.caffevis_network_weights:
            keys = ("caffevis_deploy_prototxt", "caffevis_network_weights")
        else:
            raise SettingsError(f"{self.source or 'settings'}: no model: set caffevis_deploy_prototxt + "
                                f"caffevis_network_weights, or caffevis_onnx_model")
        for key in keys:
            path = getattr(self, key)
            if not path:
                raise SettingsError(f"{self.source or 'settings'}: {key}: missing (expected a path; "
                                    f"caffevis_deploy_prototxt and caffevis_network_weights go together)")
            if not os.path.isfile(path):
                raise self.missing_file_error(key, path)
        return ("onnx" if len(keys) == 1 else "caffe"), tuple(getattr(self, k) for k in keys)

    def open_net(self, force_cpu=None, cache_dir=None):
        """Load the model the settings name (a :class:`caffevis.model.Net`)."""
        from .model.net import Net

        kind, paths = self.model_spec()
        cpu = self.use_cpu if force_cpu is None else bool(force_cpu)
        if kind == "onnx":  # caffevis_data_hw fixes free spatial dimensions of the graph input
            return Net.from_onnx(paths[0], force_cpu=cpu, cache_dir=cache_dir, input_size=self.caffevis_data_hw)
        return Net.from_caffe(*paths, force_cpu=cpu, cache_dir=cache_dir)

    def labels(self):
        """Label names (from caffevis_labels or caffevis_label_names), or None."""
        if self.caffevis_labels:
            from .images import read_labels

            return read_labels(self.caffevis_labels)
        return list(self.caffevis_label_names) if self.caffevis_label_names is not None else None

    def data_mean(self):
        """The mean as loaded (None, (C,) array or (C, H, W) image); see :func:`caffevis.images.load_mean`."""
        from .images import load_mean

        return load_mean(self.caffevis_data_mean)

    def font(self, key: str) -> int:
        """The cv2 font id of a ``*_face`` key."""
        import cv2

        return getattr(cv2, getattr(self, key))

    def check_net(self, net):
        """Check the settings against an opened net (layer names, channel swap, input size)."""
        blobs = set(net.blob_names)
        for key in ("caffevis_prob_layer",):
            name = getattr(self, key)
            if name and name not in blobs:
                raise SettingsError(f"{self.where(key)}: {key}: '{name}' is not a blob of this net "
                                    f"(blobs: {', '.join(net.blob_names)})")
        if not self.visible_layers(net.blob_names):
            raise SettingsError(f"{self.where('caffevis_filter_layers_regex')}: caffevis_filter_layers_regex: "
                                f"'{self.caffevis_filter_layers_regex}' hides every layer; expected one that "
                                f"leaves at least one of {', '.join(net.blob_names[1:])}")
        channels = net.input_shape[1] if len(net.input_shape) == 4 else None
        hw = self.caffevis_data_hw
        if hw and len(net.input_shape) == 4 and tuple(net.input_shape[2:]) != tuple(hw) \
                and min(net.input_shape[2:]) > 1:  # ONNX models with free dimensions report 1
            raise SettingsError(f"{self.where('caffevis_data_hw')}: caffevis_data_hw: {list(hw)} does not match "
                                f"the net input {list(net.input_shape[2:])}")
        swap = self.caffe_net_channel_swap
        if swap is not None and channels not in (None, 1) and len(swap) != channels:
            raise SettingsError(f"{self.where('caffe_net_channel_swap')}: caffe_net_channel_swap: "
                                f"{list(swap)} has {len(swap)} entries; the net has {channels} input channels")

    def as_dict(self) -> "OrderedDict[str, object]":
        """Every key -> value (after validation and path resolution)."""
        return OrderedDict((k, getattr(self, k)) for k in KEYS)

    def replace(self, **overrides) -> "Settings":
        """A new Settings with ``overrides`` applied (validated; relative paths from the cwd).

        Unlike :func:`load_settings`, a ``None`` value here sets the key to null.
        """
        merged = dict(self._overrides)
        merged.update(overrides)
        return _build(self._raw, self.source, self._raw_origins, self._base_dirs, merged)


def _panes(value, where, scale):
    panes = OrderedDict(DEFAULT_WINDOW_PANES)
    if value is not None:
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: window_panes: expected a mapping pane -> [i, j, height, width]")
        for name, box in value.items():
            if box is None:
                panes.pop(name, None)
                continue
            what = f"[i, j, height, width] with i, j >= 0 and height, width > 0, all at most {MAX_WINDOW_SIDE}"
            try:
                items = _seq(box, what)
                box = tuple(_int(c, what) for c in items)
            except _Invalid:
                raise SettingsError(f"{where}: window_panes: {name}: expected {what}, got {short_repr(box)}") from None
            if len(box) != 4 or min(box[:2]) < 0 or min(box[2:]) <= 0 or max(box) > MAX_WINDOW_SIDE:
                raise SettingsError(f"{where}: window_panes: {name}: expected {what}, got {list(box)!r}")
            panes[name] = box
    if "input" not in panes:
        raise SettingsError(f"{where}: window_panes: the 'input' pane is required")
    scaled = OrderedDict((k, tuple(int(v * scale) for v in box)) for k, box in panes.items())
    return _check_window(scaled, where)


def _check_window(panes, where):
    """The scaled layout, when every pane is drawable and the window fits in memory."""
    for name, (i, j, h, w) in panes.items():
        if min(h, w) < 1:
            raise SettingsError(f"{where}: window_panes: {name}: {h}x{w} pixels after global_scale; "
                                f"expected at least 1x1 (raise global_scale or the pane's size)")
    height = max(i + h for i, j, h, w in panes.values())
    width = max(j + w for i, j, h, w in panes.values())
    if max(height, width) > MAX_WINDOW_SIDE or height * width > MAX_WINDOW_PIXELS:
        raise SettingsError(f"{where}: window_panes: the window is {height}x{width} pixels after global_scale; "
                            f"expected sides of at most {MAX_WINDOW_SIDE} and at most {MAX_WINDOW_PIXELS} pixels")
    return panes


def _validate_source(values, where_of):
    """Check names and types of one source's values; return {key: checked value}."""
    out = {}
    for key, value in values.items():
        where = where_of(key)
        if key in REPLACED_KEYS:
            raise SettingsError(f"{where}: {key}: not supported; {REPLACED_KEYS[key]}")
        if key not in KEYS:
            raise SettingsError(f"{where}: unknown setting '{key}'{_closest(key)}")
        spec = KEYS[key]
        try:
            out[key] = _check_kind(spec, value)
        except _Invalid as err:
            raise SettingsError(f"{where}: {key}: expected {err}, got {short_repr(value)}") from None
    # one source names one model form; a later source's form replaces an earlier one's
    if values.get("caffevis_onnx_model") and (values.get("caffevis_deploy_prototxt")
                                              or values.get("caffevis_network_weights")):
        raise SettingsError(f"{where_of('caffevis_onnx_model')}: caffevis_onnx_model: give either it or "
                            f"caffevis_deploy_prototxt + caffevis_network_weights, not both")
    return out


def _build(raw_file, source, file_origins, base_dirs, overrides):
    """Defaults <- file values <- overrides, validated; returns a Settings."""
    file_dir = base_dirs.get("file")
    sources = [("default", {k: spec.default for k, spec in KEYS.items() if spec.default is not _GFS},
                lambda k: f"{source}: default" if source else "default", REPO_ROOT)]
    if raw_file:
        sources.append(("file", raw_file, lambda k: file_origins.get(k, source), file_dir))
    if overrides:
        sources.append(("override", dict(overrides), lambda k: "override", os.getcwd()))

    merged, origins, candidates = {}, {}, {}
    for name, values, where_of, base in sources:
        checked = values if name == "default" else _validate_source(values, where_of)
        if name != "default":
            if any(k in checked for k in ("caffevis_deploy_prototxt", "caffevis_network_weights")):
                merged.pop("caffevis_onnx_model", None)
            if checked.get("caffevis_onnx_model"):
                merged.pop("caffevis_deploy_prototxt", None)
                merged.pop("caffevis_network_weights", None)
        for key, value in checked.items():
            kind = KEYS[key].kind
            is_path = kind in ("path", "dir", "file", "model_path") or (kind == "mean" and isinstance(value, (str, list)))
            if is_path and value is not None:
                value, tried = _resolve_path(value, base)
                candidates[key] = tried
            merged[key] = value
            if name != "default":
                origins[key] = where_of(key)

    # defaults that depend on other keys
    gfs = merged["global_font_size"]
    for key in _FSIZE_KEYS:
        merged.setdefault(key, 1.0 * gfs)
    if "mnist_dir" not in origins:
        shared = os.path.normpath(_SHARED_MNIST.replace("%DVT_ROOT%", REPO_ROOT))
        merged["mnist_dir"] = shared if os.path.isdir(shared) else None
    where_panes = origins.get("window_panes", source or "default")
    merged["window_panes"] = _panes(merged.get("window_panes"), where_panes, merged["global_scale"])
    for key in ("caffevis_deploy_prototxt", "caffevis_network_weights", "caffevis_onnx_model"):
        merged.setdefault(key, None)

    def where(key):
        return origins.get(key, f"{source}: default" if source else "default")

    for key in ("caffevis_boost_indiv", "caffevis_boost_gamma"):
        idx, choices = merged[key + "_default_idx"], merged[key + "_choices"]
        if idx >= len(choices):
            raise SettingsError(f"{where(key + '_default_idx')}: {key}_default_idx: expected an index below "
                                f"{len(choices)} (the number of {key}_choices), got {idx}")
    if merged["caffevis_labels"] and merged["caffevis_label_names"] is not None:
        raise SettingsError(f"{where('caffevis_label_names')}: caffevis_label_names: give either it or "
                            f"caffevis_labels, not both")
    settings = Settings(merged, source, origins, candidates)
    settings.__dict__.update(_raw=raw_file, _raw_origins=file_origins, _base_dirs=base_dirs,
                             _overrides=dict(overrides or {}))
    # data files are cheap to check now; model files are checked when the model is opened
    for key in _CHECKED_AT_LOAD:
        value = merged[key]
        if isinstance(value, str) and not os.path.isfile(value):
            raise settings.missing_file_error(key, value)
    return settings


def resolve_settings_path(path: str) -> str:
    """A settings file by path, or a shipped one by name: ``squeezenet`` or
    ``squeezenet.yaml`` means ``<project>/settings/squeezenet.yaml`` when no such file is here."""
    if os.path.exists(path):
        return path
    name = os.path.basename(path)
    shipped = os.path.join(REPO_ROOT, "settings", name if name.endswith((".yaml", ".yml")) else name + ".yaml")
    return shipped if os.path.isfile(shipped) else path


def load_settings(path=None, overrides=None) -> Settings:
    """Load and validate settings.

    Parameters
    ----------
    path : str, optional
        A YAML settings file (e.g. ``settings/lenet.yaml``); None: defaults only.
    overrides : dict, optional
        key -> value applied after the file (CLI flags); validated like the file's values,
        relative paths taken from the current directory. ``None`` values in overrides are
        ignored, so unset CLI flags can be passed as they are; use :data:`NULL` to set a
        key to null.

    Returns
    -------
    Settings

    Raises
    ------
    SettingsError
        One line naming the file (and line), the key and the expected value.
    """
    raw, lines, source, base_dirs = OrderedDict(), {}, None, {}
    if path is not None:
        source = os.path.abspath(resolve_settings_path(os.fspath(path)))
        raw, lines = _read_yaml(source)
        base_dirs["file"] = os.path.dirname(source)
    origins = {k: f"{path}:{line}" for k, line in lines.items()}
    overrides = {k: (None if v is NULL else v) for k, v in (overrides or {}).items() if v is not None}
    return _build(raw, source, origins, base_dirs, overrides)


# Input conventions of common exporters, for ``caffevis live --preset NAME`` (settings keys).
PRESETS = {
    # torchvision (and most PyTorch models): RGB in [0, 1], ImageNet mean and std per channel
    "torchvision": {"caffe_net_channel_swap": [0, 1, 2], "caffevis_raw_scale": 1.0 / 255,
                    "caffevis_data_mean": [0.485, 0.456, 0.406], "caffevis_data_std": [0.229, 0.224, 0.225],
                    "caffevis_input_scale": NULL},
    # RGB in 0-255, nothing subtracted (Keras/TF exports that normalize inside the graph)
    "rgb255": {"caffe_net_channel_swap": [0, 1, 2], "caffevis_raw_scale": 1.0, "caffevis_data_mean": NULL,
               "caffevis_data_std": NULL, "caffevis_input_scale": NULL},
    # Caffe's BGR 0-255 with the ImageNet mean (the Caffe reference models)
    "caffe": {"caffe_net_channel_swap": [2, 1, 0], "caffevis_raw_scale": 1.0,
              "caffevis_data_mean": [104.0, 117.0, 123.0], "caffevis_data_std": NULL, "caffevis_input_scale": NULL},
}


# What the default settings file (LeNet's) says about its own model, cleared when
# ``caffevis live --model X`` opens another model without a settings file.
MODEL_NEUTRAL = {"caffevis_prob_layer": NULL, "caffevis_label_layers": [], "caffevis_labels": NULL,
                 "caffevis_label_names": NULL, "caffevis_jpgvis_layers": [], "caffevis_unit_jpg_dir": NULL,
                 "caffevis_data_mean": NULL, "caffevis_input_scale": NULL, "caffevis_data_std": NULL}


def preset_overrides(name: str) -> dict:
    """Settings overrides of a named input preset (:data:`PRESETS`)."""
    if name not in PRESETS:
        raise SettingsError(f"preset '{name}': expected one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def model_overrides(spec: str) -> dict:
    """Overrides for a CLI ``MODEL`` argument: ``x.onnx`` or ``deploy.prototxt:weights.caffemodel``."""
    # the settings file's fetch hint is about its own model, not the one given here
    if spec.endswith(".onnx"):
        return {"caffevis_onnx_model": spec, "caffevis_fetch_hint": NULL}
    if ":" in spec:
        proto, weights = spec.rsplit(":", 1)
        return {"caffevis_deploy_prototxt": proto, "caffevis_network_weights": weights,
                "caffevis_fetch_hint": NULL}
    raise SettingsError(f"{spec}: expected MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel")
