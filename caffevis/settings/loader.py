"""Loading settings: YAML files and overrides -> one validated :class:`Settings` object.

The key table is :mod:`.keys`, the value checks :mod:`.validators`, the YAML reading :mod:`.yaml_file`. Settings hold every
DeepVis key plus caffevis' own.

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

import difflib
import os
import re
from collections import OrderedDict

from ..errors import SettingsError
from ..limits import short_repr
from ..paths import DATA_DIR, REPO_ROOT
from .keys import (_CHECKED_AT_LOAD, _FSIZE_KEYS, _GFS, _MODEL_KEYS, _SHARED_MNIST, DEFAULT_WINDOW_PANES, KEYS,
                   MAX_WINDOW_PIXELS, MAX_WINDOW_SIDE, NULL, REPLACED_KEYS, TextStyle)
from .validators import _int, _Invalid, _seq, check_value
from .yaml_file import read_settings_yaml

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

    def open_net(self, force_cpu=None, cache_dir=None, threads=0):
        """Load the model the settings name (a :class:`caffevis.model.Net`; ``threads``: ONNX Runtime
        intra-op threads, 0 = all cores)."""
        from ..model.net import Net

        kind, paths = self.model_spec()
        cpu = self.use_cpu if force_cpu is None else bool(force_cpu)
        if kind == "onnx":  # caffevis_data_hw fixes free spatial dimensions of the graph input
            return Net.from_onnx(paths[0], force_cpu=cpu, cache_dir=cache_dir, input_size=self.caffevis_data_hw,
                                 threads=threads)
        return Net.from_caffe(*paths, force_cpu=cpu, cache_dir=cache_dir, threads=threads)

    def labels(self):
        """Label names (from caffevis_labels or caffevis_label_names), or None."""
        if self.caffevis_labels:
            from ..images import read_labels

            return read_labels(self.caffevis_labels)
        return list(self.caffevis_label_names) if self.caffevis_label_names is not None else None

    def text_style(self, prefix: str) -> TextStyle:
        """The ``<prefix>_*`` text keys as one :class:`~caffevis.settings.keys.TextStyle`
        (e.g. ``text_style('caffevis_status')``); colours keyed by suffix (``clr``, ``clr_0``, ...),
        extra thicknesses by what follows ``thick_`` (``bp``, ...)."""
        colours = {k[len(prefix) + 1:]: getattr(self, k) for k, spec in KEYS.items()
                   if k.startswith(prefix + "_clr") and spec.kind == "color"}
        thick_variants = {k[len(prefix) + 7:]: getattr(self, k) for k in KEYS if k.startswith(prefix + "_thick_")}
        return TextStyle(face=getattr(self, f"{prefix}_face"), loc=getattr(self, f"{prefix}_loc"), colours=colours,
                         fsize=getattr(self, f"{prefix}_fsize"), thick=getattr(self, f"{prefix}_thick"),
                         line_spacing=getattr(self, f"{prefix}_line_spacing", None), thick_variants=thick_variants)

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
            out[key] = check_value(spec, value)
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
        raw, lines = read_settings_yaml(source)
        base_dirs["file"] = os.path.dirname(source)
    origins = {k: f"{path}:{line}" for k, line in lines.items()}
    overrides = {k: (None if v is NULL else v) for k, v in (overrides or {}).items() if v is not None}
    return _build(raw, source, origins, base_dirs, overrides)


def model_overrides(spec: str) -> dict:
    """Overrides for a CLI ``MODEL`` argument: ``x.onnx`` or ``deploy.prototxt:weights.caffemodel``
    (parsed by :func:`caffevis.model.net.parse_model_spec`, the one model-spec parser)."""
    from ..errors import InputError
    from ..model.net import parse_model_spec

    try:
        kind, paths = parse_model_spec(spec)
    except InputError as err:
        raise SettingsError(str(err)) from None
    # the settings file's fetch hint is about its own model, not the one given here
    if kind == "onnx":
        return {"caffevis_onnx_model": paths[0], "caffevis_fetch_hint": NULL}
    return {"caffevis_deploy_prototxt": paths[0], "caffevis_network_weights": paths[1], "caffevis_fetch_hint": NULL}
