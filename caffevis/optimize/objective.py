"""The optimizer's objective: a blob's value and one unit's input gradient in one ORT run."""
from __future__ import annotations

import numpy as np

from ..errors import InputError


def unit_blob_shape(net, layer):
    """The (C,) or (C, H, W) shape of push layer ``layer`` (one image); one-line errors for a
    net without Caffe layers, a name that is not a blob, or another rank."""
    net.require_layers("the optimizer")
    if layer not in net.blob_shapes or layer == net.input_name:
        raise InputError(f"push layer '{layer}' is not a blob of this net "
                         f"(blobs: {', '.join(net.blob_names[1:])})")
    shape = tuple(net.blob_shapes[layer][1:])
    if len(shape) not in (1, 3):
        raise InputError(f"push layer '{layer}' has shape {shape}; expected (C,) or (C, H, W)")
    return shape


class UnitObjective:
    """Value of ``layer`` and d(unit)/d(input) for a batch, each image with its own unit.

    One ONNX Runtime session runs the exported gradient graph (backprop, seeded at the
    output of the layer named like the blob) and also returns that layer's output, so
    each iteration costs one forward and one backward pass. The blob's final value (what
    the original reads after ``forward``) is that output passed through the in-place
    layers that follow (ReLU, Dropout); nets with other in-place layers there get a
    separate forward pass.
    """

    def __init__(self, net, layer):
        from ..backward import gradient_session, resolve_start

        self.net, self.layer = net, layer
        self.blob_shape = unit_blob_shape(net, layer)
        idx, _ = resolve_start(net.layers, net.input_name, layer, "layer")
        self._in_place = [p for p in net.layers if p.index > idx and layer in p.tops and layer in p.bottoms]
        self._numpy_tail = all(p.type in ("ReLU", "Dropout") for p in self._in_place)
        # the net's cached gradient session, with the seeded layer's output as a second
        # output (no per-blob diffs: ORT then reuses their buffers); its factory turns ORT's
        # spin-waiting off: the blur and percentile steps between runs need the cores
        # (SqueezeNet on 2 cores: 47 ms per iteration spinning, 27 not)
        self.session = gradient_session(net, layer, mode="backprop", start="layer", value=True)

    @property
    def provider(self) -> str:
        return self.session.provider

    def seeds(self, units, push_dirs):
        seed = np.zeros((len(units),) + self.blob_shape, np.float32)
        for i, (unit, d) in enumerate(zip(units, push_dirs)):
            seed[(i,) + tuple(unit[:len(self.blob_shape)])] = d
        return seed

    def __call__(self, x, units, push_dirs):
        """Return (blob values (N, ...), input gradients (N, C, H, W) float32)."""
        x32 = np.ascontiguousarray(x, np.float32)
        result = self.session.run(x32, self.seeds(units, push_dirs))
        grad, value = result["input"], result["value"]
        if not self._numpy_tail:
            return self.net.forward(x32, blobs=[self.layer])[self.layer], grad
        for p in self._in_place:
            if p.type == "ReLU":
                slope = p.attrs.get("negative_slope", 0.0)
                value = np.maximum(value, 0) + slope * np.minimum(value, 0) if slope else np.maximum(value, 0)
        return value, grad
