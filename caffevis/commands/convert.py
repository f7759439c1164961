"""caffevis convert DEPLOY.prototxt WEIGHTS.caffemodel -o MODEL.onnx"""
import json
import os


def register(sub):
    p = sub.add_parser("convert", help="convert a Caffe model to ONNX (every blob an output)")
    p.add_argument("prototxt")
    p.add_argument("weights")
    p.add_argument("-o", "--output", required=True, help="output .onnx path")
    p.set_defaults(func=run)


def run(args):
    import onnx

    from ..model.net import convert_caffe

    from ..io import output_path

    model = convert_caffe(args.prototxt, args.weights)
    onnx.save(model, output_path(args.output))
    meta = {p.key: p.value for p in model.metadata_props}
    info = json.loads(meta["caffevis_info"])
    sidecar = os.path.splitext(args.output)[0] + ".json"
    with open(sidecar, "w") as f:
        json.dump(info, f, indent=1)
    print(f"wrote {args.output} ({len(info['blob_order'])} blobs) and {sidecar}")
