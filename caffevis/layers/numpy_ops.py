"""Vectorized NumPy kernels for the spatial layers of the NumPy backward engine.

Every kernel loops at most over kernel offsets (``kh * kw``) or LRN window offsets,
never over pixels: each offset is one strided slice of the whole batch, and the
channel mixing of convolutions is one BLAS matrix product per group. Arrays are
NCHW. Spatial "pads" are ``(begin, end)`` pairs per axis so that Caffe's ceil-mode
pooling windows fit a padded buffer exactly (see
:func:`caffevis.layers.pool.pool_geometry`).
"""
from __future__ import annotations

import numpy as np


def _window_slice(offset, stride, count):
    """Positions ``offset, offset + stride, …`` (``count`` of them) as a slice."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def _padded(x, pads_h, pads_w, value):
    """``x`` with ``value`` added around its two spatial axes (no copy when unpadded)."""
    if not any(pads_h) and not any(pads_w):
        return x
    return np.pad(x, ((0, 0), (0, 0), tuple(pads_h), tuple(pads_w)), mode="constant", constant_values=value)


# -- convolution ------------------------------------------------------------------------
def conv2d(x, weight, stride, pad, dilation, group):
    """Caffe's convolution forward without bias (cross-correlation), im2col + BLAS.

    Parameters
    ----------
    x : ndarray (N, C, H, W)
    weight : ndarray (M, C // group, kh, kw)
    stride, pad, dilation : pairs of int

    Returns
    -------
    ndarray (N, M, OH, OW), float32
    """
    n, c, h, w = x.shape
    m, cg, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    # channels first so each group's columns are one contiguous (cg*kh*kw, N*OH*OW) matrix
    xt = _padded(np.ascontiguousarray(x.transpose(1, 0, 2, 3)), (ph, ph), (pw, pw), 0.0)
    col = np.empty((c, kh, kw, n, oh, ow), np.float32)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = xt[:, :, _window_slice(i * dh, sh, oh), _window_slice(j * dw, sw, ow)]
    col = col.reshape(group, cg * kh * kw, n * oh * ow)
    wmat = weight.reshape(group, m // group, cg * kh * kw).astype(np.float32, copy=False)
    y = np.matmul(wmat, col)  # (group, M/group, N*OH*OW)
    return np.ascontiguousarray(y.reshape(m, n, oh, ow).transpose(1, 0, 2, 3))


def conv2d_transpose(dy, weight, stride, pad, dilation, group, out_hw):
    """The transpose of :func:`conv2d` (its gradient with respect to the input).

    Per chunk of images, one BLAS product per group gives every output position's
    ``W^T dy`` column; col2im then adds each kernel offset's slice back over the
    receptive fields (adding where they overlap). Within a chunk the images are the
    innermost axis, so each col2im add runs over ``OW * images`` contiguous values
    rather than one short row at a time; chunks keep the columns cache-sized; strided
    convolutions accumulate per stride phase, so those adds are contiguous too.

    Parameters
    ----------
    dy : ndarray (N, M, OH, OW)
    weight : ndarray (M, C // group, kh, kw)
    out_hw : (H, W)
        Spatial size of the convolution's input; positions no window reached get 0.

    Returns
    -------
    ndarray (N, C, H, W), float32
    """
    n, m, oh, ow = dy.shape
    _, cg, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    h, w = out_hw
    weight = weight.astype(np.float32, copy=False)
    dy = dy.astype(np.float32, copy=False)
    # Channels of dy that are zero everywhere add nothing: the work runs over the others only
    # (a seed in one channel, as the viewer's, then costs one filter's work at its layer).
    used = dy.reshape(n, group, m // group, -1).any(axis=(0, 3))  # (group, M/group)
    if used.sum() * 2 <= used.size:
        keep = int(used.sum(axis=1).max())
        order = np.argsort(~used, axis=1, kind="stable")[:, :keep]  # each group's used channels first
        rows = (order + (m // group) * np.arange(group)[:, None]).ravel()
        weight, dy, m = weight[rows], dy[:, rows], keep * group
        full = (dh * (kh - 1) - ph, dw * (kw - 1) - pw)
        if (sh, sw) == (1, 1) and min(full) >= 0:
            # a stride-1 transpose is the correlation with the flipped filters; with few dy
            # channels its im2col is small, where col2im would still fill every output channel
            return conv2d(dy, _flipped_transposed(weight, group), (1, 1), full, dilation, group)
    c, mg, k = cg * group, m // group, cg * kh * kw
    hq = max(-(-(h + 2 * ph) // sh), (dh * (kh - 1)) // sh + oh)  # padded rows per stride phase
    wq = max(-(-(w + 2 * pw) // sw), (dw * (kw - 1)) // sw + ow)
    wt = weight.reshape(group, mg, k).transpose(0, 2, 1)  # (group, K, M/group)
    dy = dy.reshape(n, group, mg, oh * ow)
    out = np.empty((n, c, h, w), np.float32)
    chunk = max(1, min(n, _COLUMNS // (oh * ow)))
    for start in range(0, n, chunk):
        nc = min(chunk, n - start)
        rhs = np.ascontiguousarray(dy[start:start + nc].transpose(1, 2, 3, 0)).reshape(group, mg, oh * ow * nc)
        col = np.matmul(wt, rhs).reshape(c, kh, kw, oh, ow, nc)
        # Stride phases: offset i lands on rows sh*oy + i*dh, i.e. on phase (i*dh) % sh at
        # phase rows oy + (i*dh) // sh, so every add below is a contiguous shifted block.
        phases = np.zeros((c, sh, sw, hq, wq, nc), np.float32)
        for i in range(kh):
            qi, ri = divmod(i * dh, sh)
            for j in range(kw):
                qj, rj = divmod(j * dw, sw)
                phases[:, ri, rj, qi:qi + oh, qj:qj + ow] += col[:, i, j]
        buf = phases.transpose(0, 3, 1, 4, 2, 5).reshape(c, hq * sh, wq * sw, nc)
        out[start:start + nc] = buf[:, ph:ph + h, pw:pw + w].transpose(3, 0, 1, 2)
    return out


def _flipped_transposed(weight, group):
    """(M, C/group, kh, kw) filters as the (C, M/group, kh, kw) filters of their transpose."""
    m, cg, kh, kw = weight.shape
    w5 = weight.reshape(group, m // group, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return np.ascontiguousarray(w5.reshape(group * cg, m // group, kh, kw))


_COLUMNS = 8192  # output positions per BLAS product in conv2d_transpose (chunks large enough for both cores)


# -- pooling ----------------------------------------------------------------------------
def max_pool_switches(x, kernel, stride, pads_h, pads_w, out_hw, dilation=(1, 1)):
    """Caffe's max-pool switches: per output, the window offset ``i * kw + j`` of the
    first maximum in row-major window order (Caffe replaces its running maximum only
    when a value is strictly greater). Padding never wins.

    Returns
    -------
    ndarray (N, C, OH, OW) of int8 (int16 for windows over 127 positions)
    """
    (kh, kw), (sh, sw), (oh, ow), (dh, dw) = kernel, stride, out_hw, dilation
    xp = _padded(x, pads_h, pads_w, -np.inf)
    windows = [(i, j, xp[:, :, _window_slice(i * dh, sh, oh), _window_slice(j * dw, sw, ow)])
               for i in range(kh) for j in range(kw)]
    best = windows[0][2].copy()
    for _, _, window in windows[1:]:
        np.maximum(best, window, out=best)
    # walk the offsets backwards, moving each switch to any offset that holds the maximum:
    # the last move is the first maximum. Arithmetic updates beat masked assignment here.
    itype = np.int8 if kh * kw <= 127 else np.int16
    switch = np.zeros(best.shape, itype)
    step = np.empty(best.shape, itype)
    hit = np.empty(best.shape, bool)
    for i, j, window in reversed(windows):
        np.equal(window, best, out=hit)
        np.subtract(itype(i * kw + j), switch, out=step)
        np.multiply(step, hit, out=step)
        switch += step
    return switch


def max_pool_backward(dy, switch, kernel, stride, pads_h, pads_w, in_hw, dilation=(1, 1)):
    """Route each output diff to its switch position, adding where windows overlap.

    One ``bincount`` over flat input positions (accumulated in float64).
    """
    (kh, kw), (sh, sw), (h, w) = kernel, stride, in_hw
    n, c, oh, ow = dy.shape
    hp, wp = h + sum(pads_h), w + sum(pads_w)
    window_start = (np.arange(oh, dtype=np.int64) * (sh * wp))[:, None] + np.arange(ow, dtype=np.int64) * sw
    plane_start = np.arange(n * c, dtype=np.int64) * (hp * wp)
    offset = (np.arange(kh, dtype=np.int64)[:, None] * (dilation[0] * wp) + np.arange(kw) * dilation[1]).ravel()
    flat = offset[switch.reshape(n * c, oh, ow)]
    flat += window_start
    flat += plane_start[:, None, None]
    summed = np.bincount(flat.ravel(), weights=dy.ravel(), minlength=n * c * hp * wp)
    summed = summed.reshape(n, c, hp, wp)[:, :, pads_h[0]:pads_h[0] + h, pads_w[0]:pads_w[0] + w]
    return summed.astype(np.float32)


def ave_pool_backward(dy, divisor, kernel, stride, pads_h, pads_w, in_hw):
    """Spread ``dy / divisor`` evenly over each window; padding positions are dropped."""
    (kh, kw), (sh, sw), (h, w) = kernel, stride, in_hw
    n, c, oh, ow = dy.shape
    share = (dy / divisor).astype(np.float32)
    buf = np.zeros((n, c, h + sum(pads_h), w + sum(pads_w)), np.float32)
    for i in range(kh):
        for j in range(kw):
            buf[:, :, _window_slice(i, sh, oh), _window_slice(j, sw, ow)] += share
    return np.ascontiguousarray(buf[:, :, pads_h[0]:pads_h[0] + h, pads_w[0]:pads_w[0] + w])


# -- local response normalization -------------------------------------------------------
def channel_window_sum(a, size):
    """Sum over ``size`` channels centred on each channel (zeros beyond the edges)."""
    pre = (size - 1) // 2
    c = a.shape[1]
    out = np.zeros_like(a)
    for d in range(-pre, size - pre):
        lo, hi = max(0, -d), min(c, c - d)  # out[:, k] += a[:, k + d]
        if lo < hi:
            out[:, lo:hi] += a[:, lo + d:hi + d]
    return out


def spatial_window_sum(a, size):
    """Sum over a ``size`` x ``size`` window centred on each position (zero-padded)."""
    pre = (size - 1) // 2
    out = a
    for axis in (2, 3):
        n = out.shape[axis]
        summed = np.zeros_like(out)
        for d in range(-pre, size - pre):
            lo, hi = max(0, -d), min(n, n - d)
            if lo < hi:
                dst = [slice(None)] * 4
                src = [slice(None)] * 4
                dst[axis], src[axis] = slice(lo, hi), slice(lo + d, hi + d)
                summed[tuple(dst)] += out[tuple(src)]
        out = summed
    return out


def lrn_backward(x, dy, size, alpha, beta, k, region):
    """Exact derivative of Caffe's LRN (float32, as Caffe computes it).

    ACROSS_CHANNELS: ``scale = k + alpha/n * sum_window(x^2)`` over channels;
    WITHIN_CHANNEL: ``scale = 1 + alpha/n^2 * sum_window(x^2)`` over an n x n window
    (Caffe builds it from AVE pooling and a Power layer with shift 1, so ``k`` is not
    used). With ``y = x * scale^-beta``::

        dx = dy * scale^-beta - 2 alpha beta / count * x * sum_window(dy * y / scale)

    where ``count`` is ``n`` or ``n^2`` (the windows are symmetric, so the transpose of
    the window sum is the window sum).
    """
    x = x.astype(np.float32, copy=False)
    dy = dy.astype(np.float32, copy=False)
    if region == "across":
        window_sum, count, bias = channel_window_sum, size, k
    else:
        window_sum, count, bias = spatial_window_sum, size * size, 1.0
    scale = window_sum(x * x, size)
    scale *= np.float32(alpha / count)
    scale += np.float32(bias)
    factor = scale ** np.float32(-beta)
    ratio = dy * x
    ratio *= factor
    ratio /= scale  # dy * y / scale
    dx = window_sum(ratio, size)
    dx *= x
    dx *= np.float32(-2.0 * alpha * beta / count)
    dx += dy * factor
    return dx
