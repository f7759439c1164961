"""Weight fillers for nets built without a caffemodel (tests, benchmarks, training)."""
from __future__ import annotations

import numpy as np

from .layers import plan


def fill_weights(cnet, seed=0, kind="xavier"):
    """Give every layer of ``cnet`` freshly initialised blobs, in place; returns ``cnet``.

    ``kind``: ``'xavier'`` (Caffe's XavierFiller: uniform ±sqrt(3 / fan_in)), ``'he'``
    (Gaussian, std sqrt(2 / fan_in)) or ``'gaussian'`` (std 0.01). Biases start at 0,
    PReLU slopes at 0.25, BatchNorm/Scale at identity statistics.
    """
    rng = np.random.default_rng(seed)
    for layer in cnet.layers:
        layer.blobs = []
    for p, layer in zip(plan(cnet, require_weights=False), cnet.layers):
        shapes = [arr.shape for arr in p.params]
        blobs = []
        for i, shape in enumerate(shapes):
            if p.type == "PReLU":
                blobs.append(np.full(shape, 0.25, np.float32))
            elif p.type == "BatchNorm":
                blobs.append(np.ones(shape, np.float32) if i != 0 else np.zeros(shape, np.float32))
            elif p.type == "Scale":
                blobs.append(np.ones(shape, np.float32) if i == 0 else np.zeros(shape, np.float32))
            elif i == 0:
                fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
                if p.type == "Deconvolution":
                    fan_in = int(shape[0] * np.prod(shape[2:]))
                if kind == "xavier":
                    lim = np.sqrt(3.0 / fan_in)
                    blobs.append(rng.uniform(-lim, lim, shape).astype(np.float32))
                elif kind == "he":
                    blobs.append((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))
                else:
                    blobs.append((rng.standard_normal(shape) * 0.01).astype(np.float32))
            else:
                blobs.append(np.zeros(shape, np.float32))
        layer.blobs = blobs
    return cnet
