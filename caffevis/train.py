"""Train Caffe's LeNet on MNIST with SGD + momentum, gradients from caffevis's own graphs.

The net, the initialization and the solver follow Caffe's ``examples/mnist``
(``lenet_train_test.prototxt`` + ``lenet_solver.prototxt``): xavier weight fillers and zero
biases; bias ``lr_mult`` 2; ``lr = base_lr * (1 + gamma * iter) ^ -power``; L2 weight decay
added to the diff; ``history = momentum * history + lr * lr_mult * diff``; ``w -= history``.
Parameter gradients of the mean SoftmaxWithLoss come from the exported ONNX gradient graph
(:class:`caffevis.backward.GradientSession` with ``params_as_inputs``), run by ONNX Runtime:
no other autodiff framework is involved.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections import OrderedDict

import numpy as np

from . import mnist
from .model.caffe import reader, writer
from .model.caffe.to_onnx import convert
from .errors import SettingsError
from .io import save_onnx, sha1_of

NET_NAME = "LeNet"
INPUT_SHAPE = (1, 28, 28)
#: Learnable layers: (lr_mult, decay_mult) per blob (weights, bias), as in Caffe's example.
MULTS = {"conv1": ((1, 1), (2, 1)), "conv2": ((1, 1), (2, 1)),
         "ip1": ((1, 1), (2, 1)), "ip2": ((1, 1), (2, 1))}
LOSS_BLOB = "ip2"


# -- the architecture ---------------------------------------------------------------
def _learnable(name, kind, bottom, num_output, kernel=None):
    spec = {"name": name, "type": kind, "bottom": [bottom], "top": [name],
            # decay_mult 1 is the default, left out as in Caffe's prototxt
            "param": [{"lr_mult": lr, **({"decay_mult": dm} if dm != 1 else {})} for lr, dm in MULTS[name]]}
    if kind == "Convolution":
        spec["convolution_param"] = {"num_output": num_output, "kernel_size": [kernel], "stride": [1]}
    else:
        spec["inner_product_param"] = {"num_output": num_output}
    return spec


def _pool(name, bottom):
    return {"name": name, "type": "Pooling", "bottom": [bottom], "top": [name],
            "pooling_param": {"pool": "MAX", "kernel_size": 2, "stride": 2}}


def lenet_body():
    """conv1 → pool1 → conv2 → pool2 → ip1 → relu1 (in place) → ip2, as layer dicts."""
    return [
        _learnable("conv1", "Convolution", "data", 20, 5),
        _pool("pool1", "conv1"),
        _learnable("conv2", "Convolution", "pool1", 50, 5),
        _pool("pool2", "conv2"),
        _learnable("ip1", "InnerProduct", "pool2", 500),
        {"name": "relu1", "type": "ReLU", "bottom": ["ip1"], "top": ["ip1"]},
        _learnable("ip2", "InnerProduct", "ip1", 10),
    ]


def lenet_deploy(batch: int = 1):
    """The deploy net: an Input layer taking the *scaled* digit (× 0.00390625), the body,
    and a Softmax ``prob`` (as Caffe's ``examples/mnist/lenet.prototxt``)."""
    data = {"name": "data", "type": "Input", "top": ["data"],
            "input_param": {"shape": [{"dim": [batch, *INPUT_SHAPE]}]}}
    prob = {"name": "prob", "type": "Softmax", "bottom": ["ip2"], "top": ["prob"]}
    return [data] + lenet_body() + [prob]


def lenet_train_net():
    """The training net as Caffe saves it in a snapshot: a Data layer with the input
    scale, the body, and SoftmaxWithLoss on (ip2, label)."""
    data = {"name": "mnist", "type": "Data", "top": ["data", "label"], "include": [{"phase": "TRAIN"}],
            "transform_param": {"scale": mnist.LENET_SCALE}}
    loss = {"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["ip2", "label"], "top": ["loss"]}
    return [data] + lenet_body() + [loss]


def param_shapes():
    """Layer -> [weight shape, bias shape] of LeNet."""
    return OrderedDict([("conv1", [(20, 1, 5, 5), (20,)]), ("conv2", [(50, 20, 5, 5), (50,)]),
                        ("ip1", [(500, 800), (500,)]), ("ip2", [(10, 500), (10,)])])


def xavier_fill(shape, rng) -> np.ndarray:
    """Caffe's XavierFiller (variance_norm FAN_IN): uniform in ±sqrt(3 / fan_in),
    fan_in = count / num_output."""
    fan_in = int(np.prod(shape)) // shape[0]
    scale = np.sqrt(3.0 / fan_in)
    return rng.uniform(-scale, scale, size=shape).astype(np.float32)


def init_params(seed: int):
    """LeNet's initial parameters: xavier weights, constant-0 biases (Caffe's fillers)."""
    rng = np.random.default_rng(seed)
    return OrderedDict((layer, [xavier_fill(w, rng), np.zeros(b, np.float32)])
                       for layer, (w, b) in param_shapes().items())


# -- building nets from in-memory parameters ------------------------------------------------
def deploy_prototxt_text(batch: int = 1) -> str:
    return writer.prototxt_text(writer.net_parameter(NET_NAME, lenet_deploy(batch)))


def build_net(params, batch: int = 1, force_cpu: bool = False):
    """A :class:`caffevis.model.Net` of LeNet holding ``params`` (no files left behind)."""
    from .model.net import Net

    text = deploy_prototxt_text(batch)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lenet.prototxt")
        with open(path, "w") as f:
            f.write(text)
        cnet = reader.load_caffe(path)
    for layer in cnet.layers:
        if layer.name in params:
            layer.blobs = [np.asarray(a, np.float32) for a in params[layer.name]]
    cnet.source = {"weights_sha1": params_sha1(params)}
    model, _ = convert(cnet)
    return Net.from_onnx_model(model, force_cpu=force_cpu)


def params_sha1(params) -> str:
    h = hashlib.sha1()
    for layer, arrays in params.items():
        h.update(layer.encode())
        for a in arrays:
            h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()


# -- solver -------------------------------------------------------------------------------
@dataclasses.dataclass
class SolverSettings:
    """Caffe's ``lenet_solver.prototxt`` values (and the run's length and seed)."""

    base_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 1e-4
    power: float = 0.75
    batch: int = 64
    max_iter: int = 10000
    seed: int = 0
    test_interval: int = 0  # 0: test only at the end
    log_interval: int = 100

    def validate(self):
        """Raise :class:`SettingsError` naming the first bad field."""
        for name in ("base_lr", "gamma", "power"):
            if not np.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise SettingsError(f"solver.{name}: expected a finite number >= 0, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1:
            raise SettingsError(f"solver.momentum: expected 0 <= momentum < 1, got {self.momentum}")
        if not np.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise SettingsError(f"solver.weight_decay: expected >= 0, got {self.weight_decay}")
        for name in ("batch", "max_iter"):
            if int(getattr(self, name)) < 1:
                raise SettingsError(f"solver.{name}: expected an integer >= 1, got {getattr(self, name)}")
        for name in ("test_interval", "log_interval", "seed"):
            if int(getattr(self, name)) < 0:
                raise SettingsError(f"solver.{name}: expected an integer >= 0, got {getattr(self, name)}")
        return self


class SGDSolver:
    """Caffe's SGDSolver update (``lr_policy: "inv"``, L2 regularization, momentum)."""

    def __init__(self, params, settings: SolverSettings, mults=None):
        self.params = params
        self.s = settings
        self.mults = mults or MULTS
        self.history = OrderedDict((k, [np.zeros_like(a) for a in v]) for k, v in params.items())
        self.iter = 0

    def learning_rate(self, iteration=None) -> float:
        it = self.iter if iteration is None else iteration
        return self.s.base_lr * (1.0 + self.s.gamma * it) ** (-self.s.power)

    def step(self, grads) -> float:
        """Apply one update with ``grads`` (layer -> list of diffs); returns the rate used."""
        rate = self.learning_rate()
        for layer, arrays in self.params.items():
            for i, w in enumerate(arrays):
                lr_mult, decay_mult = self.mults[layer][i]
                diff = grads[layer][i] + np.float32(self.s.weight_decay * decay_mult) * w
                hist = self.history[layer][i]
                hist *= np.float32(self.s.momentum)
                hist += np.float32(rate * lr_mult) * diff
                w -= hist
        self.iter += 1
        return rate


def batches(n_items: int, batch: int, rng):
    """Endless minibatch indices: a fresh permutation each epoch, batches spanning epochs."""
    order = rng.permutation(n_items)
    pos = 0
    while True:
        if pos + batch > len(order):
            order = np.concatenate([order[pos:], rng.permutation(n_items)])
            pos = 0
        yield order[pos:pos + batch]
        pos += batch


# -- evaluation ---------------------------------------------------------------------------
def predict(net, images, batch: int = 1000) -> np.ndarray:
    """Argmax of ``ip2`` for uint8 digits (N, 28, 28)."""
    out = []
    for i in range(0, len(images), batch):
        logits = net.forward(mnist.to_net_input(images[i:i + batch]), blobs=[LOSS_BLOB])[LOSS_BLOB]
        out.append(np.argmax(logits, axis=1))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def accuracy(net, images, labels, batch: int = 1000) -> float:
    return float(np.mean(predict(net, images, batch) == np.asarray(labels)))


# -- training -----------------------------------------------------------------------------
def gradient_session(params, batch: int, force_cpu: bool = False):
    """The training gradient graph: mean softmax loss at ``ip2``; parameters are inputs."""
    from .backward import GradientSession

    net = build_net(params, batch=batch, force_cpu=force_cpu)
    return GradientSession(net, LOSS_BLOB, params=True, params_as_inputs=True, loss="softmax")


def train(train_images, train_labels, settings: SolverSettings, test=None, progress=True,
          force_cpu=False, params=None):
    """Train LeNet; return (params, record).

    Parameters
    ----------
    train_images, train_labels : ndarray
        uint8 digits (N, 28, 28) and int labels (N,).
    settings : SolverSettings
    test : (images, labels), optional
        Evaluated every ``test_interval`` iterations (if > 0) and at the end.
    params : dict, optional
        Start from these (default: :func:`init_params` with ``settings.seed``).

    Returns
    -------
    params : OrderedDict layer -> [W, b]
    record : dict
        Settings, loss curve (mean over each ``log_interval``), test accuracies, timings.
    """
    import onnxruntime
    from tqdm import tqdm

    settings.validate()
    params = params or init_params(settings.seed)
    session = gradient_session(params, settings.batch, force_cpu)
    solver = SGDSolver(params, settings)
    # the data order has its own stream, so changing max_iter does not change the init
    rng = np.random.default_rng([settings.seed, 1])
    stream = batches(len(train_images), settings.batch, rng)
    record = {"solver": dataclasses.asdict(settings), "train_items": int(len(train_images)),
              "gradients": "caffevis.backward softmax-loss graph (params as inputs) on onnxruntime "
                           f"{onnxruntime.__version__} {session.provider}",
              "loss": [], "test": []}
    window, start = [], time.time()
    bar = tqdm(range(settings.max_iter), desc="train-lenet", unit="it", disable=not progress, mininterval=1.0)
    for it in bar:
        idx = next(stream)
        x = mnist.to_net_input(train_images[idx])
        result = session.run(x, train_labels[idx], params=params)
        loss = float(result["loss"])
        if not np.isfinite(loss):
            raise SettingsError(f"solver.base_lr: training diverged at iteration {it} (loss {loss}); "
                                f"lower the learning rate (--lr, now {settings.base_lr})")
        rate = solver.step(result["params"])
        window.append(loss)
        if len(window) == settings.log_interval or it == settings.max_iter - 1:
            record["loss"].append({"iter": it + 1, "loss": float(np.mean(window)), "lr": rate})
            bar.set_postfix(loss=f"{np.mean(window):.4f}", lr=f"{rate:.5f}")
            window = []
        if test is not None and settings.test_interval and (it + 1) % settings.test_interval == 0 \
                and it + 1 < settings.max_iter:
            acc = accuracy(build_net(params, force_cpu=force_cpu), *test)
            record["test"].append({"iter": it + 1, "accuracy": acc})
            bar.write(f"iteration {it + 1}: test accuracy {acc:.4f}")
    bar.close()
    record["train_seconds"] = round(time.time() - start, 1)
    record["seconds_per_iter"] = round(record["train_seconds"] / settings.max_iter, 4)
    if test is not None:
        acc = accuracy(build_net(params, force_cpu=force_cpu), *test)
        record["test"].append({"iter": settings.max_iter, "accuracy": acc})
        record["test_accuracy"] = acc
    return params, record


# -- output ---------------------------------------------------------------------------------
def save(params, out_dir: str, record=None, prefix: str = "lenet"):
    """Write ``prefix.prototxt`` (deploy), ``prefix.caffemodel`` (Caffe snapshot format),
    ``prefix.onnx`` and, with ``record``, ``prefix_training.json``; returns the paths."""
    from .model.net import convert_caffe

    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f"{prefix}.{ext}") for k, ext in
             (("prototxt", "prototxt"), ("caffemodel", "caffemodel"), ("onnx", "onnx"))}
    writer.write_prototxt(paths["prototxt"], writer.net_parameter(NET_NAME, lenet_deploy(1)))
    snapshot = writer.net_parameter(NET_NAME, lenet_train_net(), params=params, phase="TRAIN")
    writer.write_caffemodel(paths["caffemodel"], snapshot)
    model = convert_caffe(paths["prototxt"], paths["caffemodel"])
    # the provenance should not carry this machine's absolute paths
    _relative_source(model, out_dir)
    save_onnx(model, paths["onnx"])
    if record is not None:
        paths["record"] = os.path.join(out_dir, f"{prefix}_training.json")
        rec = dict(record)
        rec["files"] = {k: {"name": os.path.basename(p), "sha1": sha1_of(p)} for k, p in paths.items()
                        if k != "record"}
        with open(paths["record"], "w") as f:
            f.write(record_json(rec))
    return paths


def record_json(record) -> str:
    """The training record as JSON, one line per logged point (diff-friendly, compact)."""
    lines = []
    for key, value in record.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join("  " + json.dumps(v) for v in value)
            lines.append(f" {json.dumps(key)}: [\n{items}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _relative_source(model, out_dir):
    for prop in model.metadata_props:
        if prop.key == "caffevis_info":
            info = json.loads(prop.value)
            src = info.get("source", {})
            for k in ("prototxt", "weights"):
                if k in src:
                    src[k] = os.path.basename(src[k])
            prop.value = json.dumps(info)
