"""The regularizers: small steps ``(x, grad) -> x`` on one image (C, H, W), composed in order.

:func:`regularizer_steps` lists the steps a :class:`~caffevis.optimize.params.OptimizeParams` turns
on at iteration ``ii``, in the original's order (decay, blur, then the clipping regularizers:
small values, small pixel norms, small pixel benefit, small absolute pixel benefit);
:func:`compose` chains steps into one, so a new regularizer is one more small function in
that list. :func:`update_and_regularize` is the original loop's step 6.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from .params import OptimizeParams


# -- the image operations ---------------------------------------------------------------------
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


# -- steps (x, grad) -> x and their composition ---------------------------------------------------
def compose(steps):
    """One step running ``steps`` in order (each ``(x, grad) -> x``)."""
    steps = list(steps)

    def composed(x, grad):
        for step in steps:
            x = step(x, grad)
        return x

    return composed


def ascend(lr):
    """The gradient step ``x + lr * grad`` (``lr * grad`` stays float32 as in the original; x is float64)."""
    return lambda x, grad: x + lr * grad


def decay(rate):
    """``x * (1 - rate)`` (applied every iteration, also with rate 0, as the original)."""
    return lambda x, grad: x * (1 - rate)


def blur(radius):
    """Gaussian blur of each channel."""
    return lambda x, grad: gaussian_blur(x, radius)


def small_value_clip(percentile):
    return lambda x, grad: clip_small_values(x, percentile)


def small_norm_clip(percentile):
    return lambda x, grad: clip_small_norms(x, percentile)


def small_benefit_clip(percentile):
    return lambda x, grad: clip_small_benefit(x, grad, percentile)


def small_abs_benefit_clip(percentile):
    return lambda x, grad: clip_small_abs_benefit(x, grad, percentile)


def regularizer_steps(params: OptimizeParams, ii) -> list:
    """The regularizing steps of iteration ``ii``, in the original's order."""
    steps = [decay(params.decay)]
    if params.blur_every and params.blur_radius > 0 and ii % params.blur_every == 0:
        steps.append(blur(params.blur_radius))
    for make, percentile in ((small_value_clip, params.small_val_percentile),
                             (small_norm_clip, params.small_norm_percentile),
                             (small_benefit_clip, params.px_benefit_percentile),
                             (small_abs_benefit_clip, params.px_abs_benefit_percentile)):
        if percentile > 0:
            steps.append(make(percentile))
    return steps


def update_and_regularize(x, grad, lr, params: OptimizeParams, ii):
    """Step 6 of the original loop: gradient step, decay, blur, then the clipping regularizers."""
    return compose([ascend(lr)] + regularizer_steps(params, ii))(x, grad)
