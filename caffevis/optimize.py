"""Regularized activation maximization (Yosinski et al. 2015), as DeepVis' ``optimize_image.py``.

The image ``x`` lives in the net's input space (for Caffe ImageNet nets: BGR, 0-255,
mean-subtracted). Each iteration ``ii`` of :func:`optimize` does, per image, exactly what the
original's ``GradientOptimizer._optimize`` does:

1. clip to the valid pixel range: ``x = clip(x + mean, low, high) - mean``;
2. forward; read the pushed unit's value and the layer's argmax; record obj / best /
   majority (first iterate where the unit is the layer's argmax) / last;
3. backward from the **layer named like the blob** (``start='layer'``: an in-place ReLU after
   ``conv5`` is skipped, so an inactive unit still gets a gradient) with ``push_dir`` at the
   unit; stop with ``'Metaresult: grad 0 failure'`` if the gradient is exactly 0;
4. learning rate by policy (``constant``, ``progress``, ``progress01``);
5. unless it is the last iteration: ``x += lr * g``; ``x *= 1 - decay``; Gaussian blur of
   each channel when ``ii % blur_every == 0`` (so also at ``ii = 0``); then the clipping
   regularizers in the original order: small values, small pixel norms, small pixel
   benefit, small absolute pixel benefit.

Beyond the original, many runs (different units, presets or seeds of one layer) go through
ONNX Runtime together as one batch, each image seeded at its own unit; every per-image step
is the same code as for a single run, so batched results equal one-by-one results up to
float rounding of the batched convolutions.

Nets whose input is scaled (LeNet: ``input_scale`` 1/256) are handled by
:class:`InputSpace`: the pixel range is the image of the valid 0-255 pixels, and the
start noise, learning rates and ``max_lr`` (given in 0-255 pixel units as in the paper) are
scaled so that a preset gives the same image as on the equivalent 0-255 net. For the
ImageNet nets (scale 1) this changes nothing.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

from .errors import InputError, ModelError, SettingsError
from .imaging import norm01, norm01c, to_uint8  # noqa: F401  (re-exported for callers)
from .io import atomic_path

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

META_GRAD_ZERO = "Metaresult: grad 0 failure"
META_SUCCESS = "Metaresult: majority success"
META_FAILURE = "Metaresult: majority failure"

DEFAULT_TEMPLATE = "%(p.push_layer)s_%(p.push_channel)04d_%(p.rand_seed)d"
DEFAULT_PREFIX = "optimize_results/opt"
#: Batches of many units run at least this many ORT rows, so that a unit's result is the same
#: bits in any batch (alone, last in a layer, or on any worker of a cluster).
BATCH_INVARIANT_ROWS = 2


# -- parameters -----------------------------------------------------------------------------
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


# -- the input space ----------------------------------------------------------------------
@dataclass
class InputSpace:
    """Where the optimized image lives: the net input after Caffe-style preprocessing.

    ``net_input = (pixel * raw_scale - mean) * input_scale`` with pixels in 0-255. The
    optimizer keeps ``x`` (the net input) so that ``x + mean_net`` stays in
    ``[low, high] = [0, 255 * scale]`` where ``mean_net = mean * input_scale`` and
    ``scale = raw_scale * input_scale``. For LeNet (``input_scale`` 0.00390625, no mean)
    that is ``[0, 0.99609375]``: exactly the inputs that 8-bit digit images can produce.

    Attributes
    ----------
    mean : ndarray, (C, H, W) float64
        ``mean_net`` broadcast to the input shape (zeros when the net has no mean).
    scale : float
        Net units per 0-255 pixel unit. Start noise (``mean_plus_rand``: N(0, 10 * scale))
        and learning rates (``lr * scale**2``, ``max_lr * scale**2``) are scaled with it, so
        a preset behaves as on the same net taking 0-255 input. 1.0 for ImageNet nets.
    channel_swap_to_rgb : tuple or None
        Permutation of the input channels giving RGB for saved images (Caffe's BGR nets:
        (2, 1, 0)); None for one-channel nets.
    """

    mean: np.ndarray
    scale: float = 1.0
    channel_swap_to_rgb: tuple | None = (2, 1, 0)
    # per-channel factor on ``scale`` when the preprocessing divides by a per-channel std
    # (torchvision); None: the same scale for every channel
    channel_scale: np.ndarray | None = None

    @property
    def low(self) -> float:
        return 0.0

    @property
    def high(self):
        return 255.0 * self.scale * (1.0 if self.channel_scale is None else self.channel_scale)

    @property
    def shape(self) -> tuple:
        return tuple(self.mean.shape)

    @classmethod
    def build(cls, input_shape, mean=None, raw_scale=1.0, input_scale=None, channel_swap_to_rgb="auto", std=None):
        """Input space of a net with input ``(N, C, H, W)``.

        Parameters
        ----------
        mean : None, number, sequence, (C, H, W) array or str
            As ``caffevis_data_mean`` (in net channel order); a larger mean image is
            centre-cropped to the input (offset ``excess // 2``).
        channel_swap_to_rgb : 'auto', None or sequence
            'auto': (2, 1, 0) for three channels (Caffe's BGR), None otherwise.
        std : None, number or sequence
            ``caffevis_data_std``: the input is divided by it per channel after the mean.
        """
        if len(input_shape) != 4:
            raise ModelError(f"the optimizer needs an image input (N, C, H, W); the net's input is {tuple(input_shape)}")
        c, h, w = (int(v) for v in input_shape[1:])
        input_scale = 1.0 if input_scale is None else float(input_scale)
        mean_img = _mean_image(mean, c, (h, w))
        per_channel = np.ones((c, 1, 1)) if std is None else \
            1.0 / np.broadcast_to(np.asarray(std, np.float64).reshape(-1), (c,)).reshape(c, 1, 1)
        mean_net = np.broadcast_to(mean_img * input_scale * per_channel, (c, h, w)).astype(np.float64) \
            if mean_img is not None else np.zeros((c, h, w), np.float64)
        if isinstance(channel_swap_to_rgb, str) and channel_swap_to_rgb == "auto":
            channel_swap_to_rgb = (2, 1, 0) if c == 3 else None
        if channel_swap_to_rgb is not None:
            channel_swap_to_rgb = tuple(int(v) for v in channel_swap_to_rgb)
            if sorted(channel_swap_to_rgb) != list(range(c)):
                raise SettingsError(f"channel_swap_to_rgb: {list(channel_swap_to_rgb)} is not a permutation of "
                                    f"the net's {c} input channels")
        scale = float(raw_scale) * input_scale * float(per_channel.mean())
        channel_scale = None if std is None else per_channel / float(per_channel.mean())
        return cls(np.ascontiguousarray(mean_net), scale, channel_swap_to_rgb, channel_scale)

    @classmethod
    def from_settings(cls, settings, net, channel_swap_to_rgb=None):
        """Input space from a :class:`caffevis.settings.Settings` (mean, scales, channel swap)."""
        swap = channel_swap_to_rgb
        c = net.input_shape[1] if len(net.input_shape) == 4 else None
        if swap is None and c == 3:
            # the settings' swap maps image (RGB) channels to input channels; null: the net takes RGB
            net_swap = tuple(settings.caffe_net_channel_swap or (0, 1, 2))
            swap = tuple(net_swap.index(i) for i in range(len(net_swap)))  # input channel order -> RGB
        return cls.build(net.input_shape, settings.caffevis_data_mean, settings.caffevis_raw_scale,
                         settings.caffevis_input_scale, swap, std=getattr(settings, "caffevis_data_std", None))

    def describe(self) -> dict:
        high = self.high if self.channel_scale is None else [float(v) for v in np.ravel(self.high)]
        return {"pixel_range": [self.low, high], "scale": self.scale,
                "mean_per_channel": [float(v) for v in self.mean.reshape(self.mean.shape[0], -1).mean(1)],
                "channel_swap_to_rgb": list(self.channel_swap_to_rgb) if self.channel_swap_to_rgb else None}


def _mean_image(spec, channels, hw):
    """The mean fitted to the input, float64 (``.npy`` files and arrays keep their precision)."""
    from .images import crop_mean, load_mean

    if spec is None:
        return None
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(s, str) for s in spec):
        spec = next((s for s in spec if os.path.isfile(s)), spec[0])
    cropped = crop_mean(load_mean(spec), channels, hw)  # checks shapes, one-line errors
    full = None
    if isinstance(spec, str) and not spec.lower().endswith(".binaryproto"):
        full = np.squeeze(np.load(spec, allow_pickle=False))  # load_mean gives float32; the original used float64
    elif isinstance(spec, np.ndarray):
        full = spec
    if full is not None and full.ndim in (2, 3):
        full = np.asarray(full, np.float64)
        full = full[None] if full.ndim == 2 else full
        top, left = (full.shape[1] - hw[0]) // 2, (full.shape[2] - hw[1]) // 2
        return np.ascontiguousarray(full[:, top:top + hw[0], left:left + hw[1]])
    return np.asarray(cropped, np.float64)


# -- the regularizers and steps: small pure functions on one image (C, H, W) ----------------------
def initial_x(params: OptimizeParams, space: InputSpace) -> np.ndarray:
    """x0 seeded by ``rand_seed`` (the legacy NumPy generator, as ``np.random.seed``)."""
    rng = np.random.RandomState(params.rand_seed)
    if params.start_at == "mean_plus_rand":
        return rng.normal(0, 10 * space.scale, space.shape)
    if params.start_at == "randu":
        return rng.uniform(space.low, space.high, space.shape) - space.mean
    return np.zeros(space.shape)


def clip_to_pixel_range(x, space: InputSpace):
    """``clip(x + mean, low, high) - mean``: the image stays a valid (mean-subtracted) image."""
    return np.minimum(space.high, np.maximum(space.low, x + space.mean)) - space.mean


def learning_rate(params: OptimizeParams, grad_norm, obj, scale=1.0) -> float:
    """The step size for this iteration (rates and ``max_lr`` given in 0-255 pixel units).

    ``progress``: ``min(max_lr, desired_prog / |g|^2)``, the step a linear model predicts
    raises the objective by ``desired_prog``. ``progress01`` (softmax units): desired
    progress ``min(early_prog, late_prog_mult * (1 - obj))``.
    """
    lr_params, s2 = params.lr_params, scale * scale
    if params.lr_policy == "constant":
        return lr_params["lr"] * s2
    # the original squares the float32 norm, then divides in float64
    g2 = float(np.float32(grad_norm) ** 2)
    if params.lr_policy == "progress":
        desired = lr_params["desired_prog"]
    else:
        desired = min(lr_params["early_prog"], lr_params["late_prog_mult"] * float(np.float32(1) - np.float32(obj)))
    # a float32 |g|^2 can underflow to 0 for a nonzero gradient; NumPy's division then gave inf
    return min(lr_params["max_lr"] * s2, desired / g2 if g2 > 0 else math.inf)


def gaussian_blur(x, radius):
    """Each channel blurred by ``scipy.ndimage.gaussian_filter`` (reflect, truncate 4)."""
    return np.stack([gaussian_filter(x[c], radius) for c in range(x.shape[0])])


def clip_small_values(x, percentile):
    """Zero the entries with ``|x|`` below the percentile of ``|x|``."""
    small = np.abs(x) < np.percentile(np.abs(x), percentile)
    return x - x * small


def clip_small_norms(x, percentile):
    """Zero whole pixels whose norm over channels is below the percentile (θ_n_pct)."""
    norms = np.linalg.norm(x, axis=0)
    small = norms < np.percentile(norms, percentile)
    return x - x * small[None]


def pixel_benefit(x, grad):
    """Linear estimate of the objective change if each pixel were set to 0: Σ_c g·(−x)."""
    return (grad * -x).sum(0)


def clip_small_benefit(x, grad, percentile):
    """Zero pixels whose (signed) benefit is below the percentile."""
    benefit = pixel_benefit(x, grad)
    small = benefit < np.percentile(benefit, percentile)
    return x - x * small[None]


def clip_small_abs_benefit(x, grad, percentile):
    """Zero pixels whose ``|benefit|`` is below the percentile (θ_c_pct)."""
    benefit = np.abs(pixel_benefit(x, grad))
    small = benefit < np.percentile(benefit, percentile)
    return x - x * small[None]


def update_and_regularize(x, grad, lr, params: OptimizeParams, ii):
    """Step 6 of the original loop: gradient step, decay, blur, then the clipping regularizers."""
    x = x + lr * grad  # lr * grad stays float32 as in the original; x is float64
    x = x * (1 - params.decay)
    if params.blur_every and params.blur_radius > 0 and ii % params.blur_every == 0:
        x = gaussian_blur(x, params.blur_radius)
    if params.small_val_percentile > 0:
        x = clip_small_values(x, params.small_val_percentile)
    if params.small_norm_percentile > 0:
        x = clip_small_norms(x, params.small_norm_percentile)
    if params.px_benefit_percentile > 0:
        x = clip_small_benefit(x, grad, params.px_benefit_percentile)
    if params.px_abs_benefit_percentile > 0:
        x = clip_small_abs_benefit(x, grad, params.px_abs_benefit_percentile)
    return x


# -- the objective: blob value and unit gradient in one ORT run -------------------------------
class UnitObjective:
    """Value of ``layer`` and d(unit)/d(input) for a batch, each image with its own unit.

    One ONNX Runtime session runs the exported gradient graph (backprop, seeded at the
    output of the layer named like the blob) and also returns that layer's output, so
    each iteration costs one forward and one backward pass. The blob's final value (what
    the original reads after ``forward``) is that output passed through the in-place
    layers that follow (ReLU, Dropout); nets with other in-place layers there get a
    separate forward pass.
    """

    def __init__(self, net, layer):
        from .backward import gradient_session, resolve_start

        net.require_layers("the optimizer")
        if layer not in net.blob_shapes or layer == net.input_name:
            raise InputError(f"push layer '{layer}' is not a blob of this net "
                             f"(blobs: {', '.join(net.blob_names[1:])})")
        self.net, self.layer = net, layer
        self.blob_shape = tuple(net.blob_shapes[layer][1:])
        if len(self.blob_shape) not in (1, 3):
            raise InputError(f"push layer '{layer}' has shape {self.blob_shape}; expected (C,) or (C, H, W)")
        idx, _ = resolve_start(net.layers, net.input_name, layer, "layer")
        self._in_place = [p for p in net.layers if p.index > idx and layer in p.tops and layer in p.bottoms]
        self._numpy_tail = all(p.type in ("ReLU", "Dropout") for p in self._in_place)
        # the net's cached gradient session, with the seeded layer's output as a second
        # output (no per-blob diffs: ORT then reuses their buffers); its factory turns ORT's
        # spin-waiting off: the blur and percentile steps between runs need the cores
        # (SqueezeNet on 2 cores: 47 ms per iteration spinning, 27 not)
        self.session = gradient_session(net, layer, mode="backprop", start="layer", value=True)

    @property
    def provider(self) -> str:
        return self.session.provider

    def seeds(self, units, push_dirs):
        seed = np.zeros((len(units),) + self.blob_shape, np.float32)
        for i, (unit, d) in enumerate(zip(units, push_dirs)):
            seed[(i,) + tuple(unit[:len(self.blob_shape)])] = d
        return seed

    def __call__(self, x, units, push_dirs):
        """Return (blob values (N, ...), input gradients (N, C, H, W) float32)."""
        x32 = np.ascontiguousarray(x, np.float32)
        result = self.session.run(x32, self.seeds(units, push_dirs))
        grad, value = result["input"], result["value"]
        if not self._numpy_tail:
            return self.net.forward(x32, blobs=[self.layer])[self.layer], grad
        for p in self._in_place:
            if p.type == "ReLU":
                slope = p.attrs.get("negative_slope", 0.0)
                value = np.maximum(value, 0) + slope * np.minimum(value, 0) if slope else np.maximum(value, 0)
        return value, grad


# -- one run's record -----------------------------------------------------------------------
@dataclass
class OptimizeResult:
    """What one run found: the original's ``FindResults`` plus the learning rates.

    ``best_*`` is the iterate with the highest objective (first on ties), ``majority_*`` the
    first iterate where the pushed unit is the argmax of its layer (None if never),
    ``last_*`` the final iterate. Images are (C, H, W) float64 in the net's input space.
    """

    params: OptimizeParams
    push_unit: tuple
    x0: np.ndarray
    ii: list = field(default_factory=list)
    obj: list = field(default_factory=list)
    idxmax: list = field(default_factory=list)
    ismax: list = field(default_factory=list)
    norm: list = field(default_factory=list)
    dist: list = field(default_factory=list)
    std: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    best_obj: float | None = None
    best_ii: int | None = None
    best_x: np.ndarray | None = None
    majority_obj: float | None = None
    majority_ii: int | None = None
    majority_x: np.ndarray | None = None
    last_obj: float | None = None
    last_ii: int | None = None
    last_x: np.ndarray | None = None
    meta_result: str | None = None
    seconds: float = 0.0

    def record(self, ii, acts, x):
        """The original's ``FindResults.update``; ``acts`` is the layer as (C, H, W)."""
        idxmax = tuple(int(v) for v in np.unravel_index(int(acts.argmax()), acts.shape))
        obj = acts[self.push_unit]
        self.ii.append(ii)
        self.obj.append(float(obj))
        self.idxmax.append(idxmax)
        self.ismax.append(idxmax == self.push_unit)
        self.norm.append(l2norm(x))
        self.dist.append(l2norm(x - self.x0))
        self.std.append(float(x.flatten().std()))
        if idxmax == self.push_unit and self.majority_x is None:
            self.majority_obj, self.majority_x, self.majority_ii = float(obj), x.copy(), ii
        if self.best_obj is None or obj > self.best_obj:
            self.best_obj, self.best_x, self.best_ii = float(obj), x.copy(), ii
        self.last_obj, self.last_x, self.last_ii = float(obj), x.copy(), ii
        return obj

    def finish(self):
        if self.meta_result is None:
            self.meta_result = META_SUCCESS if self.majority_obj is not None else META_FAILURE

    def summary(self) -> dict:
        """Scalars and per-iteration series (JSON-ready)."""
        return {"push_unit": list(self.push_unit), "best_obj": self.best_obj, "best_ii": self.best_ii,
                "majority_obj": self.majority_obj, "majority_ii": self.majority_ii,
                "last_obj": self.last_obj, "last_ii": self.last_ii, "meta_result": self.meta_result,
                "iterations": len(self.ii), "seconds": round(self.seconds, 3),
                "obj": self.obj, "idxmax": [list(i) for i in self.idxmax], "ismax": self.ismax,
                "norm": self.norm, "dist": self.dist, "std": self.std, "lr": self.lr}


def l2norm(a) -> float:
    """Euclidean norm by a pairwise sum in the array's precision.

    Not ``np.linalg.norm``: its BLAS call stalls for milliseconds while ORT's worker
    threads still spin after a run.
    """
    a = np.asarray(a).ravel()
    return math.sqrt(float(np.add.reduce(a * a)))


def push_unit_for(params: OptimizeParams, blob_shape) -> tuple:
    """(channel, row, col) of the pushed unit; FC blobs are (C,) -> (channel, 0, 0)."""
    shape = tuple(blob_shape)
    if params.push_channel >= shape[0]:
        raise InputError(f"push channel {params.push_channel} is out of range: '{params.push_layer}' has "
                         f"{shape[0]} channels")
    if len(shape) == 1:
        if params.push_spatial not in (None, (0, 0)):
            raise InputError(f"push spatial {params.push_spatial}: '{params.push_layer}' is a fully connected "
                             f"blob; use None or (0, 0)")
        return (params.push_channel, 0, 0)
    if params.push_spatial is None:
        return (params.push_channel, shape[1] // 2, shape[2] // 2)
    r, c = params.push_spatial
    if r >= shape[1] or c >= shape[2]:
        raise InputError(f"push spatial {params.push_spatial} is outside '{params.push_layer}' "
                         f"({shape[1]}x{shape[2]})")
    return (params.push_channel, r, c)


# -- the loop ---------------------------------------------------------------------------------
class _Run:
    """One image being optimized (the state the original keeps in ``_optimize``)."""

    def __init__(self, params, space, blob_shape):
        self.params, self.space = params, space
        self.is_conv = len(blob_shape) == 3
        self.unit = push_unit_for(params, blob_shape)
        self.result = OptimizeResult(params, self.unit, initial_x(params, space))
        self.x = self.result.x0.copy()
        self.done = False
        self.t0 = time.perf_counter()
        if params.blur_every and 0 < params.blur_radius < 0.3:
            warnings.warn(f"blur radius {params.blur_radius} < 0.3 works very poorly (as the original warns)")

    def step(self, ii, acts, grad):
        """Everything after the forward/backward pass of iteration ii."""
        acts = acts if self.is_conv else acts[:, None, None]
        obj = self.result.record(ii, acts, self.x)
        grad_norm = l2norm(grad)
        if grad_norm == 0:
            self.result.meta_result = META_GRAD_ZERO
            self._end()
            return
        lr = learning_rate(self.params, grad_norm, obj, self.space.scale)
        self.result.lr.append(lr)
        if ii < self.params.max_iter - 1:
            self.x = update_and_regularize(self.x, grad, lr, self.params, ii)
        else:
            self._end()

    def _end(self):
        self.done = True
        self.result.seconds = time.perf_counter() - self.t0
        self.result.finish()


def optimize(net, params_list, space: InputSpace, objective: UnitObjective | None = None, progress=None,
             min_rows=1):
    """Run several optimizations of units of ONE blob together, one ORT batch per iteration.

    Parameters
    ----------
    net : caffevis.model.Net
        A net converted from Caffe.
    params_list : OptimizeParams or list of OptimizeParams
        One run each (units, presets and seeds may differ; ``push_layer`` must not).
        Runs with fewer iterations (or a zero gradient) leave the batch early.
    space : InputSpace
    objective : UnitObjective, optional
        Reuse a built objective (building costs a fraction of a second).
    progress : callable(n_active), optional
        Called after every iteration with the number of runs that took part in it.
    min_rows : int
        Run ORT on at least this many images, repeating the last one (its copies are
        discarded). With 2 (:data:`BATCH_INVARIANT_ROWS`) a run's result does not depend on
        the batch it ran in: ORT's one-row matrix products round differently from the
        multi-row ones, which give every row the same bits whatever the batch.

    Returns
    -------
    OptimizeResult or list of OptimizeResult (matching ``params_list``)
    """
    single = isinstance(params_list, OptimizeParams)
    params_list = [params_list] if single else list(params_list)
    if not params_list:
        return []
    layers = {p.push_layer for p in params_list}
    if len(layers) != 1:
        raise InputError(f"one batch optimizes units of one blob; got {', '.join(sorted(layers))}")
    layer = params_list[0].push_layer
    if objective is None:
        objective = UnitObjective(net, layer)
    elif objective.layer != layer:
        raise InputError(f"objective is for '{objective.layer}', not '{layer}'")
    if tuple(net.input_shape[1:]) != space.shape:
        raise InputError(f"input space is {space.shape}; the net's input is {tuple(net.input_shape[1:])}")
    runs = [_Run(p, space, objective.blob_shape) for p in params_list]
    ii = 0
    while True:
        active = [r for r in runs if not r.done]
        if not active:
            break
        for r in active:
            r.x = clip_to_pixel_range(r.x, space)
        rows = active + active[-1:] * max(0, min_rows - len(active))
        values, grads = objective(np.stack([r.x for r in rows]), [r.unit for r in rows],
                                  [r.params.push_dir for r in rows])
        for r, v, g in zip(active, values, grads):  # padding rows are dropped
            r.step(ii, v, g)
        ii += 1
        if progress is not None:
            progress(len(active))
    results = [r.result for r in runs]
    return results[0] if single else results


# -- writing results ------------------------------------------------------------------------------
def to_display(x, space: InputSpace):
    """(C, H, W) input-space image -> (H, W, 3) RGB (channels swapped; one channel repeated)."""
    img = x[list(space.channel_swap_to_rgb)] if space.channel_swap_to_rgb else x
    img = np.transpose(img, (1, 2, 0))
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


def render_best_x(x, space: InputSpace) -> np.ndarray:
    """``best_X.jpg``: the image with 0 (the mean) at grey, uint8 RGB."""
    return to_uint8(norm01c(to_display(x, space), 0))


def render_best_xpm(x, space: InputSpace) -> np.ndarray:
    """``best_Xpm.jpg``: image plus mean ("plus mean"), min-max normalized, uint8 RGB."""
    return to_uint8(norm01(to_display(x + space.mean, space)))


def write_jpg(path, rgb):
    """Write an RGB uint8 image as JPEG (OpenCV, quality 95 as its default)."""
    import cv2

    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise InputError(f"{path}: could not encode the image")
    with atomic_path(path) as tmp:
        buf.tofile(tmp)


def result_prefix(result: OptimizeResult, output_prefix="optimize_results/opt", output_template=DEFAULT_TEMPLATE):
    """``<output_prefix>_<template>_`` filled from ``p.*`` (params) and ``r.*`` (results) keys.

    A prefix that names an existing directory gets a trailing slash, as in the original.
    """
    return _fill_prefix(result.params, result.push_unit, result.summary(), output_prefix, output_template)


def planned_prefix(params: OptimizeParams, push_unit, output_prefix="optimize_results/opt",
                   output_template=DEFAULT_TEMPLATE):
    """The prefix a run will get, known before it runs; None if the template uses ``r.*``."""
    if "%(r." in output_template:
        return None
    return _fill_prefix(params, push_unit, {}, output_prefix, output_template)


def _fill_prefix(params, push_unit, summary, output_prefix, output_template):
    values = {"p." + k: v for k, v in dataclasses.asdict(params).items()}
    values["p.push_unit"] = tuple(push_unit)
    values.update({"r." + k: v for k, v in summary.items()})
    try:
        prefix = f"{output_prefix}_{output_template}_" % values
    except (KeyError, ValueError, TypeError) as err:
        raise SettingsError(f"output template '{output_template}': cannot be filled ({err!r}); "
                            f"keys are p.<param> and r.<result>") from None
    if os.path.isdir(prefix) and not prefix.endswith(os.sep):
        prefix += os.sep
    return prefix


def software_versions() -> dict:
    import platform

    versions = {"python": platform.python_version()}
    for name, module in (("numpy", "numpy"), ("scipy", "scipy"), ("onnxruntime", "onnxruntime"),
                         ("onnx", "onnx"), ("opencv", "cv2"), ("h5py", "h5py")):
        try:
            versions[name] = __import__(module).__version__
        except Exception:
            versions[name] = None
    try:
        from importlib.metadata import version

        versions["caffevis"] = version("caffevis")
    except Exception:
        versions["caffevis"] = None
    return versions


def info_text(result: OptimizeResult) -> str:
    """The original's ``info.txt``: the parameters, a blank line, then the results."""
    out = io.StringIO()
    print("FindParams:", file=out)
    params = result.params.as_dict()
    params["push_unit"] = result.push_unit
    for key in sorted(params):
        print("%30s: %s" % (key, params[key]), file=out)
    print(file=out)
    print("FindResults:", file=out)
    fields = {k: getattr(result, k) for k in ("ii", "obj", "idxmax", "ismax", "norm", "dist", "std", "lr",
                                              "best_obj", "best_ii", "majority_obj", "majority_ii",
                                              "last_obj", "last_ii", "meta_result", "x0", "best_x",
                                              "majority_x", "last_x")}
    for key in sorted(fields):
        val = fields[key]
        if isinstance(val, list) and len(val) > 4:
            text = "[%s, %s, ..., %s, %s]" % (val[0], val[1], val[-2], val[-1])
        elif isinstance(val, np.ndarray):
            flat = val.ravel()
            text = "%s array [%s, %s, ...]" % (val.shape, flat[0], flat[1])
        else:
            text = "%s" % (val,)
        print("%30s: %s" % (key, text), file=out)
    return out.getvalue()


def save_result(result: OptimizeResult, space: InputSpace, prefix: str, brave=False, skipbig=False,
                extra=None) -> list:
    """Write ``<prefix>best_X.jpg``, ``best_Xpm.jpg``, ``info.txt``, ``info.h5`` and ``info.json``.

    ``info.json`` (written last, so its presence means the run is complete) holds every
    parameter, the per-iteration series, best / majority / last, the meta result, the input
    space, software versions and ``extra`` (model, provider, ...). ``info.h5`` holds x0,
    best, majority (when reached) and last as (C, H, W) float64 arrays (skipped with
    ``skipbig``). Refuses to overwrite an existing ``info.txt`` unless ``brave``.
    """
    import h5py

    info_txt = f"{prefix}info.txt"
    if os.path.exists(info_txt) and not brave:
        raise InputError(f"{info_txt} exists; refusing to overwrite (use --brave)")
    folder = os.path.dirname(prefix)
    if folder:
        os.makedirs(folder, exist_ok=True)
    written = []
    if result.best_x is not None:
        for name, render in (("best_X.jpg", render_best_x), ("best_Xpm.jpg", render_best_xpm)):
            write_jpg(prefix + name, render(result.best_x, space))
            written.append(prefix + name)
    with atomic_path(info_txt) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(info_text(result))
    written.append(info_txt)
    if not skipbig:
        path = f"{prefix}info.h5"
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            for name, arr in (("x0", result.x0), ("best", result.best_x), ("majority", result.majority_x),
                              ("last", result.last_x)):
                if arr is not None:
                    f.create_dataset(name, data=arr, track_times=False)
            f.create_dataset("obj", data=np.asarray(result.obj, np.float64), track_times=False)
            f.attrs["params"] = json.dumps(result.params.as_dict(), sort_keys=True)
            f.attrs["meta_result"] = result.meta_result or ""
        written.append(path)
    record = {"params": result.params.as_dict(), "rand_seed": result.params.rand_seed,
              "results": result.summary(), "input_space": space.describe(),
              "software": software_versions()}
    record.update(extra or {})
    path = f"{prefix}info.json"
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, default=_json_default)
    written.append(path)
    return written


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


# -- many units: batches, a progress bar, resume, Ctrl-C ------------------------------------------
def plan_runs(params_list, blob_shape, output_prefix=DEFAULT_PREFIX, output_template=DEFAULT_TEMPLATE,
              brave=False):
    """Split runs into (to do, report of skipped ones): a run whose ``info.json`` exists is done.

    Every run's unit is checked against ``blob_shape`` first, so a bad unit fails before any work.
    """
    todo, report = [], []
    for p in params_list:
        prefix = planned_prefix(p, push_unit_for(p, blob_shape), output_prefix, output_template)
        if prefix and os.path.exists(f"{prefix}info.json") and not brave:
            report.append((p, prefix, "skipped"))
        else:
            todo.append(p)
    return todo, report


def save_run(result, space, output_prefix=DEFAULT_PREFIX, output_template=DEFAULT_TEMPLATE, brave=False,
             skipbig=False, extra=None) -> str:
    """Save one run of a planned batch (:func:`plan_runs`); returns its prefix."""
    prefix = result_prefix(result, output_prefix, output_template)
    # a planned prefix was checked by plan_runs (an info.txt without info.json is a run cut short)
    save_result(result, space, prefix, brave=brave or "%(r." not in output_template, skipbig=skipbig, extra=extra)
    return prefix


def optimize_units(net, params_list, space: InputSpace, output_prefix="optimize_results/opt",
                   output_template=DEFAULT_TEMPLATE, batch_size=8, brave=False, skipbig=False,
                   progress=True, extra=None, on_result=None):
    """Optimize and save many runs of one blob in batches; resumable.

    A run whose ``info.json`` already exists is skipped (so an interrupted layer resumes
    where it stopped) unless ``brave``. Ctrl-C stops the current batch; every run saved so
    far stays on disk. Returns the list of (params, prefix, status) with status 'done',
    'skipped'.
    """
    from tqdm import tqdm

    params_list = list(params_list)
    if not params_list:
        return []
    objective = UnitObjective(net, params_list[0].push_layer)
    todo, report = plan_runs(params_list, objective.blob_shape, output_prefix, output_template, brave)
    extra = dict(extra or {}, provider=objective.provider)
    bar = tqdm(total=sum(p.max_iter for p in todo), unit="it", disable=not progress, file=sys.stderr,
               desc=f"optimize {params_list[0].push_layer}")
    done = 0
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            results = optimize(net, batch, space, objective=objective, progress=bar.update,
                               min_rows=BATCH_INVARIANT_ROWS)
            bar.update(sum(p.max_iter for p in batch) - sum(len(r.ii) for r in results))  # early stops
            for p, r in zip(batch, results):
                prefix = save_run(r, space, output_prefix, output_template, brave, skipbig, extra)
                report.append((p, prefix, "done"))
                done += 1
                if on_result is not None:
                    on_result(r, prefix)
            bar.set_postfix_str(f"units {done}/{len(todo)}")
    except KeyboardInterrupt:
        bar.close()
        print(f"caffevis optimize: interrupted; {done} of {len(todo)} runs saved (run again to resume)",
              file=sys.stderr)
        raise
    bar.close()
    return report


# -- benchmark ---------------------------------------------------------------------------------
def benchmark(net, layer, space: InputSpace, units=8, iterations=50, batch_size=8, preset=DEFAULT_PRESET):
    """Time the preset loop: seconds per run of ``iterations`` and units/s batched vs one at a time.

    Returns
    -------
    dict with ``seconds_per_run`` (one unit, ``iterations`` iterations),
    ``seconds_per_iteration``, ``units_per_second_one_at_a_time``,
    ``units_per_second_batched``, ``batch_speedup``, ``provider`` and the sizes used.
    """
    objective = UnitObjective(net, layer)
    n_channels = objective.blob_shape[0]
    params = [preset_params(preset, push_layer=layer, push_channel=u % n_channels, max_iter=iterations)
              for u in range(units)]
    optimize(net, params[0].replace(max_iter=2), space, objective=objective)  # warm-up (ORT first-run cost)
    t = time.perf_counter()
    for p in params:
        optimize(net, p, space, objective=objective)
    one = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(0, units, batch_size):
        optimize(net, params[s:s + batch_size], space, objective=objective)
    batched = time.perf_counter() - t
    return {"layer": layer, "preset": preset, "iterations": iterations, "units": units, "batch_size": batch_size,
            "seconds_per_run": one / units, "seconds_per_iteration": one / units / iterations,
            "units_per_second_one_at_a_time": units / one, "units_per_second_batched": units / batched,
            "batch_speedup": one / batched, "provider": objective.provider}
