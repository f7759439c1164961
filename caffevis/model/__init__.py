"""The model: a forward-only Net on ONNX Runtime, its session factory, the ONNX graph
builder and the Caffe importer."""
