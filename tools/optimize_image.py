#!/usr/bin/env python
"""DeepVis' optimize_image.py for caffevis: the same options, run as ``caffevis optimize``.

    python tools/optimize_image.py --settings settings/squeezenet.yaml --push-layer pool10 --push-channel 130
"""
import sys

from caffevis.cli import main

if __name__ == "__main__":
    sys.exit(main(["optimize"] + sys.argv[1:]))
