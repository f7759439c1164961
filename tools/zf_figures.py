#!/usr/bin/env python
"""Zeiler & Fergus figures for MNIST digits: a thin wrapper of ``caffevis zf-figures``."""
import sys

from caffevis.cli import main

if __name__ == "__main__":
    sys.exit(main(["zf-figures"] + sys.argv[1:]))
