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

import numpy as np

from .errors import InputError
from .layers import LAYER_TYPES
from .layers.field import BlobField, whole

__all__ = ["BlobField", "crop_region", "field_sizes", "net_fields", "receptive_fields"]


def receptive_fields(layers, input_name="data", input_shape=None) -> dict:
    """Receptive field of every blob of a planned net.

    Parameters
    ----------
    layers : list of LayerPlan
        ``net.layers`` (or ``caffevis.model.caffe.layers.plan(...)``).
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
    """The type's ``field`` hook (:mod:`caffevis.layers`); the whole image where a layer
    mixes every position (no hook: InnerProduct, Flatten, Reshape) or the blob is not 4-D."""
    channels = int(top_shape[1]) if len(top_shape) > 1 else 1
    kind = LAYER_TYPES.get(lp.type)
    b = bottoms[0] if bottoms else None
    if b is None or b.whole or kind is None or kind.field is None or len(top_shape) != 4:
        return whole(channels, hw)
    return kind.field(lp, top, bottoms, top_shape, hw)


def field_sizes(layers, input_name="data", input_shape=None) -> dict:
    """Blob -> (h, w) of its largest channel field, in pixels (CaffeNet conv5: (163, 163))."""
    return {k: v.field_size() for k, v in receptive_fields(layers, input_name, input_shape).items()}


def net_fields(net) -> dict:
    """:func:`receptive_fields` of a :class:`caffevis.model.Net`."""
    net.require_layers("receptive fields")
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
