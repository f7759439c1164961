"""ONNX Runtime sessions: CUDA when it works, else CPU, said in one line."""
from __future__ import annotations

import os
import sys

import onnxruntime as ort

_announced = set()


def _say(msg):
    if msg not in _announced:
        _announced.add(msg)
        print(f"caffevis: {msg}", file=sys.stderr)


def choose_providers(force_cpu: bool = False):
    """Providers to try in order, and why. ``CAFFEVIS_FORCE_CPU=1`` also forces CPU."""
    if force_cpu or os.environ.get("CAFFEVIS_FORCE_CPU", "") not in ("", "0"):
        return ["CPUExecutionProvider"], "CPU forced by settings/flag"
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], None
    return ["CPUExecutionProvider"], "CUDA provider not in this onnxruntime build"


def make_session(model_bytes, force_cpu: bool = False, threads: int = 0) -> ort.InferenceSession:
    """Create a session preferring CUDA; fall back to CPU with ONE clear line."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # ORT's own provider-failure dumps are replaced by our line
    if threads:
        opts.intra_op_num_threads = threads
    # No busy-waiting between runs: the viewer's UI, input and loader threads share the cores.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers, why = choose_providers(force_cpu)
    if providers[0] == "CUDAExecutionProvider":
        ort.set_default_logger_severity(4)  # silence ORT's multi-line EP failure dump
        try:
            sess = ort.InferenceSession(model_bytes, opts, providers=providers)
        except Exception as err:  # CUDA libraries missing or broken: fall back
            why = f"CUDA provider failed to start ({str(err).splitlines()[0][:120]})"
            sess = None
        finally:
            ort.set_default_logger_severity(2)
        if sess is not None:
            if sess.get_providers()[0] == "CUDAExecutionProvider":
                _say("running on CUDAExecutionProvider (GPU)")
                return sess
            why = "CUDA provider unavailable (no GPU or CUDA libraries not found)"
            _say(f"running on CPUExecutionProvider: {why}")
            return sess  # ORT already fell back to CPU inside this session
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    _say(f"running on CPUExecutionProvider: {why}")
    return sess
