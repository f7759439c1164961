"""GPU readiness without a GPU: every operator of the forward and gradient graphs has a kernel in
the pinned onnxruntime-gpu's CUDA kernel table (caffevis/data/ort_cuda_kernels.json)."""
import os
import re
from importlib import metadata

import onnx
from onnx import helper

from caffevis.cuda_kernels import check_net_graphs, cpu_fallbacks, has_cuda_kernel, kernel_table
from caffevis.model.net import Net
from conftest import REPO, fixture_net


def test_table_belongs_to_the_pinned_and_installed_version():
    source, kernels = kernel_table()
    pin = re.search(r'"onnxruntime-gpu==([0-9.]+)"', open(os.path.join(REPO, "setup.py")).read()).group(1)
    assert source["for_package"].startswith(f"onnxruntime-gpu=={pin} ")
    assert metadata.version("onnxruntime-gpu") == pin
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    # the table's ranges: MaxPool-with-indices and ScatterElements(add) are what the gradient graphs need
    assert has_cuda_kernel("ai.onnx", "MaxPool", 12) and has_cuda_kernel("ai.onnx", "ScatterElements", 16)
    assert not has_cuda_kernel("ai.onnx", "ScatterElements", 10)  # before the table's first version
    assert len(kernels["ai.onnx"]) > 50


def _assert_all_on_cuda(net, expect_ops=()):
    report, seen = check_net_graphs(net)
    assert len(report) > 10
    assert {name: ops for name, ops in report.items() if ops} == {}
    types = {t for _, t, _ in seen}
    for op in expect_ops:
        assert op in types, op
    return report


def test_shipped_lenet_forward_gradient_and_training_graphs_run_on_cuda():
    net = Net.load(os.path.join(REPO, "model_zoo", "lenet", "lenet.onnx"), force_cpu=True)
    report = _assert_all_on_cuda(net, ("Conv", "MaxPool", "ScatterElements", "Gemm"))
    assert any("one-channel" in name for name in report)
    from caffevis.backward import build_gradient_model

    training, _ = build_gradient_model(net, "ip2", params=True, params_as_inputs=True, loss="softmax")
    assert cpu_fallbacks(training) == []


def test_squeezenet_and_caffenet_shaped_graphs_run_on_cuda():
    _assert_all_on_cuda(fixture_net("squeezenet_v1.0"), ("Concat", "Split"))
    _assert_all_on_cuda(fixture_net("caffenet_small"), ("LRN",))
    _assert_all_on_cuda(fixture_net("alexnet_small"), ("LRN",))


def test_an_operator_without_a_cuda_kernel_is_listed():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3, 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Det", ["x"], ["d"]), helper.make_node("Relu", ["d"], ["y"])],
                              "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert cpu_fallbacks(model) == [("ai.onnx", "Det", 11)]
