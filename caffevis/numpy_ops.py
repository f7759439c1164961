"""Vectorized NumPy kernels for the spatial layers of the NumPy backward engine.

Every kernel loops at most over kernel offsets (``kh * kw``) or LRN window offsets,
never over pixels: each offset is one strided slice of the whole batch, and the
channel mixing of convolutions is one BLAS matrix product per group. Arrays are
NCHW. Spatial "pads" are ``(begin, end)`` pairs per axis so that Caffe's ceil-mode
pooling windows fit a padded buffer exactly (see
:func:`caffevis.caffe.to_onnx.pool_geometry`).
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

    Scatters each output position's ``W^T dy`` column back over its receptive field,
    adding where fields overlap (col2im).

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
    c = cg * group
    dyt = dy.astype(np.float32, copy=False).reshape(n, group, m // group, oh * ow)
    dyt = np.ascontiguousarray(dyt.transpose(1, 2, 0, 3)).reshape(group, m // group, n * oh * ow)
    wmat = weight.reshape(group, m // group, cg * kh * kw).astype(np.float32, copy=False)
    col = np.matmul(wmat.transpose(0, 2, 1), dyt)  # (group, cg*kh*kw, N*OH*OW)
    col = col.reshape(c, kh, kw, n, oh, ow)
    hp = max(h + 2 * ph, dh * (kh - 1) + sh * (oh - 1) + 1)
    wp = max(w + 2 * pw, dw * (kw - 1) + sw * (ow - 1) + 1)
    buf = np.zeros((c, n, hp, wp), np.float32)
    for i in range(kh):
        for j in range(kw):
            buf[:, :, _window_slice(i * dh, sh, oh), _window_slice(j * dw, sw, ow)] += col[:, i, j]
    return np.ascontiguousarray(buf[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))


# -- pooling ----------------------------------------------------------------------------
def max_pool_switches(x, kernel, stride, pads_h, pads_w, out_hw):
    """Caffe's max-pool switches: per output, the window offset ``i * kw + j`` of the
    first maximum in row-major window order (Caffe keeps a value only when strictly
    greater). Padding never wins.

    Returns
    -------
    ndarray (N, C, OH, OW) of int16
    """
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    xp = _padded(x, pads_h, pads_w, -np.inf)
    best = np.full(x.shape[:2] + (oh, ow), -np.inf, dtype=x.dtype)
    switch = np.zeros(best.shape, np.int16)
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, _window_slice(i, sh, oh), _window_slice(j, sw, ow)]
            better = window > best
            np.copyto(best, window, where=better)
            switch[better] = i * kw + j
    return switch


def max_pool_backward(dy, switch, kernel, stride, pads_h, pads_w, in_hw):
    """Route each output diff to its switch position, adding where windows overlap."""
    (kh, kw), (sh, sw), (h, w) = kernel, stride, in_hw
    n, c, oh, ow = dy.shape
    buf = np.zeros((n, c, h + sum(pads_h), w + sum(pads_w)), np.float32)
    for i in range(kh):
        for j in range(kw):
            routed = np.where(switch == i * kw + j, dy, 0.0)
            buf[:, :, _window_slice(i, sh, oh), _window_slice(j, sw, ow)] += routed
    return np.ascontiguousarray(buf[:, :, pads_h[0]:pads_h[0] + h, pads_w[0]:pads_w[0] + w])


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
    """Exact derivative of Caffe's LRN, in float64.

    ACROSS_CHANNELS: ``scale = k + alpha/n * sum_window(x^2)`` over channels;
    WITHIN_CHANNEL: ``scale = 1 + alpha/n^2 * sum_window(x^2)`` over an n x n window
    (Caffe builds it from AVE pooling and a Power layer with shift 1, so ``k`` is not
    used). With ``y = x * scale^-beta``::

        dx = dy * scale^-beta - 2 alpha beta / count * x * sum_window(dy * y / scale)

    where ``count`` is ``n`` or ``n^2`` (the windows are symmetric, so the transpose of
    the window sum is the window sum).
    """
    x64 = x.astype(np.float64)
    dy64 = dy.astype(np.float64)
    if region == "across":
        window_sum, count, bias = channel_window_sum, size, k
    else:
        window_sum, count, bias = spatial_window_sum, size * size, 1.0
    scale = bias + (alpha / count) * window_sum(x64 * x64, size)
    factor = scale ** -beta
    y_over_scale = x64 * factor / scale
    dx = dy64 * factor - (2.0 * alpha * beta / count) * x64 * window_sum(dy64 * y_over_scale, size)
    return dx.astype(np.float32)
