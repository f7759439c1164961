"""ONNX Runtime sessions: CUDA when it works, else CPU.

Which provider runs, and why, is logged on the ``caffevis.runtime`` logger: at INFO level
(shown by ``--verbose`` and by ``caffevis info``) normally, as a WARNING only when a GPU is
present but the CUDA provider cannot use it, the one case where the CPU fallback is news.
"""
from __future__ import annotations

import glob
import logging
import os

import onnxruntime as ort

log = logging.getLogger("caffevis.runtime")
_announced = set()


def _say(msg, warn=False):
    if msg not in _announced:
        _announced.add(msg)
        (log.warning if warn else log.info)(msg)


def gpu_present() -> bool:
    """An NVIDIA GPU is visible to this process (its device nodes or the driver's GPU list)."""
    if glob.glob("/dev/nvidia[0-9]*"):
        return True
    gpus = "/proc/driver/nvidia/gpus"
    return os.path.isdir(gpus) and bool(os.listdir(gpus))


def choose_providers(force_cpu: bool = False):
    """Providers to try in order, and why. ``CAFFEVIS_FORCE_CPU=1`` also forces CPU."""
    if force_cpu or os.environ.get("CAFFEVIS_FORCE_CPU", "") not in ("", "0"):
        return ["CPUExecutionProvider"], "CPU forced by settings/flag"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return ["CPUExecutionProvider"], "CUDA provider not in this onnxruntime build"
    if not gpu_present():
        return ["CPUExecutionProvider"], "no GPU on this machine"
    return ["CUDAExecutionProvider", "CPUExecutionProvider"], None


def provider_report(force_cpu: bool = False) -> str:
    """One line for ``caffevis info``: the provider sessions will use and why."""
    providers, why = choose_providers(force_cpu)
    if providers[0] == "CUDAExecutionProvider":
        return "CUDAExecutionProvider (GPU present; CPU for what CUDA cannot run)"
    return f"CPUExecutionProvider ({why})"


def make_session(model_bytes, force_cpu: bool = False, threads: int = 0) -> ort.InferenceSession:
    """Create a session preferring CUDA; fall back to CPU, saying so (see the module doc)."""
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
            _say("running on CPUExecutionProvider: a GPU is present but the CUDA provider did not start "
                 "(CUDA or cuDNN libraries not found?)", warn=True)
            return sess  # ORT already fell back to CPU inside this session
        _say(f"running on CPUExecutionProvider: a GPU is present but the {why}", warn=True)
    else:
        _say(f"running on CPUExecutionProvider: {why}")
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
