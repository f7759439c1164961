"""Settings: one validated object loaded from YAML (see docs/settings.md)."""
from .loader import (DEFAULT_WINDOW_PANES, KEYS, MAX_WINDOW_PIXELS, MAX_WINDOW_SIDE, NULL, QUANTITIES,  # noqa: F401
                     REPLACED_KEYS, Key, Settings, load_settings, model_overrides, parse_value, quantity_of,
                     resolve_settings_path, value_range)
from ..paths import REPO_ROOT  # noqa: F401,E402
