"""Value-to-display normalizations shared by the renderers (the original's ``norm01``/``norm01c``)."""
import numpy as np


def norm01(arr, dtype=np.float64):
    """Min-max to [0, 1]: the minimum maps to 0, the maximum to (almost) 1."""
    arr = np.asarray(arr, dtype)
    arr = arr - arr.min()
    return arr / (arr.max() + 1e-10)


def norm01c(arr, center=0.0, dtype=np.float64):
    """``center`` to 0.5 and the largest deviation from it to 0 or 1 (signed images)."""
    arr = np.asarray(arr, dtype) - center
    peak = max(float(arr.max()), float(-arr.min())) if arr.size else 0.0
    return arr / (2 * peak + 1e-10) + 0.5


def norm01c_by_peak(arr):
    """As :func:`norm01c` about 0 but exact: ``0.5 + a / (2 * peak)`` (all zeros: 0.5).

    The Z&F figures' variant (no epsilon in the divisor).
    """
    arr = np.asarray(arr, np.float64)
    peak = float(np.abs(arr).max())
    return np.full(arr.shape, 0.5) if peak == 0 else 0.5 + arr / (2 * peak)


def norm01_by_peak(arr):
    """Non-negative values scaled by their maximum (0 stays black, not min-max as
    :func:`norm01`); arrays with negatives go through :func:`norm01c_by_peak`.

    The Z&F figures' variant: activations and inputs keep 0 at black.
    """
    arr = np.asarray(arr, np.float64)
    if arr.min() < 0:
        return norm01c_by_peak(arr)
    peak = float(arr.max())
    return np.zeros(arr.shape) if peak == 0 else arr / peak


def to_uint8(img01):
    """[0, 1] floats to uint8 as ``cv2.imwrite(255 * img)`` stores them: round half to even, saturate."""
    return np.clip(np.rint(np.asarray(img01) * 255.0), 0, 255).astype(np.uint8)
