"""The committed torchvision exports (tools/export_torchvision.py) are self-consistent without
torch: onnxruntime's forward of each .onnx matches the logits PyTorch recorded, and the
recorded intermediate tensor exists and carries the activation the seeds were made from."""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import REPO, rel_err

DATA = os.path.join(REPO, "tests", "data", "torchvision")
with open(os.path.join(DATA, "manifest.json"), encoding="utf-8") as _f:
    MANIFEST = json.load(_f)
MODELS = sorted(MANIFEST["models"])
# the issue's list (#14); reduced-width variants carry these names
REQUIRED = {"resnet18", "squeezenet1_1", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
            "densenet121", "vgg11_bn", "shufflenet_v2_x0_5"}


def load(name):
    entry = MANIFEST["models"][name]
    model = onnx.load(os.path.join(DATA, entry["onnx"]))
    arrays = np.load(os.path.join(DATA, entry["npz"]))
    return entry, model, arrays


def run_with_output(model, tensor, x):
    """onnxruntime on ``model`` with ``tensor`` added as a graph output: (logits, tensor)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    info = [vi for vi in inferred.graph.value_info if vi.name == tensor]
    assert info, f"{tensor} has no inferred type"
    model.graph.output.extend(info)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["logits", tensor], {"input": x})


def test_manifest_lists_the_issue_architectures():
    assert REQUIRED <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_forward_matches_pytorch_logits(name):
    entry, model, arrays = load(name)
    onnx.checker.check_model(model)
    logits, act = run_with_output(model, entry["act_tensor"], arrays["input"])
    ref = arrays["logits"]
    assert logits.shape == ref.shape == (1, 10)
    span = float(ref.max() - ref.min())
    assert span > 0
    assert np.abs(logits - ref).max() <= MANIFEST["forward_tol"] * span
    # the activation seed is the recorded channel's own forward map (the viewer's seed)
    seed_map = arrays["act_seed_map"]
    assert list(act.shape) == entry["act_shape"]
    a = act[0, int(arrays["act_channel"])]
    assert np.abs(a - seed_map).max() <= MANIFEST["forward_tol"] * float(np.ptp(act))
    assert int(arrays["logit_unit"]) == int(np.argmax(ref))


@pytest.mark.parametrize("name", MODELS)
def test_recorded_names_ops_and_tolerances_describe_the_graph(name):
    entry, model, arrays = load(name)
    outputs = {o for node in model.graph.node for o in node.output}
    assert str(arrays["act_tensor"]) == entry["act_tensor"] in outputs
    assert sorted({n.op_type for n in model.graph.node}) == entry["op_types"]
    assert {i.version for i in model.opset_import if i.domain in ("", "ai.onnx")} == {entry["opset"]}
    keys = ["grad_logit", "grad_act"] + (
        ["guided_logit", "deconv_logit", "guided_act", "deconv_act"] if entry["captum"] else [])
    for key in keys:
        assert arrays[key].shape == arrays["input"].shape
        assert np.abs(arrays[key]).max() > 0, key
        measured = float(arrays["f32_vs_f64_" + key])
        assert float(arrays["tol_" + key]) == max(MANIFEST["grad_tol_floor"], 5 * measured)
    # the ReLU rules change the gradient wherever the graph has Relu nodes on the path
    if entry["captum"] and "Relu" in entry["op_types"]:
        assert rel_err(arrays["guided_logit"], arrays["grad_logit"]) > 0.01
        assert rel_err(arrays["deconv_logit"], arrays["grad_logit"]) > 0.01
