"""The settings key table: every key's default, kind, group and meaning, and the numeric ranges."""
from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict

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


@dataclasses.dataclass(frozen=True)
class TextStyle:
    """One text block of the viewer: the ``<prefix>_face/_loc/_line_spacing/_clr*/_fsize/_thick*``
    keys as one typed group (:meth:`caffevis.settings.Settings.text_style`).

    In the settings, ``face`` is a cv2 ``FONT_*`` name and colours are RGB in [0, 1]; the
    viewer's copy (:meth:`caffevis.viewer.config.ViewerConfig.text_style`) holds the OpenCV
    font id and BGR 0-255 colours. ``colours`` is keyed by suffix (``clr``, ``clr_bp``, ...),
    ``thick_variants`` by the suffix after ``thick_`` (``bp``, ``cursor``, ...).
    """

    face: str
    loc: tuple
    colours: dict
    fsize: float
    thick: int
    line_spacing: int | None = None
    thick_variants: dict = dataclasses.field(default_factory=dict)

    @property
    def clr(self):
        """The main colour (``<prefix>_clr``)."""
        return self.colours.get("clr")

    def pen(self, variant=None):
        """(colour, thickness) of the main text, or of a variant (``'bp'``: ``clr_bp``, ``thick_bp``)."""
        if variant is None:
            return self.clr, self.thick
        return self.colours[f"clr_{variant}"], self.thick_variants.get(variant, self.thick)


class Key:
    """One settings key: default, kind (validator name), group and a one-line meaning."""

    def __init__(self, name, default, kind, group, doc, **opts):
        self.name, self.default, self.kind, self.group, self.doc = name, default, kind, group, doc
        self.opts = opts


def text_style_keys(prefix, group, loc, spacing=None, colours=None):
    """The keys of one :class:`TextStyle` group, in documentation order: face, loc,
    line_spacing (when the block has one), the colours (suffix -> (default, meaning)), fsize, thick."""
    colours = colours or {"clr": ((.8, .8, .8), "colour")}
    keys = [Key(f"{prefix}_face", _FONT, "font", group, "font (a cv2 FONT_* name)"),
            Key(f"{prefix}_loc", loc, "loc", group, "text origin (row, col)")]
    if spacing is not None:
        keys.append(Key(f"{prefix}_line_spacing", spacing, "int", group, "extra pixels between lines", min=0))
    keys += [Key(f"{prefix}_{suffix}", default, "color", group, doc) for suffix, (default, doc) in colours.items()]
    return keys + [Key(f"{prefix}_fsize", _GFS, "pos", group, "text size (default 1.0 * global_font_size)"),
                   Key(f"{prefix}_thick", 1, "int", group, "thickness", min=1)]


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
        *text_style_keys("help", g, (20, 10), spacing=10, colours={"clr": ((1, 1, 1), "colour")}),
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
        *text_style_keys("caffevis_control", g, (15, 5), spacing=4,
                         colours={"clr": ((.8, .8, .8), "layer name colour"),
                                  "clr_selected": ((1, 1, 1), "selected layer (cursor on units)"),
                                  "clr_cursor": ((.5, 1, .5), "layer under the cursor"),
                                  "clr_bp": ((.8, .8, 1), "frozen backprop layer")}),
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
        *text_style_keys("caffevis_status", g, (15, 10), spacing=5),
    ]
    g = "class probabilities"
    keys += [
        *text_style_keys("caffevis_class", g, (20, 10), spacing=10,
                         colours={"clr_0": ((.5, .5, .5), "colour at probability 0"),
                                  "clr_1": ((.5, 1, .5), "colour at probability 1")}),
    ]
    g = "label overlay"
    keys += [
        *text_style_keys("caffevis_label", g, (30, 20)),
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
