"""The :class:`Net`: a Caffe model run by ONNX Runtime, every blob by its Caffe name."""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict

import numpy as np
import onnx

from .caffe import reader
from .caffe.layers import plan as plan_layers
from .caffe.to_onnx import FORMAT_VERSION, assign_versions, convert, param_name
from ..errors import InputError, ModelError
from ..io import save_onnx
from .onnx_graph import data_input, prune_to_outputs, tensor_bytes
from .runtime import Runtime

from ..paths import REPO_ROOT  # noqa: E402

PART_MAX_WEIGHT_BYTES = 64 << 20  # largest weight copy a partial forward session may hold


def default_cache_dir() -> str:
    """``$CAFFEVIS_CACHE``, else ``model_zoo/cache`` in a source checkout, else ~/.cache."""
    env = os.environ.get("CAFFEVIS_CACHE")
    if env:
        return env
    zoo = os.path.join(REPO_ROOT, "model_zoo")
    if os.path.isdir(zoo) and os.access(zoo, os.W_OK):
        return os.path.join(zoo, "cache")
    return os.path.join(os.path.expanduser("~"), ".cache", "caffevis")


def parse_model_spec(spec: str):
    """``model.onnx`` or ``deploy.prototxt:weights.caffemodel`` -> (kind, paths)."""
    if spec.endswith(".onnx"):
        return "onnx", (spec,)
    if ":" in spec:
        proto, weights = spec.rsplit(":", 1)
        return "caffe", (proto, weights)
    raise InputError(f"{spec}: expected MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel")


class Net:
    """A network with Caffe semantics, run by ONNX Runtime.

    Build with :meth:`from_caffe`, :meth:`from_onnx` or :meth:`load`. ``forward`` returns
    every blob by name. A Net runs forward only: backward passes from any blob are
    :func:`caffevis.backward.backward`.

    Attributes
    ----------
    input_name : str
        The data blob (``'data'`` for Caffe nets).
    input_shape : tuple
        Input shape from the prototxt (its batch size included).
    blob_names : list of str
        Blobs in Caffe's ``net.blobs`` order, input first.
    blob_shapes : dict
        Blob name -> shape at the prototxt's batch size.
    runtime : Runtime
        The session factory (provider, threads, cache directory) of every session of this net.
    layers : list of LayerPlan
        Caffe layers with type, bottoms, tops, resolved attributes and parameters
        (empty for ONNX models that did not come from Caffe).
    """

    blocked = None  # why a foreign ONNX model has no layers (the node without a layer type)

    def __init__(self, model: onnx.ModelProto, plans=None, force_cpu=False, cache_dir=None, info=None, threads=0):
        self.model = model
        # every session of this net (forward, parts, gradient graphs, the optimizer's and
        # the scan's) comes from this one factory
        self.runtime = Runtime(force_cpu=force_cpu, threads=threads, cache_dir=cache_dir or default_cache_dir())
        self.layers = plans or []
        self.info = info or {}
        self.name = self.info.get("name", model.graph.name or "model")
        graph_input = data_input(model)
        self.input_name = graph_input.name
        if self.info:
            self.input_shape = tuple(self.info["inputs"][self.input_name])
            self.blob_names = list(self.info["blob_order"])
            self.blob_shapes = {k: tuple(v) for k, v in self.info["blob_shapes"].items()}
        else:
            dims = graph_input.type.tensor_type.shape.dim
            self.input_shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)
            self.blob_names = [self.input_name] + [o.name for o in model.graph.output]
            self.blob_shapes = {}
        dims = graph_input.type.tensor_type.shape.dim
        # models exported with a fixed batch (many zoo models) run in chunks of that size
        self._fixed_batch = dims[0].dim_value if len(dims) and dims[0].dim_value > 0 else None
        # what session errors call the model: its prototxt, else its name
        self.label = self.info.get("source", {}).get("prototxt") or self.name
        self._session = self.runtime.session(model, self.label)
        self._outputs = [o.name for o in self._session.get_outputs()]
        if not self.blob_shapes:
            self.blob_shapes = self._probe_shapes()
        self._part_sessions = OrderedDict()  # frozenset(outputs) -> session of the model's part
        self.versions = None
        if self.layers:
            self.versions = assign_versions(self.layers, [self.input_name])

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_caffe(cls, prototxt: str, weights: str, force_cpu=False, cache_dir=None, use_cache=True, threads=0):
        """Load a Caffe deploy prototxt + caffemodel, converting (and caching) to ONNX."""
        for path, what in ((prototxt, "prototxt"), (weights, "caffemodel")):
            if not os.path.isfile(path):
                raise ModelError(f"{path}: {what} not found")
        cache_dir = cache_dir or default_cache_dir()
        key = _cache_key(prototxt, weights)
        cached = os.path.join(cache_dir, key, "model.onnx")
        if use_cache and os.path.isfile(cached):
            try:
                return cls.from_onnx(cached, force_cpu=force_cpu, cache_dir=cache_dir, threads=threads)
            except ModelError:
                pass  # a stale or damaged cache entry is rebuilt below
        model = convert_caffe(prototxt, weights)
        if use_cache:
            save_onnx(model, cached)
        return cls.from_onnx_model(model, force_cpu=force_cpu, cache_dir=cache_dir, threads=threads)

    @classmethod
    def from_onnx(cls, path: str, force_cpu=False, cache_dir=None, threads=0, input_size=None):
        """Load an ONNX file (converted by caffevis, or any other single-input model)."""
        if not os.path.isfile(path):
            raise ModelError(f"{path}: ONNX model not found")
        try:
            model = onnx.load(path)
        except Exception as err:
            raise ModelError(f"{path}: not a readable ONNX model ({err})") from None
        return cls.from_onnx_model(model, force_cpu=force_cpu, cache_dir=cache_dir, threads=threads,
                                   input_size=input_size)

    @classmethod
    def from_foreign_onnx(cls, model, force_cpu=False, cache_dir=None, threads=0, input_size=None):
        """An ONNX model from any exporter: its nodes imported as layers
        (:mod:`caffevis.model.onnx_import`), blobs named by its tensors. A node without a
        layer type leaves the net forward-only; ``blocked`` then says which."""
        from .onnx_import import import_onnx

        imported = import_onnx(model, input_hw=input_size)
        exposed = _expose_all_tensors(imported.model)
        # the blobs are the float tensors (a forward-only net may end in an ArgMax, say)
        blobs = {o.name for o in exposed.graph.output} | {data_input(exposed).name}
        info = dict(imported.info, blob_order=[b for b in imported.info["blob_order"] if b in blobs])
        net = cls(exposed, imported.plans, force_cpu=force_cpu, cache_dir=cache_dir, info=info, threads=threads)
        net.blocked = imported.blocked
        if net.blocked:  # said once at load; backward features repeat it when asked for
            import sys

            print(f"caffevis: {net.name}: forward only: {net.blocked}", file=sys.stderr)
        return net

    @classmethod
    def from_onnx_model(cls, model, force_cpu=False, cache_dir=None, threads=0, input_size=None):
        meta = {p.key: p.value for p in model.metadata_props}
        if "caffevis_info" not in meta:
            return cls.from_foreign_onnx(model, force_cpu=force_cpu, cache_dir=cache_dir, threads=threads,
                                         input_size=input_size)
        if meta.get("caffevis_format") != FORMAT_VERSION:
            raise ModelError("ONNX file was converted by an incompatible caffevis version; convert again")
        info = json.loads(meta["caffevis_info"])
        plans = _plans_from_model(model, meta["caffevis_prototxt"], info)
        return cls(model, plans, force_cpu=force_cpu, cache_dir=cache_dir, info=info, threads=threads)

    @classmethod
    def load(cls, spec: str, force_cpu=False, cache_dir=None, threads=0):
        """Load ``model.onnx`` or ``deploy.prototxt:weights.caffemodel``."""
        kind, paths = parse_model_spec(spec)
        if kind == "onnx":
            return cls.from_onnx(paths[0], force_cpu=force_cpu, cache_dir=cache_dir, threads=threads)
        return cls.from_caffe(*paths, force_cpu=force_cpu, cache_dir=cache_dir, threads=threads)

    # -- runtime ------------------------------------------------------------------
    @property
    def force_cpu(self) -> bool:
        return self.runtime.force_cpu

    @property
    def threads(self) -> int:
        return self.runtime.threads

    @property
    def cache_dir(self) -> str:
        return self.runtime.cache_dir

    # -- forward ------------------------------------------------------------------
    @property
    def provider(self) -> str:
        return self._session.get_providers()[0]

    def require_layers(self, feature: str):
        """ModelError naming what keeps ``feature`` (backward, receptive fields, …) from
        this net: the ONNX node without a layer type."""
        if not self.layers:
            why = self.blocked or "this ONNX file has no layer graph"
            raise ModelError(f"{feature} needs the net's layers; {why} (forward still works)")

    def check_input(self, data) -> np.ndarray:
        data = np.asarray(data)
        want = self.input_shape[1:]
        if data.ndim == len(want):
            data = data[None]
        if data.ndim != len(want) + 1 or tuple(data.shape[1:]) != tuple(want):
            raise InputError(f"input has shape {tuple(data.shape)}; the net expects (N, {', '.join(map(str, want))})")
        return np.ascontiguousarray(data, dtype=np.float32)

    def forward(self, data, blobs=None) -> "OrderedDict[str, np.ndarray]":
        """Run the net; return blob name -> array in Caffe order (input included).

        Parameters
        ----------
        data : ndarray, (N, C, H, W) or (C, H, W)
            Preprocessed input.
        blobs : list of str, optional
            Only these blobs. Early blobs run a session holding only the layers they
            depend on (ORT runs every node of a session), when those layers' weights are
            small; otherwise the full net runs and only these are copied out.
        """
        data = self.check_input(data)
        names = [b for b in (blobs or self.blob_names) if b != self.input_name]
        unknown = [b for b in names if b not in self._outputs]
        if unknown:
            raise InputError(f"unknown blob '{unknown[0]}' (blobs: {', '.join(self.blob_names)})")
        values = self._run(names, data)
        out = OrderedDict()
        for b in blobs or self.blob_names:
            out[b] = data if b == self.input_name else values[names.index(b)]
        return out

    def forward_all(self, data) -> dict:
        """Every tensor version: the blobs plus ``blob@layer`` values later overwritten
        by in-place layers (what each layer actually read)."""
        data = self.check_input(data)
        out = dict(zip(self._outputs, self._run(self._outputs, data)))
        out[self.input_name] = data
        return out

    def _run(self, names, data):
        session = self._session_for(names)
        if self._fixed_batch and data.shape[0] != self._fixed_batch:
            k = self._fixed_batch
            if data.shape[0] % k:
                raise InputError(f"this model takes batches of exactly {k}; got {data.shape[0]} images")
            parts = [session.run(names, {self.input_name: data[i:i + k]}) for i in range(0, len(data), k)]
            return [np.concatenate([p[j] for p in parts]) for j in range(len(names))]
        return session.run(names, {self.input_name: data})

    def _session_for(self, names):
        """The full session, or one running only the layers ``names`` depend on (ORT runs
        every node of a session). The part gets its own copy of its weights, so it is made
        only when those are small: the convolutional part of a net with big FC layers."""
        if len(names) == len(self._outputs):
            return self._session
        key = frozenset(names)
        if key in self._part_sessions:
            self._part_sessions.move_to_end(key)
            return self._part_sessions[key] or self._session
        session = None
        part = prune_to_outputs(self.model, names)
        if part is not None:
            sub, weight_bytes, dropped = part
            total = sum(tensor_bytes(t) for t in self.model.graph.initializer)
            if dropped and weight_bytes <= min(PART_MAX_WEIGHT_BYTES, total // 2):
                session = self.runtime.session(sub, self.label)
        self._part_sessions[key] = session  # None: the full session serves these outputs
        while len(self._part_sessions) > 4:
            self._part_sessions.popitem(last=False)
        return session or self._session

    # -- parameters ---------------------------------------------------------------
    @property
    def params(self) -> "OrderedDict[str, list]":
        """Layer name -> list of parameter arrays (Caffe blob order)."""
        return OrderedDict((p.name, p.params) for p in self.layers if p.params)

    def _probe_shapes(self):
        x = np.zeros(self.input_shape, np.float32)
        values = self._session.run(self._outputs, {self.input_name: x})
        shapes = {self.input_name: tuple(self.input_shape)}
        shapes.update({n: tuple(v.shape) for n, v in zip(self._outputs, values)})
        return shapes


def convert_caffe(prototxt: str, weights: str, dtype=np.float32):
    """Read and convert a Caffe model to an ONNX ``ModelProto`` (metadata included)."""
    model, _ = convert(reader.load_caffe(prototxt, weights), dtype=dtype)
    return model


def _cache_key(prototxt, weights):
    from ..paths import CONVERTER_FILES, code_version

    h = hashlib.sha1((FORMAT_VERSION + code_version(*CONVERTER_FILES)).encode())
    for path in (prototxt, weights):
        st = os.stat(path)
        h.update(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode())
    name = os.path.splitext(os.path.basename(weights))[0]
    return f"{name}-{h.hexdigest()[:12]}"


def _plans_from_model(model, prototxt_text, info):
    """Rebuild the Caffe layer plans of a converted model from its metadata and weights."""
    cnet = reader.load_caffe(f"{info.get('name', 'model')} (embedded deploy)", text=prototxt_text)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for layer in cnet.layers:
        blobs, i = [], 0
        while param_name(layer.name, i) in inits:
            blobs.append(inits[param_name(layer.name, i)].astype(np.float32))
            i += 1
        layer.blobs = blobs
    cnet.source = info.get("source", {})
    return plan_layers(cnet)


def _expose_all_tensors(model):
    """Make every float tensor computed from the input of a foreign ONNX model a graph
    output, in the order the nodes produce them (weights reshaped at load time are not blobs)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    typed = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    inits = {i.name for i in model.graph.initializer}
    from_input = {i.name for i in model.graph.input if i.name not in inits}
    outputs = []
    for node in model.graph.node:
        if not any(i in from_input for i in node.input):
            continue
        for out in node.output:
            if not out:
                continue
            from_input.add(out)
            vi = typed.get(out) or onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)
            if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
                outputs.append(vi)
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    return model
