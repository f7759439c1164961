"""Headless frame rate of the viewer: forward + render, and with the live back pass.

:func:`measure_fps` times the viewer's own work per frame without threads or a window:
preprocess + forward + render (``'off'``), plus the back pass of the selected unit
(``'grad'``, ``'deconv'``, ``'guided'``). Each frame is a new forward on the current
input, as with a webcam. :func:`random_weights_net` builds a net from a deploy prototxt
with seeded random weights, for timing models whose weights are not at hand (timing does
not depend on the weight values).
"""
from __future__ import annotations

import time

import numpy as np


def measure_fps(viewer, modes=("off", "grad", "deconv"), frames=20, warmup=2, layer=None, unit=0):
    """Frames per second of the viewer's per-frame work for each back mode.

    Parameters
    ----------
    viewer : LiveViewer
        A built viewer (:func:`caffevis.viewer.launch.build_viewer`); its input must have a frame.
    modes : sequence of str
        ``'off'`` (forward + render) and back modes ``'grad'``, ``'deconv'``, ``'guided'``.
    frames : int
        Timed frames per mode (after ``warmup`` untimed ones, which build the sessions).
    layer : str, optional
        Selected layer (default: the last layer with a spatial map, as a conv unit).
    unit : int
        Selected unit.

    Returns
    -------
    dict
        mode -> {'fps', 'ms_per_frame', 'ms_forward', 'ms_back', 'ms_render'}.
    """
    from .render import render

    viewer.fetcher.step()
    _, frame = viewer.fetcher.get_frame()
    if frame is None:
        raise RuntimeError("measure_fps: the viewer's input has no frame")
    st = viewer.state
    if layer is None:
        spatial = [b for b in st.layers if len(viewer.net.blob_shapes[b]) == 4 and viewer.net.blob_shapes[b][2] > 1]
        layer = spatial[-1] if spatial else st.layers[0]
    st.select_layer(st.layers.index(layer))
    st.select_unit(unit)
    computer, cfg = viewer.computer, viewer.config
    results = {}
    for mode in modes:
        st.back_enabled = mode != "off"
        if mode != "off":
            st.back_mode = mode
        times = []
        for i in range(warmup + frames):
            t0 = time.perf_counter()
            fwd = computer.forward(frame)
            t1 = time.perf_counter()
            back = computer.backward(fwd, st.back_key) if st.back_key is not None else None
            st.back_stale = False
            t2 = time.perf_counter()
            blobs = {k: v[0] for k, v in fwd.blobs.items()}
            render(st, blobs, back, {"input": frame.image}, cfg, labels=viewer.labels, fps=10.0)
            t3 = time.perf_counter()
            if i >= warmup:
                times.append((t1 - t0, t2 - t1, t3 - t2))
        t = np.array(times).mean(axis=0) * 1000
        total = float(t.sum())
        results[mode] = {"fps": 1000.0 / total, "ms_per_frame": total, "ms_forward": float(t[0]),
                         "ms_back": float(t[1]), "ms_render": float(t[2])}
    st.back_enabled = False
    return results


def viewer_fps(settings_path, images=None, random_weights=None, modes=("off", "grad", "deconv"), frames=20,
               layer=None, force_cpu=True):
    """Build a headless viewer from a settings file and run :func:`measure_fps` on it.

    Parameters
    ----------
    settings_path : str
        e.g. ``settings/caffenet.yaml``.
    images : str, optional
        Image folder (default: the settings' ``static_files_dir``).
    random_weights : bool, optional
        Use seeded random weights on the settings' prototxt (default: only when the
        weights file is missing). Timing does not depend on the weight values.
    """
    import os

    from .launch import build_viewer, open_settings

    settings = open_settings(settings_path)
    net = None
    if random_weights or (random_weights is None and not os.path.isfile(settings.caffevis_network_weights or "")):
        net = random_weights_net(settings.caffevis_deploy_prototxt, force_cpu=force_cpu)
    viewer = build_viewer(settings, images=images, canvas=False, headless=True, force_cpu=force_cpu, net=net)
    return measure_fps(viewer, modes=modes, frames=frames, layer=layer)


def random_weights_net(prototxt, seed=0, force_cpu=True):
    """A :class:`~caffevis.model.Net` from a deploy prototxt with seeded He-normal weights."""
    from ..model.caffe import reader
    from ..model.caffe.fillers import fill_weights
    from ..model.caffe.to_onnx import convert
    from ..model.net import Net

    model, _ = convert(fill_weights(reader.load_caffe(prototxt), seed=seed, kind="he"))
    return Net.from_onnx_model(model, force_cpu=force_cpu)


def format_results(results):
    lines = []
    for mode, r in results.items():
        lines.append(f"{mode:>7}: {r['fps']:6.1f} fps  ({r['ms_per_frame']:.1f} ms = forward {r['ms_forward']:.1f} "
                     f"+ back {r['ms_back']:.1f} + render {r['ms_render']:.1f})")
    return "\n".join(lines)
