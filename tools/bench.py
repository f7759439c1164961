#!/usr/bin/env python
"""caffevis benchmarks, printed as times and ratios against a peer run in the same process.

    python tools/bench.py backward      # CaffeNet: ORT forward, gradient graphs, NumPy deconv, vs PyTorch CPU
    python tools/bench.py optimize-dask # units/s of a layer on 1 and 2 local Dask workers
    python tools/bench.py serve         # the web viewer in headless chromium: frames/s and key latency
    python tools/bench.py onnx          # torchvision ResNet-18 / MobileNetV2 (ONNX import) vs PyTorch autograd
    python tools/bench.py all

The net is the official bvlc_reference_caffenet deploy prototxt with seeded random
weights (timing does not depend on the weights). PyTorch is optional (``pip install
torch==2.13.0``); without it the peer columns are skipped.
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "18")  # as caffevis/__init__ (NumPy is imported first here)
import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tools"))
SHARED = os.path.join(REPO, "..", "shared")


SETTLE_S = 0.05


def timeit(fn, repeat=5, warmup=1):
    return timeit_pair(fn, None, repeat, warmup)[0]


def timeit_pair(fn, peer_fn, repeat=5, warmup=1, settle=SETTLE_S):
    """Median seconds of ``fn`` and of ``peer_fn`` (None: not run), their calls alternated so
    that a slow spell of the host falls on both sides of the ratio. A short pause (``settle``
    seconds) before each call lets the other side's worker threads go idle (PyTorch's OpenMP
    threads spin for a while after a call and would otherwise share the cores with the next
    one); caffevis' own pairs need none."""
    fns = [f for f in (fn, peer_fn) if f is not None]
    for f in fns:
        for _ in range(warmup):
            f()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for f, ts in zip(fns, times):
            if peer_fn is not None and settle:
                time.sleep(settle)
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
    medians = [statistics.median(ts) for ts in times]
    return medians[0], (medians[1] if peer_fn is not None else None)


def caffenet(seed=0, threads=0):
    """Full-width CaffeNet (official deploy prototxt) with seeded He-normal weights
    (``threads``: ONNX Runtime intra-op threads, 0 = all cores)."""
    from caffevis.model.caffe.fillers import fill_weights
    from caffevis.model.caffe.reader import load_caffe
    from caffevis.model.caffe.to_onnx import convert
    from caffevis.model.net import Net

    cnet = fill_weights(load_caffe(os.path.join(SHARED, "models", "prototxt",
                                                "bvlc_reference_caffenet_deploy.prototxt")), seed=seed, kind="he")
    model, _ = convert(cnet)
    return Net.from_onnx_model(model, threads=threads)


def kernel_ms(model, feeds, runs=5):
    """Median milliseconds per run spent in each operator type, from ORT's own profiler.

    A separate profiling session runs ``model`` ``runs + 1`` times; the first run (buffer
    allocation) is dropped. Node kernels are assigned to runs by their start times.
    """
    import collections
    import json

    from caffevis.model import Runtime

    prefix = os.path.join(os.environ.get("TMPDIR", "/tmp"), "caffevis_bench")
    session = Runtime(force_cpu=True).session(model, "profiled graph", profile_prefix=prefix)
    for _ in range(runs + 1):
        session.run(None, feeds)
    path = session.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    per_run = collections.defaultdict(collections.Counter)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            i = sum(1 for t in starts if t <= e["ts"]) - 1
            per_run[i][e["args"]["op_name"]] += e["dur"] / 1000.0
    kept = [per_run[i] for i in range(1, len(starts))]
    ops = set().union(*kept)
    return {op: statistics.median(r[op] for r in kept) for op in ops}


def conv_ms(kernels):
    return sum(ms for op, ms in kernels.items() if "Conv" in op)


def row(label, seconds, peer=None, peer_label="torch"):
    ratio = f"  {seconds / peer:5.2f}x {peer_label}" if peer else ""
    print(f"  {label:<44s} {seconds * 1000:9.1f} ms{ratio}")


def bench_backward(args):
    from caffevis.backward import Seed, backward, build_gradient_model
    from caffevis.backward.graph import SEED, SEED_CHANNEL

    net = caffenet()
    try:
        import torch
        from torch_peer import TorchPlanNet

        torch.set_num_threads(os.cpu_count())
        peer = TorchPlanNet(net.layers)
    except ImportError:
        peer = None
        print("  (torch not installed: peer columns skipped; pip install torch==2.13.0)")
    print(f"CaffeNet (full width, random weights), provider {net.provider}, {os.cpu_count()} cores")
    for batch in args.batches:
        x = np.random.default_rng(0).normal(size=(batch, 3, 227, 227)).astype(np.float32) * 50
        blobs = net.forward(x)

        def peer_forward():
            with torch.no_grad():
                peer.forward(torch.from_numpy(x))

        fwd, peer_fwd = timeit_pair(lambda: net.forward(x), peer_forward if peer else None, args.repeat)
        print(f" batch {batch}")
        row("ORT forward (all blobs)", fwd, peer_fwd)
        for seed in (Seed.at_unit("fc8", blobs["fc8"].shape, 3), Seed.channel_map("conv5", blobs["conv5"], 7)):
            blob = seed.blob
            backward(net, x, seed)  # build + warm the session
            t, tp = timeit_pair(lambda: backward(net, x, seed, engine="onnx"),
                                (lambda: peer.input_grad(x, blob, seed.values)) if peer else None, args.repeat)
            row(f"gradient graph fwd+bwd from {blob}", t, tp)
            # the floor: the convolutions alone, already near the CPU's FMA peak (ORT's NCHWc
            # kernels), in the graph backward() runs for this seed (one channel: see backward/graph.py)
            model, _ = build_gradient_model(net, blob, blob_diffs=False, seed_channel=True)
            feeds = {net.input_name: x, SEED: seed.one_channel(), SEED_CHANNEL: np.array([seed.channel], np.int64)}
            row("  of which convolution kernels (ORT profiler)", conv_ms(kernel_ms(model, feeds, args.repeat)) / 1000, tp)
            # a seed in every channel takes the general graph
            dense = Seed(blob, np.random.default_rng(1).normal(size=seed.values.shape))
            backward(net, x, dense)
            t, tp = timeit_pair(lambda: backward(net, x, dense, engine="onnx"),
                                (lambda: peer.input_grad(x, blob, dense.values)) if peer else None, args.repeat)
            row("  seed in every channel (the general graph)", t, tp)
        # the deconv rows against the ORT forward, their calls alternated
        seed = Seed.channel_map("conv5", blobs["conv5"], 7)

        def forward():
            net.forward(x)

        td, f = timeit_pair(lambda: backward(net, x, seed, mode="deconv", engine="numpy"), forward,
                            args.repeat, settle=0)
        row("NumPy deconv from conv5 (incl. forward)", td, f, "ORT forward")
        values = net.forward_all(x)
        ta, f = timeit_pair(lambda: backward(net, x, seed, mode="deconv", engine="numpy", values=values),
                            forward, args.repeat, settle=0)
        row("NumPy deconv from conv5 (forward reused)", ta, f, "ORT forward")
        t_onnx_dc, f = timeit_pair(lambda: backward(net, x, seed, mode="deconv", engine="onnx"), forward,
                                   args.repeat, settle=0)
        row("gradient graph deconv from conv5", t_onnx_dc, f, "ORT forward")


def bench_viewer(args):
    from caffevis.viewer.bench import format_results, viewer_fps

    settings = os.path.join(REPO, "settings", "caffenet.yaml")
    print("viewer, CaffeNet (settings/caffenet.yaml; random weights where the real ones are absent),"
          " headless, conv5 selected")
    results = viewer_fps(settings, modes=("off", "grad", "deconv", "guided"), frames=args.frames, layer="conv5")
    print("\n".join("  " + line for line in format_results(results).splitlines()))


def bench_serve(args):
    import tempfile

    from caffevis.settings import load_settings
    from caffevis.viewer.web import JPEG_QUALITY, WebViewer, default_threads
    from caffevis.viewer.web.bench import measure_serve, write_noise_video

    from caffevis.viewer.bench import measure_fps
    from caffevis.viewer.launch import build_viewer

    net = caffenet()
    settings = load_settings(os.path.join(REPO, "settings", "caffenet.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        video = write_noise_video(os.path.join(tmp, "noise.avi"))
        # the peer: the same viewer's per-frame work without server or browser, just before
        peer = measure_fps(build_viewer(settings, video=video, headless=True, net=net), modes=("off", "grad"),
                           frames=10, layer="conv5")
        # the server's net, with the threads `caffevis serve` gives it
        threads = default_threads() if args.serve_threads is None else args.serve_threads
        quality = JPEG_QUALITY if args.serve_jpeg_quality is None else args.serve_jpeg_quality
        server = WebViewer(settings, port=0, video=video, net=caffenet(threads=threads), jpeg_quality=quality).start()
        try:
            r = measure_serve(server.url(), layer="conv5", seconds=args.serve_seconds, tabs=4)
        finally:
            server.stop()
    print(f"serve, CaffeNet (random weights), {net.provider}, {os.cpu_count()} cores ({threads} ONNX Runtime "
          f"threads), JPEG quality {quality}, load average "
          f"{os.getloadavg()[0]:.1f}; headless chromium on the same machine; video input (a forward per frame), "
          f"conv5 selected")
    for key, mode, label, target in (("fps_forward", "off", "forward + render", 20),
                                     ("fps_backprop", "grad", "live backprop", 10)):
        print(f"  {'frames/s drawn by one tab, ' + label:<48s} {r[key]:6.1f}  (target >= {target}; "
              f"{r[key] / peer[mode]['fps']:4.2f}x the headless viewer's {peer[mode]['fps']:.1f})")
    for key, label in (("latency_idle", "3 other tabs on a still image"), ("latency", "all 4 tabs playing")):
        lat = sorted(r[key + "_ms"])
        print(f"  {'key-to-frame latency, median, ' + label:<48s} {r[key + '_median_ms']:6.1f} ms  "
              f"(target <= 150; min {lat[0]:.0f}, max {lat[-1]:.0f})")


def bench_optimize(args):
    from caffevis.input_space import InputSpace
    from caffevis.optimize import benchmark
    from caffevis.settings import load_settings

    net = caffenet()
    settings = load_settings(os.path.join(REPO, "settings", "caffenet.yaml"))
    space = InputSpace.from_settings(settings, net.input_shape)
    r = benchmark(net, "fc8", space, units=args.opt_units, iterations=args.opt_iters, batch_size=args.opt_units)
    print(f"optimize, CaffeNet fc8, preset 3, {r['iterations']} iterations x {r['units']} units, {r['provider']}")
    print(f"  {'seconds per 1000-iteration run (extrapolated)':<44s} {r['seconds_per_iteration'] * 1000:9.1f} s")
    print(f"  {'units/s one at a time':<44s} {r['units_per_second_one_at_a_time']:9.3f}")
    print(f"  {'units/s batched (batch ' + str(r['batch_size']) + ')':<44s} {r['units_per_second_batched']:9.3f}"
          f"  {r['batch_speedup']:5.2f}x one at a time")
    # Batching can only amortize what is shared between images (the FC weight reads, the
    # per-call overhead); the convolutions cost the same per image at any batch size.
    from caffevis.backward import build_gradient_model
    from caffevis.backward.graph import SEED

    b = r["batch_size"]
    model, _ = build_gradient_model(net, "fc8")
    x = np.zeros((b,) + tuple(net.input_shape[1:]), np.float32)
    per_image = conv_ms(kernel_ms(model, {net.input_name: x, SEED: np.ones((b, 1000), np.float32)}, 3)) / 1000 / b
    print(f"  {f'convolution kernels per image at batch {b}':<44s} {per_image * 1000:9.1f} ms"
          f"  bound on batched speedup {r['seconds_per_iteration'] / per_image:4.2f}x")
    peer = _torch_optimize_loop(net, args.opt_iters)
    if peer:
        print(f"  {'PyTorch same loop, s per 1000 iterations':<44s} {peer * 1000:9.1f} s"
              f"  caffevis {r['seconds_per_iteration'] / peer:5.2f}x torch")


def _torch_optimize_loop(net, iterations):
    """The preset-3 step (forward, backward from one fc8 unit, decay, blur every 4, clip) in PyTorch."""
    try:
        import torch
        from scipy.ndimage import gaussian_filter
        from torch_peer import TorchPlanNet
    except ImportError:
        return None
    peer = TorchPlanNet(net.layers)
    x = torch.zeros((1,) + tuple(net.input_shape[1:]))
    seed = torch.zeros((1, 1000))
    seed[0, 130] = 1.0
    t = time.perf_counter()
    for _ in range(iterations):
        xr = x.clone().requires_grad_(True)
        peer.forward(xr, until="fc8")["fc8"].backward(seed)
        x = (x + 100 * xr.grad) * (1 - 1e-4)
        if _ % 4 == 0:  # preset 3: blur radius 1 every 4 iterations, per channel as the original
            x = torch.from_numpy(np.stack([gaussian_filter(c, 1.0) for c in x[0].numpy()])[None])
        x = x.clamp(-128, 128)
    return (time.perf_counter() - t) / iterations


def _torchvision():
    """torch and torchvision 0.28.0 on the CPU torch wheel (its fake-kernel registration
    becomes a no-op, as in tools/export_torchvision.py)."""
    import torch

    torch.library.register_fake = lambda *args, **kwargs: (lambda fn: fn)
    import torchvision

    return torch, torchvision


def bench_onnx(args):
    """Backprop of one logit on full-size torchvision nets (random weights, 224x224), exported
    through torch.onnx.export and imported by caffevis, against PyTorch autograd on the same
    module in the same process."""
    import tempfile

    from caffevis.backward import Seed, backward
    from caffevis.model.net import Net

    try:
        torch, tv = _torchvision()
    except ImportError:
        print("  (torch/torchvision not installed: pip install torch==2.13.0 torchvision==0.28.0)")
        return
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    for name in ("resnet18", "mobilenet_v2"):
        model = getattr(tv.models, name)(weights=None).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{name}.onnx")
            torch.onnx.export(model, torch.zeros(1, 3, 224, 224), path, input_names=["input"],
                              output_names=["logits"], opset_version=17, dynamo=False)
            net = Net.from_onnx(path)
        print(f"{name} (torchvision, 224x224, random weights; exported in eval mode, so BatchNorm is folded "
              f"into the convolutions), provider {net.provider}, {os.cpu_count()} cores")
        for batch in args.batches:
            x = np.random.default_rng(0).normal(size=(batch, 3, 224, 224)).astype(np.float32)
            seed = Seed.at_unit("logits", (batch, 1000), 3)
            backward(net, x, seed)  # build + warm the session

            def peer():
                xt = torch.from_numpy(x).requires_grad_(True)
                model(xt)[:, 3].sum().backward()

            t, tp = timeit_pair(lambda: backward(net, x, seed, engine="onnx"), peer, args.repeat)
            print(f" batch {batch}")
            row("backprop from one logit (gradient graph)", t, tp)


def bench_optimize_dask(args):
    """Whole-layer optimization on local Dask clusters of 1 and 2 worker processes, one thread
    each (Dask and ONNX Runtime), vs the same batches in this process on one thread. The three
    runs alternate ``--repeat`` times (medians), so a busy spell of the host falls on all."""
    import tempfile
    from contextlib import ExitStack

    from dask.distributed import LocalCluster

    from caffevis.cluster import model_for_workers
    from caffevis.model.net import Net
    from caffevis.input_space import InputSpace
    from caffevis.optimize import optimize_units, preset_params
    from caffevis.optimize.cluster import optimize_units_dask
    from caffevis.settings import load_settings

    settings = load_settings(os.path.join(REPO, "settings", "squeezenet.yaml"))
    model = model_for_workers(settings)
    net = Net.load(model, force_cpu=True, threads=1)
    layer, n, iters, bs = "conv10", args.dask_units, args.opt_iters, args.dask_batch
    space = InputSpace.from_settings(settings, net.input_shape)
    shape = tuple(net.blob_shapes[layer][1:])
    params = [preset_params(3, push_layer=layer, push_channel=u, max_iter=iters) for u in range(n)]
    print(f"optimize on Dask, SqueezeNet {layer}, preset 3, {n} units x {iters} iterations, batch {bs}, "
          f"{os.cpu_count()} cores, CPU, median of {args.dask_repeat}")
    times = {0: [], 1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        addresses = {w: stack.enter_context(LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                                                         dashboard_address=None)).scheduler_address
                     for w in (1, 2)}

        def run(workers, todo, name, batch):
            out = os.path.join(tmp, name, "opt")
            if workers == 0:
                return optimize_units(net, todo, space, out, batch_size=batch, progress=False)
            return optimize_units_dask(model, todo, space, shape, addresses[workers], out, batch_size=batch,
                                       progress=False, force_cpu=True, ort_threads=1)

        for w in (0, 1, 2):  # sessions open on every worker before timing
            run(w, [p.replace(max_iter=2) for p in params[:2 * max(w, 1)]], f"warm{w}", 1)
        for r in range(args.dask_repeat):
            for w in (0, 1, 2):
                t = time.perf_counter()
                run(w, params, f"r{r}w{w}", bs)
                times[w].append(time.perf_counter() - t)
    rates = {w: n / statistics.median(ts) for w, ts in times.items()}
    print(f"  {'one process, no Dask (units/s)':<44s} {rates[0]:9.3f}")
    for w in (1, 2):
        print(f"  {f'{w} Dask worker process(es) (units/s)':<44s} {rates[w]:9.3f}  {rates[w] / rates[0]:5.2f}x one process")
    print(f"  {'2 workers vs 1 worker':<44s} {rates[2] / rates[1]:9.2f}x")


SECTIONS = {"backward": bench_backward, "viewer": bench_viewer, "optimize": bench_optimize,
            "optimize-dask": bench_optimize_dask, "serve": bench_serve, "onnx": bench_onnx}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all", choices=["all"] + sorted(SECTIONS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--frames", type=int, default=30, help="viewer frames per mode")
    parser.add_argument("--serve-seconds", type=float, default=5.0, help="serve: seconds per frame-rate measurement")
    parser.add_argument("--serve-jpeg-quality", type=int, default=None,
                        help="serve: JPEG quality of the frames (default: caffevis serve's)")
    parser.add_argument("--serve-threads", type=int, default=None,
                        help="serve: ONNX Runtime threads of the server's net (default: caffevis serve's)")
    parser.add_argument("--opt-iters", type=int, default=20, help="optimizer iterations timed per unit")
    parser.add_argument("--opt-units", type=int, default=8, help="optimizer units (one batch)")
    parser.add_argument("--dask-units", type=int, default=8, help="optimize-dask: units of the layer")
    parser.add_argument("--dask-batch", type=int, default=2, help="optimize-dask: units per batch")
    parser.add_argument("--dask-repeat", type=int, default=3, help="optimize-dask: timed rounds")
    args = parser.parse_args()
    for name, fn in SECTIONS.items():
        if args.what in ("all", name):
            print(f"== {name} ==")
            fn(args)


if __name__ == "__main__":
    main()
