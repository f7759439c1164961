"""caffevis info [MODEL]: the execution provider, and a net's layers (type, bottoms -> tops) and blob shapes."""


def register(sub):
    p = sub.add_parser("info", help="which execution provider runs; a model's layers and blobs")
    p.add_argument("model", nargs="?", help="MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel (default: none; "
                                            "only the provider is reported)")
    p.add_argument("--cpu", action="store_true", help="force the CPU execution provider")
    p.add_argument("--cuda-check", action="store_true",
                   help="list the operators of the forward and gradient graphs (of MODEL, else of every shipped "
                        "settings file's model that is present) that have no kernel in the pinned "
                        "onnxruntime-gpu's CUDA kernel table, i.e. would run on the CPU")
    p.set_defaults(func=run)


def cuda_check(args):
    """``--cuda-check``: one line per net; exit code 1 when some operator would fall back to the CPU."""
    import glob
    import os

    from ..cuda_kernels import check_net_graphs, kernel_table
    from ..errors import CaffevisError
    from ..model.net import Net
    from ..paths import REPO_ROOT
    from ..settings import load_settings

    source = kernel_table()[0]
    print(f"CUDA kernel table: {source['for_package']}, from {source['repository']} {source['document']} "
          f"at {source['commit'][:12]}")
    nets = []
    if args.model:
        nets.append((args.model, Net.load(args.model, force_cpu=True)))
    else:
        for path in sorted(glob.glob(os.path.join(REPO_ROOT, "settings", "*.yaml"))):
            try:
                nets.append((os.path.basename(path), load_settings(path).open_net(force_cpu=True)))
            except CaffevisError as err:
                print(f"{os.path.basename(path)}: skipped ({str(err).split(': ')[-1]})")
    bad = 0
    for name, net in nets:
        report, seen = check_net_graphs(net)
        missing = sorted({op for ops in report.values() for op in ops})
        bad += bool(missing)
        state = "every operator has a CUDA kernel" if not missing else \
            "would run on the CPU: " + ", ".join(f"{d}::{t}-{v}" for d, t, v in missing)
        print(f"{name}: {len(report)} graphs, {len(seen)} operator versions; {state}")
    return 1 if bad else 0


def run(args):
    from ..model.runtime import provider_report

    if args.cuda_check:
        return cuda_check(args)
    if not args.model:
        print(f"execution provider: {provider_report(args.cpu)}")
        return 0
    from ..model.net import Net

    net = Net.load(args.model, force_cpu=args.cpu)
    print(f"{net.name}: input '{net.input_name}' {net.input_shape}, provider {net.provider}"
          f" ({provider_report(args.cpu).split(' ', 1)[1].strip('()')})")
    if net.layers:
        for p in net.layers:
            n_params = sum(a.size for a in p.params)
            print(f"  {p.name:<28s} {p.type:<14s} {','.join(p.bottoms):<24s} -> {','.join(p.tops):<24s}"
                  f" {p.top_shapes[0] if p.top_shapes else ''}{f'  [{n_params} params]' if n_params else ''}")
    else:
        for b in net.blob_names:
            print(f"  {b:<40s} {net.blob_shapes.get(b)}")
