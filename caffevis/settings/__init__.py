"""Settings: one validated object loaded from YAML (see docs/settings.md).

:mod:`.keys` is the key table (defaults, kinds, groups, ranges, the :class:`TextStyle` groups),
:mod:`.validators` one check per value kind, :mod:`.yaml_file` the safe YAML reading (data only, one-line
errors), :mod:`.loader` reads files and overrides into a :class:`Settings`, :mod:`.presets` named overrides
(input conventions of common exporters).
"""
from ..paths import REPO_ROOT
from .keys import (DEFAULT_WINDOW_PANES, KEYS, MAX_WINDOW_PIXELS, MAX_WINDOW_SIDE, NULL, QUANTITIES, REPLACED_KEYS,
                   Key, TextStyle, quantity_of, value_range)
from .loader import Settings, load_settings, model_overrides, resolve_settings_path
from .presets import MODEL_NEUTRAL, PRESETS, preset_overrides
from .validators import VALIDATORS
from .yaml_file import parse_value

__all__ = ["REPO_ROOT", "DEFAULT_WINDOW_PANES", "KEYS", "MAX_WINDOW_PIXELS", "MAX_WINDOW_SIDE", "NULL", "QUANTITIES",
           "REPLACED_KEYS", "Key", "TextStyle", "quantity_of", "value_range", "Settings", "load_settings",
           "model_overrides", "parse_value", "resolve_settings_path", "VALIDATORS", "MODEL_NEUTRAL", "PRESETS",
           "preset_overrides"]
