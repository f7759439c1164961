"""The Caffe writer: caffemodels in Caffe's snapshot format that read back identically."""

import numpy as np
import pytest

from caffevis.lenet import train
from caffevis.model.caffe import reader, schema, writer
from caffevis.errors import ModelError
from caffevis.model.net import Net
from conftest import fixture_arrays, rel_err, shared_path


def caffe_snapshot():
    return shared_path("models", "lenet_caffe", "lenet_iter_10000.caffemodel")


def test_written_caffemodel_reads_back_identically(tmp_path):
    params = train.init_params(5)
    params["ip2"][1][:] = np.linspace(-1, 1, 10, dtype=np.float32)  # non-zero bias too
    net = writer.net_parameter("LeNet", train.lenet_train_net(), params=params, phase="TRAIN")
    path = str(tmp_path / "w.caffemodel")
    writer.write_caffemodel(path, net)
    back = reader.read_caffemodel(path)
    layers = {lp.name: lp for lp in reader.layer_params(back)}
    for name, arrays in params.items():
        blobs = layers[name].blobs
        assert len(blobs) == len(arrays)
        for blob, arr in zip(blobs, arrays):
            assert list(blob.shape.dim) == list(arr.shape)
            assert blob.num == blob.channels == blob.height == blob.width == 0  # V2 shape, not legacy
            got = reader.blob_to_array(blob)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, arr)
    # and through the deploy prototxt, as any Caffe model is loaded
    proto = str(tmp_path / "deploy.prototxt")
    writer.write_prototxt(proto, writer.net_parameter("LeNet", train.lenet_deploy(1)))
    cnet = reader.load_caffe(proto, path)
    for layer in cnet.layers:
        for a, b in zip(layer.blobs, params.get(layer.name, [])):
            np.testing.assert_array_equal(a, b)


def test_snapshot_layout_is_caffes():
    """Same layers, types, tops and phase as the snapshot Caffe wrote for its own LeNet."""
    theirs = reader.read_caffemodel(caffe_snapshot())
    ours = writer.net_parameter("LeNet", train.lenet_train_net(), params=train.init_params(0), phase="TRAIN")
    assert ours.name == theirs.name
    assert [(l.name, l.type, list(l.bottom), list(l.top), l.phase) for l in ours.layer] == \
        [(l.name, l.type, list(l.bottom), list(l.top), l.phase) for l in theirs.layer]
    for a, b in zip(ours.layer, theirs.layer):
        assert [list(x.shape.dim) for x in a.blobs] == [list(x.shape.dim) for x in b.blobs], a.name
        assert [(p.lr_mult, p.decay_mult) for p in a.param] == [(p.lr_mult, p.decay_mult) for p in b.param]
        for field in ("convolution_param", "pooling_param", "inner_product_param", "transform_param"):
            if b.HasField(field):
                # compare the fields our schema knows (Caffe's also carries fillers)
                known = lambda msg: [(f.name, v) for f, v in msg.ListFields()]  # noqa: E731
                assert known(getattr(a, field)) == known(getattr(b, field)), (a.name, field)
        assert [p.ListFields() for p in a.param] == [p.ListFields() for p in b.param]


def test_caffes_weights_rewritten_by_us_give_caffes_blobs(tmp_path, tmp_cache):
    cnet = reader.load_caffe(shared_path("models", "lenet_caffe", "lenet.prototxt"), caffe_snapshot())
    params = {l.name: l.blobs for l in cnet.layers if l.blobs}
    paths = train.save(params, str(tmp_path))
    net = Net.from_caffe(paths["prototxt"], paths["caffemodel"])
    x = fixture_arrays("lenet", "input.npy")
    ref = fixture_arrays("lenet", "blobs.npz")
    out = net.forward(x)
    for blob in ("conv1", "pool2", "ip1", "ip2", "prob"):
        assert rel_err(out[blob], ref[blob]) <= 1e-5, blob
    onnx_out = Net.from_onnx(paths["onnx"]).forward(x)
    np.testing.assert_array_equal(onnx_out["ip2"], out["ip2"])


def test_prototxt_text_parses_back_to_the_same_net(tmp_path):
    net = writer.net_parameter("LeNet", train.lenet_deploy(64))
    text = writer.prototxt_text(net)
    path = tmp_path / "x.prototxt"
    path.write_text(text)
    assert reader.read_prototxt(str(path)) == net
    assert "blobs" not in text
    cnet = reader.load_caffe(str(path))
    assert cnet.inputs == {"data": (64, 1, 28, 28)}
    assert [l.name for l in cnet.layers] == ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "prob"]


def test_bad_layer_specs_raise_model_errors():
    with pytest.raises(ModelError, match="layer 'c'"):
        writer.layer_parameter({"name": "c", "type": "Convolution", "convolution_param": {"no_such_field": 1}})
    with pytest.raises(ModelError, match="unknown layer"):
        writer.net_parameter("n", [{"name": "a", "type": "ReLU"}], params={"b": [np.zeros(2)]})


def test_blob_proto_keeps_float32_values_exactly():
    a = np.array([[1e-30, -3.4e38], [np.pi, 1 / 3]], np.float32)
    blob = writer.blob_proto(a)
    again = schema.BlobProto.FromString(blob.SerializeToString())
    np.testing.assert_array_equal(reader.blob_to_array(again), a)
