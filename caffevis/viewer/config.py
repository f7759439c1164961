"""The viewer's view of the settings, in one place.

:class:`ViewerConfig` wraps a :class:`caffevis.settings.Settings` (every DeepVis key under
its own name) and precomputes what drawing needs: colours as BGR 0-255 tuples, fonts as
OpenCV ids, the pane rectangles, the display-name and layer-filter functions. It is the
only viewer module that knows how settings are spelled; everything else reads ``cfg.key``.
"""
from __future__ import annotations

import dataclasses

import cv2

from ..errors import SettingsError
from ..settings import KEYS, Settings, load_settings

_COLOR_KINDS = ("color",)
_FONT_KINDS = ("font",)


def to_bgr255(rgb01):
    """An RGB colour in [0, 1] -> a BGR tuple of ints 0-255 for OpenCV."""
    r, g, b = (float(c) for c in rgb01)
    return (int(round(b * 255)), int(round(g * 255)), int(round(r * 255)))


class ViewerConfig:
    """Settings prepared for drawing.

    Every settings key is an attribute; ``*_clr*``/``*_background`` keys are BGR 0-255
    tuples, ``*_face`` keys OpenCV font ids. Also: ``window_panes`` (name -> (i, j, h, w)),
    ``window_shape`` (H, W), ``pretty_name(blob)``, ``settings`` (the wrapped
    :class:`~caffevis.settings.Settings`) and the viewer-only ``caffevis_back_lrn``
    ('derivative', DeepVis's LRN rule in deconv). ``input_space`` (an extra the launcher
    passes: the preprocessor's :class:`~caffevis.input_space.InputSpace`) is what the
    renderers ask for the net input's channel order; :meth:`input_space_for` builds one from
    the settings when it was not given. :meth:`text_style` groups a text block's keys.
    """

    def __init__(self, settings: Settings, **extras):
        self.settings = settings
        self.input_space = None
        self._spaces = {}
        self._text_styles = {}
        for key, spec in KEYS.items():
            value = getattr(settings, key)
            if spec.kind in _COLOR_KINDS:
                value = to_bgr255(value)
            elif spec.kind in _FONT_KINDS:
                value = _font(value, key)
            setattr(self, key, value)
        self.window_panes = dict(settings.window_panes)
        self.window_shape = tuple(settings.window_shape)
        self.pretty_name = settings.caffevis_layer_pretty_name_fn
        self.caffevis_label_layers = tuple(settings.caffevis_label_layers or ())
        self.caffevis_jpgvis_layers = tuple(settings.caffevis_jpgvis_layers or ())
        self.caffevis_jpgvis_remap = dict(settings.caffevis_jpgvis_remap or {})
        self.caffevis_boost_indiv_choices = tuple(float(v) for v in settings.caffevis_boost_indiv_choices)
        self.caffevis_boost_gamma_choices = tuple(float(v) for v in settings.caffevis_boost_gamma_choices)
        self.caffevis_back_lrn = "derivative"
        for key, value in extras.items():
            setattr(self, key, value)

    @classmethod
    def from_settings(cls, settings=None, **extras):
        """From a Settings object, a settings file path, or None (the defaults)."""
        if settings is None or isinstance(settings, str):
            settings = load_settings(settings)
        return cls(settings, **extras)

    @classmethod
    def from_overrides(cls, path=None, **overrides):
        """Load ``path`` (or the defaults) with DeepVis-key overrides; for scripts and tests."""
        return cls(load_settings(path, overrides))

    def input_space_for(self, input_shape):
        """The input space of a net input of ``input_shape`` ((C, H, W) or (N, C, H, W))."""
        shape = tuple(input_shape)[-3:]
        if self.input_space is not None and self.input_space.shape == shape:
            return self.input_space
        if shape not in self._spaces:
            from ..input_space import InputSpace

            self._spaces[shape] = InputSpace.from_settings(self.settings, shape)
        return self._spaces[shape]

    def text_style(self, prefix):
        """The ``<prefix>_*`` text block as drawing needs it: a
        :class:`~caffevis.settings.TextStyle` with the OpenCV font id and BGR 0-255 colours
        (built once per prefix)."""
        if prefix not in self._text_styles:
            style = self.settings.text_style(prefix)
            self._text_styles[prefix] = dataclasses.replace(
                style, face=_font(style.face, f"{prefix}_face"),
                colours={k: to_bgr255(v) for k, v in style.colours.items()})
        return self._text_styles[prefix]

    def pane(self, name):
        """(i, j, h, w) of a pane, or None when the layout has no such pane."""
        return self.window_panes.get(name)

    def visible_layers(self, blob_names):
        return self.settings.visible_layers(blob_names)


def _font(name, key):
    value = getattr(cv2, str(name), None)
    if not isinstance(value, int):
        raise SettingsError(f"{key}: '{name}' is not an OpenCV font (expected e.g. FONT_HERSHEY_COMPLEX_SMALL)")
    return value
