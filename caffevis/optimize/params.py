"""The parameters of one optimization run and the paper's presets."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import SettingsError

START_AT = ("mean_plus_rand", "randu", "mean")
LR_POLICIES = ("constant", "progress", "progress01")
LR_KEYS = {"constant": ("lr",), "progress": ("max_lr", "desired_prog"),
           "progress01": ("max_lr", "early_prog", "late_prog_mult")}

#: The four hyperparameter sets of the paper's Table 1 with the iteration counts and
#: learning-rate policies of the toolbox's ``doc/running-optimize-image.md``. Set 3 is the
#: one "used for most of the images in the paper".
PRESETS = {
    1: dict(decay=0.0, blur_radius=0.5, blur_every=4, small_norm_percentile=50, px_abs_benefit_percentile=0,
            max_iter=500, lr_policy="progress", lr_params={"max_lr": 100.0, "desired_prog": 2.0}),
    2: dict(decay=0.3, blur_radius=0.0, blur_every=0, small_norm_percentile=20, px_abs_benefit_percentile=0,
            max_iter=750, lr_policy="constant", lr_params={"lr": 100.0}),
    3: dict(decay=0.0001, blur_radius=1.0, blur_every=4, small_norm_percentile=0, px_abs_benefit_percentile=0,
            max_iter=1000, lr_policy="constant", lr_params={"lr": 100.0}),
    4: dict(decay=0.0, blur_radius=0.5, blur_every=4, small_norm_percentile=0, px_abs_benefit_percentile=90,
            max_iter=1000, lr_policy="progress", lr_params={"max_lr": 1e8, "desired_prog": 2.0}),
}
DEFAULT_PRESET = 3


@dataclass
class OptimizeParams:
    """One optimization run: the original's ``FindParams`` (same names, same meaning).

    The defaults are those of the original's command line (no regularization, constant
    lr 1, 500 iterations); :func:`preset_params` gives the paper's sets.

    Attributes
    ----------
    push_spatial : tuple of 2 ints or None
        Unit position in a conv blob; None: the spatial centre ``(H // 2, W // 2)``
        (the original defaulted to the corner (0, 0) and warned). Must be None or (0, 0)
        for FC blobs.
    push_dir : float
        Seed value at the unit; must be > 0 (the original asserts this too).
    lr_params : dict
        ``constant``: ``lr``; ``progress``: ``max_lr``, ``desired_prog``; ``progress01``:
        ``max_lr``, ``early_prog``, ``late_prog_mult``. Rates are in 0-255 pixel units
        (see :class:`InputSpace`).
    """

    push_layer: str = "fc8"
    push_channel: int = 130
    push_spatial: tuple | None = None
    push_dir: float = 1.0
    start_at: str = "mean_plus_rand"
    rand_seed: int = 0
    decay: float = 0.0
    blur_radius: float = 0.0
    blur_every: int = 0
    small_val_percentile: float = 0.0
    small_norm_percentile: float = 0.0
    px_benefit_percentile: float = 0.0
    px_abs_benefit_percentile: float = 0.0
    lr_policy: str = "constant"
    lr_params: dict = field(default_factory=lambda: {"lr": 1.0})
    max_iter: int = 500

    def __post_init__(self):
        def bad(name, expected):
            raise SettingsError(f"optimize parameter {name}: expected {expected}, got {getattr(self, name)!r}")

        if not isinstance(self.push_layer, str) or not self.push_layer:
            bad("push_layer", "a blob name")
        if isinstance(self.push_channel, bool) or not isinstance(self.push_channel, (int, np.integer)) \
                or self.push_channel < 0:
            bad("push_channel", "an integer >= 0")
        self.push_channel = int(self.push_channel)
        if self.push_spatial is not None:
            try:
                sp = tuple(int(v) for v in self.push_spatial)
            except (TypeError, ValueError):
                sp = ()
            if len(sp) != 2 or min(sp) < 0:
                bad("push_spatial", "None or two integers >= 0 (row, col)")
            self.push_spatial = sp
        if not _finite(self.push_dir) or self.push_dir <= 0:
            bad("push_dir", "a number > 0 (minimization is not supported, as in the original)")
        if self.start_at not in START_AT:
            bad("start_at", "one of " + ", ".join(START_AT))
        if isinstance(self.rand_seed, bool) or not isinstance(self.rand_seed, (int, np.integer)) \
                or not 0 <= self.rand_seed < 2 ** 32:
            bad("rand_seed", "an integer in [0, 2**32)")
        for name in ("decay", "blur_radius"):
            if not _finite(getattr(self, name)) or getattr(self, name) < 0:
                bad(name, "a number >= 0")
            setattr(self, name, float(getattr(self, name)))
        if not 0 <= self.decay <= 1:
            bad("decay", "a number in [0, 1]")
        if isinstance(self.blur_every, bool) or not isinstance(self.blur_every, (int, np.integer)) \
                or self.blur_every < 0:
            bad("blur_every", "an integer >= 0 (0: no blur)")
        for name in ("small_val_percentile", "small_norm_percentile", "px_benefit_percentile",
                     "px_abs_benefit_percentile"):
            if not _finite(getattr(self, name)) or not 0 <= getattr(self, name) <= 100:
                bad(name, "a percentile in [0, 100] (0: off)")
            setattr(self, name, float(getattr(self, name)))
        if self.lr_policy not in LR_POLICIES:
            bad("lr_policy", "one of " + ", ".join(LR_POLICIES))
        if not isinstance(self.lr_params, dict):
            bad("lr_params", "a mapping such as {lr: 100}")
        missing = [k for k in LR_KEYS[self.lr_policy] if k not in self.lr_params]
        if missing:
            raise SettingsError(f"optimize parameter lr_params: lr_policy '{self.lr_policy}' needs "
                                f"{', '.join(LR_KEYS[self.lr_policy])}; missing {', '.join(missing)}")
        if any(not _finite(v) for v in self.lr_params.values()):
            bad("lr_params", "numbers only")
        self.lr_params = {k: float(v) for k, v in self.lr_params.items()}
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            bad("max_iter", "an integer >= 1")
        self.max_iter = int(self.max_iter)
        self.blur_every = int(self.blur_every)
        self.push_dir = float(self.push_dir)
        self.rand_seed = int(self.rand_seed)

    def replace(self, **changes) -> "OptimizeParams":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["push_spatial"] = list(self.push_spatial) if self.push_spatial is not None else None
        return d


def _finite(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def preset_params(preset=DEFAULT_PRESET, **overrides) -> OptimizeParams:
    """The paper's hyperparameter set ``preset`` (1-4) with ``overrides`` applied.

    ``preset=None`` (or 0) gives the original command line's bare defaults.
    """
    values = {}
    if preset not in (None, 0):
        if preset not in PRESETS:
            raise SettingsError(f"optimize preset: expected 1, 2, 3 or 4, got {preset!r}")
        values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in PRESETS[preset].items()}
    values.update(overrides)
    return OptimizeParams(**values)
