#!/usr/bin/env python
"""The original toolbox's entry point name: same as ``caffevis live [ARGS]``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from caffevis.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["live"] + sys.argv[1:]))
