"""caffevis: the Deep Visualization Toolbox and Zeiler & Fergus deconvnet on ONNX Runtime."""
import os

# OpenBLAS' idle threads otherwise spin for tens of milliseconds after each NumPy matrix
# product, taking the cores from the ONNX Runtime run that follows (the NumPy deconvnet,
# the optimizer's regularizers); 2^18 cycles (about 0.1 ms) keeps them awake between the
# back-to-back products of one layer. Effective when caffevis is imported before NumPy (the CLI).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "18")


def serve(settings=None, model=None, host="127.0.0.1", port=8600, token=None, **kwargs):
    """The viewer in a web browser, served in the background; returns its URL (an IFrame in Jupyter).

    See :func:`caffevis.viewer.web.serve`.
    """
    from .viewer.web import serve as _serve

    return _serve(settings, model, host, port, token, **kwargs)
