#!/usr/bin/env python
"""Thin wrapper: `python tools/make_unit_vis.py ARGS` = `caffevis make-unit-vis ARGS`."""
import sys

from caffevis.cli import main

if __name__ == "__main__":
    sys.exit(main(["make-unit-vis"] + sys.argv[1:]))
