"""caffevis info [MODEL]: the execution provider, and a net's layers (type, bottoms -> tops) and blob shapes."""


def register(sub):
    p = sub.add_parser("info", help="which execution provider runs; a model's layers and blobs")
    p.add_argument("model", nargs="?", help="MODEL.onnx or DEPLOY.prototxt:WEIGHTS.caffemodel (default: none; "
                                            "only the provider is reported)")
    p.add_argument("--cpu", action="store_true", help="force the CPU execution provider")
    p.set_defaults(func=run)


def run(args):
    from ..runtime import provider_report

    if not args.model:
        print(f"execution provider: {provider_report(args.cpu)}")
        return 0
    from ..net import Net

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
