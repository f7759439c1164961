"""Cached ORT sessions running gradient graphs, kept per net (not on the net: a Net only runs forward)."""
from __future__ import annotations

import hashlib
import os
import weakref
from collections import OrderedDict

import numpy as np
import onnx

from ..io import save_onnx
from ..model.caffe.to_onnx import param_name
from .graph import LABELS, SEED, SEED_CHANNEL, VALUE, build_gradient_model, input_diff_name, parse_output_name

CACHE_MAX_WEIGHT_BYTES = 64 << 20  # gradient graphs of nets with more weights are not saved to disk
MAX_SESSIONS_PER_NET = 6  # each session holds a copy of the weights below its seed


class GradientSession:
    """An ORT session running one gradient model (see :func:`~caffevis.backward.graph.build_gradient_model`).

    ``run(data, seed, params=None)`` returns a dict with ``'input'`` (diff at the input),
    ``'blobs'`` (blob -> diff for blobs below the seed), ``'params'`` (layer -> list of
    gradients, when built with ``params=True``), ``'value'`` (the seeded tensor's forward
    value, when built with ``value=True``) and, for ``loss='softmax'`` (where ``seed`` is
    the integer labels), ``'loss'`` and ``'output'``.
    """

    def __init__(self, net, blob, mode="backprop", lrn="derivative", start="last", params=False,
                 params_as_inputs=False, loss=None, blob_diffs=False, seed_channel=False, value=False):
        self.net, self.blob, self.loss, self.seed_channel = net, blob, loss, seed_channel
        model, self.outputs = _cached_model(net, blob, dict(
            mode=mode, lrn=lrn, start=start, params=params, params_as_inputs=params_as_inputs, loss=loss,
            blob_diffs=blob_diffs, seed_channel=seed_channel, value=value))
        self.session = net.runtime.session(model, f"{net.name} gradient graph at '{blob}'")
        # the session holds its own copy of the weights; the model proto is not kept
        self.param_inputs = {i.name for i in model.graph.input} - {net.input_name, SEED, SEED_CHANNEL, LABELS}

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def run(self, data, seed, params=None, channel=None):
        """``channel``: for a ``seed_channel`` session, the seeded channel (``seed`` then
        holds that channel alone)."""
        feeds = {self.net.input_name: np.ascontiguousarray(data, np.float32)}
        if self.loss:
            feeds[LABELS] = np.asarray(seed, np.int64).reshape(-1)
        else:
            feeds[SEED] = np.ascontiguousarray(seed, np.float32)
        if self.seed_channel:
            feeds[SEED_CHANNEL] = np.array([channel], np.int64)
        for layer, arrays in (params or {}).items():
            for i, arr in enumerate(arrays):
                name = param_name(layer, i)
                if name in self.param_inputs:
                    feeds[name] = np.ascontiguousarray(arr, np.float32)
        values = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        result = {"input": values.pop(input_diff_name(self.net.input_name)), "blobs": {}, "params": {}}
        for name, value in values.items():
            kind = parse_output_name(name)
            if kind and kind[0] == "diff":
                result["blobs"][kind[1]] = self._full_channels(kind[1], value, channel)
            elif kind:
                _, layer, i = kind
                result["params"].setdefault(layer, {})[i] = value
            else:
                result["value" if name == VALUE else name] = value
        result["params"] = {k: [v[i] for i in sorted(v)] for k, v in result["params"].items()}
        return result

    def _full_channels(self, blob, diff, channel):
        """A seed_channel graph's diff of the seeded blob (one channel) at its place among zeros."""
        if not self.seed_channel or blob != self.blob:
            return diff
        full = np.zeros((diff.shape[0],) + tuple(self.net.blob_shapes[blob][1:]), diff.dtype)
        full[:, channel] = diff[:, 0]
        return full


_SESSIONS = weakref.WeakKeyDictionary()  # net -> OrderedDict(key -> GradientSession), most recent last


def gradient_session(net, blob, mode="backprop", lrn="derivative", start="last", params=False,
                     params_as_inputs=False, loss=None, blob_diffs=False, seed_channel=False, value=False):
    """The :class:`GradientSession` for these choices, made once per net and kept (a
    bounded number per net, least recently used dropped; they go with the net)."""
    key = (blob, mode, lrn, start, params, params_as_inputs, loss, blob_diffs, seed_channel, value)
    cache = _SESSIONS.setdefault(net, OrderedDict())
    session = cache.pop(key, None)
    if session is None:
        session = GradientSession(net, blob, mode=mode, lrn=lrn, start=start, params=params,
                                  params_as_inputs=params_as_inputs, loss=loss, blob_diffs=blob_diffs,
                                  seed_channel=seed_channel, value=value)
    cache[key] = session
    while len(cache) > MAX_SESSIONS_PER_NET:
        cache.popitem(last=False)
    return session


def cached_session_keys(net):
    """The keys of ``net``'s cached sessions, least recently used first (for tests and tools)."""
    return list(_SESSIONS.get(net, ()))


def _cached_model(net, blob, choices):
    """Build the gradient model, reusing a copy saved on disk for the same weights."""
    from ..paths import GRADIENT_FILES, code_version

    source = getattr(net, "info", {}).get("source", {})
    key = None
    if source.get("weights_sha1"):
        # the same weights with another prototxt, or other code, make another graph
        deploy = {p.key: p.value for p in net.model.metadata_props}.get("caffevis_prototxt", "")
        key = hashlib.sha1("|".join([source["weights_sha1"], deploy, code_version(*GRADIENT_FILES)])
                           .encode()).hexdigest()
    path = None
    weight_bytes = sum(a.nbytes for p in net.layers for a in p.params)
    # Each gradient model carries a copy of the weights: cache small nets only (LeNet,
    # SqueezeNet); CaffeNet-sized models rebuild in memory in about as long as a load.
    if key and not choices["params_as_inputs"] and weight_bytes <= CACHE_MAX_WEIGHT_BYTES:
        safe = "".join(c if c.isalnum() else "_" for c in blob)
        c = choices
        tag = (f"{safe}-{c['mode']}-{c['lrn']}-{c['start']}-{int(bool(c['params']))}-{c['loss'] or 'seed'}-"
               f"{int(bool(c['blob_diffs']))}" + ("-channel" if c["seed_channel"] else "")
               + ("-value" if c["value"] else ""))
        path = os.path.join(net.cache_dir, f"{net.name}-{key[:12]}", "grad", f"{tag}.onnx")
        if os.path.isfile(path):
            try:
                model = onnx.load(path)
                return model, [o.name for o in model.graph.output]
            except Exception:
                pass  # rebuilt below
    model, outputs = build_gradient_model(net, blob, **choices)
    if path:
        save_onnx(model, path)
    return model, outputs
