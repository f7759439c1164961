"""What an optimization run leaves on disk: images, ``info.txt``/``info.json``/``info.h5``,
and the file-name prefixes that name them."""
from __future__ import annotations

import dataclasses
import io
import json
import os

import numpy as np

from ..errors import InputError, SettingsError
from ..images import write_image
from ..imaging import norm01, norm01c, to_uint8
from ..input_space import InputSpace
from ..io import atomic_path
from .loop import OptimizeResult
from .params import OptimizeParams

DEFAULT_TEMPLATE = "%(p.push_layer)s_%(p.push_channel)04d_%(p.rand_seed)d"
DEFAULT_PREFIX = "optimize_results/opt"


def to_display(x, space: InputSpace):
    """(C, H, W) input-space image -> (H, W, 3) RGB (channels swapped; one channel repeated)."""
    img = space.to_rgb(x)
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


def render_best_x(x, space: InputSpace) -> np.ndarray:
    """``best_X.jpg``: the image with 0 (the mean) at grey, uint8 RGB."""
    return to_uint8(norm01c(to_display(x, space), 0))


def render_best_xpm(x, space: InputSpace) -> np.ndarray:
    """``best_Xpm.jpg``: image plus mean ("plus mean"), min-max normalized, uint8 RGB."""
    return to_uint8(norm01(to_display(x + space.net_mean, space)))


def result_prefix(result: OptimizeResult, output_prefix="optimize_results/opt", output_template=DEFAULT_TEMPLATE):
    """``<output_prefix>_<template>_`` filled from ``p.*`` (params) and ``r.*`` (results) keys.

    A prefix that names an existing directory gets a trailing slash, as in the original.
    """
    return _fill_prefix(result.params, result.push_unit, result.summary(), output_prefix, output_template)


def planned_prefix(params: OptimizeParams, push_unit, output_prefix="optimize_results/opt",
                   output_template=DEFAULT_TEMPLATE):
    """The prefix a run will get, known before it runs; None if the template uses ``r.*``."""
    if "%(r." in output_template:
        return None
    return _fill_prefix(params, push_unit, {}, output_prefix, output_template)


def _fill_prefix(params, push_unit, summary, output_prefix, output_template):
    values = {"p." + k: v for k, v in dataclasses.asdict(params).items()}
    values["p.push_unit"] = tuple(push_unit)
    values.update({"r." + k: v for k, v in summary.items()})
    try:
        prefix = f"{output_prefix}_{output_template}_" % values
    except (KeyError, ValueError, TypeError) as err:
        raise SettingsError(f"output template '{output_template}': cannot be filled ({err!r}); "
                            f"keys are p.<param> and r.<result>") from None
    if os.path.isdir(prefix) and not prefix.endswith(os.sep):
        prefix += os.sep
    return prefix


def software_versions() -> dict:
    import platform

    versions = {"python": platform.python_version()}
    for name, module in (("numpy", "numpy"), ("scipy", "scipy"), ("onnxruntime", "onnxruntime"),
                         ("onnx", "onnx"), ("opencv", "cv2"), ("h5py", "h5py")):
        try:
            versions[name] = __import__(module).__version__
        except Exception:
            versions[name] = None
    try:
        from importlib.metadata import version

        versions["caffevis"] = version("caffevis")
    except Exception:
        versions["caffevis"] = None
    return versions


def info_text(result: OptimizeResult) -> str:
    """The original's ``info.txt``: the parameters, a blank line, then the results."""
    out = io.StringIO()
    print("FindParams:", file=out)
    params = result.params.as_dict()
    params["push_unit"] = result.push_unit
    for key in sorted(params):
        print("%30s: %s" % (key, params[key]), file=out)
    print(file=out)
    print("FindResults:", file=out)
    fields = {k: getattr(result, k) for k in ("ii", "obj", "idxmax", "ismax", "norm", "dist", "std", "lr",
                                              "best_obj", "best_ii", "majority_obj", "majority_ii",
                                              "last_obj", "last_ii", "meta_result", "x0", "best_x",
                                              "majority_x", "last_x")}
    for key in sorted(fields):
        val = fields[key]
        if isinstance(val, list) and len(val) > 4:
            text = "[%s, %s, ..., %s, %s]" % (val[0], val[1], val[-2], val[-1])
        elif isinstance(val, np.ndarray):
            flat = val.ravel()
            text = "%s array [%s, %s, ...]" % (val.shape, flat[0], flat[1])
        else:
            text = "%s" % (val,)
        print("%30s: %s" % (key, text), file=out)
    return out.getvalue()


#: The files :func:`save_result` writes under a run's prefix.
RESULT_FILES = ("best_X.jpg", "best_Xpm.jpg", "info.txt", "info.h5", "info.json")


def save_result(result: OptimizeResult, space: InputSpace, prefix: str, brave=False, skipbig=False,
                extra=None) -> list:
    """Write ``<prefix>best_X.jpg``, ``best_Xpm.jpg``, ``info.txt``, ``info.h5`` and ``info.json``.

    ``info.json`` (written last, so its presence means the run is complete) holds every
    parameter, the per-iteration series, best / majority / last, the meta result, the input
    space, software versions and ``extra`` (model, provider, ...). ``info.h5`` holds x0,
    best, majority (when reached) and last as (C, H, W) float64 arrays (skipped with
    ``skipbig``). Refuses to overwrite an existing ``info.txt`` unless ``brave``.
    """
    import h5py

    info_txt = f"{prefix}info.txt"
    if os.path.exists(info_txt) and not brave:
        raise InputError(f"{info_txt} exists; refusing to overwrite (use --brave)")
    folder = os.path.dirname(prefix)
    if folder:
        os.makedirs(folder, exist_ok=True)
    written = []
    if result.best_x is not None:
        for name, render in (("best_X.jpg", render_best_x), ("best_Xpm.jpg", render_best_xpm)):
            write_image(prefix + name, render(result.best_x, space))
            written.append(prefix + name)
    with atomic_path(info_txt) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(info_text(result))
    written.append(info_txt)
    if not skipbig:
        path = f"{prefix}info.h5"
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            for name, arr in (("x0", result.x0), ("best", result.best_x), ("majority", result.majority_x),
                              ("last", result.last_x)):
                if arr is not None:
                    f.create_dataset(name, data=arr, track_times=False)
            f.create_dataset("obj", data=np.asarray(result.obj, np.float64), track_times=False)
            f.attrs["params"] = json.dumps(result.params.as_dict(), sort_keys=True)
            f.attrs["meta_result"] = result.meta_result or ""
        written.append(path)
    record = {"params": result.params.as_dict(), "rand_seed": result.params.rand_seed,
              "results": result.summary(), "input_space": space.describe(),
              "software": software_versions()}
    record.update(extra or {})
    path = f"{prefix}info.json"
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, default=_json_default)
    written.append(path)
    return written


def load_run(prefix) -> tuple:
    """Read back what :func:`save_result` wrote under ``prefix``: (OptimizeResult, info.json record).

    The images come from ``info.h5`` (float64, as optimized), so a result rendered again is
    the same bits as when it was saved.
    """
    import h5py

    json_path, h5_path = f"{prefix}info.json", f"{prefix}info.h5"
    try:
        with open(json_path, encoding="utf-8") as f:
            record = json.load(f)
        params = OptimizeParams(**record["params"])
        summary = record["results"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{json_path}: not an optimize result ({err})") from None
    if not os.path.isfile(h5_path):
        raise InputError(f"{h5_path}: missing (the run was saved with --skipbig?); its images are needed")
    with h5py.File(h5_path, "r") as f:
        arrays = {name: (np.asarray(f[name]) if name in f else None) for name in ("x0", "best", "majority", "last")}
    result = OptimizeResult(params, tuple(summary["push_unit"]), arrays["x0"], best_x=arrays["best"],
                            majority_x=arrays["majority"], last_x=arrays["last"])
    for key in ("obj", "idxmax", "ismax", "norm", "dist", "std", "lr", "best_obj", "best_ii", "majority_obj",
                "majority_ii", "last_obj", "last_ii", "meta_result", "seconds"):
        setattr(result, key, summary.get(key))
    result.ii = list(range(summary.get("iterations", 0)))
    return result, record


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
