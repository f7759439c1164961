"""Every Caffe layer type caffevis runs, one module per family, gathered in one table.

Each family module (``conv``, ``pool``, ``activation``, ``norm``, ``inner_product``,
``softmax``, ``eltwise``, ``shape``) defines a :class:`~caffevis.layers.base.LayerType`
per type: parameter checks and shape inference, ONNX forward, gradient-graph rule, NumPy
backward rule and receptive field. The Caffe importer, the converter, both backward
engines and the receptive fields look types up here (:func:`layer_type`), so adding a
type means adding it to one family module (and its tests).
"""
from __future__ import annotations

from ..errors import ModelError
from . import activation, conv, eltwise, inner_product, norm, onnx_ops, pool, shape, softmax
from .base import LayerPlan, LayerType

LAYER_TYPES = {t.name: t for module in (conv, pool, activation, norm, inner_product, softmax, eltwise, shape, onnx_ops)
               for t in module.TYPES}
SUPPORTED = tuple(LAYER_TYPES)


def layer_type(name: str) -> LayerType:
    """The :class:`LayerType` of a Caffe type string; a one-line error for others."""
    try:
        return LAYER_TYPES[name]
    except KeyError:
        raise ModelError(f"unsupported layer type '{name}' (supported: {', '.join(SUPPORTED)})") from None


__all__ = ["LAYER_TYPES", "LayerPlan", "LayerType", "SUPPORTED", "layer_type"]
