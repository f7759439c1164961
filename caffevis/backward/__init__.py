"""Backward passes from a seed: backprop, Zeiler & Fergus deconv and guided backprop.

:func:`backward` is the entry point. Two engines give the same results: exported
gradient graphs run by ONNX Runtime (:mod:`.graph`, sessions cached per net in
:mod:`.sessions`) and a NumPy walk over ORT's forward values (:mod:`.numpy_engine`).
Both apply the per-type rules of :mod:`caffevis.layers`; :mod:`.rules` holds what they
share (rule choices, where a seed starts).
"""
from __future__ import annotations

from ..errors import InputError
from .graph import build_gradient_model, input_diff_name, param_grad_name
from .numpy_engine import backward_numpy
from .rules import LRN_RULES, MODES, STARTS, channel_seed_supported, check_backward_args, resolve_start
from .seed import Seed, channel_map_seed, unit_seed
from .sessions import GradientSession, cached_session_keys, gradient_session

ENGINES = ("onnx", "numpy")


def backward(net, data, seed: Seed, mode="backprop", lrn="derivative", start="last", engine=None,
             blob_diffs=False, values=None):
    """Gradient-like signal at the input of ``net`` for ``seed``.

    Parameters
    ----------
    net : caffevis.model.Net
        A net converted from Caffe.
    data : ndarray, (N, C, H, W) or (C, H, W)
        Preprocessed input.
    seed : Seed
        Blob, diff (shaped like the blob at batch N) and, when the caller knows the diff
        lies in one channel, that channel (the graph then computes it alone).
    mode : {'backprop', 'deconv', 'guided'}
        ReLU rule: the forward mask (backprop), ``max(diff, 0)`` (Zeiler & Fergus
        deconv) or both (guided backprop).
    lrn : {'derivative', 'identity'}
        LRN rule outside backprop mode: the exact derivative (DeepVis) or pass-through
        (the Z&F paper).
    start : {'last', 'layer'}
        Seed the blob's final value (after in-place layers, as Caffe's ``backward`` from
        the blob) or the output of the layer named like the blob (``net.backward(start=blob)``,
        as the DeepVis viewer and optimizer do).
    engine : {'onnx', 'numpy'}, optional
        Exported gradient graph on ORT, or the NumPy deconvnet. Default: numpy for
        deconv, onnx otherwise.
    blob_diffs : bool
        Also return the diff of every blob below the seed (dict blob -> diff).
    values : dict, optional
        NumPy engine only: the forward tensors already computed for ``data``
        (:meth:`~caffevis.model.Net.forward_all`), so the forward pass is not run again.

    Returns
    -------
    ndarray shaped like ``data`` (and a dict when ``blob_diffs``).
    """
    net.require_layers("backward")
    engine = engine or ("numpy" if mode == "deconv" else "onnx")
    if engine not in ENGINES:
        raise InputError(f"engine '{engine}': expected onnx or numpy")
    data = net.check_input(data)
    blob, diff = seed.blob, seed.values
    if blob not in net.blob_shapes:
        raise InputError(f"unknown blob '{blob}' (blobs: {', '.join(net.blob_names)})")
    want = (data.shape[0],) + tuple(net.blob_shapes[blob][1:])
    if diff.shape != want:
        raise InputError(f"diff for blob '{blob}' has shape {diff.shape}; expected {want}")
    if engine == "numpy":
        return backward_numpy(net, data, blob, diff, mode=mode, lrn=lrn, start=start,
                              blob_diffs=blob_diffs, values=values)
    # a seed in one channel (a unit, a channel's map): the layer producing the blob then
    # computes that channel only, where the net allows it (same result, less work)
    one = seed.channel is not None and channel_seed_supported(net.layers, blob, start, net.input_name)
    session = gradient_session(net, blob, mode=mode, lrn=lrn, start=start, blob_diffs=blob_diffs, seed_channel=one)
    result = session.run(data, seed.one_channel() if one else diff, channel=seed.channel if one else None)
    if blob_diffs:
        return result["input"], result["blobs"]
    return result["input"]


__all__ = ["ENGINES", "GradientSession", "LRN_RULES", "MODES", "STARTS", "Seed", "backward", "build_gradient_model",
           "cached_session_keys", "channel_map_seed", "channel_seed_supported", "check_backward_args",
           "gradient_session", "input_diff_name", "param_grad_name", "resolve_start", "unit_seed"]
