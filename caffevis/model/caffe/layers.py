"""Plan a Caffe net: every layer resolved, shaped and given its checked parameters.

:func:`plan` walks a :class:`~caffevis.model.caffe.reader.CaffeNet` in order and returns
one :class:`~caffevis.layers.LayerPlan` per layer, with every attribute the ONNX emitters
and the backward engines need, resolved the way Caffe resolves it. The per-type checks
and shapes live in :mod:`caffevis.layers`; this module checks what spans layers (blob
names, bottoms produced earlier, tops) and fits the caffemodel's blobs. Every error is
one line naming the file and the layer.
"""
from __future__ import annotations

import numpy as np

from ...errors import ModelError
from ...layers import LayerPlan, layer_type
from ...layers.base import count

# the most values one blob may hold per image (1 GiB of float32): a geometry asking for more
# is a mistake, refused before ONNX Runtime tries to allocate it
MAX_BLOB_VALUES = 1 << 28


def _fit_params(layer, expected, where):
    """Check the caffemodel blobs against the expected shapes, reshaping legacy 4-D blobs."""
    if not expected:
        return []
    blobs = layer.blobs
    if not blobs:
        raise ModelError(f"{where} has no weights in the caffemodel")
    if len(blobs) != len(expected):  # Caffe: "Incompatible number of blobs"
        raise ModelError(f"{where}: caffemodel has {len(blobs)} blob(s), "
                         f"prototxt needs {len(expected)} with shapes {expected}")
    legacy = getattr(layer, "legacy_blobs", None) or [False] * len(blobs)
    out = []
    for i, shape in enumerate(expected):
        arr = blobs[i]
        if tuple(arr.shape) != tuple(shape):
            # only blobs stored the old way (num/channels/height/width, no `shape`) may be
            # reinterpreted, and only when the count matches (Caffe's ShapeEquals)
            if not (legacy[i] and arr.size == count(shape)):
                raise ModelError(f"{where} blob {i}: caffemodel shape "
                                 f"{tuple(arr.shape)} does not fit the prototxt's {tuple(shape)}")
            arr = arr.reshape(shape)
        # float64 blobs stay float64 (numerical checks); caffemodels give float32
        out.append(np.array(arr, dtype=np.float64 if arr.dtype == np.float64 else np.float32, order="C"))
    return out


def _check_blob_names(layer, shapes, inputs, where):
    """Graph-structure errors Caffe refuses too, before they reach the ONNX builder."""
    missing = [b for b in layer.bottoms if b not in shapes]
    if missing:
        raise ModelError(f"{where}: bottom blob '{missing[0]}' is not produced by any earlier layer")
    if len(set(layer.tops)) != len(layer.tops):
        raise ModelError(f"{where} names a top blob twice ({', '.join(layer.tops)})")
    for top in layer.tops:
        if top in inputs:
            raise ModelError(f"{where} writes the input blob '{top}'; caffevis keeps the input unchanged "
                             "(give the top another name)")
        if top in shapes and top not in layer.bottoms:
            raise ModelError(f"{where}: top blob '{top}' is produced by an earlier layer too (Caffe: "
                             "produced by multiple sources)")


def _weights_file(cnet):
    return cnet.source.get("weights") or "the caffemodel"


def plan(cnet, require_weights=True, batch=None):
    """Resolve every layer of ``cnet``: attributes, shapes, parameters (checked)."""
    shapes = {name: tuple(s) for name, s in cnet.inputs.items()}
    if batch is not None:
        shapes = {k: (batch,) + v[1:] for k, v in shapes.items()}
    prototxt = cnet.source.get("prototxt") or cnet.name
    for name, shape in shapes.items():
        if len(shape) < 1 or min(shape) < 1:
            raise ModelError(f"{prototxt}: input '{name}' has shape {tuple(shape)}; every dim must be at least 1")
        _check_size(shape, f"{prototxt}: input '{name}'")
    plans, names = [], set()
    for idx, layer in enumerate(cnet.layers):
        where = f"{prototxt}: layer '{layer.name}' ({layer.type})"
        try:
            kind = layer_type(layer.type)
        except ModelError as err:
            raise ModelError(f"{where}: {err}") from None
        if layer.name in names:
            raise ModelError(f"{where}: the layer name '{layer.name}' is used twice")
        names.add(layer.name)
        _check_blob_names(layer, shapes, cnet.inputs, where)
        bshapes = [shapes[b] for b in layer.bottoms]
        if not bshapes:
            raise ModelError(f"{where} has no bottom blob")
        try:
            kind.check_bottoms(bshapes)
            attrs, tshapes, pshapes = kind.infer(layer.proto, bshapes)
        except ModelError as err:
            raise ModelError(f"{where}: {err}") from None
        if len(tshapes) != len(layer.tops):
            raise ModelError(f"{where} has {len(layer.tops)} tops, expected {len(tshapes)}")
        for top, s in zip(layer.tops, tshapes):
            if not len(s) or s[0] != bshapes[0][0]:
                raise ModelError(f"{where}: top '{top}' would have shape {tuple(s)}; its first axis must stay the "
                                 f"batch ({bshapes[0][0]}): caffevis runs any batch size")
            _check_size(s, f"{where}: top '{top}'")
        if require_weights or layer.blobs:
            params = _fit_params(layer, pshapes, f"{_weights_file(cnet)}: layer '{layer.name}' ({layer.type})")
        else:
            params = [np.zeros(s, np.float32) for s in pshapes]
        if kind.bind is not None:
            attrs = kind.bind(attrs, params)
        plans.append(LayerPlan(layer.name, layer.type, list(layer.bottoms), list(layer.tops), attrs,
                               bshapes, [tuple(s) for s in tshapes], params, idx))
        for top, s in zip(layer.tops, tshapes):
            shapes[top] = tuple(s)
    return plans


def _check_size(shape, what):
    per_image = count(shape, 1)
    if per_image > MAX_BLOB_VALUES:
        raise ModelError(f"{what} of shape {tuple(shape)} would hold {per_image} values per image "
                         f"(more than {MAX_BLOB_VALUES})")

