"""ONNX Runtime sessions: the one factory every session of caffevis comes from.

:class:`Runtime` holds the choices every session shares (CUDA when it works, else CPU;
intra-op threads; no spin-waiting; where converted models and gradient graphs are cached).
:meth:`Runtime.session` makes a :class:`Session` whose errors, at creation or run, are one
:class:`~caffevis.errors.ModelError` line naming the model and, where ORT says it, the node
(named after the Caffe layer).

Which provider runs, and why, is logged on the ``caffevis.runtime`` logger: at INFO level
(shown by ``--verbose`` and by ``caffevis info``) normally, as a WARNING only when a GPU is
present but the CUDA provider cannot use it, the one case where the CPU fallback is news.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os
import re

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from ..errors import ModelError

log = logging.getLogger("caffevis.runtime")
_announced = set()
# ORT's exception types (Fail, InvalidArgument, InvalidGraph, RuntimeException, ...)
ORT_ERRORS = tuple(v for v in vars(_ort_state).values() if isinstance(v, type) and issubclass(v, Exception)) \
    + (RuntimeError,)


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


def describe_ort_error(what: str, err: Exception) -> str:
    """One line: ``what``, the node ORT names (if any) and the first line of its message."""
    text = " ".join(str(err).split())
    node = re.search(r"Name:'([^']*)'", text) or re.search(r"node (?:name )?'?([\w:/@.\-]+)'?", text)
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", text)
    where = f" at node '{node.group(1)}'" if node else ""
    return f"{what}: ONNX Runtime failed{where}: {text[:300]}"


class Session:
    """An ``ort.InferenceSession`` whose ``run`` errors are one-line ModelErrors."""

    def __init__(self, inner: ort.InferenceSession, name: str):
        self._inner, self.name = inner, name

    def run(self, outputs, feeds):
        try:
            return self._inner.run(outputs, feeds)
        except ORT_ERRORS as err:
            raise ModelError(describe_ort_error(self.name, err)) from None

    def get_providers(self):
        return self._inner.get_providers()

    def get_outputs(self):
        return self._inner.get_outputs()

    def end_profiling(self) -> str:
        """The profile file of a session made with ``profile_prefix``."""
        return self._inner.end_profiling()


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How a net's sessions run.

    Attributes
    ----------
    force_cpu : bool
        Never try CUDA.
    threads : int
        ORT intra-op threads; 0 = all cores.
    cache_dir : str
        Where converted models and gradient graphs are cached.
    """

    force_cpu: bool = False
    threads: int = 0
    cache_dir: str = ""

    def session(self, model, name: str, profile_prefix: str | None = None) -> Session:
        """A session for ``model`` (a ModelProto or its bytes); ``name`` is what errors call it;
        ``profile_prefix``: ORT's profiler writes there (tools/bench.py)."""
        data = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
        return Session(make_session(data, self.force_cpu, self.threads, name, profile_prefix), name)


def _options(threads, profile_prefix=None):
    opts = ort.SessionOptions()
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    opts.log_severity_level = 3  # ORT's own provider-failure dumps are replaced by our line
    if threads:
        opts.intra_op_num_threads = threads
    # No busy-waiting between runs: the viewer's UI, input and loader threads share the
    # cores, and so do the optimizer's blur and percentile steps between runs.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def make_session(model_bytes, force_cpu: bool = False, threads: int = 0, name: str = "model",
                 profile_prefix: str | None = None) -> ort.InferenceSession:
    """Create an ORT session preferring CUDA; fall back to CPU, saying so (see the module doc).
    Use :meth:`Runtime.session` (which wraps run errors too) rather than this."""
    opts = _options(threads, profile_prefix)
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
    try:
        return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except ORT_ERRORS as err:
        raise ModelError(describe_ort_error(name, err)) from None
