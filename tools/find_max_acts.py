#!/usr/bin/env python
"""Thin wrapper: `python tools/find_max_acts.py ARGS` = `caffevis find-maxes ARGS`."""
import sys

from caffevis.cli import main

if __name__ == "__main__":
    sys.exit(main(["find-maxes"] + sys.argv[1:]))
