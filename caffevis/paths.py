"""Where caffevis finds its own files: ``settings/``, ``model_zoo/`` and the package's ``data/``.

In a source checkout (``pip install -e .``) that is the repository root. A wheel
install ships ``settings/*.yaml`` and the trained ``model_zoo/lenet`` under
``<prefix>/share/caffevis``; ``$CAFFEVIS_ROOT`` overrides both.
"""
import functools
import os
import sys

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _project_root():
    env = os.environ.get("CAFFEVIS_ROOT")
    if env:
        return os.path.abspath(env)
    if os.path.isdir(os.path.join(_PACKAGE_PARENT, "settings")):
        return _PACKAGE_PARENT
    shared = os.path.join(sys.prefix, "share", "caffevis")
    if os.path.isdir(os.path.join(shared, "settings")):
        return shared
    return _PACKAGE_PARENT


REPO_ROOT = _project_root()

#: Small data files shipped inside the package (``%CAFFEVIS_DATA%`` in settings paths): the 1000
#: ILSVRC 2012 class names, onnxruntime's CUDA kernel table.
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@functools.lru_cache(maxsize=None)
def code_version(*modules) -> str:
    """A short hash of caffevis source files (paths relative to the package): cached
    conversions and gradient graphs are rebuilt whenever the code that made them changes."""
    import hashlib

    pkg = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha1()
    for rel in modules:
        with open(os.path.join(pkg, rel), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:12]


_LAYER_FILES = tuple(os.path.join("layers", f) for f in sorted(os.listdir(os.path.join(os.path.dirname(__file__), "layers")))
                     if f.endswith(".py"))
# the code a converted model and a gradient graph depend on (their cache keys hash it)
CONVERTER_FILES = tuple(os.path.join(*p) for p in (
    ("model", "onnx_graph.py"), ("model", "caffe", "schema.py"), ("model", "caffe", "reader.py"),
    ("model", "caffe", "layers.py"), ("model", "caffe", "to_onnx.py"))) + _LAYER_FILES
GRADIENT_FILES = CONVERTER_FILES + (os.path.join("backward", "graph.py"), os.path.join("backward", "rules.py"))


def blob_file_name(blob: str) -> str:
    """A blob name as a path part of the unit-jpg and patch trees.

    Caffe names keep their slashes (``fire2/concat`` nests, as DeepVis' trees do). ONNX
    tensor names from PyTorch start with one (``/layer1/layer1.0/relu/Relu_output_0``), which
    would make the path absolute: there every ``/`` becomes ``_`` (the leading one dropped).
    """
    if not blob.startswith("/"):
        return blob
    name = blob.strip("/").replace("/", "_")
    return name if name not in ("", ".", "..") else f"_{name}_"
