"""The model: a forward-only :class:`Net` on ONNX Runtime, the one session factory
(:mod:`.runtime`), the ONNX graph builder (:mod:`.onnx_graph`) and the Caffe importer
and converter (:mod:`.caffe`)."""
from .net import Net, convert_caffe, default_cache_dir, parse_model_spec
from .runtime import Runtime

__all__ = ["Net", "Runtime", "convert_caffe", "default_cache_dir", "parse_model_spec"]
