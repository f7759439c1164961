"""Write Caffe files: binary ``.caffemodel`` and text prototxt, in Caffe's own format.

A caffemodel is a ``NetParameter`` with V2 ``layer`` entries whose ``blobs`` are
``BlobProto`` messages carrying ``shape`` and float ``data`` (what Caffe's ``Net::ToProto``
writes). Layers are described as plain dicts in the protobuf JSON form (field names as in
``caffe.proto``, enums by name) and turned into :mod:`caffevis.model.caffe.schema` messages,
so only fields the schema declares can be written.
"""
from __future__ import annotations


import numpy as np
from google.protobuf import json_format, text_format

from ...errors import ModelError
from ...io import atomic_path
from . import schema


def blob_proto(array) -> "schema.BlobProto":
    """A float32 ``BlobProto`` with ``shape`` (the V2 form Caffe writes)."""
    arr = np.array(array, dtype=np.float32, order="C")  # keeps 0-axis blobs 0-axis (Caffe's scalars)
    blob = schema.BlobProto()
    blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.data.extend(arr.ravel().tolist())
    return blob


def layer_parameter(spec: dict, blobs=()) -> "schema.LayerParameter":
    """A ``LayerParameter`` from a dict such as
    ``{"name": "pool1", "type": "Pooling", "bottom": ["conv1"], "top": ["pool1"],
    "pooling_param": {"pool": "MAX", "kernel_size": 2, "stride": 2}}`` plus learnable blobs."""
    lp = schema.LayerParameter()
    try:
        json_format.ParseDict(spec, lp)
    except json_format.ParseError as err:
        raise ModelError(f"layer '{spec.get('name', '?')}': {err}") from None
    lp.blobs.extend(blob_proto(b) for b in blobs)
    return lp


def net_parameter(name: str, layers, params=None, phase=None) -> "schema.NetParameter":
    """A ``NetParameter`` from layer dicts; ``params`` maps layer name -> list of arrays.

    ``phase`` ('TRAIN' or 'TEST') is stamped on every layer, as Caffe does when it saves
    a net (``Net::ToProto`` copies each layer's resolved ``phase``).
    """
    params = params or {}
    unknown = set(params) - {spec["name"] for spec in layers}
    if unknown:
        raise ModelError(f"parameters given for unknown layer(s): {', '.join(sorted(unknown))}")
    net = schema.NetParameter(name=name)
    for spec in layers:
        lp = layer_parameter(spec, params.get(spec["name"], ()))
        if phase is not None:
            lp.phase = lp.DESCRIPTOR.fields_by_name["phase"].enum_type.values_by_name[phase].number
        net.layer.append(lp)
    return net


def _atomic_write(path: str, data, mode: str):
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        f.write(data)


def write_caffemodel(path: str, net) -> None:
    """Serialize a ``NetParameter`` (with blobs) as a binary caffemodel."""
    _atomic_write(path, net.SerializeToString(), "wb")


def prototxt_text(net) -> str:
    """Text-format prototxt of a ``NetParameter`` (blobs dropped: a prototxt has none)."""
    copy = schema.NetParameter()
    copy.CopyFrom(net)
    for lp in copy.layer:
        del lp.blobs[:]
    return text_format.MessageToString(copy)


def write_prototxt(path: str, net) -> None:
    """Write :func:`prototxt_text` of ``net`` to ``path``."""
    _atomic_write(path, prototxt_text(net), "w")
