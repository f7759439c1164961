"""Receptive-field arithmetic: the :class:`BlobField` of a blob and the steps layers compose.

A unit at spatial position ``(y, x)`` of channel ``c`` of a blob sees the input rows
``offset[c, 0] + stride[c, 0] * y`` up to (excluding) ``... + size[c, 0]``, and likewise
for columns. Each layer family's ``field`` hook builds its top's field from its bottoms'
with the steps below; :mod:`caffevis.receptive` walks a net with them.

Fields are kept per channel because a concat joins branches with different fields
(SqueezeNet's ``expand1x1`` and ``expand3x3`` channels). Where channels with different
fields are mixed (a convolution over a concat), the result is their hull, which is exact
for equal strides and conservative otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass
class BlobField:
    """Receptive fields of one blob's channels in input pixels.

    Attributes
    ----------
    size, stride, offset : ndarray, (C, 2)
        Per channel and axis (y, x): field extent, step between neighbouring units, and the
        first row/column seen by unit (0, 0) (negative where it reaches into padding).
    input_hw : tuple of int
        Height and width of the input image.
    whole : bool
        Every unit sees the whole input (fully connected layers, global pooling).
    """

    size: np.ndarray
    stride: np.ndarray
    offset: np.ndarray
    input_hw: tuple
    whole: bool = False

    @property
    def channels(self) -> int:
        return int(self.size.shape[0])

    def copy(self) -> "BlobField":
        return BlobField(self.size.copy(), self.stride.copy(), self.offset.copy(), self.input_hw, self.whole)

    def field_size(self, channel=None):
        """(h, w) of the field of ``channel`` (default: the largest over channels), in pixels."""
        if self.whole:
            return tuple(int(v) for v in self.input_hw)
        size = self.size if channel is None else self.size[channel:channel + 1]
        return tuple(int(math.ceil(v - 1e-9)) for v in size.max(axis=0))

    def region(self, channel, y=0, x=0):
        """Input region ``(top, left, height, width)`` seen by unit ``(channel, y, x)``.

        The region may extend past the image (negative ``top``/``left`` or beyond the
        bottom/right edge): that part is padding, which crops fill with zeros. Blobs whose
        units see the whole image (fully connected layers, global pooling) report exactly
        the image.
        """
        if not 0 <= channel < self.channels:
            raise InputError(f"channel {channel} out of range (blob has {self.channels})")
        if self.whole:
            return 0, 0, int(self.input_hw[0]), int(self.input_hw[1])
        start = self.offset[channel] + self.stride[channel] * np.array([y, x], np.float64)
        stop = start + self.size[channel]
        top, left = (int(math.floor(v + 1e-9)) for v in start)
        bottom, right = (int(math.ceil(v - 1e-9)) for v in stop)
        return top, left, bottom - top, right - left


def whole(channels, input_hw):
    """Every unit of every channel sees the whole input."""
    ones = np.ones((channels, 2))
    return BlobField(ones * np.asarray(input_hw, np.float64), ones * 0.0, ones * 0.0, tuple(input_hw), True)


def hull(fields, extent):
    """One field covering every given (size, stride, offset) row for all ``extent`` positions.

    Equal strides give the exact hull; with unequal strides the smallest stride is kept
    and the size grows so the hull still covers the last position.
    """
    size, stride, offset = (np.asarray(a, np.float64) for a in fields)
    s = stride.min(axis=0)
    o = offset.min(axis=0)
    last = np.maximum(np.asarray(extent, np.float64) - 1, 0)
    end = (offset + size + (stride - s) * last).max(axis=0)
    return end - o, s, o


def spatial(bottom: BlobField, kernel, stride, pad, dilation=(1, 1)):
    """Window of ``kernel`` bottom units, ``stride`` apart, starting ``pad`` before 0."""
    k = (np.asarray(kernel, np.float64) - 1) * np.asarray(dilation, np.float64)
    return BlobField(bottom.size + bottom.stride * k,
                     bottom.stride * np.asarray(stride, np.float64),
                     bottom.offset - bottom.stride * np.asarray(pad, np.float64),
                     bottom.input_hw)


def mix_groups(bottom: BlobField, groups, out_channels, extent):
    """Each output channel sees every input channel of its group (convolution)."""
    cin = bottom.channels
    size = np.empty((out_channels, 2))
    stride = np.empty((out_channels, 2))
    offset = np.empty((out_channels, 2))
    per_in, per_out = cin // groups, out_channels // groups
    for g in range(groups):
        sl = slice(g * per_in, (g + 1) * per_in)
        z, s, o = hull((bottom.size[sl], bottom.stride[sl], bottom.offset[sl]), extent)
        size[g * per_out:(g + 1) * per_out] = z
        stride[g * per_out:(g + 1) * per_out] = s
        offset[g * per_out:(g + 1) * per_out] = o
    return BlobField(size, stride, offset, bottom.input_hw)


def mix_window(bottom: BlobField, half, extent):
    """Channel c sees channels c-half .. c+half (cross-channel LRN)."""
    c = bottom.channels
    out = [hull((bottom.size[max(0, i - half):i + half + 1], bottom.stride[max(0, i - half):i + half + 1],
                 bottom.offset[max(0, i - half):i + half + 1]), extent) for i in range(c)]
    size, stride, offset = (np.array([o[j] for o in out]) for j in range(3))
    return BlobField(size, stride, offset, bottom.input_hw)


def hull_bottoms(bottoms, extent, hw):
    """Channel c sees channel c of every bottom (eltwise)."""
    stacked = [np.stack([getattr(f, k) for f in bottoms]) for k in ("size", "stride", "offset")]
    out = [np.empty_like(stacked[0][0]) for _ in range(3)]
    for ch in range(out[0].shape[0]):
        for arr, value in zip(out, hull(tuple(x[:, ch] for x in stacked), extent)):
            arr[ch] = value
    return BlobField(*out, hw)


def covers_image(field: BlobField) -> bool:
    """Every channel's unit (0, 0) sees the whole input."""
    stop = field.offset + field.size
    return bool((field.offset <= 1e-9).all() and (stop >= np.asarray(field.input_hw, np.float64) - 1e-9).all())


def spatial_extent(shape):
    return tuple(shape[2:4]) if len(shape) >= 4 else (1, 1)
