"""Zeiler & Fergus figures for one input digit: every layer's activations and deconvnet
projections of each layer's strongest units back to pixel space.

Deconv semantics (Zeiler & Fergus 2014, §2.1): one activation is kept and every other
activation of its layer is set to zero; the signal goes down through max-unpooling at
the forward pass's switches, a ReLU applied to the signal itself (``max(g, 0)``), and the
transposed filters (no biases). LRN, where a net has it, passes the signal unchanged as
in the paper. A unit's strength is its largest activation over the map; the seed is
that single activation at its argmax position.

All functions return arrays (uint8 images, grey or BGR); :func:`write_figures` writes PNGs.
"""
from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np

from .backward import Seed, backward
from .errors import InputError
from .imaging import to_uint8

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, BLACK, GREY = 255, 0, 128
GRID = 200  # background between grid cells
LABEL_WIDTH = 150  # left column with the layer name


# -- what to show ------------------------------------------------------------------------
@dataclasses.dataclass
class Unit:
    """One unit of a layer: channel, argmax position ((y, x), or () for vectors), activation."""

    channel: int
    position: tuple
    activation: float


def top_units(value, k: int, positive=True):
    """The ``k`` channels of one image's blob value (C, ...) with the largest maximum
    activation, strongest first, each with its argmax position. With ``positive``, only
    units whose maximum is > 0 (a Z&F projection starts from a rectified activation)."""
    value = np.asarray(value)
    flat = value.reshape(value.shape[0], -1)
    peak = flat.max(axis=1)
    order = np.argsort(-peak, kind="stable")[:k]
    if positive:
        order = order[peak[order] > 0]
    units = []
    for c in order:
        pos = np.unravel_index(int(np.argmax(flat[c])), value.shape[1:]) if value.ndim > 1 else ()
        units.append(Unit(int(c), tuple(int(p) for p in pos), float(peak[c])))
    return units


def unit_seeds(blob_shape, units):
    """One seed per unit (batch = len(units)): the unit's activation at its argmax
    position, zeros elsewhere (Z&F: all other activations of the layer set to zero)."""
    seeds = np.zeros((len(units),) + tuple(blob_shape), np.float32)
    for i, u in enumerate(units):
        seeds[(i, u.channel) + u.position] = u.activation
    return seeds


def deconv_layers(net):
    """Blobs with a deconv path to the input: every blob but the input and the outputs of
    Softmax layers (probabilities are not a Z&F feature map)."""
    after_softmax = {t for p in net.layers if p.type == "Softmax" for t in p.tops}
    return [b for b in net.blob_names if b != net.input_name and b not in after_softmax]


def projections(net, x, blob, units, lrn="identity"):
    """Deconv projections (len(units), C, H, W) of ``units`` of ``blob`` for input ``x``
    (one image, (1, C, H, W)); one batched backward pass."""
    if not units:
        return np.zeros((0,) + tuple(x.shape[1:]), np.float32)
    seeds = unit_seeds(net.blob_shapes[blob][1:], units)
    batch = np.repeat(x, len(units), axis=0)
    channels = {u.channel for u in units}  # one channel for all: the graph computes it alone
    seed = Seed(blob, seeds, channels.pop() if len(channels) == 1 else None)
    return backward(net, batch, seed, mode="deconv", lrn=lrn, start="last", engine="onnx")


# -- rendering -----------------------------------------------------------------------
def norm01c(a):
    """Signed values to [0, 1] with 0 at 0.5, scaled by the largest magnitude."""
    a = np.asarray(a, np.float64)
    m = float(np.abs(a).max())
    return np.full(a.shape, 0.5) if m == 0 else 0.5 + a / (2 * m)


def norm01(a):
    """Non-negative values to [0, 1] by their maximum (negatives, if any, signed)."""
    a = np.asarray(a, np.float64)
    if a.min() < 0:
        return norm01c(a)
    m = float(a.max())
    return np.zeros(a.shape) if m == 0 else a / m


def as_maps(value):
    """A blob value of one image as a stack of 2-D maps: (C, H, W) stays; a vector (C,)
    becomes C 1×1 maps."""
    value = np.asarray(value)
    if value.ndim == 1:
        return value[:, None, None]
    if value.ndim == 3:
        return value
    return value.reshape(value.shape[0], value.shape[1], -1)


def tile(images, cols, pad=2, fill=WHITE):
    """Tile equal-sized images (N, h, w[, 3]) in a grid with ``cols`` columns; ``fill``
    between cells, white where the last row has no cell."""
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    rows = max(1, -(-n // cols))
    extra = images.shape[3:]
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad) + extra, fill, np.uint8)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        y, x = r * (h + pad), c * (w + pad)
        if i < n:
            out[y:y + h, x:x + w] = images[i]
        else:
            out[y - (pad if r else 0):y + h, x - pad if c else 0:out.shape[1]] = WHITE
    return out


def upscale(img, factor):
    factor = max(1, int(factor))
    return cv2.resize(img, (img.shape[1] * factor, img.shape[0] * factor), interpolation=cv2.INTER_NEAREST)


def activation_grid(value, cell=48, max_width=900):
    """Every channel's activation map of one image, normalized per layer, as a grey grid
    on a mid-grey background (so white and black cells both show). Vectors of up to 20
    units are captioned with their index (the class, for a classifier's last layers)."""
    maps = as_maps(value)
    img = to_uint8(norm01(maps))
    vector = maps.shape[1:] == (1, 1)
    factor = (14 if len(maps) > 100 else 32) if vector else max(1, cell // max(maps.shape[1:]))
    cells = np.stack([upscale(m, factor) for m in img])
    if vector and len(maps) <= 20:
        framed = []
        for i, c in enumerate(cells):
            c = c.copy()
            cv2.rectangle(c, (0, 0), (c.shape[1] - 1, c.shape[0] - 1), 90, 1)
            framed.append(caption_below(c, str(i), scale=0.4))
        cells = np.stack(framed)
    pad = 1 if factor < 16 else 2
    cols = max(1, min(len(cells), (max_width + pad) // (cells.shape[2] + pad)))
    if vector and len(maps) > 100:
        cols = 50  # 500-unit ip1: 10 rows of 50
    return tile(cells, cols, pad=pad, fill=GRID)


def text_band(width, text, height=28, scale=0.55, thickness=1, fill=WHITE, color=BLACK):
    band = np.full((height, max(width, 1)), fill, np.uint8)
    cv2.putText(band, text, (4, height - 9), FONT, scale, color, thickness, cv2.LINE_AA)
    return band


def caption_below(img, text, scale=0.4):
    band = text_band(img.shape[1], text, height=16, scale=scale)
    return np.vstack([img, band])


def input_image(x):
    """One preprocessed input (C, H, W) as grey (C = 1) or as the channel stack's mean."""
    x = np.asarray(x)
    return to_uint8(norm01(x[0] if x.shape[0] == 1 else x.mean(axis=0)))


def projection_tiles(proj, units, factor=3):
    """Each projection (C, H, W) rendered with 0 as grey (``norm01c``), captioned with the
    unit number and its activation."""
    tiles = []
    for p, u in zip(proj, units):
        img = to_uint8(norm01c(p[0] if p.shape[0] == 1 else p.mean(axis=0)))
        tiles.append(caption_below(upscale(img, factor), f"#{u.channel} {u.activation:.2f}"))
    return tiles


def row(label, content, sublabel=""):
    """A row: the layer name (and a second line) in a left column, the content right."""
    h = max(content.shape[0], 40)
    left = np.full((h, LABEL_WIDTH), WHITE, np.uint8)
    cv2.putText(left, label, (6, 20), FONT, 0.55, BLACK, 1, cv2.LINE_AA)
    if sublabel:
        cv2.putText(left, sublabel, (6, 38), FONT, 0.38, BLACK, 1, cv2.LINE_AA)
    body = np.full((h, content.shape[1]), WHITE, np.uint8)
    body[:content.shape[0]] = content
    return np.hstack([left, body])


def stack_rows(rows, gap=8):
    width = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        r = np.hstack([r, np.full((r.shape[0], width - r.shape[1]), WHITE, np.uint8)])
        out += [r, np.full((gap, width), WHITE, np.uint8)]
    return np.vstack(out[:-1])


def _shape_text(shape):
    return " x ".join(str(s) for s in shape)


# -- figures -------------------------------------------------------------------------
def activation_figure(net, x, blobs, digit_text, model_text=""):
    """"Activation images for digit: D": the input, then one grid per layer."""
    rows = [row("input", upscale(input_image(x[0]), 4), _shape_text(x.shape[1:]))]
    for b in net.blob_names:
        if b == net.input_name:
            continue
        v = blobs[b][0]
        rows.append(row(b, activation_grid(v), f"{_shape_text(v.shape)}  max {v.max():.2f}"))
    body = stack_rows(rows)
    title = text_band(body.shape[1], f"Activation images for digit: {digit_text}", height=34, scale=0.75,
                      thickness=2)
    parts = [title]
    if model_text:
        parts.append(text_band(body.shape[1], model_text, height=20, scale=0.45))
    return np.vstack(parts + [body])


def deconv_figure(net, x, blobs, digit_text, k=9, model_text="", lrn="identity"):
    """"Deconv projections for digit: D": for each layer, its ``k`` strongest units
    projected to pixel space (0 = grey; each projection scaled by its own maximum)."""
    rows = []
    for b in deconv_layers(net):
        units = top_units(blobs[b][0], k)
        proj = projections(net, x, b, units, lrn=lrn)
        tiles = projection_tiles(proj, units)
        if not tiles:  # no unit of this layer is active for this input
            rows.append(row(b, text_band(300, "no positive activation"), "top 0 units"))
            continue
        rows.append(row(b, tile(np.stack(tiles), len(tiles), pad=4), f"top {len(units)} units"))
    body = stack_rows(rows)
    title = text_band(body.shape[1], f"Deconv projections to pixel space for digit: {digit_text}", height=34,
                      scale=0.75, thickness=2)
    parts = [title]
    if model_text:
        parts.append(text_band(body.shape[1], model_text, height=20, scale=0.45))
    return np.vstack(parts + [body])


def digit_figure(net, x, digit_text, k=9, model_text="", lrn="identity"):
    """Activation figure above deconv figure, for one preprocessed input ``x`` (1, C, H, W)."""
    x = net.check_input(x)[:1]
    blobs = net.forward(x)
    act = activation_figure(net, x, blobs, digit_text, model_text)
    dec = deconv_figure(net, x, blobs, digit_text, k=k, lrn=lrn)
    return stack_rows([act, np.full((6, act.shape[1]), GREY, np.uint8), dec], gap=10)


def model_caption(net, accuracy=None, image_index=None):
    parts = [f"model: {net.name}"]
    weights = getattr(net, "info", {}).get("source", {}).get("weights")
    if weights:
        parts.append(f"weights: {os.path.basename(weights)}")
    if accuracy is not None:
        parts.append(f"MNIST test accuracy {100 * accuracy:.2f} %")
    if image_index is not None:
        parts.append(f"test image #{image_index}")
    return "   ".join(parts)


def write_figures(net, images, labels, digits, out_dir, k=9, suffix="", accuracy=None, lrn="identity"):
    """For each digit, the first test image of that class -> ``zf_digit{D}{suffix}.png``
    in ``out_dir``; returns the written paths."""
    from . import mnist

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for d in digits:
        if not 0 <= int(d) <= 9:
            raise InputError(f"--digit {d}: expected a digit 0-9")
        idx = mnist.first_of_class(labels, int(d))
        x = mnist.to_net_input(images[idx])
        fig = digit_figure(net, x, str(d), k=k, model_text=model_caption(net, accuracy, idx), lrn=lrn)
        path = os.path.join(out_dir, f"zf_digit{d}{suffix}.png")
        if not cv2.imwrite(path, fig, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
            raise InputError(f"{path}: could not write the PNG")
        paths.append(path)
    return paths
