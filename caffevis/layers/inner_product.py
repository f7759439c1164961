"""InnerProduct (fully connected, on any axis, optionally transposed weights)."""
from __future__ import annotations

from ..errors import ModelError
from .base import LayerType, canon_axis, count, not_batch_axis


def infer(lp, shapes):
    p, s0 = lp.inner_product_param, shapes[0]
    axis = not_batch_axis(canon_axis(p.axis, len(s0), "inner_product_param"), "inner_product_param.axis")
    k = count(s0, axis)
    if not p.HasField("num_output"):
        raise ModelError("inner_product_param.num_output is required")
    no = int(p.num_output)
    if no < 1:
        raise ModelError(f"inner_product_param.num_output {no} must be at least 1")
    a = dict(num_output=no, axis=axis, transpose=bool(p.transpose), bias_term=bool(p.bias_term), k=k)
    params = [(k, no) if a["transpose"] else (no, k)] + ([(no,)] if a["bias_term"] else [])
    return a, [tuple(s0[:axis]) + (no,)], params


def forward(g, p, ins, outs, params, aux=None):
    a = p.attrs
    flat = g.op("Flatten", [ins[0]], "ip_flat", axis=a["axis"])
    gemm_in = [flat, params[0]] + ([params[1]] if a["bias_term"] else [])
    if a["axis"] == 1:
        g.op("Gemm", gemm_in, outputs=outs, transB=0 if a["transpose"] else 1)
    else:
        y = g.op("Gemm", gemm_in, "ip_gemm", transB=0 if a["transpose"] else 1)
        g.op("Reshape", [y, g.ints([-1] + list(p.top_shapes[0][1:]))], outputs=outs)


def vjp(ctx, p, ins, outs, dtops, aux, params):
    g, a, dy, x = ctx.g, p.attrs, dtops[0], ins[0]
    dy2 = g.op("Reshape", [dy, g.ints([-1, a["num_output"]])], "ip_dy")
    w = params[0]
    dxf = g.op("MatMul", [dy2, g.op("Transpose", [w], "ip_wt") if a["transpose"] else w], "ip_dxf")
    dx = g.op("Reshape", [dxf, g.op("Shape", [x], "ip_xshape")], "ip_dx")
    dparams = None
    if ctx.want_params:
        xf = g.op("Flatten", [x], "ip_xf", axis=a["axis"])
        if a["transpose"]:
            dw = g.op("MatMul", [g.op("Transpose", [xf], "ip_xft"), dy2], "ip_dw")
        else:
            dw = g.op("MatMul", [g.op("Transpose", [dy2], "ip_dyt"), xf], "ip_dw")
        dparams = [dw]
        if a["bias_term"]:
            dparams.append(g.op("ReduceSum", [dy2, g.ints([0])], "ip_db", keepdims=0))
    return [dx], dparams


def numpy_backward(p, ins, outs, dtops, mode, lrn):
    a, w = p.attrs, p.params[0]
    flat = dtops[0].reshape(-1, a["num_output"])
    return [(flat @ (w.T if a["transpose"] else w)).reshape(ins[0].shape)]


TYPES = [LayerType("InnerProduct", infer, forward, vjp, numpy_backward)]  # field None: sees the whole input
