"""Caffe's CPU forward written as plain loops (after caffe/src/caffe/layers/*.cpp).

Slow and literal on purpose: an independent reference for the converter's layer
semantics on small nets (pool window clipping, AVE divisors, LRN variants, ...).
"""
import math

import numpy as np


def conv(x, w, b, a):
    n, c, h, wd = x.shape
    (kh, kw), (ph, pw), (sh, sw), (dh, dw), g = a["kernel"], a["pad"], a["stride"], a["dilation"], a["group"]
    o = w.shape[0]
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (wd + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, o, oh, ow))
    cg, og = c // g, o // g
    for oc in range(o):
        gi = oc // og
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, gi * cg:(gi + 1) * cg, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                y[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, i, j])
        if b is not None:
            y[:, oc] += b[oc]
    return y


def deconv(x, w, b, a):
    n, c, h, wd = x.shape
    (kh, kw), (ph, pw), (sh, sw), (dh, dw), g = a["kernel"], a["pad"], a["stride"], a["dilation"], a["group"]
    o = w.shape[1] * g
    oh, ow = sh * (h - 1) + dh * (kh - 1) + 1 - 2 * ph, sw * (wd - 1) + dw * (kw - 1) + 1 - 2 * pw
    full = np.zeros((n, o, oh + 2 * ph, ow + 2 * pw))
    cg, og = c // g, o // g
    for ic in range(c):
        gi = ic // cg
        for y in range(h):
            for xx in range(wd):
                for i in range(kh):
                    for j in range(kw):
                        full[:, gi * og:(gi + 1) * og, y * sh + i * dh, xx * sw + j * dw] += \
                            x[:, ic, y, xx][:, None] * w[ic, :, i, j][None]
    y = full[:, :, ph:ph + oh, pw:pw + ow]
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def pool(x, a):
    n, c, h, w = x.shape
    (kh, kw), (ph, pw), (sh, sw) = a["kernel"], a["pad"], a["stride"]
    rnd = math.ceil if a["ceil"] else math.floor
    oh = int(rnd((h + 2 * ph - kh) / sh)) + 1
    ow = int(rnd((w + 2 * pw - kw) / sw)) + 1
    if ph or pw:
        if (oh - 1) * sh >= h + ph:
            oh -= 1
        if (ow - 1) * sw >= w + pw:
            ow -= 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            if a["method"] == "max":
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs, ws = max(hs, 0), max(ws, 0)
                y[:, :, i, j] = x[:, :, hs:he, ws:we].max(axis=(2, 3))
            else:
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                y[:, :, i, j] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / size
    return y


def lrn(x, a):
    n_ = a["local_size"]
    if a["region"] == "across":
        c = x.shape[1]
        pre = (n_ - 1) // 2
        sq = np.pad(x ** 2, ((0, 0), (pre, n_ - 1 - pre), (0, 0), (0, 0)))
        scale = a["k"] + a["alpha"] / n_ * sum(sq[:, i:i + c] for i in range(n_))
        return x * scale ** -a["beta"]
    pooled = pool(x ** 2, dict(method="ave", kernel=(n_, n_), pad=((n_ - 1) // 2,) * 2, stride=(1, 1), ceil=True))
    return x * (1 + a["alpha"] * pooled) ** -a["beta"]


def forward(plans, inputs):
    """Run plans (caffevis LayerPlan list) with Caffe's loops; returns blob -> array."""
    blobs = dict(inputs)
    for p in plans:
        a, ins = p.attrs, [blobs[b] for b in p.bottoms]
        x = ins[0] if ins else None
        prm = [q.astype(np.float64) for q in p.params]
        t = p.type
        if t == "Convolution":
            outs = [conv(x, prm[0], prm[1] if a["bias_term"] else None, a)]
        elif t == "Deconvolution":
            outs = [deconv(x, prm[0], prm[1] if a["bias_term"] else None, a)]
        elif t == "Pooling":
            outs = [pool(x, a)]
        elif t == "LRN":
            outs = [lrn(x, a)]
        elif t == "ReLU":
            outs = [np.maximum(x, 0) + a["negative_slope"] * np.minimum(x, 0)]
        elif t == "PReLU":
            s = prm[0].reshape((-1,) + (1,) * (x.ndim - 2)) if not a["channel_shared"] else prm[0].reshape(-1)[0]
            outs = [np.maximum(x, 0) + s * np.minimum(x, 0)]
        elif t == "ELU":
            outs = [np.where(x > 0, x, a["alpha"] * (np.exp(x) - 1))]
        elif t == "Sigmoid":
            outs = [1 / (1 + np.exp(-x))]
        elif t == "TanH":
            outs = [np.tanh(x)]
        elif t == "AbsVal":
            outs = [np.abs(x)]
        elif t == "Power":
            outs = [(a["shift"] + a["scale"] * x) ** a["power"]]
        elif t == "InnerProduct":
            flat = x.reshape(int(np.prod(x.shape[:a["axis"]])), -1)
            w = prm[0].T if a["transpose"] else prm[0]
            y = flat @ w.T + (prm[1] if a["bias_term"] else 0)
            outs = [y.reshape(x.shape[:a["axis"]] + (a["num_output"],))]
        elif t in ("Flatten", "Reshape"):
            outs = [x.reshape((x.shape[0],) + tuple(a["shape"][1:]))]
        elif t == "Softmax":
            e = np.exp(x - x.max(axis=a["axis"], keepdims=True))
            outs = [e / e.sum(axis=a["axis"], keepdims=True)]
        elif t == "Concat":
            outs = [np.concatenate(ins, axis=a["axis"])]
        elif t == "Eltwise":
            if a["op"] == "sum":
                outs = [sum(c * i for c, i in zip(a["coeff"], ins))]
            elif a["op"] == "prod":
                outs = [np.prod(ins, axis=0)]
            else:
                outs = [np.max(ins, axis=0)]
        elif t in ("Split", "Dropout"):
            outs = [x] * len(p.tops)
        elif t == "BatchNorm":
            f = 0 if prm[2][0] == 0 else 1 / prm[2][0]
            shape = (-1,) + (1,) * (x.ndim - 2)
            outs = [(x - (prm[0] * f).reshape(shape)) / np.sqrt((prm[1] * f).reshape(shape) + a["eps"])]
        elif t == "Scale":
            shape = prm[0].shape + (1,) * (x.ndim - a["axis"] - a["num_axes"])
            outs = [x * prm[0].reshape(shape) + (prm[1].reshape(shape) if a["bias_term"] else 0)]
        elif t == "Bias":
            shape = prm[0].shape + (1,) * (x.ndim - a["axis"] - a["num_axes"])
            outs = [x + prm[0].reshape(shape)]
        elif t == "BNLL":  # bnll_layer.cpp
            outs = [np.where(x > 0, x + np.log(1 + np.exp(-np.abs(x))), np.log(1 + np.exp(np.minimum(x, 0))))]
        elif t == "Exp":  # base^(shift + scale x), base -1 meaning e
            base = math.e if a["base"] == -1 else a["base"]
            outs = [base ** (a["shift"] + a["scale"] * x)]
        elif t == "Log":
            base = math.e if a["base"] == -1 else a["base"]
            outs = [np.log(a["shift"] + a["scale"] * x) / math.log(base)]
        elif t == "Slice":
            outs = np.split(x, np.cumsum(a["sizes"])[:-1], axis=a["axis"])
        elif t == "Crop":
            ref = ins[1]
            idx = tuple(slice(0, n) if i < a["axis"] else slice(o, o + ref.shape[i])
                        for i, (o, n) in enumerate(zip(a["offsets"], x.shape)))
            outs = [x[idx]]
        else:
            raise NotImplementedError(t)
        for top, y in zip(p.tops, outs):
            blobs[top] = y
    return blobs
