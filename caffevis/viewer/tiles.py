"""Array helpers for the viewer's panes: tile grids, layer normalisation, fitting, back filters.

Pure NumPy/OpenCV functions on arrays; images are BGR, uint8 or float in [0, 1].
"""
from __future__ import annotations

import cv2
import numpy as np

from .. import imaging
from ..imaging import to_uint8  # noqa: F401  (re-exported for the renderers)

#: the layers pane's back-diff colours: negative -> red, positive -> green (BGR).
NEG_BGR = (0.0, 0.0, 1.0)
POS_BGR = (0.0, 1.0, 0.0)


def fill(img, color):
    """Set every pixel of ``img`` (..., W, 3), a view or not, to ``color``.

    Broadcasting a 3-tuple straight into an image is ~50x slower in NumPy than
    broadcasting one prepared row, which this does.
    """
    row = np.empty((img.shape[-2], img.shape[-1]), img.dtype)
    row[:] = color
    img[...] = row
    return img


def filled(shape, color):
    """A new uint8 array of ``shape`` (..., 3) filled with ``color``."""
    return fill(np.empty(shape, np.uint8), color)


def as_units(blob):
    """A blob of one image -> (n, h, w): FC vectors (n,) become (n, 1, 1)."""
    blob = np.asarray(blob)
    if blob.ndim == 1:
        return blob.reshape(-1, 1, 1)
    if blob.ndim == 2:  # (n, h) from exotic nets: one row per unit
        return blob.reshape(blob.shape[0], 1, blob.shape[1])
    if blob.ndim == 3:
        return blob
    return blob.reshape(blob.shape[0], blob.shape[1], -1)


def normalize_layer(data, boost_indiv=0.0, boost_gamma=1.0):
    """DeepVis forward normalisation: global min-max to [0, 1], per-unit boost, gamma.

    Parameters
    ----------
    data : ndarray (n, h, w) or (n, h, w, 3)
    boost_indiv : float
        Each unit is multiplied by ``(max_unit + 1e-10) ** -boost_indiv`` (1 -> every unit
        spans [0, 1]).
    boost_gamma : float
        Exponent applied last.
    """
    out = np.asarray(data, np.float32)
    lo = float(out.min()) if out.size else 0.0
    out = out - lo
    hi = float(out.max()) if out.size else 0.0
    out *= np.float32(1.0 / (hi + 1e-10))
    return boost(out, boost_indiv, boost_gamma)


def boost(data, boost_indiv=0.0, boost_gamma=1.0):
    """Per-unit contrast boost and gamma on data already in [0, 1]."""
    out = data
    if boost_indiv > 0 and out.size:
        peak = out.reshape(out.shape[0], -1).max(axis=1)
        scale = np.power(peak + 1e-10, -float(boost_indiv)).astype(np.float32)
        out = out * scale.reshape((-1,) + (1,) * (out.ndim - 1))
    if boost_gamma != 1:
        out = np.power(np.clip(out, 0, None), float(boost_gamma), dtype=np.float32)
    return out


def signed_to_colors(data):
    """Back diffs (n, h, w) -> (n, h, w, 3) in [0, 1]: /max|x|, positive green, negative red."""
    data = np.asarray(data, np.float32)
    peak = float(np.abs(data).max()) if data.size else 0.0
    scaled = data / (peak + 1e-10) if peak > 0 else np.zeros_like(data)
    out = np.zeros(data.shape + (3,), np.float32)
    pos, neg = np.maximum(scaled, 0), np.maximum(-scaled, 0)
    for c in range(3):
        out[..., c] = neg * NEG_BGR[c] + pos * POS_BGR[c]
    return out


def enlarge_tiny(tiles, min_side=3):
    """1x1 (FC) tiles are repeated to ``min_side`` pixels so borders do not swamp them."""
    n, h, w = tiles.shape[:3]
    if h == 1 and w == 1:
        return np.repeat(np.repeat(tiles, min_side, axis=1), min_side, axis=2)
    return tiles


def make_tiles(tiles_u8, rows, cols, pad_bgr, highlights=None):
    """Lay out unit images on a grid, 1 px of padding around each, trailing pixel trimmed.

    Parameters
    ----------
    tiles_u8 : ndarray uint8, (n, h, w) grey or (n, h, w, 3) BGR
    rows, cols : int
    pad_bgr : tuple
        Padding colour, also the colour of missing tiles past ``n``.
    highlights : dict, optional
        unit -> BGR colour of that tile's padding ring (cursor green, frozen blue).

    Returns
    -------
    ndarray uint8 (rows*(h+2)-1, cols*(w+2)-1, 3)
    """
    n, h, w = tiles_u8.shape[:3]
    if tiles_u8.ndim == 3:
        tiles_u8 = np.repeat(tiles_u8[..., None], 3, axis=3)
    grid = filled((rows, h + 2, cols, w + 2, 3), pad_bgr)
    body = np.empty((rows * cols, h, w, 3), np.uint8)
    body[:n] = tiles_u8
    fill(body[n:], pad_bgr)
    grid[:, 1:h + 1, :, 1:w + 1] = body.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4)
    for unit, color in (highlights or {}).items():
        if unit is None or not 0 <= unit < rows * cols:
            continue
        r, c = divmod(int(unit), cols)
        color = np.asarray(color, np.uint8)
        grid[r, 0, c, :] = color
        grid[r, h + 1, c, :] = color
        grid[r, :, c, 0] = color
        grid[r, :, c, w + 1] = color
    out = grid.reshape(rows * (h + 2), cols * (w + 2), 3)
    return out[:-1, :-1]


def fit_scale(shape_hw, box_hw):
    """Uniform scale that fits ``shape_hw`` into ``box_hw``."""
    return min(box_hw[0] / float(shape_hw[0]), box_hw[1] / float(shape_hw[1]))


def resize_to_fit(img, box_hw):
    """Uniform resize into ``box_hw``: nearest when enlarging, linear when shrinking."""
    scale = fit_scale(img.shape[:2], box_hw)
    out_h = max(1, min(box_hw[0], int(round(img.shape[0] * scale))))
    out_w = max(1, min(box_hw[1], int(round(img.shape[1] * scale))))
    if (out_h, out_w) == img.shape[:2]:
        return img
    interp = cv2.INTER_NEAREST if scale > 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (out_w, out_h), interpolation=interp)


def paste_fit(pane, img):
    """Fit ``img`` (uint8 BGR) into ``pane`` (a view) at its top-left corner.

    Returns the (scale, h, w) used, for mouse hit-testing.
    """
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    fitted = resize_to_fit(img, pane.shape[:2])
    pane[:fitted.shape[0], :fitted.shape[1]] = fitted
    return fit_scale(img.shape[:2], pane.shape[:2]), fitted.shape[0], fitted.shape[1]


def norm01c(arr, center):
    return imaging.norm01c(arr, center, dtype=np.float32)  # float32: per-frame speed


def norm01(arr):
    return imaging.norm01(arr, dtype=np.float32)


def back_filter(diff_hwc, mode, blur_sigma=4.0):
    """Back-pane image from the input diff (H, W, C), in [0, 1].

    ``raw``: symmetric (0 is mid-grey); ``gray``: channel mean then symmetric; ``norm``:
    channel L2 norm then min-max; ``normblur``: the norm blurred with ``blur_sigma`` then
    min-max. Grey results have one channel.
    """
    diff = np.asarray(diff_hwc, np.float32)
    if mode == "raw":
        return norm01c(diff, 0)
    if mode == "gray":
        return norm01c(diff.mean(axis=2), 0)
    if mode in ("norm", "normblur"):
        grad = np.sqrt((diff ** 2).sum(axis=2))
        if mode == "normblur":
            grad = cv2.GaussianBlur(grad, (0, 0), float(blur_sigma))
        return norm01(grad)
    raise ValueError(f"unknown back filter '{mode}' (raw, gray, norm, normblur)")


def split_square_sprites(img, n):
    """Slice a square sprite sheet (ceil(sqrt(n)) per side, no gaps, row-major) into n images."""
    side = int(np.ceil(np.sqrt(n)))
    h, w = img.shape[:2]
    if h % side or w % side:
        raise ValueError(f"sprite sheet {w}x{h} does not divide into {side}x{side} sprites")
    sh, sw = h // side, w // side
    grid = img[:side * sh, :side * sw].reshape(side, sh, side, sw, *img.shape[2:])
    grid = np.swapaxes(grid, 1, 2).reshape(side * side, sh, sw, *img.shape[2:])
    return grid[:n]
