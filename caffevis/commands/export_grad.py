"""caffevis export-grad MODEL --from BLOB -o grad.onnx"""
from .forward import add_model_args


def register(sub):
    p = sub.add_parser("export-grad", help="write the gradient graph from a blob as a standalone ONNX model")
    add_model_args(p)
    p.add_argument("--from", dest="blob", required=True, help="blob receiving the seed")
    p.add_argument("--mode", choices=("backprop", "deconv", "guided"), default="backprop",
                   help="backprop (exact gradient), deconv (Zeiler & Fergus) or guided backprop")
    p.add_argument("--lrn", choices=("derivative", "identity"), default="derivative",
                   help="LRN backward: its derivative (the toolbox) or identity (the Z&F paper)")
    p.add_argument("--start", choices=("last", "layer"), default="last",
                   help="seed the blob's final value (last) or the output of the layer named like it")
    p.add_argument("--params", action="store_true", help="also output parameter gradients")
    p.add_argument("-o", "--output", required=True, help="output .onnx")
    p.set_defaults(func=run)


def run(args):
    import onnx

    from ..backward import build_gradient_model
    from ..model.net import Net

    from ..io import output_path

    net = Net.load(args.model, force_cpu=args.cpu)
    model, outputs = build_gradient_model(net, args.blob, mode=args.mode, lrn=args.lrn, start=args.start,
                                          params=args.params)
    onnx.save(model, output_path(args.output))
    print(f"wrote {args.output}: inputs {[i.name for i in model.graph.input if i.name in (net.input_name, 'seed')]}"
          f" -> {len(outputs)} outputs ({outputs[0]}, ...)")
