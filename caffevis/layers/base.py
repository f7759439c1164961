"""What every layer family module defines, and the small helpers they share.

A :class:`LayerType` bundles everything caffevis knows about one Caffe layer type:
parameter checks and shape inference, the ONNX forward emission, the vector-Jacobian
product of the exported gradient graphs, the rule of the NumPy backward engine and the
receptive-field arithmetic. The family modules (``conv.py``, ``pool.py``, …) each list
their types in ``TYPES``; :mod:`caffevis.layers` gathers them into one table.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import onnx

from ..errors import ModelError


@dataclasses.dataclass
class LayerPlan:
    """A layer with normalized attributes and static shapes (batch included)."""

    name: str
    type: str
    bottoms: list
    tops: list
    attrs: dict
    bottom_shapes: list
    top_shapes: list
    params: list  # np.ndarray, in Caffe's blob order (after shape checks)
    index: int = 0

    @property
    def in_place(self) -> bool:
        """The layer overwrites its bottom blob (Caffe's in-place ReLU, Dropout, BatchNorm, …)."""
        return bool(self.tops) and self.tops == self.bottoms


# ``values_read`` hooks: which forward values (bottom, top) a layer's backward rules read.
def no_values(p, mode, lrn):
    return False, False


def reads_bottom(p, mode, lrn):
    return True, False


def reads_top(p, mode, lrn):
    return False, True


@dataclasses.dataclass(frozen=True)
class LayerType:
    """One Caffe layer type and its hooks.

    Attributes
    ----------
    name : str
        The Caffe type string (``'Convolution'``).
    infer : callable ``(proto, bottom_shapes) -> (attrs, top_shapes, param_shapes)``
        Checks the parameters and bottoms, raising :class:`~caffevis.errors.ModelError`
        with a one-line reason, and resolves them the way Caffe does.
    forward : callable ``(g, plan, ins, outs, params, aux)``
        Emits the layer into a :class:`~caffevis.model.onnx_graph.GraphBuilder`; ``aux``
        (a dict, or None) receives intermediates the backward rule reuses.
    vjp : callable ``(ctx, plan, ins, outs, dtops, aux, params) -> (dins, dparams)``
        The gradient graph's rule (``ctx`` has ``g``, ``mode``, ``lrn``, ``want_params``).
    numpy_backward : callable ``(plan, ins, outs, dtops, mode, lrn) -> dins``
        The NumPy engine's rule on forward values.
    values_read : callable ``(plan, mode, lrn) -> (reads_bottoms, reads_tops)``
        Which forward values (not only shapes) the NumPy rule reads.
    field : callable ``(plan, top, bottom_fields, top_shape, hw) -> BlobField``, optional
        Receptive-field arithmetic; None: every unit sees the whole input.
    bottoms : (int, int or None)
        Allowed number of bottoms (min, max; None = no limit).
    ranks : tuple of int, optional
        Allowed numbers of axes of the first bottom (None: any).
    channelwise : bool
        Acts on each channel alone (a one-channel seed stays in its channel).
    bind : callable ``(attrs, params) -> attrs``, optional
        Attributes that depend on the caffemodel's blobs (BatchNorm's moving-average factor).
    """

    name: str
    infer: Callable
    forward: Callable
    vjp: Callable
    numpy_backward: Callable
    values_read: Callable = no_values
    field: Optional[Callable] = None
    bottoms: tuple = (1, 1)
    ranks: Optional[tuple] = None
    channelwise: bool = False
    bind: Optional[Callable] = None

    def check_bottoms(self, shapes):
        """One-line errors for a wrong number of bottoms or a first bottom of the wrong rank."""
        low, high = self.bottoms
        if len(shapes) < low or (high is not None and len(shapes) > high):
            want = f"{low}" if low == high else f"{low} or more" if high is None else f"{low} to {high}"
            raise ModelError(f"has {len(shapes)} bottom(s); expected {want}")
        if self.ranks and shapes and len(shapes[0]) not in self.ranks:
            raise ModelError(f"bottom shape {tuple(shapes[0])} has {len(shapes[0])} axes; "
                             f"expected {' or '.join(map(str, self.ranks))}")


# -- parameter resolution ----------------------------------------------------------------
def opt(msg, field):
    """``msg.field`` when set, else None."""
    return getattr(msg, field) if msg.HasField(field) else None


def pair(values, single_h, single_w, default, field, minimum=1):
    """Caffe's ``kernel_size`` / ``kernel_h``+``kernel_w`` resolution for 2-D layers,
    each value checked to be at least ``minimum``."""
    if single_h is not None or single_w is not None:
        if single_h is None or single_w is None:
            raise ModelError(f"{field}_h and {field}_w must be given together")
        out = int(single_h), int(single_w)
    else:
        values = list(values)
        if not values:
            if default is None:
                raise ModelError(f"{field} is required")
            out = default, default
        elif len(values) == 1:
            out = int(values[0]), int(values[0])
        elif len(values) == 2:
            out = int(values[0]), int(values[1])
        else:
            raise ModelError(f"{field} has {len(values)} values; only 2-D is supported")
    if min(out) < minimum:
        raise ModelError(f"{field} {out[0] if out[0] == out[1] else out} must be at least {minimum}")
    return out


def count(shape, start=0, end=None):
    """Number of elements of ``shape[start:end]`` (a Python int: no overflow)."""
    n = 1
    for d in tuple(shape)[start:end]:
        n *= int(d)
    return n


def canon_axis(axis, ndim, what):
    """``axis`` in ``[-ndim, ndim)`` as a non-negative index."""
    if not -ndim <= axis < ndim:
        raise ModelError(f"{what} axis {axis} is out of range for a {ndim}-D blob")
    return axis % ndim


def not_batch_axis(axis, what):
    """Layers that fold or join along axis 0 would change the batch size: caffevis runs any batch."""
    if axis == 0:
        raise ModelError(f"{what} 0 is the batch axis, which caffevis does not fold or join (it runs any batch size)")
    return axis


def at_least(value, minimum, field):
    if value < minimum:
        raise ModelError(f"{field} {value} must be at least {minimum}")
    return value


def same_shape(_proto, shapes):
    """Shape inference of layers whose top has the bottom's shape and no parameters."""
    return {}, [shapes[0]], []


def broadcast_shape(param_shape, axis, ndim):
    """Shape that broadcasts a parameter of ``param_shape`` over a blob from ``axis`` on."""
    return tuple(param_shape) + (1,) * (ndim - axis - len(param_shape))


# -- graph helpers shared by the gradient rules ------------------------------------------
def mask(g, cond):
    """A boolean tensor as 0/1 in the graph's float type."""
    return g.op("Cast", [cond], "mask", to=onnx.helper.np_dtype_to_tensor_dtype(g.dtype))


def zeros_like(g, x):
    return g.op("ConstantOfShape", [g.op("Shape", [x], "zshape")], "zeros",
                value=onnx.numpy_helper.from_array(np.zeros(1, g.dtype)))


def identity_vjp(ctx, p, ins, outs, dtops, aux, params):
    return [dtops[0]], None


def identity_numpy(p, ins, outs, dtops, mode, lrn):
    return [dtops[0]]


def same_field(p, top, bottoms, top_shape, hw):
    """Each value sees what its bottom value sees."""
    return bottoms[0].copy()

