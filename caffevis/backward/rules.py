"""What both backward engines share: the rule choices, where a seed starts, and which
layers a one-channel seed graph may restrict."""
from __future__ import annotations

from ..errors import InputError
from ..layers import LAYER_TYPES
from ..model.caffe.to_onnx import assign_versions

MODES = ("backprop", "deconv", "guided")
LRN_RULES = ("derivative", "identity")
STARTS = ("last", "layer")


def check_backward_args(mode, lrn, start):
    """One-line errors for the three rule choices shared by both backward engines."""
    for name, value, allowed in (("mode", mode, MODES), ("lrn", lrn, LRN_RULES), ("start", start, STARTS)):
        if value not in allowed:
            raise InputError(f"{name} '{value}': expected one of {', '.join(allowed)}")


def start_index(plans, input_name, blob, start):
    """Index of the layer whose output receives the seed (-1: the input itself)."""
    if blob == input_name:
        return -1
    writers = [p.index for p in plans if blob in p.tops]
    if not writers:
        names = [input_name] + [t for p in plans for t in p.tops]
        raise InputError(f"unknown blob '{blob}' (blobs: {', '.join(dict.fromkeys(names))})")
    if start == "last":
        return writers[-1]
    named = [i for i in writers if plans[i].name == blob]
    # Caffe's backward(start=name) begins at the layer of that name; nets whose layer
    # names differ from blob names start at the blob's producing (non-in-place) layer.
    return named[0] if named else writers[0]


def resolve_start(plans, input_name, blob, start):
    """Index of the layer whose output receives the seed, and that tensor version's name."""
    idx = start_index(plans, input_name, blob, start)
    if idx == -1:
        return -1, input_name
    _, writes, _ = assign_versions(plans, [input_name])
    return idx, writes[idx][plans[idx].tops.index(blob)]


def seed_chain(plans, blob, start_idx):
    """Indices of the layers writing ``blob`` up to the seed point: its producer, then in-place ones."""
    return [i for i in range(start_idx + 1) if blob in plans[i].tops]


def channel_seed_supported(plans, blob, start="last", input_name="data"):
    """Whether a one-channel seed graph exists for ``blob``: a Convolution or InnerProduct
    (on the channel axis) produces it, and the layers after it up to the seed point are
    in-place channelwise ones without parameters."""
    try:
        start_idx = start_index(plans, input_name, blob, start)  # no tensor versions needed: every frame asks
    except InputError:
        return False
    chain = seed_chain(plans, blob, start_idx)
    if not chain:
        return False
    producer = plans[chain[0]]
    if producer.in_place or producer.type not in ("Convolution", "InnerProduct"):
        return False
    if producer.type == "InnerProduct" and producer.attrs["axis"] != 1:
        return False
    return all(plans[i].in_place and LAYER_TYPES[plans[i].type].channelwise and not plans[i].params
               for i in chain[1:])


class GradContext:
    """What a layer's gradient rule reads besides its own tensors: the graph, the rules
    chosen (``mode``, ``lrn``), whether parameter gradients are wanted, and the ReLUs
    whose mask a max pool above them applies (see :func:`relus_masked_at_pools`)."""

    def __init__(self, g, mode, lrn, want_params, masked_at_pool=None):
        self.g, self.mode, self.lrn, self.want_params = g, mode, lrn, want_params
        self.masked_at_pool = masked_at_pool or {}  # max pool name -> ReLU name
        self.premasked = set(self.masked_at_pool.values())


def relus_masked_at_pools(plans, reads, writes, on_path):
    """Max pools whose input is a slope-0 ReLU's output read by nothing else: pool name ->
    ReLU name.

    Every diff such a pool routes lands on its window's argmax p, and X[p] > 0 exactly when
    the window's max Y > 0; so the ReLU's mask can be applied to the pooled diff instead (the
    same products, at a quarter of the size for 3x3/2 pools). The ReLU then passes its diff on.
    """
    producer = {v: i for i in on_path for v in writes[i]}
    readers = {}
    for i in on_path:
        for v in reads[i]:
            readers.setdefault(v, set()).add(i)
    found = {}
    for i in on_path:
        p = plans[i]
        if p.type != "Pooling" or p.attrs["method"] != "max":
            continue
        r = producer.get(reads[i][0])
        # in place only: then the blob's reported diff is the ReLU's input diff, masked either way
        if r is not None and plans[r].type == "ReLU" and plans[r].in_place and not plans[r].attrs["negative_slope"] \
                and readers[reads[i][0]] == {i}:
            found[p.name] = plans[r].name
    return found
