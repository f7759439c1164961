"""Receptive fields of every blob, composed from a net's Caffe layer plans.

A unit at spatial position ``(y, x)`` of channel ``c`` of a blob sees the input rows
``offset[c, 0] + stride[c, 0] * y`` up to (excluding) ``... + size[c, 0]``, and likewise for
columns. Fields are composed layer by layer (kernel, stride, pad and dilation of
convolution and pooling; channel mixing of convolution, LRN, concat and eltwise), so any
Caffe model works; the original toolbox hard-coded CaffeNet's numbers instead.

Fields are kept per channel because a concat joins branches with different fields
(SqueezeNet's ``expand1x1`` and ``expand3x3`` channels). Where channels with different
fields are mixed (a convolution over a concat), the result is their hull, which is exact
for equal strides and conservative otherwise. Layers that see the whole input
(InnerProduct, Flatten, Reshape, a Softmax over a 2-D blob, a global pooling over the
whole image) get the whole image, as the original did for its FC layers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError

# Layers that act on each value alone: the field passes through unchanged.
ELEMENTWISE = {"ReLU", "PReLU", "ELU", "Sigmoid", "TanH", "Dropout", "AbsVal", "Power", "BatchNorm",
               "Scale", "Bias", "Threshold", "Exp", "Log", "BNLL", "Clip", "Swish"}
# Layers whose every output sees the whole input.
GLOBAL = {"InnerProduct", "Flatten", "Reshape", "ArgMax"}


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


def _whole(channels, input_hw):
    ones = np.ones((channels, 2))
    return BlobField(ones * np.asarray(input_hw, np.float64), ones * 0.0, ones * 0.0, tuple(input_hw), True)


def _hull(fields, extent):
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


def _spatial(bottom: BlobField, kernel, stride, pad, dilation=(1, 1)):
    """Window of ``kernel`` bottom units, ``stride`` apart, starting ``pad`` before 0."""
    k = (np.asarray(kernel, np.float64) - 1) * np.asarray(dilation, np.float64)
    return BlobField(bottom.size + bottom.stride * k,
                     bottom.stride * np.asarray(stride, np.float64),
                     bottom.offset - bottom.stride * np.asarray(pad, np.float64),
                     bottom.input_hw)


def _mix_groups(bottom: BlobField, groups, out_channels, extent):
    """Each output channel sees every input channel of its group (convolution)."""
    cin = bottom.channels
    size = np.empty((out_channels, 2))
    stride = np.empty((out_channels, 2))
    offset = np.empty((out_channels, 2))
    per_in, per_out = cin // groups, out_channels // groups
    for g in range(groups):
        sl = slice(g * per_in, (g + 1) * per_in)
        z, s, o = _hull((bottom.size[sl], bottom.stride[sl], bottom.offset[sl]), extent)
        size[g * per_out:(g + 1) * per_out] = z
        stride[g * per_out:(g + 1) * per_out] = s
        offset[g * per_out:(g + 1) * per_out] = o
    return BlobField(size, stride, offset, bottom.input_hw)


def _mix_window(bottom: BlobField, half, extent):
    """Channel c sees channels c-half .. c+half (cross-channel LRN)."""
    c = bottom.channels
    out = [_hull((bottom.size[max(0, i - half):i + half + 1], bottom.stride[max(0, i - half):i + half + 1],
                  bottom.offset[max(0, i - half):i + half + 1]), extent) for i in range(c)]
    size, stride, offset = (np.array([o[j] for o in out]) for j in range(3))
    return BlobField(size, stride, offset, bottom.input_hw)


def _hull_bottoms(bottoms, extent, hw):
    """Channel c sees channel c of every bottom (eltwise)."""
    stacked = [np.stack([getattr(f, k) for f in bottoms]) for k in ("size", "stride", "offset")]
    out = [np.empty_like(stacked[0][0]) for _ in range(3)]
    for ch in range(out[0].shape[0]):
        for arr, value in zip(out, _hull(tuple(x[:, ch] for x in stacked), extent)):
            arr[ch] = value
    return BlobField(*out, hw)


def _covers_image(field: BlobField) -> bool:
    """Every channel's unit (0, 0) sees the whole input."""
    stop = field.offset + field.size
    return bool((field.offset <= 1e-9).all() and (stop >= np.asarray(field.input_hw, np.float64) - 1e-9).all())


def _spatial_extent(shape):
    return tuple(shape[2:4]) if len(shape) >= 4 else (1, 1)


def receptive_fields(layers, input_name="data", input_shape=None) -> dict:
    """Receptive field of every blob of a planned net.

    Parameters
    ----------
    layers : list of LayerPlan
        ``net.layers`` (or ``caffevis.caffe.layers.plan(...)``).
    input_name : str
        The data blob.
    input_shape : tuple, optional
        (N, C, H, W) of the input; default: the first layer's bottom shape.

    Returns
    -------
    dict
        Blob name -> :class:`BlobField` (the input blob included). For blobs written in
        place (a ReLU on ``conv1``) the field is that of the final value.
    """
    if not layers:
        raise InputError("receptive fields need the Caffe layer graph (this model has none)")
    if input_shape is None:
        first = next(lp for lp in layers if input_name in lp.bottoms)
        input_shape = first.bottom_shapes[first.bottoms.index(input_name)]
    if len(input_shape) != 4:
        raise InputError(f"receptive fields need a 4-D (N, C, H, W) input; got {tuple(input_shape)}")
    hw = tuple(int(v) for v in input_shape[2:])
    c = int(input_shape[1])
    fields = {input_name: BlobField(np.ones((c, 2)), np.ones((c, 2)), np.zeros((c, 2)), hw)}
    for lp in layers:
        bottoms = [fields[b] for b in lp.bottoms if b in fields]
        if len(bottoms) != len(lp.bottoms):
            continue  # fed by a blob we do not track (a second input): leave it out
        for top, shape in zip(lp.tops, lp.top_shapes):
            fields[top] = _layer_field(lp, top, bottoms, shape, hw)
    return fields


def _layer_field(lp, top, bottoms, top_shape, hw) -> BlobField:
    t, a = lp.type, lp.attrs
    channels = int(top_shape[1]) if len(top_shape) > 1 else 1
    b = bottoms[0] if bottoms else None
    if b is None or b.whole or t in GLOBAL or len(top_shape) != 4:
        return _whole(channels, hw)
    extent = _spatial_extent(lp.bottom_shapes[0])
    if t == "Convolution":
        f = _spatial(b, a["kernel"], a["stride"], a["pad"], a["dilation"])
        return _mix_groups(f, a["group"], channels, extent)
    if t == "Deconvolution":
        # Output unit i gets bottom units j with s*j - p <= i <= s*j - p + k_eff - 1:
        # conservatively stride 1/s, reaching (k_eff - 1 - p)/s before and p/s after.
        k = (np.asarray(a["kernel"], np.float64) - 1) * np.asarray(a["dilation"], np.float64)
        s = np.asarray(a["stride"], np.float64)
        p = np.asarray(a["pad"], np.float64)
        f = BlobField(b.size + b.stride * k / s, b.stride / s, b.offset + b.stride * (p - k) / s, hw)
        return _mix_groups(f, a["group"], channels, extent)
    if t == "Pooling":
        if a["global_pooling"]:
            f = _spatial(b, extent, (1, 1), (0, 0))
            if _covers_image(f):
                return _whole(channels, hw)  # its one unit sees every pixel: crop the image, not a padded frame
            return f
        return _spatial(b, a["kernel"], a["stride"], a["pad"])
    if t == "LRN":
        half = (a["local_size"] - 1) // 2
        if a["region"] == "within":
            return _spatial(b, (a["local_size"],) * 2, (1, 1), (half, half))
        return _mix_window(b, half, extent)
    if t in ELEMENTWISE or t == "Split":
        return BlobField(b.size.copy(), b.stride.copy(), b.offset.copy(), hw)
    if t == "Softmax":
        if a["axis"] == 1:
            z, s, o = _hull((b.size, b.stride, b.offset), extent)
            n = b.channels
            return BlobField(np.tile(z, (n, 1)), np.tile(s, (n, 1)), np.tile(o, (n, 1)), hw)
        return BlobField(b.size.copy(), b.stride.copy(), b.offset.copy(), hw)
    if t == "Concat":
        if a["axis"] == 1:
            return BlobField(np.concatenate([f.size for f in bottoms]), np.concatenate([f.stride for f in bottoms]),
                             np.concatenate([f.offset for f in bottoms]), hw)
        if a["axis"] == 0:
            return _hull_bottoms(bottoms, extent, hw)
        return _whole(channels, hw)  # spatial concat: positions no longer map to one place
    if t == "Eltwise":
        return _hull_bottoms(bottoms, extent, hw)
    if t == "Slice" and a["axis"] in (1, 2, 3):
        first = sum(a["sizes"][:lp.tops.index(top)])
        if a["axis"] == 1:
            keep = slice(first, first + channels)
            return BlobField(b.size[keep].copy(), b.stride[keep].copy(), b.offset[keep].copy(), hw)
        shift = np.zeros(2)
        shift[a["axis"] - 2] = first  # rows (axis 2) or columns (axis 3) cut off before this top
        return BlobField(b.size.copy(), b.stride.copy(), b.offset + b.stride * shift, hw)
    if t == "Crop" and a["axis"] >= 2:
        # unit (0, 0) of the crop is unit (offset_y, offset_x) of the bottom
        return BlobField(b.size.copy(), b.stride.copy(), b.offset + b.stride * np.asarray(a["offsets"][2:4], float), hw)
    return _whole(channels, hw)  # unknown mixing: the whole image is always correct


def field_sizes(layers, input_name="data", input_shape=None) -> dict:
    """Blob -> (h, w) of its largest channel field, in pixels (CaffeNet conv5: (163, 163))."""
    return {k: v.field_size() for k, v in receptive_fields(layers, input_name, input_shape).items()}


def net_fields(net) -> dict:
    """:func:`receptive_fields` of a :class:`caffevis.net.Net`."""
    if not net.is_caffe:
        raise InputError("receptive fields need a model converted from Caffe (this ONNX file has no layer graph)")
    return receptive_fields(net.layers, net.input_name, net.input_shape)


def crop_region(image, region, fill=0.0):
    """Crop ``region`` = (top, left, h, w) from a (C, H, W) array, zero-padding outside it."""
    top, left, h, w = region
    c, ih, iw = image.shape
    out = np.full((c, h, w), fill, dtype=image.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, ih), min(left + w, iw)
    if y1 > y0 and x1 > x0:
        out[:, y0 - top:y1 - top, x0 - left:x1 - left] = image[:, y0:y1, x0:x1]
    return out
