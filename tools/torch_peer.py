"""A PyTorch executor for caffevis layer plans: the benchmark peer (CPU, autograd).

Benchmark-only: torch is an optional extra (``pip install .[bench]``), never a runtime
dependency. Covers the layer types of CaffeNet/AlexNet/LeNet/SqueezeNet.
"""
import torch
import torch.nn.functional as F


class TorchPlanNet:
    def __init__(self, plans):
        self.plans = plans
        self.params = {p.name: [torch.from_numpy(a.copy()) for a in p.params] for p in plans}

    def forward(self, x, until=None):
        """Blobs by name; with ``until``, stop after the last layer writing that blob (its
        in-place ReLU included, as caffevis' ``start='last'``)."""
        last_writer = max((p.index for p in self.plans if until in p.tops), default=None)
        blobs = {"data": x}
        for p in self.plans:
            a, prm = p.attrs, self.params[p.name]
            ins = [blobs[b] for b in p.bottoms]
            t = p.type
            if t == "Convolution":
                y = F.conv2d(ins[0], prm[0], prm[1] if a["bias_term"] else None, stride=a["stride"],
                             padding=a["pad"], dilation=a["dilation"], groups=a["group"])
            elif t == "Pooling":
                if a["method"] == "max":
                    y = F.max_pool2d(ins[0], a["kernel"], a["stride"], a["pad"], ceil_mode=a["ceil"])
                else:
                    y = F.avg_pool2d(ins[0], a["kernel"], a["stride"], a["pad"], ceil_mode=a["ceil"])
            elif t == "LRN":
                y = F.local_response_norm(ins[0], a["local_size"], a["alpha"], a["beta"], a["k"])
            elif t == "ReLU":
                y = F.relu(ins[0])
            elif t == "InnerProduct":
                y = F.linear(ins[0].flatten(a["axis"]), prm[0], prm[1] if a["bias_term"] else None)
            elif t in ("Dropout", "Split"):
                y = ins[0]
            elif t == "Softmax":
                y = F.softmax(ins[0], dim=a["axis"])
            elif t == "Concat":
                y = torch.cat(ins, dim=a["axis"])
            else:
                raise NotImplementedError(t)
            blobs[p.tops[0]] = y
            if until is not None and p.index == last_writer:
                break
        return blobs

    def input_grad(self, x, blob, seed):
        x = torch.from_numpy(x).requires_grad_(True)
        blobs = self.forward(x, until=blob)
        blobs[blob].backward(torch.from_numpy(seed))
        return x.grad.numpy()
