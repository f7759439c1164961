"""Read Caffe deploy prototxts and caffemodels into a list of :class:`Layer`.

Handles the V2 ``layer {}`` and the old V1 ``layers {}`` syntax, the ``input:`` with
``input_shape`` / ``input_dim`` forms and ``Input`` layers, phase include/exclude
rules (deploy = TEST), and blobs stored with ``shape`` or legacy num/channels/h/w.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re

import numpy as np
from google.protobuf import message as pb_message
from google.protobuf import text_format

from ...errors import ModelError
from ...io import sha1_of
from ...limits import MAX_NESTING, brace_depth, element_count
from . import schema

# V1 enum name -> V2 type string.
_V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU",
    "SIGMOID": "Sigmoid", "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}
_V1_PARAMS = ("concat_param", "convolution_param", "dropout_param", "eltwise_param", "exp_param",
              "inner_product_param", "lrn_param", "pooling_param", "power_param",
              "relu_param", "sigmoid_param", "slice_param", "softmax_param", "tanh_param")


@dataclasses.dataclass
class Layer:
    """One Caffe layer: its name, V2 type, bottoms/tops, parameter message and blobs."""

    name: str
    type: str
    bottoms: list
    tops: list
    proto: object  # a schema.LayerParameter (V2 form)
    blobs: list = dataclasses.field(default_factory=list)  # np.ndarray per learnable blob
    legacy_blobs: list = dataclasses.field(default_factory=list)  # stored as num/channels/h/w


@dataclasses.dataclass
class CaffeNet:
    """A deploy net: named inputs with shapes and layers in Caffe's execution order."""

    name: str
    inputs: dict  # blob name -> shape tuple
    layers: list
    source: dict = dataclasses.field(default_factory=dict)  # provenance for the sidecar


def _check_file(path, what):
    if not os.path.isfile(path):
        raise ModelError(f"{path}: {what} not found")


def read_prototxt(path: str, text: str | None = None):
    """Parse a prototxt file (or ``text``, named ``path`` in messages) into a
    ``NetParameter``; syntax errors name the line."""
    if text is None:
        _check_file(path, "prototxt")
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            text = f.read()
    depth = brace_depth(text)
    if depth > MAX_NESTING:
        raise ModelError(f"{path}: blocks nested {depth} deep; at most {MAX_NESTING} levels are accepted")
    net = schema.NetParameter()
    try:
        text_format.Parse(text, net, allow_unknown_field=True)
    except RecursionError:  # nesting the depth count above did not see (e.g. inside odd quoting)
        raise ModelError(f"{path}: blocks nested too deep to parse") from None
    except text_format.ParseError as err:
        # printable and short: a binary file given as a prototxt must not flood the terminal
        msg = "".join(c if c.isprintable() else "?" for c in str(err).replace("\n", " "))[:200]
        m = re.match(r"^(\d+):(\d+)\s*:\s*(.*)$", msg)
        if m:
            raise ModelError(f"{path}:{m.group(1)}:{m.group(2)}: prototxt syntax error: {m.group(3)}") from None
        raise ModelError(f"{path}: prototxt syntax error: {msg}") from None
    _warn_unknown_fields(path, text)
    return net


_FIELD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::|\{)", re.M)


def _warn_unknown_fields(path, text):
    """One line per field name that is not in Caffe's schema (a typo Caffe would refuse)."""
    import sys

    known = schema.known_field_names()
    body = re.sub(r'"(?:[^"\\]|\\.)*"|#[^\n]*', "", text)  # strings and comments hold no field names
    for m in _FIELD.finditer(body):
        if m.group(1) not in known:
            line = body.count("\n", 0, m.start(1)) + 1
            print(f"caffevis: warning: {path}:{line}: '{m.group(1)}' is not a Caffe field; ignored",
                  file=sys.stderr)


def read_caffemodel(path: str):
    """Parse a binary caffemodel into a ``NetParameter``."""
    _check_file(path, "caffemodel")
    with open(path, "rb") as f:
        data = f.read()
    net = schema.NetParameter()
    try:
        net.ParseFromString(data)
    except (pb_message.DecodeError, RuntimeError, ValueError) as err:  # RecursionError is a RuntimeError
        raise ModelError(f"{path}: not a valid caffemodel (truncated or corrupt: {err})") from None
    if not len(net.layer) and not len(net.layers):
        raise ModelError(f"{path}: not a valid caffemodel (no layers found)")
    return net


def blob_to_array(blob) -> np.ndarray:
    """Convert a ``BlobProto`` to a float32 array using ``shape`` or the legacy 4-D fields.

    The shape is checked before use: no negative dimension, and the element count (computed
    with Python ints, so it cannot wrap around) must equal the number of stored values.
    """
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    try:
        count = element_count(shape, "blob")
    except ValueError as err:
        raise ModelError(str(err)) from None
    values = blob.double_data if len(blob.double_data) else blob.data
    if len(values) != count:
        raise ModelError(f"blob holds {len(values)} values but its shape {list(shape)} needs {count}")
    return np.asarray(values, dtype=np.float32).reshape(shape)


def _meets_rule(rule, phase=1, level=0, stages=()):
    """Caffe's ``StateMeetsRule`` for the net state (deploy: TEST, level 0, no stages)."""
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    return not any(s in stages for s in rule.not_stage)


def _included(lp):
    """Caffe's ``FilterNet``: any include rule met, or (without includes) no exclude met."""
    if len(lp.include):
        return any(_meets_rule(r) for r in lp.include)
    return not any(_meets_rule(r) for r in lp.exclude)


def _upgrade_v1(v1):
    lp = schema.LayerParameter()
    lp.name = v1.name
    type_name = v1.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[v1.type].name
    lp.type = _V1_TYPES.get(type_name, type_name)
    lp.bottom.extend(v1.bottom)
    lp.top.extend(v1.top)
    lp.blobs.extend(v1.blobs)
    lp.include.extend(v1.include)
    lp.exclude.extend(v1.exclude)
    for field in _V1_PARAMS:
        if v1.HasField(field):
            getattr(lp, field).CopyFrom(getattr(v1, field))
    return lp


def layer_params(net):
    """The net's layers as V2 ``LayerParameter`` messages (V1 ones upgraded)."""
    if len(net.layer) and len(net.layers):
        raise ModelError("net mixes V1 'layers' and V2 'layer' blocks")
    return list(net.layer) if len(net.layer) else [_upgrade_v1(l) for l in net.layers]


def _input_shape(dims, path, name):
    """An input's shape, each dimension a positive integer of sane size."""
    shape = tuple(int(d) for d in dims)
    if any(d < 1 for d in shape):
        raise ModelError(f"{path}: input '{name}' has shape {list(shape)}; expected positive dimensions")
    try:
        element_count(shape, f"input '{name}'")
    except ValueError as err:
        raise ModelError(f"{path}: {err}") from None
    return shape


def _net_inputs(net, path):
    inputs = {}
    names = list(net.input)
    if names:
        if len(net.input_shape):
            shapes = [tuple(int(d) for d in s.dim) for s in net.input_shape]
        else:
            dims = list(net.input_dim)
            if len(dims) != 4 * len(names):
                raise ModelError(f"{path}: 'input_dim' needs 4 values per input, got {len(dims)} for {len(names)} input(s)")
            shapes = [tuple(dims[4 * i:4 * i + 4]) for i in range(len(names))]
        if len(shapes) != len(names):
            raise ModelError(f"{path}: {len(names)} 'input' names but {len(shapes)} shapes")
        inputs.update((n, _input_shape(s, path, n)) for n, s in zip(names, shapes))
    return inputs


def load_caffe(prototxt: str, weights: str | None = None, text: str | None = None) -> CaffeNet:
    """Read a deploy prototxt (and optionally its caffemodel) into a :class:`CaffeNet`;
    ``text`` gives the prototxt's content directly (``prototxt`` then only names it)."""
    net = read_prototxt(prototxt, text)
    inputs = _net_inputs(net, prototxt)
    layers = []
    for lp in layer_params(net):
        if not _included(lp):
            continue
        if lp.type == "Input":
            shapes = [tuple(int(d) for d in s.dim) for s in lp.input_param.shape]
            if len(shapes) == 1:
                shapes = shapes * len(lp.top)
            if len(shapes) != len(lp.top):
                raise ModelError(f"{prototxt}: layer '{lp.name}' (Input) has {len(lp.top)} tops but {len(shapes)} shapes")
            inputs.update((t, _input_shape(s, prototxt, t)) for t, s in zip(lp.top, shapes))
            continue
        layers.append(Layer(lp.name, lp.type, list(lp.bottom), list(lp.top), lp))
    if not inputs:
        raise ModelError(f"{prototxt}: no net input found (expected 'input:' with 'input_shape'/'input_dim', or an Input layer)")
    source = {"prototxt": os.path.abspath(prototxt),
              "prototxt_sha1": sha1_of(prototxt) if text is None else hashlib.sha1(text.encode()).hexdigest()}
    cnet = CaffeNet(net.name or os.path.splitext(os.path.basename(prototxt))[0], inputs, layers, source)
    if weights is not None:
        attach_weights(cnet, weights)
    return cnet


def attach_weights(cnet: CaffeNet, weights: str) -> None:
    """Copy blobs from a caffemodel into the layers of the same name (as Caffe does)."""
    model = read_caffemodel(weights)
    by_name = {lp.name: lp for lp in layer_params(model)}
    not_finite = []
    for layer in cnet.layers:
        src = by_name.get(layer.name)
        if src is None or not len(src.blobs):
            continue
        try:
            layer.blobs = [blob_to_array(b) for b in src.blobs]
            layer.legacy_blobs = [not b.HasField("shape") for b in src.blobs]
        except ModelError as err:
            raise ModelError(f"{weights}: layer '{layer.name}': {err}") from None
        not_finite += [f"{layer.name}[{i}]" for i, b in enumerate(layer.blobs) if not np.isfinite(b).all()]
    if not_finite:  # loads (Caffe would too) but every output downstream is NaN
        import sys

        print(f"caffevis: warning: {weights}: NaN or infinite weights in blob {', '.join(not_finite)}",
              file=sys.stderr)
    cnet.source["weights"] = os.path.abspath(weights)
    cnet.source["weights_sha1"] = sha1_of(weights)
