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

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..input_space import InputSpace
from .objective import UnitObjective
from .params import DEFAULT_PRESET, OptimizeParams, preset_params
from .regularizers import update_and_regularize

META_GRAD_ZERO = "Metaresult: grad 0 failure"
META_SUCCESS = "Metaresult: majority success"
META_FAILURE = "Metaresult: majority failure"
#: Batches of many units run at least this many ORT rows, so that a unit's result is the same
#: bits in any batch (alone, last in a layer, or on any worker of a cluster).
BATCH_INVARIANT_ROWS = 2


# -- the start and the per-iteration steps -------------------------------------------------------
def initial_x(params: OptimizeParams, space: InputSpace) -> np.ndarray:
    """x0 seeded by ``rand_seed`` (the legacy NumPy generator, as ``np.random.seed``)."""
    rng = np.random.RandomState(params.rand_seed)
    if params.start_at == "mean_plus_rand":
        return rng.normal(0, 10 * space.pixel_scale, space.shape)
    if params.start_at == "randu":
        return rng.uniform(space.low, space.high, space.shape) - space.net_mean
    return np.zeros(space.shape)


def clip_to_pixel_range(x, space: InputSpace):
    """``clip(x + mean, low, high) - mean``: the image stays a valid (mean-subtracted) image."""
    return np.minimum(space.high, np.maximum(space.low, x + space.net_mean)) - space.net_mean


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
        lr = learning_rate(self.params, grad_norm, obj, self.space.pixel_scale)
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
