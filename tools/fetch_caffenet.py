#!/usr/bin/env python
"""Download the official bvlc_reference_caffenet / bvlc_alexnet (or caffenet-yos) weights,
verify their published sha1 and convert them to ONNX under model_zoo/<name>/.

    python tools/fetch_caffenet.py caffenet
    python tools/fetch_caffenet.py alexnet --weights ~/Downloads/bvlc_alexnet.caffemodel
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from caffevis.fetch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
