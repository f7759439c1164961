"""caffevis: the Deep Visualization Toolbox and Zeiler & Fergus deconvnet on ONNX Runtime."""
import os

from .limits import MAX_IMAGE_PIXELS

# OpenBLAS' idle threads otherwise spin for tens of milliseconds after each NumPy matrix
# product, taking the cores from the ONNX Runtime run that follows (the NumPy deconvnet,
# the optimizer's regularizers); 2^18 cycles (about 0.1 ms) keeps them awake between the
# back-to-back products of one layer. Effective when caffevis is imported before NumPy (the CLI).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "18")
# OpenCV refuses to decode an image whose header declares more pixels than this (checked
# before any pixel is decoded: a small PNG declaring 20000 x 20000 would take 30 s and
# 6 GB); read at OpenCV's first decode.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))


def serve(settings=None, model=None, host="127.0.0.1", port=8600, token=None, **kwargs):
    """The viewer in a web browser, served in the background; returns its URL (an IFrame in Jupyter).

    See :func:`caffevis.viewer.web.serve`.
    """
    from .viewer.web import serve as _serve

    return _serve(settings, model, host, port, token, **kwargs)
