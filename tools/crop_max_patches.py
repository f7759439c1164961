#!/usr/bin/env python
"""Thin wrapper: `python tools/crop_max_patches.py ARGS` = `caffevis crop-max-patches ARGS`."""
import sys

from caffevis.cli import main

if __name__ == "__main__":
    sys.exit(main(["crop-max-patches"] + sys.argv[1:]))
