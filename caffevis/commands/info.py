"""caffevis info MODEL: the net's layers (type, bottoms -> tops) and blob shapes."""
from .forward import add_model_args


def register(sub):
    p = sub.add_parser("info", help="list a model's layers and blobs")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args):
    from ..model.net import Net

    net = Net.load(args.model, force_cpu=args.cpu)
    print(f"{net.name}: input '{net.input_name}' {net.input_shape}, provider {net.provider}")
    if net.layers:
        for p in net.layers:
            n_params = sum(a.size for a in p.params)
            print(f"  {p.name:<28s} {p.type:<14s} {','.join(p.bottoms):<24s} -> {','.join(p.tops):<24s}"
                  f" {p.top_shapes[0] if p.top_shapes else ''}{f'  [{n_params} params]' if n_params else ''}")
    else:
        for b in net.blob_names:
            print(f"  {b:<40s} {net.blob_shapes.get(b)}")
